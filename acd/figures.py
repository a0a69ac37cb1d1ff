"""Contact-centre figures from plain records. Pure: no I/O, no clock (``now`` is an argument).

docs/metrics.md defines every figure in words; this module is those definitions.

Inputs, both small frozen records with epoch-second times, filled from what the
store keeps (``acd.reports`` reads them from PostgreSQL; the live board from
the call model and the router):

- ``QueueCall``: one call's stay in one queue: when it entered, how it left
  (answered, abandoned, timed out, or still waiting), when, and for an answered
  call its talk, hold and wrap-up seconds.
- ``AgentSpan``: one agent in one state (``acd.decisions.AGENT_STATES``) from
  ``start`` to ``end`` (None: still in it), with the not-ready reason. Built from
  the agent state log by ``spans_from_changes``.

Outputs: ``QueueFigures`` (offered, answered, abandoned, service level in its
three variants, ASA, AHT, abandon rates, longest wait) and ``AgentFigures``
(time by state and not-ready reason, occupancy, utilization), for any set of
calls or any time window: an interval (``bucket_start``; a call belongs to the
interval it **arrived** in, agent time is split at interval boundaries), a rolling
window (``rolling``), a queue, an agent.

    CtiError
    └── MetricsError      a record or argument that cannot be used (names the field)
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

from acd.decisions import (
    AGENT_STATES, AVAILABLE, LOGGED_OUT, NOT_READY, ON_CALL, RESERVED, WRAPUP,
)
from cti.errors import CtiError

__all__ = [
    "MetricsError", "QueueCall", "StateChange", "AgentSpan", "SlPolicy", "QueueFigures",
    "AgentFigures", "Rag", "QueueCounts", "count_calls", "figures_from_counts", "queue_figures", "agent_figures",
    "agent_figures_from_seconds", "spans_from_changes", "WRAPUP_TOLERANCE_S",
    "attach_wrapup", "bucket_start", "next_bucket", "buckets", "by_bucket", "split_spans",
    "rolling", "group_by", "ANSWERED", "ABANDONED", "TIMED_OUT", "WAITING", "OUTCOMES",
    "ABANDONS_IGNORED", "ABANDONS_AGAINST", "ABANDONS_IN_FAVOUR", "SL_VARIANTS", "GRANULARITIES",
]

# How a call left its queue.
ANSWERED, ABANDONED, TIMED_OUT, WAITING = "answered", "abandoned", "timed_out", "waiting"
OUTCOMES = (ANSWERED, ABANDONED, TIMED_OUT, WAITING)

# Service-level variants: what an abandoned call does to the figure.
ABANDONS_IGNORED, ABANDONS_AGAINST, ABANDONS_IN_FAVOUR = (
    "abandons_ignored", "abandons_against", "abandons_in_favour")
SL_VARIANTS = {
    ABANDONS_IGNORED: "abandons ignored",
    ABANDONS_AGAINST: "abandons counted against",
    ABANDONS_IN_FAVOUR: "abandons within the threshold counted in favour",
}

# Agent states that are work on a call (occupancy's numerator).
BUSY_STATES = (RESERVED, ON_CALL, WRAPUP)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class MetricsError(CtiError, ValueError):
    """A record or argument the figures cannot be computed from; names the field."""


# -- records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCall:
    """One call's stay in one queue (an overflowed call has one per queue).

    - ``arrived_at``: entry into the queue (``calls.queue_joined_at``).
    - ``outcome``: ``answered`` (an agent answered), ``abandoned`` (the caller
      hung up while queued), ``timed_out`` (left unanswered otherwise: max wait
      sent it to voicemail, a call-back or another queue), ``waiting`` (still queued).
    - ``left_at``: when it left the queue (for an answered call, the agent's
      answer); None exactly while waiting.
    - ``talk_s``: connected to the agent minus hold; None until the agent's leg
      ended. ``hold_s``: time on hold. ``wrapup_s``: the agent's wrap-up after the
      call (0 when none); None until it is over. Only answered calls have these.
    """

    call_id: str
    queue: str
    arrived_at: float
    outcome: str
    left_at: float | None = None
    agent: str | None = None
    talk_s: float | None = None
    hold_s: float = 0.0
    wrapup_s: float | None = None

    def __post_init__(self) -> None:
        where = f"call {self.call_id!r}"
        if self.outcome not in OUTCOMES:
            raise MetricsError(f"{where}: outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        _check_time(where, "arrived_at", self.arrived_at)
        if (self.outcome == WAITING) != (self.left_at is None):
            raise MetricsError(f"{where}: left_at must be None exactly while waiting "
                               f"(outcome {self.outcome!r}, left_at {self.left_at!r})")
        if self.left_at is not None:
            _check_time(where, "left_at", self.left_at)
            if self.left_at < self.arrived_at:
                raise MetricsError(f"{where}: left_at {self.left_at} is before arrived_at {self.arrived_at}")
        for name in ("talk_s", "hold_s", "wrapup_s"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _finite(value) or value < 0:
                raise MetricsError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
            if value and self.outcome != ANSWERED:
                raise MetricsError(f"{where}: {name} on a call that was not answered ({self.outcome})")

    @property
    def wait_s(self) -> float | None:
        """Time in queue (to the answer, the hang-up, the time-out); None while waiting."""
        return None if self.left_at is None else self.left_at - self.arrived_at

    @property
    def handle_s(self) -> float | None:
        """Talk + hold + wrap-up, once all are known."""
        if self.talk_s is None or self.wrapup_s is None:
            return None
        return self.talk_s + self.hold_s + self.wrapup_s


@dataclass(frozen=True, slots=True)
class StateChange:
    """One row of the agent state log (``agent_states``): from ``at`` on, ``state``."""

    agent_id: str
    at: float
    state: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AgentSpan:
    """Agent ``agent_id`` in ``state`` (with ``reason``) from ``start`` to ``end``;
    ``end`` None while it lasts."""

    agent_id: str
    state: str
    reason: str | None
    start: float
    end: float | None

    def __post_init__(self) -> None:
        where = f"agent {self.agent_id!r}"
        if self.state not in AGENT_STATES:
            raise MetricsError(f"{where}: state must be one of {', '.join(AGENT_STATES)}, got {self.state!r}")
        _check_time(where, "start", self.start)
        if self.end is not None:
            _check_time(where, "end", self.end)
            if self.end < self.start:
                raise MetricsError(f"{where}: end {self.end} is before start {self.start}")

    def seconds(self, start: float, end: float) -> float:
        """Seconds of this span inside [start, end) (an open span lasts until ``end``)."""
        stop = end if self.end is None else min(self.end, end)
        return max(0.0, stop - max(self.start, start))


def spans_from_changes(changes: Iterable[StateChange], until: float | None = None) -> list[AgentSpan]:
    """The agent state log as spans: each change lasts until the agent's next change,
    the last one until ``until`` (None: it stays open, ``end`` None; changes after
    ``until`` are left out). Changes are ordered by time (ties keep the given order);
    spans come out by agent, then time. A change to the same state (a new not-ready
    reason) starts a new span."""
    per_agent: dict[str, list[StateChange]] = defaultdict(list)
    for ch in changes:
        per_agent[ch.agent_id].append(ch)
    out: list[AgentSpan] = []
    for agent_id in sorted(per_agent):
        rows = sorted(per_agent[agent_id], key=lambda c: c.at)
        if until is not None:
            rows = [ch for ch in rows if ch.at <= until]     # later changes have not begun
        for i, ch in enumerate(rows):
            end = rows[i + 1].at if i + 1 < len(rows) else until
            out.append(AgentSpan(agent_id, ch.state, ch.reason, ch.at, end))
    return out


# How far from a call's talk end its agent's wrap-up may start (``attach_wrapup``).
WRAPUP_TOLERANCE_S = 1.0


def attach_wrapup(calls: Iterable[QueueCall], spans: Sequence[AgentSpan], *,
                  tolerance_s: float = WRAPUP_TOLERANCE_S) -> list[QueueCall]:
    """Answered calls with ``wrapup_s`` taken from their agent's state log.

    The agent's wrap-up after a call starts when the agent's leg ends (the
    router's ``call_finished``): a ``wrapup`` span starting within ``tolerance_s``
    of the call's talk end (answer + talk + hold) is that call's wrap-up, with the
    wrap-up spans right after it (the same wrap-up, cut). No such span: 0. Still
    in wrap-up: None. Calls without an agent or a known talk time are returned as
    they are.
    """
    by_agent: dict[str, list[AgentSpan]] = defaultdict(list)
    for s in spans:
        by_agent[s.agent_id].append(s)
    for rows in by_agent.values():
        rows.sort(key=lambda s: s.start)
    starts = {a: [s.start for s in rows] for a, rows in by_agent.items()}
    out: list[QueueCall] = []
    for c in calls:
        if c.outcome != ANSWERED or c.agent is None or c.talk_s is None or c.left_at is None:
            out.append(c)
            continue
        talk_end = c.left_at + c.talk_s + c.hold_s
        rows = by_agent.get(c.agent, [])
        i = bisect_left(starts.get(c.agent, []), talk_end - tolerance_s)
        wrapup: float | None = 0.0
        if i < len(rows) and rows[i].state == WRAPUP and rows[i].start <= talk_end + tolerance_s:
            wrapup = 0.0
            while i < len(rows) and rows[i].state == WRAPUP:
                if rows[i].end is None:
                    wrapup = None
                    break
                wrapup += rows[i].end - rows[i].start
                i += 1
        out.append(replace(c, wrapup_s=wrapup))
    return out


# -- service-level policy and thresholds ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SlPolicy:
    """How a queue's service level is counted: answered within ``threshold_s``
    seconds, abandons treated by ``variant``, abandons under ``short_abandon_s``
    seconds (0: none) left out of every figure; ``target`` is the share aimed at."""

    threshold_s: float = 20.0
    variant: str = ABANDONS_AGAINST
    short_abandon_s: float = 0.0
    target: float = 0.8

    def __post_init__(self) -> None:
        if self.variant not in SL_VARIANTS:
            raise MetricsError(f"variant must be one of {', '.join(SL_VARIANTS)}, got {self.variant!r}")
        for name in ("threshold_s", "short_abandon_s"):
            v = getattr(self, name)
            if not _finite(v) or v < 0:
                raise MetricsError(f"{name} must be a finite number >= 0, got {v!r}")
        if not _finite(self.target) or not 0 < self.target <= 1:
            raise MetricsError(f"target must be a share in (0, 1], got {self.target!r}")

    @property
    def label(self) -> str:
        """What the board prints beside the figure, e.g. ``80% in 20 s, abandons
        counted against, abandons under 5 s excluded``."""
        text = f"{self.target * 100:g}% in {self.threshold_s:g} s, {SL_VARIANTS[self.variant]}"
        if self.short_abandon_s:
            text += f", abandons under {self.short_abandon_s:g} s excluded"
        return text


GREEN, AMBER, RED = "green", "amber", "red"


@dataclass(frozen=True, slots=True)
class Rag:
    """Red/amber/green thresholds of one figure. ``higher_is_better``: red below
    ``red``, amber below ``amber``, green otherwise (a value on a threshold is on
    its better side: "crossing" means going strictly beyond). Otherwise mirrored:
    red above ``red``, amber above ``amber``."""

    amber: float
    red: float
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not (_finite(self.amber) and _finite(self.red)):
            raise MetricsError(f"thresholds must be finite numbers, got amber {self.amber!r}, red {self.red!r}")
        if self.higher_is_better and self.red > self.amber:
            raise MetricsError(f"higher is better: red ({self.red}) must not be above amber ({self.amber})")
        if not self.higher_is_better and self.red < self.amber:
            raise MetricsError(f"lower is better: red ({self.red}) must not be below amber ({self.amber})")

    def colour(self, value: float | None) -> str | None:
        """``green``, ``amber`` or ``red``; None for a figure with no value (no calls)."""
        if value is None:
            return None
        if self.higher_is_better:
            return RED if value < self.red else AMBER if value < self.amber else GREEN
        return RED if value > self.red else AMBER if value > self.amber else GREEN


# -- queue figures -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """The figures of a set of calls (docs/metrics.md has each definition).

    Counts: ``arrived`` = ``offered`` + ``short_abandoned``;
    ``offered`` = ``answered`` + ``abandoned`` + ``timed_out`` + ``waiting``.
    Shares are in [0, 1]; None when their denominator is 0. Seconds are None
    when there is nothing to average.
    """

    policy: SlPolicy
    arrived: int
    offered: int
    short_abandoned: int
    answered: int
    abandoned: int
    timed_out: int
    waiting: int
    answered_within: int
    abandoned_within: int
    service_level: float | None          # the policy's variant
    sl_abandons_ignored: float | None
    sl_abandons_against: float | None
    sl_abandons_in_favour: float | None
    asa_s: float | None
    handled: int                         # answered calls whose talk, hold and wrap-up are known
    aht_s: float | None
    avg_talk_s: float | None
    avg_hold_s: float | None
    avg_wrapup_s: float | None
    abandon_rate: float | None           # abandoned / offered (short abandons left out)
    abandon_rate_all: float | None       # (abandoned + short) / arrived
    avg_abandon_wait_s: float | None
    longest_wait_s: float | None         # over every call, the waiting ones up to now
    longest_waiting_s: float | None      # of the calls still waiting, at now


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """The additive part of ``QueueFigures``: counts and sums of a set of calls under
    one policy's thresholds. Counts of disjoint sets add up (``+``; the longest
    waits take the larger), so an interval's counts can be stored (a rollup) and a
    day's or a week's figures made from its intervals' (``figures_from_counts``)
    without reading the calls again; ``queue_figures`` is exactly that on one set."""

    arrived: int = 0
    short_abandoned: int = 0
    answered: int = 0
    abandoned: int = 0
    timed_out: int = 0
    waiting: int = 0
    answered_within: int = 0
    abandoned_within: int = 0
    answered_wait_s: float = 0.0
    abandon_wait_s: float = 0.0
    handled: int = 0
    talk_s: float = 0.0
    hold_s: float = 0.0
    wrapup_s: float = 0.0
    longest_wait_s: float | None = None
    longest_waiting_s: float | None = None

    def __add__(self, other: "QueueCounts") -> "QueueCounts":
        if not isinstance(other, QueueCounts):
            return NotImplemented
        values = {}
        for name in QueueCounts.__slots__:
            a, b = getattr(self, name), getattr(other, name)
            if name.startswith("longest"):
                values[name] = a if b is None else b if a is None else max(a, b)
            else:
                values[name] = a + b
        return QueueCounts(**values)


def count_calls(calls: Iterable[QueueCall], policy: SlPolicy | None = None, *, now: float) -> QueueCounts:
    """The counts and sums of ``calls`` under ``policy``'s threshold and short-abandon
    limit (docs/metrics.md); ``now`` measures the calls still waiting."""
    policy = policy if policy is not None else SlPolicy()
    t, short = policy.threshold_s, policy.short_abandon_s
    arrived = short_ab = answered = abandoned = timed_out = waiting = 0
    ans_within = ab_within = handled = 0
    answered_wait = abandon_wait = talk = hold = wrap = 0.0
    longest: float | None = None
    longest_waiting: float | None = None
    for c in calls:
        arrived += 1
        wait = (now - c.arrived_at) if c.left_at is None else c.left_at - c.arrived_at
        if c.outcome == ABANDONED and wait < short:
            short_ab += 1                    # left out of everything else
            continue
        longest = wait if longest is None else max(longest, wait)
        if c.outcome == WAITING:
            waiting += 1
            longest_waiting = wait if longest_waiting is None else max(longest_waiting, wait)
        elif c.outcome == ANSWERED:
            answered += 1
            answered_wait += wait
            ans_within += wait <= t
            if c.talk_s is not None and c.wrapup_s is not None:
                handled += 1
                talk += c.talk_s
                hold += c.hold_s
                wrap += c.wrapup_s
        elif c.outcome == ABANDONED:
            abandoned += 1
            abandon_wait += wait
            ab_within += wait <= t
        else:
            timed_out += 1
    return QueueCounts(arrived, short_ab, answered, abandoned, timed_out, waiting, ans_within, ab_within,
                       answered_wait, abandon_wait, handled, talk, hold, wrap, longest, longest_waiting)


def figures_from_counts(k: QueueCounts, policy: SlPolicy | None = None) -> QueueFigures:
    """``QueueFigures`` from counts made under the same ``policy`` (its variant picks
    ``service_level``)."""
    policy = policy if policy is not None else SlPolicy()
    offered = k.arrived - k.short_abandoned
    settled = k.answered + k.abandoned + k.timed_out
    sl = {
        ABANDONS_IGNORED: _share(k.answered_within, k.answered + k.timed_out),
        ABANDONS_AGAINST: _share(k.answered_within, settled),
        ABANDONS_IN_FAVOUR: _share(k.answered_within + k.abandoned_within, settled),
    }
    return QueueFigures(
        policy=policy, arrived=k.arrived, offered=offered, short_abandoned=k.short_abandoned,
        answered=k.answered, abandoned=k.abandoned, timed_out=k.timed_out, waiting=k.waiting,
        answered_within=k.answered_within, abandoned_within=k.abandoned_within,
        service_level=sl[policy.variant], sl_abandons_ignored=sl[ABANDONS_IGNORED],
        sl_abandons_against=sl[ABANDONS_AGAINST], sl_abandons_in_favour=sl[ABANDONS_IN_FAVOUR],
        asa_s=_mean(k.answered_wait_s, k.answered), handled=k.handled,
        aht_s=_mean(k.talk_s + k.hold_s + k.wrapup_s, k.handled), avg_talk_s=_mean(k.talk_s, k.handled),
        avg_hold_s=_mean(k.hold_s, k.handled), avg_wrapup_s=_mean(k.wrapup_s, k.handled),
        abandon_rate=_share(k.abandoned, offered),
        abandon_rate_all=_share(k.abandoned + k.short_abandoned, k.arrived),
        avg_abandon_wait_s=_mean(k.abandon_wait_s, k.abandoned),
        longest_wait_s=k.longest_wait_s, longest_waiting_s=k.longest_waiting_s,
    )


def queue_figures(calls: Iterable[QueueCall], policy: SlPolicy | None = None, *, now: float) -> QueueFigures:
    """The figures of ``calls`` (any set: a queue, an interval, an agent's) under ``policy``.

    ``now`` measures the calls still waiting (they count as offered and in the
    longest waits, never in service level or ASA: their outcome is unknown).
    ``policy`` defaults to ``SlPolicy()`` (80% in 20 s, abandons counted against).
    """
    return figures_from_counts(count_calls(calls, policy, now=now), policy)


# -- agent figures -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentFigures:
    """Agent time inside a window (one agent or many, summed).

    ``seconds``: per state; ``not_ready_by_reason``: not-ready seconds per reason
    ('' for none). ``logged_in_s``: every state but ``logged_out``. ``ready_s``:
    available + reserved + on_call + wrapup (logged in and not on a break).
    ``occupancy`` = (reserved + on_call + wrapup) / ready; ``utilization`` =
    the same work / logged in. None when the denominator is 0.
    """

    seconds: Mapping[str, float]
    not_ready_by_reason: Mapping[str, float]
    logged_in_s: float
    ready_s: float
    busy_s: float
    occupancy: float | None
    utilization: float | None


def agent_figures(spans: Iterable[AgentSpan], start: float, end: float) -> AgentFigures:
    """The time of ``spans`` inside [start, end) (open spans last until ``end``)."""
    _check_window(start, end)
    seconds = dict.fromkeys(AGENT_STATES, 0.0)
    by_reason: dict[str, float] = defaultdict(float)
    for s in spans:
        secs = s.seconds(start, end)
        if secs <= 0:
            continue
        seconds[s.state] += secs
        if s.state == NOT_READY:
            by_reason[s.reason or ""] += secs
    return agent_figures_from_seconds(seconds, by_reason)


def agent_figures_from_seconds(seconds: Mapping[str, float],
                               not_ready_by_reason: Mapping[str, float] | None = None) -> AgentFigures:
    """``AgentFigures`` from seconds per state (``AGENT_STATES``; a missing state is 0)
    and not-ready seconds per reason, e.g. the sum of two ``agent_figures`` of
    disjoint spans (seconds add up; the shares are made from the sums)."""
    seconds = {k: seconds.get(k, 0.0) for k in AGENT_STATES}
    logged_in = sum(v for k, v in seconds.items() if k != LOGGED_OUT)
    busy = sum(seconds[k] for k in BUSY_STATES)
    ready = busy + seconds[AVAILABLE]
    return AgentFigures(seconds=seconds, not_ready_by_reason=dict(sorted((not_ready_by_reason or {}).items())),
                        logged_in_s=logged_in, ready_s=ready, busy_s=busy,
                        occupancy=_share(busy, ready), utilization=_share(busy, logged_in))


# -- intervals ---------------------------------------------------------------------

# Interval lengths: minutes (a divisor of 60), a local day, a local week (from Monday).
GRANULARITIES = {"5min": 5, "10min": 10, "15min": 15, "20min": 20, "30min": 30, "60min": 60,
                 "day": "day", "week": "week"}


def _granularity(g: str) -> int | str:
    try:
        return GRANULARITIES[g]
    except (KeyError, TypeError):
        raise MetricsError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {g!r}") from None


def _floor_wall(local: datetime, size: int | str) -> datetime:
    """The local wall-clock start of the interval holding ``local`` (fold kept)."""
    if size == "day":
        return local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if size == "week":
        day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
        return day - timedelta(days=day.weekday())
    assert isinstance(size, int)
    return local.replace(minute=local.minute - local.minute % size, second=0, microsecond=0)


def bucket_start(t: float, granularity: str, tz: tzinfo) -> float:
    """The start (epoch seconds) of the interval of ``granularity`` holding ``t``, intervals
    being aligned on the local wall clock of ``tz``: 15-minute intervals start at :00,
    :15, ...; days at local midnight; weeks on Monday at local midnight.

    Precisely: the latest interval start at or before ``t``, where the interval starts
    are the instants of those wall-clock times. Across offset changes: a repeated
    wall-clock time starts an interval on each pass (two 02:00-03:00 hours), except a
    repeated midnight, which starts its day once (on its first pass); a wall-clock
    start that does not exist (skipped by the clocks) starts its interval at the
    instant of the change.
    """
    size = _granularity(granularity)
    _check_time("bucket", "t", t)
    local = datetime.fromtimestamp(t, tz)
    floor = _floor_wall(local, size)
    fast = floor.timestamp()
    # The common case: no offset change between the interval's start and t.
    if fast <= t and floor.utcoffset() == local.utcoffset() and _wall(fast, tz) == floor.replace(tzinfo=None):
        return fast
    step = _step(size)
    w = floor.replace(tzinfo=None, fold=0) - step
    last = local.replace(tzinfo=None) + _MAX_SHIFT
    best: float | None = None
    while w <= last:
        for inst in _instants(w, tz, both_passes=isinstance(size, int)):
            if inst <= t and (best is None or inst > best):
                best = inst
        w += step
    assert best is not None                  # the start a step before is always at or before t
    return best


# Offset changes move a wall-clock time by at most this much.
_MAX_SHIFT = timedelta(hours=3)


def _step(size: int | str) -> timedelta:
    return timedelta(days=1) if size == "day" else timedelta(weeks=1) if size == "week" \
        else timedelta(minutes=size)  # type: ignore[arg-type]


def _wall(ts: float, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None, fold=0)


def _instants(wall: datetime, tz: tzinfo, *, both_passes: bool) -> list[float]:
    """The instants a naive wall-clock time names in ``tz``: one, two (a repeated time:
    both passes, or the first only), or for a skipped time the instant of the change."""
    ts0 = wall.replace(tzinfo=tz, fold=0).timestamp()
    ts1 = wall.replace(tzinfo=tz, fold=1).timestamp()
    found = [ts for ts in ((ts0, ts1) if both_passes else (ts0,)) if _wall(ts, tz) == wall]
    if found or _wall(ts1, tz) == wall:
        return sorted(set(found))
    # Skipped: ts1 (the offset after the change) lies before the change, ts0 after it.
    lo, hi = math.floor(min(ts0, ts1)), math.ceil(max(ts0, ts1))
    after = datetime.fromtimestamp(hi, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return [float(hi)]


def next_bucket(start: float, granularity: str, tz: tzinfo) -> float:
    """The start of the interval after the one starting at ``start`` (a bucket start)."""
    size = _granularity(granularity)
    step = _step(size)
    # Usually the next wall-clock start; it is the answer when the interval changes
    # exactly there (a repeated or skipped hour in between moves the boundary).
    wall = datetime.fromtimestamp(start, tz).replace(tzinfo=None) + step
    guess = wall.replace(tzinfo=tz, fold=0).timestamp()
    if guess > start and bucket_start(guess, granularity, tz) == guess \
            and bucket_start(guess - 1, granularity, tz) == start:
        return guess
    # Otherwise: the first whole second whose interval is a later one (starts never go back
    # in time, and every offset change is a whole number of seconds), found by bisection.
    lo = math.floor(start)
    hi = lo + int(step.total_seconds()) + 4 * 3600
    while bucket_start(hi, granularity, tz) <= start:
        hi += int(step.total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bucket_start(mid, granularity, tz) > start:
            hi = mid
        else:
            lo = mid
    return float(hi)


def buckets(start: float, end: float, granularity: str, tz: tzinfo) -> list[tuple[float, float]]:
    """The intervals ``(start, end)`` covering [start, end): the first one holds ``start``."""
    _check_window(start, end)
    out = []
    b = bucket_start(start, granularity, tz)
    while b < end:
        n = next_bucket(b, granularity, tz)
        out.append((b, n))
        b = n
    return out


def by_bucket(calls: Iterable[QueueCall], granularity: str, tz: tzinfo) -> dict[float, list[QueueCall]]:
    """Calls by the interval they **arrived** in (entered the queue), intervals in order,
    each interval's calls by arrival. A call answered or abandoned in a later interval
    still belongs to its arrival's."""
    out: dict[float, list[QueueCall]] = {}
    lo = hi = -math.inf
    part: list[QueueCall] = []
    # In arrival order, one interval's bounds serve every call inside it.
    for c in sorted(calls, key=lambda c: c.arrived_at):
        if not lo <= c.arrived_at < hi:
            lo = bucket_start(c.arrived_at, granularity, tz)
            hi = next_bucket(lo, granularity, tz)
            part = out.setdefault(lo, [])
        part.append(c)
    return out


def split_spans(spans: Iterable[AgentSpan], bounds: Sequence[tuple[float, float]]) -> dict[float, list[AgentSpan]]:
    """The spans overlapping each interval of ``bounds``, cut to it (an agent's time is
    split at interval boundaries, unlike calls). Keyed by interval start. An open span
    is cut at its interval's end: close spans at ``now`` first (``spans_from_changes``
    with ``until``) when an interval is not over yet."""
    bounds = sorted(bounds)
    starts = [b for b, _ in bounds]
    out: dict[float, list[AgentSpan]] = {b: [] for b in starts}
    for s in spans:
        i = max(0, bisect_left(starts, s.start) - 1)
        while i < len(bounds):
            b, e = bounds[i]
            if b >= (s.end if s.end is not None else math.inf):
                break
            lo, hi = max(s.start, b), e if s.end is None else min(s.end, e)
            if hi > lo:
                out[b].append(AgentSpan(s.agent_id, s.state, s.reason, lo, hi))
            i += 1
    return out


def rolling(calls: Iterable[QueueCall], now: float, window_s: float) -> list[QueueCall]:
    """The calls that arrived in the last ``window_s`` seconds: ``now - window_s < arrived_at <= now``
    (the same arrival rule as intervals; the live board's "last 15 / 30 minutes")."""
    if not _finite(window_s) or window_s <= 0:
        raise MetricsError(f"window_s must be a finite number > 0, got {window_s!r}")
    return [c for c in calls if now - window_s < c.arrived_at <= now]


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """Items by ``key`` (e.g. ``lambda c: c.queue`` or ``lambda c: c.agent``), keys sorted
    (None last)."""
    out: dict[K, list[T]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else "")))


# -- helpers -------------------------------------------------------------------------


def _share(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _mean(total: float, n: int) -> float | None:
    return None if n == 0 else total / n


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_time(where: str, name: str, v: object) -> None:
    if not _finite(v):
        raise MetricsError(f"{where}: {name} must be a finite number of epoch seconds, got {v!r}")


def _check_window(start: float, end: float) -> None:
    _check_time("window", "start", start)
    _check_time("window", "end", end)
    if end < start:
        raise MetricsError(f"window end {end} is before its start {start}")

