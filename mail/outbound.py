"""A reply, pure: the headers that keep the thread, and the message to send.

A reply answers the thread's newest inbound mail: ``In-Reply-To`` is that mail's
Message-ID and ``References`` its References followed by its Message-ID (RFC 5322
3.6.4), the oldest dropped past ``MAX_REFS``. Our own Message-ID carries the thread and,
when the thread has one, the ticket (``.ticket-N.``), so a customer's answer to our reply
finds both even if their client drops everything but References.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from datetime import datetime

MAX_REFS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RE = re.compile(r"^\s*(re|aw|sv|antw)\s*:\s*", re.I)


@dataclass(frozen=True)
class ReplyTo:
    """The mail a reply answers."""
    message_id: str | None
    references: tuple[str, ...]
    from_addr: str
    subject: str


def new_message_id(*, token: str, thread_id: int, ticket_id: int | None, domain: str) -> str:
    """Our Message-ID for an outbound mail of ``thread_id`` (``token``: unique, [A-Za-z0-9])."""
    ticket = f".ticket-{ticket_id}" if ticket_id is not None else ""
    return f"<{token}.t{thread_id}{ticket}.cti@{domain}>"


def thread_headers(answered: ReplyTo) -> tuple[str | None, tuple[str, ...]]:
    """(In-Reply-To, References) of a reply to ``answered``."""
    if answered.message_id is None:
        return None, answered.references[-MAX_REFS:]
    refs = tuple(r for r in answered.references if r != answered.message_id) + (answered.message_id,)
    return answered.message_id, refs[-MAX_REFS:]


def reply_subject(subject: str, ticket_id: int | None) -> str:
    """"Re: " once, the ticket tag once, no control characters."""
    s = _CONTROL.sub(" ", subject).strip()
    while _RE.match(s):
        s = _RE.sub("", s, count=1)
    tag = f"[#{ticket_id}]"
    if ticket_id is not None and tag not in s:
        s = f"{s} {tag}".strip()
    return f"Re: {s}"[:300]


def build_reply(*, answered: ReplyTo, sender: str, sender_name: str | None, text: str, message_id: str,
                ticket_id: int | None, now: datetime) -> EmailMessage:
    """The reply as a message ready for SMTP. Raises ``ValueError`` when an address
    holds a line break (they come from storage, already checked; this is the last guard)."""
    for value in (answered.from_addr, sender):
        if _CONTROL.search(value) or "@" not in value:
            raise ValueError(f"not an address: {value[:80]!r}")
    msg = EmailMessage()
    msg["From"] = formataddr((_CONTROL.sub(" ", sender_name), sender)) if sender_name else sender
    msg["To"] = answered.from_addr
    msg["Subject"] = reply_subject(answered.subject, ticket_id)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    in_reply_to, refs = thread_headers(answered)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if refs:
        msg["References"] = " ".join(refs)
    msg.set_content(text)
    return msg
