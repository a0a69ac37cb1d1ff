"""The web test bed: real headless Chromium reads the daemon's API page."""
from __future__ import annotations


async def test_the_api_page_lists_the_routes_in_a_real_browser(daemon, browser):
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{daemon.settings.http_port}/docs")
    assert "open-cti API" in await page.title()
    body = await page.inner_text("body")
    assert "/api/login" in body and "/api/acd/config" in body
