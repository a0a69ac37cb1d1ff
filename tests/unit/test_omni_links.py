"""A conversation and its task kept in step, with a real AcdService and hub (no database):
taking a mail thread takes its task (from another agent too), closing it closes the task,
the agent's close of the task closes the thread; a transfer moves the task and tells both
desktops; a new ACD configuration reaches the task router keeping open tasks and figures."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import hypothesis.strategies as st
import pytest
from aiohttp import web
from hypothesis import given

from acd.config import AcdConfig
from acd.routing_shell import AcdService
from api.hub import Hub, Scope
from api.ws import HubService
from cti.calls import CallModel
from cti.daemon import CORE, Core
from cti.events import Bus
from omni.links import MailTasks, MessageTasks, conversation_of, conversation_ref
from omni.service import OmniService
from omni.tasks import TaskError
from tests.wireami import WireAmi

CONFIG = {"skills": [], "queues": [{"id": "billing"}, {"id": "mail", "channel": "email"},
                                   {"id": "mail2", "channel": "email"}, {"id": "sms", "channel": "message"}],
          "agents": [{"id": "a1", "name": "One", "device": "Local/1@x/n", "auto_login": True,
                      "queues": {"billing": {}, "mail": {}, "mail2": {}, "sms": {}},
                      "capacity": {"email": 1, "message": 1}},
                     {"id": "a2", "name": "Two", "device": "Local/2@x/n", "auto_login": True,
                      "queues": {"billing": {}, "mail2": {}}, "capacity": {"email": 2}}]}


class Db:
    """What the links write, as (statement's first words, args); the tasks' own rows left out."""

    def __init__(self) -> None:
        self.done: list[tuple[str, tuple]] = []

    async def execute(self, sql: str, *args) -> None:
        if not sql.startswith("UPDATE tasks"):
            self.done.append((" ".join(sql.split()[:3]), args))


async def _running(config=CONFIG):
    core = Core(SimpleNamespace(acd_default_queue="billing", timezone="UTC"), model=CallModel(), bus=Bus(),  # type: ignore[arg-type]
                ami=WireAmi())
    acd = AcdService(core, AcdConfig.model_validate(config))
    acd._apply(acd.router.auto_login(time.time()))
    app = web.Application()
    app[CORE] = core
    hub = HubService(app, Hub(), core, acd)
    await hub.start()
    desks = {a: hub.hub.attach(f"user:{a}", Scope(agent_id=a), None, {}, 0).conn for a in ("a1", "a2")}
    omni = OmniService(core, acd, hub.push)
    await omni.start()
    db = Db()
    pending: list = []
    omni.write = pending.append          # the links' writes, run by the test against Db

    async def flush() -> list[tuple[str, tuple]]:
        while pending:
            await pending.pop(0)(db)
        out, db.done[:] = list(db.done), []
        return out
    return acd, hub, omni, desks, flush


def _of(hub, conn, kind):
    return [m for m in map(json.loads, hub.hub.take(conn)) if m["type"] == kind]


async def test_taking_a_thread_takes_its_task_from_the_agent_who_had_it():
    acd, hub, omni, desks, flush = await _running()
    link = MailTasks(omni)
    try:
        tid = await omni.file_task("email", "mail", "ada@example.org", "Invoice", "mail:7")
        assert omni.tasks[tid].agent_id == "a1"
        assert await flush() == [("UPDATE mail_threads SET", (7, "a1"))]      # the offer opens the thread for a1
        link.taken(7, "a2")
        assert omni.tasks[tid].agent_id == "a2"
        assert [m["task"]["task_id"] for m in _of(hub, desks["a1"], "task.released")] == [tid]
        assert [m["task"]["task_id"] for m in _of(hub, desks["a2"], "task.offered")] == [tid]
        assert await flush() == [("UPDATE mail_threads SET", (7, None)), ("UPDATE mail_threads SET", (7, "a2"))]
        link.closed(7)                                  # closing the thread closes the task
        assert omni.tasks_of("a2") == []
        assert [m["task"]["disposition"] for m in _of(hub, desks["a2"], "task.closed")] == ["closed"]
    finally:
        await omni.stop()
        await hub.stop()


async def test_the_agents_close_of_the_task_closes_the_thread_and_a_reopened_thread_is_a_new_task():
    acd, hub, omni, desks, flush = await _running()
    MailTasks(omni)
    try:
        tid = await omni.file_task("email", "mail", "ada@example.org", "Invoice", "mail:7")
        await flush()
        omni.close_task(tid, "a1", "answered")
        assert await flush() == [("UPDATE mail_threads SET", (7,))]
        again = await omni.file_task("email", "mail", "ada@example.org", "Invoice", "mail:7/42")
        assert again != tid and omni.tasks[again].agent_id == "a1"
        assert await flush() == [("UPDATE mail_threads SET", (7, "a1"))]
    finally:
        await omni.stop()
        await hub.stop()


async def test_a_thread_taken_by_someone_outside_the_acd_leaves_routing():
    acd, hub, omni, desks, flush = await _running()
    link = MailTasks(omni)
    try:
        tid = await omni.file_task("email", "mail", "ada@example.org", "Invoice", "mail:7")
        await flush()
        link.taken(7, "supervisor-sue")
        assert tid not in omni.tasks and omni.router.load("a1")["email"] == 0
        assert await flush() == []          # the thread stays open, with the supervisor
        link.taken(8, "a1")                 # a thread without a task: nothing to do
        link.closed(8)
    finally:
        await omni.stop()
        await hub.stop()


async def test_an_answer_takes_only_a_waiting_task():
    acd, hub, omni, desks, flush = await _running()
    link = MailTasks(omni)
    try:
        t1 = await omni.file_task("email", "mail", "a@example.org", "One", "mail:1")     # a1 (capacity 1)
        t2 = await omni.file_task("email", "mail", "b@example.org", "Two", "mail:2")     # waits: a2 is not in "mail"
        assert omni.tasks[t2].status == "waiting"
        link.taken(1, "a2", steal=False)            # a1 holds it: an answer does not move it
        assert omni.tasks[t1].agent_id == "a1"
        link.taken(2, "a2", steal=False)
        assert omni.tasks[t2].agent_id == "a2"
    finally:
        await omni.stop()
        await hub.stop()


async def test_message_tasks_name_the_agents_conversations_and_closing_one_closes_the_other():
    acd, hub, omni, desks, flush = await _running()
    link = MessageTasks(omni)
    try:
        assert conversation_of(conversation_ref(12)) == 12 and conversation_of("mail:12") is None
        tid = await omni.file_task("message", "sms", "+442079460001", "Hello", conversation_ref(12))
        assert link.mine("a1") == [12] and link.mine("a2") == []
        omni.close_task(tid, "a1", "done")
        assert await flush() == [("UPDATE message_conversations SET", (12,))]
        assert link.mine("a1") == []
    finally:
        await omni.stop()
        await hub.stop()


async def test_a_transfer_to_a_queue_keeps_the_wait_and_refuses_another_channel():
    acd, hub, omni, desks, flush = await _running()
    try:
        tid = await omni.file_task("email", "mail", "a@example.org", "One", "mail:1")
        created = omni.tasks[tid].created_at
        moved = omni.transfer(tid, "mail2")
        assert (moved.agent_id, moved.queue, moved.created_at) == ("a2", "mail2", created)
        assert _of(hub, desks["a1"], "task.released")[0]["reason"] == "transferred to mail2"
        with pytest.raises(TaskError, match="message"):
            omni.transfer(tid, "sms")
        with pytest.raises(TaskError):
            omni.take(tid, "nobody")
        with pytest.raises(TaskError):
            omni.transfer("gone", "mail")
    finally:
        await omni.stop()
        await hub.stop()


async def test_a_new_configuration_reaches_the_task_router_with_open_tasks_and_figures():
    acd, hub, omni, desks, flush = await _running()
    try:
        held = await omni.file_task("email", "mail", "a@example.org", "One", "mail:1")      # a1
        gone = await omni.file_task("email", "mail2", "b@example.org", "Two", "mail:2")     # a2
        old_router = omni.router
        new = json.loads(json.dumps(CONFIG))
        new["agents"] = [a for a in new["agents"] if a["id"] == "a1"]          # a2 leaves, a3 comes
        new["agents"][0]["capacity"]["email"] = 2
        new["agents"].append({"id": "a3", "name": "Three", "device": "Local/3@x/n", "auto_login": True,
                              "queues": {"billing": {}}})
        acd.reconfigure(AcdConfig.model_validate(new))
        assert omni.router is not old_router
        assert omni.tasks[held].agent_id == "a1"
        # a2's task waits again in its queue, and a1 (capacity now 2, member of mail2) takes it
        assert omni.tasks[gone].agent_id == "a1" and omni.router.load("a1")["email"] == 2
        stats = {s.queue_id: s for s in omni.queue_stats(time.time())}
        assert stats["mail"].answered == 1 and stats["mail2"].answered == 2
    finally:
        await omni.stop()
        await hub.stop()


async def test_a_task_whose_queue_is_gone_moves_to_its_channels_first_queue_and_keeps_its_agent():
    acd, hub, omni, desks, flush = await _running()
    try:
        held = await omni.file_task("email", "mail2", "a@example.org", "One", "mail:1")      # a1 or a2
        holder = omni.tasks[held].agent_id
        new = json.loads(json.dumps(CONFIG))
        new["queues"] = [q for q in new["queues"] if q["id"] != "mail2"]
        for a in new["agents"]:
            a["queues"].pop("mail2", None)
        new["agents"][1]["capacity"]["email"] = 0
        new["agents"][1]["queues"] = {"billing": {}}
        acd.reconfigure(AcdConfig.model_validate(new))
        assert (omni.tasks[held].queue, omni.tasks[held].agent_id) == ("mail", holder)
    finally:
        await omni.stop()
        await hub.stop()


@given(st.text(max_size=40))
def test_conversation_refs_read_any_text(text):
    n = conversation_of(text)
    assert n is None or (text.startswith("conversation-") and int(text.removeprefix("conversation-")) == n)
    assert conversation_of(conversation_ref(len(text))) == len(text)


async def test_the_task_figures_start_again_at_the_sites_midnight():
    acd, hub, omni, desks, flush = await _running()
    try:
        await omni.file_task("email", "mail", "a@example.org", "One", "mail:1")
        now = time.time()
        assert {s.queue_id: s.answered for s in omni.queue_stats(now)}["mail"] == 1
        tomorrow = {s.queue_id: s for s in omni.queue_stats(now + 86400)}["mail"]
        assert (tomorrow.answered, tomorrow.offered, tomorrow.open) == (0, 0, 1)    # still held: open
    finally:
        await omni.stop()
        await hub.stop()


async def test_a_new_configuration_without_the_blocking_rule_lifts_the_agents_call_block():
    config = json.loads(json.dumps(CONFIG))
    config["agents"][0]["capacity"]["voice_blocked_by"] = ["email"]
    acd, hub, omni, desks, flush = await _running(config)
    try:
        await omni.file_task("email", "mail", "a@example.org", "One", "mail:1")       # a1: blocks its calls
        assert acd.router.agent_state("a1").voice_blocked
        acd.reconfigure(AcdConfig.model_validate(CONFIG))                             # no blocking rule now
        assert not acd.router.agent_state("a1").voice_blocked and "a1" not in acd.voice_blocked
    finally:
        await omni.stop()
        await hub.stop()


def test_a_rebuilt_chat_keeps_every_seq_and_fills_a_lost_one():
    from omni.chat_service import _rebuilt
    from omni.tasks import new_task

    task = new_task("chat", "webchat", "ada@example.org", "Hi", "tok-1234567890abcdef", 1.0).assigned("a1", 2.0)
    rows = [{"seq": s, "sender": "customer", "body": f"m{s}", "at": float(s), "agent_id": None} for s in (1, 2, 4)]
    chat = _rebuilt(task, rows)
    assert (chat.status, chat.agent_id, chat.token) == ("active", "a1", "tok-1234567890abcdef")
    assert [(m.seq, m.body) for m in chat.messages] == [(1, "m1"), (2, "m2"), (3, "(a message was not kept)"),
                                                        (4, "m4")]
    assert chat.add("agent", "next", 5.0).seq == 5 and [m.seq for m in chat.after(3)] == [4, 5]
    closed = _rebuilt(task.closed(3.0, "done"), rows[:1])
    assert closed.status == "closed" and closed.agent_id is None
