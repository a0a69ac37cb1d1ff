"""The routing core: agent and call inputs in, decisions out. Pure: no I/O, no clock.

Why it is shaped like this (docs/acd.md has the whole model):

- Every input carries ``now`` (epoch seconds) and returns ``list[Decision]``
  (``acd.decisions``). Timers (escalation steps, max wait, wrap-up, delays,
  the preferred-agent window, the ring guard) live in one heap;
  ``next_deadline()`` says when to call ``tick(now)``. A ``now`` earlier than
  the last one seen is taken as the last one.
- Decisions are taken the moment something changes: a call that starts
  waiting is offered at once if an agent can take it; an agent who becomes
  available takes the best call it can serve at once. So after every input no
  available agent is eligible for a waiting call (the *stable* invariant the
  property tests check); ``tick`` only handles what time changes.
- Eligibility: the agent is available, meets the call's current requirements
  (its queue's step, plus the caller's extra skills), and is a member of the
  call's queue, or of a queue it borrows from while that queue lends; the
  call has waited at least the membership's ``delay_s``.
- Order: an agent serves its own queues before borrowed ones, then higher call
  priority, then its better membership (lower ``priority``), then the longest
  effective wait (waited x the queue's ``aging_weight``). A call goes to its
  queue's own members before borrowed agents, then the better membership,
  then the queue's selection policy. A returning caller is held for the agent
  who last served them for ``preferred_agent_s``.
- Agent states are a table (``_AGENT_REQUESTS``) of what an agent's own
  request does in each state; the rest follows calls. At start, ``resume``
  puts a logged-out agent back in its stored state, with its stored start
  (``acd.resume``: a restart or a takeover keeps breaks and logouts).
- Devices: an agent's device (the dial string offers ring) can change at any
  time (``set_device``: hot-desking). A device reported unreachable
  (``device_reachable``) takes its agent out of routing: not ready with the
  reason ``unreachable`` (at once, or when the current call ends); login and
  the end of a call lead there too, and ``set_ready`` is refused. When the
  device is back the agent is available again, unless it chose a break meanwhile.
- Following (``following``, docs/ha.md "Warm standby"): a standby's router takes
  the same call inputs from its own call model but makes no offer of its own,
  and no decision that depends on the order of the leader's offers (maximum
  wait, the ring guard); the leader's decisions come in as
  inputs instead (``offer_observed``, ``offer_ended``, ``agent_state_observed``,
  ``escalation_observed``, ``max_wait_observed``), so it holds what the leader's
  holds. ``lead(now)`` ends following: ring guards are armed again and each
  available agent takes the best call it may, as after ``link_restored``.
- Indexes (``acd.index``) make each decision cost a few heap tops per pool an
  agent or call belongs to: never a scan of all agents or all calls.

Errors (``AcdInputError`` for unknown ids and bad values, ``AgentStateError``
for a request the agent's state forbids) are programming or user errors; calls
that simply no longer apply (a late answer, an unknown call) give ``Ignored``.

    CtiError
    └── AcdInputError          unknown agent/queue/skill, bad value
        └── AgentStateError    e.g. set_ready while logged out
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any

from acd.config import AcdConfig, Overflow
from acd.config import Queue as QueueConfig
from acd.decisions import (
    AGENT_STATES, AVAILABLE, HELD, LOGGED_OUT, NOT_READY, ON_CALL, RESERVED, RINGING, WAITING, WRAPUP,
    AgentState, AgentView, Decision, Dequeued, Escalated, Ignored, MaxWait, Moved, Offer, QueueStats,
    WaitingCall, Withdrawn,
)
from acd.index import Pool, ReqSet, Tier, merge_requirements, qualifies
from cti.errors import CtiError

__all__ = [
    "Router", "AcdInputError", "AgentStateError", "Decision", "Offer", "AgentState", "Escalated",
    "MaxWait", "Moved", "Withdrawn", "Dequeued", "Ignored", "AgentView", "WaitingCall", "QueueStats",
    "OFFER_GRACE_S", "FAILURE_STATES", "UNREACHABLE", "FOLLOW_SKEW_S", "RING_GUARD",
]

# An offer nobody reports on is treated as unanswered this long after its ring timeout.
OFFER_GRACE_S = 5.0
# offer_failed reason -> the not-ready reason the agent gets (busy devices and
# refusals would fail again at once: the agent is taken out until ready again).
FAILURE_STATES = {"noanswer": "missed", "busy": "busy", "rejected": "rejected", "failed": "unreachable"}
# Handle-time moving average: weight of the newest call.
HANDLE_ALPHA = 0.2
# Customers remembered for the preferred-agent rule (oldest forgotten first).
MAX_CUSTOMERS = 100_000

# Why the ring guard withdraws an offer (a follower tells it from the caller abandoning).
RING_GUARD = "no answer reported within ring timeout"

# Following the leader: the leader's time and this node's time of one cause (a call's
# end) differ by the two nodes' event delivery and clocks; within this, a state the
# leader logged is taken as no older than the one held here (agent_state_observed).
FOLLOW_SKEW_S = 1.0

# The not-ready reason of an agent whose device cannot ring.
UNREACHABLE = "unreachable"

_GONE = "gone"
_CALL, _RING, _WRAPUP = 0, 1, 2


class AcdInputError(CtiError, ValueError):
    """An input the router cannot accept: unknown agent, queue or skill, or a bad value."""


class AgentStateError(AcdInputError):
    """An agent's request that its current state forbids."""


# What an agent's own request does, by state. Targets are states; the others:
#   NOOP    already so: nothing happens, no decision
#   PENDING remembered, applied when the current call ends (logout, not ready, ready clears)
#   IDLE    available, unless a not-ready or logout is pending
#   ERROR   refused with AgentStateError
NOOP, PENDING, IDLE, ERROR = "noop", "pending", "idle", "error"
_AGENT_REQUESTS: dict[str, dict[str, str]] = {
    "login": {LOGGED_OUT: AVAILABLE, AVAILABLE: NOOP, NOT_READY: NOOP, RESERVED: NOOP,
              ON_CALL: NOOP, WRAPUP: NOOP},
    "logout": {LOGGED_OUT: NOOP, AVAILABLE: LOGGED_OUT, NOT_READY: LOGGED_OUT, RESERVED: PENDING,
               ON_CALL: PENDING, WRAPUP: LOGGED_OUT},
    "set_ready": {LOGGED_OUT: ERROR, AVAILABLE: NOOP, NOT_READY: AVAILABLE, RESERVED: PENDING,
                  ON_CALL: PENDING, WRAPUP: AVAILABLE},
    "set_not_ready": {LOGGED_OUT: ERROR, AVAILABLE: NOT_READY, NOT_READY: NOT_READY, RESERVED: PENDING,
                      ON_CALL: PENDING, WRAPUP: NOT_READY},
    "end_wrapup": {LOGGED_OUT: NOOP, AVAILABLE: NOOP, NOT_READY: NOOP, RESERVED: NOOP, ON_CALL: NOOP,
                   WRAPUP: IDLE},
}

# Every state change the router can make (a check on itself, not on inputs).
_TRANSITIONS: dict[str, frozenset[str]] = {
    # -> ON_CALL without an offer: a call found in progress (``agent_on_call``).
    LOGGED_OUT: frozenset({AVAILABLE, NOT_READY, ON_CALL}),
    AVAILABLE: frozenset({LOGGED_OUT, NOT_READY, RESERVED, ON_CALL}),
    NOT_READY: frozenset({LOGGED_OUT, AVAILABLE, NOT_READY, ON_CALL}),
    RESERVED: frozenset({ON_CALL, AVAILABLE, NOT_READY, LOGGED_OUT}),
    ON_CALL: frozenset({WRAPUP, AVAILABLE, NOT_READY, LOGGED_OUT}),
    # WRAPUP -> WRAPUP: the timer ran out, the disposition is still due.
    WRAPUP: frozenset({AVAILABLE, NOT_READY, LOGGED_OUT, ON_CALL, WRAPUP}),
}


@dataclass(slots=True, eq=False)
class _Agent:
    id: str
    ord: int
    device: str
    skills: dict[str, int]
    state: str = LOGGED_OUT
    reason: str = ""
    since: float = 0.0
    avail_ver: int = 0
    idle_since: float = 0.0
    calls_today: int = 0
    rr: dict[str, int] = field(default_factory=dict)      # queue id -> turn of its last offer
    pending_not_ready: str | None = None
    pending_logout: bool = False
    offer: "_Call | None" = None
    call_id: str | None = None                            # the call being handled
    call_queue: "_Queue | None" = None
    answered_at: float = 0.0
    timer_ver: int = 0
    pools: list[tuple[Pool, tuple[Tier, ...]]] = field(default_factory=list)
    held: dict[str, "_Call"] = field(default_factory=dict)  # calls waiting for this agent
    unreachable: bool = False                             # its device cannot ring (device_reachable)
    wrapup_ends: float | None = None                      # in wrap-up: when its timer ends (None: none)
    wrapup_max: float | None = None                       # the latest an extension may reach
    wrapup_step: float = 0.0                              # one extension
    owes: str | None = None                               # the call whose disposition is required
    # Not offered calls while available (acd.tasks: its tasks block voice, or capacity.voice 0).
    voice_blocked: bool = False
    # When its state last changed for a cause other than its wrap-up timer (following:
    # a leader's row older than this, by more than FOLLOW_SKEW_S, is about an earlier state).
    episode_at: float = 0.0


@dataclass(slots=True, eq=False)
class _Call:
    id: str
    queue: "_Queue"
    prio: int
    prio_override: int | None
    extras: ReqSet
    customer_id: str | None
    arrived_at: float
    entered_at: float
    seq: int
    step: int = 0
    pool: Pool | None = None
    status: str = WAITING
    ver: int = 0
    timer_ver: int = 0
    preferred: _Agent | None = None
    preferred_why: str = ""
    hold_until: float = 0.0
    window_over: bool = False
    agent: _Agent | None = None
    offer_ver: int = 0
    callback: bool = False          # the caller hung up to be called back: no max wait


class _Queue:
    __slots__ = ("cfg", "id", "prio", "weight", "step_reqs", "members", "calls", "lenders", "borrowers",
                 "offered", "answered", "within", "abandoned", "timed_out", "talk_avg", "lending",
                 "lend_threshold", "base_pool", "has_skips", "direct", "by_skill")

    def __init__(self, cfg: QueueConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.prio = cfg.priority
        self.weight = cfg.aging_weight
        self.step_reqs: list[ReqSet] = [merge_requirements((r.skill, r.min_level) for r in cfg.requirements)]
        for step in cfg.steps:
            self.step_reqs.append(merge_requirements((r.skill, r.min_level) for r in step.requirements))
        # (agent, lending queue or None, membership priority, delay)
        self.members: list[tuple[_Agent, _Queue | None, int, float]] = []
        self.calls: dict[str, _Call] = {}
        self.lenders: list[_Queue] = []
        self.borrowers: list[_Queue] = []
        self.offered = self.answered = self.within = self.abandoned = self.timed_out = 0
        self.talk_avg = cfg.expected_handle_s
        self.lending = True
        self.lend_threshold = cfg.lend_while_sl_above if cfg.lend_while_sl_above is not None else cfg.sl_percent
        self.base_pool: Pool | None = None
        self.has_skips = any(s.skip_if_nobody for s in cfg.steps)
        self.direct: set[str] = set()           # ids of the queue's own members
        self.by_skill: dict[str, list[tuple[_Agent, _Queue | None, int, float]]] = {}  # members having it

    def service_level(self) -> float | None:
        return 100.0 * self.within / self.offered if self.offered else None


class Router:
    """Skill-based routing of waiting calls to agents. See the module docstring.

    Inputs return ``list[Decision]``; queries return views. Raises
    ``AcdInputError`` for unknown ids and ``AgentStateError`` for forbidden
    agent requests; nothing else.
    """

    def __init__(self, config: AcdConfig, *, following: bool = False) -> None:
        self.config = config
        # A standby's shadow router: no offer of its own, no ring guard (``lead`` ends it).
        self.following = following
        self._observed_at: dict[str, float] = {}     # agent id -> the latest state observed
        self.ignored = 0
        self._now = -math.inf
        self._skills = set(config.skills)
        self._agents: dict[str, _Agent] = {}
        for i, a in enumerate(config.agents):
            self._agents[a.id] = _Agent(a.id, i, a.device, dict(a.skills),
                                        voice_blocked=a.capacity.voice == 0)
        self._queues: dict[str, _Queue] = {q.id: _Queue(q) for q in config.queues}
        for q in self._queues.values():
            for lid in q.cfg.borrow_from:
                lender = self._queues[lid]
                q.lenders.append(lender)
                if q not in lender.borrowers:
                    lender.borrowers.append(q)
        for a in config.agents:
            for qid, m in a.queues.items():
                self._queues[qid].members.append((self._agents[a.id], None, m.priority, m.delay_s))
                self._queues[qid].direct.add(a.id)
        for q in self._queues.values():
            for lender in q.lenders:
                for a in config.agents:
                    m = a.queues.get(lender.id)
                    if m is not None and a.id not in q.direct:
                        q.members.append((self._agents[a.id], lender, m.priority, m.delay_s))
        for q in self._queues.values():
            for m in q.members:
                for skill in m[0].skills:
                    q.by_skill.setdefault(skill, []).append(m)
        self._pools: dict[tuple[str, ReqSet], Pool] = {}
        for q in self._queues.values():
            for step in range(len(q.step_reqs)):
                pool = self._pool_for(q, step, ())
                if step == 0:
                    q.base_pool = pool
        self._calls: dict[str, _Call] = {}
        self._timers: list[tuple[float, int, int, Any, int]] = []
        self._tseq = count()
        self._cseq = count()
        self._turns = count()
        self._last_agent: OrderedDict[str, str] = OrderedDict()
        # Work left for the end of the current input (see _settle).
        self._logged_out: list[_Agent] = []
        self._emptied: list[Pool] = []
        self._recovered: list[_Queue] = []
        # Asterisk cannot be told anything (link_lost): no offer is decided until link_restored.
        self.link_down = False

    # -- agent inputs ----------------------------------------------------------

    def auto_login(self, now: float) -> list[Decision]:
        """Log in every agent whose config says ``auto_login``."""
        now = self._clock(now)
        out: list[Decision] = []
        for a in self.config.agents:
            if a.auto_login:
                out += self.login(a.id, now)
        return out

    def resume(self, agent_id: str, state: str, reason: str, since: float, now: float) -> list[Decision]:
        """At start: a logged-out agent takes the state it was in before a restart
        (``acd.resume``): ``available`` or ``not_ready`` with ``reason``, in it since
        ``since`` (at most ``now``), so its time in state goes on (or ``wrapup``, for a
        standby following a leader whose agent is in wrap-up: until ``since`` plus
        the agent's longest queue wrap-up); the ``AgentState``
        decision carries ``since`` as its time. ``logged_out`` changes nothing. An
        agent whose device is unreachable is not ready ``unreachable`` from ``now``
        instead of available. An agent already logged in gives ``Ignored``.
        Raises ``AcdInputError`` for an unknown agent or another state."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        if state not in (LOGGED_OUT, AVAILABLE, NOT_READY, WRAPUP):
            raise AcdInputError(f"agent {agent_id!r}: cannot resume {state!r}")
        if agent.state != LOGGED_OUT:
            return self._ignore("resume", None, agent_id, f"agent is {agent.state}")
        out: list[Decision] = []
        if state == LOGGED_OUT:
            return out
        at = since if since == since and since <= now else now
        if state == WRAPUP:
            self._set_state(agent, WRAPUP, reason or "wrap-up", at, out, check=False)
            self._timed_wrapup(agent, at)
            self._settle(now, out)
            return out
        if state == AVAILABLE and agent.unreachable:
            state, reason, at = NOT_READY, UNREACHABLE, now
        self._set_state(agent, state, reason or ("not ready" if state == NOT_READY else "login"), at, out)
        if state == AVAILABLE:
            self._match_agent(agent, now, out)
        self._settle(now, out)
        return out

    def login(self, agent_id: str, now: float) -> list[Decision]:
        """The agent logs in and is available (a no-op when already logged in)."""
        return self._agent_request("login", agent_id, now, "login")

    def logout(self, agent_id: str, now: float) -> list[Decision]:
        """The agent logs out; while ringing or on a call, when that call ends."""
        return self._agent_request("logout", agent_id, now, "logout")

    def set_ready(self, agent_id: str, now: float) -> list[Decision]:
        """The agent is ready for calls (ends wrap-up; cancels a pending not-ready or logout)."""
        return self._agent_request("set_ready", agent_id, now, "ready")

    def set_not_ready(self, agent_id: str, reason: str, now: float) -> list[Decision]:
        """The agent takes a break; while ringing or on a call, when that call ends."""
        return self._agent_request("set_not_ready", agent_id, now, reason or "not ready")

    def end_wrapup(self, agent_id: str, now: float) -> list[Decision]:
        """The agent ends wrap-up early (a no-op outside wrap-up)."""
        return self._agent_request("end_wrapup", agent_id, now, "wrap-up ended by agent")

    def extend_wrapup(self, agent_id: str, now: float) -> list[Decision]:
        """The agent asks for more wrap-up time: its end moves by the queue's
        ``wrapup_extend_s``, never past ``wrapup_max_s`` after the call. Changes no
        state (the view's ``wrapup_ends_at``). Raises ``AgentStateError`` outside a
        timed wrap-up, when the queue allows none, or at the longest."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        ends, latest = agent.wrapup_ends, agent.wrapup_max
        if agent.state != WRAPUP or ends is None:
            raise AgentStateError(f"agent {agent_id!r} is in no timed wrap-up: nothing to extend")
        if latest is None or ends >= latest:
            raise AgentStateError(f"agent {agent_id!r}: the queue allows no longer wrap-up")
        agent.wrapup_ends = min(latest, max(ends, now) + agent.wrapup_step)
        agent.timer_ver += 1
        self._push_timer(agent.wrapup_ends, _WRAPUP, agent, agent.timer_ver)
        return []

    def disposition_saved(self, agent_id: str, call_id: str, now: float) -> list[Decision]:
        """A disposition of ``call_id`` was saved by the agent: one the queue required
        no longer holds the agent (in a wrap-up whose time is over: idle at once)."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        if agent.owes != call_id:
            return self._ignore("disposition_saved", call_id, agent_id, "no disposition due for this call")
        agent.owes = None
        out: list[Decision] = []
        if agent.state == WRAPUP and agent.wrapup_ends is None:
            self._go_idle(agent, "disposition saved", now, out)
        self._settle(now, out)
        return out

    def _agent_request(self, what: str, agent_id: str, now: float, reason: str) -> list[Decision]:
        now = self._clock(now)
        agent = self._agent(agent_id)
        action = _AGENT_REQUESTS[what][agent.state]
        out: list[Decision] = []
        if action == NOOP:
            return out
        if action == ERROR:
            raise AgentStateError(f"agent {agent_id!r} is {agent.state}: cannot {what}")
        if agent.owes is not None and action in (AVAILABLE, IDLE) and not agent.pending_logout \
                and agent.pending_not_ready is None:
            raise AgentStateError(f"agent {agent_id!r}: save the disposition of call {agent.owes} first")
        if agent.unreachable and what == "set_ready":
            raise AgentStateError(f"agent {agent_id!r}: the device {agent.device} is unreachable")
        if action == PENDING:
            if what == "logout":
                agent.pending_logout = True
            elif what == "set_not_ready":
                agent.pending_not_ready = reason
            else:  # set_ready: the agent wants calls after all
                agent.pending_logout = False
                agent.pending_not_ready = None
            return out
        if action == IDLE:
            self._go_idle(agent, reason, now, out)
        else:
            if action == NOT_READY and agent.state == NOT_READY and agent.reason == reason:
                return out
            agent.pending_not_ready = None
            agent.pending_logout = False
            if action == AVAILABLE and agent.unreachable:  # a login at a phone that cannot ring
                action, reason = NOT_READY, UNREACHABLE
            self._set_state(agent, action, reason, now, out)
            if action == AVAILABLE:
                self._match_agent(agent, now, out)
        self._settle(now, out)
        return out

    def set_voice_blocked(self, agent_id: str, blocked: bool, now: float) -> list[Decision]:
        """The agent may (not) be offered calls, whatever its state: its tasks of other
        channels block voice (``acd.tasks``, docs/omnichannel.md). A blocked agent
        stays ``available`` (it is, for the other channels) but no call is offered
        to it; unblocked and available, it takes the best call it may at once. An
        offer ringing now is not withdrawn. Unchanged for an agent whose
        ``capacity.voice`` is 0 (never offered calls).
        Raises ``AcdInputError`` for an unknown agent."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        blocked = bool(blocked) or self._voice_cap0(agent)
        out: list[Decision] = []
        if agent.voice_blocked == blocked:
            return out
        agent.voice_blocked = blocked
        if agent.state == AVAILABLE:
            if blocked:
                agent.avail_ver += 1
                for _, tiers in agent.pools:
                    for t in tiers:
                        t.live -= 1
            else:
                self._push_available(agent)
                self._match_agent(agent, now, out)
        self._settle(now, out)
        return out

    def _voice_cap0(self, agent: _Agent) -> bool:
        return self.config.agents[agent.ord].capacity.voice == 0

    def set_device(self, agent_id: str, device: str) -> None:
        """The agent's offers ring ``device`` from now on (an offer ringing now
        goes on at the old one). Raises ``AcdInputError`` for an unknown agent."""
        self._agent(agent_id).device = device

    def device_reachable(self, agent_id: str, reachable: bool, now: float) -> list[Decision]:
        """The agent's device can ring (again), or cannot: see the module docstring."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        out: list[Decision] = []
        if agent.unreachable == (not reachable):
            return out
        agent.unreachable = not reachable
        if not reachable:
            if agent.state in (AVAILABLE, WRAPUP):
                agent.pending_not_ready = None
                self._set_state(agent, NOT_READY, UNREACHABLE, now, out)
            elif agent.state in (RESERVED, ON_CALL) and not agent.pending_logout:
                agent.pending_not_ready = UNREACHABLE
        elif agent.state == NOT_READY and agent.reason == UNREACHABLE:
            if agent.owes is not None:
                self._set_state(agent, NOT_READY, f"disposition due for call {agent.owes}", now, out)
            else:
                self._set_state(agent, AVAILABLE, "device reachable", now, out)
                self._match_agent(agent, now, out)
        elif agent.pending_not_ready == UNREACHABLE:
            agent.pending_not_ready = None
        self._settle(now, out)
        return out

    # -- call inputs -------------------------------------------------------------

    def call_waiting(self, call_id: str, queue_id: str, now: float, *, priority: int | None = None,
                     skills: dict[str, int] | None = None, customer_id: str | None = None,
                     preferred_agent: str | None = None, since: float | None = None,
                     callback: bool = False) -> list[Decision]:
        """A caller starts waiting in ``queue_id``.

        ``priority`` overrides the queue's; ``skills`` are extra requirements
        (kept at every step); the preferred agent is ``preferred_agent`` or the
        agent who last answered ``customer_id``. ``since`` (at most ``now``) is
        when the wait began, for a caller the daemon takes over after a restart
        or a callback that keeps its place: it counts for order, escalation
        steps, delays and max wait. ``callback``: nobody is on the line (a
        callback request): max wait does not apply.
        Raises: ``AcdInputError`` for an unknown queue, skill or agent, or a level outside 1..10.
        """
        now = self._clock(now)
        began = now if since is None or since != since else min(since, now)
        q = self._queues.get(queue_id)
        if q is None:
            raise AcdInputError(f"unknown queue {queue_id!r}")
        if q.cfg.channel != "voice":
            raise AcdInputError(f"queue {queue_id!r} queues {q.cfg.channel} tasks, not calls")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise AcdInputError(f"call {call_id!r}: priority must be an integer, not {priority!r}")
        extras: ReqSet = ()
        if skills:
            for s, lvl in skills.items():
                if s not in self._skills:
                    raise AcdInputError(f"call {call_id!r}: unknown skill {s!r}")
                if isinstance(lvl, bool) or not isinstance(lvl, int) or not 1 <= lvl <= 10:
                    raise AcdInputError(f"call {call_id!r}: skill {s!r} level must be 1..10, not {lvl!r}")
            extras = merge_requirements(skills.items())
        pref: _Agent | None = None
        why = ""
        if preferred_agent is not None:
            pref, why = self._agent(preferred_agent), "requested"
        elif customer_id is not None and customer_id in self._last_agent:
            pref, why = self._agents[self._last_agent[customer_id]], f"last served customer {customer_id}"
        if call_id in self._calls:
            return self._ignore("call_waiting", call_id, None, "call already waiting")
        call = _Call(call_id, q, q.prio if priority is None else priority, priority, extras, customer_id,
                     began, began, next(self._cseq), callback=callback)
        call.pool = self._pool_for(q, 0, extras)
        self._calls[call_id] = call
        q.calls[call_id] = call
        out: list[Decision] = []
        call.pool.push_call(call)
        if began < now:  # the steps it has already waited through
            steps = q.cfg.steps
            while call.step < len(steps) and began + steps[call.step].after_s <= now:
                self._escalate(call, now, out, f"waited {steps[call.step].after_s:g}s in {q.id} before")
            if self._past_max_wait(call, now):
                self._max_wait(call, now, out)
                self._settle(now, out)
                return out
        self._apply_skips(call, now, out)
        if (pref is not None and q.cfg.preferred_agent_s > 0 and pref.state != LOGGED_OUT
                and pref.id in q.direct and qualifies(pref.skills, call.pool.reqs)):
            call.pool.drop_call(call)
            call.preferred, call.preferred_why = pref, why
            call.hold_until = now + q.cfg.preferred_agent_s
            call.status = HELD
            pref.held[call_id] = call
        self._try_call(call, now, out)
        self._settle(now, out)
        return out

    def call_abandoned(self, call_id: str, now: float) -> list[Decision]:
        """The caller hung up while waiting, held or ringing an agent."""
        now = self._clock(now)
        call = self._calls.get(call_id)
        if call is None:
            return self._ignore("call_abandoned", call_id, None, "call not waiting")
        out: list[Decision] = []
        freed: _Agent | None = None
        if call.status == RINGING:
            freed = call.agent
            assert freed is not None
            out.append(Withdrawn(call_id, freed.id, "caller abandoned", now))
            freed.offer = None
            call.agent = None
            self._go_idle(freed, f"offer of {call_id} withdrawn: caller abandoned", now, out, match=False)
        else:
            self._unplace(call)
        self._outcome(call.queue, "abandoned")
        self._remove(call, "abandoned", now, out)
        if freed is not None and freed.state == AVAILABLE:
            self._match_agent(freed, now, out)
        self._settle(now, out)
        return out

    def divert(self, call_id: str, reason: str, now: float) -> list[Decision]:
        """The call leaves the ACD unserved for another path (an emergency switch,
        docs/emergency.md): counted like a maximum wait (timed out), dequeued with
        ``reason``. Ignored while an agent rings for it (an agent has the call) or
        when it is not here."""
        now = self._clock(now)
        call = self._calls.get(call_id)
        if call is None or call.status == RINGING:
            return self._ignore("divert", call_id, None,
                                "call not waiting" if call is None else "an agent is ringing for it")
        self._unplace(call)
        self._outcome(call.queue, "timed_out")
        out: list[Decision] = []
        self._remove(call, reason, now, out)
        self._settle(now, out)
        return out

    def to_callback(self, call_id: str, now: float) -> list[Decision]:
        """The waiting caller hangs up to be called back, keeping their place:
        the call stays where it is (arrival, step, priority) but max wait no
        longer applies. Ignored unless the call is waiting or held (while an
        agent rings, the caller is about to be connected instead)."""
        now = self._clock(now)
        call = self._calls.get(call_id)
        if call is None or call.status == RINGING:
            return self._ignore("to_callback", call_id, None,
                                "call not waiting" if call is None else "an agent is ringing for it")
        call.callback = True
        self._schedule(call, now)
        return []

    def move_call(self, call_id: str, now: float, *, queue_id: str | None = None,
                  priority: int | None = None) -> list[Decision]:
        """A supervisor moves a waiting (or held) call to ``queue_id`` and/or gives it
        ``priority`` (it then keeps that priority in any queue, like a caller's own).

        A move to another queue is an overflow done by hand: the call leaves its
        queue counted as timed out there, enters the target at step 0 (steps, max
        wait and service level count from now) and keeps its arrival time for
        order. Returns ``Moved`` (and any offer it allows at once). Ignored while
        an agent rings for it or when the call is unknown.
        Raises: ``AcdInputError`` for an unknown queue or a priority that is not an integer.
        """
        now = self._clock(now)
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise AcdInputError(f"call {call_id!r}: priority must be an integer, not {priority!r}")
        target = None
        if queue_id is not None:
            target = self._queues.get(queue_id)
            if target is None:
                raise AcdInputError(f"unknown queue {queue_id!r}")
        call = self._calls.get(call_id)
        if call is None or call.status == RINGING:
            return self._ignore("move_call", call_id, None,
                                "call not waiting" if call is None else "an agent is ringing for it")
        out: list[Decision] = []
        source = call.queue
        self._unplace(call)
        if call.status == HELD:
            call.preferred = None
            call.status = WAITING
        if priority is not None:
            call.prio = call.prio_override = priority
        if target is not None and target is not source:
            self._outcome(source, "timed_out")
            self._enter_queue(call, target, now)
        call.pool = self._pool_for(call.queue, call.step, call.extras)
        call.pool.push_call(call)
        out.append(Moved(call.id, source.id, call.queue.id, call.prio, now, call.prio_override is not None))
        self._try_call(call, now, out)
        self._settle(now, out)
        return out

    def offer_answered(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The agent answered: on call; the call leaves the router (``Dequeued`` answered)."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        call = self._calls.get(call_id)
        if call is None or call.status != RINGING or call.agent is not agent:
            return self._ignore("offer_answered", call_id, agent_id, "no such offer standing")
        q = call.queue
        out: list[Decision] = []
        agent.offer = None
        agent.call_id = call_id
        agent.call_queue = q
        agent.answered_at = now
        agent.calls_today += 1
        self._set_state(agent, ON_CALL, f"answered call {call_id}", now, out)
        self._outcome(q, "answered", within=now - call.entered_at <= q.cfg.sl_seconds)
        if call.customer_id is not None:
            self._last_agent[call.customer_id] = agent.id
            self._last_agent.move_to_end(call.customer_id)
            if len(self._last_agent) > MAX_CUSTOMERS:
                self._last_agent.popitem(last=False)
        self._remove(call, "answered", now, out)
        self._settle(now, out)
        return out

    def offer_failed(self, call_id: str, agent_id: str, reason: str, now: float) -> list[Decision]:
        """The offer ended unanswered (``noanswer``, ``busy``, ``rejected``, ``failed``).

        The agent becomes not ready (reasons in ``FAILURE_STATES``, e.g. noanswer
        -> "missed"); the call waits again in its place (arrival time kept).
        """
        now = self._clock(now)
        if reason not in FAILURE_STATES:
            raise AcdInputError(f"offer_failed reason must be one of {sorted(FAILURE_STATES)}, not {reason!r}")
        agent = self._agent(agent_id)
        call = self._calls.get(call_id)
        if call is None or call.status != RINGING or call.agent is not agent:
            return self._ignore("offer_failed", call_id, agent_id, "no such offer standing")
        out: list[Decision] = []
        self._fail_offer(call, agent, FAILURE_STATES[reason], now, out)
        self._settle(now, out)
        return out

    def offer_unsent(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The offer never left for Asterisk (no connection): nothing rang, and it is
        no fault of the agent's. The agent is free again (or takes the break or the
        logout it asked for meanwhile), the call waits again in its place. Give
        ``link_lost`` first: while the link is down nothing is offered, so a dead
        connection cannot run the waiting calls through every free agent."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        call = self._calls.get(call_id)
        if call is None or call.status != RINGING or call.agent is not agent:
            return self._ignore("offer_unsent", call_id, agent_id, "no such offer standing")
        out: list[Decision] = []
        agent.offer = None
        call.agent = None
        call.status = WAITING
        call.pool.push_call(call)
        self._go_idle(agent, f"offer of call {call_id} not sent", now, out)
        if call.status != WAITING:      # the agent took it again at once (the link is up)
            pass
        elif self._past_max_wait(call, now):
            self._max_wait(call, now, out)
        else:
            self._try_call(call, now, out)
        self._settle(now, out)
        return out

    def link_lost(self, now: float) -> list[Decision]:
        """Asterisk cannot be told anything (the AMI connection is down): from now
        on no offer is decided; calls wait, agents keep their states, timers run."""
        self._clock(now)
        self.link_down = True
        return []

    def link_restored(self, now: float) -> list[Decision]:
        """Asterisk can be told again: each available agent, longest idle first,
        takes the best call it may (the *stable* invariant holds again)."""
        now = self._clock(now)
        if not self.link_down:
            return []
        self.link_down = False
        out: list[Decision] = []
        free = sorted((a for a in self._agents.values() if a.state == AVAILABLE), key=lambda a: (a.idle_since, a.ord))
        for agent in free:
            if agent.state == AVAILABLE:
                self._match_agent(agent, now, out)
        self._settle(now, out)
        return out

    def call_finished(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The agent's leg of an answered call ended: wrap-up for the queue's ``wrapup_s``."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        if agent.state != ON_CALL or agent.call_id != call_id:
            return self._ignore("call_finished", call_id, agent_id, "agent not on this call")
        q = agent.call_queue
        assert q is not None
        q.talk_avg += HANDLE_ALPHA * (max(0.0, now - agent.answered_at) - q.talk_avg)
        agent.call_id = None
        agent.call_queue = None
        if q.cfg.disposition_required:
            agent.owes = call_id
        out: list[Decision] = []
        if agent.pending_logout or q.cfg.wrapup_s <= 0:
            self._go_idle(agent, f"call {call_id} ended", now, out)
        else:
            self._set_state(agent, WRAPUP, f"wrap-up after call {call_id}", now, out)
            agent.timer_ver += 1
            agent.wrapup_ends = now + q.cfg.wrapup_s
            agent.wrapup_max = now + q.cfg.wrapup_max_s if q.cfg.wrapup_max_s is not None else None
            agent.wrapup_step = q.cfg.wrapup_extend_s
            self._push_timer(agent.wrapup_ends, _WRAPUP, agent, agent.timer_ver)
        self._settle(now, out)
        return out

    def agent_on_call(self, agent_id: str, call_id: str, queue_id: str, now: float, *,
                      back_to_previous: bool = False) -> list[Decision]:
        """The agent is found talking on a call the router did not offer (a
        daemon taking over after a restart, a transfer from another agent): on
        call, as if it had answered ``call_id`` of ``queue_id``; ``call_finished``
        ends it as usual. With ``back_to_previous`` (a transfer: the router knows
        the agent's state) an agent who was logged out or not ready returns to
        that afterwards; without it (a restart: the state is not known) they wrap
        up and become available. An agent being offered a call or already on one
        is left alone."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        q = self._queues.get(queue_id)
        if q is None:
            raise AcdInputError(f"unknown queue {queue_id!r}")
        if agent.state in (RESERVED, ON_CALL):
            return self._ignore("agent_on_call", call_id, agent_id, f"agent is {agent.state}")
        out: list[Decision] = []
        # An agent not taking calls whom a transfer reached goes back to that.
        if back_to_previous and agent.state == LOGGED_OUT:
            agent.pending_logout = True
        elif back_to_previous and agent.state == NOT_READY:
            agent.pending_not_ready = agent.reason or "not ready"
        agent.call_id = call_id
        agent.call_queue = q
        agent.answered_at = now
        self._set_state(agent, ON_CALL, f"found on call {call_id}", now, out)
        self._settle(now, out)
        return out

    # -- following the leader (a standby's shadow router; docs/ha.md "Warm standby") ------

    def offer_observed(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The leader offered ``call_id`` to ``agent_id`` at ``now``: here too the call
        rings that agent (reserved), as if this router had decided it, but no ``Offer``
        is returned. The leader's word wins over what this router holds: an offer of
        the call to another agent, or of another call to this agent, ended unseen
        (that call waits again in its place; that agent goes idle, without taking a
        call), and an agent held on a call here is taken off it. Ignored when the call
        is not here or the offer is already known.
        Raises ``AcdInputError`` for an unknown agent. (Here and in the other inputs
        of the leader's decisions, a late observation keeps the leader's time.)"""
        cur = self._clock(now)
        agent = self._agent(agent_id)
        call = self._calls.get(call_id)
        if call is None:
            return self._ignore("offer_observed", call_id, agent_id, "call not waiting")
        if call.status == RINGING and call.agent is agent and now <= agent.since:
            return self._ignore("offer_observed", call_id, agent_id, "offer already known")
        out: list[Decision] = []
        if call.status == RINGING and call.agent is agent:   # offered again (its end not seen yet)
            self._drop_offer(call, now, out, idle=False)
        elif call.status == RINGING:
            self._drop_offer(call, now, out, idle=True)
        if agent.offer is not None:
            self._drop_offer(agent.offer, now, out, idle=False)
        if agent.state == ON_CALL:      # its call ended at the leader before it ended here
            agent.call_id = agent.call_queue = None
        if agent.state not in (AVAILABLE, RESERVED):   # the leader offers only to a free agent
            agent.pending_logout, agent.pending_not_ready, agent.owes = False, None, None
        self._offer(call, agent, now, out, "offered by the leader", emit=False)
        self._settle(cur, out)
        return out

    def offer_ended(self, call_id: str, agent_id: str, outcome: str, now: float) -> list[Decision]:
        """An offer followed here ended: ``answered`` (as ``offer_answered``), one of
        ``FAILURE_STATES`` (as ``offer_failed``), or ``withdrawn``: the leader's ring
        guard gave up on it (a ``Withdrawn``, then as unanswered). Ignored when no such
        offer stands. Raises ``AcdInputError`` for an unknown agent or outcome."""
        if outcome == "answered":
            return self.offer_answered(call_id, agent_id, now)
        if outcome != "withdrawn":
            return self.offer_failed(call_id, agent_id, outcome, now)
        cur = self._clock(now)
        agent = self._agent(agent_id)
        call = self._calls.get(call_id)
        if call is None or call.status != RINGING or call.agent is not agent or now <= agent.since:
            # (an offer made at or after the withdrawal is a new one: the leader offered again)
            return self._ignore("offer_ended", call_id, agent_id, "no such offer standing")
        out: list[Decision] = [Withdrawn(call_id, agent_id, "withdrawn by the leader", now)]
        self._fail_offer(call, agent, FAILURE_STATES["noanswer"], now, out)
        self._settle(cur, out)
        return out

    def agent_state_observed(self, agent_id: str, state: str, reason: str, at: float) -> list[Decision]:
        """The leader put the agent in ``state`` (with ``reason``) at ``at`` (its state
        log). What the leader decided from calls (reserved, on call) comes through
        ``offer_observed`` and the call inputs: ignored here. Otherwise the agent takes
        ``state`` since ``at`` (unless this router holds a newer state: the agent
        reserved or on a call since after ``at``, or in another state since more than
        ``FOLLOW_SKEW_S`` after it, its own wrap-up timer's end counting from the
        wrap-up's start: within that the two nodes' times of one cause differ, and
        the leader's word wins): what it asked for meanwhile is dropped (the leader
        has decided it), an offer it holds here ends (the call waits again), a call it
        holds here is over (a wrap-up observed then is this router's own, with the
        queue's timer; one observed without a call gets the agent's longest wrap-up).
        An observation older than the last one applied for the agent is ignored.
        Raises ``AcdInputError`` for an unknown agent or state, or a time not finite."""
        if state not in AGENT_STATES:
            raise AcdInputError(f"agent {agent_id!r}: unknown state {state!r}")
        if not math.isfinite(at):
            raise AcdInputError(f"agent {agent_id!r}: observed at {at!r}")
        now = self._clock(at)
        agent = self._agent(agent_id)
        if at < self._observed_at.get(agent_id, -math.inf):
            return self._ignore("agent_state_observed", None, agent_id, "older than a state already observed")
        # Reserved or on a call here: from an offer or an answer at least as new as the
        # leader's decision (the Dial and the answer follow the decision).
        busy = agent.state in (RESERVED, ON_CALL)
        if (at <= agent.since) if busy else (at < agent.episode_at - FOLLOW_SKEW_S):
            return self._ignore("agent_state_observed", None, agent_id, "older than the state held here")
        self._observed_at[agent_id] = at
        if state in (RESERVED, ON_CALL):
            return self._ignore("agent_state_observed", None, agent_id, "followed through offers and calls")
        since = min(at, now)
        out: list[Decision] = []
        if agent.state == ON_CALL and state == WRAPUP and agent.call_id is not None:
            out += self.call_finished(agent.call_id, agent_id, now)
        if agent.state == state and (agent.reason, agent.since) == (reason, since):
            return out
        if agent.state == state and state != NOT_READY:
            self._retime(agent, reason, since)     # the leader's time in the state (idle order)
            self._settle(now, out)
            return out
        if agent.offer is not None:
            self._drop_offer(agent.offer, now, out, idle=False)
        agent.call_id = agent.call_queue = None
        agent.pending_logout = False
        agent.pending_not_ready = None
        if state == AVAILABLE:
            agent.owes = None           # the leader frees nobody who owes a disposition
        self._set_state(agent, state, reason, since, out, check=False)
        if state == WRAPUP:
            self._timed_wrapup(agent, since)
        self._settle(now, out)
        return out

    def _retime(self, agent: _Agent, reason: str, since: float) -> None:
        """The agent stays in its state, but in it since ``since`` (with ``reason``):
        an available agent takes its place in the idle order again."""
        agent.reason, agent.since, agent.episode_at = reason, since, since
        if agent.state == AVAILABLE and agent.idle_since != since:
            agent.idle_since = since
            if not agent.voice_blocked:
                agent.avail_ver += 1
                for _, tiers in agent.pools:
                    for t in tiers:
                        t.live -= 1
                self._push_available(agent)

    def _timed_wrapup(self, agent: _Agent, since: float) -> None:
        """A wrap-up whose call this router did not see: it ends the agent's longest
        queue wrap-up after ``since`` (not extensible)."""
        longest = max((self._queues[q].cfg.wrapup_s for q in self.config.agents[agent.ord].queues), default=0.0)
        agent.timer_ver += 1
        agent.wrapup_ends = since + longest
        agent.wrapup_max, agent.wrapup_step = None, 0.0
        self._push_timer(agent.wrapup_ends, _WRAPUP, agent, agent.timer_ver)

    def max_wait_observed(self, call_id: str, queue_id: str, now: float) -> list[Decision]:
        """The leader ended the call's stay in ``queue_id`` for its maximum wait: the
        queue's ``on_max_wait`` here too (an overflow enters the target now; another
        action dequeues the call). A following router decides no maximum wait of its
        own: a leader's offer decided in the same instant stops it there, and only the
        leader knows which came first. Ignored when the call is not waiting in
        ``queue_id`` (an observation seen twice) or an agent rings for it, unless the
        action is an overflow (seen late: the leader has since offered it in the target,
        and the call moves there ringing)."""
        cur = self._clock(now)
        call = self._calls.get(call_id)
        if call is None or call.queue.id != queue_id:
            return self._ignore("max_wait_observed", call_id, None, "call not waiting in that queue")
        out: list[Decision] = []
        action = call.queue.cfg.on_max_wait
        if call.status == RINGING and isinstance(action, Overflow):
            # Seen late: the leader overflowed the call and offered it in the target since.
            target = self._queues[action.overflow]
            self._outcome(call.queue, "timed_out")
            out.append(MaxWait(call.id, call.queue.id, "overflow", target.id, now))
            self._enter_queue(call, target, now)
            call.pool = self._pool_for(target, 0, call.extras)
            self._schedule(call, now)
        elif call.status == RINGING:
            return self._ignore("max_wait_observed", call_id, None, "an agent is ringing for it")
        else:
            self._max_wait(call, now, out)
        self._settle(cur, out)
        return out

    def escalation_observed(self, call_id: str, queue_id: str, step: int, now: float) -> list[Decision]:
        """The leader put the call at escalation ``step`` of ``queue_id``: the same
        requirements here. A following router takes its steps itself, as the leader
        does (by time, and for want of agents logged in); this catches up on a step
        the leader skipped because an agent left whose state this router had not read
        yet. Ignored when the call is not in that queue or already at that step or past it."""
        cur = self._clock(now)
        call = self._calls.get(call_id)
        if call is None or call.queue.id != queue_id or call.step >= step:
            return self._ignore("escalation_observed", call_id, None, "call not below that step of that queue")
        out: list[Decision] = []
        while call.step < min(step, len(call.queue.cfg.steps)):
            self._escalate(call, now, out, "escalated by the leader")
        self._settle(cur, out)
        return out

    def lead(self, now: float) -> list[Decision]:
        """Stop following: from now on this router decides (a standby taking over).
        Offers ringing get a ring guard from now; calls take the escalation steps and
        the maximum wait now due; each available agent, longest idle first, takes the
        best call it may (the *stable* invariant holds again)."""
        now = self._clock(now)
        if not self.following:
            return []
        self.following = False
        out: list[Decision] = []
        for call in sorted(self._calls.values(), key=lambda c: c.seq):
            steps = call.queue.cfg.steps       # the steps due, by time and for want of agents
            while call.step < len(steps) and call.entered_at + steps[call.step].after_s <= now:
                self._escalate(call, now, out, f"waited {steps[call.step].after_s:g}s in {call.queue.id}")
            if call.status == RINGING:
                self._push_timer(now + call.queue.cfg.ring_timeout_s + OFFER_GRACE_S, _RING, call, call.offer_ver)
                self._schedule(call, now)
                continue
            self._apply_skips(call, now, out)
            if self._past_max_wait(call, now):
                self._max_wait(call, now, out)
            elif call.status != _GONE:
                self._schedule(call, now)       # its steps and maximum wait count again
        free = sorted((a for a in self._agents.values() if a.state == AVAILABLE), key=lambda a: (a.idle_since, a.ord))
        for agent in free:
            if agent.state == AVAILABLE:
                self._match_agent(agent, now, out)
        self._settle(now, out)
        return out

    def _drop_offer(self, call: _Call, now: float, out: list[Decision], *, idle: bool) -> None:
        """A followed offer ended unseen: the call waits again in its place; its agent
        goes idle (``idle``) without taking a call."""
        agent = call.agent
        assert agent is not None
        agent.offer = None
        call.agent = None
        call.status = WAITING
        call.pool.push_call(call)
        self._schedule(call, now)
        if idle:
            self._go_idle(agent, f"offer of {call.id} ended at the leader", now, out, match=False)

    def tick(self, now: float) -> list[Decision]:
        """Run every timer due at ``now``."""
        now = self._clock(now)
        out: list[Decision] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, obj, ver = heappop(timers)
            if kind == _CALL:
                if obj.timer_ver == ver and obj.status != _GONE:
                    self._call_timer(obj, now, out)
            elif kind == _RING:
                if obj.status == RINGING and obj.offer_ver == ver and not self.following:
                    agent = obj.agent
                    out.append(Withdrawn(obj.id, agent.id, RING_GUARD, now))
                    self._fail_offer(obj, agent, FAILURE_STATES["noanswer"], now, out)
            elif obj.state == WRAPUP and obj.timer_ver == ver:
                episode = obj.episode_at
                self._go_idle(obj, "wrap-up over", now, out)
                if self.following:
                    obj.episode_at = episode    # a timer of its own: what it knows is no newer
            self._settle(now, out)
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called (None: no timer pending)."""
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heappop(timers)
        return timers[0][0] if timers else None

    def new_day(self, now: float) -> list[Decision]:
        """Reset the per-day call counts ``fewest_calls`` ranks by (call it at midnight)."""
        self._clock(now)
        for a in self._agents.values():
            a.calls_today = 0
        for pool in self._pools.values():
            if pool.queue.cfg.selection == "fewest_calls":
                for tier in pool.tiers:
                    tier.rekey(lambda a, p=pool: self._key(p, a))
        return []

    # -- queries ------------------------------------------------------------------

    def agent_state(self, agent_id: str) -> AgentView:
        a = self._agent(agent_id)
        pending = "logout" if a.pending_logout else a.pending_not_ready
        call = a.offer.id if a.offer is not None else a.call_id
        queue = a.offer.queue if a.offer is not None else a.call_queue
        timed = a.state == WRAPUP and a.wrapup_ends is not None
        return AgentView(a.id, a.state, a.reason, a.since, call, pending, queue.id if queue else None,
                         a.device, not a.unreachable, a.wrapup_ends if timed else None,
                         a.wrapup_max if timed else None, a.owes, a.voice_blocked)

    def state_of(self, agent_id: str) -> str:
        """The agent's state now (cheaper than ``agent_state``)."""
        return self._agent(agent_id).state

    def waiting_calls(self) -> list[WaitingCall]:
        """Every call the router holds, in service order (priority, then arrival)."""
        calls = sorted(self._calls.values(), key=lambda c: (-c.prio, c.arrived_at, c.seq))
        return [self._view(c) for c in calls]

    def position(self, call_id: str) -> int | None:
        """1 for the next call of its queue to be served, 0 while ringing an agent, None if unknown.

        Counts the queue's waiting and held calls ahead of it: higher priority,
        or same priority and earlier arrival.
        """
        call = self._calls.get(call_id)
        if call is None:
            return None
        if call.status == RINGING:
            return 0
        mine = (-call.prio, call.arrived_at, call.seq)
        return 1 + sum(1 for c in call.queue.calls.values()
                       if c.status != RINGING and (-c.prio, c.arrived_at, c.seq) < mine)

    def estimated_wait(self, call_id: str, now: float) -> float | None:
        """Expected seconds until the call is offered: ``position x handle time / staffed``.

        handle time: the queue's moving average of talk time plus its wrapup_s;
        staffed: logged-in agents, not on a break, who may take the call under
        its current requirements. 0 while ringing; None when unknown or when
        nobody who could take it is staffed (escalation or max wait decides).
        """
        call = self._calls.get(call_id)
        if call is None:
            return None
        if call.status == RINGING:
            return 0.0
        staffed = call.pool.staffed
        if staffed == 0:
            return None
        pos = self.position(call_id) or 1
        q = call.queue
        return pos * (q.talk_avg + q.cfg.wrapup_s) / staffed

    def queue_stats(self, queue_id: str, now: float) -> QueueStats:
        """Live figures of one queue (service level: answered within sl_seconds / offered)."""
        q = self._queues.get(queue_id)
        if q is None:
            raise AcdInputError(f"unknown queue {queue_id!r}")
        waiting = ringing = 0
        oldest = now
        for c in q.calls.values():
            if c.status == RINGING:
                ringing += 1
            else:
                waiting += 1
            oldest = min(oldest, c.arrived_at)
        own = [t for t in q.base_pool.tiers if not t.borrowed]  # one tier per member
        eligible = sum(t.logged_in for t in own)
        available = sum(t.live for t in own)
        sl = q.service_level()
        return QueueStats(q.id, waiting, ringing, max(0.0, now - oldest), q.offered, q.answered, q.within,
                          q.abandoned, q.timed_out, sl, q.cfg.sl_percent, q.lending, eligible, available,
                          q.talk_avg + q.cfg.wrapup_s)

    # -- internals: agents ------------------------------------------------------------

    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise AcdInputError(f"unknown agent {agent_id!r}")
        return agent

    def _set_state(self, agent: _Agent, new: str, reason: str, now: float, out: list[Decision], *,
                   check: bool = True) -> None:
        old = agent.state
        if check and new not in _TRANSITIONS[old]:
            raise AssertionError(f"agent {agent.id}: {old} -> {new} is not a transition")
        if old == AVAILABLE and new != AVAILABLE and not agent.voice_blocked:
            agent.avail_ver += 1
            for _, tiers in agent.pools:
                for t in tiers:
                    t.live -= 1
        was_in, now_in = old != LOGGED_OUT, new != LOGGED_OUT
        was_staffed, now_staffed = old not in (LOGGED_OUT, NOT_READY), new not in (LOGGED_OUT, NOT_READY)
        if was_in != now_in or was_staffed != now_staffed:
            d_in = now_in - was_in
            d_st = now_staffed - was_staffed
            for pool, tiers in agent.pools:
                if d_in:
                    pool.logged_in += d_in
                    for t in tiers:
                        t.logged_in += d_in
                    if pool.logged_in == 0 and pool.n_calls and pool.queue.has_skips:
                        self._emptied.append(pool)
                pool.staffed += d_st
        agent.state = new
        agent.reason = reason
        agent.since = now
        agent.episode_at = now
        agent.wrapup_ends = None   # a timed wrap-up sets it after entering
        if new == LOGGED_OUT:
            agent.owes = None      # a new session owes nothing
        if new == AVAILABLE and old != AVAILABLE:
            agent.idle_since = now
            if not agent.voice_blocked:
                self._push_available(agent)
        if new == LOGGED_OUT:
            agent.timer_ver += 1
            if agent.held:
                self._logged_out.append(agent)
        out.append(AgentState(agent.id, old, new, reason, now))

    def _push_available(self, agent: _Agent) -> None:
        for pool, tiers in agent.pools:
            key = self._key(pool, agent)
            for t in tiers:
                t.push(key, agent)

    def _go_idle(self, agent: _Agent, reason: str, now: float, out: list[Decision], *,
                 match: bool = True) -> None:
        """The agent's work is over: available, or what it asked for meanwhile."""
        if agent.pending_logout:
            target, reason = LOGGED_OUT, "logout (deferred until the call ended)"
        elif agent.pending_not_ready is not None:
            target, reason = NOT_READY, agent.pending_not_ready
        elif agent.unreachable:
            target, reason = NOT_READY, UNREACHABLE
        elif agent.owes is not None:   # the queue wants the disposition first: wrap-up, untimed
            target, reason = WRAPUP, f"disposition due for call {agent.owes}"
        else:
            target = AVAILABLE
        agent.pending_logout = False
        agent.pending_not_ready = None
        self._set_state(agent, target, reason, now, out)
        if target == AVAILABLE and match:
            self._match_agent(agent, now, out)

    def _key(self, pool: Pool, agent: _Agent) -> tuple:
        """The queue's selection policy as a sort key (smallest first)."""
        sel = pool.queue.cfg.selection
        if sel == "longest_idle":
            return (agent.idle_since, agent.ord)
        if sel == "best_proficiency":
            prof = sum(agent.skills.get(s, 0) for s, _ in pool.reqs)
            return (-prof, agent.idle_since, agent.ord)
        if sel == "fewest_calls":
            return (agent.calls_today, agent.idle_since, agent.ord)
        return (agent.rr.get(pool.queue.id, -1), agent.ord)

    def _policy_words(self, pool: Pool, agent: _Agent, now: float) -> str:
        sel = pool.queue.cfg.selection
        idle = now - agent.idle_since
        if sel == "longest_idle":
            return f"longest idle {idle:.1f}s"
        if sel == "best_proficiency":
            prof = sum(agent.skills.get(s, 0) for s, _ in pool.reqs)
            return f"best proficiency {prof} (idle {idle:.1f}s)"
        if sel == "fewest_calls":
            return f"fewest calls today {agent.calls_today} (idle {idle:.1f}s)"
        return "round robin turn"

    def _fail_offer(self, call: _Call, agent: _Agent, state_reason: str, now: float, out: list[Decision]) -> None:
        agent.offer = None
        call.agent = None
        agent.pending_not_ready = None
        if agent.pending_logout:
            agent.pending_logout = False
            self._set_state(agent, LOGGED_OUT, f"{state_reason}; logout (deferred)", now, out)
        else:
            self._set_state(agent, NOT_READY, state_reason, now, out)
        call.status = WAITING
        call.pool.push_call(call)
        if self._past_max_wait(call, now):
            self._max_wait(call, now, out)
        else:
            self._try_call(call, now, out)

    # -- internals: matching ----------------------------------------------------------

    def _match_agent(self, agent: _Agent, now: float, out: list[Decision]) -> None:
        """An agent just became available: offer it the best call it may take, if any."""
        if self.link_down or agent.voice_blocked or self.following:
            return
        if agent.held:
            best = None
            for c in agent.held.values():
                if qualifies(agent.skills, c.pool.reqs):
                    k = (-c.prio, -(now - c.arrived_at) * c.queue.weight, c.seq)
                    if best is None or k < best[0]:
                        best = (k, c)
            if best is not None:
                c = best[1]
                self._offer(c, agent, now, out,
                            f"step {c.step} ({c.pool.label}); preferred agent ({c.preferred_why})")
                return
        best_key = None
        best: tuple[_Call, Tier] | None = None
        for pool, tiers in agent.pools:
            if not pool.n_calls:
                continue
            weight = pool.queue.weight
            for tier in tiers:
                if tier.borrowed and not tier.lender.lending:
                    continue
                for prio, heap in pool.calls.items():
                    call = pool.head(heap)
                    if call is None or call.arrived_at + tier.delay > now:
                        continue
                    k = (tier.borrowed, -prio, tier.mprio, (call.arrived_at - now) * weight, call.seq)
                    if best_key is None or k < best_key:
                        best_key, best = k, (call, tier)
        if best is None:
            return
        call, tier = best
        waited = now - call.arrived_at
        words = [f"step {call.step} ({call.pool.label})",
                 f"agent free: priority {call.prio}, waited {waited:.1f}s"
                 + (f" (effective {waited * call.queue.weight:.1f}s)" if call.queue.weight != 1 else "")]
        self._offer(call, agent, now, out, self._explain(words, call, tier))

    def _best_agent(self, call: _Call, now: float) -> tuple[Tier, _Agent] | None:
        best_key = None
        best = None
        for tier in call.pool.tiers:
            if not tier.live or call.arrived_at + tier.delay > now:
                continue
            if tier.borrowed and not tier.lender.lending:
                continue
            top = tier.top()
            if top is None:
                continue
            k = (tier.borrowed, tier.mprio, top[0])
            if best_key is None or k < best_key:
                best_key, best = k, (tier, top[1])
        return best

    def _try_call(self, call: _Call, now: float, out: list[Decision]) -> None:
        """A waiting or held call: offer it now if it can be, else set its next timer."""
        self._apply_skips(call, now, out)
        if self.link_down or self.following:
            pass
        elif call.status == HELD:
            agent = call.preferred
            if agent.state == AVAILABLE and not agent.voice_blocked and qualifies(agent.skills, call.pool.reqs):
                self._offer(call, agent, now, out,
                            f"step {call.step} ({call.pool.label}); preferred agent ({call.preferred_why})")
                return
        else:
            found = self._best_agent(call, now)
            if found is not None:
                tier, agent = found
                words = [f"step {call.step} ({call.pool.label})", self._policy_words(call.pool, agent, now)]
                self._offer(call, agent, now, out, self._explain(words, call, tier))
                return
        self._schedule(call, now)

    def _explain(self, words: list[str], call: _Call, tier: Tier) -> str:
        if tier.borrowed:
            words.append(f"borrowed from {tier.lender.id}")
        if tier.mprio:
            words.append(f"membership priority {tier.mprio}")
        if tier.delay:
            words.append(f"delay {tier.delay:g}s passed")
        if call.window_over:
            words.append("preferred agent window over")
        return "; ".join(words)

    def _offer(self, call: _Call, agent: _Agent, now: float, out: list[Decision], reason: str, *,
               emit: bool = True) -> None:
        self._unplace(call)
        call.status = RINGING
        call.agent = agent
        call.preferred = None
        call.offer_ver += 1
        q = call.queue
        self._set_state(agent, RESERVED, f"offered call {call.id}", now, out, check=emit)
        agent.offer = call
        agent.rr[q.id] = next(self._turns)
        ring = q.cfg.ring_timeout_s
        self._push_timer(now + ring + OFFER_GRACE_S, _RING, call, call.offer_ver)
        self._schedule(call, now)
        if emit:
            out.append(Offer(call.id, agent.id, agent.device, q.id, ring, call.step, reason))

    # -- internals: calls ------------------------------------------------------------------

    def _pool_for(self, q: _Queue, step: int, extras: ReqSet) -> Pool:
        reqs = merge_requirements(q.step_reqs[step], extras) if extras else q.step_reqs[step]
        pool = self._pools.get((q.id, reqs))
        if pool is None:
            # Only members having every required skill can qualify: start from the
            # fewest members having one of them (an IVR language narrows a lot).
            candidates = q.members
            for skill, _ in reqs:
                having = q.by_skill.get(skill, ())
                if len(having) < len(candidates):
                    candidates = having
            pool = self._pools[(q.id, reqs)] = self._make_pool(q, reqs, candidates)
        return pool

    def _make_pool(self, q: _Queue, reqs: ReqSet, candidates: Any) -> Pool:
        pool = Pool(q, reqs)
        tiers: dict[tuple[str | None, int, float], Tier] = {}
        per_agent: dict[int, tuple[_Agent, list[Tier]]] = {}
        for agent, lender, mprio, delay in candidates:
            if not qualifies(agent.skills, reqs):
                continue
            tkey = (lender.id if lender else None, mprio, delay)
            tier = tiers.get(tkey)
            if tier is None:
                tier = tiers[tkey] = Tier(lender, mprio, delay)
            per_agent.setdefault(id(agent), (agent, []))[1].append(tier)
        for agent, agent_tiers in per_agent.values():
            mine = tuple(agent_tiers)
            agent.pools.append((pool, mine))
            if agent.state != LOGGED_OUT:
                pool.logged_in += 1
                for t in mine:
                    t.logged_in += 1
            if agent.state not in (LOGGED_OUT, NOT_READY):
                pool.staffed += 1
            if agent.state == AVAILABLE and not agent.voice_blocked:
                key = self._key(pool, agent)
                for t in mine:
                    t.push(key, agent)
        pool.tiers = sorted(tiers.values(), key=lambda t: (t.borrowed, t.mprio, t.delay))
        pool.delays = sorted({t.delay for t in pool.tiers if t.delay > 0})
        return pool

    def _unplace(self, call: _Call) -> None:
        """Take a waiting or held call out of its pool or hold."""
        if call.status == WAITING:
            call.pool.drop_call(call)
        elif call.status == HELD:
            del call.preferred.held[call.id]

    def _apply_skips(self, call: _Call, now: float, out: list[Decision]) -> None:
        steps = call.queue.cfg.steps
        while call.step < len(steps) and steps[call.step].skip_if_nobody and call.pool.logged_in == 0:
            self._escalate(call, now, out, f"nobody logged in meets {call.pool.label}")

    def _escalate(self, call: _Call, now: float, out: list[Decision], why: str) -> None:
        call.step += 1
        pool = self._pool_for(call.queue, call.step, call.extras)
        if call.status == WAITING:
            call.pool.drop_call(call)
            call.pool = pool
            pool.push_call(call)
        else:
            call.pool = pool
        out.append(Escalated(call.id, call.queue.id, call.step, now, f"{why}; now {pool.label}"))

    def _call_timer(self, call: _Call, now: float, out: list[Decision]) -> None:
        q = call.queue
        steps = q.cfg.steps
        while call.step < len(steps) and call.entered_at + steps[call.step].after_s <= now:
            self._escalate(call, now, out, f"waited {steps[call.step].after_s:g}s in {q.id}")
        if call.status == RINGING:  # max wait and delays wait for the ring to end
            self._schedule(call, now)
            return
        if self._past_max_wait(call, now):
            self._max_wait(call, now, out)
            return
        if call.status == HELD and call.hold_until <= now:
            self._release(call)
        self._try_call(call, now, out)

    def _past_max_wait(self, call: _Call, now: float) -> bool:
        """Whether the call's maximum wait has come (never while following: the
        leader decides it, ``max_wait_observed``)."""
        limit = call.queue.cfg.max_wait_s
        return limit is not None and not call.callback and not self.following and call.entered_at + limit <= now

    def _release(self, call: _Call) -> None:
        """A held call stops waiting for its preferred agent."""
        del call.preferred.held[call.id]
        call.preferred = None
        call.window_over = True
        call.status = WAITING
        call.pool.push_call(call)

    def _max_wait(self, call: _Call, now: float, out: list[Decision]) -> None:
        q = call.queue
        action = q.cfg.on_max_wait
        self._unplace(call)
        if call.status == HELD:
            call.preferred = None
        self._outcome(q, "timed_out")
        if isinstance(action, Overflow):
            target = self._queues[action.overflow]
            out.append(MaxWait(call.id, q.id, "overflow", target.id, now))
            self._enter_queue(call, target, now)
            call.pool = self._pool_for(target, 0, call.extras)
            call.status = WAITING
            call.pool.push_call(call)
            self._try_call(call, now, out)
        else:
            out.append(MaxWait(call.id, q.id, str(action), None, now))
            self._remove(call, "max_wait", now, out)

    @staticmethod
    def _enter_queue(call: _Call, target: _Queue, now: float) -> None:
        """The call leaves its queue for ``target`` (overflow, a supervisor's move):
        arrival kept, the target's clock (steps, max wait) starting now, the
        target's priority unless the caller has one of their own."""
        del call.queue.calls[call.id]
        target.calls[call.id] = call
        call.queue = target
        call.entered_at = now
        call.step = 0
        if call.prio_override is None:
            call.prio = target.prio

    def _remove(self, call: _Call, reason: str, now: float, out: list[Decision]) -> None:
        del self._calls[call.id]
        del call.queue.calls[call.id]
        call.status = _GONE
        out.append(Dequeued(call.id, call.queue.id, reason, max(0.0, now - call.arrived_at), now))

    def _outcome(self, q: _Queue, kind: str, within: bool = False) -> None:
        q.offered += 1
        if kind == "answered":
            q.answered += 1
            q.within += within
        elif kind == "abandoned":
            q.abandoned += 1
        else:
            q.timed_out += 1
        lending = 100.0 * q.within / q.offered >= q.lend_threshold
        if lending != q.lending:
            q.lending = lending
            if lending and q.borrowers:
                self._recovered.append(q)

    def _settle(self, now: float, out: list[Decision]) -> None:
        """Work an input leaves behind, done once its own decisions are out:
        calls held for an agent who logged out, pools nobody logged in can serve
        (``skip_if_nobody``), borrowers of a queue that lends again."""
        while self._logged_out or self._emptied or self._recovered:
            if self._logged_out:
                agent = self._logged_out.pop()
                for call in sorted(agent.held.values(), key=lambda c: (-c.prio, c.arrived_at, c.seq)):
                    if call.status == HELD and call.preferred is agent:
                        self._release(call)
                        self._try_call(call, now, out)
            elif self._emptied:
                pool = self._emptied.pop()
                if pool.logged_in == 0:
                    steps = pool.queue.cfg.steps
                    for call in sorted(pool.live_calls(), key=lambda c: c.seq):
                        if call.step < len(steps) and steps[call.step].skip_if_nobody:
                            self._try_call(call, now, out)
            else:
                lender = self._recovered.pop()
                if lender.lending:
                    for q in lender.borrowers:
                        for call in sorted(q.calls.values(), key=lambda c: (-c.prio, c.arrived_at, c.seq)):
                            if call.status == WAITING:
                                self._try_call(call, now, out)

    # -- internals: timers -------------------------------------------------------------

    def _schedule(self, call: _Call, now: float) -> None:
        """Arm the call's next timer: a step, max wait, the hold's end, or a delay threshold."""
        q = call.queue
        cfg = q.cfg
        t = math.inf
        if call.step < len(cfg.steps):
            t = call.entered_at + cfg.steps[call.step].after_s
        if call.status != RINGING:
            if cfg.max_wait_s is not None and not call.callback and not self.following:
                t = min(t, call.entered_at + cfg.max_wait_s)
            if call.status == HELD:
                t = min(t, call.hold_until)
            else:
                for d in call.pool.delays:
                    if call.arrived_at + d > now:
                        t = min(t, call.arrived_at + d)
                        break
        call.timer_ver += 1
        if t < math.inf:
            self._push_timer(t, _CALL, call, call.timer_ver)

    def _push_timer(self, at: float, kind: int, obj: Any, ver: int) -> None:
        heappush(self._timers, (at, next(self._tseq), kind, obj, ver))
        if len(self._timers) > 4 * (len(self._calls) + len(self._agents)) + 1024:
            self._timers = [e for e in self._timers if self._timer_live(e)]
            heapify(self._timers)

    @staticmethod
    def _timer_live(entry: tuple[float, int, int, Any, int]) -> bool:
        _, _, kind, obj, ver = entry
        if kind == _CALL:
            return obj.timer_ver == ver and obj.status != _GONE
        if kind == _RING:
            return obj.status == RINGING and obj.offer_ver == ver
        return obj.state == WRAPUP and obj.timer_ver == ver

    # -- small helpers -------------------------------------------------------------

    def _clock(self, now: float) -> float:
        if now > self._now:
            self._now = now
        return self._now

    def _ignore(self, what: str, call_id: str | None, agent_id: str | None, reason: str) -> list[Decision]:
        self.ignored += 1
        return [Ignored(what, call_id, agent_id, reason)]

    def _view(self, c: _Call) -> WaitingCall:
        return WaitingCall(c.id, c.queue.id, c.status, c.prio, c.arrived_at, c.entered_at, c.step,
                           c.pool.reqs, c.agent.id if c.agent else None,
                           c.preferred.id if c.status == HELD else None, c.callback)
