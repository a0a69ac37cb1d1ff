"""Web chat's core: one conversation, its numbered messages, the customer's inputs
checked, and a rate limiter. Pure: no I/O, the clock is an argument.

- A ``Chat`` numbers its messages (``seq`` from 1): a widget or desktop that
  reconnects asks for those after the last ``seq`` it has, so nothing is lost
  or shown twice. Text only, at most ``BODY_MAX`` characters, no control
  characters but newlines and tabs.
- ``parse_client(text)`` turns one WebSocket frame from the widget into a
  ``ClientMessage`` or raises ``ChatError`` with the reason (the widget shows
  it; nothing is stored).
- ``RateLimit`` is a token bucket per key (a client address, a chat), with a
  bounded number of keys (least recently used dropped).

    CtiError
    └── TaskError (omni.tasks)
        └── ChatError     a bad frame, field or message, or a closed chat
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from omni.tasks import TaskError

__all__ = ["Chat", "ChatError", "ChatMessage", "ClientMessage", "RateLimit", "parse_client", "BODY_MAX",
           "FRAME_MAX"]

BODY_MAX = 2000
NAME_MAX = 80
FRAME_MAX = 8192
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")   # acd.config.Name
KINDS = ("start", "resume", "message", "typing", "leave")


class ChatError(TaskError):
    """A chat input refused: the message says why."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    seq: int
    sender: str             # customer, agent, system
    body: str
    at: float
    agent_id: str | None = None

    def public(self) -> dict[str, object]:
        return {"type": "message", "seq": self.seq, "sender": self.sender, "body": self.body, "at": self.at}


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One frame from the widget. ``kind`` start (name, email, body = the question,
    queue = the chat queue the widget asks for or None for the default, transcript = the
    customer asks for the transcript by e-mail at the end), resume (token, last_seq),
    message (body), typing (on), leave."""

    kind: str
    name: str = ""
    email: str = ""
    body: str = ""
    token: str = ""
    last_seq: int = 0
    on: bool = False
    queue: str | None = None
    transcript: bool = False


def clean_body(body: object, limit: int = BODY_MAX) -> str:
    if not isinstance(body, str):
        raise ChatError("the message must be text")
    body = body.strip()
    if not body:
        raise ChatError("the message is empty")
    if len(body) > limit:
        raise ChatError(f"the message is longer than {limit} characters")
    if _CONTROL.search(body):
        raise ChatError("the message holds control characters")
    return body


def parse_client(text: str | bytes) -> ClientMessage:
    """One widget frame; raises ``ChatError`` naming what is wrong."""
    if isinstance(text, bytes) or len(text) > FRAME_MAX:
        raise ChatError(f"a frame is JSON text of at most {FRAME_MAX} characters")
    try:
        data = json.loads(text)
    except ValueError:
        raise ChatError("a frame is a JSON object") from None
    if not isinstance(data, dict):
        raise ChatError("a frame is a JSON object")
    kind = data.get("type")
    if kind not in KINDS:
        raise ChatError(f"type must be one of {', '.join(KINDS)}")
    if kind == "start":
        name = data.get("name")
        if not isinstance(name, str) or not 0 < len(name.strip()) <= NAME_MAX or _CONTROL.search(name):
            raise ChatError(f"name: 1 to {NAME_MAX} characters, no control characters")
        email = data.get("email")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            raise ChatError("email: an e-mail address")
        queue = data.get("queue")
        if queue is not None and (not isinstance(queue, str) or not _QUEUE.fullmatch(queue)):
            raise ChatError("queue: a queue id (letters, digits and . _ : @ + -, at most 64)")
        transcript = data.get("transcript", False)
        if not isinstance(transcript, bool):
            raise ChatError("transcript: true or false (e-mail the transcript at the end)")
        return ClientMessage("start", name=name.strip(), email=email.strip().lower(),
                             body=clean_body(data.get("question"), 1000), queue=queue, transcript=transcript)
    if kind == "resume":
        token, last = data.get("token"), data.get("last_seq", 0)
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise ChatError("token: the chat's token")
        if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last <= 1_000_000:
            raise ChatError("last_seq: the last message number received (0 for none)")
        return ClientMessage("resume", token=token, last_seq=last)
    if kind == "message":
        return ClientMessage("message", body=clean_body(data.get("body")))
    if kind == "typing":
        on = data.get("on")
        if not isinstance(on, bool):
            raise ChatError("on: true or false")
        return ClientMessage("typing", on=on)
    return ClientMessage("leave")


@dataclass(eq=False)
class Chat:
    """One web chat: who, its task, its messages. ``status``: waiting, active (an agent
    has it), closed."""

    token: str
    task_id: str
    name: str
    email: str
    status: str = "waiting"
    agent_id: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)
    max_messages: int = 1000
    mail_transcript: bool = False       # the customer asked for the transcript by e-mail

    def add(self, sender: str, body: str, now: float, agent_id: str | None = None) -> ChatMessage:
        """Append a message (``body`` checked). Raises ``ChatError`` when closed or full."""
        if self.status == "closed" and sender != "system":
            raise ChatError("the chat is closed")
        if len(self.messages) >= self.max_messages:
            raise ChatError(f"the chat holds {self.max_messages} messages: start a new one")
        m = ChatMessage(len(self.messages) + 1, sender, clean_body(body) if sender != "system" else body, now,
                        agent_id)
        self.messages.append(m)
        return m

    def after(self, seq: int) -> list[ChatMessage]:
        return self.messages[max(0, seq):]

    def transcript(self) -> str:
        """The conversation as plain text, one message a paragraph."""
        lines = [f"Chat {self.task_id} with {self.name} <{self.email}>", ""]
        for m in self.messages:
            who = {"customer": self.name, "agent": "Agent", "system": "*"}.get(m.sender, m.sender)
            at = datetime.fromtimestamp(m.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            lines.append(f"[{at}] {who}: {m.body}")
        return "\n".join(lines) + "\n"


class RateLimit:
    """A token bucket per key: ``burst`` at once, ``rate`` more per second."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._keys: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._keys.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        ok = tokens >= 1.0
        self._keys[key] = (tokens - 1.0 if ok else tokens, now)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return ok
