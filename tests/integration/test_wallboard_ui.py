"""The wallboard pages as a supervisor (and an agent who opens them) uses them, in
real Chromium against a daemon with the ACD in the sandbox (docs/wallboard.md):
who may see the board, rows updated in place, names instead of ids, alerts and
actions in words, charts drawn by uPlot, the staffing page's queue list, and an
accessibility check by axe-core (tests/fixtures/axe, vendored by scripts/vendor-uplot)."""
from __future__ import annotations

import asyncio
import re

from cti.demo import set_demo_times
from tests.integration.conftest import ROOT, eventually
from tests.integration.test_api import PASSWORD, url
from tests.integration.test_wallboard import call, centre, ended, http  # noqa: F401 (fixtures)

AXE = sorted((ROOT / "tests" / "fixtures" / "axe").glob("axe-*.min.js"))[-1]


async def open_board(browser, d, user: str, path: str = "/wallboard/", **context):
    ctx = await browser.new_context(viewport={"width": 1400, "height": 900}, **context)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Chromium's own lines for refused requests (a 403, the favicon's 404) are not the page's errors.
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and errors.append(m.text))
    await page.goto(url(d, path))
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login button")
    return page, errors


async def test_an_agent_opening_the_wallboard_is_told_it_is_for_supervisors(centre, browser):
    page, errors = await open_board(browser, centre, "ada")
    notice = page.locator("#notice")
    await notice.wait_for(timeout=5_000)
    assert "for supervisors and admins" in await notice.text_content()
    assert await page.is_hidden("#board")
    await asyncio.sleep(0.5)
    assert errors == []                   # nothing uncaught


async def test_rows_are_updated_in_place_and_the_row_under_the_pointer_stays(centre, demo_ami, browser, http):
    d, acd = centre, centre.acd
    page, errors = await open_board(browser, d, "sam")
    await page.wait_for_selector("#status.live", timeout=10_000)
    first = await call(demo_ami, "billing", 31)
    second = await call(demo_ami, "billing", 32)
    a, b = first.channel_id, second.channel_id
    # Both rows, whichever arrives first (the two calls are originated at once: under load the
    # second can reach the ACD, and the board, before the first).
    await page.wait_for_selector(f"#waiting tr[data-call='{b}']", timeout=5_000)

    # A focused "move to" list stays in the page (and focused) across updates.
    select = await page.wait_for_selector(f"#waiting tr[data-call='{a}'] select", timeout=5_000)
    await select.focus()
    await asyncio.sleep(1.6)
    assert await select.evaluate("e => e.isConnected && document.activeElement === e")

    # The pointer rests on the first row; the second call gets a higher priority meanwhile:
    # the row under the pointer stays where it is, and a click lands on it.
    row_a = page.locator(f"#waiting tr[data-call='{a}']")
    await row_a.locator("button").hover()
    box = await row_a.bounding_box()
    acd.move_call(b, None, 50)
    await page.wait_for_selector(f"#waiting tr[data-call='{b}'] >> text=50", timeout=5_000)
    await asyncio.sleep(1.2)
    assert await row_a.bounding_box() == box
    await row_a.locator("button").click()
    await eventually(lambda: {w.call_id: w.priority for w in acd.router.waiting_calls()}.get(a) == 10, timeout=5)
    # Once the pointer leaves, the rows take the router's order.
    await page.hover("h1")

    async def reordered():
        return await page.eval_on_selector_all("#waiting tbody tr", "rs => rs.map(r => r.dataset.call)") == [b, a]

    await eventually(reordered, timeout=5, what="the rows in the router's order")
    assert errors == []


async def test_the_board_names_callers_and_says_alerts_and_action_results_in_words(centre, demo_ami, browser,
                                                                                   database):
    d, acd = centre, centre.acd
    page, errors = await open_board(browser, d, "sam")
    await page.wait_for_selector("#status.live", timeout=10_000)
    waiting = await call(demo_ami, "billing", 41)
    row = page.locator(f"#waiting tr[data-call='{waiting.channel_id}']")
    await row.wait_for(timeout=10_000)
    caller = await row.locator("td").first.text_content()
    assert "Caller 41" in caller and "+44200000041" in caller and waiting.channel_id not in caller
    assert await row.locator("select").get_attribute("aria-label") == \
        "Move the call of Caller 41 +44200000041 to another queue"

    # A caller who gave up: listed by name, and the alert says the figure, its value and the limit.
    gone = await call(demo_ami, "billing", 42, patience=1)
    await ended(database, [gone.channel_id])
    await page.wait_for_selector(f"#abandoned tr[data-call='{gone.channel_id}'] >> text=Caller 42", timeout=5_000)
    alert = page.locator("#alerts div", has_text="abandon rate")
    await alert.first.wait_for(timeout=5_000)
    assert re.search(r"billing: abandon rate today [\d.]+% > 10% red threshold", await alert.first.text_content())

    # Every live action says done or failed, with the reason.
    await row.locator("button", has_text="priority +10").click()
    feedback = page.locator("#feedback")
    await page.wait_for_selector("#feedback.ok", timeout=5_000)
    assert await feedback.text_content() == "Priority +10 for the call of Caller 41 +44200000041: done."
    await page.click(f"#abandoned tr[data-call='{gone.channel_id}'] button")
    await page.wait_for_selector("#feedback >> text=Call back Caller 42 +44200000042: done (queued in billing).",
                                 timeout=5_000)
    sue, _ = await open_board(browser, d, "sue")
    await sue.click("#agents tr[data-agent=a1] button.notready")
    await sue.wait_for_selector("#feedback.failed", timeout=5_000)
    assert "Set Ada not ready: failed:" in await sue.text_content("#feedback")

    # An agent on a call: their name, the caller's name and the queue, not the call id.
    await set_demo_times(demo_ami, ring=(0, 0), talk=(20, 20))
    acd.agent_request("a3", "set_ready")
    agent = page.locator("#agents tr[data-agent=a3]")
    await page.wait_for_selector("#agents tr[data-agent=a3] .call >> text=Caller 41", timeout=10_000)
    assert await agent.locator(".name").text_content() == "Cleo"
    assert waiting.channel_id not in await agent.locator(".call").text_content()
    assert errors == []


PIXELS_OF = """([fig, rgb]) => {
  const c = fig.querySelector("canvas"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - rgb[0]) < 8 && Math.abs(d[i + 1] - rgb[1]) < 8 && Math.abs(d[i + 2] - rgb[2]) < 8) n++;
  return n;
}"""


async def test_report_charts_have_a_time_axis_legends_in_colour_and_show_a_single_interval(centre, demo_ami,
                                                                                           browser, database):
    d, acd = centre, centre.acd
    acd.agent_request("a3", "set_ready")
    answered = await call(demo_ami, "billing", 61)
    await ended(database, [answered.channel_id])
    page, errors = await open_board(browser, d, "sam", "/wallboard/reports.html")
    fig = page.locator("figure.chart", has_text="billing: offered")
    await fig.locator(".uplot canvas").wait_for(timeout=10_000)
    assert await fig.evaluate("f => f.uplot.scales.x.time && f.uplot.series.map(s => s.label)") == \
        ["time", "offered", "answered"]
    # The legend's marker is in the series' colour (answered: #2a7d3b).
    marker = fig.locator(".u-legend .u-series", has_text="answered").locator(".u-marker")
    assert await marker.evaluate("m => getComputedStyle(m).borderTopColor") == "rgb(42, 125, 59)"
    # Today's calls are in one interval: the answered series is still drawn (a point).
    handle = await fig.element_handle()
    assert await page.evaluate(PIXELS_OF, [handle, [42, 125, 59]]) > 10

    # The agent's timeline: a time axis and a legend that shows each state's colour.
    await page.fill("#timeline input[name=agent]", "a3")
    await page.click("#timeline button")
    tl = page.locator("#timeline-chart figure.chart")
    await tl.locator(".uplot canvas").wait_for(timeout=10_000)
    assert await tl.evaluate("f => f.uplot.scales.x.time")
    swatch = tl.locator(".legend li", has_text="not ready").locator(".swatch")
    assert await swatch.evaluate("s => getComputedStyle(s).backgroundColor") == "rgb(239, 143, 143)"
    tl_handle = await tl.element_handle()
    assert await page.evaluate(PIXELS_OF, [tl_handle, [239, 143, 143]]) > 10

    # The figures per channel and hour: the answered call is a voice contact; each hour has a
    # row for every channel.
    await page.select_option("select[name=kind]", "channels")
    await page.click("#ask button")
    await page.locator("#rows tbody tr", has_text="voice").first.wait_for(timeout=10_000)
    rows = await page.eval_on_selector_all("#rows tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert [r[1] for r in rows[:4]] == ["voice", "chat", "email", "message"], rows
    assert sum(int(r[3]) for r in rows if r[1] == "voice") >= 1, rows        # answered
    assert errors == []


async def test_staffing_picks_a_queue_from_a_list_and_says_when_there_is_no_history(centre, browser):
    page, errors = await open_board(browser, centre, "sam", "/wallboard/staffing.html")
    await page.wait_for_selector("select[name=queue] option[value=billing]", state="attached", timeout=10_000)
    assert "sales" in await page.eval_on_selector_all("select[name=queue] option", "os => os.map(o => o.value)")
    await page.select_option("select[name=queue]", "billing")
    await page.click("#ask button")
    await page.wait_for_selector("#empty:not([hidden])", timeout=10_000)
    assert (await page.text_content("#empty")).startswith("No history yet for billing")
    assert await page.is_hidden("#rows")
    assert errors == []


async def axe_violations(page) -> list:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


async def test_the_wallboard_pages_have_no_serious_accessibility_violations(centre, demo_ami, browser, database):
    centre.acd.agent_request("a3", "set_ready")
    answered = await call(demo_ami, "billing", 52)
    await ended(database, [answered.channel_id])
    page, errors = await open_board(browser, centre, "sam", bypass_csp=True)   # axe is injected inline
    await page.wait_for_selector("#status.live", timeout=10_000)
    p = await call(demo_ami, "sales", 51)
    await page.wait_for_selector(f"#waiting tr[data-call='{p.channel_id}']", timeout=5_000)
    assert await axe_violations(page) == []
    await page.goto(url(centre, "/wallboard/reports.html"))              # same tab: same session
    await page.wait_for_selector("figure.chart .uplot canvas", timeout=10_000)
    assert await axe_violations(page) == []
    await page.goto(url(centre, "/wallboard/staffing.html"))
    await page.wait_for_selector("select[name=queue] option", state="attached", timeout=10_000)
    await page.click("#ask button")
    await page.wait_for_selector("#rows tbody tr", timeout=10_000)          # today's calls: a plan
    assert await axe_violations(page) == []
    assert errors == []
