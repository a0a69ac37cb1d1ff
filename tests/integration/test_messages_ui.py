"""Messaging and mail tasks in the agent desktop, in headless Chromium (docs/messaging.md,
docs/mail.md): a customer's SMS becomes a message task offered to the agent, whose Messages
panel lists the conversation; the agent reads it, inserts a canned reply, sends it (the
provider gets it signed), and closes the conversation, which closes its task; the customer's page lists it. A mail's task
offered to the agent opens its thread in the E-mail panel; closing the thread closes the task."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from messaging import core as messaging_core
from tests.integration.conftest import daemon_settings, eventually, free_port, start_daemon
from tests.integration.test_agent_desktop_ui import logged_in
from tests.integration.test_api import add_user, bearer, login, url
from tests.integration.test_messaging import Provider, fetch
from tests.integration.test_omni_conversations import send_mail

ACD = Path(__file__).with_name("omni-tasks-acd.toml")
SECRET = "provider-shared-secret-for-the-desktop"


async def test_an_agent_reads_and_answers_a_message_with_a_canned_reply(asterisk, database, tmp_path, browser):
    async with Provider() as provider, aiohttp.ClientSession() as http:
        d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD, acd_announce_every=0,
                                               messaging_secret=SECRET, messaging_queue="sms",
                                               messaging_outbound_url=provider.url))
        await add_user(database, "ada", "agent", "a1")
        await add_user(database, "sue", "supervisor")
        desk = await browser.new_page()
        try:
            sue = bearer(await login(http, d, "sue"))
            async with http.post(url(d, "/api/canned-replies"), headers=sue,
                                 json={"queue": "sms", "title": "On its way", "body": "Your parcel is on its way."}) as r:
                assert r.status == 201, await r.text()
            conn = await asyncpg.connect(database)
            try:
                await conn.execute("INSERT INTO customers (customer_id, name) VALUES ('C-CAROL', 'Carol Ames')")
                await conn.execute("INSERT INTO customer_phones (customer_id, phone) VALUES ('C-CAROL', '+442079460001')")
            finally:
                await conn.close()
            await logged_in(desk, d, "ada")
            raw = json.dumps({"message_id": f"SM{uuid.uuid4().hex}", "from": "+442079460001", "to": "+442079460999",
                              "text": "Where is my parcel?", "timestamp": "2026-05-01T08:00:00Z"}).encode()
            async with http.post(url(d, "/api/messaging/inbound"), data=raw,
                                 headers=messaging_core.signed_headers(SECRET, int(time.time()), raw)) as r:
                assert r.status == 200, await r.text()
                cid = (await r.json())["conversation_id"]
            # The offer reaches the desktop: the panel lists the conversation at once.
            await desk.locator("#msg-conversations button", has_text="+442079460001").click(timeout=10000)
            await desk.wait_for_selector("#msg-log li.msg-in:has-text('Where is my parcel?')")
            # A canned reply goes in at the caret, the agent adds to it and sends.
            await desk.locator("#msg-text").fill("Hello Carol. ")
            await desk.locator("#msg-canned").select_option(label="On its way")
            assert await desk.locator("#msg-text").input_value() == "Hello Carol. Your parcel is on its way."
            await desk.locator("#msg-reply button[type=submit]").click()
            await desk.wait_for_selector("#msg-log li.msg-out:has-text('Your parcel is on its way.')")
            await eventually(lambda: provider.received, 10, what="the reply at the provider")
            headers, body = provider.received[-1]
            messaging_core.verify(SECRET, headers, body, time.time())
            assert json.loads(body)["text"] == "Hello Carol. Your parcel is on its way."
            # Closing the conversation closes its task and empties the panel.
            await desk.get_by_role("button", name="Close conversation").click()
            await desk.wait_for_selector("#msg-none:not([hidden])")
            rows = await eventually(lambda: fetch(database, "SELECT status FROM tasks WHERE ref = $1 AND status = "
                                                  "'closed'", f"conversation-{cid}"), 10, what="the task closed")
            assert rows[0]["status"] == "closed"
            rows = await fetch(database, "SELECT state FROM message_conversations WHERE conversation_id = $1", cid)
            assert rows[0]["state"] == "closed"
            # The customer's page lists the conversation.
            await desk.locator("#cs-q").fill("C-CAROL")
            await desk.locator("#customer-search-form button[type=submit]").click()
            await desk.get_by_role("button", name="Open C-CAROL").click()
            await desk.wait_for_selector("#cp-conversations li:has-text('Where is my parcel?')")
            assert "message" in await desk.inner_text("#cp-conversations")
        finally:
            await desk.close()
            await d.stop()


async def test_a_mail_task_offered_to_the_agent_opens_its_thread_and_closing_it_closes_the_task(
        asterisk, database, tmp_path, browser):
    port = free_port()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD, acd_announce_every=0,
                                           mail_listen=f"127.0.0.1:{port}", mail_queue="mail"))
    await add_user(database, "ada", "agent", "a1")
    desk = await browser.new_page()
    try:
        await logged_in(desk, d, "ada")
        await asyncio.to_thread(send_mail, port, "Invoice 12", "<ui1@example.org>")
        # The task's offer opens the thread in the E-mail panel, already Ada's.
        await desk.wait_for_selector("#mail-subject:has-text('Invoice 12')", timeout=10000)
        await desk.wait_for_selector("#mail-meta:has-text('assigned (a1)')")
        await desk.locator("#mail-close").click()
        await desk.wait_for_selector("#mail-meta:has-text('closed')")
        rows = await eventually(lambda: fetch(database, "SELECT status FROM tasks WHERE channel = 'email' AND "
                                              "status = 'closed'"), 10, what="the mail's task closed")
        assert len(rows) == 1
    finally:
        await desk.close()
        await d.stop()
