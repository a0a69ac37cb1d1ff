"""The emergency banner in headless Chromium (docs/emergency.md, "The banner"): it appears
on an agent's desktop within 2 s of a switch, names it, and goes when it is switched off;
the wallboard shows it too."""
from __future__ import annotations

import time

import aiohttp

from tests.integration.conftest import eventually
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user, bearer, login, url
from tests.integration.test_desktop import started


async def test_the_banner_shows_a_switch_on_the_agent_desktop_within_2s_and_goes_when_it_ends(
        asterisk, database, tmp_path, browser):
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "boss", "supervisor")
    page = await browser.new_page()
    board = await browser.new_page()
    try:
        async with aiohttp.ClientSession() as http:
            sup = bearer(await login(http, d, "boss"))
            await logged_in(page, d, "ada")
            await board.goto(url(d, "/wallboard/"))
            await board.evaluate("t => sessionStorage.setItem('cti.token', t)", sup["Authorization"][7:])
            await board.reload()
            assert await page.locator("#emergency-banner").count() == 0
            t0 = time.time()
            async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
                    "scope": "queue", "value": "sales", "action": "voicemail", "reason": "storm <b>warning</b>",
                    "confirm": True}) as r:
                assert r.status == 201, await r.text()
                switch = await r.json()
            await page.wait_for_selector("#emergency-banner", timeout=5000)
            seen = time.time() - t0
            print(f"emergency: banner on the agent desktop {seen:.2f} s after the switch")
            assert seen < 2.0
            text = await page.inner_text("#emergency-banner")
            assert "EMERGENCY" in text and "queue sales" in text and "storm <b>warning</b>" in text  # text, not markup
            await board.wait_for_selector("#emergency-banner", timeout=5000)
            async with http.post(url(d, f"/api/emergency/switches/{switch['id']}/end"), headers=sup,
                                 json={"reason": "passed", "confirm": True}) as r:
                assert r.status == 200
            await page.wait_for_selector("#emergency-banner", state="detached", timeout=5000)
            await eventually(lambda: d.runner.app is not None, 1)
    finally:
        await page.close()
        await board.close()
        await d.stop()
