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

Work per board: the calls changed since the last one are rebuilt, and a call's
wrap-up is attached again only when its agent's spans changed and it is not
final; the board itself runs over the calls held. So memory and work per board
follow the calls of the last half hour (and those still waiting or talking), not
the hour of the day: BENCHMARKS.md, "Wallboard over a long day". Figures are
those of the unfolded calls, up to the order of float additions (the last bits,
under the board's rounding).

Limits: a state change stamped before its agent's latest one (the router stamps
changes as they happen) changes no wrap-up already final, nor what was folded;
an event for a call the ledger no longer holds that ended before the horizon is
refused (``call`` returns False): the call was folded, or belongs to a past day.
"""
from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import defaultdict
from typing import Any, Iterable, Iterator, Mapping, Sequence

from acd import reports
from acd.decisions import AGENT_STATES
from acd.figures import (
    ANSWERED, WAITING, WRAPUP_TOLERANCE_S, AgentSpan, QueueCall, QueueCounts, StateChange, attach_wrapup,
    count_calls, spans_from_changes,
)
from acd.reports import build_queue_calls, epoch_seconds
from acd.wallboard import WINDOWS, AgentLive, BoardConfig, DayTotals, abandoned_line, abandoned_order, board

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
        self._version: dict[str, int] = defaultdict(int)  # agent -> count of changes to its spans
        # call id -> (its agents' span versions, its stays with wrap-up attached, whether final)
        self._wrapped: dict[str, tuple[tuple[tuple[str, int], ...], list[QueueCall], bool]] = {}
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
        else:
            insort(held, change, key=_at)               # after the changes of the same time
        self._touch(change.agent_id)
        return True

    def _touch(self, agent: str) -> None:
        self._spans.pop(agent, None)
        self._version[agent] += 1

    # -- the board -----------------------------------------------------------------------

    def board(self, now: float, agents: Iterable[AgentLive] = (), *, queues: Sequence[str] = (),
              callbacks: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The board at ``now`` (``acd.wallboard.board``), after folding what has
        settled. ``agents`` and ``callbacks`` are passed on as they are."""
        calls = self.calls(now)
        folded = self._fold(now, calls)
        if folded:
            calls = [c for c in calls if c.call_id not in folded]
        spans = self.spans()                              # less what was folded of them
        return board(calls, agents, self.config, now=now, day_start=self.day_start, queues=queues,
                     callers=_Callers(self.rows), callbacks=callbacks, agent_spans=spans, totals=self.totals())

    def calls(self, now: float) -> list[QueueCall]:
        """The stays of the calls held, their wrap-ups attached. Only the calls changed
        since the last time are rebuilt (at ``now``), and a wrap-up is attached again
        only when its call or its agent's spans changed, and while it is not final."""
        for cid in self._stale:
            row = self.rows.get(cid)
            self._built[cid] = build_queue_calls([row], self.events.get(cid, []), now=now) if row else []
            self._wrapped.pop(cid, None)
        self._stale = set()
        out: list[QueueCall] = []
        for cid, stays in self._built.items():
            hit = self._wrapped.get(cid)
            if hit is not None and hit[2]:
                out.extend(hit[1])
                continue
            # attach_wrapup reads only the spans of the agent of an answered stay whose talk is known.
            agents = sorted({c.agent for c in stays if c.outcome == ANSWERED and c.agent is not None
                             and c.talk_s is not None})
            if not agents:
                out.extend(stays)
                continue
            key = tuple((a, self._version[a]) for a in agents)
            if hit is None or hit[0] != key:
                wrapped = attach_wrapup(stays, [s for a in agents for s in self._agent_spans(a)])
                hit = self._wrapped[cid] = (key, wrapped, all(self._final(c) for c in wrapped))
            out.extend(hit[1])
        return out

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

    def _fold(self, now: float, calls: Sequence[QueueCall]) -> set[str]:
        """Fold the calls settled at ``now`` and the agents' spans no call held needs
        (module doc). ``calls``: ``calls(now)``, just made. Returns the call ids folded."""
        horizon = now - FOLD_AFTER_S
        self.horizon = max(self.horizon, horizon)
        folded: list[str] = []
        cut_all = now - CHANGES_KEPT_S
        cut: dict[str, float] = {}
        for cid, row in self.rows.items():
            stays = self._built.get(cid, ())               # as attached, but for the wrap-up
            ended = epoch_seconds(row.get("ended_at"))
            hit = self._wrapped.get(cid)
            final = hit is None or hit[2]                 # no wrap-up to attach, or attached for good
            if ended is not None and final:               # its talk is known: it reads no span any more
                if ended <= horizon and all(c.outcome != WAITING and c.arrived_at <= horizon for c in stays):
                    folded.append(cid)
                continue
            # What of its agents' spans it may still read.
            answered = False
            for c in stays:
                if c.outcome == ANSWERED:
                    answered = True
                    if c.agent is not None and c.left_at is not None and (c.talk_s is None or not final):
                        talk_end = c.left_at if c.talk_s is None else c.left_at + c.talk_s + c.hold_s
                        cut[c.agent] = min(cut.get(c.agent, math.inf), talk_end)
            if not answered and ended is None:
                joined = epoch_seconds(row.get("queue_joined_at"))
                if joined is not None:
                    cut_all = min(cut_all, joined)
        if folded:
            self._fold_calls(folded, now)
        for agent, held in self._changes.items():
            before = min(cut_all, cut.get(agent, math.inf)) - WRAPUP_TOLERANCE_S
            if self._fold_changes(held, bisect_left(held, before, key=_at) - 1):
                self._touch(agent)
        return set(folded)

    def _fold_calls(self, folded: list[str], now: float) -> None:
        per_queue: dict[str, list[QueueCall]] = defaultdict(list)
        lines = []
        for cid in folded:
            row = self.rows.pop(cid)
            self.events.pop(cid, None)
            built = self._built.pop(cid, [])
            hit = self._wrapped.pop(cid, None)
            self._stale.discard(cid)
            for c in hit[1] if hit is not None else built:
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


class _Callers(Mapping[str, tuple[Any, Any]]):
    """Call id -> (number, name) of the calls held, read when asked (the board asks
    for its abandoned callers only)."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        self._rows = rows

    def __getitem__(self, call_id: str) -> tuple[Any, Any]:
        row = self._rows[call_id]
        return row.get("caller_num"), row.get("caller_name")

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
