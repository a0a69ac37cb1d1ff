"""An API node's hub: WebSocket streams numbered by the broker's stream sequence. Pure.

An API node (``cti api-node``, docs/scale-out.md) holds no truth of its own: it
reads the leader's events from the broker (``api.broker.BrokerFeed``) and serves
them to desktops and wallboards. For a desktop to move from one node to another
and resume with no gap and no repeat, every node must give every event the same
number, and hold the same stream id:

- **``seq`` is the broker's stream sequence** of the message (JetStream's,
  contiguous, durable, the same for every reader). On the shared stream of
  supervisors and admins every event is there, so ``seq`` runs 1, 2, 3...; on an
  agent's own stream ``seq`` rises but skips the events of other agents (the
  stream's numbers, filtered by ``Cti-Agents``). The resume rule stays the hub's:
  "send me what comes after the last seq I processed".
- **The stream id (``epoch``) is the broker stream's**, the same on every node
  (the shell derives it from the stream's name and creation time), so a resume
  made on another node is not refused as "unknown stream".
- **One ring per node, not per stream**: the last ``ring_max`` messages with
  their audiences. A stream made on this node for a principal who was served
  elsewhere is filled from it on resume. A resume further back than the ring
  (or from before what this node read) is a ``resync``, as on the leader's hub.
- **A resume ahead of the node** (the client had messages from a node further on in
  the stream than this one has read: this node restarted a moment ago, or is
  slow) is a resume too, never a ``resync``: ``plan_resume`` (pure, time an input)
  waits a bounded moment for the node to read that far (then it is an ordinary
  replay, with a current snapshot); past the bound, the connection's ``floor`` is
  the client's ``last_seq`` and the node sends, as it reads them, only the
  messages after it: the client has the others (no repeat) and nothing after it is
  skipped (no gap). Only a ``last_seq`` beyond what the broker holds (checked with
  the broker) is refused as "ahead of the stream". A resync there would make the
  node stream from its own position, so the client would get again, under the same
  numbers, what it already had (BENCHMARKS.md, the 20-kill failover run).

``NodeState`` keeps what the hello's snapshot needs (an agent's last state, the
calls it is in), from the same messages.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from api.hub import Attached, CallAudience, Connection, Hub, Resume, Scope, Stream, _body_json, _splice


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a node does with a client's first message (``plan_resume``).

    ``fresh``: no resume asked; ``replay``: the missed messages from the ring; ``wait``:
    the node has not read up to ``last_seq`` yet, ask again later; ``ahead``: resumed,
    the messages up to ``last_seq`` not sent again (the connection's ``floor``), those
    after it as the node reads them; ``resync``: ``reason`` says why."""

    kind: Literal["fresh", "replay", "wait", "ahead", "resync"]
    reason: str | None = None


def plan_resume(resume: Resume | None, *, epoch: str, head: int, start: int, oldest: int,
                stream_last: int | None, waited_s: float, wait_s: float) -> ResumePlan:
    """The decision for a client resuming on a node (pure; see the module doc).

    ``head``: the last sequence this node has read; ``start``: it read from ``start + 1``;
    ``oldest``: the lowest sequence its ring holds (``head + 1`` when empty);
    ``stream_last``: the broker stream's last sequence as the node knows it (at least
    ``head``; None when the broker could not be asked); ``waited_s``: how long this
    client has waited for the node to catch up, ``wait_s`` the bound."""
    if resume is None:
        return ResumePlan("fresh")
    if resume.epoch != epoch:
        return ResumePlan("resync", "unknown stream (new session, expired, or the broker stream was made anew)")
    last = resume.last_seq
    if last < 0:
        return ResumePlan("resync", "last_seq is not a stream position")
    if last <= head:
        floor = max(oldest - 1, start)
        if last < floor:
            return ResumePlan("resync", f"missed {floor - last} more events than are kept")
        return ResumePlan("replay")
    # Ahead of what this node has read.
    if stream_last is not None and last > max(stream_last, head):
        return ResumePlan("resync", "last_seq is ahead of the stream")
    if waited_s < wait_s:
        return ResumePlan("wait")
    return ResumePlan("ahead")


class NodeHub(Hub):
    """A ``Hub`` whose numbers come from the broker (see the module doc). Publish with
    ``publish_at``; ``publish`` (which numbers by itself) is refused."""

    def __init__(self, *, epoch: str, ring_max: int = 100_000, queue_max: int = 500,
                 stream_ttl: float = 900.0) -> None:
        if ring_max < 1:
            raise ValueError("a node keeps at least one message")
        super().__init__(replay_max=1, queue_max=queue_max, stream_ttl=stream_ttl, new_epoch=lambda: self.epoch)
        self.epoch = epoch
        self.ring: deque[tuple[int, frozenset[str], str]] = deque(maxlen=ring_max)
        self.head = 0           # the stream sequence of the last message published here
        self.start = 0          # the sequence this node read from, minus one: nothing before it is known
        # The highest sequence the broker is known to hold (at least ``head``): from each
        # message's pending count, or asked (``NodeHubService``). A resume beyond it is refused.
        self.stream_last = 0
        self.resumed_ahead = 0  # resumes served with a floor (the client ahead of this node)

    def begin(self, after: int) -> None:
        """This node reads the broker from ``after + 1``: resumes before it are resyncs."""
        self.start = self.head = after

    def lost_before(self, seq: int) -> None:
        """Messages before ``seq`` are missing from what this node read (the stream lost
        them: aged out, deleted): no resume may reach across the hole, so those from before
        it get a resync."""
        if seq - 1 > self.start:
            self.start = seq - 1
            self.ring.clear()

    @property
    def oldest(self) -> int:
        """The lowest sequence a resume can replay from (``head + 1`` when nothing is kept)."""
        return self.ring[0][0] if self.ring else self.head + 1

    def publish(self, body: Mapping[str, Any], agents: frozenset[str] = frozenset()) -> list[Connection]:
        raise TypeError("an API node numbers by the broker: use publish_at")

    def publish_at(self, seq: int, body_json: str, agents: frozenset[str]) -> list[Connection]:
        """The broker's message ``seq`` (its body's JSON, the agents it concerns) to every
        stream that wants it. ``seq`` must be above the last one (the feed skips repeats)."""
        if seq <= self.head:
            raise ValueError(f"sequence {seq} is not after {self.head}")
        if not body_json.startswith("{") or body_json == "{}":
            raise ValueError("a message is a non-empty JSON object")
        self.head = seq
        self.stream_last = max(self.stream_last, seq)
        self.ring.append((seq, agents, body_json))
        return self._deliver(body_json, agents)

    def _number(self, s: Stream) -> int:
        s.seq = self.head          # the broker's sequence, the same in every stream
        return s.seq

    def _keep(self, s: Stream, seq: int, text: str) -> None:
        pass                       # the node keeps one ring for all streams (``ring``)

    def attach(self, key: str, scope: Scope, resume: Resume | None, hello: Mapping[str, Any],
               now: float, *, stream_last: int | None | Literal["known"] = "known") -> Attached:
        """As ``Hub.attach``, the missed events taken from the node's ring. A fresh
        connection's hello carries ``head``: the events after it will come. A resume ahead
        of ``head`` (the shell has waited its bound: ``plan_resume``) is served with a
        floor, its hello without a snapshot (older than what the client holds), unless
        ``last_seq`` is beyond ``stream_last`` (default: ``self.stream_last``; None: the
        broker could not be asked, and the client's position in this stream is taken)."""
        s = self._stream(key, scope)
        conn = Connection(next(self._ids), s, self.queue_max, last_seq=self.head)
        s.conns.add(conn)
        s.idle_since = None
        plan = plan_resume(resume, epoch=self.epoch, head=self.head, start=self.start, oldest=self.oldest,
                           stream_last=self.stream_last if stream_last == "known" else stream_last,
                           waited_s=1.0, wait_s=0.0)
        replay: list[str] = []
        why = plan.reason
        hello_seq = self.head
        if plan.kind == "replay":
            assert resume is not None
            hello_seq = resume.last_seq
            replay = [_splice(seq, text) for seq, agents, text in self.ring
                      if seq > resume.last_seq and scope.wants(agents)]
        elif plan.kind == "ahead":
            assert resume is not None
            hello_seq = conn.floor = conn.last_seq = resume.last_seq
            hello = {**hello, "snapshot": None}
            self.resumed_ahead += 1
        resumed = resume is not None and why is None
        self._control(conn, {**hello, "type": "hello", "stream": self.epoch, "resumed": resumed}, seq=hello_seq)
        if why is not None:
            self.resyncs += 1
            self._control(conn, {"type": "resync", "reason": why}, seq=hello_seq)
        conn.queue.extend(replay)
        conn.limit = self.queue_max + len(replay) + 2
        return Attached(conn, resumed, len(replay), why)

    def control(self, conn: Connection, body: Mapping[str, Any]) -> bool:
        """As ``Hub.control``, but carrying the node's ``head``: every event up to it that
        concerns ``conn`` is already queued before this message, so a client that stores it
        may resume after it. An agent's desktop that pings keeps its ``seq`` near the head,
        and can move to a node that started reading after its last own event."""
        if conn.drop is None:
            # A connection resumed ahead of this node: its own position until the node passes it.
            self._enqueue(conn, _splice(max(self.head, conn.floor), _body_json(body)))
        return conn.drop is not None

    def expire(self, now: float) -> int:
        old = [s for s in self.streams.values()
               if not s.conns and s.idle_since is not None and now - s.idle_since >= self.stream_ttl]
        for s in old:
            self._remove(s, "expired")
        return len(old)


class NodeState:
    """What a hello's snapshot says, kept from the broker's messages: each agent's last
    ``agent.state``, and the calls each agent is part of (``CallAudience``) as their last
    message showed them. Only what this node has read: an agent whose last change came
    before the node's first message has no state here (None) until the next one."""

    LIVE_MAX = 100_000      # calls kept as live: a call whose end was never read is let go after these

    def __init__(self) -> None:
        self.audience = CallAudience()
        self.agents: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        # Every call the stream shows as not ended (oldest first): an HA pair's new leader
        # publishes the ends its own model saw that the old leader never published.
        self.live: dict[str, None] = {}

    def feed(self, body: Mapping[str, Any]) -> None:
        kind = body.get("type")
        if kind == "agent.state" and isinstance(body.get("agent_id"), str):
            self.agents[body["agent_id"]] = {k: body.get(k) for k in (
                "state", "reason", "since", "call_id", "pending", "wrapup_ends_at", "wrapup_max_at",
                "disposition_due")}
            return
        call_id = body.get("call_id")
        data = body.get("data")
        if not isinstance(kind, str) or not isinstance(call_id, str) or not isinstance(data, dict):
            return
        if kind == "call.ended":
            self.live.pop(call_id, None)
        elif kind.startswith("call.") and call_id not in self.live:
            self.live[call_id] = None
            if len(self.live) > self.LIVE_MAX:
                del self.live[next(iter(self.live))]
        self.audience.feed(kind, call_id, data)
        if kind == "call.ended":
            self.calls.pop(call_id, None)
        elif isinstance(body.get("call"), dict) and call_id in self.audience.calls:
            self.calls[call_id] = body["call"]
        if call_id not in self.audience.calls:
            self.calls.pop(call_id, None)

    def snapshot(self, scope: Scope) -> dict[str, Any]:
        """The hello's ``snapshot`` for a stream of ``scope`` (as the leader's hub makes it)."""
        snap: dict[str, Any] = {"agent_state": None, "calls": []}
        if scope.agent_id is None:
            return snap
        snap["agent_state"] = self.agents.get(scope.agent_id)
        snap["calls"] = [self.calls[cid] for cid in self.audience.calls_of(scope.agent_id) if cid in self.calls]
        return snap
