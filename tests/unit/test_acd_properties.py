"""Random sequences of agent and call inputs; the router's invariants after every step.

After each input the test replays the decisions into a shadow (agent states,
standing offers, calls in and out) and checks:

- every offer goes to an agent who was available just before and who meets the
  call's requirements at the offered step, is a member of the queue (or of a
  lender) and whose delay the call has waited out (a preferred agent skips delays);
- no call is offered to two agents at once; no agent holds two offers;
- agent state changes chain (each ``old`` is the previous ``new``) and match
  ``agent_state``; every ringing call is the offer of exactly one reserved agent;
- every accepted call leaves exactly once (``Dequeued``), and only accepted ones;
- a call waits for a ``skip_if_nobody`` step only while someone logged in
  could take it under its current requirements;
- *stable*: no waiting call has an available agent who may take it now
  (decisions are taken when things change, not on a later tick), except while
  the link to Asterisk is down (``link_lost``): then no offer is decided at
  all, an offer that could not be sent frees its agent without blame, and
  ``link_restored`` makes the centre stable again;
- *no starvation*: ``drain`` ticks at every deadline until none is left; then
  nothing rings or is held, and no waiting call has an available agent who
  meets its requirements and is a member, whatever the delays were. Together
  with *stable*, a call some qualified member stays available for is offered
  at the latest when the member's delay (or the preferred window) has passed.
"""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.config import parse_config
from acd.core import AgentState, AgentStateError, Dequeued, Ignored, MaxWait, Moved, Offer, Router, Withdrawn
from acd.index import merge_requirements, qualifies

T0 = 1_700_000_000.0

CONFIG = parse_config({
    "skills": ["s", "t", "fr"],
    "agents": [
        {"id": "a1", "name": "A1", "device": "PJSIP/a1", "skills": {"s": 7, "fr": 4},
         "queues": {"q1": {}, "q4": {"priority": 1}}},
        {"id": "a2", "name": "A2", "device": "PJSIP/a2", "skills": {"s": 3, "t": 5},
         "queues": {"q1": {"priority": 1, "delay_s": 10}, "q2": {}}},
        {"id": "a3", "name": "A3", "device": "PJSIP/a3", "skills": {"s": 2},
         "queues": {"q3": {}}},
        {"id": "a4", "name": "A4", "device": "PJSIP/a4", "skills": {"t": 9, "fr": 1},
         "queues": {"q2": {"delay_s": 5}, "q4": {}}},
        {"id": "a5", "name": "A5", "device": "PJSIP/a5", "skills": {"s": 9, "t": 1, "fr": 8},
         "queues": {"q3": {"delay_s": 15}, "q4": {"delay_s": 30}}},
        {"id": "a6", "name": "A6", "device": "PJSIP/a6", "skills": {"fr": 2},
         "queues": {"q4": {}}},
    ],
    "queues": [
        {"id": "q1", "requirements": [{"skill": "s", "min_level": 5}], "borrow_from": ["q3"],
         "steps": [{"after_s": 20, "requirements": [{"skill": "s", "min_level": 2}], "skip_if_nobody": True}],
         "max_wait_s": 120, "on_max_wait": {"overflow": "q2"}, "wrapup_s": 3, "ring_timeout_s": 10},
        {"id": "q2", "requirements": [{"skill": "t", "min_level": 1}], "priority": 2, "aging_weight": 2.0,
         "selection": "best_proficiency", "max_wait_s": 200, "on_max_wait": "voicemail", "wrapup_s": 0},
        {"id": "q3", "requirements": [{"skill": "s", "min_level": 1}], "selection": "round_robin",
         "lend_while_sl_above": 60, "wrapup_s": 5, "preferred_agent_s": 8},
        {"id": "q4", "requirements": [{"skill": "fr", "min_level": 3}], "selection": "fewest_calls",
         "steps": [{"after_s": 15, "requirements": [{"skill": "fr", "min_level": 1}]},
                   {"after_s": 40, "requirements": []}]},
    ],
})
AGENTS = {a.id: a for a in CONFIG.agents}
QUEUES = {q.id: q for q in CONFIG.queues}
STEP_REQS = {q.id: [merge_requirements((r.skill, r.min_level) for r in q.requirements)]
             + [merge_requirements((r.skill, r.min_level) for r in s.requirements) for s in q.steps]
             for q in CONFIG.queues}

agent_ids = st.sampled_from(sorted(AGENTS))
extras = st.one_of(st.none(), st.fixed_dictionaries({"fr": st.integers(1, 6)}),
                   st.fixed_dictionaries({"t": st.integers(1, 3)}))


def memberships(agent_id: str, queue_id: str) -> list[tuple[str, float]]:
    """(source queue, delay) for each way the agent may serve the queue."""
    a = AGENTS[agent_id]
    if queue_id in a.queues:
        return [(queue_id, a.queues[queue_id].delay_s)]
    return [(lender, a.queues[lender].delay_s) for lender in QUEUES[queue_id].borrow_from if lender in a.queues]


class RouterMachine(RuleBasedStateMachine):
    @initialize(logged_in=st.sets(agent_ids))
    def start(self, logged_in: set[str]) -> None:
        self.r = Router(CONFIG)
        self.now = T0
        self.state = {a: "logged_out" for a in AGENTS}
        self.ringing: dict[str, str] = {}        # call -> agent, from the decisions
        self.accepted: dict[str, dict] = {}      # call -> what it arrived with
        self.gone: set[str] = set()
        self.n = 0
        self.resumed_since: float | None = None  # the stored time a resume's state change carries
        self.sl = {q: [0, 0] for q in QUEUES}    # offered, answered within sl_seconds
        for a in sorted(logged_in):
            self.go("login", a, self.now)

    # -- inputs ---------------------------------------------------------------

    def apply(self, ds: list) -> None:
        if self.r.link_down:
            assert not any(isinstance(d, Offer) for d in ds), "an offer decided while the link is down"
        for d in ds:
            if isinstance(d, AgentState):
                assert d.old == self.state[d.agent_id], d
                assert d.at == self.now or d.at == self.resumed_since, d
                self.state[d.agent_id] = d.new
            elif isinstance(d, Offer):
                self.check_offer(d)
                self.ringing[d.call_id] = d.agent_id
            elif isinstance(d, Withdrawn):
                assert self.ringing.pop(d.call_id) == d.agent_id
            elif isinstance(d, Moved):
                call = self.accepted[d.call_id]
                assert d.call_id not in self.ringing and d.call_id not in self.gone
                assert call["queue"] == d.queue_id
                if d.target != d.queue_id:  # counted as timed out where it was
                    self.sl[d.queue_id][0] += 1
                    call["queue"], call["entered"] = d.target, self.now
            elif isinstance(d, MaxWait):
                call = self.accepted[d.call_id]
                assert not call.get("callback"), f"{d.call_id}: a callback timed out"
                assert call["queue"] == d.queue_id and self.now >= call["entered"] + QUEUES[d.queue_id].max_wait_s
                self.sl[d.queue_id][0] += 1
                if d.action == "overflow":
                    assert d.target == QUEUES[d.queue_id].on_max_wait.overflow
                    call["queue"], call["entered"] = d.target, self.now
            elif isinstance(d, Dequeued):
                assert d.call_id in self.accepted and d.call_id not in self.gone, d
                assert d.call_id not in self.ringing
                call = self.accepted[d.call_id]
                assert d.queue_id == call["queue"]
                if d.reason != "max_wait":
                    self.sl[d.queue_id][0] += 1
                    if d.reason == "answered":
                        self.sl[d.queue_id][1] += self.now - call["entered"] <= QUEUES[d.queue_id].sl_seconds
                self.gone.add(d.call_id)
        self.check_views()

    def check_offer(self, d: Offer) -> None:
        assert d.call_id in self.accepted and d.call_id not in self.gone
        assert d.call_id not in self.ringing, f"{d.call_id} offered twice"
        assert d.agent_id not in self.ringing.values(), f"{d.agent_id} holds two offers"
        assert self.state[d.agent_id] == "reserved"   # its available -> reserved came just before
        call = self.accepted[d.call_id]
        reqs = merge_requirements(STEP_REQS[d.queue_id][d.step], (call["skills"] or {}).items())
        assert qualifies(AGENTS[d.agent_id].skills, reqs), (d, reqs)
        ways = memberships(d.agent_id, d.queue_id)
        assert ways, f"{d.agent_id} is no member of {d.queue_id}"
        waited = self.now - call["at"]
        preferred = "preferred agent (" in d.reason
        assert any((preferred or waited >= delay) and (source == d.queue_id or self.lending(source))
                   for source, delay in ways), (d, waited)

    def go(self, what: str, *args, **kw) -> list:
        ds = getattr(self.r, what)(*args, **kw)
        self.apply(ds)
        return ds

    @rule(a=agent_ids)
    def login(self, a: str) -> None:
        self.go("login", a, self.now)

    @rule(a=agent_ids)
    def logout(self, a: str) -> None:
        self.go("logout", a, self.now)

    @rule(a=agent_ids)
    def ready(self, a: str) -> None:
        try:
            self.go("set_ready", a, self.now)
        except AgentStateError:
            assert self.state[a] == "logged_out"

    @rule(a=agent_ids, reason=st.sampled_from(["lunch", "training"]))
    def not_ready(self, a: str, reason: str) -> None:
        try:
            self.go("set_not_ready", a, reason, self.now)
        except AgentStateError:
            assert self.state[a] == "logged_out"

    @rule(a=agent_ids, state=st.sampled_from(["available", "not_ready", "logged_out"]),
          ago=st.sampled_from([0.0, 30.0, 600.0]))
    def resume(self, a: str, state: str, ago: float) -> None:
        """An agent's stored state at start (acd.resume): only a logged-out agent takes it,
        in it since the stored time; any other is left alone."""
        was = self.state[a]
        self.resumed_since = self.now - ago
        try:
            ds = self.go("resume", a, state, "lunch", self.now - ago, self.now)
        finally:
            self.resumed_since = None
        if was != "logged_out":
            assert [type(d) for d in ds] == [Ignored] and self.state[a] == was
        elif state == "logged_out":
            assert ds == [] and self.state[a] == "logged_out"
        else:
            first = ds[0]
            assert isinstance(first, AgentState) and (first.old, first.new, first.at) == \
                ("logged_out", state, self.now - ago)

    @rule(a=agent_ids)
    def end_wrapup(self, a: str) -> None:
        self.go("end_wrapup", a, self.now)

    @rule(calls=st.lists(st.tuples(
        st.sampled_from(sorted(QUEUES)), st.one_of(st.none(), st.integers(0, 3)), extras,
        st.one_of(st.none(), st.sampled_from(["c-x", "c-y"])), st.one_of(st.none(), agent_ids)),
        min_size=1, max_size=3))
    def arrive(self, calls) -> None:
        for q, prio, skills, customer, preferred in calls:
            self.n += 1
            cid = f"call{self.n}"
            self.accepted[cid] = {"at": self.now, "skills": skills, "queue": q, "entered": self.now, "prio": prio}
            self.go("call_waiting", cid, q, self.now, priority=prio, skills=skills, customer_id=customer,
                    preferred_agent=preferred)

    @rule(queue=st.sampled_from(sorted(QUEUES)), ago=st.sampled_from([0.0, 5.0, 40.0, 400.0]),
          callback=st.booleans())
    def arrive_taken_over(self, queue: str, ago: float, callback: bool) -> None:
        """A caller whose wait began earlier (a restart), or a callback request keeping its place."""
        self.n += 1
        cid = f"call{self.n}"
        since = self.now - ago
        self.accepted[cid] = {"at": since, "skills": None, "queue": queue, "entered": since, "callback": callback}
        self.go("call_waiting", cid, queue, self.now, since=since, callback=callback)

    @precondition(lambda self: len(self.accepted) > len(self.gone))
    @rule(data=st.data())
    def to_callback(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(set(self.accepted) - self.gone)))
        ds = self.r.to_callback(cid, self.now)
        if cid in self.ringing:
            assert isinstance(ds[0], Ignored)
        else:
            assert ds == []
            self.accepted[cid]["callback"] = True
        self.apply(ds)

    @precondition(lambda self: len(self.accepted) > len(self.gone))
    @rule(data=st.data(), queue=st.one_of(st.none(), st.sampled_from(sorted(QUEUES))),
          prio=st.one_of(st.none(), st.integers(0, 12)))
    def move(self, data, queue, prio) -> None:
        """A supervisor moves a call or raises its priority: it keeps its arrival and its
        place is by the new priority; a ringing call is left alone."""
        cid = data.draw(st.sampled_from(sorted(set(self.accepted) - self.gone)))
        before = next(c for c in self.r.waiting_calls() if c.call_id == cid)
        ds = self.r.move_call(cid, self.now, queue_id=queue, priority=prio)
        if cid in self.ringing:
            assert isinstance(ds[0], Ignored)
        else:
            moved = ds[0]
            assert isinstance(moved, Moved) and moved.target == (queue or before.queue_id)
            own = self.accepted[cid].get("prio")
            if prio is not None:
                expected = prio
            elif queue in (None, before.queue_id) or own is not None:
                expected = before.priority
            else:
                expected = QUEUES[queue].priority
            assert moved.priority == expected
            if prio is not None:
                self.accepted[cid]["prio"] = prio
        self.apply(ds)
        view = next((c for c in self.r.waiting_calls() if c.call_id == cid), None)
        if view is not None:
            assert view.arrived_at == before.arrived_at

    @rule(a=agent_ids, data=st.data())
    def found_talking(self, a: str, data) -> None:
        """After a restart the agent is found on a call nobody offered."""
        queue = data.draw(st.sampled_from(sorted(AGENTS[a].queues) or sorted(QUEUES)))
        self.n += 1
        ds = self.r.agent_on_call(a, f"ext{self.n}", queue, self.now)
        if self.state[a] in ("reserved", "on_call"):
            assert isinstance(ds[0], Ignored)
        else:
            assert self.r.agent_state(a).state == "on_call"
        self.apply(ds)

    @precondition(lambda self: len(self.accepted) > len(self.gone))
    @rule(data=st.data())
    def abandon(self, data) -> None:
        live = sorted(set(self.accepted) - self.gone)
        # now and then a call that already left: ignored
        cid = data.draw(st.sampled_from(live) | st.sampled_from(sorted(self.accepted)))
        ds = self.r.call_abandoned(cid, self.now)
        if cid in self.gone:
            assert isinstance(ds[0], Ignored)
        self.apply(ds)

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def answer(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        a = data.draw(st.one_of(st.just(self.ringing[cid]), agent_ids))
        ds = self.r.offer_answered(cid, a, self.now)
        if a == self.ringing[cid]:
            del self.ringing[cid]
        else:
            assert ds == [Ignored("offer_answered", cid, a, "no such offer standing")]
        self.apply(ds)

    @precondition(lambda self: self.ringing)
    @rule(data=st.data(), reason=st.sampled_from(["noanswer", "busy", "rejected", "failed"]))
    def fail(self, data, reason) -> None:
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        a = self.ringing.pop(cid)
        self.apply(self.r.offer_failed(cid, a, reason, self.now))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def unsent(self, data) -> None:
        """The offer could not be written (the AMI connection is down)."""
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        self.apply(self.r.link_lost(self.now))
        a = self.ringing.pop(cid)
        ds = self.r.offer_unsent(cid, a, self.now)
        assert not any(isinstance(d, Offer) for d in ds), "an offer decided while the link is down"
        self.apply(ds)
        assert self.state[a] != "reserved" and self.r.agent_state(a).reason != "unreachable"

    @precondition(lambda self: getattr(self, "r", None) is not None and self.r.link_down)
    @rule()
    def restore_link(self) -> None:
        self.apply(self.r.link_restored(self.now))

    @precondition(lambda self: "on_call" in self.state.values())
    @rule(data=st.data())
    def finish(self, data) -> None:
        talking = sorted(a for a, s in self.state.items() if s == "on_call")
        a = data.draw(st.sampled_from(talking))
        view = self.r.agent_state(a)
        ds = self.r.call_finished(view.call_id or "none", a, self.now)
        if view.state != "on_call":
            assert isinstance(ds[0], Ignored)
        self.apply(ds)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 7.0, 12.0, 25.0, 60.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.apply(self.r.tick(self.now))

    @rule()
    def tick_at_deadline(self) -> None:
        t = self.r.next_deadline()
        if t is not None:
            self.now = max(self.now, t)
            self.apply(self.r.tick(self.now))

    @rule()
    def drain(self) -> None:
        for _ in range(1000):
            t = self.r.next_deadline()
            if t is None:
                break
            self.now = max(self.now, t)
            self.apply(self.r.tick(self.now))
        assert self.r.next_deadline() is None, "timers never run out"
        calls = self.r.waiting_calls()
        assert all(c.status == "waiting" for c in calls), calls
        if not self.r.link_down:
            self.check_no_match(ignore_delays=True)

    # -- checks ---------------------------------------------------------------

    def lending(self, q: str) -> bool:
        offered, within = self.sl[q]
        cfg = QUEUES[q]
        threshold = cfg.sl_percent if cfg.lend_while_sl_above is None else cfg.lend_while_sl_above
        return offered == 0 or 100.0 * within / offered >= threshold

    def check_views(self) -> None:
        for q in QUEUES:
            stats = self.r.queue_stats(q, self.now)
            assert (stats.offered, stats.answered_within_sl) == tuple(self.sl[q])
            assert stats.lending == self.lending(q)
        calls = self.r.waiting_calls()
        ids = {c.call_id for c in calls}
        assert ids == set(self.accepted) - self.gone
        ringing = {c.call_id: c.offered_to for c in calls if c.status == "ringing"}
        assert ringing == self.ringing
        for a, s in self.state.items():
            view = self.r.agent_state(a)
            assert view.state == s
            if s == "reserved":
                assert ringing.get(view.call_id) == a
        assert sorted(ringing.values()) == sorted(a for a, s in self.state.items() if s == "reserved")
        # skip_if_nobody: a call only waits for such a step while someone logged in could take it
        for c in calls:
            steps = QUEUES[c.queue_id].steps
            if c.step < len(steps) and steps[c.step].skip_if_nobody:
                assert any(s != "logged_out" and qualifies(AGENTS[a].skills, c.requirements)
                           and memberships(a, c.queue_id) for a, s in self.state.items()), c

    def check_no_match(self, ignore_delays: bool) -> None:
        lending = {q: self.lending(q) for q in QUEUES}
        free = [a for a, s in self.state.items() if s == "available"]
        for c in self.r.waiting_calls():
            if c.status != "waiting":
                continue
            for a in free:
                if not qualifies(AGENTS[a].skills, c.requirements):
                    continue
                for source, delay in memberships(a, c.queue_id):
                    if source != c.queue_id and not lending[source]:
                        continue
                    assert not (ignore_delays or self.now - c.arrived_at >= delay), (
                        f"{c.call_id} waits while {a} is available for it")

    @invariant()
    def stable(self) -> None:
        if hasattr(self, "r") and not self.r.link_down:   # nothing is offered while the link is down
            self.check_no_match(ignore_delays=False)


RouterMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestRouterInvariants = RouterMachine.TestCase


# -- the same decisions as the naive reference ---------------------------------------
# bench/routing.py's NaiveRouter scans every agent or call for each decision. On
# small random contact centres (borrowing with service-level thresholds, delays,
# membership priorities, the four policies; callers with priorities and an IVR
# language) and random inputs without timers, both routers must make the very
# same offers.

from bench.routing import NaiveRouter  # noqa: E402

N_QUEUES = 4


@st.composite
def centres(draw) -> dict:
    skills = ["s0", "s1", "s2", "fr"]
    queues = []
    for i in range(N_QUEUES):
        others = [f"q{j}" for j in range(N_QUEUES) if j != i]
        queues.append({
            "id": f"q{i}", "requirements": [{"skill": f"s{i % 3}", "min_level": draw(st.integers(1, 4))}],
            "priority": draw(st.sampled_from([0, 0, 5])), "aging_weight": draw(st.sampled_from([1.0, 2.0])),
            "selection": draw(st.sampled_from(["longest_idle", "best_proficiency", "fewest_calls", "round_robin"])),
            "borrow_from": draw(st.lists(st.sampled_from(others), max_size=2, unique=True)),
            "lend_while_sl_above": draw(st.sampled_from([None, 0.0, 50.0, 90.0])),
            "sl_seconds": draw(st.sampled_from([3.0, 20.0])), "wrapup_s": 0})
    agents = []
    for i in range(draw(st.integers(3, 9))):
        levels = draw(st.lists(st.integers(0, 10), min_size=4, max_size=4))
        member = draw(st.dictionaries(st.sampled_from([q["id"] for q in queues]), st.fixed_dictionaries(
            {"priority": st.integers(0, 2), "delay_s": st.sampled_from([0.0, 0.0, 5.0, 20.0])}), max_size=3))
        agents.append({"id": f"a{i}", "name": f"A{i}", "device": f"PJSIP/a{i}",
                       "skills": {s: lvl for s, lvl in zip(skills, levels) if lvl}, "queues": member})
    return {"skills": skills, "agents": agents, "queues": queues}


class SameAsNaive(RuleBasedStateMachine):
    @initialize(centre=centres(), logged_in=st.floats(0.3, 1.0))
    def start(self, centre: dict, logged_in: float) -> None:
        cfg = parse_config(centre)
        self.fast, self.naive = Router(cfg), NaiveRouter(cfg)
        self.queues = [q.id for q in cfg.queues]
        self.now = T0
        self.n = 0
        self.ringing: dict[str, str] = {}
        self.live: set[str] = set()
        for a in cfg.agents[: max(1, int(len(cfg.agents) * logged_in))]:
            self.same(self.fast.login(a.id, self.now), self.naive.login(a.id, self.now))

    def same(self, ds: list, naive: list[tuple[str, str]]) -> None:
        got = [(d.call_id, d.agent_id) for d in ds if isinstance(d, Offer)]
        assert got == naive
        for call_id, agent_id in got:
            self.ringing[call_id] = agent_id

    def agents_in(self, state: str) -> list[str]:
        return sorted(a.id for a in self.naive.agents if a.state == state)

    @rule(calls=st.lists(st.tuples(st.integers(0, N_QUEUES - 1), st.one_of(st.none(), st.integers(0, 3)),
                                   st.one_of(st.none(), st.integers(1, 3))), min_size=1, max_size=4))
    def arrive(self, calls) -> None:
        for q, prio, lang in calls:
            self.n += 1
            cid = f"c{self.n}"
            extra = None if lang is None else {"fr": lang}
            self.live.add(cid)
            self.same(self.fast.call_waiting(cid, self.queues[q], self.now, priority=prio, skills=extra),
                      self.naive.call_waiting(cid, self.queues[q], self.now, priority=prio, skills=extra))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def answer(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        a = self.ringing.pop(cid)
        self.live.discard(cid)
        self.same(self.fast.offer_answered(cid, a, self.now), self.naive.offer_answered(cid, a, self.now))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def fail(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        a = self.ringing.pop(cid)
        self.same(self.fast.offer_failed(cid, a, "noanswer", self.now), self.naive.offer_failed(cid, a, self.now))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def abandon(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.live)))
        self.live.discard(cid)
        self.ringing.pop(cid, None)
        self.same(self.fast.call_abandoned(cid, self.now), self.naive.call_abandoned(cid, self.now))

    @rule(data=st.data())
    def finish(self, data) -> None:
        talking = self.agents_in("on_call")
        if talking:
            a = data.draw(st.sampled_from(talking))
            cid = self.fast.agent_state(a).call_id
            self.same(self.fast.call_finished(cid, a, self.now), self.naive.call_finished(a, self.now))

    @rule(data=st.data())
    def break_or_back(self, data) -> None:
        idle, away = self.agents_in("available"), self.agents_in("not_ready")
        if idle and data.draw(st.booleans()):
            a = data.draw(st.sampled_from(idle))
            self.same(self.fast.set_not_ready(a, "x", self.now), self.naive.set_not_ready(a, self.now))
        elif away:
            a = data.draw(st.sampled_from(away))
            self.same(self.fast.set_ready(a, self.now), self.naive.set_ready(a, self.now))

    @rule(data=st.data())
    def login(self, data) -> None:
        out = self.agents_in("logged_out")
        if out:
            a = data.draw(st.sampled_from(out))
            self.same(self.fast.login(a, self.now), self.naive.login(a, self.now))

    @rule(dt=st.sampled_from([0.5, 2.0, 6.0, 21.0]))
    def advance(self, dt: float) -> None:
        self.now += dt   # no tick: the naive router has no timers


SameAsNaive.TestCase.settings = settings(max_examples=80, stateful_step_count=50, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestSameDecisionsAsNaiveReference = SameAsNaive.TestCase
