"""The task model: one work item of a non-voice channel. Pure: validation and the
record, no I/O, no clock (``now`` is passed in).

A task is what a channel files into the ACD (``omni.service.OmniService.file_task``):
a chat that starts, an e-mail thread that needs an answer, a message conversation.
The ACD routes it to an agent (``acd.tasks.TaskRouter``); the channel keeps the
conversation itself (chat messages, mails) under the same ``task_id``.

    CtiError
    └── TaskError      a bad channel, queue, reference or subject
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace

from acd.config import TASK_CHANNELS
from cti.errors import CtiError

__all__ = ["Task", "TaskError", "new_task", "STATUSES", "SUBJECT_MAX", "REF_MAX"]

# waiting: in its queue; assigned: an agent holds it; closed: done (with a disposition);
# abandoned: the customer left before an agent had it.
STATUSES = ("waiting", "assigned", "closed", "abandoned")
SUBJECT_MAX = 200
REF_MAX = 200
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TaskError(CtiError, ValueError):
    """A task that cannot be filed: the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Task:
    """``ref``: the channel's own id of the conversation (a chat session, a Message-ID),
    unique per channel; ``customer_ref``: who it is from as the channel knows them (an
    e-mail address, a phone number, a chat visitor's name), matched to a customer later."""

    task_id: str
    channel: str
    queue: str
    customer_ref: str
    subject: str
    ref: str
    created_at: float
    status: str = "waiting"
    agent_id: str | None = None
    assigned_at: float | None = None
    closed_at: float | None = None
    disposition: str | None = None
    # when it entered the queue it waits in now, if a transfer or an overflow moved it
    # (None: created_at); a queue's maximum wait counts from it
    queued_at: float | None = None

    def assigned(self, agent_id: str, at: float) -> "Task":
        return replace(self, status="assigned", agent_id=agent_id, assigned_at=at)

    def closed(self, at: float, disposition: str) -> "Task":
        return replace(self, status="closed", closed_at=at, disposition=disposition)


def _text(name: str, value: object, limit: int, *, empty: bool) -> str:
    if not isinstance(value, str):
        raise TaskError(f"{name} must be text, not {type(value).__name__}")
    value = value.strip()
    if not value and not empty:
        raise TaskError(f"{name} is empty")
    if len(value) > limit:
        raise TaskError(f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise TaskError(f"{name} holds control characters")
    return value


def new_task(channel: object, queue: object, customer_ref: object, subject: object, ref: object, now: float,
             task_id: str | None = None) -> Task:
    """A new waiting task, every field checked. Returns the ``Task``; raises ``TaskError``."""
    if channel not in TASK_CHANNELS:
        raise TaskError(f"channel must be one of {', '.join(TASK_CHANNELS)}, not {channel!r}")
    if not isinstance(queue, str) or not _ID.match(queue):
        raise TaskError(f"queue {queue!r} is not a queue id")
    tid = task_id if task_id is not None else f"{channel}-{uuid.uuid4().hex[:20]}"
    if not _ID.match(tid):
        raise TaskError(f"task id {tid!r} is not an id")
    return Task(tid, str(channel), queue, _text("customer_ref", customer_ref, REF_MAX, empty=False),
                _text("subject", subject, SUBJECT_MAX, empty=True), _text("ref", ref, REF_MAX, empty=False), now)
