"""axe-core (tests/fixtures/axe) in real Chromium on every page a person opens: the agent
desktop (its login and the desktop with a call), the wallboard's login, the phone page and the
API docs (Swagger UI): no serious or critical violation."""
from __future__ import annotations

from tests.integration.conftest import hangup_all
from tests.integration.test_agent_desktop_ui import logged_in, ring_ada
from tests.integration.test_api import add_user, url
from tests.integration.test_desktop import started
from tests.integration.test_wallboard_ui import axe_violations


async def test_every_page_has_no_serious_accessibility_violation(asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await started(database, tmp_path)
    await add_user(database, "ada", "agent", "a1")
    ctx = await browser.new_context(bypass_csp=True)   # axe is injected inline
    page = await ctx.new_page()
    found: dict[str, list] = {}
    try:
        for path, ready in (("/agent/", "#login-form"), ("/wallboard/", "#login"), ("/phone/", "#login"),
                            ("/docs", ".opblock")):
            await page.goto(url(d, path))
            await page.wait_for_selector(ready, timeout=15_000)
            found[path] = await axe_violations(page)
        await logged_in(page, d, "ada")
        await ring_ada(d, demo_ami, "Axe Test", "+4930555091")
        await page.wait_for_selector("#btn-hangup:not([disabled])", timeout=20_000)
        found["/agent/ (on a call)"] = await axe_violations(page)
        assert found == {k: [] for k in found}
    finally:
        await ctx.close()
        await d.stop()
        hangup_all()
