"""The API against the real daemon, PostgreSQL and (for the WebSocket) real sandbox calls:
login, logout, expiry, roles, API keys, invalid bodies, the OpenAPI document,
/metrics, and screen-pop events over /ws with resume."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import structlog
from openapi_spec_validator import validate

from api import accounts
from api.auth import Passwords
from api.openapi import openapi_path
from api.registry import API
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import ROOT, daemon_settings, eventually, hangup_all, start_daemon

ACD_TEST = Path(__file__).with_name("acd-test.toml")
PASSWORD = "correct horse battery"


async def add_user(dsn: str, username: str, role: str, agent_id: str | None = None, team: str | None = None) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await accounts.create_user(conn, username=username, display_name=username.title(), role=role,
                                   password_hash=Passwords().hash(PASSWORD), agent_id=agent_id, team=team)
    finally:
        await conn.close()


def url(d, path: str) -> str:
    return f"http://127.0.0.1:{d.settings.http_port}{path}"


async def login(http: aiohttp.ClientSession, d, username: str, password: str = PASSWORD) -> str:
    async with http.post(url(d, "/api/login"), json={"username": username, "password": password}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli(dsn: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CTI_DATABASE_URL": dsn, "CTI_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "server.cli", "users", *args], input=stdin, text=True,
                          capture_output=True, timeout=60, cwd=ROOT, env=env)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api_daemon(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, metrics_access="auth"))
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "sam", "supervisor")
    try:
        yield d
    finally:
        await d.stop()


# -- authentication ---------------------------------------------------------------


async def test_login_me_logout(api_daemon, http):
    d = api_daemon
    with structlog.testing.capture_logs() as logs:
        async with http.post(url(d, "/api/login"), json={"username": " ADA ", "password": PASSWORD}) as r:
            body = await r.json()
        async with http.post(url(d, "/api/login"), json={"username": "ada", "password": "wrong " + PASSWORD}) as bad:
            assert bad.status == 401
    assert any(e["event"] == "logged in" for e in logs)
    assert PASSWORD not in repr(logs) and body["token"] not in repr(logs)
    assert r.status == 200 and body["user"]["agent_id"] == "a1" and body["token"].startswith("cts_")
    token = body["token"]
    async with http.get(url(d, "/api/me"), headers=bearer(token)) as r:
        me = await r.json()
    assert me["kind"] == "session" and me["name"] == "ada" and me["role"] == "agent" and me["expires_at"]
    async with http.post(url(d, "/api/logout"), headers=bearer(token)) as r:
        assert r.status == 204
    async with http.get(url(d, "/api/me"), headers=bearer(token)) as r:
        assert r.status == 401 and (await r.json())["error_id"] == "unauthenticated"


async def test_wrong_password_unknown_and_disabled_users_get_the_same_answer(api_daemon, http, database):
    d = api_daemon
    conn = await asyncpg.connect(database)
    await accounts.update_user(conn, "sam", disabled=True)
    await conn.close()
    answers = []
    for username, password in (("ada", "wrong password"), ("nobody", PASSWORD), ("sam", PASSWORD)):
        async with http.post(url(d, "/api/login"), json={"username": username, "password": password}) as r:
            answers.append((r.status, await r.json()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401 and answers[0][1]["error_id"] == "invalid_credentials"


async def test_repeated_failed_logins_are_throttled_and_a_good_password_waits_too(api_daemon, http):
    d = api_daemon
    statuses = []
    for _ in range(6):   # five free failures, the sixth starts a wait
        async with http.post(url(d, "/api/login"), json={"username": "ada", "password": "guess"}) as r:
            statuses.append(r.status)
    assert statuses == [401] * 6
    async with http.post(url(d, "/api/login"), json={"username": "ADA", "password": PASSWORD}) as r:
        body = await r.json()
        assert r.status == 429 and body["error_id"] == "too_many_attempts"
        assert 1 <= int(r.headers["Retry-After"]) <= 300
    # Another user from the same address is not held up by ada's guesses.
    assert (await login(http, d, "sam")).startswith("cts_")
    await asyncio.sleep(int(r.headers["Retry-After"]) + 0.1)
    assert (await login(http, d, "ada")).startswith("cts_")


def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose requests come from ``address`` (any of 127.0.0.0/8 is this host)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0))


async def login_status(http, d, username: str, password: str) -> tuple[int, str | None]:
    async with http.post(url(d, "/api/login"), json={"username": username, "password": password}) as r:
        await r.read()
        return r.status, r.headers.get("Retry-After")


async def test_a_concurrent_burst_is_counted_before_hashing_and_an_honest_login_does_not_queue_behind_it(
        api_daemon):
    """40 wrong passwords for ada and 100 for an unknown user, all at once, each burst from
    its own address; sam logs in from a third meanwhile."""
    d = api_daemon
    async with from_address("127.0.0.2") as a, from_address("127.0.0.3") as b, from_address("127.0.0.4") as c:
        with structlog.testing.capture_logs() as logs:
            bursts = [login_status(a, d, "ada", f"guess {n}") for n in range(40)]
            bursts += [login_status(b, d, "nobody", f"guess {n}") for n in range(100)]
            honest = login_status(c, d, "sam", PASSWORD)
            answers = await asyncio.gather(*bursts[:70], honest, *bursts[70:])
    sam = answers[70]
    ada, nobody = answers[:40], answers[40:70] + answers[71:]
    assert sam[0] == 200
    for burst in (ada, nobody):
        statuses = [s for s, _ in burst]
        # At most the free failures (5) and one more reach the hash; the rest are refused unhashed.
        assert statuses.count(401) <= 6, statuses
        assert set(statuses) <= {401, 429, 503}
        assert all(retry is not None and int(retry) >= 1 for s, retry in burst if s != 401)
    from api.session_routes import AUTH, HASH_QUEUE, HASH_QUEUE_PER_ADDRESS
    hashed = [e for e in logs if e["event"] in ("login refused", "logged in")]
    assert len(hashed) <= 6 + 6 + 1
    (mine,) = [e for e in logs if e["event"] == "logged in"]
    # Behind at most each burst's share of the hash queue (per address), never behind the bursts.
    assert mine["hashes_ahead"] <= 2 * HASH_QUEUE_PER_ADDRESS
    queue = d.runner.app[AUTH].queue
    assert queue.peak <= HASH_QUEUE and queue.inside == 0


async def test_a_stranger_failing_from_another_address_cannot_lock_the_owner_out(api_daemon):
    d = api_daemon
    async with from_address("127.0.0.2") as stranger, from_address("127.0.0.4") as owner:
        statuses = [(await login_status(stranger, d, "ada", f"guess {n}"))[0] for n in range(12)]
        assert statuses[:6] == [401] * 6 and set(statuses[6:]) == {429}
        assert (await login_status(stranger, d, "ada", PASSWORD))[0] == 429   # the stranger's address waits
        assert (await login_status(owner, d, "ada", PASSWORD))[0] == 200      # ada's does not


async def test_login_takes_only_a_json_body(api_daemon, http):
    """A form or a text/plain fetch from any web page would need no preflight."""
    body = json.dumps({"username": "ada", "password": PASSWORD})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        async with http.post(url(api_daemon, "/api/login"), data=body, headers={"Content-Type": ctype}) as r:
            assert r.status == 415 and (await r.json())["error_id"] == "unsupported_media_type"
    async with http.post(url(api_daemon, "/api/login"), data=body,
                         headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200


async def test_expired_session_is_refused(api_daemon, http, database):
    d = api_daemon
    token = await login(http, d, "ada")
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
        (stored,) = await conn.fetch("SELECT token_hash FROM sessions")
        assert token.encode() not in bytes(stored["token_hash"])   # only a digest is stored
    finally:
        await conn.close()
    async with http.get(url(d, "/api/me"), headers=bearer(token)) as r:
        assert r.status == 401


async def test_role_decides_403_and_missing_credentials_401(api_daemon, http):
    d = api_daemon   # metrics_access = "auth": supervisors and admins
    async with http.get(url(d, "/metrics")) as r:
        assert r.status == 401
    async with http.get(url(d, "/metrics"), headers=bearer(await login(http, d, "ada"))) as r:
        assert r.status == 403 and (await r.json())["error_id"] == "forbidden"
    async with http.get(url(d, "/metrics"), headers=bearer(await login(http, d, "sam"))) as r:
        text = await r.text()
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "cti_ami_connected 1" in text and 'cti_calls{state="talking"}' in text
    assert "cti_store_buffered_rows" in text and "cti_ws_connections 0" in text


async def test_api_key_from_the_cli_works_until_revoked(api_daemon, http, database):
    d = api_daemon
    made = cli(database, "api-key", "crm", "--role", "supervisor")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("ctk_")
    for headers in ({"X-API-Key": key}, bearer(key)):
        async with http.get(url(d, "/api/me"), headers=headers) as r:
            me = await r.json()
        assert r.status == 200 and me == {**me, "kind": "api_key", "name": "crm", "role": "supervisor"}
    async with http.get(url(d, "/metrics"), headers={"X-API-Key": key}) as r:
        assert r.status == 200
    listed = cli(database, "api-keys")
    assert "crm" in listed.stdout and key not in listed.stdout
    assert cli(database, "revoke-key", "crm").returncode == 0
    async with http.get(url(d, "/api/me"), headers={"X-API-Key": key}) as r:
        assert r.status == 401


async def test_cli_bootstraps_an_admin_who_can_log_in(api_daemon, http, database):
    d = api_daemon
    made = cli(database, "add", "root", "--role", "admin", "--display-name", "The Admin", stdin="s3cret-enough\n")
    assert made.returncode == 0, made.stderr
    assert "s3cret-enough" not in made.stdout + made.stderr
    assert cli(database, "add", "root", "--role", "admin", stdin="s3cret-enough\n").returncode == 1  # taken
    assert cli(database, "add", "shorty", "--role", "agent", stdin="short\n").returncode == 1
    token = await login(http, d, "root", "s3cret-enough")
    assert cli(database, "passwd", "root", stdin="another-password\n").returncode == 0
    async with http.get(url(d, "/api/me"), headers=bearer(token)) as r:
        assert r.status == 401      # a new password ends the old sessions
    await login(http, d, "root", "another-password")


@pytest.mark.parametrize("body, status, field", [
    ({"username": "ada"}, 422, "body.password"),
    ({"password": "x"}, 422, "body.username"),
    ({"username": "ada\r\nX-Evil: 1", "password": "x"}, 422, "body.username"),
    ({"username": "ada' OR '1'='1", "password": "x"}, 422, "body.username"),
    ({"username": "ada", "password": "x", "admin": True}, 422, "body.admin"),
    ({"username": "ada", "password": ""}, 422, "body.password"),
])
async def test_invalid_login_bodies_name_the_field(api_daemon, http, body, status, field):
    async with http.post(url(api_daemon, "/api/login"), json=body) as r:
        reply = await r.json()
    assert r.status == status and field in [d["field"] for d in reply["details"]]


async def test_login_body_that_is_not_json_is_400(api_daemon, http):
    async with http.post(url(api_daemon, "/api/login"), data=b"username=ada",
                         headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json())["error_id"] == "invalid_json"


async def test_openapi_document_of_the_daemon_is_valid_and_complete(api_daemon, http):
    async with http.get(url(api_daemon, "/openapi.json")) as r:
        doc = await r.json()
    validate(doc)
    routes = api_daemon.runner.app[API].routes
    assert {(r.method.lower(), openapi_path(r.path)) for r in routes} == {
        (m, p) for p, ops in doc["paths"].items() for m in ops}
    assert {"/api/login", "/api/logout", "/api/me", "/metrics", "/ws", "/healthz"} <= set(doc["paths"])
    login_op = doc["paths"]["/api/login"]["post"]
    schema = doc["components"]["schemas"][login_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"username", "password"}
    async with http.get(url(api_daemon, "/docs/reference")) as r:
        assert r.status == 200 and "/api/login" in await r.text()
    async with http.get(url(api_daemon, "/docs")) as r:   # Swagger UI, over /openapi.json
        assert r.status == 200 and "/docs/vendor/swagger-ui-bundle-" in await r.text()


# -- WebSocket ---------------------------------------------------------------------


@pytest.fixture
async def acd_daemon(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
    await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
    for agent in ("a2", "a3", "a4", "a5"):
        d.acd.agent_request(agent, "set_not_ready", "test")
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "ben", "agent", "a2")
    await add_user(database, "sam", "supervisor")
    try:
        yield d
    finally:
        await d.stop()
        await set_demo_times(demo_ami)


async def ws_open(http, d, token: str, **resume):
    ws = await http.ws_connect(url(d, "/ws"), timeout=aiohttp.ClientWSTimeout(ws_close=5))
    await ws.send_json({"type": "auth", "token": token, **resume})
    return ws


async def read_until(ws, stop, timeout: float, into: list[dict]) -> list[dict]:
    """Collect messages into ``into`` until ``stop(message)``; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            m = json.loads(msg.data)
            into.append(m)
            if stop(m):
                return into


async def sales_call(demo_ami, n: int):
    return await place_call(demo_ami, caller_num=f"+4420{n:07d}", caller_name=f"Caller {n}", patience=60,
                            context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})


async def test_agent_gets_the_screen_pop_of_a_call_offered_to_them_and_not_another_agents(acd_daemon, http, demo_ami):
    d = acd_daemon
    ada = await ws_open(http, d, await login(http, d, "ada"))
    ben = await ws_open(http, d, await login(http, d, "ben"))
    sam = await ws_open(http, d, await login(http, d, "sam"))
    seen = {"ada": [], "ben": [], "sam": []}
    for name, ws in (("ada", ada), ("ben", ben), ("sam", sam)):
        (hello,) = await read_until(ws, lambda m: m["type"] == "hello", 5, [])
        assert hello["user"]["name"] == name and hello["resumed"] is False
    assert hello["scope"] == {"everything": True, "agent_id": None}
    placed = await sales_call(demo_ami, 1)
    cid = placed.channel_id
    await read_until(ada, lambda m: m["type"] == "call.ended" and m["call_id"] == cid, 30, seen["ada"])
    offered = next(m for m in seen["ada"] if m["type"] == "call.offered")
    assert offered["call_id"] == cid and offered["data"]["agent"] == "a1"
    assert offered["call"]["caller_num"] == placed.caller_num and offered["call"]["caller_name"] == "Caller 1"
    assert offered["call"]["queue"] == "sales"
    assert "call.connected" in [m["type"] for m in seen["ada"] if m.get("call_id") == cid]
    seqs = [m["seq"] for m in seen["ada"] if m["type"] not in ("hello",)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))        # gapless
    assert {m["agent_id"] for m in seen["ada"] if m["type"] == "agent.state"} <= {"a1"}
    # The supervisor saw the call from its start; Ben saw none of it.
    await read_until(sam, lambda m: m.get("call_id") == cid and m["type"] == "call.ended", 10, seen["sam"])
    assert "call.started" in [m["type"] for m in seen["sam"] if m.get("call_id") == cid]
    await ben.send_json({"type": "ping"})
    await read_until(ben, lambda m: m["type"] == "pong", 5, seen["ben"])
    assert not [m for m in seen["ben"] if m.get("call_id") == cid]
    assert {m["agent_id"] for m in seen["ben"] if m["type"] == "agent.state"} <= {"a2"}
    for ws in (ada, ben, sam):
        await ws.close()


async def test_reconnect_with_last_seq_receives_the_events_missed(acd_daemon, http, demo_ami):
    d = acd_daemon
    token = await login(http, d, "ada")
    ws = await ws_open(http, d, token)
    got = await read_until(ws, lambda m: m["type"] == "hello", 5, [])
    await ws.send_json({"type": "ping"})
    got = await read_until(ws, lambda m: m["type"] == "pong", 5, got)
    stream, last = got[0]["stream"], got[-1]["seq"]
    await ws.close()
    placed = await sales_call(demo_ami, 2)
    await eventually(lambda: placed.channel_id in d.core.model.calls, timeout=10)
    await eventually(lambda: placed.channel_id not in d.core.model.calls, timeout=30, what="the call ended")
    ws = await ws_open(http, d, token, stream=stream, last_seq=last)
    after = await read_until(ws, lambda m: m.get("call_id") == placed.channel_id and m["type"] == "call.ended",
                             10, [])
    assert after[0]["type"] == "hello" and after[0]["resumed"] is True and after[0]["stream"] == stream
    events = after[1:]
    assert [m["seq"] for m in events] == list(range(last + 1, last + 1 + len(events)))
    kinds = [m["type"] for m in events if m.get("call_id") == placed.channel_id]
    assert kinds.index("call.offered") < kinds.index("call.connected") < kinds.index("call.ended")
    # An unknown stream is told to resync.
    await ws.close()
    ws = await ws_open(http, d, token, stream="feedfacefeedface", last_seq=3)
    hello, resync = await read_until(ws, lambda m: m["type"] == "resync", 5, [])
    assert hello["resumed"] is False and resync["reason"]
    await ws.close()


async def test_websocket_refuses_a_bad_token(acd_daemon, http):
    ws = await ws_open(http, acd_daemon, "cts_" + "x" * 43)
    msg = await ws.receive(timeout=5)
    assert json.loads(msg.data)["error_id"] == "unauthenticated"
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 4401
