"""A shadow router fed a leader's decisions ends in the leader's state (docs/ha.md, "Warm standby").

Random runs of a leader's router (agents' requests, callers arriving, abandoning,
answering, missing, finishing, supervisors moving calls, emergency diverts, time
passing); a second router, following, gets what a standby gets: the same call
inputs from its own call model (calls waiting, answered, failed, abandoned,
finished, time) and the leader's decisions as observations (``acd.follow``). After
every step:

- the follower has decided no offer of its own;
- every agent is in the same state, with the same reason, since the same time,
  with the same offer or call, wrap-up end and disposition due (what an agent
  asked for during a call, ``pending``, is the leader's alone until the call ends);
- the same calls wait, in the same order, queue, step, priority, status, offered
  agent and preferred agent; every queue's figures are the same.

At the end the follower leads (``Router.lead``): it offers nothing, since the
leader it followed had offered everything it could (the *stable* invariant).
"""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.config import parse_config
from acd.core import AgentStateError, Offer, Router
from acd.decisions import ON_CALL
from acd.follow import feed, from_decision
from tests.unit.test_acd_properties import AGENTS, CONFIG, QUEUES, T0, extras

agent_ids = st.sampled_from(sorted(AGENTS))
_doc = CONFIG.model_dump(mode="json")
for _q in _doc["queues"]:
    for _s in _q.get("steps", []):
        _s["skip_if_nobody"] = False
NO_SKIPS = parse_config(_doc)
queue_ids = st.sampled_from(sorted(QUEUES))


def agents_of(r: Router) -> dict:
    out = {}
    for a in sorted(AGENTS):
        v = r.agent_state(a)
        out[a] = (v.state, v.reason, v.since, v.call_id, v.queue_id, v.wrapup_ends_at, v.disposition_due)
    return out


def queues_of(r: Router, now: float) -> dict:
    return {q: r.queue_stats(q, now) for q in sorted(QUEUES)}


class FollowMachine(RuleBasedStateMachine):
    config = CONFIG

    @initialize(logged_in=st.sets(agent_ids))
    def start(self, logged_in: set[str]) -> None:
        self.leader = Router(self.config)
        self.shadow = Router(self.config, following=True)
        self.now = T0
        self.n = 0
        self.ringing: dict[str, str] = {}
        for a in sorted(logged_in):
            self.step(lambda r, a=a: r.login(a, self.now), model=False)

    def step(self, fn, *, model: bool = True) -> None:
        """``fn`` on the leader; on the shadow too when its own model sees it (a call
        input, time); then the leader's decisions to the shadow."""
        try:
            decided = fn(self.leader)
        except AgentStateError:
            return
        own = fn(self.shadow) if model else []
        followed = feed(self.shadow, [o for d in decided if (o := from_decision(d, self.now)) is not None])
        for d in own + followed:
            assert not isinstance(d, Offer), f"the follower offered {d}"
        for d in decided:
            if isinstance(d, Offer):
                self.ringing[d.call_id] = d.agent_id
        for cid in list(self.ringing):
            w = next((c for c in self.leader.waiting_calls() if c.call_id == cid), None)
            if w is None or w.status != "ringing":
                del self.ringing[cid]

    # -- what the leader alone is told ---------------------------------------------

    @rule(agent=agent_ids, what=st.sampled_from(["login", "logout", "set_ready", "end_wrapup"]))
    def request(self, agent: str, what: str) -> None:
        self.step(lambda r: getattr(r, what)(agent, self.now), model=False)

    @rule(agent=agent_ids, reason=st.sampled_from(["lunch", "training"]))
    def break_(self, agent: str, reason: str) -> None:
        self.step(lambda r: r.set_not_ready(agent, reason, self.now), model=False)

    @rule(data=st.data(), queue=st.one_of(st.none(), queue_ids), priority=st.one_of(st.none(), st.integers(0, 3)))
    def move(self, data, queue, priority) -> None:
        calls = [c.call_id for c in self.leader.waiting_calls() if c.status != "ringing"]
        if not calls or (queue is None and priority is None):
            return
        cid = data.draw(st.sampled_from(calls))
        self.step(lambda r: r.move_call(cid, self.now, queue_id=queue, priority=priority), model=False)

    @rule(data=st.data())
    def divert(self, data) -> None:
        calls = [c.call_id for c in self.leader.waiting_calls() if c.status != "ringing"]
        if calls:
            cid = data.draw(st.sampled_from(calls))
            self.step(lambda r: r.divert(cid, "emergency", self.now), model=False)

    # -- what both see (the standby from its own call model) --------------------------

    @rule(queue=queue_ids, extra=extras, customer=st.sampled_from([None, "c1", "c2"]),
          waited=st.sampled_from([0, 0, 12, 50]))
    def arrive(self, queue: str, extra, customer, waited: float) -> None:
        self.n += 1
        cid = f"c{self.n}"
        since = self.now - waited if waited else None
        self.step(lambda r: r.call_waiting(cid, queue, self.now, skills=extra, customer_id=customer, since=since))

    @rule(data=st.data())
    def abandon(self, data) -> None:
        calls = [c.call_id for c in self.leader.waiting_calls()]
        if calls:
            cid = data.draw(st.sampled_from(calls))
            self.step(lambda r: r.call_abandoned(cid, self.now))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data(), outcome=st.sampled_from(["answered", "answered", "noanswer", "busy", "rejected"]))
    def offer_ends(self, data, outcome: str) -> None:
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        agent = self.ringing[cid]
        if outcome == "answered":
            self.step(lambda r: r.offer_answered(cid, agent, self.now) if r is self.leader
                      else r.offer_ended(cid, agent, "answered", self.now))
        else:
            self.step(lambda r: r.offer_failed(cid, agent, outcome, self.now) if r is self.leader
                      else r.offer_ended(cid, agent, outcome, self.now))

    @rule(agent=agent_ids)
    def hang_up(self, agent: str) -> None:
        v = self.leader.agent_state(agent)
        if v.state == ON_CALL and v.call_id is not None:
            cid = v.call_id
            self.step(lambda r: r.call_finished(cid, agent, self.now))

    @rule(dt=st.sampled_from([0.5, 1, 3, 6, 16, 40, 130]))
    def wait(self, dt: float) -> None:
        self.now += dt
        self.step(lambda r: r.tick(self.now))

    # -- the same state ---------------------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "leader"):
            return
        assert agents_of(self.shadow) == agents_of(self.leader)
        assert self.shadow.waiting_calls() == self.leader.waiting_calls()
        assert queues_of(self.shadow, self.now) == queues_of(self.leader, self.now)

    def teardown(self) -> None:
        if hasattr(self, "shadow"):
            offers = [d for d in self.shadow.lead(self.now) if isinstance(d, Offer)]
            assert not offers, f"the leader left offers undecided: {offers}"
            assert not self.shadow.following


TestFollow = FollowMachine.TestCase
TestFollow.settings = settings(max_examples=300, stateful_step_count=60, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])


class LateFollowMachine(FollowMachine):
    """As a standby reading the leader's rows from PostgreSQL: offers are seen at once
    (the standby's own model sees the caller's Dial), every other decision of the
    leader's reaches the follower late, in batches (its writer's flush, the next poll):
    at a ``flush``, and at the latest before time moves on (the lag is shorter than
    ``FOLLOW_SKEW_S``), a caller hangs up or an offer ends (a ring lasts longer than
    the lag; an abandon or an answer seen before the leader's overflow of the call is
    read is counted in the queue the caller left: a race the lag bounds, not tested,
    acd/follow.py). Meanwhile arrivals, hang-ups of agents, agents' requests and the
    leader's offers reach the follower at once, in any order with the late rows. Whenever
    everything has been flushed, the same state. (A supervisor's move and a divert
    are left out: taken late they count from the time they were seen; and steps
    skipped for want of agents: the follower decides them on the agents' states it
    has read, acd/follow.py.)"""

    config = NO_SKIPS

    @initialize(logged_in=st.sets(agent_ids))
    def start(self, logged_in: set[str]) -> None:
        self.late: list = []
        super().start(logged_in)

    def step(self, fn, *, model: bool = True) -> None:
        try:
            decided = fn(self.leader)
        except AgentStateError:
            return
        own = fn(self.shadow) if model else []
        now = [o for d in decided if isinstance(d, Offer) and (o := from_decision(d, self.now)) is not None]
        self.late += [o for d in decided if not isinstance(d, Offer) and (o := from_decision(d, self.now)) is not None]
        for d in own + feed(self.shadow, now):
            assert not isinstance(d, Offer), f"the follower offered {d}"
        for d in decided:
            if isinstance(d, Offer):
                self.ringing[d.call_id] = d.agent_id
        for cid in list(self.ringing):
            w = next((c for c in self.leader.waiting_calls() if c.call_id == cid), None)
            if w is None or w.status != "ringing":
                del self.ringing[cid]

    @rule()
    def flush(self) -> None:
        late, self.late = self.late, []
        for d in feed(self.shadow, late):
            assert not isinstance(d, Offer), f"the follower offered {d}"

    @rule(data=st.data())
    def abandon(self, data) -> None:
        self.flush()
        super().abandon(data)

    @precondition(lambda self: self.ringing)
    @rule(data=st.data(), outcome=st.sampled_from(["answered", "answered", "noanswer", "busy", "rejected"]))
    def offer_ends(self, data, outcome: str) -> None:
        self.flush()
        super().offer_ends(data, outcome)

    @rule(dt=st.sampled_from([0.5, 1, 3, 6, 16, 40, 130]))
    def wait(self, dt: float) -> None:
        self.flush()
        super().wait(dt)

    def move(self, data, queue, priority) -> None:
        pass

    def divert(self, data) -> None:
        pass

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "leader") and not self.late:
            super().same_state()

    def teardown(self) -> None:
        if hasattr(self, "shadow"):
            self.flush()
            super().same_state()
            super().teardown()


TestLateFollow = LateFollowMachine.TestCase
TestLateFollow.settings = settings(max_examples=300, stateful_step_count=60, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
