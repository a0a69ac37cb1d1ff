"""The dispatch notifier: sends the notifications committed ticket changes call for.

A change that sends an engineer out (``crm.ticket_notify.REASONS``) is notified once it
has committed: ``after(ticket, entry)`` starts a task (owned here, bounded by
``NOTIFY_TIMEOUT``, cancelled by ``stop``) that reads the engineer and the customer,
builds the message (``dispatch_notification``, pure), hands it to the ``Sender`` and
records the outcome in ``ticket_notifications``. A failure is logged (ids only) and
recorded; it never undoes the change.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import asyncpg
import structlog

from crm import engineers, ticket_store
from crm.customer_store import customer_view
from crm.ticket_notify import EVENT, REASONS, Notification, NotifyError, Sender, dispatch_notification, log_fields
from crm.tickets import AuditEntry, Ticket

log = structlog.get_logger(__name__)

NOTIFY_TIMEOUT = 10.0


class TicketNotifier:
    """Sends the notifications committed changes call for, each in a task it owns
    (bounded by ``NOTIFY_TIMEOUT``, cancelled at shutdown); records every outcome.
    ``pool`` gives the connection pool when a notification needs it (it may raise when
    there is none: that notification fails and is logged)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], sender: Sender) -> None:
        self.pool = pool
        self.sender = sender
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = self.failed = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def after(self, ticket: Ticket, entry: AuditEntry) -> None:
        """Call once ``entry`` has committed."""
        if entry.command not in REASONS or ticket.engineer is None:
            return
        task = asyncio.get_running_loop().create_task(self._notify(ticket, entry),
                                                      name=f"ticket-notify-{ticket.ticket_id}-{entry.seq}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _notify(self, ticket: Ticket, entry: AuditEntry) -> None:
        assert ticket.ticket_id is not None and ticket.engineer is not None
        error: str | None = None
        try:
            async with asyncio.timeout(NOTIFY_TIMEOUT):
                n = await self._message(ticket, entry)
                if n is None:
                    return
                await self.sender.send(n)
        except NotifyError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {NOTIFY_TIMEOUT:g}s"
        except Exception as exc:   # a sender's own failure: never the change's
            error = type(exc).__name__
        if error is None:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("ticket notification failed", ticket_id=ticket.ticket_id, seq=entry.seq,
                        engineer_id=ticket.engineer, sender=self.sender.name, error=error)
        try:
            async with asyncio.timeout(2.0):
                await ticket_store.record_notification(
                    self.pool(), ticket_id=ticket.ticket_id, seq=entry.seq, event=EVENT,
                    engineer_id=ticket.engineer, sender=self.sender.name,
                    outcome="sent" if error is None else "failed", error=error)
        except Exception as exc:   # the record is best effort; the log line above has a failure
            log.warning("ticket notification not recorded", ticket_id=ticket.ticket_id, error=type(exc).__name__)

    async def _message(self, ticket: Ticket, entry: AuditEntry) -> Notification | None:
        pool = self.pool()
        assert ticket.engineer is not None
        engineer = await engineers.get(pool, ticket.engineer)
        if engineer is None:
            raise NotifyError(f"engineer {ticket.engineer!r} is unknown")
        view = await customer_view(pool, ticket.customer_id, last=1)
        customer: dict[str, Any] = {"customer_id": ticket.customer_id}
        if view is not None:
            addr = view["addresses"][0] if view["addresses"] else None
            customer.update(name=view["name"], phones=[p["phone"] for p in view["phones"]],
                            address=None if addr is None else {k: addr[k] for k in (
                                "line1", "line2", "postcode", "city", "country", "region")})
        n = dispatch_notification(ticket, entry, engineer, customer)
        if n is not None:
            log.debug("ticket notification", **log_fields(n))
        return n
