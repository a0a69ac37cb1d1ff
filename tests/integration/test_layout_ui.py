"""The agent desktop and the wallboard at a laptop's 1366x768 and a phone's 390x844, in real
Chromium: no horizontal scrolling of the page, the key controls visible and inside the width.
Screenshots go to CTI_SCREENSHOT_DIR when set (docs/screenshots/ was made so), else tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import hangup_all
from tests.integration.test_agent_desktop_ui import ring_ada
from tests.integration.test_api import PASSWORD, add_user, url
from tests.integration.test_desktop import started
from tests.integration import test_wallboard
from tests.integration.test_wallboard import call

centre = test_wallboard.centre   # the fixture: the daemon with the ACD and a supervisor

SIZES = {"1366": (1366, 768), "390": (390, 844)}


def shot_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CTI_SCREENSHOT_DIR") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


async def overflow(page) -> int:
    """How many CSS pixels the page is wider than its window (0: no horizontal scroll)."""
    return await page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth")


async def too_wide(page) -> list[str]:
    """The innermost elements reaching past the window's right edge (what to fix)."""
    return await page.evaluate("""() => {
        const w = window.innerWidth, out = [];
        for (const el of document.querySelectorAll("body *")) {
            const r = el.getBoundingClientRect();
            if (r.right > w + 0.5 && r.width > 0 && ![...el.children].some(
                    (c) => c.getBoundingClientRect().right > w + 0.5)) {
                out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} right=${Math.round(r.right)}`);
            }
        }
        return out.slice(0, 8);
    }""")


async def inside(page, selector: str, width: int) -> None:
    el = page.locator(selector).first
    assert await el.is_visible(), f"{selector} hidden"
    box = await el.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box)


@pytest.mark.parametrize("size", SIZES)
async def test_the_agent_desktop_fits_laptops_and_phones(size, asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    width, height = SIZES[size]
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    ctx = await browser.new_context(viewport={"width": width, "height": height})
    page = await ctx.new_page()
    try:
        await page.goto(url(d, "/agent/"))
        assert await overflow(page) <= 0
        await inside(page, "#login-form button[type=submit]", width)
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("#link:has-text('online')")
        await ring_ada(d, demo_ami, "Layout Test", "+4930555081")
        await page.wait_for_selector("#btn-hangup:not([disabled])", timeout=20_000)
        assert await overflow(page) <= 0, (size, await too_wide(page))
        for sel in ("#state", "#btn-ready", "#btn-not-ready", "#cust-name", "#btn-hold", "#btn-hangup",
                    "#xfer-value", "#btn-transfer", "#dial-number"):
            await inside(page, sel, width)
        await page.screenshot(path=str(shot_dir(tmp_path) / f"agent-{size}.png"))
    finally:
        await ctx.close()
        await d.stop()
        hangup_all()


@pytest.mark.parametrize("size", SIZES)
async def test_the_wallboard_fits_laptops_and_phones(size, centre, demo_ami, browser, tmp_path):
    width, height = SIZES[size]
    ctx = await browser.new_context(viewport={"width": width, "height": height})
    page = await ctx.new_page()
    try:
        await page.goto(url(centre, "/wallboard/"))
        await page.fill("input[name=username]", "sam")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("#login button")
        await page.wait_for_selector("#status.live", timeout=10_000)
        waiting = await call(demo_ami, "sales", 61)
        await page.wait_for_selector(f"#waiting tr[data-call='{waiting.channel_id}']", timeout=5_000)
        assert await overflow(page) <= 0, (size, await too_wide(page))
        for sel in ("#logout", ".queue", ".cols > div"):
            await inside(page, sel, width)
        for sel in ("#waiting", "#agents"):   # on a phone wider than the window: they scroll in themselves
            assert await page.locator(sel).is_visible(), sel
        await page.screenshot(path=str(shot_dir(tmp_path) / f"wallboard-{size}.png"))
        # The actions of a waiting call can be reached (their table scrolls inside itself on a phone).
        action = page.locator(f"#waiting tr[data-call='{waiting.channel_id}'] button").first
        await action.scroll_into_view_if_needed()
        box = await action.bounding_box()
        assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= width + 0.5, box
    finally:
        await ctx.close()
