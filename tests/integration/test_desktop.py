"""The agent desktop against the real daemon, Asterisk sandbox and PostgreSQL:
the web client in headless Chromium (log in, ready, screen-pop, hold, resume,
hang up, wrap-up), who may control a call, and webhooks to a real receiver."""
from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from api import webhooks
from api.webhook_service import WEBHOOKS
from crm import ticket_store
from crm.customer_lookup import save_customer
from cti import control
from cti.demo import place_call, set_demo_times
from cti.demo_ivr import place_dtmf_call
from tests.integration.conftest import daemon_settings, eventually, http_receiver, hangup_all, start_daemon
from tests.integration.test_api import PASSWORD, add_user, bearer, login, url

DESKTOP_ACD = Path(__file__).with_name("desktop-acd.toml")


async def started(database, tmp_path):
    # webhook_allow: the test's webhook receiver listens on loopback.
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0,
                                           webhook_allow="127.0.0.0/8"))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
    return d


async def fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(sql, *args)
    finally:
        await conn.close()


async def test_an_agent_takes_a_call_from_the_page_screen_pop_hold_resume_hangup_wrap_up(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await started(database, tmp_path)
    conn = await asyncpg.connect(database)
    await save_customer(conn, "C-77", "Grace Hopper", ["+4930555077"], language="en", vip=True)
    await ticket_store.create_ticket(conn, type="repair", customer_id="C-77", source="manual", actor="test",
                                     title="Router blinks red")
    await conn.close()
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "ben", "agent", "a2")
    d.acd.agent_request("a1", "set_not_ready", "test")
    page = await browser.new_page()
    try:
        await page.goto(url(d, "/agent/"))
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("#link:has-text('online')")
        await page.wait_for_selector("#state:has-text('not ready')")
        await page.get_by_role("button", name="Ready", exact=True).click()
        await page.wait_for_selector("#state:has-text('available')")
        assert d.acd.router.agent_state("a1").state == "available"

        # A caller known as Grace Hopper dials 5001 and presses 1 (sales) in the IVR.
        call = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930555077", did="5001",
                                     caller_name="G H", patience=120)
        await page.wait_for_selector("#cust-name:has-text('Grace Hopper')", timeout=40_000)
        assert await page.inner_text("#ivr-choices") == "main: 1"
        assert await page.inner_text("#queue") == "sales"
        assert "Router blinks red" in await page.text_content("#tickets")
        assert await page.get_attribute("#screenpop", "aria-live") == "polite"

        # Answered (after a second): the controls open. Ben may not touch Ada's call.
        await page.wait_for_selector("#btn-hold:not([disabled])", timeout=20_000)
        async with aiohttp.ClientSession() as http:
            ben = bearer(await login(http, d, "ben"))
            async with http.post(url(d, f"/api/calls/{call.channel_id}/hangup"), headers=ben) as r:
                assert r.status == 403 and (await r.json())["error_id"] == "not_your_call"
            ada = bearer(await login(http, d, "ada"))
            async with http.post(url(d, f"/api/calls/{call.channel_id}/dtmf"), json={"digits": "1\r\n"},
                                 headers=ada) as r:
                assert r.status == 422 and "body.digits" in await r.text()
        await page.get_by_role("button", name="Hold").click()
        await eventually(lambda: d.core.model.calls[call.channel_id].state == "held", 10, what="held")
        await page.wait_for_selector("#phase:has-text('held')")
        await page.get_by_role("button", name="Resume").click()
        await eventually(lambda: d.core.model.calls[call.channel_id].state == "talking", 10, what="talking again")
        await page.wait_for_selector("#phase:has-text('resumed')")
        await page.get_by_role("button", name="Hang up").click()
        await eventually(lambda: call.channel_id not in d.core.model.calls, 10, what="call gone")

        # The wrap-up form opens with the focus on the disposition.
        await page.wait_for_selector("#wrapup-panel:not([hidden])")
        await page.get_by_label("Disposition", exact=True).select_option("resolved")
        await page.get_by_label("Notes").fill("Router reset; works again.")
        await page.get_by_role("button", name="Save wrap-up").click()
        await page.wait_for_selector("#wrapup-panel", state="hidden")

        row = await eventually(lambda: fetch(database, """
            SELECT c.ended_at, c.agent, d.disposition, d.notes FROM calls c
              JOIN call_dispositions d USING (call_id) WHERE c.call_id = $1 AND c.ended_at IS NOT NULL""",
            call.channel_id), 10, what="the call ended in the database with its disposition")
        assert (row["agent"], row["disposition"], row["notes"]) == ("a1", "resolved", "Router reset; works again.")
        # The timeline: the IVR steps, then talking -> held -> talking.
        events = await eventually(lambda: fetch(database, """
            SELECT array_agg(kind ORDER BY seq) AS kinds,
                   array_agg(data->>'new' ORDER BY seq) FILTER (WHERE kind = 'call.state') AS states
              FROM call_events WHERE call_id = $1""", call.channel_id), 10)
        assert "call.ivr" in events["kinds"]
        held = events["states"].index("held")
        assert events["states"][held - 1] == "talking" and events["states"][held + 1] == "talking"
        await page.wait_for_selector("#history td:has-text('resolved')", timeout=10_000)
    finally:
        await page.close()
        await d.stop()


async def test_webhooks_reach_a_real_receiver_signed_retried_and_logged(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    got: list[tuple[dict, str, bytes]] = []
    answers = iter([500])          # the first delivery fails once, then every answer is 204

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        got.append((json.loads(raw), request.headers["X-Cti-Signature"], raw))
        return web.Response(status=next(answers, 204))

    runner, port = await http_receiver("/hook", receive)
    d = await started(database, tmp_path)
    d.runner.app[WEBHOOKS].backoff = lambda attempt: 0.1
    d.acd.agent_request("a1", "set_not_ready", "test")
    await add_user(database, "root", "admin")
    await add_user(database, "ada", "agent", "a1")
    try:
        async with aiohttp.ClientSession() as http:
            admin, ada = bearer(await login(http, d, "root")), bearer(await login(http, d, "ada"))
            body = {"url": f"http://127.0.0.1:{port}/hook", "events": ["call.started", "call.ended"]}
            async with http.post(url(d, "/api/webhooks"), json=body, headers=ada) as r:
                assert r.status == 403
            async with http.post(url(d, "/api/webhooks"), json={**body, "events": ["call.ended\r\nX: y"]},
                                 headers=admin) as r:
                assert r.status == 422 and "body.events" in await r.text()
            async with http.post(url(d, "/api/webhooks"), json=body, headers=admin) as r:
                assert r.status == 201, await r.text()
                sub = await r.json()
            secret = sub["secret"]
            async with http.get(url(d, "/api/webhooks"), headers=admin) as r:
                assert "secret" not in (await r.json())["subscriptions"][0]

            call = await place_call(demo_ami, caller_num="+4930555088", caller_name="Hook", patience=1,
                                    context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
            await eventually(lambda: any(p["type"] == "call.ended" and p["call_id"] == call.channel_id
                                         for p, _, _ in got), 30, what="call.ended delivered")
            kinds = [p["type"] for p, _, _ in got if p["call_id"] == call.channel_id]
            assert kinds[0] == kinds[1] == "call.started"        # 500 once, then delivered again
            assert "call.ended" in kinds and "call.queued" not in kinds
            for payload, signature, raw in got:
                assert webhooks.verify(secret, signature, raw, now=payload["at"] + 5)
                assert not webhooks.verify("whsec_other", signature, raw, now=payload["at"] + 5)

            async with http.get(url(d, f"/api/webhooks/{sub['subscription_id']}/deliveries"), headers=admin) as r:
                log = (await r.json())["deliveries"]
            started_rows = [x for x in log if x["kind"] == "call.started" and x["call_id"] == call.channel_id]
            assert sorted((x["attempt"], x["outcome"], x["http_status"]) for x in started_rows) == [
                (1, "failed", 500), (2, "delivered", 204)]
            async with http.delete(url(d, f"/api/webhooks/{sub['subscription_id']}"), headers=admin) as r:
                assert r.status == 204
            assert d.runner.app[WEBHOOKS].subs == {}
    finally:
        await d.stop()
        await runner.cleanup()


async def _connected(d, demo_ami, name: str):
    """A caller through the ACD's sales queue, connected to Ada (a1)."""
    call = await place_call(demo_ami, caller_num="+4930555099", caller_name=name, patience=120,
                            context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
    await eventually(lambda: d.core.model.calls[call.channel_id].agent == "a1"
                     and d.core.model.calls[call.channel_id].state == "talking", 20, what="Ada talking")
    return call


async def test_attended_transfer_to_another_agent_completed_and_blind_transfer_back_to_a_queue(
        asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "ben", "agent", "a2")
    try:
        async with aiohttp.ClientSession() as http:
            ada, ben = bearer(await login(http, d, "ada")), bearer(await login(http, d, "ben"))
            call = await _connected(d, demo_ami, "Attended")
            cid = call.channel_id
            ada_leg = control.parties(d.core.model.calls[cid]).agent_leg
            body = {"mode": "attended", "target": {"kind": "queue", "value": "sales"}}
            async with http.post(url(d, f"/api/calls/{cid}/transfer"), json=body, headers=ada) as r:
                assert r.status == 422 and "attended" in (await r.json())["message"]
            body = {"mode": "attended", "target": {"kind": "agent", "value": "a2"}}
            async with http.post(url(d, f"/api/calls/{cid}/transfer"), json=body, headers=ben) as r:
                assert r.status == 403
            async with http.post(url(d, f"/api/calls/{cid}/transfer"), json=body, headers=ada) as r:
                assert r.status == 200, await r.text()
            # Ben's phone rings and answers (stay2) while the caller hears music.
            await eventually(lambda: d.core.model.calls[cid].agent == "a2", 20, what="Ben on the consult line")
            # The ACD counts both busy: Ben (logged out, found on the call) and Ada (still on the line).
            acd = d.acd
            await eventually(lambda: acd.router.agent_state("a2").state == "on_call", 5, what="Ben counted busy")
            assert acd.router.agent_state("a1").state == "on_call"
            async with http.post(url(d, f"/api/calls/{cid}/transfer/complete"), headers=ben) as r:
                assert r.status == 403   # the transfer is Ada's to complete
            async with http.post(url(d, f"/api/calls/{cid}/transfer/complete"), headers=ada) as r:
                assert r.status == 200, await r.text()
            await eventually(lambda: ada_leg not in control.parties(d.core.model.calls[cid]).legs, 10,
                             what="Ada's leg gone")
            await eventually(lambda: d.core.model.calls[cid].state == "talking", 10, what="caller with Ben")
            assert d.core.model.calls[cid].agent == "a2"
            # Ada's part ended with her leg: wrap-up now, not when the caller leaves Ben.
            await eventually(lambda: acd.router.agent_state("a1").state == "wrapup", 5, what="Ada in wrap-up")
            assert acd.router.agent_state("a2").state == "on_call"
            async with http.post(url(d, f"/api/calls/{cid}/hangup"), headers=ada) as r:
                assert r.status == 403   # Ben's call now
            async with http.post(url(d, f"/api/calls/{cid}/hangup"), headers=ben) as r:
                assert r.status == 200
            await eventually(lambda: cid not in d.core.model.calls, 10, what="ended")
            # Ben was logged out when the transfer reached him: logged out again, no wrap-up.
            await eventually(lambda: acd.router.agent_state("a2").state == "logged_out", 5, what="Ben off the call")

            # Blind, back to the sales queue: the ACD routes the caller again (Ben, logged in now).
            d.acd.agent_request("a1", "end_wrapup")
            await eventually(lambda: d.acd.router.agent_state("a1").state == "available", 10)
            call = await _connected(d, demo_ami, "Blind")
            cid = call.channel_id
            d.acd.agent_request("a2", "login")
            body = {"mode": "blind", "target": {"kind": "queue", "value": "sales"}}
            async with http.post(url(d, f"/api/calls/{cid}/transfer"), json=body, headers=ada) as r:
                assert r.status == 200, await r.text()
            await eventually(lambda: d.core.model.calls[cid].agent == "a2"
                             and d.core.model.calls[cid].state == "talking", 20, what="routed again to Ben")
            async with http.post(url(d, f"/api/calls/{cid}/dtmf"), json={"digits": "12#"}, headers=ben) as r:
                assert r.status == 200 and (await r.json())["actions"] == 3
    finally:
        await d.stop()


async def test_click_to_dial_rings_the_agent_then_the_customer_and_only_that_agent_controls_it(
        asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0,
                                           acd_callback_dial="Local/{number}@cti-demo-callee/n",
                                           acd_callback_caller_id='"Shop" <+4930999000>'))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "ben", "agent", "a2")
    await set_demo_times(demo_ami, talk=(30, 30))
    try:
        async with aiohttp.ClientSession() as http:
            ada, ben = bearer(await login(http, d, "ada")), bearer(await login(http, d, "ben"))
            async with http.post(url(d, "/api/calls/dial"), json={"number": "+4930555111"}, headers=ada) as r:
                assert r.status == 409 and (await r.json())["error_id"] == "agent_state"   # Ada is available
            d.acd.agent_request("a1", "set_not_ready", "outbound")
            async with http.post(url(d, "/api/calls/dial"), json={"number": "+4930555111\r\n"}, headers=ada) as r:
                assert r.status == 422
            async with http.post(url(d, "/api/calls/dial"), json={"number": "+4930555111"}, headers=ada) as r:
                assert r.status == 201, await r.text()
                cid = (await r.json())["call_id"]
            # Ada's device (stay1) answers, then the customer (cti-demo-callee) does: two legs talking.
            await eventually(lambda: d.core.model.calls[cid].state == "talking", 20, what="Ada talks to the customer")
            legs = [leg.channel for leg in d.core.model.calls[cid].legs.values()]
            assert any(c.startswith("Local/+4930555111@cti-demo-callee") for c in legs)
            async with http.post(url(d, f"/api/calls/{cid}/hangup"), headers=ben) as r:
                assert r.status == 403
            async with http.post(url(d, f"/api/calls/{cid}/hangup"), headers=ada) as r:
                assert r.status == 200
            await eventually(lambda: cid not in d.core.model.calls, 10, what="ended")
        # Stored as Ada's outbound call to the number dialled, with the caller ID the customer saw.
        await eventually(lambda: d.core.writer.stats.buffered == 0, 10)
        conn = await asyncpg.connect(database)
        try:
            row = await conn.fetchrow("SELECT * FROM calls WHERE call_id = $1", cid)
        finally:
            await conn.close()
        assert row["direction"] == "outbound" and row["agent"] == "a1" and row["exten"] == "+4930555111"
        assert row["caller_num"] == "+4930999000" and row["agent_answered_at"] is not None
        assert row["ended_at"] is not None
    finally:
        await set_demo_times(demo_ami)
        await d.stop()
