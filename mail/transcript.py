"""A web chat's transcript as an e-mail to its customer, pure: the message to send.

The customer asks for it in the widget ("Send me a copy of the chat": the ``start``
frame's ``transcript``); it goes out through the same relay as mail replies
(``MailService.send_transcript``) when an agent closes the chat. It is a message of
its own, not a reply: no thread, no In-Reply-To; its Message-ID names the chat's task.
"""
from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ADDRESS = re.compile(r"^[^@\s<>\"',;]{1,64}@[^@\s<>\"',;]{1,253}$")
_TOKEN = re.compile(r"^[A-Za-z0-9]{8,64}$")
_TASK = re.compile(r"[^A-Za-z0-9-]")

__all__ = ["transcript_message"]


def transcript_message(*, to: str, sender: str, sender_name: str | None, task_id: str, text: str, token: str,
                       now: datetime) -> EmailMessage:
    """The transcript ``text`` (``omni.chat.Chat.transcript``) as a mail from ``sender``
    to ``to``. ``token``: unique letters and digits for the Message-ID. Raises
    ``ValueError`` for an address that is not one (a line break, no ``@``) or a bad token."""
    for value in (to, sender):
        if _CONTROL.search(value) or not _ADDRESS.fullmatch(value):
            raise ValueError(f"not an address: {value[:80]!r}")
    if not _TOKEN.fullmatch(token):
        raise ValueError("token: 8 to 64 letters and digits")
    msg = EmailMessage()
    msg["From"] = formataddr((_CONTROL.sub(" ", sender_name), sender)) if sender_name else sender
    msg["To"] = to
    msg["Subject"] = "The transcript of your chat with us"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{token}.{_TASK.sub('', task_id)[:64]}.chat@{sender.rpartition('@')[2]}>"
    msg["Auto-Submitted"] = "auto-generated"       # RFC 3834: no auto-replies to it
    msg.set_content("Thank you for chatting with us. Here is our conversation.\n\n" + text)
    return msg
