"""The authorization matrix: every route the registry serves, asked without a
credential, with an expired session, and as each role. A route refuses those it
does not admit (401 without a valid credential, 403 for a role it does not
name) and lets the roles it names through to its own checks."""
from __future__ import annotations

import json
import re

import aiohttp
import asyncpg
import pytest

from api.auth import ROLES
from api.registry import API
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url

ROLE_REFUSAL = "this needs the role"
# Covered by tests/integration/test_api.py: logging in and out changes the credentials used here.
SKIP = {("POST", "/api/login"), ("POST", "/api/logout")}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


def concrete(path: str, agent_id: str) -> str:
    """Path parameters filled in: the asking agent's own id, else ids that name nothing."""
    path = path.replace("{agent_id}", agent_id)
    path = re.sub(r"\{[^}:]+:\[0-9\]\+\}", "999999", path)     # numeric ids ({id:[0-9]+})
    return re.sub(r"\{[^}]+\}", "matrix-none", path)


async def ask(http, d, method: str, path: str, headers: dict) -> tuple[int, str]:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    async with http.request(method, url(d, path), json=body, headers=headers) as r:
        return r.status, await r.text()


async def expired_session(http, d, database: str, username: str) -> dict[str, str]:
    """The headers of a session of a new admin ``username`` that has just expired."""
    await add_user(database, username, "admin")
    headers = bearer(await login(http, d, username))
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = "
                           "(SELECT user_id FROM users WHERE username = $1)", username)
    finally:
        await conn.close()
    return headers


async def test_every_route_admits_exactly_the_roles_it_names(asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    try:
        for role in ROLES:
            await add_user(database, f"m-{role}", role, "a1" if role == "agent" else None)
        tokens = {role: bearer(await login(http, d, f"m-{role}")) for role in ROLES}
        expired = await expired_session(http, d, database, "m-expired")
        # Served by the registry's wrapper: JSON answers, and the CSV exports (documented as text/csv).
        routes = [r for r in d.runner.app[API].routes
                  if r.content_type in (None, "text/csv") and (r.method, r.path) not in SKIP]
        assert len(routes) > 20, [r.path for r in routes]
        checked = 0
        for route in routes:
            where = f"{route.method} {route.path}"
            if route.roles is None:
                continue
            for headers, what in (({}, "no credential"), (expired, "an expired session")):
                status, _ = await ask(http, d, route.method, concrete(route.path, "a1"), headers)
                assert status == 401, f"{where} with {what}: {status}"
            for role in ROLES:
                status, text = await ask(http, d, route.method, concrete(route.path, "a1"), tokens[role])
                if role in route.roles:
                    assert status != 401 and not (status == 403 and ROLE_REFUSAL in text), \
                        f"{where} refused {role}, which it names: {status} {text[:200]}"
                    assert status < 500, f"{where} as {role}: {status} {text[:200]}"
                else:
                    assert status == 403 and ROLE_REFUSAL in text, f"{where} let {role} through: {status}"
                checked += 1
        assert checked >= 4 * 20
    finally:
        await d.stop()


# -- acting on one agent -------------------------------------------------------------------------

# Every route whose path names an agent and that changes something (not GET) must declare an
# agent scope, and be listed here with a body it accepts: then the test below asks it as every
# kind of stranger (refused) and as those it admits (each answer audited), so no such route can
# skip either.
AGENT_ROUTE_BODIES: dict[tuple[str, str], dict | None] = {
    ("POST", "/api/acd/agents/{agent_id}/state"): {"action": "not_ready", "reason": "matrix"},
    ("PUT", "/api/phone/agents/{agent_id}/seat"): {"device_id": None},
    ("PUT", "/api/phone/agents/{agent_id}/options"): {"auto_answer": True, "zip_tone": False},
    ("POST", "/api/phone/agents/{agent_id}/webrtc"): None,
    ("POST", "/api/supervisor/agents/{agent_id}/spy"): {"mode": "listen"},
    ("POST", "/api/supervisor/agents/{agent_id}/state"): {"action": "not_ready", "reason": "matrix"},
}


async def audit_rows(dsn: str, actor: str, agent_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM supervisor_actions WHERE actor_name = $1 AND agent_id = $2",
                                   actor, agent_id)
    finally:
        await conn.close()


async def test_every_route_acting_on_another_agent_admits_only_their_team_supervisors_and_admins(
        asterisk, database, tmp_path, http):
    """Ben (a2, team red) is acted on by: Ada (a1, red, an agent), QA (red), a supervisor of
    team blue (all refused), a supervisor of team red and an admin (each action audited: who,
    whom, what, from, to, when); Ben himself (not audited)."""
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    try:
        await add_user(database, "s-ada", "agent", "a1", team="red")
        await add_user(database, "s-ben", "agent", "a2", team="red")
        await add_user(database, "s-qa", "qa", team="red")
        await add_user(database, "s-blue", "supervisor", team="blue")
        await add_user(database, "s-red", "supervisor", team="red")
        await add_user(database, "s-root", "admin")
        tokens = {u: bearer(await login(http, d, u)) for u in ("s-ada", "s-ben", "s-qa", "s-blue", "s-red", "s-root")}
        routes = [r for r in d.runner.app[API].routes if "{agent_id}" in r.path and r.method != "GET"]
        assert len(routes) >= len(AGENT_ROUTE_BODIES)
        for route in routes:
            where = (route.method, route.path)
            assert route.agent_scope is not None, f"{where} acts on an agent without an agent scope"
            assert where in AGENT_ROUTE_BODIES, f"{where}: add a body it accepts to AGENT_ROUTE_BODIES"
        for route in routes:
            where = f"{route.method} {route.path}"
            path = concrete(route.path, "a2")
            body = AGENT_ROUTE_BODIES[(route.method, route.path)]

            async def ask_as(user: str) -> tuple[int, str]:
                async with http.request(route.method, url(d, path), json=body, headers=tokens[user]) as r:
                    return r.status, await r.text()

            for stranger in ("s-ada", "s-qa", "s-blue"):
                status, text = await ask_as(stranger)
                assert status == 403, f"{where} let {stranger} act on Ben: {status} {text[:200]}"
            for admitted in ("s-red", "s-root"):
                before = await audit_rows(database, admitted, "a2")
                status, text = await ask_as(admitted)
                if route.agent_scope == "self":
                    assert status == 403 and "not_your_agent" in text, f"{where} as {admitted}: {status}"
                    continue
                assert status not in (401, 403) and status < 500, f"{where} as {admitted}: {status} {text[:200]}"
                assert await audit_rows(database, admitted, "a2") == before + 1, f"{where} as {admitted}: not audited"
        # Ben's own changes are his to make, and not someone else's action to audit.
        async with http.put(url(d, "/api/phone/agents/a2/options"), json={"auto_answer": False, "zip_tone": True},
                            headers=tokens["s-ben"]) as r:
            assert r.status == 200
        assert await audit_rows(database, "s-ben", "a2") == 0
        conn = await asyncpg.connect(database)
        try:
            row = await conn.fetchrow("SELECT * FROM supervisor_actions WHERE actor_name = 's-red' "
                                      "AND action = 'phone_options'")
        finally:
            await conn.close()
        assert row["actor_kind"] == "session" and row["agent_id"] == "a2" and row["at"] is not None
        assert json.loads(row["details"]) == {"from": {"auto_answer": False, "zip_tone": False},
                                              "to": {"auto_answer": True, "zip_tone": False}}
    finally:
        await d.stop()
