"""Campaigns and the do-not-call list over the API, in the running daemon: a supervisor
creates a campaign and imports a list (a line-numbered report), an agent records an
opt-out, and who may do what."""
from __future__ import annotations

import aiohttp
import pytest

from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import add_user, bearer, login, url


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api_daemon(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path))
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "sam", "supervisor")
    try:
        yield d
    finally:
        await d.stop()

CSV = "phone,name\n+13175550100,Ann\n+13175550100,Ann twice\nnot a number,Bob\n+61212345678,Cy\n"


async def test_a_supervisor_creates_a_campaign_and_imports_a_list_with_its_report(api_daemon, http):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    body = {"name": "renewals", "mode": "predictive", "caller_id": "+13175550000", "abandon_cap": 0.02}
    async with http.post(url(d, "/api/campaigns"), json=body, headers=ada) as r:
        assert r.status == 403                                       # agents do not run campaigns
    async with http.post(url(d, "/api/campaigns"), json=body, headers=sam) as r:
        assert r.status == 201, await r.text()
        cid = (await r.json())["campaign_id"]
    async with http.post(url(d, "/api/campaigns"), json=body, headers=sam) as r:
        assert r.status == 409 and (await r.json())["error_id"] == "name_taken"
    async with http.post(url(d, "/api/campaigns"), json={**body, "name": "x", "abandon_cap": 0.05}, headers=sam) as r:
        assert r.status == 422                                       # over the law's 3%
    async with http.post(url(d, f"/api/campaigns/{cid}/leads"), json={"csv": CSV}, headers=sam) as r:
        assert r.status == 200, await r.text()
        report = await r.json()
    assert report == {"created": 2, "rejected": [
        {"line": 3, "reason": "phone: +13175550100 already on line 2"},
        {"line": 4, "reason": "phone: 'not a number' is not a phone number"}]}
    async with http.post(url(d, f"/api/campaigns/{cid}/leads"), json={"csv": "name\nAnn\n"}, headers=sam) as r:
        assert r.status == 400 and (await r.json())["error_id"] == "bad_lead_file"
    async with http.post(url(d, "/api/campaigns/424242/leads"), json={"csv": CSV}, headers=sam) as r:
        assert r.status == 404
    async with http.get(url(d, "/api/campaigns"), headers=sam) as r:
        listed = (await r.json())["campaigns"]
    assert [(c["name"], c["mode"], c["abandon_cap"], c["leads"]) for c in listed] == \
        [("renewals", "predictive", 0.02, {"new": 2})]


async def test_an_agent_records_an_opt_out_and_only_a_supervisor_takes_it_back(api_daemon, http):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    async with http.put(url(d, "/api/dnc/+13175550100"), json={"reason": "asked on the call"}, headers=ada) as r:
        assert r.status == 200 and await r.json() == {"phone": "+13175550100", "listed": True}
    async with http.get(url(d, "/api/dnc/0013175550100"), headers=ada) as r:
        assert (await r.json())["listed"] is True                    # the same number, written another way
    async with http.delete(url(d, "/api/dnc/+13175550100"), headers=ada) as r:
        assert r.status == 403
    async with http.delete(url(d, "/api/dnc/+13175550100"), headers=sam) as r:
        assert r.status == 200 and (await r.json())["listed"] is False
    async with http.delete(url(d, "/api/dnc/+13175550100"), headers=sam) as r:
        assert r.status == 404
    async with http.put(url(d, "/api/dnc/call-me"), json={}, headers=ada) as r:
        assert r.status == 400 and (await r.json())["error_id"] == "invalid_phone"


async def test_a_supervisor_starts_pauses_and_emergency_stops_campaigns(api_daemon, http):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    ids = []
    for name in ("spring", "autumn"):
        body = {"name": name, "mode": "progressive", "queue": "sales", "machine_action": "voicemail",
                "ring_s": 20, "abandon_prompt": "/var/lib/cti/prompts/sorry", "voicemail_prompt": "vm-goodbye"}
        async with http.post(url(d, "/api/campaigns"), json=body, headers=sam) as r:
            assert r.status == 201, await r.text()
            ids.append((await r.json())["campaign_id"])
    async with http.post(url(d, "/api/campaigns"), json={**body, "name": "short", "ring_s": 10}, headers=sam) as r:
        assert r.status == 422                                       # under the law's 15 s of ringing
    async with http.post(url(d, "/api/campaigns"), json={**body, "name": "up", "abandon_prompt": "../etc/x"},
                         headers=sam) as r:
        assert r.status == 422
    for cid in ids:
        async with http.post(url(d, f"/api/campaigns/{cid}/state"), json={"state": "running"}, headers=sam) as r:
            assert r.status == 200 and (await r.json()) == {"campaign_id": cid, "state": "running"}
    async with http.post(url(d, f"/api/campaigns/{ids[0]}/state"), json={"state": "running"}, headers=ada) as r:
        assert r.status == 403
    async with http.post(url(d, "/api/campaigns/424242/state"), json={"state": "paused"}, headers=sam) as r:
        assert r.status == 404 and (await r.json())["error_id"] == "no_campaign"
    async with http.post(url(d, f"/api/campaigns/{ids[0]}/state"), json={"state": "gone"}, headers=sam) as r:
        assert r.status == 422
    async with http.post(url(d, "/api/campaigns/emergency-stop"), headers=sam) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["paused"] == ids
    async with http.get(url(d, "/api/campaigns"), headers=sam) as r:
        assert {c["state"] for c in (await r.json())["campaigns"]} == {"paused"}
    async with http.get(url(d, f"/api/campaigns/{ids[0]}/attempts"), headers=sam) as r:
        assert r.status == 200 and (await r.json()) == {"attempts": []}
