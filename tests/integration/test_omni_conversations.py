"""Conversations and their ACD tasks end to end (docs/omnichannel.md), with a real daemon,
PostgreSQL, the SMTP receiver and a local messaging provider:

- a real mail becomes an e-mail task offered to an agent, whose thread is then theirs;
  another agent's Take moves the task; the agent's close of the task closes the thread;
  the customer's next mail reopens the thread as a new task; closing the thread closes it;
- a chat is transferred to another queue (keeping its wait) and to an agent; canned
  replies are kept by supervisors only; the customer's page and the screen-pop's
  look-up list their chats, mails and messages;
- a chat resumes across a restart (the widget by seq, the agent answering as before),
  the day's task figures read back, and a new ACD configuration reaches the task router.
"""
from __future__ import annotations

import asyncio
import smtplib
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from api.desktop_state import lookup_card_data
from messaging import core as messaging_core
from omni.routes import OMNI
from tests.integration.conftest import daemon_settings, eventually, free_port, start_daemon
from tests.integration.test_api import add_user, bearer, login, url

ACD = Path(__file__).with_name("omni-tasks-acd.toml")
SECRET = "provider-shared-secret-for-omni-tests"


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


def settings(database, tmp_path, **more):
    return daemon_settings(database, tmp_path, acd_config=ACD, acd_announce_every=0, mail_queue="mail",
                           messaging_secret=SECRET, messaging_queue="sms", **more)


async def users(database, http, d) -> dict[str, dict[str, str]]:
    for name, role, agent in (("ada", "agent", "a1"), ("bob", "agent", "a2"), ("sue", "supervisor", None)):
        await add_user(database, name, role, agent)
    return {u: bearer(await login(http, d, u)) for u in ("ada", "bob", "sue")}


async def call(http, d, method, path, headers, json=None):
    async with http.request(method, url(d, path), json=json, headers=headers) as r:
        return r.status, (await r.json() if r.status != 204 else None)


async def fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def send_mail(port: int, subject: str, message_id: str, sender: str = "carol@example.org", **headers) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = sender, "desk@center.test", subject, message_id
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content("Hello, about my invoice.")
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.send_message(m, from_addr=sender, to_addrs=["desk@center.test"])


async def my_tasks(http, d, token) -> list[dict]:
    status, body = await call(http, d, "GET", "/api/tasks", token)
    assert status == 200, body
    return body["tasks"]


async def thread_state(http, d, token, thread_id):
    status, t = await call(http, d, "GET", f"/api/mail/threads/{thread_id}", token)
    assert status == 200, t
    return t["state"], t["assigned_to"]


async def thread_is(http, d, token, thread_id, expected) -> bool:
    return await thread_state(http, d, token, thread_id) == expected


async def test_a_mail_thread_and_its_task_move_together(asterisk, database, tmp_path, http):
    port = free_port()
    d = await start_daemon(settings(database, tmp_path, mail_listen=f"127.0.0.1:{port}"))
    try:
        t = await users(database, http, d)
        await asyncio.to_thread(send_mail, port, "Invoice 12", "<m1@example.org>")
        tasks = await eventually(lambda: my_tasks(http, d, t["ada"]), 10, what="the mail's task offered to Ada")
        (task,) = tasks
        thread_id = int(task["ref"].removeprefix("mail:"))
        assert task["channel"] == "email" and task["queue"] == "mail"
        # The offer made the thread Ada's.
        await eventually(lambda: thread_is(http, d, t["ada"], thread_id, ("assigned", "a1")), 10)
        assert (await thread_state(http, d, t["ada"], thread_id)) == ("assigned", "a1")
        # Bob may not take what Ada holds.
        status, err = await call(http, d, "POST", f"/api/mail/threads/{thread_id}/take", t["bob"])
        assert (status, err["error_id"]) == (409, "taken")
        # Ada transfers it to Bob; Bob closes the task: the thread closes.
        status, moved = await call(http, d, "POST", f"/api/tasks/{task['task_id']}/transfer", t["ada"], {"agent": "a2"})
        assert status == 200 and moved["agent_id"] == "a2", moved
        assert await my_tasks(http, d, t["ada"]) == []
        await eventually(lambda: thread_is(http, d, t["bob"], thread_id, ("assigned", "a2")), 10)
        status, closed = await call(http, d, "POST", f"/api/tasks/{task['task_id']}/close", t["bob"],
                                    {"disposition": "answered"})
        assert status == 200 and closed["status"] == "closed"
        await eventually(lambda: thread_is(http, d, t["bob"], thread_id, ("closed", "a2")), 10)
        # Carol answers: the thread reopens as a new task (a new ref), offered to Ada again.
        await asyncio.to_thread(send_mail, port, "Re: Invoice 12", "<m2@example.org>", In_Reply_To="<m1@example.org>")
        again = await eventually(lambda: my_tasks(http, d, t["ada"]), 10, what="the reopened thread's task")
        assert again[0]["ref"].startswith(f"mail:{thread_id}/") and again[0]["task_id"] != task["task_id"]
        # A supervisor takes the thread in the mail panel (an agent could not: it is Ada's) ...
        status, _ = await call(http, d, "POST", f"/api/mail/threads/{thread_id}/take", t["sue"])
        assert status == 200
        # ... the supervisor has no desk: the task leaves routing, Ada's slot is free.
        await eventually(lambda: fetch(database, "SELECT 1 FROM tasks WHERE task_id = $1 AND status <> 'assigned'",
                                       again[0]["task_id"]), 10)
        assert await my_tasks(http, d, t["ada"]) == []
        assert (await thread_state(http, d, t["sue"], thread_id)) == ("assigned", "sue")     # still open, hers
        status, _ = await call(http, d, "POST", f"/api/mail/threads/{thread_id}/close", t["sue"])
        assert status == 204
        rows = await fetch(database, "SELECT status, disposition FROM tasks WHERE ref LIKE $1 ORDER BY created_at",
                           f"mail:{thread_id}%")
        assert [tuple(r) for r in rows] == [("closed", "answered"), ("closed", "taken by sue")]
    finally:
        await d.stop()


async def test_a_take_in_the_mail_panel_accepts_a_waiting_task(asterisk, database, tmp_path, http):
    port = free_port()
    d = await start_daemon(settings(database, tmp_path, mail_listen=f"127.0.0.1:{port}"))
    try:
        t = await users(database, http, d)
        await asyncio.to_thread(send_mail, port, "One", "<w1@example.org>")
        (first,) = await eventually(lambda: my_tasks(http, d, t["ada"]), 10)
        await asyncio.to_thread(send_mail, port, "Two", "<w2@example.org>", sender="dan@example.org")
        # Ada is full (one e-mail) and Bob is not in "mail": the second waits.
        waiting = await eventually(lambda: fetch(database, "SELECT task_id, ref FROM tasks WHERE status = 'waiting'"),
                                   10, what="the second mail's task waiting")
        thread_id = int(waiting[0]["ref"].removeprefix("mail:"))
        status, view = await call(http, d, "POST", f"/api/mail/threads/{thread_id}/take", t["bob"])
        assert status == 200 and view["assigned_to"] == "a2"
        (mine,) = await my_tasks(http, d, t["bob"])
        assert mine["task_id"] == waiting[0]["task_id"] and mine["status"] == "assigned"
        # Closing the thread closes Bob's task.
        status, _ = await call(http, d, "POST", f"/api/mail/threads/{thread_id}/close", t["bob"])
        assert status == 204 and await my_tasks(http, d, t["bob"]) == []
        await eventually(lambda: fetch(database, "SELECT 1 FROM tasks WHERE task_id = $1 AND status = 'closed' "
                                       "AND disposition = 'closed'", mine["task_id"]), 10)
        assert first["status"] == "assigned"
    finally:
        await d.stop()


async def chat_start(http, d, name: str, email: str, question: str, queue: str | None = None):
    ws = await http.ws_connect(url(d, "/chat/ws"))
    frame = {"type": "start", "name": name, "email": email, "question": question}
    if queue:
        frame["queue"] = queue
    await ws.send_json(frame)
    started = await ws.receive_json(timeout=10)
    assert started["type"] == "started", started
    return ws, started


async def frames_until(ws, pred, timeout=10.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        f = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        got.append(f)
        if pred(f):
            return got


async def test_transfers_canned_replies_and_the_customers_conversations(asterisk, database, tmp_path, http):
    d = await start_daemon(settings(database, tmp_path))
    try:
        t = await users(database, http, d)
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("INSERT INTO customers (customer_id, name) VALUES ('C-CAROL', 'Carol')")
            await conn.execute("INSERT INTO customer_phones (customer_id, phone, label) "
                               "VALUES ('C-CAROL', '+442079460001', 'mobile')")
        finally:
            await conn.close()
        assert (await call(http, d, "POST", "/api/customers/C-CAROL/emails", t["ada"],
                           {"email": "Carol@Example.org"}))[0] == 200
        # A chat, transferred by Ada to webchat2 (Bob's), keeping its wait; then back to Ada by a supervisor.
        ws, started = await chat_start(http, d, "Carol", "carol@example.org", "My parcel?")
        task_id = started["task_id"]
        await eventually(lambda: my_tasks(http, d, t["ada"]), 10, what="the chat offered to Ada")
        created = (await fetch(database, "SELECT created_at FROM tasks WHERE task_id = $1", task_id))[0][0]
        status, moved = await call(http, d, "POST", f"/api/tasks/{task_id}/transfer", t["ada"], {"queue": "webchat2"})
        assert status == 200 and (moved["queue"], moved["agent_id"]) == ("webchat2", "a2"), moved
        await frames_until(ws, lambda f: f["type"] == "message" and "transferred" in f["body"])
        await frames_until(ws, lambda f: f["type"] == "agent")          # the next agent has it
        status, err = await call(http, d, "POST", f"/api/tasks/{task_id}/transfer", t["ada"], {"agent": "a1"})
        assert (status, err["error_id"]) == (403, "not_your_task")
        status, err = await call(http, d, "POST", f"/api/tasks/{task_id}/transfer", t["bob"], {"queue": "mail"})
        assert (status, err["error_id"], err["details"][0]["field"]) == (422, "invalid_body", "body.queue")
        status, err = await call(http, d, "POST", f"/api/tasks/{task_id}/transfer", t["bob"],
                                 {"queue": "webchat", "agent": "a1"})
        assert status == 422
        status, back = await call(http, d, "POST", f"/api/tasks/{task_id}/transfer", t["sue"], {"agent": "a1"})
        assert status == 200 and back["agent_id"] == "a1"
        row = (await eventually(lambda: fetch(database, "SELECT queue_id, agent_id, created_at FROM tasks "
                                              "WHERE task_id = $1 AND agent_id = 'a1'", task_id), 10))[0]
        assert (row["queue_id"], row["created_at"]) == ("webchat2", created)
        status, where = await call(http, d, "GET", f"/api/tasks/{task_id}/transfer-targets", t["ada"])
        assert status == 200 and where["queues"] == ["webchat"]
        assert [(a["agent_id"], a["capacity"]) for a in where["agents"]] == [("a2", 2)]
        # Ada answers in the chat she got back.
        status, _ = await call(http, d, "POST", f"/api/tasks/{task_id}/messages", t["ada"], {"body": "Here again"})
        assert status == 201
        await frames_until(ws, lambda f: f["type"] == "message" and f["body"] == "Here again")
        # Canned replies: supervisors keep them, agents read them.
        status, err = await call(http, d, "POST", "/api/canned-replies", t["ada"],
                                 {"queue": "webchat", "title": "Hello", "body": "Hello, how can I help?"})
        assert status == 403
        status, made = await call(http, d, "POST", "/api/canned-replies", t["sue"],
                                  {"queue": "webchat", "title": "Hello", "body": "Hello, how can I help?"})
        assert status == 201, made
        assert (await call(http, d, "POST", "/api/canned-replies", t["sue"],
                           {"queue": "webchat", "title": "hello", "body": "again"}))[0] == 409
        status, err = await call(http, d, "POST", "/api/canned-replies", t["sue"],
                                 {"queue": "sales", "title": "Voice", "body": "x"})
        assert (status, err["details"][0]["field"]) == (422, "body.queue")
        assert (await call(http, d, "POST", "/api/canned-replies", t["sue"],
                           {"title": "Bye", "body": "Goodbye!\nThanks."}))[0] == 201
        status, listed = await call(http, d, "GET", "/api/canned-replies?queue=webchat", t["ada"])
        assert [r["title"] for r in listed["replies"]] == ["Hello", "Bye"]
        status, listed = await call(http, d, "GET", "/api/canned-replies?queue=sms", t["ada"])
        assert [r["title"] for r in listed["replies"]] == ["Bye"]
        assert (await call(http, d, "DELETE", f"/api/canned-replies/{made['reply_id']}", t["ada"]))[0] == 403
        assert (await call(http, d, "DELETE", f"/api/canned-replies/{made['reply_id']}", t["sue"]))[0] == 204
        assert (await call(http, d, "DELETE", f"/api/canned-replies/{made['reply_id']}", t["sue"]))[0] == 404
        # A message from Carol's number; the customer's page lists the chat and the message.
        raw = (b'{"message_id": "SM-%s", "from": "+442079460001", "to": "+442079460999", "text": "Any news?", '
               b'"timestamp": "2026-05-01T08:00:00Z"}' % uuid.uuid4().hex.encode())
        async with http.post(url(d, "/api/messaging/inbound"), data=raw,
                             headers=messaging_core.signed_headers(SECRET, int(time.time()), raw)) as r:
            assert r.status == 200, await r.text()
        status, page = await call(http, d, "GET", "/api/customers/C-CAROL", t["ada"])
        assert status == 200
        got = {(c["channel"], c["subject"]) for c in page["conversations"]}
        assert got == {("chat", "My parcel?"), ("message", "Any news?")}
        # The screen-pop's look-up of a call from her number has them as recent contacts.
        pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
        try:
            card = await lookup_card_data(pool, "no-such-call", "+442079460001", None, False)
        finally:
            await pool.close()
        assert card["status"] == "found"
        assert {c["channel"] for c in card["recent_contacts"]} == {"chat", "message"}
        # Ada's message conversations: the one offered to her.
        status, mine = await call(http, d, "GET", "/api/messaging/conversations?mine=true", t["ada"])
        status2, bobs = await call(http, d, "GET", "/api/messaging/conversations?mine=true", t["bob"])
        assert status == status2 == 200
        assert len(mine["conversations"]) + len(bobs["conversations"]) == 1
        await ws.close()
    finally:
        await d.stop()


async def test_a_chat_resumes_after_a_restart_and_the_task_router_follows(asterisk, database, tmp_path, http):
    s1 = settings(database, tmp_path)
    d = await start_daemon(s1)
    try:
        t = await users(database, http, d)
        ws, started = await chat_start(http, d, "Carol", "carol@example.org", "Where is it?")
        token, task_id = started["token"], started["task_id"]
        await eventually(lambda: my_tasks(http, d, t["ada"]), 10)
        assert (await call(http, d, "POST", f"/api/tasks/{task_id}/messages", t["ada"], {"body": "Looking"}))[0] == 201
        frames = await frames_until(ws, lambda f: f["type"] == "message" and f["body"] == "Looking")
        last_seq = max(f["seq"] for f in frames if f["type"] == "message")
        # A second chat, closed today: the day's figures count it.
        ws2, started2 = await chat_start(http, d, "Dan", "dan@example.org", "Hi")
        await eventually(lambda: len(d.runner.app[OMNI].tasks_of("a1")) == 2, 10)
        assert (await call(http, d, "POST", f"/api/tasks/{started2['task_id']}/close", t["ada"],
                           {"disposition": "done"}))[0] == 200
        await d.runner.app[OMNI].flush()
        await ws.close()
        await ws2.close()
    finally:
        await d.stop()
    # The daemon comes back (same database): Ada still holds the chat, the widget resumes by seq.
    d = await start_daemon(settings(database, tmp_path))
    try:
        await add_user(database, "ann", "admin")
        t = {u: bearer(await login(http, d, u)) for u in ("ada", "sue", "ann")}
        omni = d.runner.app[OMNI]
        assert omni.restored == 1 and omni.tasks[task_id].agent_id == "a1"
        stats = {s.queue_id: s for s in omni.queue_stats(time.time())}
        assert stats["webchat"].answered == 2 and stats["webchat"].open == 1
        ws = await http.ws_connect(url(d, "/chat/ws"))
        await ws.send_json({"type": "resume", "token": token, "last_seq": last_seq - 1})
        first = await ws.receive_json(timeout=10)
        assert first == {"type": "started", "token": token, "task_id": task_id, "status": "active"}
        again = await ws.receive_json(timeout=10)
        assert (again["seq"], again["body"]) == (last_seq, "Looking")       # only what followed last_seq - 1
        status, lines = await call(http, d, "GET", f"/api/tasks/{task_id}/messages", t["ada"])
        assert status == 200 and [m["body"] for m in lines["messages"]][:2] == ["Where is it?", "Looking"]
        await ws.send_json({"type": "message", "body": "Thanks"})
        status, _ = await call(http, d, "POST", f"/api/tasks/{task_id}/messages", t["ada"], {"body": "Found it"})
        assert status == 201
        frames = await frames_until(ws, lambda f: f["type"] == "message" and f["body"] == "Found it")
        seqs = [f["seq"] for f in frames if f["type"] == "message"]
        assert seqs == [last_seq + 1, last_seq + 2]         # the numbering goes on
        # A new ACD configuration (Ada's chat capacity 1) reaches the task router without a restart.
        status, cfg = await call(http, d, "GET", "/api/acd/config", t["sue"])
        assert status == 200
        doc = cfg["document"]
        for a in doc["agents"]:
            if a["id"] == "a1":
                a["capacity"]["chat"] = 1
        old_router = omni.router
        status, saved = await call(http, d, "PUT", "/api/acd/config", t["ann"], doc)
        assert status == 200, saved
        assert omni.router is not old_router and omni.tasks[task_id].agent_id == "a1"
        ws3, started3 = await chat_start(http, d, "Eve", "eve@example.org", "Hello")
        assert omni.tasks[started3["task_id"]].status == "waiting"      # Ada is full at 1 now
        await ws3.close()
        await ws.close()
    finally:
        await d.stop()
