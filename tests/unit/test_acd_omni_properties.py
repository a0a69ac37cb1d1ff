"""Calls and tasks of every channel through one router (acd.omni): random inputs, and
after each one the capacity invariants of acd.omni_check.Shadow (no agent over capacity
in any channel; no call offered to an agent a task blocks; no task to an agent a call
holds unless allowed; least-loaded eligible agent; every task leaves its queue once;
stable: no waiting task has an eligible agent), plus unit tests of the rules."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.config import parse_config
from acd.core import AcdInputError, AgentStateError, Offer, Router
from acd.decisions import TaskAssigned, TaskOverflowed, VoiceBlock
from acd.omni import OmniRouter
from acd.omni_check import Shadow
from cti.errors import ConfigError

T0 = 1_700_000_000.0

CONFIG = parse_config({
    "skills": ["s", "fr"],
    "agents": [
        {"id": "a1", "name": "A1", "device": "PJSIP/a1", "skills": {"s": 5, "fr": 4},
         "queues": {"v1": {}, "c1": {}, "c2": {}, "e1": {}},
         "capacity": {"chat": 3, "email": 2, "voice_blocked_by": ["chat"], "while_on_voice": ["email"]}},
        {"id": "a2", "name": "A2", "device": "PJSIP/a2", "skills": {"s": 3},
         "queues": {"v1": {}, "c1": {}, "m1": {}}, "capacity": {"chat": 2, "message": 1}},
        {"id": "a3", "name": "A3", "device": "PJSIP/a3", "skills": {"s": 1, "fr": 6},
         "queues": {"c1": {}, "c2": {}, "e1": {}, "m1": {}},
         "capacity": {"voice": 0, "chat": 3, "email": 3, "message": 2}},
        {"id": "a4", "name": "A4", "device": "PJSIP/a4", "skills": {"s": 9}, "queues": {"v1": {}}},
        {"id": "a5", "name": "A5", "device": "PJSIP/a5", "skills": {"s": 2, "fr": 1},
         "queues": {"v1": {}, "c1": {}, "c2": {}},
         "capacity": {"chat": 1, "voice_blocked_by": ["chat"], "while_on_voice": ["chat"]}},
    ],
    "queues": [
        {"id": "v1", "wrapup_s": 3},
        {"id": "c1", "channel": "chat", "sl_seconds": 30, "priority": 1},
        {"id": "c2", "channel": "chat", "requirements": [{"skill": "fr", "min_level": 3}], "priority": 2},
        {"id": "e1", "channel": "email", "sl_seconds": 14400},
        {"id": "m1", "channel": "message", "aging_weight": 2.0},
    ],
})
AGENTS = sorted(a.id for a in CONFIG.agents)
TASK_QUEUES = ["c1", "c2", "e1", "m1"]
CONFIG_QUEUES = {q.id: q.channel for q in CONFIG.queues}


class OmniMachine(RuleBasedStateMachine):
    config = CONFIG

    @initialize(logged_in=st.sets(st.sampled_from(AGENTS)))
    def start(self, logged_in: set[str]) -> None:
        self.r = OmniRouter(self.config)
        self.shadow = Shadow(self.config)
        self.max_wait = {q.id: q.max_wait_s for q in self.config.queues if q.max_wait_s is not None}
        self.entered: dict[str, float] = {}      # waiting task -> entry in its queue
        self.now = T0
        self.n = 0
        self.ringing: dict[str, str] = {}
        self.calls: set[str] = set()
        for a in sorted(logged_in):
            self.voice("login", a, self.now)

    def feed(self, ds: list) -> None:
        self.shadow.apply(ds)
        for d in ds:
            if isinstance(d, Offer):
                self.ringing[d.call_id] = d.agent_id
            elif isinstance(d, TaskOverflowed):
                self.entered[d.task_id] = d.at
        # No waiting task is left past its queue's maximum wait (a tick overflows it).
        for tid, qid in self.shadow.waiting.items():
            if qid in self.max_wait and tid in self.entered:
                assert self.entered[tid] + self.max_wait[qid] > self.now, (tid, qid)
        self.shadow.stable()
        self.shadow.check_router(self.r)

    def voice(self, name: str, *args, **kw) -> None:
        self.feed(self.r.voice_input(name, *args, **kw))

    @rule(a=st.sampled_from(AGENTS), what=st.sampled_from(["login", "logout", "set_ready", "end_wrapup"]))
    def agent(self, a: str, what: str) -> None:
        try:
            self.voice(what, a, self.now)
        except AgentStateError:
            assert self.shadow.state[a] == "logged_out"

    @rule(a=st.sampled_from(AGENTS))
    def pause(self, a: str) -> None:
        try:
            self.voice("set_not_ready", a, "lunch", self.now)
        except AgentStateError:
            assert self.shadow.state[a] == "logged_out"

    @rule(k=st.integers(1, 3))
    def calls_arrive(self, k: int) -> None:
        for _ in range(k):
            self.n += 1
            cid = f"call{self.n}"
            self.calls.add(cid)
            self.voice("call_waiting", cid, "v1", self.now)

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def answer(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.ringing)))
        a = self.ringing.pop(cid)
        self.calls.discard(cid)
        self.voice("offer_answered", cid, a, self.now)

    @rule(data=st.data())
    def hang_up(self, data) -> None:
        talking = [a for a in AGENTS if self.shadow.state[a] == "on_call"]
        if talking:
            a = data.draw(st.sampled_from(talking))
            self.voice("call_finished", self.r.voice.agent_state(a).call_id, a, self.now)

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def caller_leaves(self, data) -> None:
        cid = data.draw(st.sampled_from(sorted(self.calls)))
        self.calls.discard(cid)
        self.ringing.pop(cid, None)
        self.voice("call_abandoned", cid, self.now)

    @rule(tasks=st.lists(st.tuples(st.sampled_from(TASK_QUEUES), st.one_of(st.none(), st.integers(0, 3))),
                         min_size=1, max_size=4))
    def tasks_arrive(self, tasks) -> None:
        for q, prio in tasks:
            self.n += 1
            tid = f"task{self.n}"
            self.shadow.accepted(tid, q)
            self.entered[tid] = self.now
            self.feed(self.r.task_waiting(tid, q, self.now, priority=prio))

    @precondition(lambda self: any(self.shadow.open.values()))
    @rule(data=st.data())
    def close(self, data) -> None:
        tid = data.draw(st.sampled_from(sorted(t for t, a in self.shadow.open.items() if a)))
        self.feed(self.r.task_closed(tid, self.now))

    @precondition(lambda self: self.shadow.waiting or any(self.shadow.open.values()))
    @rule(data=st.data())
    def transfer(self, data) -> None:
        """A task moved to a queue of its channel (from its agent, or from its queue)."""
        tid = data.draw(st.sampled_from(sorted(set(self.shadow.waiting) | {t for t, a in self.shadow.open.items() if a})))
        ch = self.r.tasks._tasks[tid].queue.channel
        q = data.draw(st.sampled_from([x for x in TASK_QUEUES if CONFIG_QUEUES[x] == ch]))
        if self.shadow.waiting.get(tid) == q:
            return
        self.shadow.transferred(tid, q)
        self.entered[tid] = self.now
        self.feed(self.r.task_transferred(tid, q, self.now))

    @precondition(lambda self: self.shadow.waiting)
    @rule(data=st.data())
    def customer_leaves(self, data) -> None:
        tid = data.draw(st.sampled_from(sorted(self.shadow.waiting)))
        self.feed(self.r.task_abandoned(tid, self.now))

    @rule(dt=st.sampled_from([0.5, 4.0, 20.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.feed(self.r.tick(self.now))

    @invariant()
    def views_agree(self) -> None:
        if hasattr(self, "r"):
            for tid, qid in self.shadow.waiting.items():
                assert self.r.tasks.position(tid) >= 1


OmniMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestOmniInvariants = OmniMachine.TestCase


def _with_max_waits(cfg: dict) -> dict:
    """CONFIG with a maximum wait: a chat waiting 10 s in c1 overflows to c2."""
    queues = [dict(q) for q in cfg["queues"]]
    for q in queues:
        if q["id"] == "c1":
            q.update(max_wait_s=10, on_max_wait={"overflow": "c2"})
    return {**cfg, "queues": queues}


class OmniMaxWaitMachine(OmniMachine):
    """The same inputs where a chat queue overflows to another after its maximum wait."""

    config = parse_config(_with_max_waits(CONFIG.model_dump(exclude_defaults=True)))


OmniMaxWaitMachine.TestCase.settings = OmniMachine.TestCase.settings
TestOmniMaxWaitInvariants = OmniMaxWaitMachine.TestCase


# -- the rules, one by one -------------------------------------------------------------

def _omni() -> OmniRouter:
    r = OmniRouter(CONFIG)
    for a in AGENTS:
        r.voice_input("login", a, T0)
    return r


def test_default_capacity_is_voice_only() -> None:
    cfg = parse_config({"skills": [], "agents": [{"id": "x", "name": "X", "device": "PJSIP/x"}],
                        "queues": [{"id": "q"}]})
    cap = cfg.agents[0].capacity
    assert (cap.voice, cap.chat, cap.email, cap.message) == (1, 0, 0, 0)
    assert Router(cfg).agent_state("x").voice_blocked is False


def test_a_chat_blocks_voice_and_closing_it_offers_the_waiting_call() -> None:
    r = _omni()
    for a in ("a2", "a4", "a5"):
        r.voice_input("set_not_ready", a, "lunch", T0)
    ds = r.task_waiting("t1", "c2", T0 + 1)      # a1 (fr 4) or a3: a3 has no voice; both 0/3
    who = next(d.agent_id for d in ds if isinstance(d, TaskAssigned))
    if who == "a3":
        ds = r.task_waiting("t2", "c2", T0 + 1)
        assert next(d.agent_id for d in ds if isinstance(d, TaskAssigned)) == "a1"
    assert r.voice.agent_state("a1").voice_blocked
    assert not any(isinstance(d, Offer) for d in r.voice_input("call_waiting", "c", "v1", T0 + 2))
    tid = "t1" if who == "a1" else "t2"
    ds = r.task_closed(tid, T0 + 3)
    assert [d.blocked for d in ds if isinstance(d, VoiceBlock)] == [False]
    assert [d.agent_id for d in ds if isinstance(d, Offer)] == ["a1"]


def test_a_call_holds_chat_unless_allowed() -> None:
    r = _omni()
    for a in ("a1", "a2", "a3", "a4"):
        r.voice_input("set_not_ready", a, "lunch", T0)
    assert [d.agent_id for d in r.voice_input("call_waiting", "c", "v1", T0) if isinstance(d, Offer)] == ["a5"]
    ds = r.task_waiting("t1", "c1", T0 + 1)      # a5 rings; its while_on_voice has chat
    assert [d.agent_id for d in ds if isinstance(d, TaskAssigned)] == ["a5"]
    r.voice_input("set_ready", "a2", T0 + 2)     # a2 free: no chat while ringing is a2's rule; it is idle
    assert r.tasks.load("a2")["chat"] == 0


def test_least_loaded_agent_gets_the_task() -> None:
    r = _omni()
    got = []
    for i in range(6):
        got += [d.agent_id for d in r.task_waiting(f"t{i}", "m1", T0 + i) if isinstance(d, TaskAssigned)]
    # a2: 1 message, a3: 2: by load ratio a2 then a3 then a3; then full.
    assert sorted(got) == ["a2", "a3", "a3"]
    assert r.tasks.position("t3") == 1 and r.tasks.position("t5") == 3


def test_voice_queue_refuses_tasks_and_task_queue_refuses_calls() -> None:
    r = _omni()
    with pytest.raises(AcdInputError):
        r.task_waiting("t", "v1", T0)
    with pytest.raises(AcdInputError):
        r.voice_input("call_waiting", "c", "c1", T0)


def test_service_level_per_channel_queue() -> None:
    r = _omni()
    r.voice_input("set_not_ready", "a3", "x", T0)
    r.task_waiting("e", "e1", T0)                 # a1 takes it at once
    stats = r.tasks.queue_stats("e1", T0 + 1)
    assert (stats.channel, stats.answered, stats.answered_within_sl, stats.sl_seconds) == ("email", 1, 1, 14400)


def test_config_refuses_a_member_without_capacity() -> None:
    with pytest.raises(ConfigError, match="capacity.chat 0"):
        parse_config({"skills": [], "agents": [{"id": "x", "name": "X", "device": "PJSIP/x", "queues": {"c": {}}}],
                      "queues": [{"id": "c", "channel": "chat"}]})


def test_voice_capacity_zero_is_never_offered_calls() -> None:
    """Refused as a member of a voice queue; and blocked in the router whatever it is told."""
    with pytest.raises(ConfigError, match="capacity.voice 0"):
        parse_config({"skills": [], "agents": [
            {"id": "x", "name": "X", "device": "PJSIP/x", "queues": {"q": {}}, "capacity": {"voice": 0}}],
            "queues": [{"id": "q"}]})
    r = _omni()
    assert r.voice.agent_state("a3").voice_blocked
    r.voice_input("set_voice_blocked", "a3", False, T0)
    assert r.voice.agent_state("a3").voice_blocked


def test_the_omnichannel_example_is_valid_and_routes_a_chat():
    from pathlib import Path

    from acd.config import load_config
    cfg = load_config(Path(__file__).resolve().parents[2] / "acd" / "examples" / "omnichannel.toml")
    r = OmniRouter(cfg)
    r.voice_input("auto_login", T0)
    ds = r.task_waiting("t", "webchat", T0)
    assert [d.agent_id for d in ds if isinstance(d, TaskAssigned)]


def test_a_task_held_after_a_restart_counts_in_the_load_and_blocks_voice():
    r = _omni()
    ds = r._pump(r.tasks.task_held("old", "c1", "a1", T0 + 1, since=T0 - 600))
    assert [d.blocked for d in ds if isinstance(d, VoiceBlock)] == [True]
    assert r.tasks.load("a1")["chat"] == 1 and r.voice.agent_state("a1").voice_blocked
    assert r.tasks.position("old") == 0
    assert [d.agent_id for d in r.task_closed("old", T0 + 2) if isinstance(d, VoiceBlock)] == ["a1"]


def test_agents_freed_at_the_same_tick_share_the_waiting_tasks() -> None:
    """Two wrap-ups end at one tick with two chats waiting: one each, not both to the first
    agent the tick frees (found by the max-wait machine above)."""
    r = OmniRouter(OmniMaxWaitMachine.config)
    for a in ("a1", "a2"):
        r.voice_input("login", a, T0)
    offers = [d for c in ("call1", "call2") for d in r.voice_input("call_waiting", c, "v1", T0)
              if isinstance(d, Offer)]
    assert sorted(o.agent_id for o in offers) == ["a1", "a2"]
    for o in offers:
        r.voice_input("offer_answered", o.call_id, o.agent_id, T0)
    r.voice_input("call_finished", r.voice.agent_state("a1").call_id, "a1", T0)
    waiting = [d for t in ("t1", "t2") for d in r.task_waiting(t, "c1", T0) if isinstance(d, TaskAssigned)]
    assert waiting == []                            # a1 wraps up, a2 talks: nobody takes chat
    r.voice_input("call_finished", r.voice.agent_state("a2").call_id, "a2", T0)
    assigned = [d for d in r.tick(T0 + 4.0) if isinstance(d, TaskAssigned)]
    assert sorted(d.agent_id for d in assigned) == ["a1", "a2"]
