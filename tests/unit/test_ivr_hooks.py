"""The dialplan hooks' edges, without a database: auth and input checks come first."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from api.dialplan_hooks import HOOKS, HookState, host_name, lookup, route, setup_hooks
from crm.phones import normalise_e164
from cti.config import load_settings
from cti.daemon import Core
from cti.errors import ConfigError


SECRET = "s3cret-for-the-hooks"
OK = {"X-CTI-Hook-Secret": SECRET}


async def client(tmp_path: Path, **settings: object) -> TestClient:
    settings.setdefault("hook_secret", SECRET)
    app = web.Application()
    app[HOOKS] = HookState(Core(load_settings(state_dir=tmp_path, **settings)))
    app.router.add_get("/hooks/lookup", lookup)
    app.router.add_get("/hooks/route", route)
    c = TestClient(TestServer(app, host="127.0.0.1"), headers=OK)
    await c.start_server()
    return c


async def test_no_secret_or_a_wrong_one_is_403(tmp_path: Path):
    c = await client(tmp_path)
    try:
        for headers in ({"X-CTI-Hook-Secret": ""}, {"X-CTI-Hook-Secret": "guess"},
                        {"X-CTI-Hook-Secret": SECRET + "x"}):
            r = await c.get("/hooks/lookup", params={"number": "+49301"}, headers=headers)
            assert r.status == 403 and (await r.text()).startswith("error,forbidden,"), headers
        r = await c.get("/hooks/lookup", params={"number": "+49301"})
        assert r.status == 503 and (await r.text()).startswith("error,db_unavailable,")
    finally:
        await c.close()


async def test_a_loopback_client_without_the_secret_is_refused_too(tmp_path: Path):
    """Loopback is no credential: any local process, and any browser page, is local."""
    c = await client(tmp_path)
    try:
        r = await c.get("/hooks/route", params={"number": "+49301"}, headers={"X-CTI-Hook-Secret": ""})
        assert r.status == 403
    finally:
        await c.close()


async def test_a_host_header_not_naming_this_server_is_refused(tmp_path: Path):
    """DNS rebinding: the page's own name arrives in Host, with the right secret or not."""
    c = await client(tmp_path, hook_hosts=["pbx-hooks.example"])
    port = c.server.port
    try:
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example",
                     "localhost@evil", ""):
            r = await c.get("/hooks/lookup", params={"number": "+49301"}, headers={"Host": host})
            assert r.status == 403 and (await r.text()).startswith("error,wrong_host,"), host
        for host in (f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", f"[::1]:{port}",
                     "pbx-hooks.example:8765"):
            r = await c.get("/hooks/lookup", params={"number": "+49301"}, headers={"Host": host})
            assert r.status == 503, host       # past both checks: no database here
    finally:
        await c.close()


def test_host_names_are_read_without_port_or_brackets():
    assert host_name("LocalHost:8765") == "localhost"
    assert host_name("[::1]:8765") == "::1"
    assert host_name("pbx.example.") == "pbx.example"
    assert host_name("a b") is None and host_name("x:y") is None and host_name(None) is None


def test_the_hooks_do_not_start_without_a_secret(tmp_path: Path):
    app = web.Application()
    with pytest.raises(ConfigError, match="hook_secret"):
        setup_hooks(app, Core(load_settings(state_dir=tmp_path)))
    app = web.Application()
    setup_hooks(app, Core(load_settings(state_dir=tmp_path, hooks=False)))   # off: nothing served, nothing required
    assert not any(r.resource and r.resource.canonical.startswith("/hooks") for r in app.router.routes())


async def test_bad_numbers_and_queues_are_400_with_an_error_id(tmp_path: Path):
    c = await client(tmp_path)
    try:
        for params, error_id in (({}, "missing_number"), ({"number": "abc"}, "invalid_number"),
                                 ({"number": "+49" + "1" * 40}, "invalid_number"),
                                 ({"number": "+4930", "queue": "a,b"}, "invalid_queue"),
                                 ({"number": "+4930", "queue": "support\n"}, "invalid_queue")):
            r = await c.get("/hooks/route", params=params)
            assert r.status == 400 and (await r.text()).startswith(f"error,{error_id},")
        r = await c.get("/hooks/lookup", params={"number": "x", "format": "json"})
        assert (await r.json())["error_id"] == "invalid_number"
    finally:
        await c.close()


def test_numbers_are_normalised_to_e164():
    assert normalise_e164("+49 (30) 123-456") == "+4930123456"
    assert normalise_e164("0049301234") == "+49301234"
    assert normalise_e164("030 1234", country_code="49") == "+49301234"
    assert normalise_e164("030 1234") is None          # national, and no country code given
    assert normalise_e164("+0123") is None and normalise_e164("12;DROP") is None and normalise_e164("") is None


async def test_an_account_number_is_checked_before_any_lookup(tmp_path: Path):
    c = await client(tmp_path)
    try:
        for bad in ("12 34", "a,b", "x" * 65, "-12", "1\r\n2", "123456\n"):
            r = await c.get("/hooks/lookup", params={"account": bad})
            assert r.status == 400 and (await r.text()).startswith("error,invalid_account,"), bad
        r = await c.get("/hooks/lookup", params={"account": "123456"})     # valid: it reaches the database
        assert r.status == 503 and (await r.text()).startswith("error,db_unavailable,")
        r = await c.get("/hooks/route", params={"account": "A-1.2_3", "format": "json"})
        assert r.status == 503 and (await r.json())["error_id"] == "db_unavailable"
    finally:
        await c.close()


@example(".")
@example("..:80")
@given(st.text(max_size=80))
def test_any_host_header_is_read_without_raising_and_never_smuggles_a_name(header: str):
    """Fuzzed Host headers: a name comes out only from a plain name[:port] or [v6][:port]."""
    name = host_name(header)
    assert name is None or (name and all(c not in name for c in "@/ \t\r\n[]"))
    if name in ("localhost", "127.0.0.1", "::1"):
        assert header.strip().lower().lstrip("[").startswith(name)


@given(st.sampled_from(["localhost", "127.0.0.1", "[::1]"]), st.integers(1, 65535))
def test_the_local_names_with_any_port_are_read(name: str, port: int):
    assert host_name(f"{name}:{port}") == name.strip("[]")


async def test_a_secret_header_that_is_not_utf8_is_a_403_not_a_crash(tmp_path: Path):
    import asyncio

    c = await client(tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", c.server.port)
        writer.write(b"GET /hooks/lookup?number=%2B49301 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"X-CTI-Hook-Secret: \xff\xfe\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.split(b" ")[1] == b"403" and b"error,forbidden," in answer
    finally:
        await c.close()
