"""A web chat's transcript e-mailed to its customer (docs/omnichannel.md, "Web chat"): a real
daemon, PostgreSQL and a local mailbox as its relay; the customer asks for it in the start
frame, the agent answers and closes the chat, and the mailbox receives the transcript
addressed to the customer, with the conversation in it."""
from __future__ import annotations

from email import message_from_bytes, policy

import aiohttp
import pytest

from tests.integration.conftest import eventually, start_daemon
from tests.integration.test_mail import mailbox  # noqa: F401  (the fixture)
from tests.integration.test_omni_conversations import call, chat_start, frames_until, my_tasks, settings, users


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_closed_chat_s_transcript_reaches_the_customer_s_mailbox(asterisk, database, tmp_path, http,
                                                                        mailbox):  # noqa: F811
    d = await start_daemon(settings(database, tmp_path, mail_smtp=f"127.0.0.1:{mailbox.port}",
                                    mail_from="desk@center.test", mail_from_name="Service Desk"))
    try:
        t = await users(database, http, d)
        ws = await http.ws_connect(f"http://127.0.0.1:{d.settings.http_port}/chat/ws")
        await ws.send_json({"type": "start", "name": "Carol", "email": "carol@example.org",
                            "question": "Where is my parcel?", "transcript": True})
        started = await ws.receive_json(timeout=10)
        task_id = started["task_id"]
        await eventually(lambda: my_tasks(http, d, t["ada"]), 10, what="the chat offered to Ada")
        assert (await call(http, d, "POST", f"/api/tasks/{task_id}/messages", t["ada"],
                           {"body": "It left today"}))[0] == 201
        assert (await call(http, d, "POST", f"/api/tasks/{task_id}/close", t["ada"], {"disposition": "done"}))[0] == 200
        closed = (await frames_until(ws, lambda f: f["type"] == "closed"))[-1]
        assert closed["mail"] is True
        await eventually(lambda: mailbox.got, 20, what="the transcript in the mailbox")
        ((mail_from, rcpt, raw),) = mailbox.got
        assert (mail_from, rcpt) == ("desk@center.test", ["carol@example.org"])
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg["Subject"] == "The transcript of your chat with us"
        body = msg.get_content()
        assert "Where is my parcel?" in body and "It left today" in body and task_id in body
        # A chat without the ask sends nothing.
        ws2, s2 = await chat_start(http, d, "Dan", "dan@example.org", "Hi")
        assert (await call(http, d, "POST", f"/api/tasks/{s2['task_id']}/close", t["ada"],
                           {"disposition": "done"}))[0] == 200
        assert (await frames_until(ws2, lambda f: f["type"] == "closed"))[-1]["mail"] is False
        assert len(mailbox.got) == 1
        await ws.close()
        await ws2.close()
    finally:
        await d.stop()
