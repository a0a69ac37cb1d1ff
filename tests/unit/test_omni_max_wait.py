"""A task queue's maximum wait (acd.tasks.TaskRouter, time passed in): a task waiting
``max_wait_s`` since it entered the queue overflows to ``on_max_wait``'s queue of its
channel, keeping its place by first arrival; plus the configuration's rules and the
service's timer (omni.service), and a property over random arrivals and clocks."""
from __future__ import annotations

import asyncio
import json

import hypothesis.strategies as st
import pytest
from hypothesis import given

from acd.config import parse_config
from acd.decisions import TaskAssigned, TaskOverflowed
from acd.omni import OmniRouter
from acd.tasks import TaskRouter
from api.hub import Scope
from cti.errors import ConfigError
from omni.service import OmniService

T0 = 1_700_000_000.0


def _config(**c1):
    """Agents a (chat queue c1) and b (c2, c3); c1 overflows to c2 after 10 s, c2 to c3 after 20 s."""
    return parse_config({
        "skills": [],
        "agents": [{"id": "a", "name": "A", "device": "PJSIP/a", "queues": {"c1": {}}, "capacity": {"chat": 1}},
                   {"id": "b", "name": "B", "device": "PJSIP/b", "queues": {"c2": {}, "c3": {}},
                    "capacity": {"chat": 1}}],
        "queues": [{"id": "c1", "channel": "chat", "max_wait_s": 10, "on_max_wait": {"overflow": "c2"}, **c1},
                   {"id": "c2", "channel": "chat", "max_wait_s": 20, "on_max_wait": {"overflow": "c3"}},
                   {"id": "c3", "channel": "chat"}]})


def _router(ready=()) -> TaskRouter:
    r = TaskRouter(_config())
    for a in ("a", "b"):
        r.agent_voice(a, "available" if a in ready else "logged_out", T0)
    return r


def test_a_task_overflows_when_its_maximum_wait_is_over_and_not_before():
    r = _router()
    r.task_waiting("t1", "c1", T0)
    assert r.next_deadline() == T0 + 10
    assert r.tick(T0 + 9.99) == []
    (d,) = r.tick(T0 + 10)
    assert isinstance(d, TaskOverflowed)
    assert (d.task_id, d.queue_id, d.target, d.channel, d.waited_s) == ("t1", "c1", "c2", "chat", 10)
    assert r.waiting("c1") == [] and r.waiting("c2") == ["t1"]


def test_the_target_queue_s_own_maximum_wait_counts_from_the_overflow():
    r = _router()
    r.task_waiting("t1", "c1", T0)
    r.tick(T0 + 12)                         # late tick: overflowed at 12
    assert r.next_deadline() == T0 + 32
    (d,) = r.tick(T0 + 32)
    assert (d.queue_id, d.target) == ("c2", "c3")
    assert r.next_deadline() is None        # c3 has no maximum wait


def test_an_agent_of_the_target_takes_the_overflowed_task_at_once():
    r = _router(ready=("b",))
    r.task_waiting("t1", "c1", T0)
    ds = r.tick(T0 + 10)
    assert isinstance(ds[0], TaskOverflowed)
    a = next(d for d in ds if isinstance(d, TaskAssigned))
    assert (a.agent_id, a.queue_id) == ("b", "c2") and a.reason.startswith("overflow from c1")


def test_an_overflowed_task_keeps_its_place_by_first_arrival():
    r = _router()
    r.task_waiting("t1", "c1", T0)
    r.task_waiting("later", "c2", T0 + 5)
    r.tick(T0 + 10)
    assert r.waiting("c2") == ["t1", "later"]
    assert r.position("t1") == 1


def test_a_task_assigned_in_time_never_overflows():
    r = _router(ready=("a",))
    ds = r.task_waiting("t1", "c1", T0)
    assert any(isinstance(d, TaskAssigned) for d in ds)
    assert r.next_deadline() is None and r.tick(T0 + 100) == []


def test_a_task_abandoned_or_assigned_later_leaves_no_timer():
    r = _router()
    r.task_waiting("t1", "c1", T0)
    r.task_waiting("t2", "c1", T0 + 1)
    r.task_abandoned("t1", T0 + 2)
    r.agent_voice("a", "available", T0 + 3)     # takes t2
    assert r.next_deadline() is None and r.tick(T0 + 50) == []


def test_a_transfer_starts_the_maximum_wait_again_in_the_new_queue():
    r = _router()
    r.task_waiting("t1", "c3", T0)
    r.task_transferred("t1", "c2", T0 + 100)
    assert r.next_deadline() == T0 + 120


def test_the_source_counts_an_overflow_as_offered_and_unanswered():
    r = _router()
    r.task_waiting("t1", "c1", T0)
    r.tick(T0 + 10)
    s = r.queue_stats("c1", T0 + 10)
    assert (s.offered, s.answered, s.overflowed, s.service_level) == (1, 0, 1, 0.0)
    r.new_day()
    assert r.queue_stats("c1", T0 + 11).overflowed == 0


def test_the_joined_router_ticks_and_reports_the_task_deadline():
    r = OmniRouter(_config())
    r.tasks.task_waiting("t1", "c1", T0)
    assert r.next_deadline() == T0 + 10
    assert any(isinstance(d, TaskOverflowed) for d in r.tick(T0 + 10))


@pytest.mark.parametrize("action,match", [
    ("voicemail", "on_max_wait is an overflow to another chat queue"),
    ("callback", "on_max_wait is an overflow"),
    ({"overflow": "v"}, "overflows to a queue of another channel"),
])
def test_a_task_queue_s_maximum_wait_only_overflows_to_its_channel(action, match):
    with pytest.raises(ConfigError, match=match):
        parse_config({"skills": [], "queues": [{"id": "v"}, {"id": "c", "channel": "chat", "max_wait_s": 5,
                                                             "on_max_wait": action}]})


def test_steps_are_still_refused_for_a_task_queue():
    with pytest.raises(ConfigError, match="no steps or borrowing"):
        parse_config({"skills": ["s"], "queues": [{"id": "c", "channel": "chat", "steps": [{"after_s": 5}]}]})


@given(arrivals=st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.floats(0, 60)), max_size=20),
       ticks=st.lists(st.floats(0, 120), max_size=10), ready=st.sets(st.sampled_from(["a", "b"])))
def test_no_task_waits_past_its_queue_s_maximum_wait_after_a_tick(arrivals, ticks, ready):
    """Random arrivals and ticks: after tick(now), every waiting task of a queue with a
    maximum wait entered it less than max_wait_s ago, and each overflow waited at least that."""
    r = _router(ready=ready)
    events = sorted([(t, "arrive", q) for q, t in arrivals] + [(t, "tick", None) for t in ticks])
    entered: dict[str, float] = {}
    for i, (t, kind, q) in enumerate(events):
        now = T0 + t
        for d in r.tick(now):
            if isinstance(d, TaskOverflowed):
                limit = {"c1": 10, "c2": 20}[d.queue_id]
                assert d.waited_s >= limit and now - entered[d.task_id] >= limit
                entered[d.task_id] = now
        if kind == "arrive":
            entered[f"t{i}"] = now
            r.task_waiting(f"t{i}", q, now)
        for qid, limit in (("c1", 10), ("c2", 20)):
            for tid in r.waiting(qid):
                assert now - entered[tid] < limit, (tid, qid)
        deadline = r.next_deadline()
        assert deadline is None or deadline > now


async def test_the_service_overflows_a_waiting_chat_by_its_own_timer(acd_hub):
    """The shell sleeps until the router's deadline and ticks: nobody in the first queue,
    the chat reaches the agent of the overflow queue, who gets task.offered."""
    o = await acd_hub({"skills": [], "queues": [
        {"id": "billing"},
        {"id": "first", "channel": "chat", "max_wait_s": 0.05, "on_max_wait": {"overflow": "wide"}},
        {"id": "wide", "channel": "chat"}],
        "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                    "queues": {"billing": {}, "wide": {}}, "auto_login": True, "capacity": {"chat": 2}}]})
    desk = o.hub.hub.attach("user:4", Scope(agent_id="a4"), None, {}, 0).conn
    omni = OmniService(o.core, o.acd, o.hub.push)
    told: list[tuple[str, str]] = []
    omni.listeners.append(lambda what, task: told.append((what, task.queue)))
    await omni.start()
    try:
        tid = await omni.file_task("chat", "first", "ada@example.org", "Hello", "s-1")
        assert omni.tasks[tid].status == "waiting"
        async with asyncio.timeout(10):
            while omni.tasks[tid].status != "assigned":
                await asyncio.sleep(0.01)
        assert omni.tasks[tid].queue == "wide" and omni.tasks[tid].agent_id == "a4"
        assert told[:2] == [("overflowed", "wide"), ("offered", "wide")]
        offered = [m for m in map(json.loads, o.hub.hub.take(desk)) if m["type"] == "task.offered"]
        assert [m["task"]["task_id"] for m in offered] == [tid]
    finally:
        await omni.stop()
    assert omni._timers is None


def test_a_task_taken_back_after_a_restart_keeps_its_clock_in_the_queue_it_was_moved_to():
    """Its place by when it was filed (since), its maximum wait from when it entered (entered)."""
    r = _router()
    r.task_waiting("old", "c2", T0 + 100, since=T0, entered=T0 + 90)
    assert r.next_deadline() == T0 + 110
    r.task_waiting("fresh", "c2", T0 + 100, since=T0 + 50)
    assert r.waiting("c2") == ["old", "fresh"]
    r.task_waiting("unmoved", "c1", T0 + 100, since=T0 + 95)     # entered: since
    # fresh's wait in c2 ends at T0 + 70, unmoved's in c1 at T0 + 105, old's at T0 + 110
    assert [d.task_id for d in r.tick(T0 + 105) if isinstance(d, TaskOverflowed)] == ["fresh", "unmoved"]
    assert r.next_deadline() == T0 + 110


async def test_a_transfer_is_remembered_so_a_new_configuration_keeps_the_maximum_wait_s_clock(acd_hub):
    o = await acd_hub({"skills": [], "queues": [
        {"id": "billing"},
        {"id": "quiet", "channel": "chat"},
        {"id": "first", "channel": "chat", "max_wait_s": 3600, "on_max_wait": {"overflow": "quiet"}}],
        "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                    "queues": {"billing": {}}, "auto_login": True}]})
    omni = OmniService(o.core, o.acd, o.hub.push)
    await omni.start()
    try:
        tid = await omni.file_task("chat", "quiet", "ada@example.org", "Hello", "s-1")
        moved = omni.transfer(tid, "first")
        assert moved.queued_at is not None and moved.queued_at >= moved.created_at
        assert omni.router.next_deadline() == moved.queued_at + 3600
        omni._reconfigured(o.acd.config, moved.queued_at + 1)          # a new router takes it back
        assert omni.router.next_deadline() == moved.queued_at + 3600
        assert omni.router.waiting("first") == [tid]
    finally:
        await omni.stop()
