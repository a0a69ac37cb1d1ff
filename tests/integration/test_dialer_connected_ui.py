"""A campaign call connected to an agent, in the agent desktop in headless Chromium against
the real daemon and PostgreSQL (docs/dialer.md, "The agent's result"): the campaign.lead
message the runner's hook pushes on the hub (``push_campaign_card``) shows the lead card,
the script and the survey in the campaign panel, with nothing to dial or skip; the agent
fills the survey and saves the outcome: the lead is done with the disposition and the
answers. The attempt is made answered and connected by the store as the runner makes it
(the real calls are tests/integration/test_dialer_agent_result.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import asyncpg

from api.dialer_routes import push_campaign_card
from dialer import store
from dialer.lead_import import parse_leads
from dialer.leads import RetryRules
from dialer.windows import WindowChecker
from tests.integration.conftest import daemon_settings, eventually, start_daemon
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user
from tests.integration.test_desktop import DESKTOP_ACD
from tests.integration.test_dialer_runner import ALWAYS

SURVEY = [{"id": "satisfied", "text": "Are you satisfied with your router?", "type": "yes_no", "options": []},
          {"id": "comment", "text": "Anything to add?", "type": "text", "options": []}]


async def test_a_connected_campaign_call_pops_its_lead_and_the_agent_saves_the_outcome(
        asterisk, database, tmp_path, browser):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=DESKTOP_ACD, acd_announce_every=0))
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    page = await browser.new_page()
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        cid = await store.create_campaign(pool, "renewals", mode="progressive", queue="sales",
                                          script="Good morning, about your renewal.", survey=SURVEY)
        valid, _ = parse_leads("phone,name\n+442079460121,Mary Major\n")
        assert (await store.import_leads(pool, cid, valid)).created == 1
        await add_user(database, "ada", "agent", "a1")
        await logged_in(page, d, "ada")

        now = datetime.now(timezone.utc)
        (taken,) = await store.take_for_dialing(pool, cid, now, 1, rules=RetryRules(), windows=WindowChecker(ALWAYS))
        call_id = f"dialer-{taken.attempt_id}-1"
        await store.record_outcome(pool, taken.attempt_id, "answered", now, rules=RetryRules(), call_id=call_id,
                                   amd_status="HUMAN", agent_id="a1")
        assert await push_campaign_card(d.runner.app, taken.attempt_id, call_id, "a1")

        await page.wait_for_selector("#pv-name:text-is('Mary Major')")
        assert await page.inner_text("#pv-phone") == "+442079460121"
        assert await page.inner_text("#pv-script") == "Good morning, about your renewal."
        assert await page.is_disabled("#pv-call") and await page.is_disabled("#pv-skip")
        assert "renewals" in await page.inner_text("#pv-status")
        await page.get_by_label("Are you satisfied with your router?").select_option("no")
        await page.get_by_label("Anything to add?").fill("too expensive")
        await page.get_by_label("Lead disposition").fill("not_interested")
        await page.get_by_role("button", name="Save outcome").click()
        await page.wait_for_selector("#pv-status:has-text('the lead is now done')")

        conn = await asyncpg.connect(database)
        try:
            (lead,) = await conn.fetch("SELECT * FROM dialer_leads WHERE campaign_id = $1", cid)
            (att,) = await conn.fetch("SELECT * FROM dialer_attempts WHERE campaign_id = $1", cid)
        finally:
            await conn.close()
        assert (lead["state"], lead["last_outcome"]) == ("done", "not_interested")
        assert (att["outcome"], att["agent_id"], att["call_id"]) == ("answered", "a1", call_id)
        assert att["disposition"] == "not_interested" and att["result_at"] is not None
        assert json.loads(att["answers"]) == {"satisfied": "no", "comment": "too expensive"}
    finally:
        await page.close()
        await pool.close()
        await d.stop()
