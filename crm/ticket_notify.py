"""Dispatch notifications: what the engineer is told, and the interface a sender offers.

The message is pure (``dispatch_notification``); sending is behind one small
interface (``Sender``: a ``name`` and ``async send(notification)``, raising
``NotifyError`` when it could not), so a webhook, an e-mail or SMS gateway, or
a plain function in a test all fit. ``LogSender`` (the default) writes one log
line holding ids only (``log_fields``): the customer's name, numbers and
address and the engineer's contact go to a real sender, never to the log.

The shell (``crm.ticket_notifier``) sends a notification once a change has
committed: a failed send never undoes the change; it is logged and recorded
(``ticket_notifications``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import structlog

from crm.engineers import Engineer
from crm.tickets import AuditEntry, Ticket
from cti.errors import CtiError

log = structlog.get_logger(__name__)

EVENT = "ticket.dispatched"
#: The changes that send an engineer out: a dispatch, and a failed visit of the
#: engineer's own making (the same engineer goes again).
REASONS = {"dispatch": "dispatch", "visit_failed:engineer": "revisit"}


class NotifyError(CtiError):
    """The sender could not pass the notification on (the message says why, without secrets)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one engineer. ``id`` (``ticket-<id>:<seq>``) is the same on every
    attempt: receivers deduplicate on it."""

    id: str
    event: str
    reason: str                      # 'dispatch' or 'revisit'
    ticket_id: int
    seq: int
    at: str                          # ISO 8601, the change's time
    engineer: Mapping[str, Any]      # engineer_id, name, contact
    ticket: Mapping[str, Any]        # type, title, priority, region, due_at, notes, visits
    customer: Mapping[str, Any]      # customer_id, name, phones, address
    note: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)   # the change's data (a failed visit's reason)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "reason": self.reason, "ticket_id": self.ticket_id,
                "seq": self.seq, "at": self.at, "engineer": dict(self.engineer), "ticket": dict(self.ticket),
                "customer": dict(self.customer), "note": self.note, "data": dict(self.data)}


def dispatch_notification(ticket: Ticket, entry: AuditEntry, engineer: Engineer,
                          customer: Mapping[str, Any]) -> Notification | None:
    """The message ``entry`` (a change of ``ticket``, already applied) calls for, or None
    when it sends nobody out. ``customer``: customer_id, name, phones (list), address
    (the primary one as a dict, or None)."""
    reason = REASONS.get(entry.command)
    if reason is None or ticket.ticket_id is None:
        return None
    return Notification(
        id=f"ticket-{ticket.ticket_id}:{entry.seq}", event=EVENT, reason=reason, ticket_id=ticket.ticket_id,
        seq=entry.seq, at=entry.at.isoformat(),
        engineer={"engineer_id": engineer.engineer_id, "name": engineer.name, "contact": engineer.contact},
        ticket={"type": ticket.type, "title": ticket.title, "priority": ticket.priority, "region": ticket.region,
                "due_at": ticket.due_at.isoformat(), "notes": ticket.notes, "visits": ticket.visits},
        customer={"customer_id": customer.get("customer_id"), "name": customer.get("name"),
                  "phones": list(customer.get("phones") or []), "address": customer.get("address")},
        note=entry.note, data=dict(entry.data))


def log_fields(n: Notification) -> dict[str, Any]:
    """What a log line may say of a notification: ids, region and reason only."""
    return {"notification": n.id, "kind": n.event, "reason": n.reason, "ticket_id": n.ticket_id,
            "engineer_id": n.engineer.get("engineer_id"), "region": n.ticket.get("region")}


class Sender(Protocol):
    name: str

    async def send(self, n: Notification) -> None:
        """Pass ``n`` on. Raises ``NotifyError`` when it could not."""


class LogSender:
    """The default: one log line per notification (ids only), nothing sent."""

    name = "log"

    async def send(self, n: Notification) -> None:
        log.info("ticket notification", **log_fields(n))
