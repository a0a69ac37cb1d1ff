"""The web test bed: real headless Chromium reads the daemon's API pages: /docs is Swagger UI
(vendored, no CDN) over /openapi.json, with search and "Try it out"; /docs/reference the plain page."""
from __future__ import annotations


async def test_the_api_page_lists_the_routes_in_a_real_browser(daemon, browser):
    # Tall: Swagger UI renders its list of operations virtually, only what the window shows.
    page = await browser.new_page(viewport={"width": 1280, "height": 8000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    outside: list[str] = []
    page.on("request", lambda r: not r.url.startswith("http://127.0.0.1") and outside.append(r.url))
    await page.goto(f"http://127.0.0.1:{daemon.settings.http_port}/docs")
    assert "open-cti API" in await page.title()
    await page.wait_for_selector(".opblock", timeout=15_000)
    body = await page.inner_text("body")
    assert "/api/login" in body and "/api/acd/config" in body
    # Search: the filter box narrows the list to what matches (the phone tag stays, the ACD's
    # goes; a tag with a {phone} path, such as the campaigns' do-not-call routes, may stay too).
    await page.fill("input.operation-filter-input", "phone")
    await page.wait_for_function(
        "() => { const tags = [...document.querySelectorAll('.opblock-tag')].map(t => t.dataset.tag);"
        " return tags.includes('phone') && !tags.includes('acd'); }",
        timeout=5_000)
    await page.fill("input.operation-filter-input", "")
    # Try it out: log in from the page against this server.
    login = page.locator(".opblock-post:has(.opblock-summary-path[data-path='/api/login'])").first
    await login.locator(".opblock-summary").click()
    await login.get_by_role("button", name="Try it out").click()
    await login.locator("textarea.body-param__text").fill('{"username": "nobody", "password": "wrong"}')
    await login.get_by_role("button", name="Execute").click()
    await login.locator(".live-responses-table tbody .response-col_status").first.wait_for(timeout=10_000)
    assert "401" in await login.locator(".live-responses-table tbody .response-col_status").first.inner_text()
    assert outside == []          # nothing from a CDN or an outside validator
    assert [p for p in problems if "401" not in p] == []   # the refused login is the only error


async def test_the_plain_reference_needs_no_script(daemon, browser):
    ctx = await browser.new_context(java_script_enabled=False)
    page = await ctx.new_page()
    await page.goto(f"http://127.0.0.1:{daemon.settings.http_port}/docs/reference")
    body = await page.inner_text("body")
    assert "/api/login" in body and "roles:" in body
    await ctx.close()
