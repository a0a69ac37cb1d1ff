"""Domain events and the in-process bus.

A call event is what the rest of the daemon sees of a call: the store turns
it into rows, the API into screen-pops, the ACD into routing input. Each kind
is a small frozen dataclass (below), a ``CallEvent``: the fields every event
has (``call_id``, ``at``, ``seq``, ``call``) and its own, named and typed, so a
subscriber matches on the type (``isinstance``, ``match``) and reads fields.
Each carries an immutable ``CallView``, the whole call as it is right after the
event, so a subscriber never has to ask the model anything.

Every event also has ``kind`` (a class attribute: the name clients see) and
``data`` (its own fields as a mapping, built on first use and kept). ``kind``
and ``data`` are the public JSON of the WebSocket messages and webhook bodies
(tests/unit/test_event_json.py pins them) and the store's ``call_events`` rows.

=================== ==================== ======================================================
kind                type                 fields (``data``)
=================== ==================== ======================================================
call.started        CallStarted          the first leg of a new call appeared: channel
call.answered       CallAnswered         the caller's leg was answered (by the dialplan or a person)
call.inbound        CallInbound          the dialplan marked it inbound: did
call.queued         CallQueued           the caller joined a queue: queue, position; the daemon's
                                         ACD (``acd`` true) says queue, acd, channel, uniqueid,
                                         skills, priority, customer instead
call.outbound       CallOutbound         click-to-dial: the agent's device answered, the customer is
                                         dialled next: agent, number
call.offered        CallOffered          an agent's device started ringing: agent, device, uniqueid
                                         (and queue when app_queue rang it)
call.offer_ended    CallOfferEnded       that ringing ended without an answer: agent, device, status
call.connected      CallConnected        an agent answered: agent, device, uniqueid (no uniqueid
                                         from app_queue's AgentConnect; ``estimated`` true when
                                         found talking after a resync)
call.agent_left     CallAgentLeft        an answering agent's leg ended, each one of a transfer
                                         too: agent, uniqueid
call.dequeued       CallDequeued         the caller left the queue: queue
call.abandoned      CallAbandoned        the caller hung up while queued: queue, wait_s, position
call.held           CallHeld             the call entered the held state (music in a bridge of two)
call.resumed        CallResumed          it left the held state (not by ending)
call.transferred    CallTransferred      a blind or attended transfer: type, target, result
call.state          CallStateChanged     the derived state changed: old, new
call.merged         CallMerged           a bridge moved every leg of this call into another: into
call.ended          CallEnded            the last leg hung up: cause, cause_txt, estimated
acd.*               Annotation           the ACD's decisions about the call (see
                                         acd/routing_shell.py); these and the other features'
                                         events (``recording.*``, ``call.ivr``) are numbered in
                                         the call's sequence and published through
                                         ``cti.daemon.Core.annotate``; for now one generic type
                                         whose ``kind`` and ``data`` are fields
=================== ==================== ======================================================
"""
from __future__ import annotations

from collections import deque
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, Literal, Mapping

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CallView:
    """A call as the model knows it; timestamps are epoch seconds (Asterisk's clock)."""

    call_id: str
    state: str
    direction: str
    caller_num: str | None
    caller_name: str | None
    exten: str | None
    started_at: float
    answered_at: float | None
    queue: str | None
    queue_joined_at: float | None
    queue_left_at: float | None
    agent: str | None
    agent_answered_at: float | None
    ended_at: float | None
    hangup_cause: int | None
    hangup_cause_txt: str | None
    end_estimated: bool
    abandoned: bool
    legs: int

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict: what ``dataclasses.asdict`` gives, without its deep
        copy of every value (all are scalars); it runs for every event on every path."""
        return {name: getattr(self, name) for name in _VIEW_FIELDS}


_VIEW_FIELDS = tuple(f.name for f in fields(CallView))


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One thing that happened to call ``call_id`` at ``at``; ``seq`` counts from 1 per
    call; ``call`` is the call right after it. The base of every event type below."""

    kind: ClassVar[str]
    call_id: str
    at: float
    seq: int
    call: CallView
    # ``data``, once built (the model makes an event for every AMI event; only some
    # paths, JSON and rows, need the mapping).
    _data: Mapping[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def data(self) -> Mapping[str, Any]:
        """The event's own fields as the public JSON names them (the same mapping on
        every access: do not change it)."""
        data = self._data
        if data is None:
            data = self._fields()
            object.__setattr__(self, "_data", data)
        return data

    def _fields(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def from_record(kind: str, call_id: str, at: float, seq: int, call: CallView,
                    data: Mapping[str, Any]) -> CallEvent:
        """The event a stored or replayed ``(kind, data)`` stands for: the typed one
        for a call kind, else an ``Annotation``. A field ``data`` lacks (a partial or
        older record) takes its default, or None; keys no field names are dropped."""
        cls = KINDS.get(kind)
        if cls is None:
            return Annotation(kind, call_id, at, seq, call, dict(data))
        return cls._from_data(call_id, at, seq, call, data)

    @classmethod
    def _from_data(cls, call_id: str, at: float, seq: int, call: CallView, data: Mapping[str, Any]) -> CallEvent:
        return cls(call_id, at, seq, call, **_record_fields(cls, data))


@dataclass(frozen=True, slots=True)
class CallStarted(CallEvent):
    kind: ClassVar[str] = "call.started"
    channel: str

    def _fields(self) -> dict[str, Any]:
        return {"channel": self.channel}


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    kind: ClassVar[str] = "call.answered"


@dataclass(frozen=True, slots=True)
class CallInbound(CallEvent):
    kind: ClassVar[str] = "call.inbound"
    did: str | None

    def _fields(self) -> dict[str, Any]:
        return {"did": self.did}


@dataclass(frozen=True, slots=True)
class CallQueued(CallEvent):
    """``acd``: the caller waits for the daemon's ACD (dialplan ``cti-acd-wait``), which
    gives the rest but ``position``; else app_queue's ``QueueCallerJoin``, which gives
    ``queue`` and ``position`` only."""

    kind: ClassVar[str] = "call.queued"
    queue: str | None
    position: int | None = None
    acd: bool = False
    channel: str | None = None
    uniqueid: str | None = None
    skills: str | None = None
    priority: int | None = None
    customer: str | None = None

    def _fields(self) -> dict[str, Any]:
        if self.acd:
            return {"queue": self.queue, "acd": True, "channel": self.channel, "uniqueid": self.uniqueid,
                    "skills": self.skills, "priority": self.priority, "customer": self.customer}
        return {"queue": self.queue, "position": self.position}


@dataclass(frozen=True, slots=True)
class CallOutbound(CallEvent):
    kind: ClassVar[str] = "call.outbound"
    agent: str
    number: str | None

    def _fields(self) -> dict[str, Any]:
        return {"agent": self.agent, "number": self.number}


# Where the model learnt of an offer or an answer: a Dial it saw, app_queue's own
# events (AgentCalled, AgentConnect), or a resync finding the agent already talking.
Source = Literal["dial", "app_queue", "resync"]


@dataclass(frozen=True, slots=True)
class CallOffered(CallEvent):
    """``queue`` is app_queue's when it rang the agent (``source`` ``app_queue``)."""

    kind: ClassVar[str] = "call.offered"
    agent: str
    device: str
    uniqueid: str
    queue: str | None = None
    source: Source = "dial"

    def _fields(self) -> dict[str, Any]:
        if self.source == "app_queue":
            return {"agent": self.agent, "device": self.device, "uniqueid": self.uniqueid, "queue": self.queue}
        return {"agent": self.agent, "device": self.device, "uniqueid": self.uniqueid}

    @classmethod
    def _from_data(cls, call_id: str, at: float, seq: int, call: CallView, data: Mapping[str, Any]) -> CallEvent:
        return cls(call_id, at, seq, call, **_record_fields(cls, data),
                   source="app_queue" if "queue" in data else "dial")


@dataclass(frozen=True, slots=True)
class CallOfferEnded(CallEvent):
    kind: ClassVar[str] = "call.offer_ended"
    agent: str
    device: str
    status: str

    def _fields(self) -> dict[str, Any]:
        return {"agent": self.agent, "device": self.device, "status": self.status}


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    """``uniqueid``: the answering agent's leg (None from app_queue's AgentConnect,
    which does not name it). ``estimated``: found talking after a resync, the answer
    time is the moment found."""

    kind: ClassVar[str] = "call.connected"
    agent: str | None
    device: str | None
    uniqueid: str | None = None
    source: Source = "dial"

    @property
    def estimated(self) -> bool:
        return self.source == "resync"

    def _fields(self) -> dict[str, Any]:
        if self.source == "dial":
            return {"agent": self.agent, "device": self.device, "uniqueid": self.uniqueid}
        if self.source == "app_queue":
            return {"agent": self.agent, "device": self.device}
        return {"agent": self.agent, "device": self.device, "uniqueid": self.uniqueid, "estimated": True}

    @classmethod
    def _from_data(cls, call_id: str, at: float, seq: int, call: CallView, data: Mapping[str, Any]) -> CallEvent:
        source: Source = "resync" if data.get("estimated") else "dial" if "uniqueid" in data else "app_queue"
        return cls(call_id, at, seq, call, **_record_fields(cls, data), source=source)


@dataclass(frozen=True, slots=True)
class CallAgentLeft(CallEvent):
    kind: ClassVar[str] = "call.agent_left"
    agent: str
    uniqueid: str

    def _fields(self) -> dict[str, Any]:
        return {"agent": self.agent, "uniqueid": self.uniqueid}


@dataclass(frozen=True, slots=True)
class CallDequeued(CallEvent):
    kind: ClassVar[str] = "call.dequeued"
    queue: str | None

    def _fields(self) -> dict[str, Any]:
        return {"queue": self.queue}


@dataclass(frozen=True, slots=True)
class CallAbandoned(CallEvent):
    """``wait_s``: seconds in the queue; ``position``: app_queue's (None from the daemon's ACD)."""

    kind: ClassVar[str] = "call.abandoned"
    queue: str | None
    wait_s: float
    position: int | None

    def _fields(self) -> dict[str, Any]:
        return {"queue": self.queue, "wait_s": self.wait_s, "position": self.position}


@dataclass(frozen=True, slots=True)
class CallHeld(CallEvent):
    kind: ClassVar[str] = "call.held"


@dataclass(frozen=True, slots=True)
class CallResumed(CallEvent):
    kind: ClassVar[str] = "call.resumed"


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    """``type``: ``blind`` (``target`` the extension) or ``attended`` (``target`` the
    second transferer's channel); ``result``: Asterisk's."""

    kind: ClassVar[str] = "call.transferred"
    type: str
    target: str | None
    result: str | None

    def _fields(self) -> dict[str, Any]:
        return {"type": self.type, "target": self.target, "result": self.result}


@dataclass(frozen=True, slots=True)
class CallStateChanged(CallEvent):
    kind: ClassVar[str] = "call.state"
    old: str
    new: str

    def _fields(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class CallMerged(CallEvent):
    kind: ClassVar[str] = "call.merged"
    into: str

    def _fields(self) -> dict[str, Any]:
        return {"into": self.into}


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """``cause``: the origin's hangup cause (Q.850); ``estimated``: it ended while the
    daemon was disconnected, at a time it can only estimate."""

    kind: ClassVar[str] = "call.ended"
    cause: int | None
    cause_txt: str | None
    estimated: bool

    def _fields(self) -> dict[str, Any]:
        return {"cause": self.cause, "cause_txt": self.cause_txt, "estimated": self.estimated}


@dataclass(frozen=True, slots=True)
class Annotation(CallEvent):
    """A feature's event about a live call (``acd.*``, ``recording.*``, ``call.ivr``):
    ``kind`` and ``data`` as the feature gave them. ``Annotation(kind, call_id, at, seq,
    call, data)``: ``kind`` comes first, where the base class declares it."""

    kind: str  # type: ignore[misc]  # a field here, a class attribute on the call kinds
    data: Mapping[str, Any] = field(default_factory=dict)  # type: ignore[assignment]


def _record_fields(cls: type[CallEvent], data: Mapping[str, Any]) -> dict[str, Any]:
    return {name: data.get(name, default) for name, default in _OWN_FIELDS[cls]}


# kind -> the type of every call event the model makes.
KINDS: dict[str, type[CallEvent]] = {cls.kind: cls for cls in (
    CallStarted, CallAnswered, CallInbound, CallQueued, CallOutbound, CallOffered, CallOfferEnded,
    CallConnected, CallAgentLeft, CallDequeued, CallAbandoned, CallHeld, CallResumed, CallTransferred,
    CallStateChanged, CallMerged, CallEnded)}

# Each one's own fields as ``data`` names them, with their defaults (None if required).
_OWN_FIELDS = {cls: tuple((f.name, None if f.default is MISSING else f.default) for f in fields(cls)
                          if f.init and f.name not in ("call_id", "at", "seq", "call", "source"))
               for cls in KINDS.values()}


Subscriber = Callable[[CallEvent], None]


class Bus:
    """In-process fan-out of domain events, in order, to plain functions.

    Subscribers run synchronously on the event loop and must not block: one
    that needs I/O hands the event to its own queue or task. A subscriber
    that raises is logged and counted; the others still get the event.

    Ordering: every subscriber sees every event, and all see them in the same
    order, the order they were published in. An event published while the bus
    is delivering another (a subscriber's reaction, such as the ACD's offer for
    a call just queued) joins the back of the queue and is delivered to every
    subscriber after the current one, never inside it: causes reach everyone
    before their effects. Since a call's events are numbered when made and
    published at once, each subscriber sees each call's ``seq`` rising. The
    events of one model step go in one ``publish(*events)``, so a reaction to
    the first queues behind the last.
    """

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        # Events (and deferred calls, see ``defer``) waiting while one is delivered.
        self._queue: deque[CallEvent | tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._delivering = False
        self.errors = 0
        self.published = 0

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn`` (after those already there); returns a function that removes it again."""
        self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            subs = list(self._subscribers)
            subs.remove(fn)
            self._subscribers = tuple(subs)
        return unsubscribe

    def publish(self, *events: CallEvent) -> None:
        """Deliver ``events`` in order to every subscriber; from inside a subscriber,
        queue them behind the events already waiting (delivered before this returns
        to the outermost publisher)."""
        self.published += len(events)
        self._queue.extend(events)
        if not self._delivering:
            self._drain()

    def defer(self, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` in turn with the events: now when the bus is idle,
        else after the events already queued (e.g. an agent's new state, pushed after
        the call event that caused it). Raising is logged and counted like a subscriber's."""
        self._queue.append((fn, args))
        if not self._delivering:
            self._drain()

    def _drain(self) -> None:
        self._delivering = True
        queue = self._queue
        try:
            while queue:
                item = queue.popleft()
                if type(item) is tuple:
                    fn, args = item
                    try:
                        fn(*args)
                    except Exception:
                        self._failed(fn, None)
                    continue
                event: CallEvent = item  # type: ignore[assignment]
                # Every line a subscriber logs about this event carries its call id (bound and
                # reset directly: the context manager's generator costs more than the binding).
                tokens = structlog.contextvars.bind_contextvars(call_id=event.call_id)
                try:
                    for fn in self._subscribers:
                        try:
                            fn(event)
                        except Exception:
                            self._failed(fn, event.kind)
                finally:
                    structlog.contextvars.reset_contextvars(**tokens)
        finally:
            # Only a BaseException (not caught above) leaves events queued: the next
            # publish delivers them first, still in order.
            self._delivering = False

    def _failed(self, fn: Callable[..., None], kind: str | None) -> None:
        self.errors += 1
        log.exception("subscriber failed", subscriber=getattr(fn, "__qualname__", repr(fn)), kind=kind)
