"""Domain events and the in-process bus.

A ``CallEvent`` is what the rest of the daemon sees of a call: the store turns
it into rows, the API (issue 6) into screen-pops, the ACD (issue 3) into
routing input. Each carries an immutable ``CallView``, the whole call as it is
right after the event, so a subscriber never has to ask the model anything.

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
acd.*               the ACD's decisions about the call (see acd/service.py), numbered
                    in the call's sequence through ``CallModel.annotate``
=================== ============================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

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


class Bus:
    """In-process fan-out of domain events, in order, to plain functions.

    Subscribers run synchronously on the event loop and must not block: one
    that needs I/O hands the event to its own queue or task. A subscriber
    that raises is logged and counted; the others still get the event.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.errors = 0
        self.published = 0

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn``; returns a function that removes it again."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def publish(self, event: CallEvent) -> None:
        self.published += 1
        # Every line a subscriber logs about this event carries its call id (bound and
        # reset directly: the context manager's generator costs more than the binding).
        tokens = structlog.contextvars.bind_contextvars(call_id=event.call_id)
        try:
            for fn in self._subscribers:
                try:
                    fn(event)
                except Exception:
                    self.errors += 1
                    log.exception("subscriber failed", subscriber=getattr(fn, "__qualname__", repr(fn)),
                                  kind=event.kind)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
