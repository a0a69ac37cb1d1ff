"""Live lists in PostgreSQL (docs/dialer.md, "Live lists"): the shell around
``dialer.live_lists`` (pure).

- ``sync_campaign``: reads the campaign's list (the tickets in its state, each with its stay
  and its customer's numbers) and its leads that name a ticket, takes the pure ``diff`` and
  writes it, in one transaction with the campaign's row locked (two syncs of one campaign
  take turns, so neither adds what the other added). Idempotent: run it on any trigger.
- ``OFF_LIST``: the SQL that says, at dial time, that a lead's ticket has left its stay on the
  list; ``dialer.store`` withdraws such a lead in the same transaction that would dial it, so a
  ticket that left the list is never called even between two syncs.
- ``ticket_write_back``: an agent's result of a live-list lead on its ticket, in the result's
  transaction: the call linked to the ticket, and the command ``ticket_command`` chooses
  applied by the ticket machine (``crm.ticket_store.transition``), when the ticket is still on
  the stay the lead was made for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog

from crm import ticket_store
from crm.customer_store import Db, connection
from crm.tickets import TicketConflict, TicketNotFound, TransitionRefused as TicketRefused
from dialer.leads import RetryRules, TransitionRefused, Withdraw, apply
from dialer.live_lists import LIST_STATE, LinkedLead, ListEntry, diff, is_live, safe_actor, ticket_command
from dialer.leads import State
from dialer.windows import ZoneMap
from dialer.writeback import _line

log = structlog.get_logger(__name__)

#: True for a lead (alias ``l``) whose ticket changed state since the stay it was made for.
OFF_LIST = ("(l.ticket_id IS NOT NULL AND EXISTS (SELECT 1 FROM ticket_audit ta WHERE ta.ticket_id = l.ticket_id"
            " AND ta.seq > l.ticket_entry AND ta.from_state IS DISTINCT FROM ta.to_state))")


class NotLive(ValueError):
    """The campaign does not exist, or its leads come from a CSV import."""


@dataclass
class SyncReport:
    campaign_id: int
    source: str
    on_list: int = 0
    added: list[int] = field(default_factory=list)         # lead ids created
    withdrawn: list[int] = field(default_factory=list)     # lead ids withdrawn
    no_phone: list[int] = field(default_factory=list)      # ticket ids whose customer has no number
    no_zone: list[int] = field(default_factory=list)       # ticket ids whose number maps to no time zone


async def list_entries(conn: asyncpg.Connection, source: str) -> list[ListEntry]:
    """The tickets on ``source``'s list now, oldest stay first, each with its stay (the audit seq
    of the transition into the list's state) and its customer's numbers."""
    state = LIST_STATE[source].value
    rows = await conn.fetch(
        """SELECT t.ticket_id, t.customer_id, c.name,
                  (SELECT max(a.seq) FROM ticket_audit a WHERE a.ticket_id = t.ticket_id AND a.to_state = $1
                      AND a.from_state IS DISTINCT FROM a.to_state) AS entry,
                  coalesce((SELECT array_agg(p.phone ORDER BY p.phone) FROM customer_phones p
                             WHERE p.customer_id = t.customer_id), '{}') AS phones
             FROM tickets t JOIN customers c USING (customer_id)
            WHERE t.state = $1 ORDER BY t.ticket_id""", state)
    return [ListEntry(r["ticket_id"], r["entry"], r["customer_id"], r["name"], tuple(r["phones"]))
            for r in rows if r["entry"] is not None]


async def linked_leads(conn: asyncpg.Connection, campaign_id: int) -> list[LinkedLead]:
    rows = await conn.fetch("SELECT lead_id, ticket_id, ticket_entry, state FROM dialer_leads"
                            " WHERE campaign_id = $1 AND ticket_id IS NOT NULL", campaign_id)
    return [LinkedLead(r["lead_id"], r["ticket_id"], r["ticket_entry"], State(r["state"])) for r in rows]


async def sync_campaign(db: Db, campaign_id: int, now: datetime, *, zones: ZoneMap | None = None,
                        rules: RetryRules | None = None) -> SyncReport:
    """Bring a live campaign's leads in step with its list (module doc). Raises ``NotLive``."""
    zones = zones or _ZONES
    rules = rules or RetryRules()
    async with connection(db) as conn:
        async with conn.transaction():
            source = await conn.fetchval("SELECT source FROM dialer_campaigns WHERE campaign_id = $1 FOR UPDATE",
                                         campaign_id) if 0 < campaign_id < 2 ** 63 else None
            if source is None:
                raise NotLive(f"no campaign {campaign_id}")
            if not is_live(source):
                raise NotLive(f"campaign {campaign_id}'s leads come from a CSV import, not a live list")
            entries = await list_entries(conn, source)
            d = diff(entries, await linked_leads(conn, campaign_id))
            report = SyncReport(campaign_id, source, on_list=len({e.stay for e in entries}),
                                no_phone=list(d.no_phone))
            for add in d.adds:
                found = zones.for_number(add.phone)
                if not found:
                    report.no_zone.append(add.entry.ticket_id)
                    continue
                lead_id = await conn.fetchval(
                    "INSERT INTO dialer_leads (campaign_id, phone, name, customer_id, zones, ticket_id, ticket_entry)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING lead_id",
                    campaign_id, add.phone, (add.entry.name or "")[:200] or None, add.entry.customer_id,
                    sorted(found), add.entry.ticket_id, add.entry.entry)
                if lead_id is not None:
                    report.added.append(lead_id)
            for lead_id in d.withdrawals:
                if await withdraw(conn, lead_id, now, rules):
                    report.withdrawn.append(lead_id)
    if report.added or report.withdrawn:
        log.info("live list synced", campaign_id=campaign_id, source=source, on_list=report.on_list,
                 added=len(report.added), withdrawn=len(report.withdrawn), no_phone=len(report.no_phone))
    return report


_ZONES = ZoneMap()


async def withdraw(conn: asyncpg.Connection, lead_id: int, now: datetime, rules: RetryRules) -> bool:
    """Withdraw the lead if it is still not dialed (the machine's ``withdraw``): locked first, so
    a lead taken for dialing meanwhile is left to its call. False when it was not withdrawn."""
    from dialer.store import _lead, _write
    row = await conn.fetchrow("SELECT * FROM dialer_leads WHERE lead_id = $1 FOR UPDATE", lead_id)
    if row is None:
        return False
    try:
        lead = apply(_lead(row), Withdraw(), rules, now)
    except TransitionRefused:
        return False
    await _write(conn, lead)
    await conn.execute("UPDATE dialer_leads SET reserved_by = NULL, reserved_until = NULL WHERE lead_id = $1",
                       lead_id)
    return True


async def live_campaigns(db: Db) -> list[int]:
    """The campaigns kept in step in the background: a live source, running or paused."""
    async with connection(db) as conn:
        rows = await conn.fetch("SELECT campaign_id FROM dialer_campaigns WHERE source <> 'csv'"
                                " AND state <> 'stopped' ORDER BY campaign_id")
    return [r["campaign_id"] for r in rows]


async def sync_all(db: Db, now: datetime, *, zones: ZoneMap | None = None) -> list[SyncReport]:
    """``sync_campaign`` for each of ``live_campaigns``; one failing is logged, the others go on."""
    reports = []
    for cid in await live_campaigns(db):
        try:
            reports.append(await sync_campaign(db, cid, now, zones=zones))
        except (NotLive, asyncpg.PostgresError) as exc:
            log.warning("live list sync failed", campaign_id=cid, error=str(exc))
    return reports


async def ticket_write_back(conn: asyncpg.Connection, *, ticket_id: int, entry: int, source: str, outcome: str,
                            disposition: str | None, actor: str, campaign: str, attempt_id: int,
                            call_id: str | None, now: datetime) -> str | None:
    """An agent's result of a live-list lead on its ticket (in the caller's transaction): the call
    linked to the ticket, and the command ``ticket_command`` chooses, given by the ticket machine
    when the ticket is still on the stay the lead was made for. Returns the command's kind, or
    None (no command for this result, or the ticket moved on: nothing changed but the link)."""
    customer = await conn.fetchval("SELECT customer_id FROM tickets WHERE ticket_id = $1", ticket_id)
    if customer is None:
        return None
    if call_id:
        await ticket_store._link_call(conn, ticket_id, customer, call_id)
    moved = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ticket_audit WHERE ticket_id = $1 AND seq > $2"
                                " AND from_state IS DISTINCT FROM to_state)", ticket_id, entry)
    note = f"Campaign {_line(campaign)!r}, attempt {attempt_id}: {outcome.replace('_', ' ')}"
    if disposition:
        note += f", disposition {_line(disposition)}"
    command = ticket_command(source, outcome=outcome, disposition=disposition, actor=safe_actor(actor),
                             note=note[:4000])
    if moved or command is None:
        return None
    try:
        await ticket_store.transition(conn, ticket_id, command, now=now)
    except (TicketRefused, TicketConflict, TicketNotFound) as exc:
        log.info("live list result not written on the ticket", ticket_id=ticket_id, attempt=attempt_id,
                 error=str(exc))
        return None
    return command.kind
