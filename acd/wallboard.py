"""The live wallboard and the interval reports, as data. Pure: no I/O, no clock.

Figures come from ``acd.figures`` and nothing else, so the board, the reports
and docs/metrics.md say the same thing. This module adds what a board needs
around them:

- ``BoardConfig``: each queue's service-level policy (threshold, variant, short
  abandons, target) and its red/amber/green thresholds per figure, read from a
  small TOML document (``parse_board_config``; defaults from the routing
  configuration's ``sl_seconds``/``sl_percent``);
- ``board``: one snapshot: per queue calls waiting, longest wait, today's and
  the last 15/30 minutes' figures with their colours, the abandoned callers of
  today (for the call-back button), agents by state with time in state; the
  calls of the day may come partly as ``DayTotals`` (``acd.ledger`` folds the
  settled ones: the day figures add up);
- ``alerts``: the figures whose colour got worse since the last snapshot;
- ``report_rows``: per interval per queue (and per agent) rows, from counts
  (``QueueCounts``: raw calls or stored 15-minute rollups, which add up);
- ``csv_text``: those rows as CSV, with formula-looking cells neutralised.

    CtiError
    └── MetricsError        a bad board configuration (names the queue and field)
"""
from __future__ import annotations

import csv
import io
import math
import tomllib
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Iterable, Mapping, Sequence

from acd.board_sums import QueueParts
from acd.decisions import AGENT_STATES, TaskQueueStats
from acd.figures import (
    ABANDONED, SL_VARIANTS, WAITING, AgentFigures, AgentSpan, MetricsError, QueueCall, QueueCounts, Rag,
    SlPolicy, agent_figures, agent_figures_from_seconds, bucket_start, count_calls, figures_from_counts, next_bucket,
    split_spans,
)

__all__ = [
    "FIGURES", "QueueBoardConfig", "BoardConfig", "AgentLive", "DayTotals", "parse_board_config",
    "load_board_config", "board", "assemble", "abandoned_line", "abandoned_order", "alerts", "colours_of", "report_rows",
    "agent_report_rows", "split_agent_seconds", "csv_text", "ROLLUP_GRANULARITIES", "task_counts",
    "task_queue_rows",
]

# Figures that may carry thresholds: name -> higher is better.
FIGURES: dict[str, bool] = {
    "service_level": True,          # today, the queue's variant
    "service_level_15": True,       # last 15 minutes
    "service_level_30": True,       # last 30 minutes
    "longest_waiting_s": False,     # of the calls waiting now
    "waiting": False,
    "asa_s": False,
    "aht_s": False,
    "abandon_rate": False,
}
WINDOWS = {"last_15": 900.0, "last_30": 1800.0}
# Report lengths that are whole numbers of 15-minute local intervals (rollups add up to them).
ROLLUP_GRANULARITIES = ("15min", "30min", "60min", "day", "week")
# Order agents are listed in on the board.
_STATE_ORDER = {s: i for i, s in enumerate(("on_call", "reserved", "wrapup", "available", "not_ready",
                                             "logged_out"))}


@dataclass(frozen=True, slots=True)
class QueueBoardConfig:
    policy: SlPolicy
    rag: Mapping[str, Rag]


@dataclass(frozen=True, slots=True)
class BoardConfig:
    queues: Mapping[str, QueueBoardConfig]
    default: QueueBoardConfig
    abandoned_listed: int = 50          # abandoned callers shown, newest first

    def of(self, queue: str) -> QueueBoardConfig:
        return self.queues.get(queue, self.default)


def _default_rag(target: float) -> dict[str, Rag]:
    return {
        "service_level": Rag(amber=target, red=max(0.0, target - 0.1)),
        "service_level_15": Rag(amber=target, red=max(0.0, target - 0.1)),
        "service_level_30": Rag(amber=target, red=max(0.0, target - 0.1)),
        "longest_waiting_s": Rag(amber=60.0, red=120.0, higher_is_better=False),
        "asa_s": Rag(amber=30.0, red=60.0, higher_is_better=False),
        "abandon_rate": Rag(amber=0.05, red=0.10, higher_is_better=False),
    }


def parse_board_config(doc: Mapping[str, Any], routing: Mapping[str, tuple[float, float]] | None = None) -> BoardConfig:
    """The board configuration from a TOML-shaped document::

        abandoned_listed = 50
        [defaults]                    # every queue, unless the queue says otherwise
        variant = "abandons_against"  # abandons_ignored | abandons_against | abandons_in_favour
        short_abandon_s = 5
        [defaults.thresholds]
        longest_waiting_s = { amber = 60, red = 120 }
        [queues.sales]
        threshold_s = 30
        target = 0.9
        [queues.sales.thresholds]
        service_level = { amber = 0.9, red = 0.8 }

    ``routing`` gives each routed queue's ``(sl_seconds, sl_percent / 100)``, the
    defaults for ``threshold_s`` and ``target``. Whether a figure is better high
    or low is fixed (``FIGURES``).

    Raises: ``MetricsError`` naming the queue and field.
    """
    routing = dict(routing or {})
    if not isinstance(doc, Mapping):
        raise MetricsError("the board configuration must be a table")
    unknown = set(doc) - {"defaults", "queues", "abandoned_listed"}
    if unknown:
        raise MetricsError(f"board configuration: unknown keys {sorted(unknown)}")
    defaults = doc.get("defaults", {}) or {}
    queues_doc = doc.get("queues", {}) or {}
    if not isinstance(defaults, Mapping) or not isinstance(queues_doc, Mapping):
        raise MetricsError("board configuration: defaults and queues must be tables")
    listed = doc.get("abandoned_listed", 50)
    if isinstance(listed, bool) or not isinstance(listed, int) or not 0 <= listed <= 1000:
        raise MetricsError(f"abandoned_listed must be an integer 0..1000, got {listed!r}")

    def one(where: str, table: Mapping[str, Any], sl: tuple[float, float] | None) -> QueueBoardConfig:
        merged = {**defaults, **table}
        merged_thr = {**(defaults.get("thresholds") or {}), **(table.get("thresholds") or {})}
        bad = set(merged) - {"threshold_s", "target", "variant", "short_abandon_s", "thresholds"}
        if bad:
            raise MetricsError(f"{where}: unknown keys {sorted(bad)}")
        threshold, target = sl if sl is not None else (20.0, 0.8)
        try:
            policy = SlPolicy(threshold_s=_num(where, "threshold_s", merged.get("threshold_s", threshold)),
                              variant=str(merged.get("variant", "abandons_against")),
                              short_abandon_s=_num(where, "short_abandon_s", merged.get("short_abandon_s", 0.0)),
                              target=_num(where, "target", merged.get("target", target)))
        except MetricsError as exc:
            raise MetricsError(f"{where}: {exc}") from None
        rag = _default_rag(policy.target)
        for name, value in merged_thr.items():
            if name not in FIGURES:
                raise MetricsError(f"{where}.thresholds: unknown figure {name!r} (one of {', '.join(FIGURES)})")
            if not isinstance(value, Mapping) or set(value) != {"amber", "red"}:
                raise MetricsError(f"{where}.thresholds.{name}: give amber and red, e.g. {{ amber = 30, red = 60 }}")
            try:
                rag[name] = Rag(amber=_num(where, f"{name}.amber", value["amber"]),
                                red=_num(where, f"{name}.red", value["red"]), higher_is_better=FIGURES[name])
            except MetricsError as exc:
                raise MetricsError(f"{where}.thresholds.{name}: {exc}") from None
        return QueueBoardConfig(policy, rag)

    queues = {}
    for qid, table in queues_doc.items():
        if not isinstance(table, Mapping):
            raise MetricsError(f"queues.{qid} must be a table")
        queues[str(qid)] = one(f"queues.{qid}", table, routing.get(str(qid)))
    for qid, sl in routing.items():
        if qid not in queues:
            queues[qid] = one(f"queues.{qid}", {}, sl)
    return BoardConfig(queues, one("defaults", {}, None), listed)


def load_board_config(path: Any, routing: Mapping[str, tuple[float, float]] | None = None) -> BoardConfig:
    """``parse_board_config`` of a TOML file (None: defaults only). Raises ``MetricsError``."""
    if path is None:
        return parse_board_config({}, routing)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MetricsError(f"board configuration {str(path)!r}: {exc}") from None
    return parse_board_config(doc, routing)


def _num(where: str, name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MetricsError(f"{where}: {name} must be a number, got {v!r}")
    return float(v)


# -- the live board ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentLive:
    """An agent as the router sees it now."""

    agent_id: str
    name: str
    state: str
    reason: str
    since: float
    call_id: str | None
    queue_id: str | None
    pending: str | None = None


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def _figures(counts: QueueCounts, policy: SlPolicy, more: QueueCounts | None = None) -> dict[str, Any]:
    f = figures_from_counts(counts + more if more is not None else counts, policy)
    return {"arrived": f.arrived, "offered": f.offered, "answered": f.answered, "abandoned": f.abandoned,
            "timed_out": f.timed_out, "short_abandoned": f.short_abandoned, "waiting": f.waiting,
            "answered_within": f.answered_within, "service_level": _r(f.service_level, 4),
            "asa_s": _r(f.asa_s), "aht_s": _r(f.aht_s), "abandon_rate": _r(f.abandon_rate, 4),
            "handled": f.handled, "longest_wait_s": _r(f.longest_wait_s)}


@dataclass(frozen=True, slots=True)
class DayTotals:
    """What calls and agent spans folded out of the live board's per-call data leave
    of today (``acd.ledger``): the day figures are sums, counts and maxima, so these
    plus the calls still held give the figures of all of them.

    - ``queues``: per queue, the counts (``QueueCounts``, under the queue's policy
      in the board's configuration) of the folded calls' stays that arrived today;
    - ``abandoned``: the newest abandoned callers among them, as the board lists
      them (without ``callback``), at most ``abandoned_listed``;
    - ``agent_seconds``: seconds per agent state today of the folded spans.
    """

    queues: Mapping[str, QueueCounts]
    abandoned: Sequence[Mapping[str, Any]] = ()
    agent_seconds: Mapping[str, float] | None = None


def abandoned_line(c: QueueCall, policy: SlPolicy, caller: tuple[str | None, str | None]) -> dict[str, Any] | None:
    """``c`` as a line of the board's abandoned callers (``caller``: its number and
    name), or None when it is not listed there: not abandoned, or a short abandon."""
    if c.outcome != ABANDONED or c.wait_s is None or c.wait_s < policy.short_abandon_s:
        return None
    number, name = caller
    return {"call_id": c.call_id, "queue": c.queue, "arrived_at": c.arrived_at, "left_at": c.left_at,
            "waited_s": _r(c.wait_s), "number": number, "name": name}


def abandoned_order(line: Mapping[str, Any]) -> tuple[float, str]:
    """The order of the abandoned callers: the last to leave first."""
    return -(line["left_at"] or 0), line["call_id"]


def board(calls: Iterable[QueueCall], agents: Iterable[AgentLive], config: BoardConfig, *, now: float,
          day_start: float, queues: Sequence[str] = (), callers: Mapping[str, tuple[str | None, str | None]] | None = None,
          callbacks: Mapping[str, str] | None = None, agent_spans: Iterable[AgentSpan] = (),
          totals: DayTotals | None = None) -> dict[str, Any]:
    """One wallboard snapshot (a JSON-ready dict).

    ``calls``: the queue calls known (today's, and any still waiting); figures
    "today" are those arriving at or after ``day_start``, "last_15"/"last_30"
    those arriving in the rolling window (docs/metrics.md, "Rolling windows");
    "waiting" and "longest_waiting_s" are over every call still waiting.
    ``queues``: listed even without calls. ``callers``: call id -> (number,
    name) for the abandoned list; ``callbacks``: call id -> status of a
    call-back filed for it. ``agent_spans``: today's agent state spans, for
    occupancy and utilization today. ``totals``: today's calls and spans that
    are not in ``calls`` and ``agent_spans`` any more (settled, out of every
    rolling window: ``acd.ledger``), added to the day figures.
    """
    callers = callers or {}
    by_queue: dict[str, list[QueueCall]] = {}
    for c in calls:
        by_queue.setdefault(c.queue, []).append(c)
    parts: dict[str, QueueParts] = {}
    abandoned: list[dict[str, Any]] = []
    for qid in sorted(by_queue):
        qcalls = by_queue[qid]
        policy = config.of(qid).policy
        today = [c for c in qcalls if c.arrived_at >= day_start]
        waiting = [c for c in qcalls if c.outcome == WAITING]
        parts[qid] = QueueParts(
            count_calls(today, policy, now=now),
            {name: count_calls([c for c in qcalls if now - window < c.arrived_at <= now], policy, now=now)
             for name, window in WINDOWS.items()},
            len(waiting), max((now - c.arrived_at for c in waiting), default=None))
        for c in today:
            if c.outcome == ABANDONED:
                line = abandoned_line(c, policy, callers.get(c.call_id, (None, None)))
                if line is not None:
                    abandoned.append(line)
    seconds = agent_figures(agent_spans, day_start, max(day_start, now)).seconds
    return assemble(parts, abandoned, agents, config, now=now, day_start=day_start, queues=queues,
                    callbacks=callbacks, agent_seconds=seconds, totals=totals)


def assemble(parts: Mapping[str, QueueParts], abandoned: Iterable[Mapping[str, Any]], agents: Iterable[AgentLive],
             config: BoardConfig, *, now: float, day_start: float, queues: Sequence[str] = (),
             callbacks: Mapping[str, str] | None = None, agent_seconds: Mapping[str, float] | None = None,
             totals: DayTotals | None = None) -> dict[str, Any]:
    """The snapshot of ``board`` from its queues' counts already made (``parts``: per
    queue with stays, its counts today and in each of ``WINDOWS``, and its stays
    waiting; ``acd.board_sums`` keeps them as calls change), the abandoned callers'
    lines of today's stays (``abandoned_line``) and the agents' seconds per state
    today (of the spans held: ``agent_figures(...).seconds``); ``totals`` and the
    rest as for ``board``."""
    callbacks = callbacks or {}
    folded = totals.queues if totals is not None else {}
    empty = QueueParts(QueueCounts(), {name: QueueCounts() for name in WINDOWS}, 0, None)
    out_queues = []
    for qid in sorted(set(queues) | set(folded) | set(parts)):
        p = parts.get(qid, empty)
        cfg = config.of(qid)
        entry: dict[str, Any] = {
            "queue": qid, "policy": cfg.policy.label, "variant": cfg.policy.variant,
            "variant_name": SL_VARIANTS[cfg.policy.variant], "target": cfg.policy.target,
            "threshold_s": cfg.policy.threshold_s,
            "waiting": p.waiting,
            "longest_waiting_s": _r(p.longest_waiting_s),
            "today": _figures(p.today, cfg.policy, folded.get(qid)),
        }
        for name in WINDOWS:
            entry[name] = _figures(p.windows[name], cfg.policy)
        values = {"service_level": entry["today"]["service_level"],
                  "service_level_15": entry["last_15"]["service_level"],
                  "service_level_30": entry["last_30"]["service_level"],
                  "longest_waiting_s": entry["longest_waiting_s"], "waiting": entry["waiting"],
                  "asa_s": entry["today"]["asa_s"], "aht_s": entry["today"]["aht_s"],
                  "abandon_rate": entry["today"]["abandon_rate"]}
        entry["colours"] = {k: cfg.rag[k].colour(v) for k, v in values.items() if k in cfg.rag}
        entry["thresholds"] = {k: {"amber": r.amber, "red": r.red, "higher_is_better": r.higher_is_better}
                               for k, r in cfg.rag.items()}
        out_queues.append(entry)
    lines = list(abandoned)
    if totals is not None:
        lines += totals.abandoned
    lines.sort(key=abandoned_order)
    lines = [{**a, "callback": callbacks.get(a["call_id"])} for a in lines[:config.abandoned_listed]]
    agent_list = sorted(agents, key=lambda a: (_STATE_ORDER.get(a.state, 9), a.since, a.agent_id))
    counts = dict.fromkeys(AGENT_STATES, 0)
    for a in agent_list:
        counts[a.state] = counts.get(a.state, 0) + 1
    seconds = {k: (agent_seconds or {}).get(k, 0.0) for k in AGENT_STATES}
    if totals is not None and totals.agent_seconds:
        seconds = {k: v + totals.agent_seconds.get(k, 0.0) for k, v in seconds.items()}
    af: AgentFigures = agent_figures_from_seconds(seconds)
    return {
        "type": "wallboard", "at": now, "day_start": day_start,
        "queues": out_queues,
        "abandoned": lines,
        "agents": [{"agent_id": a.agent_id, "name": a.name, "state": a.state, "reason": a.reason,
                    "since": a.since,
                    # None: never changed state since the daemon started (no "since")
                    "in_state_s": _r(max(0.0, now - a.since), 1) if a.since > 0 else None, "call_id": a.call_id,
                    "queue": a.queue_id, "pending": a.pending} for a in agent_list],
        "agent_counts": counts,
        "occupancy_today": _r(af.occupancy, 4), "utilization_today": _r(af.utilization, 4),
    }


# offered, answered, answered within the SL, abandoned, overflowed (on_max_wait)
TaskCounts = tuple[int, ...]


def task_counts(stats: Iterable[TaskQueueStats]) -> dict[str, TaskCounts]:
    """The task router's running counters per queue (kept at local midnight as the
    base the day's figures are counted from)."""
    return {s.queue_id: (s.offered, s.answered, s.answered_within_sl, s.abandoned, s.overflowed) for s in stats}


def task_queue_rows(stats: Iterable[TaskQueueStats], base: Mapping[str, TaskCounts],
                    names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The wallboard's rows for task queues (chat, e-mail, message), from the task
    router's figures (``acd.tasks.TaskRouter.queue_stats``): waiting and longest
    waiting now, and the day's offered, answered, abandoned and overflowed (to the
    queue's ``on_max_wait``), counted from ``base``
    (the counters at local midnight, ``task_counts``). The router counts from its own
    start: a counter below its base (the daemon started again, a takeover) counts from
    zero. Ordered by channel, then queue id. Pure."""
    names = names or {}
    rows = []
    for s in sorted(stats, key=lambda s: (s.channel, s.queue_id)):
        now = (s.offered, s.answered, s.answered_within_sl, s.abandoned, s.overflowed)
        b = (tuple(base.get(s.queue_id, ())) + (0,) * 5)[:5]
        if any(n < o for n, o in zip(now, b)):
            b = (0,) * 5
        offered, answered, within, abandoned, overflowed = (n - o for n, o in zip(now, b))
        rows.append({
            "queue": s.queue_id, "name": names.get(s.queue_id) or s.queue_id, "channel": s.channel,
            "waiting": s.waiting, "longest_waiting_s": _r(s.longest_wait_s if s.waiting else None), "open": s.open,
            "today": {"offered": offered, "answered": answered, "abandoned": abandoned, "overflowed": overflowed,
                      "service_level": _r(within / offered if offered else None, 4)},
            "sl_target": s.sl_target / 100, "sl_seconds": s.sl_seconds, "agents_eligible": s.agents_eligible})
    return rows


_RANK = {None: 0, "green": 0, "amber": 1, "red": 2}


def alerts(previous: Mapping[str, Mapping[str, str | None]], snapshot: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The figures whose colour got worse (green -> amber -> red; no value counts as
    green) since ``previous`` (queue -> figure -> colour, as in an earlier snapshot's
    ``colours``). Each alert names the queue, the figure, both colours and the value,
    and says it in words (``text``: ``alert_text``)."""
    out = []
    names = snapshot.get("queue_names") or {}
    for q in snapshot["queues"]:
        before = previous.get(q["queue"], {})
        for name, colour in q["colours"].items():
            if _RANK[colour] > _RANK[before.get(name)]:
                value = _board_value(q, name)
                out.append({"queue": q["queue"], "figure": name, "from": before.get(name), "to": colour,
                            "value": value,
                            "text": alert_text(q, name, colour, value, names.get(q["queue"]))})
    return out


FIGURE_WORDS = {
    "service_level": "service level today", "service_level_15": "service level over the last 15 min",
    "service_level_30": "service level over the last 30 min", "longest_waiting_s": "longest wait",
    "waiting": "calls waiting", "asa_s": "average speed of answer today", "aht_s": "average handle time today",
    "abandon_rate": "abandon rate today",
}


def _shown(name: str, v: float | None) -> str:
    if v is None:
        return "–"
    if name.startswith("service_level") or name == "abandon_rate":
        return f"{round(v * 100, 1):g}%"
    if name.endswith("_s"):
        return f"{round(v):d} s"
    return f"{v:g}"


def alert_text(q: Mapping[str, Any], name: str, colour: str | None, value: Any, queue_name: str | None = None) -> str:
    """An alert in words, with the limit crossed: ``Sales: service level over the last
    30 min 70% < 80% target`` (the amber limit of a service level is its target by
    default), ``billing: abandon rate today 100% > 10% red threshold``. ``q``: the
    board's queue entry; ``queue_name``: its name (default: its id)."""
    who = queue_name or q["queue"]
    words = FIGURE_WORDS.get(name, name.replace("_", " "))
    limits = (q.get("thresholds") or {}).get(name)
    if limits is None or colour not in ("amber", "red"):
        return f"{who}: {words} {_shown(name, value)} ({colour})"
    limit = limits[colour]
    op = "<" if limits["higher_is_better"] else ">"
    sl = name.startswith("service_level")
    kind = "target" if sl and limit == q.get("target") else f"{colour} threshold"
    if sl and kind != "target" and q.get("target") is not None:
        kind += f" (target {_shown(name, q['target'])})"
    return f"{who}: {words} {_shown(name, value)} {op} {_shown(name, limit)} {kind}"


def colours_of(snapshot: Mapping[str, Any]) -> dict[str, dict[str, str | None]]:
    return {q["queue"]: dict(q["colours"]) for q in snapshot["queues"]}


def _board_value(q: Mapping[str, Any], name: str) -> Any:
    if name == "service_level":
        return q["today"]["service_level"]
    if name in ("service_level_15", "service_level_30"):
        return q[f"last_{name[-2:]}"]["service_level"]
    if name in ("longest_waiting_s", "waiting"):
        return q[name]
    return q["today"].get(name)


# -- reports ----------------------------------------------------------------------------


def report_rows(counts: Mapping[tuple[str, float], QueueCounts], policies: Mapping[str, SlPolicy] | BoardConfig,
                granularity: str, tz: tzinfo) -> list[dict[str, Any]]:
    """Interval rows per queue: ``counts`` keyed by ``(queue, interval start)`` at any
    finer alignment (15-minute rollups, or raw per-call counts grouped by
    ``granularity`` already) are added into ``granularity`` intervals.
    Rows are ordered by queue then interval; each has the interval's local
    start, offered, answered, abandoned, timed out, service level (the queue's
    variant), ASA, AHT, abandon rate and longest wait."""
    merged: dict[tuple[str, float], QueueCounts] = {}
    for (queue, start), k in counts.items():
        key = (queue, bucket_start(start, granularity, tz))
        merged[key] = merged[key] + k if key in merged else k
    rows = []
    for (queue, start) in sorted(merged):
        policy = policies.of(queue).policy if isinstance(policies, BoardConfig) else policies.get(queue, SlPolicy())
        f = figures_from_counts(merged[(queue, start)], policy)
        rows.append({"queue": queue, "start": start, "end": next_bucket(start, granularity, tz),
                     "local_start": datetime.fromtimestamp(start, tz).isoformat(),
                     "offered": f.offered, "answered": f.answered, "abandoned": f.abandoned,
                     "timed_out": f.timed_out, "short_abandoned": f.short_abandoned, "waiting": f.waiting,
                     "answered_within": f.answered_within, "service_level": _r(f.service_level, 4),
                     "asa_s": _r(f.asa_s), "aht_s": _r(f.aht_s), "handled": f.handled,
                     "abandon_rate": _r(f.abandon_rate, 4), "longest_wait_s": _r(f.longest_wait_s)})
    return rows


def agent_report_rows(seconds: Mapping[tuple[str, float], tuple[Mapping[str, float], Mapping[str, float]]],
                      handled: Mapping[tuple[str, float], tuple[int, float]], granularity: str,
                      tz: tzinfo) -> list[dict[str, Any]]:
    """Interval rows per agent: ``seconds`` keyed by ``(agent, interval start)`` hold
    (seconds per state, not-ready seconds per reason), as ``agent_figures`` gives
    them; ``handled`` the (answered calls handled, their handle seconds) by the same key.
    Both are added into ``granularity`` intervals. Occupancy = busy / ready,
    utilization = busy / logged in (docs/metrics.md)."""
    merged: dict[tuple[str, float], list[Any]] = {}
    for (agent, start), (by_state, by_reason) in seconds.items():
        key = (agent, bucket_start(start, granularity, tz))
        m = merged.setdefault(key, [dict.fromkeys(AGENT_STATES, 0.0), {}, 0, 0.0])
        for s, v in by_state.items():
            m[0][s] = m[0].get(s, 0.0) + v
        for r, v in by_reason.items():
            m[1][r] = m[1].get(r, 0.0) + v
    for (agent, start), (n, secs) in handled.items():
        key = (agent, bucket_start(start, granularity, tz))
        m = merged.setdefault(key, [dict.fromkeys(AGENT_STATES, 0.0), {}, 0, 0.0])
        m[2] += n
        m[3] += secs
    rows = []
    for (agent, start) in sorted(merged):
        by_state, by_reason, n, secs = merged[(agent, start)]
        busy = by_state["reserved"] + by_state["on_call"] + by_state["wrapup"]
        ready = busy + by_state["available"]
        logged_in = sum(v for s, v in by_state.items() if s != "logged_out")
        rows.append({"agent": agent, "start": start, "end": next_bucket(start, granularity, tz),
                     "local_start": datetime.fromtimestamp(start, tz).isoformat(),
                     "answered": n, "aht_s": _r(secs / n if n else None),
                     "logged_in_s": _r(logged_in, 1), "ready_s": _r(ready, 1), "busy_s": _r(busy, 1),
                     "occupancy": _r(busy / ready if ready else None, 4),
                     "utilization": _r(busy / logged_in if logged_in else None, 4),
                     "seconds": {s: _r(v, 1) for s, v in by_state.items()},
                     "not_ready_by_reason": {r: _r(v, 1) for r, v in sorted(by_reason.items())}})
    return rows


def split_agent_seconds(spans: Iterable[AgentSpan], bounds: Sequence[tuple[float, float]]
                        ) -> dict[tuple[str, float], tuple[dict[str, float], dict[str, float]]]:
    """Seconds per state and not-ready reason of each agent in each interval of ``bounds``."""
    out: dict[tuple[str, float], tuple[dict[str, float], dict[str, float]]] = {}
    for start, part in split_spans(spans, bounds).items():
        end = dict(bounds)[start]
        per_agent: dict[str, list[AgentSpan]] = {}
        for s in part:
            per_agent.setdefault(s.agent_id, []).append(s)
        for agent, spans_of in per_agent.items():
            f = agent_figures(spans_of, start, end)
            out[(agent, start)] = ({k: v for k, v in f.seconds.items()}, dict(f.not_ready_by_reason))
    return out


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header of ``columns``. Nested values (a dict of seconds)
    are flattened as ``column.key``. A text cell starting with ``= + - @`` (or a tab
    or CR) gets a leading apostrophe, so a spreadsheet shows it and runs nothing."""
    flat_cols: list[str] = []
    for c in columns:
        nested = sorted({k for r in rows if isinstance(r.get(c), Mapping) for k in r[c]})
        flat_cols += [f"{c}.{k}" for k in nested] if nested else [c]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(flat_cols)
    for r in rows:
        line = []
        for c in flat_cols:
            base, _, key = c.partition(".")
            v = r.get(base, {}).get(key) if key and isinstance(r.get(base), Mapping) else r.get(c)
            line.append(_cell(v))
        w.writerow(line)
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v
