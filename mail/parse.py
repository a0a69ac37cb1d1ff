"""Inbound mail, pure: bytes in, a ``ParsedMail`` out; never raises.

The stdlib parser (``email`` with ``policy.default``) reads the message; this module picks
what the channel needs: the ids that thread it (Message-ID, In-Reply-To, References), the
sender, a subject, the text/plain body (preferred) and the text/html body sanitised
(``mail.sanitize``), and the attachments. Wire facts it relies on:

- ``policy.default`` records structural problems as *defects* on each part instead of
  raising; header values are parsed lazily, so reading one may still raise (a From that
  is not an address list): every read is guarded here.
- A body's charset may name a codec Python lacks (``LookupError``) or lie about the bytes
  (``UnicodeDecodeError``): the part is decoded with replacement characters instead.
- A message with defects is *malformed*: kept whole (the raw bytes go to storage) with
  the defects named, its parts taken as far as they parse.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from mail.sanitize import sanitize_html

#: A Message-ID as we keep it: one ``<...>`` token, no spaces or controls, bounded.
_MSGID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,250}>")
#: A ticket named in a subject: "[#123]" or "ticket #123" / "Ticket 123".
_TICKET_SUBJECT = re.compile(r"\[#([0-9]{1,18})\]|\bticket\s*#?\s*([0-9]{1,18})\b", re.I)
#: A ticket carried in one of our own Message-IDs (mail.outbound.new_message_id).
_TICKET_REF = re.compile(r"^<[^<>@]*\.ticket-([0-9]{1,18})\.[^<>@]*@")
ADDRESS = re.compile(r"[^@\s<>\"',;\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.\-\[\]:]{1,255}")
MAX_REFS = 50
MAX_SUBJECT = 500
MAX_TEXT = 1_000_000


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ParsedMail:
    """What one inbound mail says, every field safe to store and show.

    ``html`` is already sanitised (never the sender's HTML); ``malformed`` with ``defects``
    naming why; ``raw`` the bytes as received."""
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    from_addr: str
    from_name: str | None
    to_addrs: tuple[str, ...]
    subject: str
    sent_at: datetime | None
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    malformed: bool
    defects: tuple[str, ...]
    raw: bytes = field(repr=False)

    def thread_keys(self) -> list[str]:
        """The Message-IDs that may name this mail's thread, best first: In-Reply-To,
        then References from the newest back."""
        keys = [self.in_reply_to] if self.in_reply_to else []
        keys += [r for r in reversed(self.references) if r not in keys]
        return keys

    def ticket_id(self) -> int | None:
        """The ticket the subject names, else one our own Message-IDs in References carry."""
        m = _TICKET_SUBJECT.search(self.subject)
        if m:
            return int(m.group(1) or m.group(2))
        for ref in reversed(((self.in_reply_to,) if self.in_reply_to else ()) + self.references):
            m = _TICKET_REF.match(ref)
            if m:
                return int(m.group(1))
        return None


def _clean_text(value: str, limit: int) -> str:
    """No NUL or other C0 control but tab/newline (PostgreSQL text refuses NUL), bounded."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", value)[:limit]


def _header(msg: Message, name: str, defects: list[str]) -> str | None:
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    except Exception as exc:        # a lazily parsed header that does not parse
        defects.append(f"header {name}: {type(exc).__name__}")
        try:
            raw = msg.get_all(name, failobj=[None])[0]     # type: ignore[index]
            return None if raw is None else str(raw)
        except Exception:
            return None


def msg_ids(value: str | None) -> tuple[str, ...]:
    """The Message-IDs in a header value, in order, each once, at most ``MAX_REFS`` (the newest)."""
    if not value:
        return ()
    found = list(dict.fromkeys(_MSGID.findall(value)))
    return tuple(found[-MAX_REFS:])


def _address(value: str | None) -> tuple[str | None, str]:
    """(display name, lower-case address) of the first address in a header value ('' when none)."""
    if not value:
        return None, ""
    try:
        name, addr = parseaddr(value)
    except Exception:
        name, addr = "", ""
    if not ADDRESS.fullmatch(addr or ""):
        m = ADDRESS.search(value)
        addr = m.group(0) if m else ""
    name = _clean_text(name, 200).strip() or None
    return name, addr.lower()


def _addresses(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = []
    return tuple(dict.fromkeys(a.lower() for _, a in pairs if ADDRESS.fullmatch(a or "")))[:50]


def _decoded(part: Message, defects: list[str]) -> str:
    """A text part's body as text, whatever its charset says."""
    try:
        if isinstance(part, EmailMessage):
            content = part.get_content()
            if isinstance(content, str):
                return content
    except Exception as exc:
        defects.append(f"part {part.get_content_type()}: {type(exc).__name__}")
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    name = _clean_text(str(name), 255).replace("/", "_").replace("\\", "_").strip()
    return name or None


def _walk(msg: Message, defects: list[str]) -> tuple[str | None, str | None, list[Attachment]]:
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    try:
        parts = list(msg.walk())
    except Exception as exc:
        defects.append(f"walk: {type(exc).__name__}")
        parts = [msg]
    for part in parts[:500]:
        try:
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            try:
                disposition = (part.get_content_disposition() or "").lower()
            except Exception:
                disposition = ""
            if disposition != "attachment" and ctype == "text/plain" and text is None:
                text = _decoded(part, defects)
            elif disposition != "attachment" and ctype == "text/html" and html is None:
                html = _decoded(part, defects)
            elif disposition == "attachment" or not ctype.startswith(("text/", "multipart/")):
                try:
                    data = part.get_payload(decode=True)
                except Exception:
                    data = None
                if not isinstance(data, bytes):
                    data = str(part.get_payload()).encode("utf-8", errors="replace")
                attachments.append(Attachment(_filename(part), _clean_text(ctype, 100), data))
        except Exception as exc:      # one bad part is skipped, never the whole mail
            defects.append(f"part: {type(exc).__name__}")
    return text, html, attachments


def _defects_of(msg: Message) -> list[str]:
    found: list[str] = []
    try:
        for part in msg.walk():
            found += [type(d).__name__ for d in getattr(part, "defects", ())]
    except Exception as exc:
        found.append(f"walk: {type(exc).__name__}")
    return found


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse one inbound message. Never raises: what does not parse is flagged malformed."""
    defects: list[str] = []
    try:
        msg = message_from_bytes(raw, policy=policy.default)
    except Exception as exc:
        return _unparseable(raw, f"message: {type(exc).__name__}")
    defects += _defects_of(msg)
    message_id = next(iter(msg_ids(_header(msg, "Message-ID", defects))), None)
    in_reply_to = next(iter(msg_ids(_header(msg, "In-Reply-To", defects))), None)
    references = msg_ids(_header(msg, "References", defects))
    from_name, from_addr = _address(_header(msg, "From", defects))
    if not from_addr:
        defects.append("no From address")
    to_addrs = _addresses(_header(msg, "To", defects))
    subject = _clean_text(" ".join((_header(msg, "Subject", defects) or "").split()), MAX_SUBJECT)
    sent_at = None
    date = _header(msg, "Date", defects)
    if date:
        try:
            sent_at = parsedate_to_datetime(date)
            if sent_at.tzinfo is None:
                sent_at = None
        except Exception:
            sent_at = None
    text, html, attachments = _walk(msg, defects)
    return ParsedMail(
        message_id=message_id, in_reply_to=in_reply_to, references=references,
        from_addr=from_addr, from_name=from_name, to_addrs=to_addrs, subject=subject or "(no subject)",
        sent_at=sent_at,
        text=None if text is None else _clean_text(text, MAX_TEXT),
        html=None if html is None else sanitize_html(_clean_text(html, MAX_TEXT)),
        attachments=tuple(attachments), malformed=bool(defects),
        defects=tuple(dict.fromkeys(_clean_text(d, 200) for d in defects))[:50], raw=raw)


def _unparseable(raw: bytes, why: str) -> ParsedMail:
    return ParsedMail(message_id=None, in_reply_to=None, references=(), from_addr="", from_name=None,
                      to_addrs=(), subject="(unparseable mail)", sent_at=None, text=None, html=None,
                      attachments=(), malformed=True, defects=(why,), raw=raw)
