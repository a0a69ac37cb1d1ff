"""Blending: how many of a campaign's free agents outbound may use while they also serve
inbound queues. Pure: ``now``, the inbound queues' state and the campaign's reserve in, a
number of agents out (docs/dialer.md, "Blending").

Inbound first, in two rules:

1. **A caller waiting** (not ringing an agent) in any inbound queue the campaign's agents
   serve: outbound gets no agent at all.
2. **The reserve**: outbound gets the free agents beyond the campaign's reserve, the larger of
   - ``agents``: a fixed number always kept free for inbound, and
   - with ``service_level`` on, what the inbound queues need to meet their service-level
     target (``sl_percent`` of callers answered within ``sl_seconds``) at the traffic they
     have now: per queue, the agents Erlang C (``acd.staffing.required_agents``) asks for at
     the arrival rate measured over the last ``arrivals_min`` minutes and the queue's handle
     time, less the agents already on its calls and its free agents that are not the
     campaign's; summed over the queues (an agent in two inbound queues is counted for both:
     the sum errs on inbound's side).

When a reserve of one agent or more is not met (the free agents are no more than it), the
campaign starts no call at all, not even predictively on agents expected to free: those
agents are inbound's (``Reserve.holds_back``).

The arrival rate comes from ``ArrivalLog`` (pure, time in): the shell feeds it each tick
with a queue's count of callers ever entered (``offered + waiting + ringing`` of
``Router.queue_stats``); it keeps the instants of the recent arrivals.

Exceptions (``cti.errors.CtiError``)::

    PacingError
      InvalidReserve   a reserve setting out of range (``field`` names it: reserve.agents)
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from acd.staffing import StaffingError, required_agents
from dialer.pacing import PacingError

MAX_RESERVE_AGENTS = 500
MAX_ARRIVALS_MIN = 240
#: The rate is never taken over less than this (one arrival a second after start is not 3,600/h).
MIN_SPAN_S = 60.0


class InvalidReserve(PacingError):
    """A reserve setting out of range; ``field`` names it (``reserve.agents``)."""


@dataclass(frozen=True, slots=True)
class ReserveConfig:
    """A campaign's inbound reserve. The default (no reserve of its own) keeps nothing beyond
    rule 1: a campaign blends as before until a supervisor sets one."""
    agents: int = 0
    service_level: bool = False
    arrivals_min: int = 15

    def __post_init__(self) -> None:
        if not isinstance(self.agents, int) or isinstance(self.agents, bool) \
                or not 0 <= self.agents <= MAX_RESERVE_AGENTS:
            raise InvalidReserve("reserve.agents", f"an integer from 0 to {MAX_RESERVE_AGENTS}")
        if not isinstance(self.service_level, bool):
            raise InvalidReserve("reserve.service_level", "true or false")
        if not isinstance(self.arrivals_min, int) or isinstance(self.arrivals_min, bool) \
                or not 1 <= self.arrivals_min <= MAX_ARRIVALS_MIN:
            raise InvalidReserve("reserve.arrivals_min", f"an integer from 1 to {MAX_ARRIVALS_MIN}")


def reserve_from_json(obj: Mapping[str, Any] | None) -> ReserveConfig:
    """The ``ReserveConfig`` of a campaign's ``reserve`` JSON (None: the default). Raises
    ``InvalidReserve`` naming the field."""
    if obj is None:
        return ReserveConfig()
    if not isinstance(obj, Mapping):
        raise InvalidReserve("reserve", "an object {agents, service_level, arrivals_min}")
    extra = set(obj) - {"agents", "service_level", "arrivals_min"}
    if extra:
        raise InvalidReserve(f"reserve.{sorted(map(str, extra))[0]}",
                             "unknown field (agents, service_level, arrivals_min)")
    d = ReserveConfig()
    return ReserveConfig(agents=obj.get("agents", d.agents), service_level=obj.get("service_level", d.service_level),
                         arrivals_min=obj.get("arrivals_min", d.arrivals_min))


def reserve_to_json(r: ReserveConfig) -> dict[str, Any]:
    """``r`` as the ``reserve`` JSON (``reserve_from_json`` reads it back equal)."""
    return {"agents": r.agents, "service_level": r.service_level, "arrivals_min": r.arrivals_min}


@dataclass(frozen=True, slots=True)
class InboundQueue:
    """One inbound queue the campaign's agents serve, now: callers ``waiting`` (not ringing
    an agent), the instants callers entered it (``arrivals``, epoch seconds, the recent ones;
    recorded since ``observed_since``), its handle time (talk plus wrap-up), its target
    (``sl_percent`` within ``sl_seconds``), agents ``busy`` on its calls (ringing, talking,
    wrapping up) and ``other_free``: its free agents that are not the campaign's."""
    queue_id: str
    waiting: int
    arrivals: tuple[float, ...]
    observed_since: float
    handle_s: float
    sl_percent: float
    sl_seconds: float
    busy: int = 0
    other_free: int = 0


@dataclass(frozen=True, slots=True)
class Reserve:
    outbound: int           # the free agents the campaign may use
    reserved: int           # the free agents kept for inbound (every one when a caller waits)
    needed: int             # the agents the reserve asks to keep free (met when fewer than the free ones)
    reason: str             # no_inbound | caller_waiting | reserve
    calls_per_hour: float   # the inbound arrival rate measured (summed over the queues)

    @property
    def holds_back(self) -> bool:
        """True when no call may start: a caller waits, or the reserve is not met."""
        return self.reason == "caller_waiting" or (self.needed > 0 and self.outbound == 0)


def calls_per_hour(q: InboundQueue, now: float, span_s: float) -> float:
    """The queue's arrivals per hour over the last ``span_s`` (or since it was first observed,
    if later; ``MIN_SPAN_S`` at least)."""
    since = max(now - span_s, q.observed_since)
    seen = sum(1 for t in q.arrivals if since <= t <= now)
    return seen * 3600.0 / max(MIN_SPAN_S, now - since)


def queue_need(q: InboundQueue, rate: float) -> int:
    """The agents queue ``q`` must have free now for its target at ``rate`` calls an hour:
    Erlang C's count less those on its calls. A target Erlang C cannot meet needs them all."""
    if rate <= 0 or q.sl_percent <= 0:
        return 0
    try:
        staffing = required_agents(rate, max(1.0, q.handle_s), 3600.0, sl_target=min(q.sl_percent / 100.0, 0.999),
                                   sl_seconds=max(0.0, q.sl_seconds))
    except StaffingError:
        return MAX_RESERVE_AGENTS * 1000
    return max(0, staffing.agents - q.busy - q.other_free)


def outbound_agents(now: float, free: int, inbound: Sequence[InboundQueue], config: ReserveConfig) -> Reserve:
    """How many of the campaign's ``free`` agents outbound may use at ``now``."""
    free = max(0, free)
    if not inbound:
        return Reserve(free, 0, 0, "no_inbound", 0.0)
    span = config.arrivals_min * 60.0
    rates = [calls_per_hour(q, now, span) for q in inbound]
    total = sum(rates)
    if any(q.waiting > 0 for q in inbound):
        return Reserve(0, free, free, "caller_waiting", total)
    need = sum(queue_need(q, r) for q, r in zip(inbound, rates)) if config.service_level else 0
    reserved = max(config.agents, need)
    return Reserve(max(0, free - reserved), min(free, reserved), reserved, "reserve", total)


class ArrivalLog:
    """The recent arrivals of inbound queues, from their counts of callers ever entered.
    No clock: ``now`` comes with each observation. Keeps ``keep_s`` of instants per queue."""

    def __init__(self, keep_s: float = MAX_ARRIVALS_MIN * 60.0, max_per_queue: int = 100_000) -> None:
        self.keep_s = keep_s
        self.max_per_queue = max_per_queue
        self._seen: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._at: dict[str, deque[float]] = {}

    def observe(self, queue_id: str, entered: int, now: float) -> None:
        """The queue has had ``entered`` callers in all at ``now``. The first observation only
        sets the count (what came before is not known); a count that fell (the ACD started
        again) sets it anew."""
        last = self._seen.get(queue_id)
        self._seen[queue_id] = entered
        at = self._at.setdefault(queue_id, deque(maxlen=self.max_per_queue))
        if last is None:
            self._since[queue_id] = now
        elif entered > last:
            at.extend([now] * min(entered - last, self.max_per_queue))
        while at and at[0] < now - self.keep_s:
            at.popleft()

    def arrivals(self, queue_id: str) -> tuple[tuple[float, ...], float]:
        """(the instants of the recent arrivals, since when they are recorded); ``((), inf)``
        for a queue never observed."""
        if queue_id not in self._since:
            return (), float("inf")
        return tuple(self._at[queue_id]), self._since[queue_id]


# -- reading the ACD (its router's views, in memory) ---------------------------------------

_BUSY = ("reserved", "on_call", "wrapup")


def blended_queues(config: Any, queue: str) -> frozenset[str]:
    """The other queues the agents of campaign queue ``queue`` serve (their inbound work)."""
    out: set[str] = set()
    for agent in getattr(config, "agents", ()):
        if queue in agent.queues:
            out |= set(agent.queues)
    out.discard(queue)
    return frozenset(out)


def inbound_waiting(waiting: Any, queues: frozenset[str], ours: set[str]) -> int:
    """Callers waiting (not ringing an agent, not a callback request, not a campaign call)
    in ``queues``."""
    return sum(1 for w in waiting if w.queue_id in queues and w.status != "ringing" and not w.callback
               and w.call_id not in ours)


def inbound_queues(router: Any, config: Any, queue: str, ours: set[str], log: ArrivalLog,
                   now: float) -> list[InboundQueue]:
    """The inbound queues the agents of campaign queue ``queue`` also serve, as ``outbound_agents``
    takes them, read from the ACD's ``router`` and ``config``; ``ours``: the campaign calls
    (never inbound). Each queue's count of callers entered is fed to ``log`` on the way."""
    queues = blended_queues(config, queue)
    if not queues:
        return []
    waiting = router.waiting_calls()
    sl_seconds = {q.id: q.sl_seconds for q in config.queues}
    busy = dict.fromkeys(queues, 0)
    other_free = dict.fromkeys(queues, 0)
    for agent in config.agents:
        mine = set(agent.queues) & queues
        if not mine:
            continue
        try:
            view = router.agent_state(agent.id)
        except Exception:           # not in the router (a configuration being changed)
            continue
        if view.state in _BUSY and view.queue_id in busy and view.call_id not in ours:
            busy[view.queue_id] += 1
        elif view.state == "available" and not view.voice_blocked and queue not in agent.queues:
            for q in mine:
                other_free[q] += 1
    out = []
    for qid in sorted(queues):
        try:
            stats = router.queue_stats(qid, now)
        except Exception:           # a queue of no router (another channel's)
            continue
        log.observe(qid, stats.offered + stats.waiting + stats.ringing, now)
        arrivals, since = log.arrivals(qid)
        out.append(InboundQueue(qid, inbound_waiting(waiting, frozenset({qid}), ours), arrivals, since,
                                stats.handle_time_s, stats.sl_target, sl_seconds.get(qid, 20.0),
                                busy[qid], other_free[qid]))
    return out
