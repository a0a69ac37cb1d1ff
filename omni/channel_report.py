"""Figures per channel (voice, chat, e-mail, message) over a range of days: the
report behind ``GET /api/reports/channels``. Pure: records in, rows out.

One **contact** is one conversation as its customer lived it, whatever queues it went
through: a call (its queue stays, ``acd.figures.QueueCall``, joined by call id: an
overflowed or moved call is one contact, its wait from its first queue's entry to
its last stay's end) or a task (``omni.tasks.Task``: a chat, a mail thread's
opening, a messaging conversation; transfers and overflows keep one task).

Per channel: ``offered`` (every contact that arrived in the range), ``answered``,
``abandoned``, ``timed_out`` (calls sent to voicemail or a call-back by a maximum
wait; tasks have none: they overflow within the ACD), ``waiting`` (still queued),
``wait_p50_s`` and ``wait_p90_s`` (the time to answer of the answered contacts,
nearest rank), ``aht_s`` (mean handle time of the answered contacts whose handling
is over: talk + hold + wrap-up for a call; from assignment to close for a task, the
time the agent held it, maybe beside others) and ``handled`` (how many that mean
is over). Calls abandoned within a few seconds are counted as abandoned here (the
queue report leaves short abandons out of offered).

With an interval (``bucket``: a contact's arrival to its interval's start,
``acd.figures.bucket_start`` on the site's clock), the rows are per interval that had
contacts, then per channel, each with its ``start``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from acd.figures import ABANDONED, ANSWERED, OUTCOMES, TIMED_OUT, WAITING, QueueCall, group_by
from omni.tasks import Task

__all__ = ["CHANNELS", "CHANNEL_COLUMNS", "Contact", "channel_rows", "from_task", "nearest_rank", "voice_contacts"]

CHANNELS = ("voice", "chat", "email", "message")
CHANNEL_COLUMNS = ["channel", "offered", "answered", "abandoned", "timed_out", "waiting", "wait_p50_s",
                   "wait_p90_s", "aht_s", "handled"]


@dataclass(frozen=True, slots=True)
class Contact:
    """One contact: its ``channel``, how it ended (``acd.figures.OUTCOMES``), its wait
    (None while waiting), handle time (None unless answered and over) and arrival."""

    channel: str
    outcome: str
    wait_s: float | None
    handle_s: float | None = None
    arrived_at: float = 0.0

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")


def voice_contacts(calls: Iterable[QueueCall]) -> list[Contact]:
    """Calls' queue stays, one contact per call: the outcome and handling of its last
    stay, its wait from the first stay's arrival."""
    out = []
    for stays in group_by(calls, lambda c: c.call_id).values():
        stays = sorted(stays, key=lambda c: c.arrived_at)
        first, last = stays[0], stays[-1]
        wait = None if last.left_at is None else max(0.0, last.left_at - first.arrived_at)
        out.append(Contact("voice", last.outcome, wait, last.handle_s if last.outcome == ANSWERED else None,
                           first.arrived_at))
    return out


def from_task(t: Task) -> Contact:
    """A stored task as a contact: answered once an agent had it (its wait to that
    assignment; handled until closed), abandoned when the customer left the queue."""
    if t.assigned_at is not None:
        handle = t.closed_at - t.assigned_at if t.status == "closed" and t.closed_at is not None else None
        return Contact(t.channel, ANSWERED, max(0.0, t.assigned_at - t.created_at),
                       None if handle is None else max(0.0, handle), t.created_at)
    if t.status in ("abandoned", "closed"):     # closed unanswered: its channel closed the conversation
        left = t.closed_at if t.closed_at is not None else t.created_at
        return Contact(t.channel, ABANDONED, max(0.0, left - t.created_at), None, t.created_at)
    return Contact(t.channel, WAITING, None, None, t.created_at)


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) by nearest rank: the smallest value with at
    least ``q`` of the values at or below it. None for no values."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def channel_rows(contacts: Iterable[Contact], channels: Sequence[str] = CHANNELS, *,
                 bucket: Callable[[float], float] | None = None) -> list[dict[str, object]]:
    """One row per channel of ``channels`` (in that order, zeros when none came), then
    any other channel met, by name. Seconds rounded to 0.1. With ``bucket``, those rows
    for each interval that had contacts, in time order, each with its ``start``."""
    if bucket is not None:
        return [{"start": start, **row}
                for start, cs in sorted(group_by(contacts, lambda c: bucket(c.arrived_at)).items())
                for row in channel_rows(cs, channels)]
    by = group_by(contacts, lambda c: c.channel)
    rows = []
    for ch in [*channels, *sorted(set(by) - set(channels))]:
        cs = by.get(ch, [])
        answered = [c for c in cs if c.outcome == ANSWERED]
        waits = [c.wait_s for c in answered if c.wait_s is not None]
        handles = [c.handle_s for c in answered if c.handle_s is not None]
        rows.append({
            "channel": ch, "offered": len(cs), "answered": len(answered),
            "abandoned": sum(c.outcome == ABANDONED for c in cs), "timed_out": sum(c.outcome == TIMED_OUT for c in cs),
            "waiting": sum(c.outcome == WAITING for c in cs),
            "wait_p50_s": _r(nearest_rank(waits, 0.5)), "wait_p90_s": _r(nearest_rank(waits, 0.9)),
            "aht_s": _r(sum(handles) / len(handles) if handles else None), "handled": len(handles)})
    return rows


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
