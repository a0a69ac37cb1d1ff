"""The task router's own takes and transfers (pure, time passed in): an agent takes a
waiting task or one another agent holds, a task moves to another queue of its channel
keeping its wait, and the day's figures from before a restart are added back."""
from __future__ import annotations

import pytest

from acd.config import parse_config
from acd.core import AcdInputError
from acd.decisions import Ignored, TaskAssigned, TaskDequeued, TaskReleased, VoiceBlock
from acd.omni import OmniRouter
from acd.omni_check import Shadow
from acd.tasks import TaskRouter

T0 = 1_700_000_000.0
CONFIG = parse_config({
    "skills": [],
    "agents": [
        {"id": "a1", "name": "A1", "device": "PJSIP/a1", "queues": {"c1": {}, "c2": {}, "e1": {}},
         "capacity": {"chat": 1, "email": 1, "voice_blocked_by": ["chat"]}},
        {"id": "a2", "name": "A2", "device": "PJSIP/a2", "queues": {"c1": {}, "c2": {}},
         "capacity": {"chat": 2}},
        {"id": "a3", "name": "A3", "device": "PJSIP/a3", "queues": {"c2": {}}, "capacity": {"chat": 1}},
    ],
    "queues": [{"id": "v1"}, {"id": "c1", "channel": "chat"}, {"id": "c2", "channel": "chat", "sl_seconds": 10},
               {"id": "e1", "channel": "email"}],
})


def _router(*logged_in: str) -> TaskRouter:
    r = TaskRouter(CONFIG)
    for a in logged_in:
        r.agent_voice(a, "available", T0)
    return r


def _kinds(ds):
    return [type(d).__name__ for d in ds]


def test_an_agent_takes_a_waiting_task_even_over_capacity():
    r = _router("a1")
    r.task_waiting("e-1", "e1", T0)                 # a1 has it (capacity 1)
    r.task_waiting("e-2", "e1", T0 + 1)             # waits
    out = r.task_taken("e-2", "a1", T0 + 5)
    assert _kinds(out) == ["TaskDequeued", "TaskAssigned"]
    assert out[0].waited_s == 4.0 and out[1].agent_id == "a1" and out[1].load == 2
    assert r.load("a1")["email"] == 2 and r.waiting("e1") == []
    r.task_closed("e-1", T0 + 6)                    # still at capacity: nothing more is given
    r.task_waiting("e-3", "e1", T0 + 7)
    assert r.waiting("e1") == ["e-3"]


def test_taking_a_task_another_agent_holds_frees_that_agent_who_takes_the_next():
    r = _router("a1", "a2")
    r.task_waiting("c-1", "c1", T0)                 # a1 (least loaded, first)
    assert r.agent_of("c-1") == "a1"
    r.task_waiting("c-2", "c1", T0)                 # a2
    r.task_waiting("c-3", "c1", T0)                 # a2 (a1 full)
    r.task_waiting("c-4", "c1", T0)                 # waits: everyone full
    out = r.task_taken("c-1", "a2", T0 + 1)
    released = [d for d in out if isinstance(d, TaskReleased)]
    assert released == [TaskReleased("c-1", "a1", "chat", "taken by a2", T0 + 1)]
    # a1's freed slot takes the waiting chat at once; its voice block stays (it holds a chat again)
    assigned = [(d.task_id, d.agent_id) for d in out if isinstance(d, TaskAssigned)]
    assert assigned == [("c-1", "a2"), ("c-4", "a1")]
    assert not [d for d in out if isinstance(d, VoiceBlock)]
    assert r.load("a2")["chat"] == 3 and r.load("a1")["chat"] == 1


def test_a_take_of_a_closed_or_own_task_is_ignored_and_an_unknown_agent_refused():
    r = _router("a1")
    r.task_waiting("c-1", "c1", T0)
    assert isinstance(r.task_taken("c-1", "a1", T0)[0], Ignored)
    assert isinstance(r.task_taken("nope", "a1", T0)[0], Ignored)
    with pytest.raises(AcdInputError):
        r.task_taken("c-1", "zz", T0)


def test_a_transfer_keeps_the_wait_and_goes_to_another_agent_than_the_one_it_left():
    r = _router("a1", "a2", "a3")
    r.task_waiting("c-1", "c1", T0)                 # a1
    out = r.task_transferred("c-1", "c2", T0 + 30)
    assert out[0] == TaskReleased("c-1", "a1", "chat", "transferred to c2", T0 + 30)
    deq = next(d for d in out if isinstance(d, TaskDequeued))
    assert deq.queue_id == "c2" and deq.waited_s == 30.0      # waited since it first arrived
    got = next(d for d in out if isinstance(d, TaskAssigned))
    assert got.agent_id == "a2" and got.queue_id == "c2"      # a2 and a3 at 0: a2 first; never a1
    s = r.queue_stats("c2", T0 + 30)
    assert (s.offered, s.answered, s.answered_within_sl) == (1, 1, 0)     # 30 s > its 10 s target


def test_a_transfer_with_nobody_else_free_waits_or_comes_back_to_the_same_agent():
    r = _router("a1")
    r.task_waiting("c-1", "c1", T0)
    out = r.task_transferred("c-1", "c2", T0 + 1)     # a1 is the only member free: it gets it back
    assert [(type(d).__name__, getattr(d, "agent_id", None)) for d in out if not isinstance(d, TaskDequeued)] == \
        [("TaskReleased", "a1"), ("TaskAssigned", "a1")]
    r2 = _router("a2")
    r2.task_waiting("c-1", "c1", T0)
    r2.task_transferred("c-1", "c2", T0 + 1)          # a2 is in c2 too, a3 logged out: back to a2
    assert r2.agent_of("c-1") == "a2"


def test_a_waiting_task_moves_queue_and_keeps_its_place_by_arrival():
    r = _router()
    r.task_waiting("c-old", "c1", T0)
    r.task_waiting("c-new", "c2", T0 + 50)
    assert r.task_transferred("c-old", "c2", T0 + 60) == []
    assert r.waiting("c2") == ["c-old", "c-new"] and r.waiting("c1") == []
    assert r.position("c-old") == 1
    out = r.agent_voice("a3", "available", T0 + 61)
    assert [d.task_id for d in out if isinstance(d, TaskAssigned)] == ["c-old"]


def test_a_transfer_to_a_queue_of_another_channel_or_unknown_is_refused():
    r = _router("a1")
    r.task_waiting("c-1", "c1", T0)
    with pytest.raises(AcdInputError, match="email"):
        r.task_transferred("c-1", "e1", T0)
    with pytest.raises(AcdInputError):
        r.task_transferred("c-1", "v1", T0)
    assert isinstance(r.task_transferred("gone", "c2", T0)[0], Ignored)


def test_seeded_counts_add_to_the_day_figures():
    r = _router()
    r.seed_counts("c2", offered=10, answered=8, within=6, abandoned=2)
    s = r.queue_stats("c2", T0)
    assert (s.offered, s.answered, s.answered_within_sl, s.abandoned, s.service_level) == (10, 8, 6, 2, 60.0)


def test_omni_router_transfers_keep_the_shadow_invariants():
    r, shadow = OmniRouter(CONFIG), Shadow(CONFIG)
    for a in ("a1", "a2", "a3"):
        shadow.apply(r.voice_input("login", a, T0))
    for i in range(4):
        shadow.accepted(f"c-{i}", "c1")
        shadow.apply(r.task_waiting(f"c-{i}", "c1", T0 + i))
    shadow.transferred("c-0", "c2")
    shadow.apply(r.task_transferred("c-0", "c2", T0 + 10))
    shadow.stable()
    shadow.check_router(r)
    assert r.tasks.agent_of("c-0") == "a3"
