"""Messaging and the web callback form on the real daemon: signed inbound messages
become conversations matched to customers (once each), agents' replies reach a local
provider signed, and a web callback request waits in the ACD and is called back in
the sandbox like any callback (docs/messaging.md)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from acd.callback_db import fetch_callback
from crm.customer_lookup import save_customer
from cti.demo import set_demo_times
from messaging import core
from messaging.service import MESSAGING
from server.root import build
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import add_user, bearer, login, url

SECRET = "provider-shared-secret-for-tests"
CALLBACK_CONFIG = Path(__file__).with_name("acd-callback.toml")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


class Provider:
    """A local messaging provider: records what it is sent; answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def __aenter__(self) -> "Provider":
        app = web.Application()
        app.router.add_post("/send", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/send"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def inbound(message_id: str, number: str, text: str = "Where is my parcel?") -> bytes:
    return json.dumps({"message_id": message_id, "from": number, "to": "+442079460999", "text": text,
                       "timestamp": "2026-05-01T08:00:00Z"}).encode()


async def post_inbound(http, d, raw: bytes, secret: str = SECRET) -> tuple[int, dict]:
    headers = core.signed_headers(secret, int(time.time()), raw)
    async with http.post(url(d, "/api/messaging/inbound"), data=raw, headers=headers) as r:
        return r.status, await r.json()


async def fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_a_signed_message_opens_a_conversation_with_its_customer_once_and_a_forgery_is_refused(
        asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path, messaging_secret=SECRET))
    try:
        customer = f"cust-{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(database)
        try:
            await save_customer(conn, customer, "Ada Lovelace", ["+442079460001"])
        finally:
            await conn.close()
        mid = f"SM{uuid.uuid4().hex}"
        status, first = await post_inbound(http, d, inbound(mid, "+44 20 7946 0001"))
        assert status == 200 and first["stored"] and first["new_conversation"], first
        status, again = await post_inbound(http, d, inbound(mid, "+44 20 7946 0001"))
        assert status == 200 and not again["stored"] and again["message_id"] is None
        assert again["conversation_id"] == first["conversation_id"]
        rows = await fetch(database, "SELECT c.customer_id, c.number, c.state, m.body FROM messages m JOIN "
                           "message_conversations c USING (conversation_id) WHERE m.provider_id = $1", mid)
        assert [tuple(r) for r in rows] == [(customer, "+442079460001", "waiting", "Where is my parcel?")]
        # A second message joins the same conversation.
        status, second = await post_inbound(http, d, inbound(f"SM{uuid.uuid4().hex}", "+442079460001", "Hello?"))
        assert status == 200 and second["conversation_id"] == first["conversation_id"]
        assert not second["new_conversation"]
        # A forged one: refused with its reason, nothing stored.
        forged_id = f"SM{uuid.uuid4().hex}"
        status, refused = await post_inbound(http, d, inbound(forged_id, "+442079460001"), secret="guessed")
        assert (status, refused["error_id"]) == (401, "bad_signature") and "does not match" in refused["message"]
        raw = inbound(forged_id, "+442079460001")
        old = core.signed_headers(SECRET, int(time.time()) - 600, raw)
        async with http.post(url(d, "/api/messaging/inbound"), data=raw, headers=old) as r:
            assert r.status == 401 and (await r.json())["error_id"] == "stale_request"
        assert await fetch(database, "SELECT 1 FROM messages WHERE provider_id = $1", forged_id) == []
        assert d.runner.app[MESSAGING].replays == 1
    finally:
        await d.stop()


async def test_a_new_conversation_goes_to_the_injected_task_filer(asterisk, database, tmp_path, http):
    settings = daemon_settings(database, tmp_path, messaging_secret=SECRET, messaging_queue="support")
    app = build(settings)
    filed = []

    async def file_task(opened):
        if opened.number == "+447911123458":
            raise RuntimeError("the task router is away")
        filed.append(opened)
        return f"task-{opened.conversation_id}"

    app[MESSAGING].on_new = file_task
    d = await start_daemon(settings, app)
    try:
        status, first = await post_inbound(http, d, inbound(f"SM{uuid.uuid4().hex}", "+447911123456"))
        assert status == 200 and first["new_conversation"]
        assert [(o.number, o.queue, o.customer_id, o.text) for o in filed] == [
            ("+447911123456", "support", None, "Where is my parcel?")]
        rows = await fetch(database, "SELECT state, task_ref FROM message_conversations WHERE conversation_id = $1",
                           first["conversation_id"])
        assert [tuple(r) for r in rows] == [("queued", f"task-{first['conversation_id']}")]
        # A filer that fails: the message is kept and the conversation waits.
        status, other = await post_inbound(http, d, inbound(f"SM{uuid.uuid4().hex}", "+447911123458"))
        assert status == 200 and other["stored"] and other["new_conversation"]
        rows = await fetch(database, "SELECT state, task_ref FROM message_conversations WHERE conversation_id = $1",
                           other["conversation_id"])
        assert [tuple(r) for r in rows] == [("waiting", None)]
    finally:
        await d.stop()


async def test_an_agents_reply_reaches_the_provider_signed_after_a_failed_attempt(asterisk, database, tmp_path, http):
    async with Provider(statuses=[503]) as provider:
        d = await start_daemon(daemon_settings(database, tmp_path, messaging_secret=SECRET,
                                               messaging_outbound_url=provider.url, messaging_retry_s=0.2))
        try:
            await add_user(database, "msg-agent", "agent", "a1")
            token = bearer(await login(http, d, "msg-agent"))
            status, first = await post_inbound(http, d, inbound(f"SM{uuid.uuid4().hex}", "+447911123457"))
            assert status == 200
            cid = first["conversation_id"]
            async with http.post(url(d, f"/api/messaging/conversations/{cid}/messages"),
                                 json={"text": "It arrives today."}, headers=token) as r:
                assert r.status == 202, await r.text()
                queued = await r.json()
            assert queued["delivery"] == "pending"
            rows = await eventually(lambda: fetch(database, "SELECT delivery, attempts, last_error FROM messages "
                                                  "WHERE message_id = $1 AND delivery = 'sent'",
                                                  queued["message_id"]), timeout=20, what="the reply delivered")
            assert tuple(rows[0]) == ("sent", 2, None)
            assert len(provider.received) == 2
            headers, raw = provider.received[-1]
            core.verify(SECRET, headers, raw, time.time())     # raises if not signed right
            sent = json.loads(raw)
            assert (sent["to"], sent["from"], sent["text"], sent["conversation_id"]) == (
                "+447911123457", "+442079460999", "It arrives today.", str(cid))
            async with http.get(url(d, f"/api/messaging/conversations/{cid}"), headers=token) as r:
                view = await r.json()
            assert view["state"] == "open"
            assert [(m["direction"], m["delivery"]) for m in view["messages"]] == [("in", None), ("out", "sent")]
            async with http.post(url(d, "/api/messaging/conversations/999999/messages"), json={"text": "x"},
                                 headers=token) as r:
                assert r.status == 404
        finally:
            await d.stop()


@pytest.fixture
async def demo_times(demo_ami):
    hangup_all()
    await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
    yield
    await set_demo_times(demo_ami)


async def test_a_web_callback_request_waits_in_its_queue_and_is_called_back(
        asterisk, database, tmp_path, http, demo_ami, demo_times):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=CALLBACK_CONFIG, acd_announce_every=0,
                                           acd_callback_dial="Local/{number}@cti-demo-callee/n",
                                           acd_callback_retry_s=1, acd_callback_attempts=2,
                                           callback_form_queue="care", messaging_region="GB"))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="the ACD up")
        customer = f"cust-{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(database)
        try:
            await save_customer(conn, customer, "Ada Lovelace", ["+442079460002"])
        finally:
            await conn.close()
        async with http.get(url(d, "/callback/")) as r:
            assert r.status == 200 and "Call me back" in await r.text()
        form = {"name": "Ada", "number": "020 7946 0002", "preferred": "asap", "website": ""}
        async with http.post(url(d, "/api/callback-requests"), json=form) as r:
            assert r.status == 202, await r.text()
            filed = await r.json()
        assert (filed["queue"], filed["number"]) == ("care", "+442079460002")
        cb = await eventually(lambda: fetch_callback(database, filed["reference"]), timeout=10, what="stored")
        assert (cb.queue, cb.number, cb.status, cb.customer_id) == ("care", "+442079460002", "pending", customer)
        rows = await fetch(database, "SELECT name, number, customer_id FROM web_callback_requests "
                           "WHERE callback_id = $1", filed["reference"])
        assert [tuple(r) for r in rows] == [("Ada", "+442079460002", customer)]
        assert [(w.call_id, w.queue_id, w.callback) for w in d.acd.router.waiting_calls()] == [
            (filed["reference"], "care", True)]
        async with http.post(url(d, "/api/callback-requests"), json=form) as r:
            assert r.status == 409 and (await r.json())["error_id"] == "already_requested"
        async with http.post(url(d, "/api/callback-requests"), json={**form, "number": "+44 909 8790000"}) as r:
            answer = await r.json()
            assert r.status == 422 and answer["details"][0]["field"] == "body.number", answer
        # A preferred time: stored, held back until then, not waiting in the queue yet.
        d.runner.app[MESSAGING].form_limit = core.RateLimit(rate=1.0, burst=10)
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        async with http.post(url(d, "/api/callback-requests"),
                             json={**form, "number": "+44 20 7946 0003", "preferred": later.isoformat()}) as r:
            assert r.status == 202, await r.text()
            held = await r.json()
        stored = await eventually(lambda: fetch_callback(database, held["reference"]), timeout=10, what="stored")
        assert stored.not_before == pytest.approx(later.timestamp()) and stored.status == "pending"
        assert held["reference"] in d.acd.retries
        assert [w.call_id for w in d.acd.router.waiting_calls()] == [filed["reference"]]
        d.acd.agent_request("c1", "login")

        async def connected():
            got = await fetch_callback(database, filed["reference"])
            return got if got is not None and got.status == "connected" else None

        done = await eventually(connected, timeout=30, what="the customer called back")
        assert (done.agent_id, done.attempts, done.last_result) == ("c1", 1, "ANSWER")
    finally:
        await d.stop()
        await asyncio.sleep(0)
