"""The browser phone inside the agent desktop (/agent/), in headless Chromium against the real
daemon, ACD, Asterisk sandbox and PostgreSQL (docs/agent-client.md, "The phone in the desktop").

The first test carries a real WebRTC call (as test_softphone.py does for /phone/): like those,
it cannot pass inside the network namespace of scripts/test-isolated. The others need no media.
"""
from __future__ import annotations

import os
from pathlib import Path

from cti.demo import place_call
from tests.integration.conftest import eventually
from tests.integration import test_softphone
from tests.integration.test_softphone import add_agent_user, agent, service

phones = test_softphone.phones   # the fixture: the daemon with a phone gateway

PASSWORD = "correct horse battery"


async def desk_login(page, d, username: str = "pia") -> None:
    await page.goto(f"http://127.0.0.1:{d.settings.http_port}/agent/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector("#link:has-text('online')")


async def test_the_desktop_rings_accepts_and_hangs_up_with_its_browser_phone(phones, demo_ami, database, browser):
    d = phones
    s = service(d)
    await s.set_options("p1", auto_answer=False, zip_tone=False)
    await add_agent_user(database, "pia", "p1", PASSWORD)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await desk_login(page, d)
        await page.get_by_role("button", name="Use the browser phone").click()
        await page.wait_for_selector("#ph-registration:text-is('Ready to ring')", timeout=20_000)
        assert agent(d).device == "PJSIP/web-p1"
        await eventually(lambda: s.reach.up("web-p1") and agent(d).state == "available", timeout=10,
                         what="p1 available at the desktop's phone")
        placed = await place_call(demo_ami, caller_num="+442000000013", caller_name="Desk phone", patience=60,
                                  context="cti-demo-direct", caller_context="cti-demo-talker",
                                  variables={"CTI_QUEUE": "phones"})
        await page.wait_for_selector("#ph-call:text-is('Ringing')", timeout=20_000)
        assert (await page.title()).startswith("Ringing")
        assert await page.is_enabled("#ph-accept") and await page.is_enabled("#ph-reject")
        if os.environ.get("CTI_SCREENSHOT_DIR"):   # docs/screenshots/agent-offer.png
            await page.screenshot(path=str(Path(os.environ["CTI_SCREENSHOT_DIR"]) / "agent-offer.png"))
        await page.click("#ph-accept")
        await page.wait_for_selector("#ph-call:text-is('Talking')", timeout=20_000)
        await eventually(lambda: agent(d).state == "on_call", timeout=10, what="p1 on the call")
        assert not (await page.title()).startswith("Ringing")
        assert d.core.model.calls[placed.channel_id].agent == "p1"
        # The desktop's own Hang up (the API) ends the call, and the phone follows.
        await page.wait_for_selector("#btn-hangup:enabled", timeout=10_000)
        await page.click("#btn-hangup")
        await page.wait_for_selector("#ph-call:text-is('Call ended')", timeout=10_000)
        assert errors == []
    finally:
        await page.close()


async def test_the_phone_panel_offers_the_browser_phone_and_seats_the_agent_at_it(phones, database, browser):
    """No media needed: the panel shows the configured device, and "Use the browser phone"
    makes the browser phone the agent's seat and starts registering."""
    d = phones
    await add_agent_user(database, "pia", "p1", PASSWORD)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await desk_login(page, d)
        await page.wait_for_selector("#phone-panel", state="visible")
        assert await page.inner_text("#ph-device") == "Local/agent1@cti-demo-agents/n"
        assert await page.inner_text("#ph-registration") == "Off"
        assert await page.is_disabled("#ph-accept") and await page.is_disabled("#ph-reject")
        await page.get_by_role("button", name="Use the browser phone").click()
        await eventually(lambda: agent(d).device == "PJSIP/web-p1", timeout=10, what="seated at the browser phone")
        await page.wait_for_function(
            "document.getElementById('ph-registration').textContent !== 'Off'", timeout=10_000)
        # After a reload the desktop knows its device is a browser phone and starts it by itself.
        await page.reload()
        await page.wait_for_selector("#ph-device:text-is('this browser')", timeout=10_000)
        await page.wait_for_function(
            "document.getElementById('ph-registration').textContent !== 'Off'", timeout=10_000)
        assert errors == []
    finally:
        await page.close()


async def test_a_refused_microphone_is_explained_in_the_desktop(phones, database):
    from playwright.async_api import async_playwright

    from tests.integration.conftest import CHROMIUM

    await add_agent_user(database, "pia", "p1", PASSWORD)
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--use-fake-device-for-media-stream",
                                           "--deny-permission-prompts"])
        try:
            page = await (await b.new_context(permissions=[])).new_page()
            await desk_login(page, phones)
            await page.get_by_role("button", name="Use the browser phone").click()
            await page.wait_for_selector("#ph-error:not(:empty)", timeout=20_000)
            assert "Microphone access was refused" in await page.inner_text("#ph-error")
            assert await page.inner_text("#ph-registration") == "Off"
            assert agent(phones).device != "PJSIP/web-p1"   # not seated at a phone that cannot work
        finally:
            await b.close()
