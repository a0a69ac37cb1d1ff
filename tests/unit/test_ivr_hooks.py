"""The dialplan hooks' edges, without a database: auth and input checks come first."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.hooks import POOL, lookup, route
from cti.config import load_settings
from cti.customers import normalise_e164
from cti.daemon import CORE, Core


async def client(tmp_path: Path, **settings: object) -> TestClient:
    app = web.Application()
    app[CORE] = Core(load_settings(state_dir=tmp_path, **settings))
    app[POOL] = {"pool": None}
    app.router.add_get("/hooks/lookup", lookup)
    app.router.add_get("/hooks/route", route)
    c = TestClient(TestServer(app, host="127.0.0.1"))
    await c.start_server()
    return c


async def test_a_secret_is_required_when_configured(tmp_path: Path):
    c = await client(tmp_path, hook_secret="s3cret")
    try:
        r = await c.get("/hooks/lookup", params={"number": "+49301"})
        assert r.status == 401 and (await r.text()).startswith("error,unauthorized,")
        r = await c.get("/hooks/lookup", params={"number": "+49301"}, headers={"X-CTI-Hook-Secret": "s3cret"})
        assert r.status == 503 and (await r.text()).startswith("error,db_unavailable,")
    finally:
        await c.close()


async def test_bad_numbers_and_queues_are_400_with_an_error_id(tmp_path: Path):
    c = await client(tmp_path)
    try:
        for params, error_id in (({}, "missing_number"), ({"number": "abc"}, "invalid_number"),
                                 ({"number": "+49" + "1" * 40}, "invalid_number"),
                                 ({"number": "+4930", "queue": "a,b"}, "invalid_queue")):
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
        for bad in ("12 34", "a,b", "x" * 65, "-12", "1\r\n2"):
            r = await c.get("/hooks/lookup", params={"account": bad})
            assert r.status == 400 and (await r.text()).startswith("error,invalid_account,"), bad
        r = await c.get("/hooks/lookup", params={"account": "123456"})     # valid: it reaches the database
        assert r.status == 503 and (await r.text()).startswith("error,db_unavailable,")
        r = await c.get("/hooks/route", params={"account": "A-1.2_3", "format": "json"})
        assert r.status == 503 and (await r.json())["error_id"] == "db_unavailable"
    finally:
        await c.close()
