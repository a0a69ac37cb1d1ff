"""Domain events and the in-process bus.

A ``CallEvent`` is what the rest of the daemon sees of a call: the store turns
it into rows, the API into screen-pops, the ACD into routing input. Each
carries an immutable ``CallView``, the whole call as it is right after the
event, so a subscriber never has to ask the model anything.

Kinds (``CallEvent.kind``):

=================== ============================================================
call.started        the first leg of a new call appeared (``data``: channel)
call.answered       the caller's leg was answered (by the dialplan or a person)
call.inbound        the dialplan marked it inbound (``data``: did)
call.queued         the caller joined a queue (``data``: queue, position; from the daemon's
                    ACD also acd, channel, uniqueid, skills, priority, customer)
call.outbound       click-to-dial: the agent's device answered, the customer is dialled next
                    (``data``: agent, number)
call.offered        an agent's device started ringing (``data``: agent, device, uniqueid)
call.offer_ended    that ringing ended without an answer (``data``: agent, status)
call.connected      an agent answered (``data``: agent, device, uniqueid)
call.agent_left     an answering agent's leg ended, each one of a transfer too (``data``: agent, uniqueid)
call.dequeued       the caller left the queue (``data``: queue)
call.abandoned      the caller hung up while queued (``data``: queue, wait_s, position)
call.held           the call entered the held state (music in a bridge of two)
call.resumed        it left the held state (not by ending)
call.transferred    a blind or attended transfer (``data``: type, target)
call.state          the derived state changed (``data``: old, new)
call.merged         a bridge moved every leg of this call into another (``data``: into)
call.ended          the last leg hung up (``data``: cause, cause_txt, estimated)
acd.*               the ACD's decisions about the call (see acd/routing_shell.py); these and the
                    other features' events (``recording.*``, ``call.ivr``) are numbered in the
                    call's sequence and published through ``cti.daemon.Core.annotate``
=================== ============================================================
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, TypeVar

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
    """One thing that happened to a call. ``seq`` counts from 1 per call."""

    kind: str
    call_id: str
    at: float
    seq: int
    call: CallView
    data: Mapping[str, Any] = field(default_factory=dict)


Subscriber = Callable[[CallEvent], None]
E = TypeVar("E")


class Bus:
    """In-process fan-out of domain events, in order, to plain functions.

    The bus carries call events (``subscribe``) and other typed events, each
    subscribed to by its class (``subscribe_to``: an agent's new state from the
    ACD, ``acd.events``; the dialplan's reports and other AMI inputs features
    need, ``cti.ami_inputs``). A subscriber gets the events of its class and
    of its subclasses.

    Subscribers run synchronously on the event loop and must not block: one
    that needs I/O hands the event to its own queue or task. A subscriber
    that raises is logged and counted; the others still get the event.

    Ordering: every subscriber sees every event it subscribed to, and all see
    them in the same order, the order they were published in. An event
    published while the bus is delivering another (a subscriber's reaction,
    such as the ACD's offer for a call just queued, or the agent's reservation
    it decided) joins the back of the queue and is delivered to every
    subscriber after the current one, never inside it: causes reach everyone
    before their effects. Since a call's events are numbered when made and
    published at once, each subscriber sees each call's ``seq`` rising. The
    events of one model step go in one ``publish(*events)``, so a reaction to
    the first queues behind the last.
    """

    def __init__(self) -> None:
        # (class, fn) in the order subscribed; per concrete event class, its subscribers
        # in that order (worked out on first use, forgotten when the list changes).
        self._subscriptions: tuple[tuple[type, Callable[[Any], None]], ...] = ()
        self._resolved: dict[type, tuple[Callable[[Any], None], ...]] = {}
        self._queue: deque[Any] = deque()      # events waiting while one is delivered
        self._delivering = False
        self.errors = 0
        self.published = 0

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn`` for call events (after those already there); returns a function
        that removes it again."""
        return self.subscribe_to(CallEvent, fn)

    def subscribe_to(self, event_type: type[E], fn: Callable[[E], None]) -> Callable[[], None]:
        """Add ``fn`` for events of ``event_type`` (after every subscriber already
        there); returns a function that removes it again."""
        entry = (event_type, fn)
        self._subscriptions = (*self._subscriptions, entry)
        self._resolved = {}

        def unsubscribe() -> None:
            subs = list(self._subscriptions)
            subs.remove(entry)
            self._subscriptions = tuple(subs)
            self._resolved = {}
        return unsubscribe

    def publish(self, *events: Any) -> None:
        """Deliver ``events`` in order to their subscribers; from inside a subscriber,
        queue them behind the events already waiting (delivered before this returns
        to the outermost publisher)."""
        self.published += len(events)
        self._queue.extend(events)
        if not self._delivering:
            self._drain()

    def _subscribers_of(self, cls: type) -> tuple[Callable[[Any], None], ...]:
        subs = self._resolved.get(cls)
        if subs is None:
            subs = self._resolved[cls] = tuple(fn for t, fn in self._subscriptions if issubclass(cls, t))
        return subs

    def _drain(self) -> None:
        self._delivering = True
        queue = self._queue
        try:
            while queue:
                event = queue.popleft()
                subs = self._resolved.get(type(event)) or self._subscribers_of(type(event))
                # Every line a subscriber logs about a call's event carries its call id (bound
                # and reset directly: the context manager's generator costs more than the binding).
                call_id = getattr(event, "call_id", None)
                tokens = structlog.contextvars.bind_contextvars(call_id=call_id) if call_id is not None else None
                try:
                    for fn in subs:
                        try:
                            fn(event)
                        except Exception:
                            self._failed(fn, event)
                finally:
                    if tokens is not None:
                        structlog.contextvars.reset_contextvars(**tokens)
        finally:
            # Only a BaseException (not caught above) leaves events queued: the next
            # publish delivers them first, still in order.
            self._delivering = False

    def _failed(self, fn: Callable[..., None], event: Any) -> None:
        self.errors += 1
        log.exception("subscriber failed", subscriber=getattr(fn, "__qualname__", repr(fn)),
                      kind=getattr(event, "kind", type(event).__name__))
