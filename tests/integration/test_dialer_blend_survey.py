"""A campaign's reserve for inbound, its survey's branching and the results written back to
the customer record, over the API against the running daemon and PostgreSQL; and the runner
in the sandbox keeping the blended agent for inbound while the reserve says so
(docs/dialer.md, "Blending", "Surveys and branching", "Results on the customer record")."""
from __future__ import annotations

import json
from datetime import datetime, time, timezone
from pathlib import Path

import asyncpg

from cti.migrate import migrate
from dialer import campaign_store, store
from dialer.lead_import import parse_leads
from dialer.windows import CallingWindow, WindowChecker
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import bearer, login, url
from tests.integration.test_cli import cti
# The campaign API tests' fixtures (a daemon with an agent and a supervisor, a client session).
from tests.integration.test_dialer_campaigns_api import ALL_DAY, _error, api_daemon, http  # noqa: F401

CONFIG = Path(__file__).with_name("dialer-acd.toml")
SURVEY = [
    {"id": "happy", "text": "Happy with your router?", "type": "yes_no", "branches": {"no": "why"}},
    {"id": "plan", "text": "Which plan?", "type": "choice", "options": ["fibre", "copper"], "next": "end"},
    {"id": "why", "text": "What is wrong?"},
]
KNOWN, BY_PHONE, STRANGER = "+442079460121", "+442079460122", "+442079460123"


async def test_a_campaigns_reserve_is_checked_and_stored(api_daemon, http, pool):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    async with http.post(url(d, "/api/campaigns"), json={"name": "bad", "reserve": {"agents": -1}}, headers=sam) as r:
        status, error_id, fields = await _error(r)
    assert (status, error_id) == (422, "invalid_body") and any(f.startswith("body.reserve.agents") for f in fields)
    async with http.post(url(d, "/api/campaigns"), json={"name": "blended", "reserve": {"agents": 2}},
                         headers=sam) as r:
        assert r.status == 201, await r.text()
        cid = (await r.json())["campaign_id"]
    reserve = url(d, f"/api/campaigns/{cid}/reserve")
    async with http.get(reserve, headers=sam) as r:
        assert await r.json() == {"campaign_id": cid, "own_reserve": True,
                                  "reserve": {"agents": 2, "service_level": False, "arrivals_min": 15}}
    for body, field in (({"reserve": {"agents": 501}}, "body.reserve.agents"),
                        ({"reserve": {"arrivals_min": 0}}, "body.reserve.arrivals_min"),
                        ({"reserve": {"service_level": "yes"}}, "body.reserve.service_level"),
                        ({"reserve": {"agent": 1}}, "body.reserve.agent"),
                        ({}, "body.reserve")):
        async with http.put(reserve, json=body, headers=sam) as r:
            status, error_id, fields = await _error(r)
            assert (status, error_id) == (422, "invalid_body") and any(f.startswith(field) for f in fields), \
                (body, fields)
    async with http.get(reserve, headers=sam) as r:
        assert (await r.json())["reserve"]["agents"] == 2                # nothing written by a refusal
    async with http.put(reserve, json={"reserve": {"service_level": True, "arrivals_min": 30}}, headers=sam) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["reserve"] == {"agents": 0, "service_level": True, "arrivals_min": 30}
    assert (await campaign_store.get_reserve(pool, cid))[1] == {"agents": 0, "service_level": True,
                                                                    "arrivals_min": 30}
    async with http.put(reserve, json={"reserve": None}, headers=sam) as r:
        assert (await r.json())["own_reserve"] is False
    async with http.get(reserve, headers=ada) as r:
        assert r.status == 403
    async with http.put(url(d, "/api/campaigns/424242/reserve"), json={"reserve": None}, headers=sam) as r:
        assert await _error(r) == (404, "no_campaign", [])


async def test_a_survey_is_checked_when_saved(api_daemon, http):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    for survey, field in (
            ([{"id": "a", "text": "A?", "next": "b"}, {"id": "b", "text": "B?", "next": "a"}], "body.survey.1.next"),
            ([{"id": "a", "text": "A?", "type": "yes_no", "branches": {"no": "zz"}}], "body.survey.0.branches.no"),
            ([{"id": "a", "text": "A?", "next": "end"}, {"id": "b", "text": "B?"}], "body.survey.1"),
            ([{"id": "a", "text": "A?", "branches": {"x": "end"}}], "body.survey.0.branches")):
        async with http.post(url(d, "/api/campaigns"), json={"name": "bad survey", "survey": survey},
                             headers=sam) as r:
            assert await _error(r) == (422, "invalid_body", [field]), survey
    async with http.get(url(d, "/api/campaigns"), headers=sam) as r:
        assert all(c["name"] != "bad survey" for c in (await r.json())["campaigns"])     # nothing written
    async with http.post(url(d, "/api/campaigns"), json={"name": "branching", "survey": SURVEY}, headers=sam) as r:
        assert r.status == 201, await r.text()
        cid = (await r.json())["campaign_id"]
    survey = url(d, f"/api/campaigns/{cid}/survey")
    async with http.get(survey, headers=sam) as r:
        stored = (await r.json())["survey"]
    assert [q["id"] for q in stored] == ["happy", "plan", "why"] and stored[0]["branches"] == {"no": "why"}
    # Replaced later, checked the same way; a refusal writes nothing.
    cycle = [{"id": "a", "text": "A?", "type": "yes_no", "branches": {"no": "b"}},
             {"id": "b", "text": "B?", "next": "a"}]
    async with http.put(survey, json={"survey": cycle}, headers=sam) as r:
        assert await _error(r) == (422, "invalid_body", ["body.survey.1.next"])
        assert "a cycle: a -> b -> a" in (await r.json())["message"]
    async with http.get(survey, headers=sam) as r:
        assert (await r.json())["survey"] == stored
    flat = [{"id": "only", "text": "Anything else?"}]
    async with http.put(survey, json={"survey": flat}, headers=sam) as r:
        assert r.status == 200 and (await r.json())["survey"] == [{**flat[0], "type": "text", "options": []}]
    async with http.put(url(d, "/api/campaigns/424242/survey"), json={"survey": flat}, headers=sam) as r:
        assert await _error(r) == (404, "no_campaign", [])
    ada = bearer(await login(http, d, "ada"))
    async with http.get(survey, headers=ada) as r:
        assert r.status == 403


async def _customers(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO customers (customer_id, name) VALUES ('c-known', 'Mary Major'),"
                           " ('c-phone', 'John Doe')")
        await conn.execute("INSERT INTO customer_phones (phone, customer_id) VALUES ($1, 'c-phone')", BY_PHONE)
    finally:
        await conn.close()


async def _work(http, d, ada, cid: int, result: dict) -> tuple[str, int]:
    """The agent takes the next lead, dials it and records ``result``: (its phone, the attempt)."""
    async with http.post(url(d, "/api/preview/next"), json={"campaign_id": cid}, headers=ada) as r:
        assert r.status == 200, await r.text()
        card = await r.json()
    async with http.post(url(d, f"/api/preview/leads/{card['lead_id']}/dial"), headers=ada) as r:
        attempt = (await r.json())["attempt_id"]
    async with http.post(url(d, f"/api/preview/attempts/{attempt}/result"), json=result, headers=ada) as r:
        assert r.status == 200, await r.text()
    return card["phone"], attempt


async def test_results_land_on_the_customer_record(api_daemon, http, database):
    d = api_daemon
    await _customers(database)
    sam = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    body = {"name": "Router survey", "mode": "preview", "windows": ALL_DAY, "survey": SURVEY}
    async with http.post(url(d, "/api/campaigns"), json=body, headers=sam) as r:
        cid = (await r.json())["campaign_id"]
    lead_csv = f"phone,name,customer_id\n{KNOWN},Mary,c-known\n{BY_PHONE},John,\n{STRANGER},Nobody,\n"
    async with http.post(url(d, f"/api/campaigns/{cid}/leads"), json={"csv": lead_csv}, headers=sam) as r:
        assert (await r.json())["created"] == 3
    async with http.post(url(d, f"/api/campaigns/{cid}/state"), json={"state": "running"}, headers=sam) as r:
        assert r.status == 200

    # Leads come in import order. Mary (c-known by her lead's customer_id): a new number that is
    # not one is refused, nothing recorded; then her result, with a new number.
    async with http.post(url(d, "/api/preview/next"), json={"campaign_id": cid}, headers=ada) as r:
        first = await r.json()
    assert first["phone"] == KNOWN
    async with http.post(url(d, f"/api/preview/leads/{first['lead_id']}/dial"), headers=ada) as r:
        mary = (await r.json())["attempt_id"]
    async with http.post(url(d, f"/api/preview/attempts/{mary}/result"), headers=ada,
                         json={"outcome": "answered", "new_phone": "call me maybe"}) as r:
        assert await _error(r) == (400, "invalid_phone", [])
    async with http.post(url(d, f"/api/preview/attempts/{mary}/result"), headers=ada,
                         json={"outcome": "answered", "disposition": "sale", "call_id": "dial-77",
                               "new_phone": "+44 20 7946 0999",
                               "answers": {"happy": "no", "why": "drops at night\nFAKE LINE", "plan": "fibre"}}) as r:
        assert r.status == 200, await r.text()
    # John (c-phone, by his number) gives Mary's new number: not his to take.
    phone, john = await _work(http, d, ada, cid, {"outcome": "answered", "disposition": "completed",
                                                  "answers": {"happy": "yes"}, "new_phone": "+442079460999"})
    assert phone == BY_PHONE
    # Nobody's number: a failed dial (a "no answer" reported under 15 s after the dial).
    phone, stranger = await _work(http, d, ada, cid, {"outcome": "no_answer"})
    assert phone == STRANGER

    conn = await asyncpg.connect(database)
    try:
        notes = {r["customer_id"]: r for r in await conn.fetch("SELECT * FROM customer_notes")}
        attempts = {r["attempt_id"]: r for r in await conn.fetch(
            "SELECT * FROM dialer_attempts WHERE campaign_id = $1", cid)}
        links = [tuple(r) for r in await conn.fetch("SELECT customer_id, call_id FROM customer_calls")]
        phones = {r["phone"]: (r["customer_id"], r["label"]) for r in await conn.fetch("SELECT * FROM customer_phones")}
    finally:
        await conn.close()
    assert set(notes) == {"c-known", "c-phone"}, "a lead matching no customer wrote a note"
    assert notes["c-known"]["body"].splitlines() == [
        "Campaign 'Router survey': answered, disposition sale (lead now done).",
        "New number given: +442079460999, added to the record.", "Survey:",
        "- Happy with your router? no", "- What is wrong? drops at night FAKE LINE"]
    assert notes["c-phone"]["body"].splitlines() == [
        "Campaign 'Router survey': answered, disposition completed (lead now done).",
        "New number given: +442079460999, not added: it is another customer's number.", "Survey:",
        "- Happy with your router? yes"]
    for customer, attempt in (("c-known", mary), ("c-phone", john)):
        assert attempts[attempt]["customer_note_id"] == notes[customer]["note_id"]
        assert notes[customer]["author"] == "ada"
    assert phones == {BY_PHONE: ("c-phone", None), "+442079460999": ("c-known", "campaign")}
    assert links == [("c-known", "dial-77")]
    assert attempts[stranger]["customer_note_id"] is None and attempts[stranger]["outcome"] == "failed"

    # The customer page shows it.
    for customer in ("c-known", "c-phone"):
        async with http.get(url(d, f"/api/customers/{customer}"), headers=ada) as r:
            page = await r.json()
        assert [n["body"] for n in page["notes"]] == [notes[customer]["body"]]


async def test_the_runner_keeps_the_blended_agent_for_inbound_while_the_reserve_says_so(
        asterisk, database, pool, tmp_path, demo_ami):
    hangup_all()
    await demo_ami.send("Setvar", {"Variable": "DEMO_CUSTOMER_TALK", "Value": "3"}, shape="single")
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=CONFIG, acd_announce_every=0,
                                           dialer_enabled=True, dialer_tick_s=0.5,
                                           dialer_dial="Local/{number}@cti-demo-customer/n"))
    from api.dialer_routes import RUNNER
    runner = d.runner.app[RUNNER]
    runner.windows = WindowChecker(CallingWindow(hours={k: (time(0), time.max) for k in range(7)}))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="the ACD is up")
        await eventually(lambda: d.acd.router.queue_stats("blend", 0).agents_available == 1, timeout=10,
                         what="Bea ready")
        # Bea, the one agent of "blend", also serves "care": a reserve of one agent keeps her for it.
        cid = await store.create_campaign(pool, "kept", mode="progressive", queue="blend",
                                          caller_id="+442079460000", ring_s=15, reserve={"agents": 1})
        valid, _ = parse_leads("phone\n+442079460104\n")
        assert (await store.import_leads(pool, cid, valid)).created == 1
        assert await store.set_campaign_state(pool, cid, "running")
        assert await runner.tick(datetime.now(timezone.utc)) == 0
        assert await store.attempts(pool, cid) == []
        # Her reserve lifted: the runner calls.
        assert await campaign_store.set_reserve(pool, cid, None)
        runner.wake()
        rows = await eventually(lambda: store.attempts(pool, cid), timeout=20, what="the lead dialed")
        assert [r["phone"] for r in rows] == ["+442079460104"]
    finally:
        await d.stop()
        hangup_all()


async def test_the_reserve_from_the_command_line(database, pool):
    await migrate(database)
    env = {"CTI_DATABASE_URL": database}
    made = cti("campaigns", "create", "blended", "--mode", "progressive", "--queue", "blend", **env)
    cid = int(made.stdout.split()[1])
    shown = cti("campaigns", "reserve", str(cid), **env)
    assert json.loads(shown.stdout) == {"reserve": {"agents": 0, "service_level": False, "arrivals_min": 15},
                                        "own_reserve": False}
    bad = cti("campaigns", "reserve", str(cid), "--agents", "501", **env)
    assert bad.returncode == 2 and "--agents" in bad.stderr
    assert (await campaign_store.get_reserve(pool, cid)) == (True, None)          # nothing written
    set_ = cti("campaigns", "reserve", str(cid), "--agents", "2", "--service-level", **env)
    assert set_.returncode == 0, set_.stderr
    assert (await campaign_store.get_reserve(pool, cid))[1] == {"agents": 2, "service_level": True,
                                                                    "arrivals_min": 15}
    assert json.loads(cti("campaigns", "reserve", str(cid), "--none", **env).stdout)["own_reserve"] is False
    assert cti("campaigns", "reserve", "424242", **env).returncode == 1
