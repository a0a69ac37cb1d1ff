"""The WebSocket hub's core: streams, sequence numbers, replay buffers, topics. Pure.

No sockets, no clock, no asyncio: the shell (``api.ws``) feeds it and drains it.

Why it is shaped like this:

- A **stream** belongs to one principal (a user, or an API key): every
  message for them is numbered there (``seq``, from 1, one more per event)
  and kept in a bounded ring (``replay_max`` events, none older than
  ``replay_max_age`` seconds: a resume after longer than a stream lives
  unread is a resync anyway, and a ring of hours of a busy agent's events is
  memory no resume needs). Each stream has an ``epoch``
  (a random id) that changes when the stream is made anew (first connect,
  after it expired, after a daemon restart), so a ``seq`` is only meaningful
  with its epoch.
- A **connection** reads one stream through its own bounded queue of encoded
  messages. Publishing never waits: it appends to every matching stream and
  to each of its connections' queues. A connection whose queue is full is
  marked ``drop = "slow"`` and skipped from then on; the shell closes it, and
  the client reconnects with its last ``seq``: what it missed comes from the
  stream's ring, so a slow client loses nothing and slows nobody.
- **Resume**: a client attaches with ``(epoch, last_seq)``. Same epoch and
  ``last_seq`` still in the ring (or nothing missed): the events after it are
  queued, in order, then live ones; no gap, no repeat. Otherwise a ``resync``
  message says events were lost: reload state (the ``hello`` carries a fresh
  snapshot).
- **Topics**: a stream's ``Scope`` is either everything (supervisors,
  admins) or one ACD agent's events (an agent user). An event is published
  with the set of agents it concerns; ``CallAudience`` decides that set for
  call events: the agents a call is offered to or connected with, until their
  offer ends or they leave the call.
- Control messages (``hello``, ``resync``, ``pong``) carry the connection's
  latest event ``seq`` but do not take a number of their own.
"""
from __future__ import annotations

import json
import secrets
from collections import deque
from dataclasses import asdict, dataclass, field
from itertools import count
from typing import Any, Callable, Mapping

from cti.events import CallView

# Kinds that tie an agent to a call (data["agent"] is the agent id), and kinds
# after which the agent named is no longer part of it.
_JOIN = frozenset({"call.offered", "call.connected"})
_LEAVE = frozenset({"call.offer_ended", "call.agent_left", "acd.withdrawn"})
# Decisions about one agent that the agent should see (without joining the call).
_NAMED = frozenset({"acd.offer"})


@dataclass(frozen=True, slots=True)
class Scope:
    """What a stream receives: everything, or the events of one ACD agent."""

    everything: bool = False
    agent_id: str | None = None

    def wants(self, agents: frozenset[str]) -> bool:
        return self.everything or (self.agent_id is not None and self.agent_id in agents)


@dataclass(frozen=True, slots=True)
class Resume:
    """What a reconnecting client says it has: the stream epoch and the last seq it processed."""

    epoch: str
    last_seq: int


@dataclass(eq=False, slots=True)
class Stream:
    key: str
    scope: Scope
    epoch: str
    ring: deque[tuple[int, str]]
    seq: int = 0
    conns: set["Connection"] = field(default_factory=set)
    idle_since: float | None = None
    marks: deque[tuple[float, int]] = field(default_factory=deque)   # (time, seq then), at each ``expire``

    @property
    def oldest(self) -> int:
        """The lowest seq still in the ring (seq + 1 when it is empty)."""
        return self.ring[0][0] if self.ring else self.seq + 1


@dataclass(eq=False, slots=True)
class Connection:
    id: int
    stream: Stream
    limit: int
    queue: deque[str] = field(default_factory=deque)
    last_seq: int = 0               # the seq of the last event queued to it
    drop: str | None = None         # set: the shell must close it ("slow", "replaced")
    floor: int = 0                  # events numbered at or below it are not queued (the client has
                                    # them: a resume ahead of an API node, ``api.node_core``)

    def __repr__(self) -> str:
        return f"Connection({self.id}, {self.stream.key!r}, queued={len(self.queue)}, drop={self.drop})"


@dataclass(frozen=True, slots=True)
class Attached:
    conn: Connection
    resumed: bool          # a resume was asked and the missed events were queued
    replayed: int          # how many events were queued from the ring
    resync: str | None     # why the client must reload state, or None


def encode(seq: int, body: Mapping[str, Any]) -> str:
    return _splice(seq, _body_json(body))


def _body_json(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, separators=(",", ":"), default=str, allow_nan=False)
    if not text.startswith("{") or text == "{}":
        raise ValueError("a message is a non-empty JSON object")
    return text


def _splice(seq: int, body_json: str) -> str:
    # The body is encoded once per publish; each stream only prefixes its seq.
    return f'{{"seq":{seq},{body_json[1:]}'


class Hub:
    """Streams and connections (see the module doc). Methods never block or raise on
    a slow client; ``now`` is epoch seconds, given by the shell."""

    def __init__(self, *, replay_max: int = 1000, queue_max: int = 500, stream_ttl: float = 900.0,
                 replay_max_age: float = 0.0,
                 new_epoch: Callable[[], str] = lambda: secrets.token_hex(8)) -> None:
        self.replay_max = replay_max
        self.replay_max_age = replay_max_age      # 0: no age bound
        self.queue_max = queue_max
        self.stream_ttl = stream_ttl
        self._new_epoch = new_epoch
        self._ids = count(1)
        self.streams: dict[str, Stream] = {}
        self._everything: set[Stream] = set()
        self._by_agent: dict[str, set[Stream]] = {}
        self.published = 0            # events published
        self.delivered = 0            # event copies queued to connections
        self.dropped_slow = 0         # connections dropped for a full queue
        self.resyncs = 0
        self.replay_events = 0        # events held in all streams' rings (each at most replay_max)
        self.replay_bytes = 0         # their encoded size (ASCII JSON: a character is a byte)

    # -- streams -------------------------------------------------------------

    def _index(self, s: Stream) -> None:
        if s.scope.everything:
            self._everything.add(s)
        elif s.scope.agent_id is not None:
            self._by_agent.setdefault(s.scope.agent_id, set()).add(s)

    def _unindex(self, s: Stream) -> None:
        self._everything.discard(s)
        if s.scope.agent_id is not None:
            group = self._by_agent.get(s.scope.agent_id)
            if group is not None:
                group.discard(s)
                if not group:
                    del self._by_agent[s.scope.agent_id]

    def _stream(self, key: str, scope: Scope) -> Stream:
        s = self.streams.get(key)
        if s is not None and s.scope != scope:
            # The principal's role or agent changed: a new stream, the old one's readers go.
            self._remove(s, "replaced")
            s = None
        if s is None:
            s = Stream(key, scope, self._new_epoch(), deque(maxlen=self.replay_max))
            self.streams[key] = s
            self._index(s)
        return s

    def _remove(self, s: Stream, reason: str) -> None:
        for c in s.conns:
            c.drop = c.drop or reason
            c.queue.clear()
        s.conns.clear()
        self._unindex(s)
        self.streams.pop(s.key, None)
        self.replay_events -= len(s.ring)
        self.replay_bytes -= sum(len(text) for _, text in s.ring)

    # -- connections ---------------------------------------------------------

    def attach(self, key: str, scope: Scope, resume: Resume | None, hello: Mapping[str, Any],
               now: float) -> Attached:
        """A new connection on ``key``'s stream. Queues ``hello`` (with ``stream``
        and ``resumed`` added), then the missed events or a ``resync``."""
        s = self._stream(key, scope)
        conn = Connection(next(self._ids), s, self.queue_max, last_seq=s.seq)
        s.conns.add(conn)
        s.idle_since = None
        replay: list[str] = []
        why: str | None = None
        if resume is not None:
            if resume.epoch != s.epoch:
                why = "unknown stream (new session, expired, or daemon restarted)"
            elif resume.last_seq > s.seq or resume.last_seq < 0:
                why = "last_seq is ahead of the stream"
            elif resume.last_seq < s.oldest - 1:
                why = f"missed {s.oldest - 1 - resume.last_seq} more events than are kept"
            else:
                replay = [text for seq, text in s.ring if seq > resume.last_seq]
        resumed = resume is not None and why is None
        self._control(conn, {**hello, "type": "hello", "stream": s.epoch, "resumed": resumed}, seq=s.seq)
        if why is not None:
            self.resyncs += 1
            self._control(conn, {"type": "resync", "reason": why}, seq=s.seq)
        conn.queue.extend(replay)
        # The replay may be longer than the live bound; it is memory the ring holds anyway.
        conn.limit = self.queue_max + len(replay) + 2
        return Attached(conn, resumed, len(replay), why)

    def detach(self, conn: Connection, now: float) -> None:
        s = conn.stream
        s.conns.discard(conn)
        conn.queue.clear()
        if not s.conns and self.streams.get(s.key) is s:
            s.idle_since = now

    def take(self, conn: Connection) -> list[str]:
        """Everything queued for ``conn``, in order (the queue is emptied)."""
        out = list(conn.queue)
        conn.queue.clear()
        return out

    def control(self, conn: Connection, body: Mapping[str, Any]) -> bool:
        """Queue a control message (``pong``, ``error``...): no seq of its own.

        Like an event it counts against the queue: a client that floods pings
        without reading the pongs is marked slow (returns True: close it)."""
        if conn.drop is None:
            self._enqueue(conn, encode(conn.last_seq, body))
        return conn.drop is not None

    def _control(self, conn: Connection, body: Mapping[str, Any], seq: int) -> None:
        if conn.drop is None:
            conn.queue.append(encode(seq, body))

    # -- publishing ----------------------------------------------------------

    def publish(self, body: Mapping[str, Any], agents: frozenset[str] = frozenset()) -> list[Connection]:
        """Number ``body`` (it must have a ``type``) in every stream that wants it,
        keep it in their rings and queue it to their connections. Returns the
        connections that got something (to wake) or were just dropped (to close)."""
        if "type" not in body:
            raise ValueError("a message needs a type")
        if not self._everything and not any(a in self._by_agent for a in agents):
            return []        # nobody wants it: not even encoded
        return self._deliver(_body_json(body), agents)

    def _number(self, s: Stream) -> int:
        """The seq ``s`` gives the event being delivered: here one more than its last.
        (``api.node_core.NodeHub`` numbers by the broker instead.)"""
        s.seq += 1
        return s.seq

    def _keep(self, s: Stream, seq: int, text: str) -> None:
        """Keep the event numbered ``seq`` in ``s``'s ring, for resumes."""
        if len(s.ring) == s.ring.maxlen:
            self.replay_events -= 1
            self.replay_bytes -= len(s.ring[0][1])
        s.ring.append((seq, text))
        self.replay_events += 1
        self.replay_bytes += len(text)

    def targets(self, agents: frozenset[str]) -> set[Stream]:
        """The streams that want an event concerning ``agents``: every stream that sees
        everything, and those of the agents named."""
        found = set(self._everything)
        for a in agents:
            found |= self._by_agent.get(a, set())
        return found

    def _deliver(self, body_json: str, agents: frozenset[str]) -> list[Connection]:
        """The one delivery step of both hubs (this one and ``NodeHub``, which differ only
        in ``_number`` and ``_keep``): each target stream numbers the event, keeps it, and
        queues it to its connections that are not dropped. Returns the connections touched."""
        targets = self.targets(agents)
        if not targets:
            return []
        self.published += 1
        touched: list[Connection] = []
        last, text = -1, ""
        for s in targets:
            seq = self._number(s)
            if seq != last:                # streams at the same seq share one string
                last, text = seq, _splice(seq, body_json)
            self._keep(s, seq, text)
            for c in s.conns:
                if c.drop is not None or seq <= c.floor:
                    continue
                if self._enqueue(c, text):
                    c.last_seq = seq
                    self.delivered += 1
                touched.append(c)
        return touched

    def _enqueue(self, c: Connection, text: str) -> bool:
        """Queue ``text`` to ``c``, or mark it slow (dropped, queue cleared) when full."""
        if len(c.queue) >= c.limit:
            c.drop = "slow"
            c.queue.clear()
            self.dropped_slow += 1
            return False
        c.queue.append(text)
        return True

    def broadcast(self, body: Mapping[str, Any]) -> list[Connection]:
        """Queue a snapshot message (e.g. the wallboard) to every connection that sees
        everything (supervisors, admins). Like a control message it takes no seq
        and is not kept for resume: a newer snapshot replaces it, and a client
        that missed one reloads it. A full queue drops the connection as slow."""
        text = _body_json(body)
        spliced: dict[int, str] = {}    # connections at the same seq share one string
        touched: list[Connection] = []
        for s in self._everything:
            for c in s.conns:
                if c.drop is not None:
                    continue
                t = spliced.get(c.last_seq)
                if t is None:
                    t = spliced[c.last_seq] = _splice(c.last_seq, text)
                self._enqueue(c, t)
                touched.append(c)
        return touched

    def expire(self, now: float) -> int:
        """Forget streams nobody has read for ``stream_ttl`` seconds; returns how many.
        With ``replay_max_age``, also drop from each ring the events published before the
        mark taken that long ago (the shell calls this every minute: the age bound is
        kept to within that period)."""
        old = [s for s in self.streams.values()
               if not s.conns and s.idle_since is not None and now - s.idle_since >= self.stream_ttl]
        for s in old:
            self._remove(s, "expired")
        if self.replay_max_age > 0:
            for s in self.streams.values():
                s.marks.append((now, s.seq))
                upto = 0
                while s.marks and now - s.marks[0][0] >= self.replay_max_age:
                    upto = s.marks.popleft()[1]
                while s.ring and s.ring[0][0] <= upto:
                    self.replay_events -= 1
                    self.replay_bytes -= len(s.ring.popleft()[1])
        return len(old)

    def streams_of(self, scope_agent: str) -> set[Stream]:
        return set(self._by_agent.get(scope_agent, ()))

    @property
    def connections(self) -> int:
        return sum(len(s.conns) for s in self.streams.values())

    def queue_depths(self) -> tuple[int, int]:
        """Messages waiting in connections' send queues: ``(total, deepest)``."""
        total = deepest = 0
        for s in self.streams.values():
            for c in s.conns:
                n = len(c.queue)
                total += n
                deepest = max(deepest, n)
        return total, deepest


# -- topics ------------------------------------------------------------------------

class CallAudience:
    """Which agents a call's events concern: those it is offered to or connected
    with, from ``call.offered``/``call.connected`` until their offer ends
    (``call.offer_ended``, ``acd.withdrawn``) or they leave (``call.agent_left``);
    the leaving event itself still reaches them, and an agent who left after
    being connected also gets the call's ``call.ended`` (their screen-pop
    closes) but nothing in between (a transfer's later life is not theirs).
    ``acd.offer`` reaches the agent it names. Forgets a call at ``call.ended``."""

    def __init__(self) -> None:
        self.calls: dict[str, set[str]] = {}
        self.left: dict[str, set[str]] = {}      # call -> agents who left it, told of its end

    def feed(self, kind: str, call_id: str, data: Mapping[str, Any]) -> frozenset[str]:
        agent = data.get("agent")
        agent = agent if isinstance(agent, str) and agent else None
        members = self.calls.get(call_id)
        if kind in _JOIN and agent is not None:
            members = self.calls.setdefault(call_id, set())
            members.add(agent)
            left = self.left.get(call_id)
            if left is not None:
                left.discard(agent)
        audience = frozenset(members or ())
        if kind in _NAMED and agent is not None:
            audience |= {agent}
        if kind in _LEAVE and agent is not None and members is not None and agent in members:
            members.discard(agent)
            if kind == "call.agent_left":
                self.left.setdefault(call_id, set()).add(agent)
            if not members:
                del self.calls[call_id]
        if kind == "call.ended":
            audience |= self.left.pop(call_id, set())
            self.calls.pop(call_id, None)
        return audience

    def calls_of(self, agent_id: str) -> list[str]:
        return [cid for cid, members in self.calls.items() if agent_id in members]


def call_message(kind: str, call_id: str, call_seq: int, at: float, view: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The WebSocket body of a call event (``view``: a ``cti.events.CallView``)."""
    return {"type": kind, "call_id": call_id, "call_seq": call_seq, "at": at,
            "call": view.as_dict() if isinstance(view, CallView) else asdict(view), "data": dict(data)}


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    agent_id: str
    state: str
    reason: str
    since: float
    call_id: str | None
    pending: str | None
    wrapup_ends_at: float | None = None
    wrapup_max_at: float | None = None
    disposition_due: str | None = None


def agent_update(v: AgentSnapshot, before: AgentSnapshot | None) -> dict[str, Any] | None:
    """The ``agent.state`` message for an agent now ``v`` that was ``before`` (None:
    not told yet), or None when neither its state, reason, call nor pending change
    differs (only its ``since``)."""
    if before is not None and (before.state, before.reason, before.call_id, before.pending,
                               before.wrapup_ends_at, before.disposition_due) == (
            v.state, v.reason, v.call_id, v.pending, v.wrapup_ends_at, v.disposition_due):
        return None
    return agent_message(v, before.state if before is not None else None)


def agent_message(v: AgentSnapshot, previous: str | None) -> dict[str, Any]:
    return {"type": "agent.state", "agent_id": v.agent_id, "state": v.state, "previous": previous,
            "reason": v.reason, "since": v.since, "call_id": v.call_id, "pending": v.pending,
            "wrapup_ends_at": v.wrapup_ends_at, "wrapup_max_at": v.wrapup_max_at,
            "disposition_due": v.disposition_due}
