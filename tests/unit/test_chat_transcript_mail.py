"""A web chat's transcript e-mailed to its customer: the message (mail.transcript, pure),
the widget's ask (parse_client), the chat service mailing it only for a chat an agent had
and closed (a fake sender function, no relay), and MailService.send_transcript's outcome."""
from __future__ import annotations

import json
import smtplib
from datetime import datetime, timezone
from email import message_from_bytes, policy

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mail.service import MailConfig, MailService
from mail.transcript import transcript_message
from omni.chat import ChatError, parse_client
from omni.chat_service import ChatService
from tests.unit.test_omni_chat import _until

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
START = {"type": "start", "name": "Ada", "email": "ada@example.org", "question": "Where is it?"}


def _message(**kw):
    args = {"to": "ada@example.org", "sender": "desk@center.test", "sender_name": "Service Desk",
            "task_id": "chat-1a2b", "text": "Chat chat-1a2b with Ada\n\n[..] Ada: hello\n", "token": "abc123def456",
            "now": NOW, **kw}
    return transcript_message(**args)


def test_the_transcript_is_a_plain_mail_of_its_own_to_the_customer():
    msg = message_from_bytes(bytes(_message()), policy=policy.default)
    assert msg["To"] == "ada@example.org" and msg["From"] == "Service Desk <desk@center.test>"
    assert msg["Message-ID"] == "<abc123def456.chat-1a2b.chat@center.test>"
    assert msg["In-Reply-To"] is None and msg["Auto-Submitted"] == "auto-generated"
    assert "Ada: hello" in msg.get_content()


@pytest.mark.parametrize("to", ["ada@example.org\r\nBcc: x@evil.test", "no-at-sign", "a@b@c", ""])
def test_an_address_that_is_not_one_is_refused(to):
    with pytest.raises(ValueError, match="not an address"):
        _message(to=to)


def test_the_widget_asks_for_the_transcript_with_a_boolean():
    assert parse_client(json.dumps({**START, "transcript": True})).transcript is True
    assert parse_client(json.dumps(START)).transcript is False
    with pytest.raises(ChatError, match="transcript: true or false"):
        parse_client(json.dumps({**START, "transcript": "yes"}))


def _service(send, smtp="127.0.0.1:25", sender="desk@center.test"):
    cfg = MailConfig(listen=None, max_bytes=10_000, smtp=smtp, sender=sender, sender_name=None, queue="email",
                     hostname="center.test")
    return MailService(cfg, pool=lambda: None, file_task=None, send=send)   # type: ignore[arg-type]


async def test_send_transcript_goes_through_the_relay_function_and_counts():
    sent = []
    svc = _service(lambda host, port, msg: sent.append((host, port, msg)))
    assert await svc.send_transcript("ada@example.org", "chat-1", "the text") is True
    ((host, port, msg),) = sent
    assert (host, port, msg["To"]) == ("127.0.0.1", 25, "ada@example.org")
    assert svc.counts["transcripts_sent"] == 1


async def test_a_relay_that_refuses_or_no_relay_at_all_sends_nothing_and_says_so():
    def refuse(host, port, msg):
        raise smtplib.SMTPRecipientsRefused({"ada@example.org": (550, b"no")})

    svc = _service(refuse)
    assert await svc.send_transcript("ada@example.org", "chat-1", "t") is False
    assert svc.counts["transcripts_failed"] == 1
    assert not _service(refuse, smtp=None).can_send
    assert await _service(refuse, sender=None).send_transcript("ada@example.org", "chat-1", "t") is False


@pytest.fixture
async def mailing_chat(omni_running):
    """A chat service on omni_running's ``webchat`` whose transcripts go to a list."""
    o = omni_running
    chat = ChatService(o.omni, "webchat", lambda r: r.remote or "?")
    mailed: list[tuple[str, str, str]] = []

    async def mail(to: str, task_id: str, text: str) -> bool:
        mailed.append((to, task_id, text))
        return True

    chat.mail_transcript = mail
    await chat.start()
    o.app.router.add_get("/chat/ws", chat.serve)
    client = TestClient(TestServer(o.app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, o.omni, chat, mailed
    finally:
        await chat.stop()
        await client.close()


async def test_a_chat_closed_by_its_agent_is_mailed_when_the_customer_asked(mailing_chat):
    client, omni, chat, mailed = mailing_chat
    asked = await client.ws_connect("/chat/ws")
    await asked.send_json({**START, "transcript": True})
    s1 = await _until(asked, "started")
    silent = await client.ws_connect("/chat/ws")
    await silent.send_json({**START, "email": "bob@example.org"})
    s2 = await _until(silent, "started")
    chat.say(chat.by_task[s1["task_id"]], "agent", "It left today", "a4")
    omni.close_task(s1["task_id"], "a4", "solved")
    omni.close_task(s2["task_id"], "a4", "solved")
    assert (await _until(asked, "closed"))["mail"] is True
    assert (await _until(silent, "closed"))["mail"] is False
    await chat.stop()           # waits for the mail under way
    ((to, task_id, text),) = mailed
    assert (to, task_id) == ("ada@example.org", s1["task_id"])
    assert "It left today" in text and "The chat has ended." in text
    await asked.close()
    await silent.close()


async def test_a_chat_that_left_the_queue_is_not_mailed(mailing_chat):
    client, omni, chat, mailed = mailing_chat
    held = []
    for i in range(3):      # a4 holds two chats: the third waits
        ws = await client.ws_connect("/chat/ws")
        await ws.send_json({**START, "email": f"c{i}@example.org", "transcript": True})
        held.append((ws, await _until(ws, "started")))
    ws, started = held[-1]
    assert started["status"] == "waiting"
    await ws.send_json({"type": "leave"})
    assert (await _until(ws, "closed"))["mail"] is False
    assert mailed == []
    for ws, _ in held:
        await ws.close()
