"""The mail channel's pure parts: parsing, threading keys, tickets, sanitising, replies."""
from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage

import hypothesis.strategies as st
import pytest
from hypothesis import given

from mail.outbound import ReplyTo, build_reply, new_message_id, reply_subject, thread_headers
from mail.parse import parse_mail
from mail.sanitize import sanitize_html
from mail.service import host_port, task_ref, thread_ref
from mail.store import pick_thread


def mail(*, subject="Help", body="plain words", html=None, headers=None, attach=None) -> bytes:
    m = EmailMessage()
    m["From"] = "Ada Lovelace <Ada@Example.COM>"
    m["To"] = "desk@center.test"
    m["Subject"] = subject
    m["Message-ID"] = "<m1@example.com>"
    m["Date"] = "Mon, 07 Dec 2026 04:00:00 +0000"
    for k, v in (headers or {}).items():
        m[k] = v
    if body is not None:
        m.set_content(body)
    if html is not None:
        if body is None:
            m.set_content(html, subtype="html")
        else:
            m.add_alternative(html, subtype="html")
    if attach:
        m.add_attachment(attach, maintype="application", subtype="pdf", filename="../../etc/invoice.pdf")
    return m.as_bytes()


def test_a_plain_mail_gives_sender_ids_subject_and_text():
    p = parse_mail(mail(headers={"In-Reply-To": "<a@x>", "References": "<r0@x> <a@x>"}))
    assert p.from_addr == "ada@example.com" and p.from_name == "Ada Lovelace"
    assert p.message_id == "<m1@example.com>" and p.in_reply_to == "<a@x>"
    assert p.references == ("<r0@x>", "<a@x>")
    assert p.subject == "Help" and p.text.strip() == "plain words" and p.html is None
    assert p.sent_at == datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc)
    assert not p.malformed and p.defects == ()


def test_thread_keys_put_in_reply_to_first_then_references_newest_first():
    p = parse_mail(mail(headers={"In-Reply-To": "<b@x>", "References": "<a@x> <b@x> <c@x>"}))
    assert p.thread_keys() == ["<b@x>", "<c@x>", "<a@x>"]


def test_pick_thread_takes_the_best_key_a_stored_message_has():
    assert pick_thread(["<b@x>", "<a@x>"], {"<a@x>": 1, "<b@x>": 2}) == 2
    assert pick_thread(["<z@x>", "<a@x>"], {"<a@x>": 1}) == 1
    assert pick_thread(["<z@x>"], {"<a@x>": 1}) is None


@pytest.mark.parametrize("subject,ticket", [("Broken boiler [#42]", 42), ("Re: ticket #7 again", 7),
                                            ("Ticket 12", 12), ("no number here", None), ("[#x]", None)])
def test_a_ticket_named_in_the_subject(subject, ticket):
    assert parse_mail(mail(subject=subject)).ticket_id() == ticket


def test_a_ticket_carried_by_our_own_message_id_in_references():
    ours = new_message_id(token="abc", thread_id=5, ticket_id=99, domain="center.test")
    assert ours == "<abc.t5.ticket-99.cti@center.test>"
    assert parse_mail(mail(headers={"References": f"<x@y> {ours}"})).ticket_id() == 99
    # Someone else's id that merely looks alike, after the @, does not count.
    assert parse_mail(mail(headers={"References": "<x@ticket-5.y>"})).ticket_id() is None


def test_plain_text_is_kept_beside_sanitised_html_and_attachments_are_taken():
    p = parse_mail(mail(html='<p onclick="x()">Hi<script>alert(1)</script><img src="https://t.test/p.gif"></p>',
                        attach=b"%PDF-1.4 bytes"))
    assert p.text.strip() == "plain words"
    assert "script" not in p.html and "onclick" not in p.html and "t.test" not in p.html
    assert "<p>Hi<img></p>" in p.html
    [a] = p.attachments
    assert a.data == b"%PDF-1.4 bytes" and a.content_type == "application/pdf"
    assert "/" not in a.filename


def test_html_only_mail_has_no_text_and_safe_html():
    p = parse_mail(mail(body=None, html='<a href="javascript:alert(1)">x</a><a href="https://ok.test">y</a>'))
    assert p.text is None
    assert p.html.strip() == ('<a rel="noopener noreferrer nofollow">x</a>'
                      '<a href="https://ok.test" rel="noopener noreferrer nofollow">y</a>')


@pytest.mark.parametrize("html,kept", [
    ('<img src="cid:logo@x">', '<img src="cid:logo@x">'),
    ('<img src="//evil.test/p.gif">', '<img>'),
    ('<img src="data:image/png;base64,AAAA">', '<img>'),
    ('<a href="/api/logout">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<div style="background:url(http://e.test/x)">x</div>', '<div>x</div>'),
    ('<iframe src="https://e.test"></iframe><form action=x><input></form>ok', 'ok'),
    ('<blockquote cite="https://e.test">q</blockquote>', '<blockquote>q</blockquote>'),
    ('<!-- hidden --><b>b</b>', '<b>b</b>'),
])
def test_sanitising_removes_remote_content_and_scripts(html, kept):
    assert sanitize_html(html) == kept


def test_a_mail_with_broken_mime_is_flagged_and_kept_whole():
    raw = (b"From: x@y.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
           b"no boundary ever comes\r\n")
    p = parse_mail(raw)
    assert p.malformed and p.defects and p.raw == raw
    assert p.from_addr == "x@y.test" and p.subject == "broken"


def test_unknown_charset_and_lying_bytes_are_decoded_with_replacements():
    raw = (b"From: x@y.test\r\nSubject: s\r\nContent-Type: text/plain; charset=x-no-such\r\n\r\nab\xff\xfecd\r\n")
    p = parse_mail(raw)
    assert p.text is not None and "ab" in p.text and "cd" in p.text


def test_nul_and_control_characters_never_reach_the_text():
    raw = b"From: x@y.test\r\nSubject: a\x00b\x07c\r\n\r\nbody\x00with\x1bnul\r\n"
    p = parse_mail(raw)
    assert "\x00" not in p.subject and "\x00" not in p.text and "\x1b" not in p.text


def test_a_mail_without_from_is_flagged():
    p = parse_mail(b"Subject: who\r\n\r\nbody\r\n")
    assert p.from_addr == "" and p.malformed and "no From address" in p.defects


def test_reply_headers_keep_the_thread():
    answered = ReplyTo(message_id="<c@x>", references=("<a@x>", "<b@x>"), from_addr="ada@example.com",
                       subject="Re: Help")
    assert thread_headers(answered) == ("<c@x>", ("<a@x>", "<b@x>", "<c@x>"))
    long = ReplyTo(message_id="<z@x>", references=tuple(f"<{i}@x>" for i in range(40)), from_addr="a@b", subject="s")
    irt, refs = thread_headers(long)
    assert irt == "<z@x>" and refs[-1] == "<z@x>" and len(refs) == 20


def test_reply_subject_has_one_re_and_one_ticket_tag():
    assert reply_subject("Re: RE: aw: Help", None) == "Re: Help"
    assert reply_subject("Help [#4]", 4) == "Re: Help [#4]"
    assert reply_subject("Help\r\nBcc: x@evil.test", 4) == "Re: Help  Bcc: x@evil.test [#4]"


def test_build_reply_is_a_message_a_mail_client_threads():
    answered = ReplyTo(message_id="<c@x>", references=("<a@x>",), from_addr="ada@example.com", subject="Help")
    msg = build_reply(answered=answered, sender="desk@center.test", sender_name="Desk", text="Fixed.",
                      message_id="<r1.t1.cti@center.test>", ticket_id=None, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    back = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert back["In-Reply-To"] == "<c@x>" and back["References"] == "<a@x> <c@x>"
    assert back["To"] == "ada@example.com" and back["Subject"] == "Re: Help"
    assert back.get_content().strip() == "Fixed."
    with pytest.raises(ValueError):
        build_reply(answered=ReplyTo(None, (), "a@b\r\nBcc: c@d", "s"), sender="desk@center.test", sender_name=None,
                    text="x", message_id="<m@x>", ticket_id=None, now=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_host_port_and_thread_refs():
    assert host_port("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert host_port("[::1]:25") == ("::1", 25)
    for bad in ("x", ":25", "h:0", "h:port"):
        with pytest.raises(ValueError):
            host_port(bad)
    assert thread_ref("mail:12") == 12
    assert thread_ref(task_ref(12, 40)) == 12 and task_ref(12) == "mail:12"     # a reopened thread's task
    for bad in ("chat:12", "mail:12/", "mail:12/x", "mail:/3", "mail:1/2/3"):
        with pytest.raises(ValueError):
            thread_ref(bad)


@given(st.text(max_size=40))
def test_thread_ref_reads_any_text_or_says_why_not(text):
    try:
        n = thread_ref(text)
    except ValueError as exc:
        assert "not a mail ref" in str(exc)
    else:
        assert text.startswith("mail:") and str(n) in text


@given(st.integers(0, 2**62), st.one_of(st.none(), st.integers(0, 2**62)))
def test_task_refs_read_back(thread_id, message_pk):
    assert thread_ref(task_ref(thread_id, message_pk)) == thread_id


async def test_without_the_database_the_receiver_answers_451_so_the_sender_retries():
    from mail.service import MailConfig, MailService, MarkWaiting

    filed = []

    async def file_task(channel, queue, customer_ref, subject, ref):
        filed.append(ref)

    service = MailService(MailConfig(listen=None, max_bytes=10_000, smtp=None, sender=None, sender_name=None,
                                     queue="email", hostname="center.test"), pool=lambda: None, file_task=file_task)
    reply = await service.receive(mail(), "ada@example.com")
    assert reply.startswith("451 ") and "try again" in reply
    assert service.counts["deferred"] == 1 and service.counts["stored"] == 0 and filed == []
    assert service.health() == {"listening": None, **service.counts}
    with pytest.raises(RuntimeError):
        await MarkWaiting(lambda: None)("email", "email", None, "s", "mail:1")


async def test_a_new_thread_is_listed_as_waiting_then_filed_as_an_email_task_of_the_acd():
    from mail.service import IntoAcd
    calls: list[tuple] = []

    async def waiting(*args):
        calls.append(("waiting",) + args)

    async def file_task(*args):
        calls.append(("task",) + args)
        if args[1] != "email":
            raise ValueError("queue 'sales' is no email queue")
        return "email-1"

    filer = IntoAcd(file_task, waiting)
    await filer("email", "email", None, "Invoice\n  copy  please", "mail:7")
    assert calls[0][0] == "waiting" and calls[1] == ("task", "email", "email", "mail:7", "Invoice copy please", "mail:7")
    await filer("email", "email", "c-9", "x" * 500, "mail:8")
    assert calls[3][3] == "c-9" and len(calls[3][4]) == 200
    calls.clear()
    with pytest.raises(ValueError):            # no e-mail queue: listed as waiting all the same
        await filer("email", "sales", None, "hi", "mail:9")
    assert [c[0] for c in calls] == ["waiting", "task"]
