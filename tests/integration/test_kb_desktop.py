"""The knowledge base in the agent desktop, in headless Chromium against the real daemon,
ACD, Asterisk sandbox and PostgreSQL: the top 3 for the call appear within 500 ms of its pop,
before the agent answers; the agent opens one and marks it helpful; the search box works from
the keyboard alone; an article's script never runs (docs/knowledge.md)."""
from __future__ import annotations

import asyncpg

from cti.demo import place_call
from kb import store
from tests.integration.conftest import hangup_all
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user
from tests.integration.test_desktop import started


async def articles(database: str) -> dict[str, int]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        made = {}
        for key, title, body, links in (
                ("offers", "Sales: upgrade offers this month", "Offer the **loyalty upgrade** first.\n\n"
                 "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\">",
                 [store.Link("queue", "sales")]),
                ("prices", "Sales: price list", "Prices by plan.", [store.Link("queue", "sales")]),
                ("router", "Router lights red", "Restart the router.", [store.Link("queue", "tech")]),
                ("refund", "Refund a double charge", "Charged twice: refund the duplicate.", [])):
            a = await store.create_article(pool, title=title, body=body, tags=[], language="en", owner="sue",
                                           links=links)
            made[key] = a.article_id
        return made
    finally:
        await pool.close()


async def test_suggestions_pop_with_the_call_open_and_take_feedback_and_search_is_keyboard_first(
        asterisk, database, tmp_path, demo_ami, browser):
    hangup_all()
    d = await started(database, tmp_path)
    ids = await articles(database)
    await add_user(database, "ada", "agent", "a1")
    page = await browser.new_page()
    try:
        await logged_in(page, d, "ada")
        await page.wait_for_selector("#state:text-is('Available')")      # logged in by the ACD
        await place_call(demo_ami, caller_num="+4930555011", caller_name="K B", patience=120,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
        # Before the agent answers (the pop of the offer), within 500 ms of the pop reaching the page.
        await page.wait_for_selector("#kb-suggestions button", timeout=20_000)
        took = int(await page.get_attribute("#kb-suggestions", "data-ms"))
        assert took < 500, took
        titles = await page.locator("#kb-suggestions button").all_inner_texts()
        assert set(titles[:2]) == {"Sales: upgrade offers this month", "Sales: price list"}, titles
        assert "Router lights red" not in titles

        # The agent's words refine them.
        await page.get_by_label("What the caller needs").fill("upgrade offers loyalty")
        await page.wait_for_selector("#kb-suggestions li:first-child button:has-text('Sales: upgrade offers')")

        # Open it from the pop: rendered, its script shown as text and never run; mark it helpful.
        await page.locator("#kb-suggestions button", has_text="Sales: upgrade offers").click()
        await page.wait_for_selector("#kb-article:not([hidden])")
        assert await page.inner_text("#kb-article-title") == "Sales: upgrade offers this month"
        assert await page.inner_text("#kb-article-body strong") == "loyalty upgrade"
        assert "<script>" in await page.inner_text("#kb-article-body")
        assert await page.locator("#kb-article-body script, #kb-article-body img").count() == 0
        await page.get_by_role("button", name="Helped").click()
        await page.wait_for_selector("#kb-feedback-status:has-text('Marked helpful (1 so far)')")
        assert await page.title() != "owned"
        conn = await asyncpg.connect(database)
        try:
            row = await conn.fetchrow("SELECT * FROM kb_feedback")
        finally:
            await conn.close()
        assert row["article_id"] == ids["offers"] and row["agent"] == "a1" and row["helped"] is True
        assert row["call_id"] in d.core.model.calls          # the live call on the card

        # What the call taught: an edit of the open article, proposed for a supervisor to approve.
        await page.locator("#kb-propose summary").click()
        await page.get_by_label("An edit of the open article").check()
        assert await page.input_value("#kb-propose-headline") == "Sales: upgrade offers this month"
        await page.get_by_label("What to write").fill("Offer the loyalty upgrade, then the family plan.")
        await page.get_by_role("button", name="Send proposal").click()
        await page.wait_for_selector("#kb-propose-status:has-text('Sent for approval')")
        conn = await asyncpg.connect(database)
        try:
            p = await conn.fetchrow("SELECT * FROM kb_proposals")
        finally:
            await conn.close()
        assert (p["kind"], p["article_id"], p["proposer"], p["agent_id"], p["state"]) == (
            "edit", ids["offers"], "ada", "a1", "pending")
        assert p["call_id"] == row["call_id"] and p["body"] == "Offer the loyalty upgrade, then the family plan."

        # Search from the keyboard alone: "/" focuses it, arrows choose, Enter opens, Escape clears.
        await page.locator("body").click(position={"x": 1, "y": 1})
        await page.keyboard.press("/")
        assert await page.evaluate("document.activeElement.id") == "kb-q"
        await page.keyboard.type("router")
        await page.wait_for_selector("#kb-results li[aria-selected='true']:has-text('Router lights red')")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#kb-article-title:text-is('Router lights red')")
        await page.keyboard.press("/")
        await page.keyboard.press("Escape")
        assert await page.locator("#kb-results li").count() == 0
    finally:
        await page.close()
        hangup_all()
        await d.stop()
