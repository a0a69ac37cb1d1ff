"""The live wallboard's ledger of today's queued calls, kept small all day. Pure:
no I/O, no clock (``now`` is an argument).

The ledger is fed what the daemon sees: each queued call as the call model shows
it (a row with the fields of ``calls``), with its events of the kinds the figures
read (``EVENT_KINDS``), and each agent state change. ``BoardLedger.board`` builds
the board with the functions the interval reports run on rows read from
PostgreSQL (``acd.reports.build_queue_calls``, ``acd.figures.attach_wrapup``,
``acd.wallboard.board``), so the board and the reports agree by construction;
only the calls that changed since the last board are rebuilt.

**Folding.** Per-call data is kept only while a figure may still need it. At each
board, a call is folded once it is settled:

- it ended, at or before the horizon ``now - FOLD_AFTER_S`` (the longest rolling
  window, 30 minutes, and a minute more: a clock stepped back by less changes
  nothing);
- each of its queue stays arrived at or before the horizon: out of every rolling
  window for good ("last 15 / 30 minutes" go by arrival, docs/metrics.md);
- each answered stay's wrap-up is final: ``attach_wrapup`` found it over (or
  none: 0), and its agent has a state change at or after the talk end (less
  ``WRAPUP_TOLERANCE_S``), so no later change can become that wrap-up.

Folding adds the stays that arrived today into per-queue ``QueueCounts`` (the
counts, sums and longest wait every day figure is made of; they add up), keeps
the call in the newest abandoned callers if it is among them (number and name
with it), and drops its row, events and records. The day figures are today's
folded counts plus the counts of the calls held (``acd.wallboard.DayTotals``).
"Waiting" and "longest waiting" read only the calls waiting, the rolling
windows only the calls of the last 30 minutes: both stay per call. No board
figure needs a day's distribution (no percentile), so nothing else is kept.

Agent state changes fold too: a span (one change to the next) that ended
before its agent's **cut** is added into today's seconds per state (occupancy
and utilization are ratios of such sums) and its change dropped; each agent
keeps at least its last change (the state it is in). The cut is
``CHANGES_KEPT_S`` before now, or earlier where a call held may still read the
agent's spans for its wrap-up: ``attach_wrapup`` looks from the talk end (less
the tolerance) on, so the talk end of an answered call held bounds its agent's
cut (its answer while the talk goes on: the talk ends after it), and the queue
entry of a call held that is neither answered nor ended bounds every agent's
(anyone may answer it). A call not seen yet is answered later still. Spans
before that change no attachment (the first span from the talk end on stays the
first), and a span's seconds are final once it ended before now, so nothing
else holds a change back. A call held whose wrap-up is final already keeps its
stays as attached and bounds no cut.

Work per board: what changed since the last one, not the calls held. The calls
changed are rebuilt, and a call's wrap-up is attached again only when its agent's
spans changed and it is not final; each call's stays, as attached, are counted
into per-queue blocks of arrival (``acd.board_sums.StaySums``), so a board adds
up a few dozen blocks per queue and counts the stays waiting and those of the
blocks across a window's ends; the abandoned callers' lines are kept per call;
the calls to fold are found in a heap by the time they settle, the agents' cuts
from the calls still open only; an agent's closed spans are counted into today's
seconds once. So memory follows the calls of the last half hour (and those still
waiting or talking), and the work per board follows the changes, the blocks and
the agents (BENCHMARKS.md, "Wallboard over a long day"). Figures are those of
the unfolded calls, up to the order of float additions (the last bits, under the
board's rounding): the same board as the rebuild over every call, on random
days (tests/unit/test_wallboard_incremental.py).

Limits: a state change stamped before its agent's latest one (the router stamps
changes as they happen) changes no wrap-up already final, nor what was folded;
an event for a call the ledger no longer holds that ended before the horizon is
refused (``call`` returns False): the call was folded, or belongs to a past day.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from acd import reports
from acd.decisions import AGENT_STATES
from acd.board_sums import StaySums
from acd.figures import (
    ABANDONED, ANSWERED, WAITING, WRAPUP_TOLERANCE_S, AgentSpan, QueueCall, QueueCounts, StateChange,
    attach_wrapup, count_calls, spans_from_changes,
)
from acd.reports import build_queue_calls, epoch_seconds
from acd.wallboard import WINDOWS, AgentLive, BoardConfig, DayTotals, abandoned_line, abandoned_order, assemble

__all__ = ["BoardLedger", "EVENT_KINDS", "FOLD_AFTER_S", "CHANGES_KEPT_S"]

# The call events the figures read (the others only update the call's row).
EVENT_KINDS = frozenset(reports.EVENT_KINDS)
# A settled call is folded this long after its end and its last queue entry.
FOLD_AFTER_S = max(WINDOWS.values()) + 60.0
# Agent state changes are kept at least this long (before that, only while a call held needs them).
CHANGES_KEPT_S = 120.0


def _at(change: StateChange) -> float:
    return change.at


class BoardLedger:
    """Today's queued calls and agent state changes, per call while needed, as
    today's totals once settled (see the module doc). ``config`` is the board's
    configuration the totals are counted under: a new one needs a new ledger
    (``reset`` and a seed)."""

    def __init__(self, config: BoardConfig, day_start: float = 0.0) -> None:
        self.config = config
        self.reset(day_start)

    def reset(self, day_start: float) -> None:
        """Forget everything (before a seed): a ledger of the day starting at ``day_start``."""
        self.day_start = day_start
        self.rows: dict[str, dict[str, Any]] = {}          # call id -> the call as the model shows it
        self.events: dict[str, list[Mapping[str, Any]]] = {}  # call id -> its events of EVENT_KINDS
        self._built: dict[str, list[QueueCall]] = {}      # call id -> its stays (wrap-up not attached)
        self._stale: set[str] = set()                     # calls changed since their stays were built
        self._changes: dict[str, list[StateChange]] = {}  # agent -> its changes held, in time order
        self._spans: dict[str, list[AgentSpan]] = {}      # agent -> the spans of those (rebuilt on change)
        # agent -> (day start, its first closed spans counted, their seconds per state that day),
        # kept while only changes after them come (``_touch``)
        self._closed: dict[str, tuple[float, int, dict[str, float]]] = {}
        self._version: dict[str, int] = defaultdict(int)  # agent -> count of changes to its spans
        # call id -> (its agents' span versions, its stays with wrap-up attached, whether final)
        self._wrapped: dict[str, tuple[tuple[tuple[str, int], ...], list[QueueCall], bool]] = {}
        # What the board reads, kept as calls change (module doc, "Work per board"):
        self._sums = StaySums(lambda q: self.config.of(q).policy)   # the stays as attached, counted
        self._lines: dict[str, list[dict[str, Any]]] = {}  # call id -> its stays' abandoned callers' lines
        self._recheck: set[str] = set()                   # calls to attach and count again
        self._unsettled: set[str] = set()                 # calls whose wrap-up may still change
        # call id -> what it bounds of the agents' cuts: (agent, talk end) pairs, its queue entry
        self._open: dict[str, tuple[tuple[tuple[str, float], ...], float | None]] = {}
        self._settle: list[tuple[float, str]] = []        # (when it may fold, call id): a heap
        self._settle_at: dict[str, float] = {}            # call id -> its entry in the heap now
        self._clear_totals()

    def _clear_totals(self) -> None:
        self._queues: dict[str, QueueCounts] = {}
        self._abandoned: list[dict[str, Any]] = []
        self._seconds: dict[str, float] = dict.fromkeys(AGENT_STATES, 0.0)
        self.horizon = -math.inf                          # calls ended before it are folded
        self.folded_calls = 0
        self.folded_changes = 0

    # -- inputs ----------------------------------------------------------------------

    def seed(self, rows: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]],
             changes: Iterable[StateChange]) -> None:
        """Today's calls, their events and the agents' state changes as stored
        (``calls`` and ``call_events`` rows; the state log), merged under what came
        live meanwhile: a call already held keeps its live row (it is newer), and
        the stored changes go before the live ones."""
        from_db: set[str] = set()
        for r in rows:
            cid = r["call_id"]
            if cid not in self.rows:
                self.rows[cid] = dict(r)
                self._stale.add(cid)
                from_db.add(cid)
        for e in events:
            if e["call_id"] in from_db:
                self.events.setdefault(e["call_id"], []).append(dict(e))
        by_agent: dict[str, list[StateChange]] = defaultdict(list)
        for c in changes:
            by_agent[c.agent_id].append(c)
        for agent, stored in by_agent.items():
            self._changes[agent] = sorted(stored + self._changes.get(agent, []), key=_at)
            self._touch(agent)

    def call(self, call_id: str, row: dict[str, Any], event: Mapping[str, Any] | None = None) -> bool:
        """A queued call as the model shows it now (``row``), with its event when of
        ``EVENT_KINDS`` (``call_id``, ``seq``, ``at``, ``kind``, ``data``). False
        (nothing kept) for a call not held that ended before the horizon."""
        if call_id not in self.rows:
            ended = epoch_seconds(row.get("ended_at"))
            if ended is not None and ended <= self.horizon:
                return False
        self.rows[call_id] = row
        if event is not None:
            self.events.setdefault(call_id, []).append(event)
        self._stale.add(call_id)
        return True

    def agent_change(self, change: StateChange) -> bool:
        """An agent's state change; False when it is the agent's latest already."""
        held = self._changes.setdefault(change.agent_id, [])
        if held:
            last = held[-1]
            if (last.at, last.state, last.reason) == (change.at, change.state, change.reason):
                return False
        if not held or change.at >= held[-1].at:
            held.append(change)
            self._touch(change.agent_id, appended=True)
        else:
            insort(held, change, key=_at)               # after the changes of the same time
            self._touch(change.agent_id)
        return True

    def _touch(self, agent: str, *, appended: bool = False) -> None:
        """The agent's changes held changed: only a change after the others (``appended``)
        leaves the seconds of its closed spans counted as they are."""
        self._spans.pop(agent, None)
        self._version[agent] += 1
        if not appended:
            self._closed.pop(agent, None)

    # -- the board -----------------------------------------------------------------------

    def board(self, now: float, agents: Iterable[AgentLive] = (), *, queues: Sequence[str] = (),
              callbacks: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The board at ``now`` (``acd.wallboard.board``'s, from counts kept as calls
        change: ``acd.wallboard.assemble``), after folding what has settled. ``agents``
        and ``callbacks`` are passed on as they are."""
        self._refresh(now)
        self._fold(now)
        parts = {q: self._sums.parts(q, now=now, day_start=self.day_start, windows=WINDOWS)
                 for q in self._sums.queues()}
        day_start = self.day_start
        lines = [line for held in self._lines.values() for line in held if line["arrived_at"] >= day_start]
        return assemble(parts, lines, agents, self.config, now=now, day_start=day_start, queues=queues,
                        callbacks=callbacks, agent_seconds=self._agent_seconds(now), totals=self.totals())

    def calls(self, now: float) -> list[QueueCall]:
        """The stays of the calls held, their wrap-ups attached (what the board counts)."""
        self._refresh(now)
        return list(self._sums.all_stays())

    def _refresh(self, now: float) -> None:
        """Bring the calls changed since the last time up to date: their stays rebuilt
        (at ``now``), their wrap-ups attached, counted (``StaySums``) and classed for
        folding. A wrap-up is attached again only when its call or its agent's spans
        changed, and while it is not final."""
        recheck = self._recheck
        for cid in self._stale:
            row = self.rows.get(cid)
            self._built[cid] = build_queue_calls([row], self.events.get(cid, []), now=now) if row else []
            self._wrapped.pop(cid, None)
            recheck.add(cid)
        self._stale = set()
        for cid in self._unsettled:
            if cid in recheck:
                continue
            hit = self._wrapped.get(cid)
            if hit is None or any(self._version[a] != v for a, v in hit[0]):
                recheck.add(cid)
        for cid in recheck:
            if cid in self._built:
                self._count(cid)
        recheck.clear()

    def _count(self, cid: str) -> None:
        """One call's stays as the board counts them, and what they say for folding."""
        stays = self._built[cid]
        # attach_wrapup reads only the spans of the agent of an answered stay whose talk is known.
        agents = sorted({c.agent for c in stays if c.outcome == ANSWERED and c.agent is not None
                         and c.talk_s is not None})
        if agents:
            key = tuple((a, self._version[a]) for a in agents)
            hit = self._wrapped.get(cid)
            if hit is None or (not hit[2] and hit[0] != key):
                wrapped = attach_wrapup(stays, [s for a in agents for s in self._agent_spans(a)])
                hit = self._wrapped[cid] = (key, wrapped, all(self._final(c) for c in wrapped))
            counted, final = hit[1], hit[2]
        else:
            counted, final = stays, True
        if final:
            self._unsettled.discard(cid)
        else:
            self._unsettled.add(cid)
        self._sums.set(cid, counted)
        row = self.rows[cid]
        lines = [line for c in counted if c.outcome == ABANDONED
                 for line in [abandoned_line(c, self.config.of(c.queue).policy,
                                             (row.get("caller_num"), row.get("caller_name")))]
                 if line is not None]
        if lines:
            self._lines[cid] = lines
        else:
            self._lines.pop(cid, None)
        # Folding (see _fold): a call ended whose wrap-up is final reads no span any more,
        # and folds once it ended and its stays arrived before the horizon (none waiting).
        ended = epoch_seconds(row.get("ended_at"))
        if ended is not None and final:
            self._open.pop(cid, None)
            if all(c.outcome != WAITING for c in stays):
                at = max([ended] + [c.arrived_at for c in stays])
                if self._settle_at.get(cid) != at:
                    self._settle_at[cid] = at
                    heapq.heappush(self._settle, (at, cid))
            else:
                self._settle_at.pop(cid, None)
            return
        self._settle_at.pop(cid, None)
        # What of its agents' spans it may still read.
        pairs = []
        answered = False
        for c in stays:
            if c.outcome == ANSWERED:
                answered = True
                if c.agent is not None and c.left_at is not None and (c.talk_s is None or not final):
                    pairs.append((c.agent, c.left_at if c.talk_s is None else c.left_at + c.talk_s + c.hold_s))
        joined = epoch_seconds(row.get("queue_joined_at")) if not answered and ended is None else None
        self._open[cid] = (tuple(pairs), joined)

    def _final(self, c: QueueCall) -> bool:
        """Whether ``c``'s wrap-up, as attached, is final: over (or none), and its agent
        changed state since its talk ended, so no later change can become its wrap-up
        (attach_wrapup takes the first span from the talk end, less the tolerance)."""
        if c.outcome != ANSWERED or c.agent is None:
            return True
        if c.talk_s is None or c.wrapup_s is None or c.left_at is None:
            return False
        held = self._changes.get(c.agent)
        return bool(held) and held[-1].at >= c.left_at + c.talk_s + c.hold_s - WRAPUP_TOLERANCE_S

    def _agent_spans(self, agent: str) -> list[AgentSpan]:
        spans = self._spans.get(agent)
        if spans is None:
            spans = self._spans[agent] = spans_from_changes(self._changes.get(agent, ()))
        return spans

    def _agent_seconds(self, now: float) -> dict[str, float]:
        """Seconds per state of the spans held (less what was folded of them) inside
        [day_start, now), as ``agent_figures`` counts them: each agent's closed spans
        counted once, in order, while only changes after them came (``_touch``); its
        open span (and any closed after ``now``) at each board."""
        day_start = self.day_start
        end = max(day_start, now)
        out = dict.fromkeys(AGENT_STATES, 0.0)
        for agent in self._changes:
            spans = self._agent_spans(agent)
            if not spans:
                continue
            hit = self._closed.get(agent)
            n, secs = (hit[1], hit[2]) if hit is not None and hit[0] == day_start else (0, {})
            closed = len(spans) - 1                       # the last one is open (spans_from_changes)
            while n < closed and spans[n].end <= end:     # ended by now: its seconds are final
                v = spans[n].seconds(day_start, end)
                if v > 0:
                    secs[spans[n].state] = secs.get(spans[n].state, 0.0) + v
                n += 1
            self._closed[agent] = (day_start, n, secs)
            for state, v in secs.items():
                out[state] += v
            for span in spans[n:]:                        # the open one, and any ending after now
                v = span.seconds(day_start, end)
                if v > 0:
                    out[span.state] += v
        return out

    def spans(self) -> list[AgentSpan]:
        """The spans of the changes held: by agent, then time (``spans_from_changes``)."""
        out: list[AgentSpan] = []
        for agent in sorted(self._changes):
            out.extend(self._agent_spans(agent))
        return out

    def totals(self) -> DayTotals:
        """Today's totals of what was folded."""
        return DayTotals(dict(self._queues), list(self._abandoned), dict(self._seconds))

    # -- folding ---------------------------------------------------------------------------

    def _fold(self, now: float) -> set[str]:
        """Fold the calls settled at ``now`` and the agents' spans no call held needs
        (module doc), after ``_refresh``. Returns the call ids folded."""
        horizon = now - FOLD_AFTER_S
        self.horizon = max(self.horizon, horizon)
        folded: list[str] = []
        settle, settle_at = self._settle, self._settle_at
        while settle and settle[0][0] <= horizon:
            at, cid = heapq.heappop(settle)
            if settle_at.get(cid) == at:              # not an entry made stale by a later change
                del settle_at[cid]
                folded.append(cid)
        cut_all = now - CHANGES_KEPT_S
        cut: dict[str, float] = {}
        for pairs, joined in self._open.values():
            for agent, talk_end in pairs:
                if talk_end < cut.get(agent, math.inf):
                    cut[agent] = talk_end
            if joined is not None and joined < cut_all:
                cut_all = joined
        if folded:
            self._fold_calls(folded, now)
        for agent, held in self._changes.items():
            if len(held) < 2:
                continue                                  # its last change: the state it is in
            before = min(cut_all, cut.get(agent, math.inf)) - WRAPUP_TOLERANCE_S
            if held[1].at >= before:
                continue                                  # none to fold (the bisect below would say 0)
            if self._fold_changes(held, bisect_left(held, before, key=_at) - 1):
                self._touch(agent)
        return set(folded)

    def _fold_calls(self, folded: list[str], now: float) -> None:
        per_queue: dict[str, list[QueueCall]] = defaultdict(list)
        lines = []
        for cid in folded:
            row = self.rows.pop(cid)
            self.events.pop(cid, None)
            self._built.pop(cid, None)
            self._wrapped.pop(cid, None)
            self._stale.discard(cid)
            self._unsettled.discard(cid)
            self._open.pop(cid, None)
            self._lines.pop(cid, None)
            counted = self._sums.stays(cid)
            self._sums.remove(cid)
            for c in counted:
                per_queue[c.queue].append(c)
                if c.arrived_at >= self.day_start:
                    line = abandoned_line(c, self.config.of(c.queue).policy,
                                          (row.get("caller_num"), row.get("caller_name")))
                    if line is not None:
                        lines.append(line)
        for queue, stays in per_queue.items():
            today = [c for c in stays if c.arrived_at >= self.day_start]
            counts = self._queues.get(queue, QueueCounts())
            # A queue with only yesterday's stays stays listed, as it was while they were held.
            self._queues[queue] = counts + count_calls(today, self.config.of(queue).policy, now=now) if today \
                else counts
        if lines:
            self._abandoned = sorted(self._abandoned + lines, key=abandoned_order)[:self.config.abandoned_listed]
        self.folded_calls += len(folded)

    def _fold_changes(self, held: list[StateChange], n: int) -> bool:
        """Fold the first ``n`` changes of an agent: each lasted until the next one."""
        if n <= 0:
            return False
        for ch, nxt in zip(held[:n], held[1:n + 1]):
            # What agent_figures counts of this span today (it ended before now).
            secs = max(0.0, nxt.at - max(ch.at, self.day_start))
            if secs > 0:
                self._seconds[ch.state] = self._seconds.get(ch.state, 0.0) + secs
        del held[:n]
        self.folded_changes += n
        return True

    # -- the day ---------------------------------------------------------------------------

    def new_day(self, day_start: float) -> None:
        """At local midnight: yesterday's totals and settled calls go; the calls
        waiting (and those changed since the last board) stay, and each agent's
        last change (the state it is in)."""
        keep = {cid for cid, cs in self._built.items() if any(c.outcome == WAITING for c in cs)}
        keep |= self.rows.keys() & self._stale
        self.rows = {k: v for k, v in self.rows.items() if k in keep}
        self.events = {k: v for k, v in self.events.items() if k in keep}
        self._built = {k: v for k, v in self._built.items() if k in keep}
        self._wrapped.clear()
        self._sums = StaySums(lambda q: self.config.of(q).policy)
        self._lines.clear()
        self._unsettled.clear()
        self._open.clear()
        self._settle.clear()
        self._settle_at.clear()
        self._recheck = set(self._built)                  # counted again at the next board
        self._changes = {a: held[-1:] for a, held in self._changes.items() if held}
        for agent in self._changes:
            self._touch(agent)
        self._clear_totals()
        self.day_start = day_start

    def sizes(self) -> dict[str, int]:
        """What is held per call and per change now, and what was folded today."""
        return {"calls": len(self.rows), "events": sum(len(v) for v in self.events.values()),
                "stays": sum(len(v) for v in self._built.values()),
                "changes": sum(len(v) for v in self._changes.values()),
                "folded_calls": self.folded_calls, "folded_changes": self.folded_changes}
