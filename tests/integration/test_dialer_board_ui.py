"""In headless Chromium against the real daemon and PostgreSQL (docs/dialer.md): a reloaded
agent desktop shows again the campaign attempt awaiting the agent's result (a call the
dialer connected, then the agent's own preview dial) and saves it; the supervisors'
campaign board on the wallboard shows each campaign's day and abandonment against its cap
and starts and pauses it."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import asyncpg

from dialer import store
from dialer.campaign_rules import window_to_json
from dialer.lead_import import parse_leads
from dialer.leads import RetryRules
from dialer.windows import CallingWindow, WindowChecker
from tests.integration.conftest import daemon_settings, eventually, start_daemon
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user
from tests.integration.test_desktop import DESKTOP_ACD
from tests.integration.test_wallboard_ui import open_board

ALWAYS = CallingWindow(hours={d: (time(0), time.max) for d in range(7)})
SURVEY = [{"id": "satisfied", "text": "Are you satisfied with your router?", "type": "yes_no", "options": []}]


async def _state(pool, cid: int) -> str:
    return await pool.fetchval("SELECT state FROM dialer_campaigns WHERE campaign_id = $1", cid)


async def test_a_reloaded_desktop_shows_the_attempt_awaiting_the_agents_result(asterisk, database, tmp_path, browser):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0))
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        cid = await store.create_campaign(pool, "renewals", mode="progressive", queue="sales",
                                          script="Good morning, about your renewal.", survey=SURVEY)
        valid, _ = parse_leads("phone,name\n+442079460121,Mary Major\n")
        assert (await store.import_leads(pool, cid, valid)).created == 1
        await add_user(database, "ada", "agent", "a1")
        # A call the dialer connected to Ada while her desktop was not open: no card was pushed to her.
        now = datetime.now(timezone.utc)
        (taken,) = await store.take_for_dialing(pool, cid, now, 1, rules=RetryRules(), windows=WindowChecker(ALWAYS))
        call_id = f"dialer-{taken.attempt_id}-1"
        await store.record_outcome(pool, taken.attempt_id, "answered", now, rules=RetryRules(), call_id=call_id,
                                   amd_status="HUMAN", agent_id="a1")

        await logged_in(page, d, "ada")
        await page.wait_for_selector("#pv-name:text-is('Mary Major')", timeout=10_000)
        assert "renewals" in await page.inner_text("#pv-status")
        assert await page.is_disabled("#pv-call") and await page.is_disabled("#pv-skip")
        await page.reload()                                   # and again after a reload
        await page.wait_for_selector("#pv-name:text-is('Mary Major')", timeout=10_000)
        await page.get_by_label("Are you satisfied with your router?").select_option("yes")
        await page.get_by_label("Lead disposition").fill("renewed")
        await page.get_by_role("button", name="Save outcome").click()
        await page.wait_for_selector("#pv-status:has-text('the lead is now done')")
        att = await pool.fetchrow("SELECT * FROM dialer_attempts WHERE attempt_id = $1", taken.attempt_id)
        assert (att["disposition"], att["call_id"]) == ("renewed", call_id) and att["result_at"] is not None

        # Her own preview dial, the page reloaded before she saved its outcome.
        pv = await store.create_campaign(pool, "follow-ups", mode="preview", survey=SURVEY,
                                         windows=window_to_json(ALWAYS))
        valid, _ = parse_leads("phone,name\n+442079460122,John Doe\n")
        assert (await store.import_leads(pool, pv, valid)).created == 1
        assert await store.set_campaign_state(pool, pv, "running")
        await page.reload()
        await page.wait_for_selector("#link:has-text('online')")
        assert await page.is_hidden("#pv-card")                # nothing awaits her now
        await page.get_by_role("button", name="Refresh campaigns").click()
        await page.wait_for_selector("#pv-campaign option:has-text('follow-ups')", state="attached")
        await page.get_by_role("button", name="Next lead").click()
        await page.wait_for_selector("#pv-name:text-is('John Doe')")
        await page.get_by_role("button", name="Call", exact=True).click()
        await eventually(lambda: pool.fetchval("SELECT attempt_id FROM dialer_attempts WHERE campaign_id = $1", pv),
                         timeout=10, what="the preview attempt")
        await page.reload()
        await page.wait_for_selector("#pv-name:text-is('John Doe')", timeout=10_000)
        assert "waits for its outcome" in await page.inner_text("#pv-status")
        await page.get_by_label("Call outcome").select_option("busy")
        await page.get_by_role("button", name="Save outcome").click()
        await page.wait_for_selector("#pv-status:has-text('the lead is now retry')")
        assert errors == []
    finally:
        await page.close()
        await pool.close()
        await d.stop()


async def test_the_campaign_board_shows_each_campaign_and_starts_and_pauses_it(asterisk, database, tmp_path,
                                                                               browser):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0))
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        cid = await store.create_campaign(pool, "renewals", mode="predictive", queue="sales", abandon_cap=0.02)
        phones = [f"+4420794602{i:02d}" for i in range(12)]
        valid, _ = parse_leads("phone\n" + "\n".join(phones) + "\n")
        assert (await store.import_leads(pool, cid, valid)).created == 12
        # Today: ten dials, 8 people, 6 connected, 2 of them abandoned: 25% against a 2% cap.
        now = datetime.now(timezone.utc)
        taken = await store.take_for_dialing(pool, cid, now - timedelta(minutes=5), 10, rules=RetryRules(),
                                             windows=WindowChecker(ALWAYS))
        for i, t in enumerate(taken):
            outcome = "answered" if i < 6 else "abandoned" if i < 8 else "busy"
            await store.record_outcome(pool, t.attempt_id, outcome, now - timedelta(minutes=4), rules=RetryRules(),
                                       amd_status="HUMAN" if i < 8 else None, agent_id="a1" if i < 6 else None)
        await add_user(database, "sam", "supervisor")

        page, errors = await open_board(browser, d, "sam")
        row = page.locator(f"#campaigns tr[data-campaign='{cid}']")
        await row.wait_for(timeout=10_000)
        cells = [c.strip() for c in await row.locator("td").all_inner_texts()]
        # name, state, dialed, connected, connect rate, in flight and dial level (no runner
        # here), abandoned
        assert cells[1:8] == ["stopped", "10", "6", "60.0%", "–", "–", "2"]
        assert cells[8:11] == ["25.0%", "25.0%", "2.0%"]       # 24 h, 30 days, the cap
        assert cells[11] == "6"                                # leads left: 2 new, 4 to retry
        assert await row.locator("td.over").count() == 2         # both windows over the cap, marked
        assert await row.get_by_role("button", name="Pause renewals").is_disabled()

        await row.get_by_role("button", name="Start renewals").click()
        await page.wait_for_selector("#campaigns-feedback:has-text('renewals: running')")
        await eventually(lambda: page.locator(f"#campaigns tr[data-campaign='{cid}'] td.cstate.running").count(),
                         timeout=8, what="the row says running")
        assert await _state(pool, cid) == "running"
        await page.get_by_role("button", name="Pause renewals").click()
        await page.wait_for_selector("#campaigns-feedback:has-text('renewals: paused')")
        assert await _state(pool, cid) == "paused"
        await page.get_by_role("button", name="Stop renewals").click()
        await page.wait_for_selector("#campaigns-feedback:has-text('renewals: stopped')")
        assert await _state(pool, cid) == "stopped"
        # Every running campaign paused at once.
        assert await store.set_campaign_state(pool, cid, "running")
        await page.get_by_role("button", name="Pause every campaign now").click()
        await page.wait_for_selector("#campaigns-feedback:has-text('Paused every running campaign (1)')")
        assert await _state(pool, cid) == "paused"
        assert errors == []
        await page.context.close()
    finally:
        await pool.close()
        await d.stop()
