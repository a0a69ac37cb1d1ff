"""The agent desktop as an agent meets it, in headless Chromium against the real
daemon, ACD, Asterisk sandbox and PostgreSQL: the login form, the favicon, a
reload during a call and in wrap-up, safe wrap-up, honest state and a fuller
screen-pop (docs/agent-client.md; issue 24)."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import asyncpg

from api import screenpop
from api.ws import WS
from crm.customer_lookup import save_customer
from cti.demo import place_call
from tests.integration.conftest import eventually, hangup_all
from tests.integration.test_api import PASSWORD, add_user, url
from tests.integration.test_desktop import started


async def logged_in(page, d, username: str) -> None:
    await page.goto(url(d, "/agent/"))
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector("#link:has-text('online')")


async def ring_ada(d, demo_ami, name: str, number: str):
    """A caller through the sales queue, answered by Ada's device (stays on the line)."""
    call = await place_call(demo_ami, caller_num=number, caller_name=name, patience=120,
                            context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
    await eventually(lambda: call.channel_id in d.core.model.calls
                     and d.core.model.calls[call.channel_id].agent == "a1"
                     and d.core.model.calls[call.channel_id].state == "talking", 30, what="Ada talking")
    return call


def push_pop(d, call_id: str, phase: str, name: str, number: str, *, answered: bool) -> None:
    """A screen-pop for ``call_id`` to Ada, sent on the hub as the desktop sends them."""
    now = time.time()
    view = {"caller_num": number, "caller_name": name, "direction": "inbound", "state": "talking",
            "started_at": now - 30, "agent": "a1", "agent_answered_at": now - 20 if answered else None,
            "ended_at": now if phase == "ended" else None}
    msg = screenpop.card(screenpop.Pop(call_id, "a1", phase), None, view, now, lookup={"status": "not_found"})
    d.runner.app[WS].push(msg, frozenset({"a1"}))


async def execute(dsn: str, sql: str, *args) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_the_login_form_hides_the_desktop_until_login_and_itself_after(
        asterisk, database, tmp_path, browser):
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    page = await browser.new_page()
    try:
        await page.goto(url(d, "/agent/"))
        assert await page.is_visible("#login-view")
        assert await page.is_hidden("#main")
        assert await page.is_hidden("#btn-ready")
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("#link:has-text('online')")
        assert await page.is_visible("#main")
        assert await page.is_hidden("#login-view")
        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_selector("#login-view", state="visible")
        assert await page.is_hidden("#main")
    finally:
        await page.close()
        await d.stop()


async def test_every_page_has_a_favicon(asterisk, database, tmp_path, browser):
    d = await started(database, tmp_path)
    page = await browser.new_page()
    try:
        for path in ("/agent/", "/wallboard/", "/phone/", "/docs"):
            await page.goto(url(d, path))
            # What the browser asks for: the page's icon link, else /favicon.ico (outside the page's CSP).
            icon = await page.evaluate("""() => {
                const link = document.querySelector("link[rel~='icon']");
                return link ? link.href : new URL("/favicon.ico", location.href).href;
            }""")
            r = await page.request.get(icon)
            assert (r.status, r.headers.get("content-type")) == (200, "image/x-icon"), f"{path}: {r.status}"
            assert (await r.body())[:4] == b"\x00\x00\x01\x00"   # an ICO file
    finally:
        await page.close()
        await d.stop()


async def test_a_reload_during_a_call_and_in_wrap_up_rebuilds_the_call_and_the_acd_countdown(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    page = await browser.new_page()
    try:
        await logged_in(page, d, "ada")
        await page.wait_for_selector("#state:has-text('available')")
        await ring_ada(d, demo_ami, "Reload Test", "+4930555061")
        await page.wait_for_selector("#btn-hangup:not([disabled])", timeout=20_000)

        await page.reload()
        await page.wait_for_selector("#link:has-text('online')")
        await page.wait_for_selector("#card", state="visible", timeout=10_000)
        assert await page.inner_text("#cust-name") == "Reload Test"
        assert await page.is_enabled("#btn-hangup") and await page.is_enabled("#btn-hold")
        assert await page.inner_text("#phase") == "Talking"
        assert await page.inner_text("#state") == "On call"

        await page.get_by_role("button", name="Hang up").click()
        await page.wait_for_selector("#wrapup-panel", state="visible", timeout=10_000)
        await page.wait_for_selector("#state:text-is('Wrap-up')", timeout=10_000)
        # The ACD's countdown (wrapup_s = 30 in desktop-acd.toml), not the time spent in wrap-up.
        await page.wait_for_selector("#state-timer-label:text-is('ends in')", timeout=5_000)
        first = await page.inner_text("#state-timer")
        await page.wait_for_timeout(2_100)
        later = await page.inner_text("#state-timer")
        seconds = lambda t: int(t.split(":")[0]) * 60 + int(t.split(":")[1])  # noqa: E731
        assert 20 <= seconds(first) <= 30 and seconds(later) < seconds(first), (first, later)

        await page.reload()
        await page.wait_for_selector("#link:has-text('online')")
        await page.wait_for_selector("#wrapup-panel", state="visible", timeout=10_000)
        assert "Reload Test" in await page.inner_text("#wrapup-call-label")
        assert await page.inner_text("#state") == "Wrap-up"
        assert 15 <= seconds(await page.inner_text("#state-timer")) < seconds(first)
        assert "Wrap-up time left" in await page.inner_text("#wrapup-countdown")
        await page.get_by_label("Disposition", exact=True).select_option("resolved")
        await page.get_by_role("button", name="Save wrap-up").click()
        await page.wait_for_selector("#wrapup-panel", state="hidden")
        await page.reload()
        await page.wait_for_selector("#link:has-text('online')")
        await page.wait_for_timeout(500)
        assert await page.is_hidden("#wrapup-panel")   # saved: nothing to rebuild
    finally:
        await page.close()
        await d.stop()


async def test_wrap_up_names_its_call_is_never_replaced_by_the_next_and_errors_stay_with_their_call(
        asterisk, database, tmp_path, browser):
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    for cid, name in (("ui-x", "Xavier"), ("ui-y", "Yolanda")):
        await execute(database, "INSERT INTO calls (call_id, state, direction, caller_name, started_at, agent)"
                                " VALUES ($1, 'ended', 'inbound', $2, now(), 'a1')", cid, name)
    page = await browser.new_page()
    try:
        await logged_in(page, d, "ada")
        for phase in ("offered", "answered", "ended"):
            push_pop(d, "ui-x", phase, "Xavier", "+4930555071", answered=phase != "offered")
        await page.wait_for_selector("#wrapup-panel", state="visible")
        assert "Xavier" in await page.inner_text("#wrapup-call-label")
        await page.get_by_label("Notes").fill("about Xavier")

        # The next call: an error of it (hanging up a call the daemon does not know)...
        push_pop(d, "ui-y", "offered", "Yolanda", "+4930555072", answered=False)
        push_pop(d, "ui-y", "answered", "Yolanda", "+4930555072", answered=True)
        await page.wait_for_selector("#cust-name:text-is('Yolanda')")
        await page.get_by_role("button", name="Hang up").click()
        await page.wait_for_selector("#call-error:has-text('ui-y')")
        # ... it ends: Xavier's form stays as the agent left it; Yolanda's waits its turn.
        push_pop(d, "ui-y", "ended", "Yolanda", "+4930555072", answered=True)
        await page.wait_for_selector("#wrapup-more:has-text('1 more call')")
        assert "Xavier" in await page.inner_text("#wrapup-call-label")
        assert await page.input_value("#notes") == "about Xavier"
        # A new call does not inherit the last one's error.
        push_pop(d, "ui-z", "offered", "Zoe", "+4930555073", answered=False)
        await page.wait_for_selector("#cust-name:text-is('Zoe')")
        assert (await page.inner_text("#call-error")).strip() == ""

        await page.get_by_label("Disposition", exact=True).select_option("resolved")
        await page.get_by_role("button", name="Save wrap-up").click()
        await page.wait_for_selector("#wrapup-call-label:has-text('Yolanda')")
        assert await page.input_value("#notes") == ""
        assert await page.is_hidden("#wrapup-more")
        await page.get_by_label("Disposition", exact=True).select_option("callback")
        await page.get_by_role("button", name="Save wrap-up").click()
        await page.wait_for_selector("#wrapup-panel", state="hidden")
    finally:
        await page.close()
        await d.stop()


async def test_a_not_ready_asked_mid_call_shows_pending_and_a_late_event_keeps_the_current_card(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    page = await browser.new_page()
    try:
        await logged_in(page, d, "ada")
        await page.wait_for_selector("#state:has-text('available')")
        await ring_ada(d, demo_ami, "Current Caller", "+4930555062")
        await page.wait_for_selector("#btn-hangup:not([disabled])", timeout=20_000)

        await page.select_option("#nr-reason", "lunch")
        await page.get_by_role("button", name="Not ready", exact=True).click()
        await page.wait_for_selector("#state-pending", state="visible")
        assert "Not ready (lunch)" in await page.inner_text("#state-pending")
        assert await page.inner_text("#state") == "On call"
        await page.reload()    # the pending state comes back from the API too
        await page.wait_for_selector("#state-pending:has-text('Not ready (lunch)')", timeout=10_000)
        await page.wait_for_selector("#cust-name:text-is('Current Caller')")

        # Late events of a call Ada transferred away do not replace the card of the call she is on.
        push_pop(d, "ui-old", "transferred", "Old Caller", "+4930555063", answered=True)
        push_pop(d, "ui-old", "ended", "Old Caller", "+4930555063", answered=True)
        await page.wait_for_selector("#wrapup-call-label:has-text('Old Caller')")
        assert await page.inner_text("#cust-name") == "Current Caller"
        assert await page.inner_text("#phase") == "Talking"
        assert await page.is_enabled("#btn-hangup")
    finally:
        await page.close()
        await d.stop()


async def test_the_pop_in_words_with_local_times_every_customer_call_live_tickets_and_buttons_that_can_act(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await started(database, tmp_path)
    conn = await asyncpg.connect(database)
    try:
        await save_customer(conn, "C-88", "Linus Torvalds", ["+4930555088"], language="en")
        # An earlier call from the customer's number, linked to no ticket.
        await conn.execute("INSERT INTO calls (call_id, state, direction, caller_num, started_at, ended_at)"
                           " VALUES ('ui-earlier', 'ended', 'inbound', '+4930555088', $1, $2)",
                           datetime(2026, 1, 2, 15, 4, tzinfo=timezone.utc),
                           datetime(2026, 1, 2, 15, 9, tzinfo=timezone.utc))
    finally:
        await conn.close()
    await add_user(database, "ada", "agent", "a1")
    d.acd.agent_request("a1", "set_not_ready", "test")
    context = await browser.new_context(locale="de-DE", timezone_id="America/New_York")
    page = await context.new_page()
    try:
        await logged_in(page, d, "ada")
        await page.wait_for_selector("#state:text-is('Not ready')")
        assert await page.is_disabled("#btn-end-wrapup")
        assert await page.is_disabled("#btn-new-ticket")         # no call, no customer
        assert await page.is_disabled("#btn-xfer-complete") and await page.is_disabled("#btn-xfer-cancel")
        await page.get_by_role("button", name="Ready", exact=True).click()
        await page.wait_for_selector("#state:text-is('Available')")
        assert await page.is_disabled("#btn-dial")                # click-to-dial needs not ready

        await ring_ada(d, demo_ami, "L T", "+4930555088")
        await page.wait_for_selector("#cust-name:text-is('Linus Torvalds')", timeout=20_000)
        await page.wait_for_selector("#btn-hangup:not([disabled])", timeout=20_000)
        assert await page.inner_text("#state") == "On call"
        # Every call of the customer's, in the agent's locale and time zone (15:04 UTC = 10:04 in New York).
        recent = await page.text_content("#recent")
        assert "02.01.2026" in recent and "10:04" in recent and not re.search(r"\d{4}-\d\d-\d\dT", recent), recent
        # Nothing to complete or cancel without an attended transfer under way.
        assert await page.is_disabled("#btn-xfer-complete") and await page.is_disabled("#btn-xfer-cancel")
        assert await page.is_enabled("#btn-transfer")

        # A ticket created from the card joins its open tickets.
        assert await page.inner_text("#ticket-count") == "0"
        await page.get_by_role("button", name="New ticket").click()
        await page.wait_for_selector("#ticket-create-panel", state="visible")
        await page.get_by_label("Title").first.fill("Kernel panics")
        await page.get_by_role("button", name="Create ticket").click()
        await page.wait_for_selector("#ticket-count:text-is('1')")
        assert "Kernel panics" in await page.text_content("#tickets")

        await page.get_by_role("button", name="Hang up").click()
        await page.wait_for_selector("#state:text-is('Wrap-up')", timeout=10_000)
        assert await page.is_enabled("#btn-end-wrapup")
    finally:
        await context.close()
        await d.stop()


async def test_an_idle_desktop_pings_and_keeps_the_seq_its_pong_carries(asterisk, database, tmp_path, browser):
    """docs/scale-out.md: the pong carries the stream's latest seq; the page pings every 25 s and
    keeps it, so an idle desktop moved to another API node resumes instead of resyncing."""
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    page = await browser.new_page()
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    try:
        await page.clock.install()
        await page.goto(url(d, "/agent/"))
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("#link:has-text('online')")
        assert not [f for f in sent if '"ping"' in f]
        push_pop(d, "c-ping", "offered", "Idle Test", "+442000000099", answered=False)
        await page.wait_for_selector("#card:not([hidden])")
        latest = await page.evaluate("() => Number(sessionStorage.getItem('seq'))")
        assert latest > 0
        await page.evaluate("() => sessionStorage.setItem('seq', '0')")   # as if behind the stream
        await page.clock.run_for(26_000)
        await eventually(lambda: any('"ping"' in f for f in sent), timeout=10, what="a ping sent")

        async def caught_up() -> bool:
            return await page.evaluate("() => Number(sessionStorage.getItem('seq'))") == latest
        await eventually(caught_up, timeout=10, what="the pong's seq kept")
    finally:
        await page.close()
        await d.stop()
