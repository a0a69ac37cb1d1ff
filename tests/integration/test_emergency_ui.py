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


async def test_a_supervisor_switches_an_emergency_on_and_off_from_the_wallboard(asterisk, database, tmp_path, browser):
    """The wallboard's control (api/static/wallboard/emergency.js): a reason is required, the
    switch is declared only once confirmed, the page says what happened, the banner follows,
    and switching off asks for a reason and a confirmation too; both audited by name."""
    d = await started(database, tmp_path)
    await add_user(database, "boss", "supervisor")
    board = await browser.new_page()
    try:
        async with aiohttp.ClientSession() as http:
            sup = bearer(await login(http, d, "boss"))
            await board.goto(url(d, "/wallboard/"))
            await board.evaluate("t => sessionStorage.setItem('cti.token', t)", sup["Authorization"][7:])
            await board.reload()
            await board.click("#em-details summary")
            await board.select_option("#em-scope", "queue")
            await board.fill("#em-value", "sales")
            await board.select_option("#em-action", "voicemail")
            await board.click("#em-on")                                   # no reason yet
            assert "reason is required" in await board.inner_text("#em-feedback")
            await board.fill("#em-reason", "flooded building")
            await board.click("#em-on")
            confirm = await board.inner_text("#em-confirm")
            assert "queue sales" in confirm and "voicemail" in confirm

            async def switches(include_ended=False):
                async with http.get(url(d, f"/api/emergency/switches?include_ended={str(include_ended).lower()}"),
                                    headers=sup) as r:
                    return (await r.json())["switches"]
            assert await switches() == []                                 # nothing before the confirmation
            await board.click("#em-confirm-on")
            await board.locator("#em-feedback", has_text="is on").wait_for(timeout=5000)   # the page's CSP: no eval
            [s] = await switches()
            assert (s["scope"], s["value"], s["action"], s["reason"], s["declared_by"]) == (
                "queue", "sales", "voicemail", "flooded building", "boss")
            await board.wait_for_selector("#emergency-banner", timeout=5000)
            row = board.locator(f"#em-open tr[data-id='{s['id']}']")
            await row.locator(".em-off").click()                          # no reason to end yet
            assert "reason is required" in await board.inner_text("#em-feedback")
            await row.locator(".em-end-reason").fill("water pumped out")
            await row.locator(".em-off").click()
            await row.locator(".em-confirm-off").click()
            await board.locator("#em-feedback", has_text="is off").wait_for(timeout=5000)
            [ended] = await switches(include_ended=True)
            assert (ended["ended_by"], ended["ended_reason"]) == ("boss", "water pumped out")
            await board.wait_for_selector("#emergency-banner", state="detached", timeout=5000)
    finally:
        await board.close()
        await d.stop()
