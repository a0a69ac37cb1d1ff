"""A ticket's whole cycle against the real daemon, Asterisk sandbox and PostgreSQL: a
call arrives, the agent creates a ticket from the screen-pop in the page (headless
Chromium), it is dispatched, the visit fails (the customer's cause), it is
re-dispatched, the visit succeeds, the callback list shows it, the agent calls back
by click-to-dial from the list (a real originate to the customer's leg), and it
closes. The audit trail holds every step; each dispatch reached a webhook receiver."""
from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from api import webhooks
from crm.customer_lookup import save_customer
from crm.customer_model import Address
from crm.customer_store import add_address
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, http_receiver, hangup_all, start_daemon
from tests.integration.test_api import PASSWORD, add_user, bearer, login, url

DESKTOP_ACD = Path(__file__).with_name("desktop-acd.toml")
NUMBER = "+4930555077"


async def rows(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_a_ticket_from_the_screen_pop_through_dispatch_failed_visit_callback_to_closed(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    got: list[tuple[dict, str, bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        got.append((json.loads(raw), request.headers["X-Cti-Signature"], raw))
        return web.Response(status=204)

    hook_runner, port = await http_receiver("/engineers", receive)
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0,
                                           acd_callback_dial="Local/{number}@cti-demo-callee/n",
                                           acd_callback_caller_id='"Shop" <+4930999000>', ticket_notify="webhook",
                                           webhook_allow="127.0.0.0/8"))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
    conn = await asyncpg.connect(database)
    await save_customer(conn, "C-9", "Grace Hopper", [NUMBER], language="en")
    await add_address(conn, "C-9", Address(line1="Main St 1", city="Berlin", country="DE", region="north"),
                      primary=True)
    await conn.close()
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "sam", "supervisor")
    await add_user(database, "root", "admin")
    d.acd.agent_request("a1", "set_not_ready", "test")
    await set_demo_times(demo_ami, talk=(60, 60))
    page = await browser.new_page()
    http = aiohttp.ClientSession()
    try:
        root, sam = bearer(await login(http, d, "root")), bearer(await login(http, d, "sam"))
        ada = bearer(await login(http, d, "ada"))
        for eid, name, region in (("eng-n1", "Nora", "north"), ("eng-n2", "Nils", "north"),
                                  ("eng-s1", "Sven", "south")):
            body = {"name": name, "region": region, "contact": f"{eid}@example.test"}
            async with http.put(url(d, f"/api/engineers/{eid}"), json=body, headers=root) as r:
                assert r.status == 200, await r.text()
        async with http.put(url(d, "/api/engineers/eng-x"), json=body, headers=ada) as r:
            assert r.status == 403           # admins manage engineers
        async with http.post(url(d, "/api/webhooks"), headers=root,
                             json={"url": f"http://127.0.0.1:{port}/engineers", "events": ["ticket.dispatched"]}) as r:
            assert r.status == 201, await r.text()
            secret = (await r.json())["secret"]

        # Ada logs in and is ready; Grace calls the sales queue.
        await page.goto(url(d, "/agent/"))
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("#state:has-text('not ready')")
        await page.get_by_role("button", name="Ready", exact=True).click()
        await page.wait_for_selector("#state:has-text('available')")
        call = await place_call(demo_ami, caller_num=NUMBER, caller_name="G H", patience=120,
                                context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
        await page.wait_for_selector("#cust-name:has-text('Grace Hopper')", timeout=40_000)
        await page.wait_for_selector("#btn-hold:not([disabled])", timeout=20_000)

        # The ticket, from the screen-pop: customer and call filled in.
        await page.get_by_role("button", name="New ticket").click()
        await page.wait_for_selector("#ticket-create-panel:not([hidden])")
        assert await page.get_by_label("Customer", exact=True).input_value() == "C-9"
        assert await page.get_by_label("From call").input_value() == call.channel_id
        await page.get_by_label("Type").select_option("repair")
        await page.locator("#tc-title").fill("No internet since the storm")
        await page.get_by_role("button", name="Create ticket").click()
        await page.wait_for_selector("#ticket-title:has-text('No internet since the storm')")
        [t] = await rows(database, "SELECT ticket_id, source, region, state FROM tickets")
        tid = t["ticket_id"]
        assert (t["source"], t["region"], t["state"]) == ("call", "north", "open")
        links = await rows(database, "SELECT call_id FROM ticket_calls WHERE ticket_id = $1", tid)
        assert [r["call_id"] for r in links] == [call.channel_id]

        # An edit is audited; the state only moves by the buttons, which offer what the table allows.
        await page.locator("#tk-priority").select_option("high")
        await page.get_by_role("button", name="Save changes").click()
        await page.wait_for_selector("#tk-status:has-text('Saved')")
        commands = await page.locator("#tk-commands button").all_inner_texts()
        assert commands == ["Resolved by phone", "Send to regional lead", "Dispatch"]   # no cancel for agents
        await page.get_by_role("button", name="Dispatch", exact=True).click()
        await page.wait_for_selector("#cmd-engineer option", state="attached")
        options = await page.locator("#cmd-engineer option").all_inner_texts()
        assert [o.split(" (")[1].split(",")[0] for o in options] == ["eng-n1", "eng-n2"]   # the region's only
        await page.get_by_label("Engineer", exact=True).select_option("eng-n1")
        await page.locator("#cmd-note").fill("bring a modem")
        await page.get_by_role("button", name="Confirm: Dispatch").click()
        await page.wait_for_selector("#tk-state:has-text('dispatched')")
        await page.get_by_role("button", name="Hang up").click()
        await eventually(lambda: call.channel_id not in d.core.model.calls, 10, what="the first call ended")

        # The engineer's reports come in through the dispatcher (Sam, a supervisor), by the API.
        async def act(body: dict, who=sam, status: int = 200) -> dict:
            async with http.post(url(d, f"/api/tickets/{tid}/transitions"), json=body, headers=who) as r:
                assert r.status == status, await r.text()
                return await r.json()

        detail = await act({"command": "visit_failed", "cause": "customer", "reason": "nobody home",
                            "expected_revision": 3})
        assert detail["ticket"]["state"] == "to_redispatch" and detail["ticket"]["engineer"] is None
        stale = await act({"command": "dispatch", "engineer": "eng-n2", "expected_revision": 3}, status=409)
        assert stale["error_id"] == "ticket_conflict"
        refused = await act({"command": "confirm", "expected_revision": 4}, status=409)
        assert refused["error_id"] == "transition_refused"
        assert "'confirm' is not allowed in state 'to_redispatch'" in refused["message"]
        wrong = await act({"command": "dispatch", "engineer": "eng-s1", "expected_revision": 4}, status=422)
        assert "works region 'south'" in wrong["message"]
        missing = await act({"command": "visit_failed", "expected_revision": 4}, status=422)
        assert missing["details"][0]["field"] == "body.cause"
        await act({"command": "dispatch", "engineer": "eng-n2", "expected_revision": 4})
        detail = await act({"command": "visit_succeeded", "expected_revision": 5, "note": "new modem fitted"})
        assert detail["ticket"]["state"] == "awaiting_callback"

        # Both dispatches reached the receiver, signed, with what the engineer needs.
        await eventually(lambda: len(got) >= 2, 15, what="two ticket.dispatched webhooks")
        assert [(p["type"], p["id"], p["data"]["engineer"]["engineer_id"]) for p, _, _ in got] == [
            ("ticket.dispatched", f"ticket-{tid}:3", "eng-n1"), ("ticket.dispatched", f"ticket-{tid}:5", "eng-n2")]
        assert got[0][0]["data"]["customer"]["address"]["city"] == "Berlin" and got[0][0]["data"]["note"] == \
            "bring a modem"
        for payload, signature, raw in got:
            assert webhooks.verify(secret, signature, raw, now=payload["at"] + 5)
        notes = await eventually(lambda: rows(database, "SELECT seq, engineer_id, sender, outcome FROM"
                                                        " ticket_notifications ORDER BY seq"), 10)
        assert [tuple(r) for r in notes] == [(3, "eng-n1", "webhook", "sent"), (5, "eng-n2", "webhook", "sent")]

        # The callback list shows it; Ada (not ready) calls Grace back from it.
        await page.get_by_role("button", name="Not ready").click()
        await page.wait_for_selector("#state:has-text('not ready')")
        await page.get_by_role("button", name="Refresh callback list").click()
        await page.wait_for_selector(f"#callbacks td:has-text('#{tid} No internet')")
        await page.get_by_role("button", name=f"Call {NUMBER}").click()
        await page.wait_for_selector("#tk-status:has-text('Calling')")
        dial = await eventually(lambda: rows(database, "SELECT call_id FROM ticket_calls WHERE ticket_id = $1"
                                                       " AND call_id LIKE 'dial-%'", tid), 10, what="call linked")
        cid = dial[0]["call_id"]
        await eventually(lambda: d.core.model.calls[cid].state == "talking", 30, what="Ada talks to Grace")
        legs = [leg.channel for leg in d.core.model.calls[cid].legs.values()]
        assert any(c.startswith(f"Local/{NUMBER}@cti-demo-callee") for c in legs), legs

        # Grace confirms: closed.
        await page.get_by_role("button", name="Confirm (customer satisfied)").click()
        await page.get_by_role("button", name="Confirm: Confirm (customer satisfied)").click()
        await page.wait_for_selector("#tk-state:has-text('closed')")
        async with http.post(url(d, f"/api/calls/{cid}/hangup"), headers=ada) as r:
            assert r.status == 200
        await eventually(lambda: cid not in d.core.model.calls, 10, what="the callback ended")
        # The call is stored as Ada's outbound call to the customer, answered, with both legs.
        stored = await eventually(lambda: rows(database, "SELECT answered_at, legs, agent, direction FROM calls"
                                                         " WHERE call_id = $1 AND ended_at IS NOT NULL", cid),
                                  10, what="stored")
        assert stored[0]["answered_at"] is not None and stored[0]["legs"] >= 2
        assert stored[0]["agent"] == "a1" and stored[0]["direction"] == "outbound"

        # The audit trail: every step, who, from, to.
        trail = await rows(database, "SELECT seq, actor, command, from_state, to_state FROM ticket_audit"
                                     " WHERE ticket_id = $1 ORDER BY seq", tid)
        assert [tuple(r) for r in trail] == [
            (1, "ada", "create", None, "open"),
            (2, "ada", "edit", "open", "open"),
            (3, "ada", "dispatch", "open", "dispatched"),
            (4, "sam", "visit_failed:customer", "dispatched", "to_redispatch"),
            (5, "sam", "dispatch", "to_redispatch", "dispatched"),
            (6, "sam", "visit_succeeded", "dispatched", "awaiting_callback"),
            (7, "ada", "confirm", "awaiting_callback", "closed"),
        ]
        async with http.get(url(d, f"/api/tickets/{tid}"), headers=ada) as r:
            detail = await r.json()
        assert [a["command"] for a in detail["audit"]] == [r["command"] for r in trail]
        assert {c["call_id"] for c in detail["calls"]} == {call.channel_id, cid}
        assert detail["allowed_commands"] == ["reopen"]
        async with http.get(url(d, "/api/tickets/callbacks"), headers=ada) as r:
            assert (await r.json())["callbacks"] == []
        async with http.get(url(d, "/api/customers/C-9"), headers=ada) as r:
            page_data = await r.json()
        assert [t["ticket_id"] for t in page_data["tickets"]] == [tid]
        assert {c["call_id"] for c in page_data["calls"]} >= {call.channel_id, cid}
    finally:
        await http.close()
        await page.close()
        await set_demo_times(demo_ami)
        await d.stop()
        await hook_runner.cleanup()


async def test_the_ticket_api_roles_edits_search_and_a_failed_notification_that_keeps_the_dispatch(
        asterisk, database, tmp_path):
    from structlog.testing import capture_logs

    from api.ticket_routes import NOTIFIER
    from crm.ticket_notify import NotifyError

    d = await start_daemon(daemon_settings(database, tmp_path, ticket_notify="webhook"))
    conn = await asyncpg.connect(database)
    await save_customer(conn, "C-1", "Ada Lovelace", ["+4930111111"])
    await save_customer(conn, "C-2", "Charles Babbage", ["+4930222222"])
    await add_address(conn, "C-1", Address(city="Hamburg", region="north"), primary=True)
    await conn.close()
    for name, role in (("ada", "agent"), ("sam", "supervisor"), ("quinn", "qa"), ("root", "admin")):
        await add_user(database, name, role, "a1" if role == "agent" else None)
    http = aiohttp.ClientSession()
    try:
        h = {n: bearer(await login(http, d, n)) for n in ("ada", "sam", "quinn", "root")}

        async def call(method: str, path: str, who: str, body=None, status: int = 200):
            async with http.request(method, url(d, path), json=body, headers=h[who]) as r:
                assert r.status == status, f"{method} {path} as {who}: {r.status} {await r.text()}"
                return await r.json() if r.status != 204 else None

        await call("PUT", "/api/engineers/eng-1", "root", {"name": "Nora", "region": "north"})
        t1 = (await call("POST", "/api/tickets", "ada", {"type": "repair", "customer_id": "C-1",
                                                         "title": "Modem dead"}, 201))["ticket"]
        assert (t1["source"], t1["region"], t1["priority"]) == ("manual", "north", "normal")
        await call("POST", "/api/tickets", "ada", {"type": "install", "customer_id": "C-2"}, 422)
        await call("POST", "/api/tickets", "ada", {"type": "repair", "customer_id": "C-404"}, 404)
        await call("POST", "/api/tickets", "ada", {"type": "repair", "customer_id": "C-2", "source": "call"}, 422)
        await call("GET", f"/api/tickets/{t1['ticket_id']}", "quinn", status=403)
        t2 = (await call("POST", "/api/tickets", "ada", {"type": "site_visit", "customer_id": "C-2",
                                                         "notes": "fibre to the garden"}, 201))["ticket"]

        # Edits: agents keep their hands off the due time and the state.
        tid = t1["ticket_id"]
        later = "2027-01-01T00:00:00+00:00"
        err = await call("PATCH", f"/api/tickets/{tid}", "ada", {"expected_revision": 1, "due_at": later}, 403)
        assert err["error_id"] == "forbidden_field"
        await call("PATCH", f"/api/tickets/{tid}", "ada", {"expected_revision": 1, "state": "closed"}, 422)
        detail = await call("PATCH", f"/api/tickets/{tid}", "sam", {"expected_revision": 1, "due_at": later,
                                                                    "priority": "urgent"})
        assert detail["ticket"]["priority"] == "urgent" and detail["ticket"]["revision"] == 2
        assert detail["audit"][-1]["command"] == "edit" and detail["audit"][-1]["data"]["priority"] == [
            "normal", "urgent"]
        assert (await call("PATCH", f"/api/tickets/{tid}", "ada", {"expected_revision": 1, "notes": "x"},
                           409))["error_id"] == "ticket_conflict"

        # Cancel is for supervisors; agents do not even see it offered.
        assert "cancel" in detail["allowed_commands"]
        assert "cancel" not in (await call("GET", f"/api/tickets/{tid}", "ada"))["allowed_commands"]
        assert (await call("POST", f"/api/tickets/{t2['ticket_id']}/transitions", "ada",
                           {"command": "cancel", "reason": "dup", "expected_revision": 1}, 403))["error_id"] == \
            "forbidden_command"
        await call("POST", f"/api/tickets/{t2['ticket_id']}/transitions", "sam",
                   {"command": "cancel", "reason": "duplicate", "expected_revision": 1})

        # A sender that fails: the dispatch stays, the failure is logged and recorded.
        class Broken:
            name = "broken"

            async def send(self, n):
                raise NotifyError("gateway said no")

        d.runner.app[NOTIFIER].sender = Broken()
        with capture_logs() as logs:
            detail = await call("POST", f"/api/tickets/{tid}/transitions", "sam",
                                {"command": "dispatch", "engineer": "eng-1", "expected_revision": 2})
            assert detail["ticket"]["state"] == "dispatched"
            notes = await eventually(lambda: rows(database, "SELECT sender, outcome, error FROM"
                                                            " ticket_notifications WHERE ticket_id = $1", tid), 10)
        assert [tuple(r) for r in notes] == [("broken", "failed", "gateway said no")]
        failed = [e for e in logs if e["event"] == "ticket notification failed"]
        assert failed and failed[0]["engineer_id"] == "eng-1" and "Ada" not in repr(failed)
        # The webhook sender with no subscription wanting ticket.dispatched fails the same way.
        from api.ticket_routes import WebhookSender
        d.runner.app[NOTIFIER].sender = WebhookSender(d.runner.app)
        await call("POST", f"/api/tickets/{tid}/transitions", "sam",
                   {"command": "visit_failed", "cause": "engineer", "reason": "no ladder", "expected_revision": 3})
        notes = await eventually(lambda: rows(database, "SELECT seq, sender, outcome, error FROM ticket_notifications"
                                                        " WHERE ticket_id = $1 AND seq = 4", tid), 10)
        assert tuple(notes[0]) == (4, "webhook", "failed", "no active webhook subscription wants ticket.dispatched")
        assert (await call("GET", f"/api/tickets/{tid}", "ada"))["notifications"][-1]["outcome"] == "failed"

        # Search and lists.
        found = await call("GET", "/api/tickets?q=lovelace", "ada")
        assert [t["ticket_id"] for t in found["tickets"]] == [tid]
        found = await call("GET", "/api/tickets?state=cancelled", "ada")
        assert [t["ticket_id"] for t in found["tickets"]] == [t2["ticket_id"]]
        found = await call("GET", f"/api/tickets?q=%23{t2['ticket_id']}", "ada")
        assert [t["ticket_id"] for t in found["tickets"]] == [t2["ticket_id"]]
        assert (await call("GET", "/api/tickets?region=north&state=dispatched&overdue=false", "ada"))["tickets"][0][
            "engineer"] == "eng-1"
        await call("GET", "/api/tickets?state=nonsense", "ada", status=422)
        assert (await call("GET", "/api/tickets/overdue", "ada"))["tickets"] == []
        assert [c["customer_id"] for c in (await call("GET", "/api/customers?q=%2B49%2030%20222222", "ada"))[
            "customers"]] == ["C-2"]
        assert [c["customer_id"] for c in (await call("GET", "/api/customers?q=babb", "ada"))["customers"]] == ["C-2"]
        never = await call("GET", "/api/customers/not-visited?region=north", "ada")
        assert [c["customer_id"] for c in never["customers"]] == ["C-1"]
        await call("POST", "/api/customers/C-2/notes", "ada", {"body": "prefers mornings"}, 201)
        page = await call("GET", "/api/customers/C-2", "ada")
        assert page["notes"][0]["author"] == "ada" and page["tickets"][0]["state"] == "cancelled"
        assert (await call("GET", "/api/engineers?region=south", "ada"))["engineers"] == []
    finally:
        await http.close()
        await d.stop()


async def test_customer_and_ticket_pages_name_only_the_recordings_the_reader_may_hear(asterisk, database, tmp_path):
    """An agent reads any customer's page, but recordings follow their own scope (the agent's
    own calls'): the others are not even named, on the page or on its tickets."""
    from datetime import datetime, timezone

    from recording import recording_db as rec_db

    d = await start_daemon(daemon_settings(database, tmp_path))
    http = aiohttp.ClientSession()
    try:
        await add_user(database, "ada", "agent", "a1")
        await add_user(database, "root", "admin")
        conn = await asyncpg.connect(database)
        try:
            await save_customer(conn, "C-5", "Lin Scope", ["+4930555055"], language="en")
            ids = {}
            for call_id, agent in (("call-a1", "a1"), ("call-a2", "a2")):
                await conn.execute("INSERT INTO customer_calls (customer_id, call_id) VALUES ('C-5', $1)", call_id)
                ids[agent] = await rec_db.insert_recording(
                    conn, call_id=call_id, segment=1, agent=agent, queue="support", caller_num="+4930555055",
                    sides="mixed", reason="policy", started_by="policy", file_name=f"scope-{agent}.wav",
                    started_at=datetime.now(timezone.utc))
        finally:
            await conn.close()
        ada = bearer(await login(http, d, "ada"))
        root = bearer(await login(http, d, "root"))
        async with http.post(url(d, "/api/tickets"), json={"type": "repair", "customer_id": "C-5"}, headers=ada) as r:
            assert r.status == 201, await r.text()
            tid = (await r.json())["ticket"]["ticket_id"]
        await rows(database, "INSERT INTO ticket_recordings (ticket_id, recording_id) VALUES ($1, $2), ($1, $3)",
                   tid, str(ids["a1"]), str(ids["a2"]))
        for who, expected in ((ada, [ids["a1"]]), (root, sorted(ids.values()))):
            async with http.get(url(d, "/api/customers/C-5"), headers=who) as r:
                page = await r.json()
            assert sorted(x["recording_id"] for x in page["recordings"]) == expected
            assert sorted(int(x) for x in page["tickets"][0]["recording_ids"]) == expected
            async with http.get(url(d, f"/api/tickets/{tid}"), headers=who) as r:
                detail = await r.json()
            assert sorted(int(x["recording_id"]) for x in detail["recordings"]) == expected
    finally:
        await http.close()
        await d.stop()
