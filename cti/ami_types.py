"""The values the AMI client (``cti.ami``) hands out and keeps, with no I/O:
an action's ``Reply``; ``PendingAction``, which assembles it from the frames
that carry the action's ActionID according to its shape ("single": the first
Response; "list": up to the event with ``EventList: Complete``) and settles the
caller's future; the ``AmiHealth`` snapshot.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cti.amiproto import Frame
from cti.errors import AmiActionFailed


@dataclass(frozen=True, slots=True)
class Reply:
    """What an action got back.

    ``response``: the Response frame. ``events``: for a "list" action, every
    event that carried its ActionID, in order, the closing ``...Complete``
    event last; empty for a "single" action.
    """

    response: Frame
    events: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True)
class AmiHealth:
    """A snapshot of the connection, for health endpoints and logs.

    ``lost_at``: wall-clock time the last logged-in connection was lost (the
    moment calls that vanish meanwhile ended at the latest), None if never.
    ``since``, ``last_event_at``: wall-clock times (``time.time()``) of the last
    connect/disconnect and of the last chunk that held an event.
    ``reconnects``: successful logins after the first one. ``resyncs``: times
    the ``on_connected`` hook completed. ``asterisk_version``: the version in
    Asterisk's greeting (the AMI protocol version, e.g. ``11.0.0`` for
    Asterisk 22).
    """

    connected: bool
    logged_in: bool
    since: float | None
    last_event_at: float | None
    events_received: int
    reconnects: int
    resyncs: int
    handler_errors: int
    frames_rejected: int
    last_error: str | None
    asterisk_version: str | None
    lost_at: float | None = None


class PendingAction:
    """One action waiting for its reply: the frames with its ActionID, assembled by
    its shape, settle its future (``add``)."""

    __slots__ = ("action", "is_list", "future", "response", "events", "complete")

    def __init__(self, action: str, is_list: bool, future: asyncio.Future[Reply]) -> None:
        self.action = action
        self.is_list = is_list
        self.future = future
        self.response: Frame | None = None
        self.events: list[Frame] = []
        self.complete = False

    def add(self, frame: Frame) -> bool:
        """Take one frame with our ActionID; True when the action is finished."""
        fut = self.future
        h = frame.headers
        if "Event" not in h:
            if self.response is not None:
                return False  # a second Response for one ActionID: keep the first
            self.response = frame
            if h.get("Response", "").lower() == "error":
                if not fut.done():
                    fut.set_exception(AmiActionFailed(self.action, h.get("Message", "")))
                return True
            if not self.is_list:
                if not fut.done():
                    fut.set_result(Reply(frame))
                return True
        else:
            self.events.append(frame)
            marker = h.get("EventList")
            if marker is not None:
                marker = marker.lower()
                if marker == "complete":
                    self.complete = True
                elif marker == "cancelled":
                    if not fut.done():
                        fut.set_exception(AmiActionFailed(self.action, "event list cancelled by Asterisk"))
                    return True
        if self.complete and self.response is not None:
            if not fut.done():
                fut.set_result(Reply(self.response, tuple(self.events)))
            return True
        return False
