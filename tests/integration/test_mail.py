"""E-mail as a channel end to end (docs/mail.md): a real mail sent with smtplib into the
daemon's SMTP receiver becomes a waiting thread on the customer and ticket it names, is
answered through the API, and the reply reaches a local mailbox (an aiosmtpd server in
this test, the daemon's relay) with In-Reply-To and References that keep the thread; the
customer's answer to that reply lands on the same thread. Hostile mail: a huge one is
refused at SMTP time with a 552 and a reason; broken MIME is stored flagged, raw kept;
a script in HTML is stored and shown sanitised."""
from __future__ import annotations

import asyncio
import smtplib
from email import message_from_bytes, policy
from email.message import EmailMessage

import aiohttp
import asyncpg
import pytest
from aiosmtpd.smtp import SMTP

from crm import ticket_store
from tests.integration.conftest import daemon_settings, eventually, free_port, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url

MAX_BYTES = 200_000


class Mailbox:
    """The local relay replies go through: keeps every message it is given."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def mailbox():
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box, hostname="mailbox.test", loop=loop), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def desk(asterisk, database, tmp_path, http, mailbox):
    port = free_port()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           mail_listen=f"127.0.0.1:{port}", mail_max_bytes=MAX_BYTES,
                                           mail_smtp=f"127.0.0.1:{mailbox.port}", mail_from="desk@center.test",
                                           mail_from_name="Service Desk"))
    await add_user(database, "mail-agent", "agent", "a1")
    await add_user(database, "mail-other", "agent", "a2")
    tokens = {u: bearer(await login(http, d, u)) for u in ("mail-agent", "mail-other")}
    try:
        yield d, port, tokens
    finally:
        await d.stop()


async def call(http, d, method, path, headers, json=None):
    async with http.request(method, url(d, path), json=json, headers=headers) as r:
        return r.status, (await r.json() if r.status != 204 else None)


def send(port: int, msg: EmailMessage | bytes, sender: str = "ada@example.com",
         to: str = "desk@center.test") -> None:
    """Deliver with the stdlib client, as any MTA would (blocking: run it in a thread)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        if isinstance(msg, bytes):
            s.sendmail(sender, [to], msg)
        else:
            s.send_message(msg, from_addr=sender, to_addrs=[to])


def customer_mail(subject: str, body: str, message_id: str, **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "Ada Lovelace <Ada@Example.com>"
    m["To"] = "desk@center.test"
    m["Subject"] = subject
    m["Message-ID"] = message_id
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


async def threads(http, d, token, state="open"):
    status, body = await call(http, d, "GET", f"/api/mail/threads?state={state}", token)
    assert status == 200, body
    return body["threads"]


async def test_a_mail_becomes_a_waiting_thread_is_answered_and_the_reply_keeps_the_thread(
        desk, database, http, mailbox):
    d, port, t = desk
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("INSERT INTO customers (customer_id, name) VALUES ('C-ADA', 'Ada Lovelace')")
        ticket, _ = await ticket_store.create_ticket(conn, type="repair", customer_id="C-ADA", source="manual",
                                                     actor="test", title="Boiler")
    finally:
        await conn.close()
    status, emails = await call(http, d, "POST", "/api/customers/C-ADA/emails", t["mail-agent"],
                                {"email": "Ada@Example.com", "label": "home"})
    assert status == 200 and emails["emails"] == [{"email": "ada@example.com", "label": "home"}]
    assert (await call(http, d, "POST", "/api/customers/NOBODY/emails", t["mail-agent"], {"email": "a@b.c"}))[0] == 404
    status, err = await call(http, d, "POST", "/api/customers/C-ADA/emails", t["mail-agent"], {"email": "not an address"})
    assert status == 422 and err["error_id"] == "invalid_body"
    first = customer_mail(f"Boiler still broken [#{ticket.ticket_id}]", "It stopped again this morning.",
                          "<first.1@example.com>")
    await asyncio.to_thread(send, port, first)

    waiting = await eventually(lambda: threads(http, d, t["mail-agent"], "waiting"), timeout=10)
    [th] = waiting
    assert th["customer_id"] == "C-ADA" and th["ticket_id"] == ticket.ticket_id
    assert th["address"] == "ada@example.com" and th["state"] == "waiting" and th["queue"] == "email"

    status, view = await call(http, d, "GET", f"/api/mail/threads/{th['thread_id']}", t["mail-agent"])
    assert status == 200 and view["items"][0]["text"].strip() == "It stopped again this morning."
    assert view["items"][0]["show"] == "text" and not view["items"][0]["malformed"]

    status, sent = await call(http, d, "POST", f"/api/mail/threads/{th['thread_id']}/reply", t["mail-agent"],
                              {"text": "An engineer comes tomorrow at 9."})
    assert status == 200, sent
    assert sent["in_reply_to"] == "<first.1@example.com>" and sent["to"] == "ada@example.com"

    await eventually(lambda: mailbox.got, timeout=10, what="the reply at the mailbox")
    [(env_from, rcpts, raw)] = mailbox.got
    got = message_from_bytes(raw, policy=policy.default)
    assert env_from == "desk@center.test" and rcpts == ["ada@example.com"]
    assert got["In-Reply-To"] == "<first.1@example.com>"
    assert got["References"] == "<first.1@example.com>"
    assert got["Message-ID"] == sent["message_id"] and f".ticket-{ticket.ticket_id}." in got["Message-ID"]
    assert got["Subject"] == f"Re: Boiler still broken [#{ticket.ticket_id}]"
    assert got.get_content().strip() == "An engineer comes tomorrow at 9."

    # Answered: the thread is the replier's; another agent can neither take nor answer it.
    [mine] = [x for x in await threads(http, d, t["mail-agent"], "assigned")]
    assert mine["assigned_to"] == "a1" and mine["thread_id"] == th["thread_id"]
    status, err = await call(http, d, "POST", f"/api/mail/threads/{th['thread_id']}/reply", t["mail-other"],
                             {"text": "me too"})
    assert status == 409 and err["error_id"] == "taken"

    # The customer answers our reply: the same thread, not a new work item.
    answer = customer_mail(f"Re: Boiler still broken [#{ticket.ticket_id}]", "Thanks, 9 is fine.",
                           "<second.2@example.com>", In_Reply_To=sent["message_id"],
                           References=f"<first.1@example.com> {sent['message_id']}")
    await asyncio.to_thread(send, port, answer)

    async def three():
        s, v = await call(http, d, "GET", f"/api/mail/threads/{th['thread_id']}", t["mail-agent"])
        return v if len(v["items"]) == 3 else None
    v = await eventually(three, timeout=10)
    assert [m["direction"] for m in v["items"]] == ["in", "out", "in"]
    assert v["items"][1]["status"] == "sent" and v["items"][1]["author"] == "mail-agent"
    assert len(await threads(http, d, t["mail-agent"], "open")) == 1

    # The same mail delivered twice is stored once.
    await asyncio.to_thread(send, port, answer)
    s, v = await call(http, d, "GET", f"/api/mail/threads/{th['thread_id']}", t["mail-agent"])
    assert len(v["items"]) == 3
    async with http.get(url(d, "/healthz")) as r:
        health = (await r.json())["mail"]
    assert health["listening"] == f"127.0.0.1:{port}"
    assert health["stored"] == 2 and health["duplicate"] == 1 and health["sent"] == 1 and health["deferred"] == 0


async def test_hostile_mail_is_refused_with_a_reason_or_stored_safely(desk, database, http):
    d, port, t = desk
    # Huge: refused at MAIL FROM (the client announces its SIZE), and at DATA without it.
    huge = customer_mail("huge", ("x" * 70 + "\n") * (MAX_BYTES // 70 + 10), "<huge@example.com>")
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await asyncio.to_thread(send, port, huge)
    assert refused.value.smtp_code == 552 and b"size exceeds" in refused.value.smtp_error

    def no_size() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.ehlo()
            s.mail("ada@example.com")
            s.rcpt("desk@center.test")
            return s.data(huge.as_bytes(policy=policy.SMTP))     # the reply after the data
    code, why = await asyncio.to_thread(no_size)
    assert code == 552 and b"Too much mail data" in why

    # Broken MIME: a multipart whose boundary never comes, with a body that is not base64.
    broken = (b"From: mallory@evil.test\r\nTo: desk@center.test\r\nSubject: broken\r\n"
              b"Message-ID: <broken@evil.test>\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\n"
              b"--wrong\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n")
    await asyncio.to_thread(send, port, broken, "mallory@evil.test")

    # A script, event handlers and a tracking pixel in HTML.
    evil = EmailMessage()
    evil["From"] = "mallory@evil.test"
    evil["To"] = "desk@center.test"
    evil["Subject"] = "<script>alert('subject')</script>"
    evil["Message-ID"] = "<script@evil.test>"
    evil.set_content('<p onmouseover="steal()">Hello<script>alert(document.cookie)</script>'
                     '<img src="https://track.evil.test/p.gif"><a href="javascript:alert(1)">win</a></p>',
                     subtype="html")
    await asyncio.to_thread(send, port, evil, "mallory@evil.test")

    found = await eventually(lambda: _two(http, d, t["mail-agent"]), timeout=10)
    by_subject = {x["subject"]: x for x in found}
    assert "huge" not in by_subject
    status, b = await call(http, d, "GET", f"/api/mail/threads/{by_subject['broken']['thread_id']}", t["mail-agent"])
    [m] = b["items"]
    assert status == 200 and m["malformed"] and m["defects"], m
    status, e = await call(http, d, "GET", f"/api/mail/threads/{by_subject[evil['Subject']]['thread_id']}",
                           t["mail-agent"])
    [m] = e["items"]
    assert m["show"] == "html" and m["text"] is None
    assert m["html"].startswith("<p>Hello<img>") and "script" not in m["html"] and "track.evil" not in m["html"]
    assert "onmouseover" not in m["html"] and "javascript" not in m["html"]
    assert 'rel="noopener noreferrer nofollow"' in m["html"]

    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT message_id, malformed, raw, html_safe FROM mail_messages ORDER BY message_pk")
    finally:
        await conn.close()
    assert [r["message_id"] for r in rows] == ["<broken@evil.test>", "<script@evil.test>"]
    assert rows[0]["malformed"] and rows[0]["raw"] == broken          # kept byte for byte
    assert "<script" not in rows[1]["html_safe"]      # the sender's HTML is never stored unsanitised as html


async def _two(http, d, token):
    got = await threads(http, d, token, "waiting")
    return got if len(got) == 2 else None


async def test_the_desktop_lists_a_mail_shows_its_html_safely_and_sends_the_reply(desk, http, mailbox, browser):
    """Headless Chromium: the agent sees the waiting thread, opens it (bold kept, the script,
    handler and remote image gone, nothing run) and answers from the reply box."""
    from tests.integration.test_agent_desktop_ui import logged_in

    d, port, t = desk
    m = EmailMessage()
    m["From"] = "Grace <grace@example.org>"
    m["To"] = "desk@center.test"
    m["Subject"] = "Invoice question"
    m["Message-ID"] = "<inv.1@example.org>"
    m.set_content('<p>Why is it <b>twice</b>?<script>document.title="owned"</script>'
                  '<img src="https://track.evil.test/p.gif" onerror="document.title=\'owned\'"></p>', subtype="html")
    await asyncio.to_thread(send, port, m, "grace@example.org")
    await eventually(lambda: threads(http, d, t["mail-agent"], "waiting"), timeout=10)

    page = await browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await logged_in(page, d, "mail-agent")
    await page.locator("#mail-threads button", has_text="Invoice question").click()
    await page.wait_for_selector("#mail-thread:not([hidden])")
    assert await page.inner_text("#mail-messages .mail-body b") == "twice"
    assert await page.locator("#mail-messages script, #mail-messages img").count() == 0
    await page.get_by_label("Reply by e-mail").fill("It was charged once; the second line is the refund.")
    await page.get_by_role("button", name="Send reply").click()
    await page.wait_for_selector("#mail-status:has-text('Reply sent.')")
    await eventually(lambda: mailbox.got, timeout=10, what="the reply at the mailbox")
    got = message_from_bytes(mailbox.got[0][2], policy=policy.default)
    assert got["In-Reply-To"] == "<inv.1@example.org>" and mailbox.got[0][1] == ["grace@example.org"]
    assert await page.title() != "owned"
    assert not [u for u in requests if "evil.test" in u]
    await page.close()
