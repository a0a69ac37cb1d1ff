"""Web chat in headless Chromium (docs/omnichannel.md): a customer on the widget chats
with an agent on the desktop while that agent also holds a second chat; the transcript
is in PostgreSQL and on the customer's page."""
from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.integration.conftest import daemon_settings, eventually, start_daemon
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user, url

OMNI_ACD = Path(__file__).with_name("omnichat-acd.toml")


async def _customer(browser, d, name: str, question: str):
    page = await browser.new_page()
    await page.goto(url(d, "/chat/"))
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("E-mail").fill(f"{name.lower()}@example.org")
    await page.get_by_label("Your question").fill(question)
    await page.get_by_role("button", name="Start chat").click()
    await page.wait_for_selector(f".cti-chat-log li:has-text('{question}')")
    return page


async def test_a_customer_chats_with_an_agent_holding_a_second_chat(asterisk, database, tmp_path, browser):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=OMNI_ACD, acd_announce_every=0))
    await add_user(database, "ada", "agent", "a1")
    desk = await browser.new_page()
    pages = []
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        await logged_in(desk, d, "ada")
        pages.append(await _customer(browser, d, "Carol", "Where is my parcel?"))
        pages.append(await _customer(browser, d, "Dan", "Can I change my address?"))
        carol, dan = pages
        await desk.wait_for_selector(".chat-tab:has-text('dan@example.org')", timeout=10000)
        await desk.wait_for_selector(".chat-tab:has-text('carol@example.org')")
        assert await desk.locator(".chat-tab").count() == 2
        # Carol writes while Ada looks at her chat (the first tab): no unread mark there.
        await desk.locator(".chat-tab", has_text="carol@example.org").click()
        await carol.get_by_label("Message").fill("It was due on Monday")
        await carol.get_by_role("button", name="Send").click()
        await desk.wait_for_selector("#chat-log li:has-text('It was due on Monday')")
        # Dan writes meanwhile: his tab gets an unread mark.
        await dan.get_by_label("Message").fill("Hello?")
        await dan.get_by_role("button", name="Send").click()
        await desk.wait_for_selector(".chat-tab.unread:has-text('dan@example.org')")
        # Ada answers Carol; the reply reaches Carol's page.
        await desk.locator("#chat-text").fill("It left the depot today")
        await desk.locator("#chat-reply button").click()
        await carol.wait_for_selector(".cti-chat-agent:has-text('It left the depot today')")
        # Ada closes Carol's chat with a disposition; Dan's stays.
        await desk.locator("#chat-disposition").fill("parcel tracked")
        await desk.get_by_role("button", name="Close chat").click()
        await carol.wait_for_selector(".cti-chat-download:not([hidden])")
        assert await desk.locator(".chat-tab").count() == 1
        page_text = await carol.inner_text(".cti-chat-log")
        for line in ("Where is my parcel?", "It was due on Monday", "It left the depot today"):
            assert line in page_text
        # The transcript downloads from the page's link, and is in PostgreSQL.
        href = await carol.get_attribute(".cti-chat-download", "href")
        download = await carol.request.get(href)
        assert download.status == 200 and "It left the depot today" in await download.text()

        async def stored():
            conn = await asyncpg.connect(database)
            try:
                task = await conn.fetchrow("SELECT task_id, status, agent_id, disposition FROM tasks "
                                           "WHERE customer_ref = 'carol@example.org'")
                rows = await conn.fetch("SELECT sender, body FROM chat_messages WHERE task_id = $1 ORDER BY seq",
                                        task["task_id"])
                return task, [(r["sender"], r["body"]) for r in rows]
            finally:
                await conn.close()

        async def closed_and_stored() -> bool:
            task, rows = await stored()
            return task["status"] == "closed" and any(b == "It left the depot today" for _, b in rows)

        await eventually(closed_and_stored, 10, what="the transcript stored")
        task, rows = await stored()
        assert (task["agent_id"], task["disposition"]) == ("a1", "parcel tracked")
        assert rows[:3] == [("customer", "Where is my parcel?"), ("customer", "It was due on Monday"),
                            ("agent", "It left the depot today")]
    finally:
        for p in pages:
            await p.close()
        await desk.close()
        await d.stop()
