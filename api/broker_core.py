"""Events to and from the broker (docs/broker.md): subjects, envelopes, the outbox, the follower. Pure.

No sockets, no clock: ``api.broker`` publishes what ``encode`` makes and feeds
``decode`` what a consumer receives.

Why it is shaped like this:

- **One message per bus event**, its payload exactly the JSON body a WebSocket
  client gets (``api.hub`` encodes it; the client's message is that body with
  its stream's ``seq`` spliced in front), so an API node serving from the broker
  sends the same bytes the leader's own hub would.
- **Subjects** say what the event is about, for consumers that want a part:
  ``cti.<cluster>.call.<kind>`` (``cti.east.call.call.offered``,
  ``cti.east.call.acd.offer``) and ``cti.<cluster>.agent.<agent id>``. A token
  holds only ``[A-Za-z0-9_-]``; anything else in a cluster name or an agent id is
  written ``%XX`` (its UTF-8 bytes), so ``.``, ``*``, ``>`` and spaces cannot
  change a subject's shape.
- **Headers** carry what a consumer needs beside the body: the agents the
  event concerns (``Cti-Agents``: the hub's topics, computed once by the
  publisher, so a consumer that starts mid-stream need not rebuild them), and
  the publisher's identity and bus order (``Cti-Origin``, ``Cti-Bus-Seq``).
  ``Nats-Msg-Id`` is the two joined: JetStream stores a retried publish once.
- **The outbox** holds encoded messages while the broker is away, at most
  ``limit``; past that a new message is dropped and counted (never the bus
  waits). Dropping the newest keeps what is held a contiguous run of the bus's
  order, and the follower sees the hole (``Cti-Bus-Seq`` jumps).
- **The follower** checks what a consumer reads: stream sequences contiguous
  (a jump means messages aged out or were deleted), bus sequences contiguous per
  origin (a jump means the publisher dropped), nothing twice.
"""
from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

from api.hub import _body_json

_SAFE = re.compile(r"[A-Za-z0-9_-]")
_TOKEN = re.compile(r"^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+$")
H_ID = "Nats-Msg-Id"
H_ORIGIN = "Cti-Origin"
H_BUS_SEQ = "Cti-Bus-Seq"
H_AGENTS = "Cti-Agents"
H_EXPECTED_LAST_ID = "Nats-Expected-Last-Msg-Id"
MAX_PAYLOAD = 1 << 20


class BrokerMessageError(ValueError):
    """A message read from the broker that is not one of ours (bad subject, headers or body)."""


def token(text: str) -> str:
    """``text`` as one subject token: safe characters kept, every other byte ``%XX``."""
    if not text:
        raise ValueError("a subject token is not empty")
    return "".join(c if _SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def untoken(tok: str) -> str:
    """The text ``token`` made ``tok`` from. Raises ``BrokerMessageError``."""
    if not _TOKEN.fullmatch(tok):
        raise BrokerMessageError(f"not a subject token: {tok[:80]!r}")
    out = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "%":
            out.append(int(tok[i + 1:i + 3], 16))
            i += 3
        else:
            out += tok[i].encode()
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise BrokerMessageError(f"not UTF-8 in a subject token: {tok[:80]!r}") from None


def prefix(cluster: str) -> str:
    return f"cti.{token(cluster)}"


def stream_subjects(cluster: str) -> list[str]:
    """What the cluster's stream stores: every subject under its prefix."""
    return [f"{prefix(cluster)}.>"]


def call_subject(cluster: str, kind: str) -> str:
    """``cti.<cluster>.call.<kind>``: each dotted part of ``kind`` (``call.offered``) a token.
    Raises ``ValueError`` for an empty part."""
    return f"{prefix(cluster)}.call." + ".".join(token(part) for part in kind.split("."))


def agent_subject(cluster: str, agent_id: str) -> str:
    return f"{prefix(cluster)}.agent.{token(agent_id)}"


def push_subject(cluster: str, kind: str) -> str:
    """``cti.<cluster>.push.<type>``: a message another feature pushes to agents'
    desktops (a screen-pop, an emergency banner), numbered in the stream like an event."""
    return f"{prefix(cluster)}.push.{token(kind)}"


def board_stream(stream: str) -> str:
    """The stream of the leader's wallboards (the last one only): ``<stream>_BOARD``."""
    return f"{stream}_BOARD"


def board_subject(cluster: str) -> str:
    """Outside ``cti.<cluster>.>`` on purpose: a board is a snapshot, not an event, and
    takes no number in the events' stream (whose sequence is the clients' ``seq``)."""
    return f"ctiboard.{token(cluster)}"


def chained(env: "Envelope", previous_id: str | None) -> dict[str, str]:
    """``env``'s headers, with JetStream's ``Nats-Expected-Last-Msg-Id`` set to the message
    published just before it (when known): with several publishes awaiting their
    acknowledgements at once, the broker refuses one that would land out of order (its
    predecessor lost on a reconnect), and the publisher sends again from the first
    unacknowledged one (``Nats-Msg-Id`` makes those already stored count once)."""
    if previous_id is None:
        return env.headers
    return {**env.headers, H_EXPECTED_LAST_ID: previous_id}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for the broker: subject, headers, payload (the body's JSON)."""

    subject: str
    headers: dict[str, str]
    payload: bytes
    bus_seq: int


def encode(subject: str, body: Mapping[str, Any], agents: frozenset[str], origin: str, bus_seq: int) -> Envelope:
    """The message for one bus event. ``body`` is the WebSocket body (``api.hub.call_message``,
    ``api.hub.agent_message``); ``origin`` names this publisher's run, ``bus_seq`` its order (from 1)."""
    headers = {H_ID: f"{origin}:{bus_seq}", H_ORIGIN: origin, H_BUS_SEQ: str(bus_seq),
               H_AGENTS: ",".join(token(a) for a in sorted(agents))}
    return Envelope(subject, headers, _body_json(body).encode(), bus_seq)


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message read back: where it sits in the stream, who sent it, and the body."""

    stream_seq: int
    origin: str
    bus_seq: int
    agents: frozenset[str]
    subject: str
    body: dict[str, Any]
    body_json: str


def decode(subject: str, headers: Mapping[str, str] | None, payload: bytes, stream_seq: int) -> Delivered:
    """A message a consumer read. Raises ``BrokerMessageError`` when it is not one ``encode`` made."""
    if not subject.startswith("cti.") or len(subject.split(".")) < 4:
        raise BrokerMessageError(f"not a cti subject: {subject[:80]!r}")
    h = headers or {}
    origin = h.get(H_ORIGIN)
    if not origin or len(origin) > 200:
        raise BrokerMessageError("no Cti-Origin header")
    raw_seq = h.get(H_BUS_SEQ, "")
    if not (raw_seq.isascii() and raw_seq.isdigit()) or len(raw_seq) > 18 or int(raw_seq) < 1:
        raise BrokerMessageError(f"bad Cti-Bus-Seq header: {raw_seq[:40]!r}")
    raw_agents = h.get(H_AGENTS, "")
    agents = frozenset(untoken(a) for a in raw_agents.split(",")) if raw_agents else frozenset()
    if len(payload) > MAX_PAYLOAD:
        raise BrokerMessageError("payload too large")
    try:
        text = payload.decode()
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise BrokerMessageError("payload is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise BrokerMessageError("payload is not a message body (an object with a type)")
    if stream_seq < 1:
        raise BrokerMessageError(f"bad stream sequence {stream_seq}")
    return Delivered(stream_seq, origin, int(raw_seq), agents, subject, body, text)


class Outbox:
    """Messages waiting for the broker, in bus order, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("an outbox holds at least one message")
        self.limit = limit
        self._q: deque[Envelope] = deque()
        self.offered = 0
        self.dropped = 0
        self.published = 0

    def __len__(self) -> int:
        return len(self._q)

    def offer(self, env: Envelope) -> bool:
        """Hold ``env``; False (and counted) when the outbox is full."""
        self.offered += 1
        if len(self._q) >= self.limit:
            self.dropped += 1
            return False
        self._q.append(env)
        return True

    def head(self) -> Envelope | None:
        """The next message to publish (it stays until ``done``)."""
        return self._q[0] if self._q else None

    def window(self, n: int) -> list[Envelope]:
        """The next ``n`` messages at most, in order (they stay until ``done``)."""
        return [self._q[i] for i in range(min(n, len(self._q)))]

    def done(self) -> None:
        """The head is stored by the broker."""
        self._q.popleft()
        self.published += 1

    def discard(self) -> int:
        """Let every held message go (a deposed HA leader must not publish them); how many."""
        n = len(self._q)
        self._q.clear()
        return n


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the follower made of a message: ``ok``, ``duplicate`` (skip it), or a gap
    (``stream_gap``: the stream lost messages; ``bus_gap``: the publisher dropped some)."""

    kind: str
    missing: int = 0


class Follower:
    """Checks a consumer's messages, from the stream sequence it started after."""

    def __init__(self, after: int = 0) -> None:
        self.last_stream_seq = after
        self.last_bus: dict[str, int] = {}
        self.gaps = 0
        self.duplicates = 0

    def feed(self, d: Delivered) -> Verdict:
        if d.stream_seq <= self.last_stream_seq:
            self.duplicates += 1
            return Verdict("duplicate")
        stream_missing = d.stream_seq - self.last_stream_seq - 1
        self.last_stream_seq = d.stream_seq
        before = self.last_bus.get(d.origin)
        self.last_bus[d.origin] = d.bus_seq if before is None else max(before, d.bus_seq)
        if stream_missing:
            self.gaps += 1
            return Verdict("stream_gap", stream_missing)
        if before is not None and d.bus_seq > before + 1:
            self.gaps += 1
            return Verdict("bus_gap", d.bus_seq - before - 1)
        return Verdict("ok")
