"""The omnichannel service with a real AcdService and hub (no database): a filed task
reaches the agent's desktop stream as ``task.offered``, blocks calls while held (the
agent's capacity rule), and closing it frees the slot for the next task and for calls.
Plus the task model's validation, fuzzed."""
from __future__ import annotations

import json

import hypothesis.strategies as st
import pytest
from hypothesis import given

from omni.service import NotYourTask
from omni.tasks import REF_MAX, SUBJECT_MAX, TaskError, new_task

# The service runs on the ``omni_running`` fixture (tests/unit/conftest.py).


def _of(hub, conn, kind):
    return [m for m in map(json.loads, hub.hub.take(conn)) if m["type"] == kind]


async def test_a_filed_chat_is_offered_on_the_desktop_and_blocks_calls_until_closed(omni_running):
    acd, hub, omni, desk = omni_running.acd, omni_running.hub, omni_running.omni, omni_running.desk
    tid = await omni.file_task("chat", "webchat", "ada@example.org", "Where is my order?", "s-1")
    (m,) = _of(hub, desk, "task.offered")
    assert (m["task"]["task_id"], m["task"]["agent_id"], m["load"]) == (tid, "a4", 1)
    assert acd.router.agent_state("a4").voice_blocked
    assert await omni.file_task("chat", "webchat", "ada@example.org", "again", "s-1") == tid   # same ref
    t2 = await omni.file_task("chat", "webchat", "bob@example.org", "Hi", "s-2")
    t3 = await omni.file_task("chat", "webchat", "cy@example.org", "Hi", "s-3")    # over capacity: waits
    assert [x["task"]["task_id"] for x in _of(hub, desk, "task.offered")] == [t2]
    assert omni.waiting_info(t3)[0] == 1
    with pytest.raises(NotYourTask):
        omni.close_task(tid, "a5", "done")
    omni.close_task(tid, "a4", "solved")
    assert [x["task"]["task_id"] for x in _of(hub, desk, "task.offered")] == [t3]
    omni.close_task(t2, "a4", "solved")
    omni.close_task(t3, "a4", "solved")
    assert not acd.router.agent_state("a4").voice_blocked
    assert omni.tasks_of("a4") == []


async def test_a_task_into_a_queue_of_another_channel_is_refused(omni_running):
    omni = omni_running.omni
    with pytest.raises(TaskError, match="no email queue"):
        await omni.file_task("email", "webchat", "ada@example.org", "x", "m-1")
    with pytest.raises(TaskError, match="no chat queue"):
        await omni.file_task("chat", "billing", "ada@example.org", "x", "m-1")


@given(channel=st.one_of(st.sampled_from(["chat", "email", "message", "voice"]), st.text(max_size=8)),
       queue=st.text(max_size=70), customer=st.one_of(st.text(max_size=REF_MAX + 5), st.integers()),
       subject=st.text(max_size=SUBJECT_MAX + 5), ref=st.text(max_size=REF_MAX + 5))
def test_new_task_accepts_or_refuses_with_a_reason(channel, queue, customer, subject, ref):
    """Fuzzed fields: a valid Task with clean fields, or a TaskError naming the field."""
    try:
        t = new_task(channel, queue, customer, subject, ref, 1.0)
    except TaskError as exc:
        assert str(exc)
        return
    assert t.channel in ("chat", "email", "message") and t.status == "waiting"
    assert 0 < len(t.customer_ref) <= REF_MAX and len(t.subject) <= SUBJECT_MAX and 0 < len(t.ref) <= REF_MAX
    assert all(32 <= ord(c) != 127 for c in t.subject + t.customer_ref + t.ref)
