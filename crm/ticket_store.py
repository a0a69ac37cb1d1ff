"""Tickets in PostgreSQL: create, transition atomically, link, and the work lists.

A transition is one transaction: the ticket's row is locked (``SELECT ... FOR
UPDATE``, waiting at most ``lock_timeout``), the pure machine
(``crm.tickets.apply``) decides on what the row holds now, and the new state and
its audit row are written together. Two agents acting on one ticket at once are
serialised by the lock; the second then sees the first one's result, so it gets
``TransitionRefused`` when its command no longer fits the state, or
``TicketConflict`` when it said which revision it acted on
(``expected_revision``) and the ticket has moved since. Nothing is half-written.

The lists mirror the pure definitions: ``overdue`` is ``crm.tickets.is_overdue``
in SQL, ``callback_list`` is the tickets in ``awaiting_callback``.
"""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Union

import asyncpg

from crm.customer_store import connection
from crm.tickets import (
    DEFAULT_TYPES, AuditEntry, Command, InvalidCommand, Source, State, Ticket, TicketConflict, TicketNotFound,
    TicketTypes, apply, edit, new_ticket, parse_ticket_types,
)
from cti.errors import ConfigError

Db = Union[asyncpg.Pool, asyncpg.Connection]

_COLUMNS = ("ticket_id, type, customer_id, source, state, title, region, engineer, lead, visits, callback_attempts,"
            " resolution, created_at, due_at, callback_due_at, closed_at, revision, priority, notes")
_LIVE = "state NOT IN ('closed', 'cancelled')"


def load_ticket_types(path: str | os.PathLike[str]) -> TicketTypes:
    """Ticket types from a TOML file (shape: ``crm.tickets.parse_ticket_types``).
    Raises ``ConfigError`` naming the file and the bad entry."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return parse_ticket_types(doc)
    except (OSError, tomllib.TOMLDecodeError, InvalidCommand) as exc:
        raise ConfigError(f"ticket types {str(path)!r}: {exc}") from None


def _now(now: datetime | None) -> datetime:
    return datetime.now(timezone.utc) if now is None else now


def _ticket(r: asyncpg.Record) -> Ticket:
    return Ticket(ticket_id=r["ticket_id"], type=r["type"], customer_id=r["customer_id"], source=Source(r["source"]),
                  state=State(r["state"]), title=r["title"], region=r["region"], engineer=r["engineer"],
                  lead=r["lead"], visits=r["visits"], callback_attempts=r["callback_attempts"],
                  resolution=r["resolution"], created_at=r["created_at"], due_at=r["due_at"],
                  callback_due_at=r["callback_due_at"], closed_at=r["closed_at"], revision=r["revision"],
                  priority=r["priority"], notes=r["notes"])


def _entry(r: asyncpg.Record) -> AuditEntry:
    return AuditEntry(ticket_id=r["ticket_id"], seq=r["seq"], at=r["at"], actor=r["actor"], command=r["command"],
                      from_state=None if r["from_state"] is None else State(r["from_state"]),
                      to_state=State(r["to_state"]), note=r["note"], data=json.loads(r["data"]))


_INSERT_AUDIT = """INSERT INTO ticket_audit (ticket_id, seq, at, actor, command, from_state, to_state, note, data)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"""


def _audit_args(ticket_id: int, e: AuditEntry) -> tuple[Any, ...]:
    return (ticket_id, e.seq, e.at, e.actor, e.command, None if e.from_state is None else e.from_state.value,
            e.to_state.value, e.note, json.dumps(dict(e.data)))


async def _insert(conn: asyncpg.Connection, t: Ticket) -> int:
    return await conn.fetchval(
        """INSERT INTO tickets (type, customer_id, source, state, title, region, created_at, due_at, revision,
                              priority, notes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ticket_id""",
        t.type, t.customer_id, t.source.value, t.state.value, t.title, t.region, t.created_at, t.due_at, t.revision,
        t.priority, t.notes)


async def _primary_region(conn: asyncpg.Connection, customer_id: str) -> str | None:
    return await conn.fetchval(
        """SELECT region FROM customer_addresses WHERE customer_id = $1 AND region IS NOT NULL
            ORDER BY is_primary DESC, address_id LIMIT 1""", customer_id)


async def create_ticket(db: Db, *, type: str, customer_id: str, source: Source | str, actor: str,
                        title: str | None = None, note: str | None = None, region: str | None = None,
                        call_id: str | None = None, now: datetime | None = None, priority: str = "normal",
                        notes: str = "", types: TicketTypes = DEFAULT_TYPES) -> tuple[Ticket, AuditEntry]:
    """Create an open ticket (its region defaults to the customer's primary address's),
    with its creation audit row and, given ``call_id``, its link to the call.

    Raises: ``InvalidCommand`` (unknown customer, bad field), ``UnknownTicketType``.
    """
    async with connection(db) as conn, conn.transaction():
        if not await conn.fetchval("SELECT true FROM customers WHERE customer_id = $1 FOR KEY SHARE", customer_id):
            raise InvalidCommand("customer_id", f"unknown customer {customer_id!r}")
        if region is None:
            region = await _primary_region(conn, customer_id)
        ticket, entry = new_ticket(type=type, customer_id=customer_id, source=source, actor=actor, now=_now(now),
                                   title=title, region=region, note=note, priority=priority, notes=notes,
                                   types=types)
        ticket_id = await _insert(conn, ticket)
        await conn.execute(_INSERT_AUDIT, *_audit_args(ticket_id, entry))
        if call_id is not None:
            await _link_call(conn, ticket_id, customer_id, call_id)
    return (Ticket(**{**_fields(ticket), "ticket_id": ticket_id}),
            AuditEntry(**{**_fields(entry), "ticket_id": ticket_id}))


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}


async def _locked(conn: asyncpg.Connection, ticket_id: int, expected_revision: int | None,
                  lock_timeout: float) -> Ticket:
    """The ticket's row, locked for this transaction. Raises ``TicketNotFound``, ``TicketConflict``."""
    await conn.execute(f"SET LOCAL lock_timeout = {max(1, int(lock_timeout * 1000))}")
    try:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tickets WHERE ticket_id = $1 FOR UPDATE", ticket_id)
    except asyncpg.LockNotAvailableError:
        raise TicketConflict(f"ticket {ticket_id} stayed locked by another change for {lock_timeout:g}s;"
                             " re-read it and retry") from None
    if row is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    ticket = _ticket(row)
    if expected_revision is not None and ticket.revision != expected_revision:
        raise TicketConflict(f"ticket {ticket_id} changed since revision {expected_revision}: it is at revision"
                             f" {ticket.revision}, state {ticket.state.value!r}; re-read it and retry")
    return ticket


async def _write(conn: asyncpg.Connection, ticket_id: int, after: Ticket, entry: AuditEntry) -> None:
    await conn.execute(
        """UPDATE tickets SET state = $2, engineer = $3, lead = $4, visits = $5, callback_attempts = $6,
                  resolution = $7, due_at = $8, callback_due_at = $9, closed_at = $10, revision = $11,
                  title = $12, priority = $13, notes = $14, updated_at = now()
            WHERE ticket_id = $1""",
        ticket_id, after.state.value, after.engineer, after.lead, after.visits, after.callback_attempts,
        after.resolution, after.due_at, after.callback_due_at, after.closed_at, after.revision,
        after.title, after.priority, after.notes)
    await conn.execute(_INSERT_AUDIT, *_audit_args(ticket_id, entry))


async def transition(db: Db, ticket_id: int, command: Command, *, now: datetime | None = None,
                     expected_revision: int | None = None, lock_timeout: float = 5.0,
                     types: TicketTypes = DEFAULT_TYPES) -> tuple[Ticket, AuditEntry]:
    """Apply ``command`` to the ticket, atomically (see the module doc).

    Returns: the ticket after the change and its audit entry.
    Raises: ``TicketNotFound``; ``TransitionRefused`` (the state does not allow it:
    nothing written); ``TicketConflict`` (``expected_revision`` is not the ticket's
    revision, or its row stayed locked longer than ``lock_timeout`` seconds).
    """
    async with connection(db) as conn, conn.transaction():
        ticket = await _locked(conn, ticket_id, expected_revision, lock_timeout)
        after, entry = apply(ticket, command, _now(now), types)
        await _write(conn, ticket_id, after, entry)
    return after, entry


async def edit_ticket(db: Db, ticket_id: int, changes: dict[str, Any], *, actor: str, note: str | None = None,
                      now: datetime | None = None, expected_revision: int | None = None,
                      lock_timeout: float = 5.0) -> tuple[Ticket, AuditEntry]:
    """Change title, notes, priority or due time (``crm.tickets.edit``), atomically and
    audited like a transition. Raises ``TicketNotFound``, ``TicketConflict``,
    ``InvalidCommand`` (nothing written)."""
    async with connection(db) as conn, conn.transaction():
        ticket = await _locked(conn, ticket_id, expected_revision, lock_timeout)
        after, entry = edit(ticket, changes, actor=actor, now=_now(now), note=note)
        await _write(conn, ticket_id, after, entry)
    return after, entry


async def get_ticket(db: Db, ticket_id: int) -> Ticket | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM tickets WHERE ticket_id = $1", ticket_id)
    return None if row is None else _ticket(row)


async def audit_trail(db: Db, ticket_id: int) -> list[AuditEntry]:
    """Every change of the ticket, oldest first."""
    rows = await db.fetch("SELECT * FROM ticket_audit WHERE ticket_id = $1 ORDER BY seq", ticket_id)
    return [_entry(r) for r in rows]


async def _link_call(conn: asyncpg.Connection, ticket_id: int, customer_id: str, call_id: str) -> None:
    await conn.execute("INSERT INTO ticket_calls (ticket_id, call_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       ticket_id, call_id)
    await conn.execute("INSERT INTO customer_calls (customer_id, call_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       customer_id, call_id)


async def link_call(db: Db, ticket_id: int, call_id: str) -> None:
    """Link a call to the ticket (and so to its customer). Idempotent. Raises ``TicketNotFound``."""
    async with connection(db) as conn, conn.transaction():
        customer_id = await conn.fetchval("SELECT customer_id FROM tickets WHERE ticket_id = $1", ticket_id)
        if customer_id is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        await _link_call(conn, ticket_id, customer_id, call_id)


async def link_recording(db: Db, ticket_id: int, recording_id: str) -> None:
    """Link a recording (by its id) to the ticket. Idempotent. Raises ``TicketNotFound``."""
    try:
        await db.execute("INSERT INTO ticket_recordings (ticket_id, recording_id) VALUES ($1, $2)"
                         " ON CONFLICT DO NOTHING", ticket_id, recording_id)
    except asyncpg.ForeignKeyViolationError:
        raise TicketNotFound(f"no ticket {ticket_id}") from None


# -- work lists ------------------------------------------------------------------------


async def callback_list(db: Db, *, now: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Tickets awaiting the confirmation callback, the most urgent first, each with
    the customer's name and numbers (to dial) and whether the callback is overdue."""
    rows = await db.fetch(
        f"""SELECT {', '.join('t.' + c.strip() for c in _COLUMNS.split(','))}, c.name AS customer_name,
                   coalesce((SELECT array_agg(phone ORDER BY phone) FROM customer_phones p
                              WHERE p.customer_id = t.customer_id), '{{}}') AS phones
              FROM tickets t JOIN customers c USING (customer_id)
             WHERE t.state = 'awaiting_callback'
             ORDER BY t.callback_due_at, t.ticket_id LIMIT $1""", limit)
    at = _now(now)
    return [{"ticket": _ticket(r), "customer_name": r["customer_name"], "phones": list(r["phones"]),
             "overdue": r["callback_due_at"] < at} for r in rows]


async def overdue(db: Db, *, now: datetime | None = None, limit: int = 500) -> list[Ticket]:
    """Live tickets past their due time (``crm.tickets.is_overdue``), the longest overdue first."""
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM (
                SELECT *, CASE WHEN state = 'awaiting_callback' AND callback_due_at IS NOT NULL
                               THEN callback_due_at ELSE due_at END AS due_by
                  FROM tickets WHERE {_LIVE}) t
             WHERE due_by < $1 ORDER BY due_by, ticket_id LIMIT $2""", _now(now), limit)
    return [_ticket(r) for r in rows]


async def by_customer(db: Db, customer_id: str, *, live_only: bool = False, limit: int = 200) -> list[Ticket]:
    """The customer's tickets, newest first."""
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM tickets WHERE customer_id = $1 {'AND ' + _LIVE if live_only else ''}
             ORDER BY created_at DESC, ticket_id DESC LIMIT $2""", customer_id, limit)
    return [_ticket(r) for r in rows]


async def not_visited_lately(db: Db, *, since: timedelta, now: datetime | None = None, region: str | None = None,
                             planned_type: str = "site_visit", limit: int = 200) -> list[dict[str, Any]]:
    """Customers with no successful visit since ``now - since`` (never visited first,
    then the longest ago), leaving out those who already have a live ``planned_type``
    ticket; optionally in one region (their primary address's). Each: customer_id,
    name, region, last_visit (None: never)."""
    cutoff = _now(now) - since
    rows = await db.fetch(
        f"""WITH visits AS (
                SELECT t.customer_id, max(a.at) AS last_visit
                  FROM ticket_audit a JOIN tickets t USING (ticket_id)
                 WHERE a.command = 'visit_succeeded' GROUP BY t.customer_id),
            regions AS (
                SELECT DISTINCT ON (customer_id) customer_id, region FROM customer_addresses
                 WHERE region IS NOT NULL ORDER BY customer_id, is_primary DESC, address_id)
            SELECT c.customer_id, c.name, r.region, v.last_visit
              FROM customers c LEFT JOIN visits v USING (customer_id) LEFT JOIN regions r USING (customer_id)
             WHERE (v.last_visit IS NULL OR v.last_visit < $1)
               AND ($2::text IS NULL OR r.region = $2)
               AND NOT EXISTS (SELECT 1 FROM tickets p WHERE p.customer_id = c.customer_id
                                  AND p.type = $3 AND p.{_LIVE})
             ORDER BY v.last_visit NULLS FIRST, c.customer_id LIMIT $4""", cutoff, region, planned_type, limit)
    return [dict(r) for r in rows]


@dataclass
class BulkResult:
    created: dict[str, int] = field(default_factory=dict)    # customer_id -> new ticket id
    skipped_open: list[str] = field(default_factory=list)    # already had a live ticket of the type
    unknown: list[str] = field(default_factory=list)         # no such customer
    repeated: list[str] = field(default_factory=list)        # listed more than once (the first counts)


async def import_list(db: Db, customer_ids: Iterable[str], *, type: str, actor: str, title: str | None = None,
                      note: str | None = None, now: datetime | None = None,
                      types: TicketTypes = DEFAULT_TYPES) -> BulkResult:
    """One ticket of ``type`` (source 'import') per listed customer, e.g. those who
    missed a daily upload, skipping customers who already have a live ticket of that
    type, unknown customers and repeats. One transaction; two imports at once take
    turns (an advisory lock), so a customer never gets two."""
    at = _now(now)
    result = BulkResult()
    wanted: list[str] = []
    seen: set[str] = set()
    for cid in customer_ids:
        (result.repeated if cid in seen else wanted).append(cid)
        seen.add(cid)
    async with connection(db) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cti.tickets.import'))")
        known = {r["customer_id"]: r["region"] for r in await conn.fetch(
            """SELECT c.customer_id, (SELECT region FROM customer_addresses a
                                       WHERE a.customer_id = c.customer_id AND region IS NOT NULL
                                       ORDER BY is_primary DESC, address_id LIMIT 1) AS region
                 FROM customers c WHERE c.customer_id = ANY($1::text[])""", wanted)}
        live = {r["customer_id"] for r in await conn.fetch(
            f"SELECT customer_id FROM tickets WHERE customer_id = ANY($1::text[]) AND type = $2 AND {_LIVE}",
            wanted, type)}
        made: list[tuple[Ticket, AuditEntry]] = []
        for cid in wanted:
            if cid not in known:
                result.unknown.append(cid)
            elif cid in live:
                result.skipped_open.append(cid)
            else:
                made.append(new_ticket(type=type, customer_id=cid, source=Source.IMPORT, actor=actor, now=at,
                                       title=title, region=known[cid], note=note, types=types))
        if not made:
            return result
        # One statement for all the tickets (a list may hold many thousand customers).
        rows = await conn.fetch(
            """INSERT INTO tickets (type, customer_id, source, state, title, region, created_at, due_at, revision)
               SELECT $1, cid, $2, $3, $4, region, $5, $6, $7
                 FROM unnest($8::text[], $9::text[]) WITH ORDINALITY AS u(cid, region, n)
                ORDER BY n
               RETURNING ticket_id, customer_id""",
            made[0][0].type, Source.IMPORT.value, State.OPEN.value, made[0][0].title, at, made[0][0].due_at,
            made[0][0].revision, [t.customer_id for t, _ in made], [t.region for t, _ in made])
        ids = {r["customer_id"]: r["ticket_id"] for r in rows}
        await conn.executemany(_INSERT_AUDIT, [_audit_args(ids[t.customer_id], e) for t, e in made])
        result.created = {t.customer_id: ids[t.customer_id] for t, _ in made}
    return result


# -- links, search, notifications (the API's reads) ------------------------------------


async def ticket_links(db: Db, ticket_id: int) -> dict[str, list[dict[str, Any]]]:
    """The ticket's linked calls (with what ``calls`` holds of them, when it does) and
    recordings (with the recordings of its calls), oldest first."""
    calls = await db.fetch(
        """SELECT l.call_id, l.linked_at, c.started_at, c.ended_at, c.direction, c.caller_num, c.agent, c.state
             FROM ticket_calls l LEFT JOIN calls c USING (call_id)
            WHERE l.ticket_id = $1 ORDER BY l.linked_at, l.call_id""", ticket_id)
    recs = await db.fetch(
        """SELECT recording_id::text AS recording_id, linked_at FROM ticket_recordings WHERE ticket_id = $1
           UNION
           SELECT r.recording_id::text, r.started_at FROM recordings r
             JOIN ticket_calls l ON l.call_id = r.call_id AND l.ticket_id = $1 AND r.state <> 'deleted'
            ORDER BY 2, 1""", ticket_id)
    return {"calls": [dict(r) for r in calls], "recordings": [dict(r) for r in recs]}


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search(db: Db, *, states: Iterable[str] = (), type: str | None = None, customer_id: str | None = None,
                 region: str | None = None, engineer: str | None = None, overdue: bool | None = None,
                 text: str | None = None, now: datetime | None = None, limit: int = 50,
                 offset: int = 0) -> list[dict[str, Any]]:
    """Tickets matching every filter given, the most recently changed first, each
    ``{"ticket": Ticket, "customer_name": ..., "overdue": bool}``. ``text`` matches
    the title, the notes or the customer's name (case-insensitive), or the ticket id.
    ``overdue`` is ``crm.tickets.is_overdue`` (True: only overdue; False: only not)."""
    at = _now(now)
    due_by = ("CASE WHEN t.state IN ('closed', 'cancelled') THEN NULL"
              " WHEN t.state = 'awaiting_callback' AND t.callback_due_at IS NOT NULL"
              " THEN t.callback_due_at ELSE t.due_at END")
    where = ["true"]
    args: list[Any] = [at]
    def arg(v: Any) -> str:
        args.append(v)
        return f"${len(args)}"
    wanted = list(states)
    if wanted:
        where.append(f"t.state = ANY({arg(wanted)}::text[])")
    for col, value in (("type", type), ("customer_id", customer_id), ("region", region), ("engineer", engineer)):
        if value is not None:
            where.append(f"t.{col} = {arg(value)}")
    if overdue is not None:
        where.append(f"{'' if overdue else 'NOT '}coalesce({due_by} < $1, false)")
    if text:
        like = arg(_like(text.strip()))
        digits = text.strip().lstrip("#")
        ident = f" OR t.ticket_id = {arg(int(digits))}" if digits.isdigit() and len(digits) <= 18 else ""
        where.append(f"(t.title ILIKE {like} OR t.notes ILIKE {like} OR c.name ILIKE {like}{ident})")
    rows = await db.fetch(
        f"""SELECT {', '.join('t.' + c.strip() for c in _COLUMNS.split(','))}, c.name AS customer_name,
                   coalesce({due_by} < $1, false) AS is_overdue
              FROM tickets t JOIN customers c USING (customer_id)
             WHERE {' AND '.join(where)}
             ORDER BY t.updated_at DESC, t.ticket_id DESC LIMIT {arg(limit)} OFFSET {arg(offset)}""", *args)
    return [{"ticket": _ticket(r), "customer_name": r["customer_name"], "overdue": r["is_overdue"]} for r in rows]


async def record_notification(db: Db, *, ticket_id: int, seq: int, event: str, engineer_id: str, sender: str,
                              outcome: str, error: str | None = None) -> None:
    """Keep what became of one notification (``sent`` or ``failed`` and why)."""
    await db.execute(
        """INSERT INTO ticket_notifications (ticket_id, seq, event, engineer_id, sender, outcome, error)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""", ticket_id, seq, event, engineer_id, sender, outcome, error)


async def notifications(db: Db, ticket_id: int) -> list[dict[str, Any]]:
    """The ticket's notifications, oldest first."""
    rows = await db.fetch("""SELECT seq, event, engineer_id, sender, outcome, error, at FROM ticket_notifications
                              WHERE ticket_id = $1 ORDER BY notification_id""", ticket_id)
    return [dict(r) for r in rows]
