"""Wrap-up in the agent desktop with a queue that lets the agent extend it and requires a
disposition (tests/integration/desktop-wrapup-acd.toml), in headless Chromium against the real
daemon, ACD, Asterisk sandbox and PostgreSQL. The rules themselves are the router's
(tests/unit/test_acd_wrapup.py); this shows the ACD enforces them behind the page."""
from __future__ import annotations

import os
from pathlib import Path

from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_agent_desktop_ui import logged_in, ring_ada
from tests.integration.test_api import add_user

WRAPUP_ACD = Path(__file__).with_name("desktop-wrapup-acd.toml")


async def test_wrap_up_can_be_extended_and_ready_waits_for_the_required_disposition(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=WRAPUP_ACD, acd_announce_every=0))
    await add_user(database, "ada", "agent", "a1")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        await logged_in(page, d, "ada")
        await page.wait_for_selector("#state:text-is('Available')")
        call = await ring_ada(d, demo_ami, "Wrap Test", "+4930555071")
        await page.wait_for_selector("#btn-hangup:not([disabled])", timeout=20_000)
        await page.get_by_role("button", name="Hang up", exact=True).click()
        await page.wait_for_selector("#state:text-is('Wrap-up')", timeout=10_000)
        await page.wait_for_selector("#wrapup-due:has-text('needs the disposition')")
        assert call.channel_id in await page.inner_text("#wrapup-due")

        # More time: wrapup_s 8, +20 per click, at most 60 after the call.
        view = d.acd.router.agent_state("a1")
        before = view.wrapup_ends_at
        assert view.wrapup_max_at is not None and before is not None
        await page.get_by_role("button", name="More wrap-up time").click()
        await eventually(lambda: d.acd.router.agent_state("a1").wrapup_ends_at == before + 20, timeout=5,
                         what="wrap-up extended by 20 s")
        await page.wait_for_function(
            "() => { const t = document.getElementById('state-timer').textContent.split(':');"
            " return +t[0] * 60 + +t[1] > 12; }", timeout=5_000)
        await page.get_by_role("button", name="More wrap-up time").click()
        await page.get_by_role("button", name="More wrap-up time").click()
        await page.wait_for_selector("#btn-extend-wrapup:disabled", timeout=5_000)   # at the longest
        if os.environ.get("CTI_SCREENSHOT_DIR"):   # docs/screenshots/agent-wrapup.png
            await page.screenshot(path=str(Path(os.environ["CTI_SCREENSHOT_DIR"]) / "agent-wrapup.png"))
        assert d.acd.router.agent_state("a1").wrapup_ends_at == view.wrapup_max_at

        # Ready is refused by the ACD (not only the page) while the disposition is due.
        await page.get_by_role("button", name="End wrap-up").click()
        await page.wait_for_selector("#state-error:has-text('disposition')")
        assert d.acd.router.agent_state("a1").state == "wrapup"
        await page.get_by_label("Disposition", exact=True).select_option("resolved")
        await page.get_by_role("button", name="Save wrap-up").click()
        await page.wait_for_selector("#wrapup-due", state="hidden", timeout=5_000)
        assert d.acd.router.agent_state("a1").disposition_due is None
        await page.get_by_role("button", name="End wrap-up").click()
        await page.wait_for_selector("#state:text-is('Available')", timeout=5_000)
        assert errors == []
    finally:
        await page.close()
        await d.stop()
        hangup_all()
