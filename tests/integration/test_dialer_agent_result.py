"""The agent's result of a campaign call the runner connected, in the sandbox
(docs/dialer.md, "The agent's result"): a progressive campaign calls two simulated
customers who answer; each call is connected to an agent, whose desktop gets the lead
card on the hub; one agent posts the result over the API (only she may, and once): the
lead is done with her disposition and survey answers; the other lead, with no result,
is closed by the runner as answered_no_result once the setting has passed since its call
ended, not before."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp
import asyncpg
import pytest

from api.ws import WS
from dialer import store
from dialer.lead_import import parse_leads
from dialer.windows import WindowChecker
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import add_user, bearer, login, url
from tests.integration.test_dialer_runner import ALWAYS, CONFIG

FIRST, SECOND = "+442079460101", "+442079460103"      # [cti-demo-customer]: people who answer
USERS = {"s1": "sam", "s2": "sue", "s3": "sid"}
SURVEY = [{"id": "happy", "text": "Are you happy with the service?", "type": "yes_no", "options": []}]


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def _fetch(dsn: str, sql: str, *args) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _connected_and_hung_up(dsn: str, cid: int) -> list[asyncpg.Record] | None:
    rows = await _fetch(dsn, "SELECT a.*, l.phone FROM dialer_attempts a JOIN dialer_leads l USING (lead_id)"
                             " WHERE a.campaign_id = $1 ORDER BY a.attempt_id", cid)
    done = [r for r in rows if r["outcome"] == "answered" and r["hung_up_at"] is not None]
    return rows if len(rows) == 2 and len(done) == 2 else None


async def test_an_agent_posts_the_result_of_a_progressive_call_and_a_forgotten_one_is_closed(
        asterisk, database, pool, tmp_path, demo_ami, http):
    hangup_all()
    await demo_ami.send("Setvar", {"Variable": "DEMO_CUSTOMER_TALK", "Value": "4"}, shape="single")
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=CONFIG, acd_announce_every=0,
                                           dialer_enabled=True, dialer_tick_s=0.5,
                                           dialer_dial="Local/{number}@cti-demo-customer/n"))
    for agent, user in USERS.items():
        await add_user(database, user, "agent", agent)
    cid = await store.create_campaign(pool, "results", mode="progressive", queue="survey",
                                      caller_id="+442079460000", ring_s=15, script="Good morning, this is Example.",
                                      survey=SURVEY)
    valid, rejected = parse_leads(f"phone\n{FIRST}\n{SECOND}\n")
    assert not rejected and (await store.import_leads(pool, cid, valid)).created == 2

    from api.dialer_routes import RUNNER
    runner = d.runner.app[RUNNER]
    runner.windows = WindowChecker(ALWAYS)
    pushed: list[tuple[dict, frozenset[str]]] = []
    d.runner.app[WS].push_listeners.append(lambda body, agents: pushed.append((body, agents)))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="the ACD is up")
        assert await store.set_campaign_state(pool, cid, "running")
        runner.wake()
        rows = await eventually(lambda: _connected_and_hung_up(database, cid), timeout=60,
                                what="both calls connected to agents and ended")
        assert await store.set_campaign_state(pool, cid, "paused")
        first, second = sorted(rows, key=lambda r: r["phone"])
        assert first["phone"] == FIRST and first["agent_id"] in USERS and second["agent_id"] in USERS
        leads = {r["phone"]: r for r in await _fetch(database, "SELECT * FROM dialer_leads WHERE campaign_id = $1",
                                                        cid)}
        assert leads[FIRST]["state"] == leads[SECOND]["state"] == "answered"

        # Each agent's desktop got the lead card of the call connected to them.
        cards = [b for b, _ in pushed if b["type"] == "campaign.lead"]
        by_attempt = {b["attempt_id"]: (b, agents) for b, agents in pushed if b["type"] == "campaign.lead"}
        assert len(cards) == 2, cards
        body, agents = by_attempt[first["attempt_id"]]
        assert agents == frozenset({first["agent_id"]}) and body["agent_id"] == first["agent_id"]
        assert body["call_id"] == first["call_id"]
        assert body["card"]["phone"] == FIRST and body["card"]["survey"] == SURVEY
        assert body["card"]["script"] == "Good morning, this is Example."

        mine = bearer(await login(http, d, USERS[first["agent_id"]]))
        other = next(u for a, u in USERS.items() if a != first["agent_id"])
        theirs = bearer(await login(http, d, other))
        path = url(d, f"/api/preview/attempts/{first['attempt_id']}/result")
        result = {"outcome": "answered", "disposition": "sale", "answers": {"happy": "yes"}}
        async with http.post(path, json=result, headers=theirs) as r:
            assert r.status == 403 and (await r.json())["error_id"] == "not_your_call", await r.text()
        async with http.post(path, json={**result, "outcome": "busy"}, headers=mine) as r:
            assert r.status == 400, await r.text()               # it was answered: nothing else is true
        async with http.post(path, json=result, headers=mine) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"lead_id": leads[FIRST]["lead_id"], "state": "done", "retry_at": None}
        async with http.post(path, json={**result, "disposition": "no_sale"}, headers=mine) as r:
            assert r.status == 409 and (await r.json())["error_id"] == "result_recorded"

        (a,) = await _fetch(database, "SELECT * FROM dialer_attempts WHERE attempt_id = $1", first["attempt_id"])
        assert (a["outcome"], a["disposition"], a["call_id"]) == ("answered", "sale", first["call_id"])
        assert a["answers"] == '{"happy": "yes"}' and a["result_at"] is not None
        (lead,) = await _fetch(database, "SELECT * FROM dialer_leads WHERE lead_id = $1", leads[FIRST]["lead_id"])
        assert (lead["state"], lead["last_outcome"]) == ("done", "sale")

        # The second agent recorded nothing: closed once the setting has passed since the end.
        timeout = timedelta(seconds=d.settings.dialer_result_timeout_s)
        assert timeout == timedelta(minutes=30)
        ended = second["hung_up_at"]
        assert await runner.sweep(ended + timeout - timedelta(seconds=5)) == 0
        assert await runner.sweep(ended + timeout + timedelta(seconds=1)) == 1
        (lead,) = await _fetch(database, "SELECT * FROM dialer_leads WHERE lead_id = $1", leads[SECOND]["lead_id"])
        assert (lead["state"], lead["last_outcome"]) == ("done", "answered_no_result")
        (a,) = await _fetch(database, "SELECT * FROM dialer_attempts WHERE attempt_id = $1", second["attempt_id"])
        assert a["disposition"] == "answered_no_result" and a["result_at"] is not None
        # Its agent comes too late: refused, and the closed lead stays as it is.
        late = bearer(await login(http, d, USERS[second["agent_id"]]))
        async with http.post(url(d, f"/api/preview/attempts/{second['attempt_id']}/result"), json=result,
                             headers=late) as r:
            assert r.status == 409, await r.text()
        assert await runner.sweep(datetime.now(timezone.utc) + timedelta(days=1)) == 0
    finally:
        await d.stop()
        hangup_all()
