"""The authorization matrix: every route the registry serves, asked without a
credential, with an expired session, and as each role. A route refuses those it
does not admit (401 without a valid credential, 403 for a role it does not
name) and lets the roles it names through to its own checks."""
from __future__ import annotations

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


async def test_every_route_admits_exactly_the_roles_it_names(asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    try:
        for role in ROLES:
            await add_user(database, f"m-{role}", role, "a1" if role == "agent" else None)
        tokens = {role: bearer(await login(http, d, f"m-{role}")) for role in ROLES}
        await add_user(database, "m-expired", "admin")
        expired = bearer(await login(http, d, "m-expired"))
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = "
                               "(SELECT user_id FROM users WHERE username = 'm-expired')")
        finally:
            await conn.close()
        routes = [r for r in d.runner.app[API].routes
                  if r.content_type is None and (r.method, r.path) not in SKIP]
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
