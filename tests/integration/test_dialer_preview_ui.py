"""Preview mode in the agent desktop, in headless Chromium against the real daemon, ACD,
Asterisk sandbox and PostgreSQL (docs/dialer.md, "Preview on the desktop"): an agent takes
a preview lead, reads its card and script, skips one lead with a reason, calls the next
(click-to-dial reaches the simulated customer), fills the survey (its questions shown as the
answers branch) and saves the outcome; the attempt holds the call, the disposition and the
answers on the path taken, the lead is done, and the customer's record has the result."""
from __future__ import annotations

import json
from datetime import time

import asyncpg

from api.dialer_routes import PREVIEW_WINDOWS
from dialer import store
from dialer.lead_import import parse_leads
from dialer.windows import CallingWindow
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user
from tests.integration.test_desktop import DESKTOP_ACD

SCRIPT = "Hello, this is Example Surveys. <b>Do you have two minutes?</b>"
# Branching (docs/dialer.md, "Surveys and branching"): "no" asks why, then the comment; "yes" the plan.
SURVEY = [{"id": "satisfied", "text": "Are you satisfied with your router?", "type": "yes_no", "options": [],
           "branches": {"no": "why"}},
          {"id": "plan", "text": "Which plan do you have?", "type": "choice", "options": ["basic", "fibre"]},
          {"id": "comment", "text": "Anything to add?", "type": "text", "options": [], "next": "end"},
          {"id": "why", "text": "What is wrong with it?", "type": "text", "options": [], "next": "comment"}]


async def test_an_agent_works_a_preview_lead_through_script_survey_and_outcome(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0,
                                           acd_callback_dial="Local/{number}@cti-demo-callee/n"))
    # The test runs at any hour: the preview leads' window is open all day.
    d.runner.app[PREVIEW_WINDOWS].__init__(CallingWindow(hours={k: (time(0), time.max) for k in range(7)}))
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    page = await browser.new_page()
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        cid = await store.create_campaign(pool, "router survey", mode="preview", script=SCRIPT, survey=SURVEY)
        await pool.execute("INSERT INTO customers (customer_id, name) VALUES ('c-mary', 'Mary Major')")
        await pool.execute("INSERT INTO customer_phones (phone, customer_id) VALUES ('+442079460112', 'c-mary')")
        valid, _ = parse_leads("phone,name\n+442079460111,Skip Me\n+442079460112,Mary Major\n")
        assert (await store.import_leads(pool, cid, valid)).created == 2
        assert await store.set_campaign_state(pool, cid, "running")
        await add_user(database, "ada", "agent", "a1")

        await logged_in(page, d, "ada")
        await page.wait_for_selector("#state:has-text('available')")
        await page.get_by_role("button", name="Not ready", exact=True).click()   # click-to-dial needs it
        await page.wait_for_selector("#state:text-is('Not ready')")

        await page.get_by_role("button", name="Refresh campaigns").click()
        await page.wait_for_selector("#pv-campaign option:has-text('router survey')", state="attached")
        await page.get_by_role("button", name="Next lead").click()
        await page.wait_for_selector("#pv-name:text-is('Skip Me')")
        await page.get_by_label("Reason to skip").fill("customer asked for next week")
        await page.get_by_role("button", name="Skip", exact=True).click()
        await page.wait_for_selector("#pv-status:has-text('Lead skipped')")

        await page.get_by_role("button", name="Next lead").click()
        await page.wait_for_selector("#pv-name:text-is('Mary Major')")
        assert await page.inner_text("#pv-phone") == "+442079460112"
        assert await page.inner_text("#pv-script") == SCRIPT           # shown as text, never as markup
        assert await page.locator("#pv-script b").count() == 0
        await page.get_by_role("button", name="Call", exact=True).click()
        await page.wait_for_selector("#pv-status:has-text('placed to +442079460112')", timeout=10_000)

        # Only the first question until it is answered: its answer says what follows.
        for hidden in ("#pv-q-plan", "#pv-q-comment", "#pv-q-why"):
            assert not await page.is_visible(hidden), hidden
        await page.get_by_label("Are you satisfied with your router?").select_option("no")
        await page.get_by_label("What is wrong with it?").fill("the agent changes this answer away")
        assert await page.is_visible("#pv-q-comment") and not await page.is_visible("#pv-q-plan")
        await page.get_by_label("Are you satisfied with your router?").select_option("yes")
        assert not await page.is_visible("#pv-q-why")                  # off the path: hidden, not sent
        await page.get_by_label("Which plan do you have?").select_option("fibre")
        await page.get_by_label("Anything to add?").fill("faster upload please")
        await page.get_by_label("Call outcome").select_option("answered")
        await page.get_by_label("Lead disposition").fill("completed")
        await page.get_by_role("button", name="Save outcome").click()
        await page.wait_for_selector("#pv-status:has-text('the lead is now done')")

        conn = await asyncpg.connect(database)
        try:
            leads = {r["name"]: r for r in await conn.fetch("SELECT * FROM dialer_leads WHERE campaign_id = $1", cid)}
            (att,) = await conn.fetch("SELECT * FROM dialer_attempts WHERE campaign_id = $1", cid)
        finally:
            await conn.close()
        assert (leads["Skip Me"]["state"], leads["Skip Me"]["attempts"]) == ("retry", 0)
        assert leads["Skip Me"]["last_outcome"] == "skipped: customer asked for next week"
        assert (leads["Mary Major"]["state"], leads["Mary Major"]["last_outcome"]) == ("done", "completed")
        assert (att["outcome"], att["agent_id"], att["disposition"]) == ("answered", "ada", "completed")
        assert att["call_id"] and att["call_id"].startswith("dial-")
        assert json.loads(att["answers"]) == {"satisfied": "yes", "plan": "fibre", "comment": "faster upload please"}
        # The result on the customer record: a note by the agent, the call linked.
        conn = await asyncpg.connect(database)
        try:
            (note,) = await conn.fetch("SELECT * FROM customer_notes WHERE customer_id = 'c-mary'")
            linked = await conn.fetchval("SELECT call_id FROM customer_calls WHERE customer_id = 'c-mary'")
        finally:
            await conn.close()
        assert note["author"] == "ada" and note["body"].splitlines() == [
            "Campaign 'router survey': answered, disposition completed (lead now done).", "Survey:",
            "- Are you satisfied with your router? yes", "- Which plan do you have? fibre",
            "- Anything to add? faster upload please"]
        assert linked == att["call_id"]
    finally:
        await page.close()
        await pool.close()
        await d.stop()
        hangup_all()
