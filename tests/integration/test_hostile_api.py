"""Hostile input at the API: the REST API fuzzed from its own OpenAPI document
(schemathesis), oversized and flooding WebSocket clients, and replayed or
forged credentials. Real daemon, real PostgreSQL, real sandbox Asterisk.

The fuzz run here is short and derandomized (the same cases every run);
``CTI_FUZZ_EXAMPLES=N`` runs N fresh random cases per operation and mode
instead (the long run, docs/hostile-input.md).
"""
from __future__ import annotations

import asyncio
import json
import os

import aiohttp
import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.ws import CLOSE_BAD_REQUEST, CLOSE_SLOW, CLOSE_UNAUTHENTICATED, WS
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, cli, login, url

_LONG = int(os.environ.get("CTI_FUZZ_EXAMPLES", "0"))
EXAMPLES = _LONG or 4
# Logging out would end the session the fuzzer uses (tested below instead).
SKIP = {("POST", "/api/logout")}
ROLES = ("admin", "supervisor", "agent")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def daemon_with_users(asterisk, database, tmp_path):
    # Messaging and the callback form on, so the fuzzer reaches past "not enabled" (docs/messaging.md).
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           messaging_secret="fuzz-secret", callback_form_queue="sales",
                                           messaging_outbound_url="http://127.0.0.1:9/none"))
    for role in ROLES:
        await add_user(database, f"h-{role}", role, "a1" if role == "agent" else None)
    try:
        yield d
    finally:
        await d.stop()


def rejects_invalid_data(ctx, response, case):
    """schemathesis's negative_data_rejection, with 413 counted as a rejection: a body over
    a route's byte bound is refused unread (an over-long string is over maxLength too)."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)


def fuzz(doc: dict, base: str, headers: dict[str, dict[str, str]]) -> list[str]:
    """Every operation, with valid and with invalid inputs, as each role: the
    failures found (empty when none). Runs in a thread: it blocks."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue
        for mode, checks in ((GenerationMode.POSITIVE, [not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance]),
                             (GenerationMode.NEGATIVE, [not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance,
                                                        rejects_invalid_data])):
            for role, creds in headers.items():
                @settings(max_examples=EXAMPLES, derandomize=not _LONG, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=op.as_strategy(generation_mode=mode))
                def run(case) -> None:
                    response = case.call(base_url=base, headers=creds, timeout=30)
                    case.validate_response(response, checks=checks)

                try:
                    run()
                except Unsatisfiable:
                    break   # nothing to make invalid (no parameters, no body)
                except (Exception, BaseExceptionGroup) as exc:  # collected, reported all at once
                    failures.append(f"{op.label} ({mode.value}, {role}): {str(exc)[:1500]}")
    return failures


async def test_the_api_fuzzed_from_its_openapi_document_answers_by_its_schema(daemon_with_users, http):
    """No 5xx, every answer as documented (status, content type, schema), invalid input a 4xx."""
    d = daemon_with_users
    headers = {role: bearer(await login(http, d, f"h-{role}")) for role in ROLES}
    async with http.get(url(d, "/openapi.json")) as r:
        doc = await r.json()
    failures = await asyncio.to_thread(fuzz, doc, url(d, ""), headers)
    assert not failures, "\n\n".join(failures)
    for role in ROLES:   # the fuzzer's sessions survived it (nothing logged them out)
        async with http.get(url(d, "/api/me"), headers=headers[role]) as r:
            assert r.status == 200


# -- WebSocket: oversized frames and floods -------------------------------------------


async def ws_auth(http, d, token: str, **extra):
    """A socket past its hello (the hello is returned)."""
    ws = await http.ws_connect(url(d, "/ws"), timeout=aiohttp.ClientWSTimeout(ws_close=10), max_msg_size=0)
    await ws.send_json({"type": "auth", "token": token, **extra})
    msg = await ws.receive(timeout=10)
    return ws, json.loads(msg.data)


async def closed_with(ws) -> int:
    """Read until the server closes; its close code."""
    async with asyncio.timeout(30):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code
            if msg.type == aiohttp.WSMsgType.ERROR:
                return ws.close_code


async def still_answers(ws) -> None:
    await ws.send_json({"type": "ping"})
    async with asyncio.timeout(10):
        while True:
            m = json.loads((await ws.receive()).data)
            if m["type"] == "pong":
                return


async def test_an_oversized_websocket_message_closes_that_socket_only(daemon_with_users, http):
    d = daemon_with_users
    bystander, _ = await ws_auth(http, d, await login(http, d, "h-supervisor"))
    big, hello = await ws_auth(http, d, await login(http, d, "h-admin"))
    assert hello["type"] == "hello"
    await big.send_str(json.dumps({"type": "ping", "pad": "x" * (1 << 20)}))
    assert await closed_with(big) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    # Before authenticating too: the auth message is held to the same bound.
    raw = await http.ws_connect(url(d, "/ws"), timeout=aiohttp.ClientWSTimeout(ws_close=10))
    await raw.send_str(json.dumps({"type": "auth", "token": "cts_" + "x" * (1 << 20)}))
    assert await closed_with(raw) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await still_answers(bystander)
    await bystander.close()


async def test_a_ping_flood_whose_answers_are_not_read_is_closed_as_slow(asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path, ws_queue_max=10))
    try:
        await add_user(database, "h-admin", "admin")
        await add_user(database, "h-supervisor", "supervisor")
        bystander, _ = await ws_auth(http, d, await login(http, d, "h-supervisor"))
        flood, _ = await ws_auth(http, d, await login(http, d, "h-admin"))
        hub = d.runner.app[WS].hub
        for _ in range(20_000):   # answers pile up faster than they can be sent
            try:
                await flood.send_str('{"type":"ping"}')
            except ConnectionError:   # already closed by the server: what this test wants
                break
        assert await closed_with(flood) == CLOSE_SLOW
        assert hub.dropped_slow >= 1
        assert all(len(c.queue) <= c.limit for s in hub.streams.values() for c in s.conns)
        await still_answers(bystander)
        await bystander.close()
    finally:
        await d.stop()


# -- replayed and forged credentials --------------------------------------------------


def tampered(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


async def refused_everywhere(http, d, secret: str) -> None:
    """401 at the API (as bearer and as X-API-Key), 4401 on /ws; the secret never echoed."""
    # A client library will not even send control characters in a header: those go by /ws only.
    for headers in () if any(ord(c) < 32 for c in secret) else (bearer(secret), {"X-API-Key": secret}):
        async with http.get(url(d, "/api/me"), headers=headers) as r:
            text = await r.text()
            assert r.status == 401, (secret[:12], r.status, text)
            assert json.loads(text)["error_id"] == "unauthenticated" and secret not in text
    ws = await http.ws_connect(url(d, "/ws"), timeout=aiohttp.ClientWSTimeout(ws_close=10))
    await ws.send_json({"type": "auth", "token": secret})
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    error = json.loads(msg.data)
    assert error["type"] == "error" and error["error_id"] == "unauthenticated" and secret not in msg.data
    assert await closed_with(ws) == CLOSE_UNAUTHENTICATED


async def test_replayed_and_forged_credentials_are_refused_and_nothing_leaks(daemon_with_users, http, database):
    d = daemon_with_users
    for name in ("h-gone", "h-off", "h-late"):
        await add_user(database, name, "supervisor")
    good = await login(http, d, "h-admin")
    logged_out = await login(http, d, "h-supervisor")
    async with http.post(url(d, "/api/logout"), headers=bearer(logged_out)) as r:
        assert r.status == 204
    gone, off, late = [await login(http, d, n) for n in ("h-gone", "h-off", "h-late")]
    made = cli(database, "api-key", "h-key", "--role", "supervisor")
    key = made.stdout.strip().splitlines()[-1]
    assert cli(database, "revoke-key", "h-key").returncode == 0
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("DELETE FROM users WHERE username = 'h-gone'")
        # Disabled behind the API's back: the session row is still there.
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'h-off'")
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = "
                           "(SELECT user_id FROM users WHERE username = 'h-late')")
    finally:
        await conn.close()
    for secret in (tampered(good), logged_out, gone, off, late, key, tampered(key),
                   good[:4] + good[5:], "cts_" + "x" * 3000, "cts_ünïcödé", "ctk_'; DROP TABLE users;--",
                   "Bearer " + good, good + "\x00", good + "\r\nX-Evil: 1"):
        await refused_everywhere(http, d, secret)
    async with http.get(url(d, "/api/me"), headers=bearer(good)) as r:
        assert r.status == 200   # the real one still works


async def test_open_sockets_close_when_their_credential_ends_and_only_those(daemon_with_users, http, database):
    """One revalidation round checks every open socket (two queries in all): a logout, a
    disabled user, a changed role, an expired session and a revoked key each close theirs
    with 4401; the others stay and are marked seen."""
    d = daemon_with_users
    for name in ("r-out", "r-off", "r-role", "r-late", "r-keep"):
        await add_user(database, name, "supervisor")
    tokens = {n: await login(http, d, n) for n in ("r-out", "r-off", "r-role", "r-late", "r-keep")}
    made = cli(database, "api-key", "r-key", "--role", "supervisor")
    key = made.stdout.strip().splitlines()[-1]
    made = cli(database, "api-key", "r-key2", "--role", "admin")
    key2 = made.stdout.strip().splitlines()[-1]
    socks = {n: (await ws_auth(http, d, t))[0] for n, t in tokens.items()}
    socks["r-key"] = (await ws_auth(http, d, key))[0]
    socks["r-key2"] = (await ws_auth(http, d, key2))[0]
    service = d.runner.app[WS]
    assert await service.revalidate() == 0      # nothing ended yet
    async with http.post(url(d, "/api/logout"), headers=bearer(tokens["r-out"])) as r:
        assert r.status == 204
    assert cli(database, "revoke-key", "r-key").returncode == 0
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'r-off'")
        await conn.execute("UPDATE users SET role = 'qa' WHERE username = 'r-role'")
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = "
                           "(SELECT user_id FROM users WHERE username = 'r-late')")
        await conn.execute("UPDATE sessions SET last_seen_at = now() - interval '1 hour' WHERE user_id = "
                           "(SELECT user_id FROM users WHERE username = 'r-keep')")
        assert await service.revalidate() == 5
        for name in ("r-out", "r-off", "r-role", "r-late", "r-key"):
            assert await closed_with(socks[name]) == CLOSE_UNAUTHENTICATED, name
        for name in ("r-keep", "r-key2"):
            await still_answers(socks[name])
        seen = await conn.fetchval("SELECT last_seen_at > now() - interval '1 minute' FROM sessions WHERE user_id = "
                                   "(SELECT user_id FROM users WHERE username = 'r-keep')")
        assert seen is True
    finally:
        await conn.close()
    assert await service.revalidate() == 0
    for name in ("r-keep", "r-key2"):
        await socks[name].close()


async def test_a_websocket_client_cannot_widen_its_scope_or_take_another_stream(daemon_with_users, http, database):
    d = daemon_with_users
    await add_user(database, "h-qa", "qa")
    agent = await login(http, d, "h-agent")
    # Fields the auth message does not define are refused, not ignored.
    ws = await http.ws_connect(url(d, "/ws"), timeout=aiohttp.ClientWSTimeout(ws_close=10))
    await ws.send_json({"type": "auth", "token": agent, "scope": {"everything": True}})
    assert json.loads((await ws.receive(timeout=10)).data)["error_id"] == "invalid_message"
    assert await closed_with(ws) == CLOSE_BAD_REQUEST
    # A supervisor's stream id replayed by an agent: a resync, never the supervisor's events.
    boss, boss_hello = await ws_auth(http, d, await login(http, d, "h-supervisor"))
    mine, hello = await ws_auth(http, d, agent, stream=boss_hello["stream"], last_seq=0)
    assert hello["scope"] == {"everything": False, "agent_id": "a1"} and hello["resumed"] is False
    assert hello["stream"] != boss_hello["stream"]
    resync = json.loads((await mine.receive(timeout=10)).data)
    assert resync["type"] == "resync"
    qa, qa_hello = await ws_auth(http, d, await login(http, d, "h-qa"))
    assert qa_hello["scope"] == {"everything": False, "agent_id": None}
    for ws in (boss, mine, qa):
        await ws.close()


async def test_ids_beyond_bigint_or_impossible_are_refused_with_4xx(daemon_with_users, http):
    """Found by the fuzzer: each of these answered 500."""
    d = daemon_with_users
    admin = bearer(await login(http, d, "h-admin"))
    for method, path, status in (("GET", "/api/recordings?ticket=9811508001220470452556660736", 422),
                                 ("GET", "/api/webhooks/" + "9" * 30 + "/deliveries", 404),
                                 ("DELETE", "/api/webhooks/" + "9" * 30, 404),
                                 ("DELETE", "/api/webhooks/\u0663", 404),
                                 ("DELETE", "/api/phone/devices/%C3%97%C2%9D4%C2%A3", 404)):
        async with http.request(method, url(d, path), headers=admin) as r:
            assert r.status == status, (method, path, r.status, await r.text())
            assert (await r.json())["error_id"]
