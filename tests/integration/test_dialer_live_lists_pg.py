"""Live lists against the real PostgreSQL (docs/dialer.md, "Live lists"): tickets moved onto
the callback or visit list become leads of a live campaign (their customer's number, the
ticket linked); a ticket that leaves withdraws its lead not yet dialed (by the sync, or at dial
time before a sync); an agent's result moves the ticket by its machine; and over the API a
campaign is created with a live source and a ticket's change is followed at once."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import aiohttp
import asyncpg
import pytest

from crm import ticket_store
from crm.customer_lookup import save_customer
from crm.tickets import Cancel, Confirm, Dispatch, Unsatisfied, VisitFailed, VisitSucceeded
from dialer import live_store, store
from dialer.campaign_rules import window_from_json
from dialer.leads import RetryRules, State
from dialer.live_lists import InvalidSource
from dialer.windows import WindowChecker
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import add_user, bearer, login, url
from tests.integration.test_cli import cti

RULES = RetryRules()
ALL_DAY = {"hours": {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
WINDOWS = WindowChecker(window_from_json(ALL_DAY))


def now() -> datetime:
    return datetime.now(timezone.utc)


async def visited(db, customer: str, *, ok: bool = True) -> int:
    """A ticket of ``customer`` dispatched and visited: awaiting the callback (ok) or to re-dispatch."""
    t, _ = await ticket_store.create_ticket(db, type="repair", customer_id=customer, source="manual", actor="desk")
    await ticket_store.transition(db, t.ticket_id, Dispatch(actor="desk", engineer="eng1"))
    await ticket_store.transition(db, t.ticket_id, VisitSucceeded(actor="eng1") if ok else
                                  VisitFailed(actor="eng1", cause="customer", reason="nobody home"))
    return t.ticket_id


async def leads(db, campaign_id: int) -> dict[int, list[dict]]:
    """The campaign's leads by ticket, oldest first."""
    rows = await db.fetch("SELECT lead_id, ticket_id, ticket_entry, phone, customer_id, state, last_outcome"
                          " FROM dialer_leads WHERE campaign_id = $1 ORDER BY lead_id", campaign_id)
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r["ticket_id"], []).append(dict(r))
    return out


async def test_tickets_entering_and_leaving_the_lists_are_followed_and_results_move_the_ticket(pool):
    await save_customer(pool, "C-1", "Ann", ["+4930555002", "+4930555001"])
    await save_customer(pool, "C-2", "Bob", ["+4930555010"])
    await save_customer(pool, "C-3", "Cy", ["+4930555020"])
    await save_customer(pool, "C-4", "No Phone", [])
    t1, t2, t3, t4 = [await visited(pool, c) for c in ("C-1", "C-2", "C-3", "C-4")]
    t_open, _ = await ticket_store.create_ticket(pool, type="repair", customer_id="C-1", source="manual", actor="d")
    t_visit = await visited(pool, "C-2", ok=False)
    cb = await store.create_campaign(pool, "Callbacks", source="tickets_callback")
    visit = await store.create_campaign(pool, "Visits", source="tickets_visit")

    report = await live_store.sync_campaign(pool, cb, now())
    by_ticket = await leads(pool, cb)
    # Every ticket awaiting its callback with a number is a lead: the customer's first number, linked.
    assert set(by_ticket) == {t1, t2, t3} and report.no_phone == [t4] and len(report.added) == 3
    assert t_open.ticket_id not in by_ticket and t_visit not in by_ticket
    assert (by_ticket[t1][0]["phone"], by_ticket[t1][0]["customer_id"]) == ("+4930555001", "C-1")
    entry = await pool.fetchval("SELECT seq FROM ticket_audit WHERE ticket_id = $1 AND to_state = 'awaiting_callback'",
                                t1)
    assert by_ticket[t1][0]["ticket_entry"] == entry
    # The same sync again changes nothing (idempotent).
    again = await live_store.sync_campaign(pool, cb, now())
    assert (again.added, again.withdrawn) == ([], []) and await leads(pool, cb) == by_ticket
    # The visit list has the ticket whose visit failed, and only it.
    await live_store.sync_campaign(pool, visit, now())
    assert set(await leads(pool, visit)) == {t_visit}

    # A ticket confirmed elsewhere (the customer called in) leaves the list: its lead is withdrawn.
    await ticket_store.transition(pool, t2, Confirm(actor="desk"))
    report = await live_store.sync_campaign(pool, cb, now())
    assert report.withdrawn == [by_ticket[t2][0]["lead_id"]]
    assert (await leads(pool, cb))[t2][0]["state"] == "done"
    assert (await leads(pool, cb))[t2][0]["last_outcome"] == "withdrawn"

    # A ticket cancelled between two syncs is never dialed: withdrawn at dial time.
    await ticket_store.transition(pool, t3, Cancel(actor="boss", reason="duplicate"))
    await store.set_campaign_state(pool, cb, "running")
    card = await store.take_preview(pool, cb, "ada", now(), rules=RULES, windows=WINDOWS)
    assert card["ticket"]["ticket_id"] == t1 and card["ticket"]["state"] == "awaiting_callback"
    assert card["ticket"]["title"] == "Repair" and card["ticket"]["visits"] == 1
    assert await store.take_preview(pool, cb, "ben", now(), rules=RULES, windows=WINDOWS) is None
    assert (await leads(pool, cb))[t3][0]["last_outcome"] == "withdrawn"

    # The agent's result moves the ticket: not reached -> callback_no_answer (it stays on the list)...
    attempt, phone = await store.preview_dial(pool, card["lead_id"], "ada", now(), rules=RULES)
    assert phone == "+4930555001"
    lead = await store.preview_result(pool, attempt, "ada", now(), rules=RULES, outcome="busy",
                                      call_id="call-live-1")
    assert lead.state is State.RETRY
    t = await ticket_store.get_ticket(pool, t1)
    assert (t.state.value, t.callback_attempts) == ("awaiting_callback", 1)
    r = await live_store.sync_campaign(pool, cb, now())      # the same stay: no second lead
    assert (r.on_list, r.added, r.withdrawn, r.no_phone) == (2, [], [], [t4])
    # ... then a confirmation closes it, in the ticket's history with the campaign named.
    await pool.execute("UPDATE dialer_leads SET retry_at = now() - interval '1 second' WHERE lead_id = $1",
                       card["lead_id"])
    card = await store.take_preview(pool, cb, "ada", now(), rules=RULES, windows=WINDOWS)
    attempt, _ = await store.preview_dial(pool, card["lead_id"], "ada", now(), rules=RULES)
    await store.preview_result(pool, attempt, "ada", now(), rules=RULES, outcome="answered",
                               disposition="confirmed", call_id="call-live-2")
    t = await ticket_store.get_ticket(pool, t1)
    assert (t.state.value, t.resolution) == ("closed", "confirmed")
    last = (await ticket_store.audit_trail(pool, t1))[-1]
    assert (last.command, last.actor, last.from_state.value) == ("confirm", "ada", "awaiting_callback")
    assert last.note.startswith("Campaign 'Callbacks', attempt ") and "confirmed" in last.note
    linked = await pool.fetch("SELECT call_id FROM ticket_calls WHERE ticket_id = $1 ORDER BY call_id", t1)
    assert [r["call_id"] for r in linked] == ["call-live-1", "call-live-2"]
    # The customer record has the note as for any campaign result.
    assert await pool.fetchval("SELECT count(*) FROM customer_notes WHERE customer_id = 'C-1'") == 2


async def test_an_unsatisfied_customer_moves_from_the_callback_list_to_the_visit_list_and_back(pool):
    await save_customer(pool, "C-9", "Grace", ["+4930555099"])
    tid = await visited(pool, "C-9")
    cb = await store.create_campaign(pool, "Callbacks", source="tickets_callback")
    visit = await store.create_campaign(pool, "Visits", source="tickets_visit")
    await live_store.sync_campaign(pool, cb, now())
    await store.set_campaign_state(pool, cb, "running")
    card = await store.take_preview(pool, cb, "ada", now(), rules=RULES, windows=WINDOWS)
    attempt, _ = await store.preview_dial(pool, card["lead_id"], "ada", now(), rules=RULES)
    await store.preview_result(pool, attempt, "ada", now(), rules=RULES, outcome="answered",
                               disposition="unsatisfied")
    t = await ticket_store.get_ticket(pool, tid)
    assert t.state.value == "to_redispatch"
    assert (await ticket_store.audit_trail(pool, tid))[-1].data == {"reason": "unsatisfied on the campaign's callback"}
    # Now on the visit list, off the callback list (its lead there is done: the result).
    assert (await live_store.sync_campaign(pool, visit, now())).added
    assert (await live_store.sync_campaign(pool, cb, now())).withdrawn == []
    # Re-dispatched before the visit list called: its visit lead is withdrawn.
    await ticket_store.transition(pool, tid, Dispatch(actor="desk", engineer="eng2"))
    assert len((await live_store.sync_campaign(pool, visit, now())).withdrawn) == 1
    # Visited again: a new stay on the callback list, a new lead beside the first one's.
    await ticket_store.transition(pool, tid, VisitSucceeded(actor="eng2"))
    report = await live_store.sync_campaign(pool, cb, now())
    assert len(report.added) == 1
    stays = [(x["state"], x["ticket_entry"]) for x in (await leads(pool, cb))[tid]]
    assert stays[0][0] == "done" and stays[1][0] == "new" and stays[1][1] > stays[0][1]
    # A result on the visit list (resolved by phone) closes a ticket there.
    await ticket_store.transition(pool, tid, Unsatisfied(actor="ada", reason="still slow"))
    await live_store.sync_campaign(pool, visit, now())
    await store.set_campaign_state(pool, visit, "running")
    card = await store.take_preview(pool, visit, "ada", now(), rules=RULES, windows=WINDOWS)
    assert card["ticket"]["ticket_id"] == tid and card["ticket"]["state"] == "to_redispatch"
    attempt, _ = await store.preview_dial(pool, card["lead_id"], "ada", now(), rules=RULES)
    await store.preview_result(pool, attempt, "ada", now(), rules=RULES, outcome="answered", disposition="resolved")
    t = await ticket_store.get_ticket(pool, tid)
    assert (t.state.value, t.resolution) == ("closed", "phone")


async def test_a_csv_campaign_is_not_synced_and_a_live_one_takes_no_import(pool):
    csv_c = await store.create_campaign(pool, "Imported")
    live = await store.create_campaign(pool, "Live", source="tickets_visit")
    with pytest.raises(live_store.NotLive):
        await live_store.sync_campaign(pool, csv_c, now())
    with pytest.raises(live_store.NotLive):
        await live_store.sync_campaign(pool, 999999, now())
    with pytest.raises(store.LiveSource):
        await store.import_leads(pool, live, [])
    with pytest.raises(InvalidSource):
        await store.create_campaign(pool, "Bad", source="tickets")
    with pytest.raises(asyncpg.CheckViolationError):        # the table refuses one written around the store
        await pool.execute("UPDATE dialer_campaigns SET source = 'tickets' WHERE campaign_id = $1", live)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_over_the_api_a_live_campaign_follows_a_ticket_change_at_once(asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path))
    try:
        await add_user(database, "sam", "supervisor")
        await add_user(database, "ada", "agent", "a1")
        conn = await asyncpg.connect(database)
        try:
            await save_customer(conn, "C-5", "Lin", ["+4930555055"])
            tid = await visited(conn, "C-5")
        finally:
            await conn.close()
        sam = bearer(await login(http, d, "sam"))
        async with http.post(url(d, "/api/campaigns"), json={"name": "x", "source": "tickets"}, headers=sam) as r:
            body = await r.json()
            assert r.status == 422 and [x["field"] for x in body["details"]] == ["body.source"]
        async with http.post(url(d, "/api/campaigns"), json={"name": "Callbacks", "source": "tickets_callback"},
                             headers=sam) as r:
            assert r.status == 201
            created = await r.json()
        cid = created["campaign_id"]
        assert (created["source"], created["leads"]) == ("tickets_callback", {"new": 1})
        async with http.post(url(d, f"/api/campaigns/{cid}/leads"), json={"csv": "phone\n+4930555066\n"},
                             headers=sam) as r:
            assert (r.status, (await r.json())["error_id"]) == (409, "live_source")
        async with http.post(url(d, "/api/campaigns"), json={"name": "Imported"}, headers=sam) as r:
            csv_id = (await r.json())["campaign_id"]
        async with http.post(url(d, f"/api/campaigns/{csv_id}/sync"), headers=sam) as r:
            assert (r.status, (await r.json())["error_id"]) == (409, "not_live")
        # Running, so the background sync follows it; the ticket confirmed through the API leaves
        # the list and the transition's kick withdraws the lead without waiting for the next pass.
        async with http.post(url(d, f"/api/campaigns/{cid}/state"), json={"state": "running"}, headers=sam) as r:
            assert r.status == 200
        async with http.get(url(d, f"/api/tickets/{tid}"), headers=sam) as r:
            revision = (await r.json())["ticket"]["revision"]
        async with http.post(url(d, f"/api/tickets/{tid}/transitions"),
                             json={"command": "confirm", "expected_revision": revision}, headers=sam) as r:
            assert r.status == 200, await r.text()
        for _ in range(50):
            async with http.get(url(d, "/api/campaigns"), headers=sam) as r:
                row = next(c for c in (await r.json())["campaigns"] if c["campaign_id"] == cid)
            if row["leads"] == {"done": 1}:
                break
            await asyncio.sleep(0.1)
        assert row["leads"] == {"done": 1} and row["source"] == "tickets_callback"
        async with http.post(url(d, f"/api/campaigns/{cid}/sync"), headers=sam) as r:
            view = await r.json()
            assert (r.status, view["on_list"], view["added"], view["withdrawn"]) == (200, 0, [], [])
        # The command line does the same.
        proc = await asyncio.to_thread(cti, "campaigns", "sync", str(cid), CTI_DATABASE_URL=database)
        assert proc.returncode == 0 and "0 tickets on the list" in proc.stdout, proc.stderr
        proc = await asyncio.to_thread(cti, "campaigns", "sync", str(csv_id), CTI_DATABASE_URL=database)
        assert proc.returncode == 2 and "CSV import" in proc.stderr, proc.stderr
    finally:
        await d.stop()


async def test_the_desktops_lead_card_shows_the_ticket_and_opens_it(asterisk, database, tmp_path, browser):
    from datetime import time

    from api.dialer_routes import PREVIEW_WINDOWS
    from dialer.windows import CallingWindow
    from tests.integration.test_agent_desktop_ui import logged_in
    from tests.integration.test_desktop import DESKTOP_ACD

    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0))
    d.runner.app[PREVIEW_WINDOWS].__init__(CallingWindow(hours={k: (time(0), time.max) for k in range(7)}))
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    page = await browser.new_page()
    try:
        await save_customer(pool, "C-7", "Mary Major", ["+442079460112"])
        tid = await visited(pool, "C-7")
        cid = await store.create_campaign(pool, "Confirm visits", mode="preview", source="tickets_callback")
        await live_store.sync_campaign(pool, cid, now())
        assert await store.set_campaign_state(pool, cid, "running")
        await add_user(database, "ada", "agent", "a1")
        await logged_in(page, d, "ada")
        await page.get_by_role("button", name="Refresh campaigns").click()
        await page.wait_for_selector("#pv-campaign option:has-text('Confirm visits')", state="attached")
        await page.get_by_role("button", name="Next lead").click()
        await page.wait_for_selector("#pv-name:text-is('Mary Major')")
        text = await page.inner_text("#pv-ticket")
        assert f"#{tid} repair: Repair (awaiting the confirmation callback; visits 1)" in text
        await page.get_by_role("button", name=f"Open ticket #{tid}").click()
        await page.wait_for_selector("#ticket-panel:not([hidden])")
        assert await page.inner_text("#ticket-title") == f"Ticket #{tid}: Repair"
        assert (await page.inner_text("#tk-state")).startswith("awaiting callback")
    finally:
        await page.close()
        await pool.close()
        await d.stop()
