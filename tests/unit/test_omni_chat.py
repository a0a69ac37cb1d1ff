"""Web chat end to end in one process, without a database: a real aiohttp server with
the customer's /chat/ws, the ACD and hub services, the omnichannel service. Plus the
chat core's parser and rate limiter, fuzzed."""
from __future__ import annotations

import asyncio
import json

import hypothesis.strategies as st
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given

from omni.chat import BODY_MAX, FRAME_MAX, Chat, ChatError, RateLimit, parse_client
from omni.chat_service import ChatService


@pytest.fixture
async def chat_server(omni_running):
    """``omni_running`` (tests/unit/conftest.py) with the customer's ``/chat/ws`` served by a
    ``ChatService`` on its ``webchat`` queue: ``(client, hub, desk, omni, chat)``."""
    o = omni_running
    chat = ChatService(o.omni, "webchat", lambda r: r.remote or "?")
    await chat.start()
    o.app.router.add_get("/chat/ws", chat.serve)
    client = TestClient(TestServer(o.app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, o.hub, o.desk, o.omni, chat
    finally:
        await chat.stop()
        await client.close()


def _desk(hub, desk, kind):
    return [m for m in map(json.loads, hub.hub.take(desk)) if m["type"] == kind]


async def _until(ws, kind):
    while True:
        f = await ws.receive_json(timeout=5)
        if f["type"] == kind:
            return f


async def test_a_chat_from_start_to_transcript_with_a_reconnect_in_the_middle(chat_server):
    client, hub, desk, omni, chat = chat_server
    ws = await client.ws_connect("/chat/ws")
    await ws.send_json({"type": "start", "name": "Ada", "email": "Ada@Example.org", "question": "Where is it?"})
    started = await _until(ws, "started")
    assert (await _until(ws, "message"))["body"] == "Where is it?"
    (offer,) = _desk(hub, desk, "task.offered")
    tid = offer["task"]["task_id"]
    assert tid == started["task_id"] and offer["task"]["customer_ref"] == "ada@example.org"
    c = chat.by_task[tid]
    chat.say(c, "agent", "Looking now", "a4")
    assert (await _until(ws, "message"))["seq"] == 2
    await ws.close()
    chat.say(c, "agent", "It left today", "a4")          # sent while the customer is away
    ws = await client.ws_connect("/chat/ws")
    await ws.send_json({"type": "resume", "token": started["token"], "last_seq": 2})
    await _until(ws, "started")
    m = await _until(ws, "message")
    assert (m["seq"], m["body"]) == (3, "It left today")
    await ws.send_json({"type": "message", "body": "Thanks"})
    await ws.send_json({"type": "typing", "on": True})
    await ws.send_json({"type": "message", "body": "x" * (BODY_MAX + 1)})
    assert "longer than" in (await _until(ws, "error"))["reason"]
    for _ in range(50):
        if len(c.messages) == 4:
            break
        await asyncio.sleep(0.02)
    assert [m["body"] for m in _desk(hub, desk, "chat.message")][-1] == "Thanks"
    omni.close_task(tid, "a4", "resolved")
    closed = await _until(ws, "closed")
    assert closed["transcript"] == f"/chat/transcript/{started['token']}"
    text = await chat.transcript(started["token"])
    assert "Ada: Where is it?" in text and "Agent: It left today" in text and "Ada: Thanks" in text
    await ws.close()


async def test_over_capacity_the_customer_is_told_its_place(chat_server):
    client, hub, desk, omni, chat = chat_server
    socks = []
    for i in range(3):
        ws = await client.ws_connect("/chat/ws")
        await ws.send_json({"type": "start", "name": f"C{i}", "email": f"c{i}@example.org", "question": "hi"})
        socks.append(ws)
    q = await _until(socks[2], "queue")
    assert q["position"] == 1 and q["wait_s"] is not None
    for ws in socks:
        await ws.close()


async def test_a_bad_first_frame_is_refused_with_a_reason(chat_server):
    client, hub, desk, omni, chat = chat_server
    ws = await client.ws_connect("/chat/ws")
    await ws.send_json({"type": "start", "name": "", "email": "nope", "question": "q"})
    assert "name" in (await _until(ws, "error"))["reason"]
    await ws.close()
    assert not chat.chats


@given(st.one_of(st.text(max_size=FRAME_MAX + 10), st.binary(max_size=50),
                 st.dictionaries(st.sampled_from(["type", "name", "email", "question", "token", "last_seq", "body",
                                                  "on", "queue", "transcript"]),
                                 st.one_of(st.text(max_size=40), st.integers(), st.booleans(), st.none(),
                                           st.sampled_from(["start", "resume", "message", "typing", "leave"])))
                 .map(json.dumps)))
def test_any_frame_parses_or_is_refused_with_a_reason(frame):
    try:
        m = parse_client(frame)
    except ChatError as exc:
        assert str(exc)
        return
    assert m.kind in ("start", "resume", "message", "typing", "leave")
    if m.kind in ("message", "start"):
        assert 0 < len(m.body) <= BODY_MAX
    assert not m.transcript or m.kind == "start"
    if m.queue is not None:     # a queue id as the ACD configuration spells them
        assert m.kind == "start" and 0 < len(m.queue) <= 64 and m.queue.isprintable() and " " not in m.queue


def test_rate_limit_allows_a_burst_then_the_rate():
    r = RateLimit(rate=1.0, burst=3)
    assert [r.allow("k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert r.allow("k", 1.0) and not r.allow("k", 1.0)
    assert r.allow("other", 1.0)


def test_a_closed_chat_takes_no_more_messages():
    c = Chat("t" * 20, "chat-1", "Ada", "ada@example.org", status="closed")
    with pytest.raises(ChatError):
        c.add("customer", "hello", 1.0)


async def test_an_oversized_frame_closes_that_socket_and_a_connection_flood_gets_429(chat_server):
    client, hub, desk, omni, chat = chat_server
    ws = await client.ws_connect("/chat/ws")
    await ws.send_str("x" * (FRAME_MAX + 1))
    msg = await ws.receive(timeout=5)
    assert msg.type.name in ("CLOSE", "CLOSED", "CLOSING") and ws.close_code == 1009
    statuses = []
    for _ in range(25):
        try:
            w = await client.ws_connect("/chat/ws")
            statuses.append(101)
            await w.close()
        except Exception as exc:     # aiohttp.WSServerHandshakeError
            statuses.append(getattr(exc, "status", 0))
    assert 429 in statuses and statuses.index(429) >= 15      # a burst first, then refused
    assert not chat.chats                                      # nothing filed


async def test_a_flood_of_messages_is_refused_with_a_reason_and_none_is_half_stored(chat_server):
    client, hub, desk, omni, chat = chat_server
    ws = await client.ws_connect("/chat/ws")
    await ws.send_json({"type": "start", "name": "Eve", "email": "eve@example.org", "question": "q"})
    await _until(ws, "started")
    for i in range(20):
        await ws.send_json({"type": "message", "body": f"m{i}"})
    assert "too many messages" in (await _until(ws, "error"))["reason"]
    c = next(iter(chat.chats.values()))
    bodies = [m.body for m in c.messages[1:]]
    assert bodies == [f"m{i}" for i in range(len(bodies))] and 5 <= len(bodies) < 20
    await ws.close()
