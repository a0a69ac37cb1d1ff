"""The full customer record in PostgreSQL: addresses, tags, notes, call links, the
360-degree view, merges and CSV imports. The decisions are pure (``crm.customer_model``);
this module reads, locks and writes.

Lookups by caller ID stay in ``crm.customer_lookup`` (``find_by_phone``).
"""
from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Union

import asyncpg

from crm.customer_model import (
    Address, BadImportFile, CustomerRow, CustomerSnapshot, InvalidCustomer, MergePlan, MergeRefused, Rejected,
    ID, normalise_tag, plan_merge, read_csv, validate_rows,
)
from cti.pg import is_pool

Db = Union[asyncpg.Pool, asyncpg.Connection]


@contextlib.asynccontextmanager
async def connection(db: Db) -> AsyncIterator[asyncpg.Connection]:
    """A connection: ``db`` itself, or one borrowed from the pool for the block."""
    if is_pool(db):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


# -- the record ----------------------------------------------------------------------


async def add_address(db: Db, customer_id: str, address: Address, *, primary: bool = False) -> int:
    """Add an address; ``primary`` makes it the customer's primary one. Returns its id.
    Raises ``InvalidCustomer`` for a region that is not a plain name."""
    if address.region is not None and not ID.match(address.region):
        raise InvalidCustomer("region", f"{address.region!r} is not a region name (letters, digits, _.:@+-)")
    async with connection(db) as conn, conn.transaction():
        if primary:
            await conn.execute("UPDATE customer_addresses SET is_primary = false"
                               " WHERE customer_id = $1 AND is_primary", customer_id)
        return await conn.fetchval(
            """INSERT INTO customer_addresses (customer_id, label, line1, line2, postcode, city, country,
                                               region, is_primary)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING address_id""",
            customer_id, address.label, address.line1, address.line2, address.postcode, address.city,
            address.country, address.region, primary)


async def tag(db: Db, customer_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
    """Add and remove tags (normalised: ``VIP`` is ``vip``). Returns the customer's tags after.
    Raises ``InvalidCustomer`` for a malformed tag (nothing changes)."""
    adding = sorted({normalise_tag(t) for t in add})
    removing = sorted({normalise_tag(t) for t in remove})
    async with connection(db) as conn, conn.transaction():
        await conn.executemany("INSERT INTO customer_tags (customer_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                               [(customer_id, t) for t in adding])
        await conn.execute("DELETE FROM customer_tags WHERE customer_id = $1 AND tag = ANY($2::text[])",
                           customer_id, removing)
        return [r["tag"] for r in await conn.fetch(
            "SELECT tag FROM customer_tags WHERE customer_id = $1 ORDER BY tag", customer_id)]


async def add_note(db: Db, customer_id: str, author: str, body: str) -> int:
    """Append a note. Returns its id. Raises ``InvalidCustomer`` for an empty body."""
    if not body.strip() or len(body) > 10_000:
        raise InvalidCustomer("body", "a note is 1 to 10,000 characters")
    if not author.strip() or len(author) > 128:
        raise InvalidCustomer("author", "is required (at most 128 characters)")
    return await db.fetchval("INSERT INTO customer_notes (customer_id, author, body) VALUES ($1, $2, $3)"
                             " RETURNING note_id", customer_id, author, body)


async def add_email(db: Db, customer_id: str, email: str, *, label: str | None = None) -> str:
    """Give the customer an e-mail address (stored lower case; one customer per address:
    a known address moves to this customer). Returns it as stored. Raises
    ``InvalidCustomer`` for what is not an address."""
    address = email.strip().lower()
    if not (3 <= len(address) <= 320) or address.count("@") != 1 or address.startswith("@") \
            or any(c.isspace() or ord(c) < 32 for c in address):
        raise InvalidCustomer("email", f"{email[:80]!r} is not an e-mail address")
    await db.execute("INSERT INTO customer_emails (email, customer_id, label) VALUES ($1, $2, $3) "
                     "ON CONFLICT (email) DO UPDATE SET customer_id = EXCLUDED.customer_id, label = EXCLUDED.label",
                     address, customer_id, label)
    return address


async def customer_emails(db: Db, customer_id: str) -> list[dict[str, Any]]:
    """The customer's e-mail addresses ({email, label}), in order."""
    return [dict(r) for r in await db.fetch("SELECT email, label FROM customer_emails WHERE customer_id = $1 "
                                            "ORDER BY email", customer_id)]


async def customer_by_email(db: Db, email: str) -> str | None:
    """The customer an e-mail address belongs to (compared lower case), or None."""
    return await db.fetchval("SELECT customer_id FROM customer_emails WHERE email = $1", email.strip().lower())


async def link_call(db: Db, customer_id: str, call_id: str) -> None:
    """Record that call ``call_id`` concerns the customer (idempotent)."""
    await db.execute("INSERT INTO customer_calls (customer_id, call_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                     customer_id, call_id)


async def customer_view(db: Db, customer_id: str, *, last: int = 50) -> dict[str, Any] | None:
    """Everything about one customer for the agent's screen, or None when unknown:
    profile, phones, addresses (primary first), tags, the ``last`` notes, calls and
    tickets (newest first; tickets with their linked calls and recordings)."""
    async with connection(db) as conn:
        c = await conn.fetchrow("SELECT customer_id, name, language, vip, created_at, updated_at"
                                " FROM customers WHERE customer_id = $1", customer_id)
        if c is None:
            return None
        phones = await conn.fetch("SELECT phone, label FROM customer_phones WHERE customer_id = $1 ORDER BY phone",
                                  customer_id)
        addresses = await conn.fetch(
            """SELECT address_id, label, line1, line2, postcode, city, country, region, is_primary
                 FROM customer_addresses WHERE customer_id = $1 ORDER BY is_primary DESC, address_id""",
            customer_id)
        tags = await conn.fetch("SELECT tag FROM customer_tags WHERE customer_id = $1 ORDER BY tag", customer_id)
        notes = await conn.fetch("SELECT note_id, at, author, body FROM customer_notes WHERE customer_id = $1"
                                 " ORDER BY at DESC, note_id DESC LIMIT $2", customer_id, last)
        calls = await conn.fetch(
            """SELECT l.call_id, l.linked_at, c.started_at, c.state, c.direction, c.caller_num, c.agent,
                      c.duration_s
                 FROM customer_calls l LEFT JOIN calls c USING (call_id)
                WHERE l.customer_id = $1
                ORDER BY coalesce(c.started_at, l.linked_at) DESC LIMIT $2""", customer_id, last)
        tickets = await conn.fetch(
            """SELECT t.ticket_id, t.type, t.state, t.title, t.engineer, t.created_at, t.due_at, t.closed_at,
                      coalesce((SELECT array_agg(call_id ORDER BY linked_at) FROM ticket_calls
                                 WHERE ticket_id = t.ticket_id), '{}') AS call_ids,
                      coalesce((SELECT array_agg(recording_id ORDER BY linked_at) FROM ticket_recordings
                                 WHERE ticket_id = t.ticket_id), '{}') AS recording_ids
                 FROM tickets t WHERE t.customer_id = $1
                ORDER BY t.created_at DESC, t.ticket_id DESC LIMIT $2""", customer_id, last)
    return {**dict(c), "phones": [dict(r) for r in phones], "addresses": [dict(r) for r in addresses],
            "tags": [r["tag"] for r in tags], "notes": [dict(r) for r in notes], "calls": [dict(r) for r in calls],
            "tickets": [dict(r) for r in tickets]}


# -- merges ------------------------------------------------------------------------


async def _snapshot(conn: asyncpg.Connection, row: asyncpg.Record) -> CustomerSnapshot:
    cid = row["customer_id"]
    phones = await conn.fetch("SELECT phone FROM customer_phones WHERE customer_id = $1 ORDER BY phone", cid)
    tags = await conn.fetch("SELECT tag FROM customer_tags WHERE customer_id = $1", cid)
    addresses = await conn.fetch(
        """SELECT address_id, label, line1, line2, postcode, city, country, region, is_primary
             FROM customer_addresses WHERE customer_id = $1 ORDER BY address_id""", cid)
    return CustomerSnapshot(
        customer_id=cid, name=row["name"], language=row["language"], vip=row["vip"],
        phones=tuple(r["phone"] for r in phones), tags=frozenset(r["tag"] for r in tags),
        addresses=tuple((a["address_id"], Address(line1=a["line1"], line2=a["line2"], postcode=a["postcode"],
                                                  city=a["city"], country=a["country"], region=a["region"],
                                                  label=a["label"]), a["is_primary"]) for a in addresses))


async def merge_customers(db: Db, keep_id: str, duplicate_id: str, *, actor: str) -> MergePlan:
    """Fold the duplicate into ``keep_id`` in one transaction: its phones, tags,
    addresses (unless the same place), notes, call links and tickets move; the
    duplicate is deleted and a ``customer_merges`` row records what moved.

    Returns: the plan carried out (``extra`` holds the counts moved).
    Raises: ``MergeRefused`` for the same customer twice or an unknown one.
    """
    if keep_id == duplicate_id:
        raise MergeRefused(f"cannot merge customer {keep_id!r} into itself")
    async with connection(db) as conn, conn.transaction():
        # Both rows locked, in id order (two merges of the same pair cannot deadlock).
        rows = {r["customer_id"]: r for r in await conn.fetch(
            """SELECT customer_id, name, language, vip FROM customers WHERE customer_id = ANY($1::text[])
                ORDER BY customer_id FOR UPDATE""", [keep_id, duplicate_id])}
        for cid in (keep_id, duplicate_id):
            if cid not in rows:
                raise MergeRefused(f"unknown customer {cid!r}")
        plan = plan_merge(await _snapshot(conn, rows[keep_id]), await _snapshot(conn, rows[duplicate_id]))
        await conn.execute("UPDATE customers SET name = $2, language = $3, vip = $4, updated_at = now()"
                           " WHERE customer_id = $1", keep_id, plan.name, plan.language, plan.vip)
        await conn.execute("UPDATE customer_phones SET customer_id = $1 WHERE customer_id = $2", keep_id, duplicate_id)
        await conn.executemany("INSERT INTO customer_tags (customer_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                               [(keep_id, t) for t in sorted(plan.tags)])
        await conn.execute(
            """UPDATE customer_addresses SET customer_id = $1, is_primary = is_primary AND NOT $3
                WHERE address_id = ANY($2::bigint[])""", keep_id, list(plan.addresses_moved), plan.demote_primary)
        notes = await conn.fetchval(
            "WITH m AS (UPDATE customer_notes SET customer_id = $1 WHERE customer_id = $2 RETURNING 1)"
            " SELECT count(*) FROM m", keep_id, duplicate_id)
        calls = await conn.fetchval(
            """WITH m AS (INSERT INTO customer_calls (customer_id, call_id, linked_at)
                          SELECT $1, call_id, linked_at FROM customer_calls WHERE customer_id = $2
                          ON CONFLICT DO NOTHING RETURNING 1)
               SELECT count(*) FROM m""", keep_id, duplicate_id)
        tickets = [r["ticket_id"] for r in await conn.fetch(
            "UPDATE tickets SET customer_id = $1, updated_at = now() WHERE customer_id = $2 RETURNING ticket_id",
            keep_id, duplicate_id)]
        plan = MergePlan(**{**{f: getattr(plan, f) for f in plan.__dataclass_fields__},
                            "extra": {"notes": notes, "calls": calls, "tickets": sorted(tickets)}})
        await conn.execute("INSERT INTO customer_merges (into_customer_id, from_customer_id, actor, moved)"
                           " VALUES ($1, $2, $3, $4::jsonb)", keep_id, duplicate_id, actor, json.dumps(plan.as_dict()))
        await conn.execute("DELETE FROM customers WHERE customer_id = $1", duplicate_id)
    return plan


# -- imports ----------------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated


async def import_customers(db: Db, rows: Iterable[tuple[int, dict[str, str | None]]], *, actor: str,
                           country_code: str | None = None, regions: frozenset[str] | None = None,
                           new_id: Callable[[], str] = lambda: f"C{uuid.uuid4().hex[:12]}",
                           dry_run: bool = False) -> ImportReport:
    """Validate ``rows`` (see ``crm.customer_model``), then create or update the valid
    ones in one transaction: name, language and VIP replaced; phones, tags added;
    the address becomes the primary one; the note appended. A row without a
    customer id updates the customer owning its numbers, or creates one (``new_id``).
    A row whose number belongs to another customer is rejected (numbers never
    change owner by import).

    Returns: the counts and the rejected rows, by line, in file order.
    """
    valid, rejected = validate_rows(rows, country_code=country_code, regions=regions)
    report = ImportReport(rejected=list(rejected))
    async with connection(db) as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            owners = {r["phone"]: r["customer_id"] for r in await conn.fetch(
                "SELECT phone, customer_id FROM customer_phones WHERE phone = ANY($1::text[])",
                [p for r in valid for p in r.phones])}
            accepted: list[tuple[str, CustomerRow]] = []
            for r in valid:
                # A row without an id is the customer already owning its numbers, if one does.
                found = sorted({owners[p] for p in r.phones if p in owners})
                if r.customer_id is None and len(found) > 1:
                    report.rejected.append(Rejected(r.line, f"phones: belong to customers {', '.join(map(repr, found))}"))
                    continue
                cid = r.customer_id or (found[0] if found else new_id())
                taken = next((p for p in r.phones if owners.get(p, cid) != cid), None)
                if taken is not None:
                    report.rejected.append(Rejected(r.line, f"phones: {taken} belongs to customer {owners[taken]!r}"))
                else:
                    accepted.append((cid, r))
            existing = {r["customer_id"] for r in await conn.fetch(
                "SELECT customer_id FROM customers WHERE customer_id = ANY($1::text[])", [c for c, _ in accepted])}
            await conn.executemany(
                """INSERT INTO customers (customer_id, name, language, vip) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, language = EXCLUDED.language,
                       vip = EXCLUDED.vip, updated_at = now()""",
                [(cid, r.name, r.language, r.vip) for cid, r in accepted])
            await conn.executemany(
                "INSERT INTO customer_phones (phone, customer_id) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING",
                [(p, cid) for cid, r in accepted for p in r.phones])
            await conn.executemany(
                "INSERT INTO customer_tags (customer_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [(cid, t) for cid, r in accepted for t in sorted(r.tags)])
            with_address = [(cid, r) for cid, r in accepted if r.address is not None]
            known: dict[str, list[tuple[int, Address]]] = {}
            for a in await conn.fetch(
                    """SELECT address_id, customer_id, line1, line2, postcode, city, country
                         FROM customer_addresses WHERE customer_id = ANY($1::text[])""",
                    [cid for cid, _ in with_address]):
                known.setdefault(a["customer_id"], []).append(
                    (a["address_id"], Address(line1=a["line1"], line2=a["line2"], postcode=a["postcode"],
                                              city=a["city"], country=a["country"])))
            for cid, r in with_address:
                assert r.address is not None
                same = next((aid for aid, a in known.get(cid, []) if a.key() == r.address.key()), None)
                await conn.execute("UPDATE customer_addresses SET is_primary = false"
                                   " WHERE customer_id = $1 AND is_primary", cid)
                if same is not None:
                    await conn.execute("UPDATE customer_addresses SET is_primary = true, region = $2"
                                       " WHERE address_id = $1", same, r.address.region)
                else:
                    a = r.address
                    await conn.execute(
                        """INSERT INTO customer_addresses (customer_id, line1, postcode, city, country, region,
                                                           is_primary) VALUES ($1, $2, $3, $4, $5, $6, true)""",
                        cid, a.line1, a.postcode, a.city, a.country, a.region)
            await conn.executemany("INSERT INTO customer_notes (customer_id, author, body) VALUES ($1, $2, $3)",
                                   [(cid, actor, r.note) for cid, r in accepted if r.note])
            # The products held (docs/knowledge.md): added like tags; the import's word wins over
            # what was only inferred (tickets, tags, feedback), never over the CRM's own.
            await conn.executemany(
                "INSERT INTO customer_products (customer_id, product, source) VALUES ($1, $2, 'import') "
                "ON CONFLICT (customer_id, product) DO UPDATE SET source = 'import' "
                "WHERE customer_products.source IN ('tag', 'ticket', 'feedback')",
                [(cid, p) for cid, r in accepted for p in r.products])
            report.created = sum(cid not in existing for cid, _ in accepted)
            report.updated = len(accepted) - report.created
        except BaseException:
            await tx.rollback()
            raise
        if dry_run:
            await tx.rollback()
        else:
            await tx.commit()
    report.rejected.sort(key=lambda r: r.line)
    return report


__all__ = ["BadImportFile", "ImportReport", "InvalidCustomer", "MergeRefused", "add_address", "add_note",
           "connection", "customer_view", "import_customers", "link_call", "merge_customers", "read_csv", "tag"]


# -- the agent's look-ups -------------------------------------------------------------


async def search_customers(db: Db, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Customers whose id or number is ``text`` (a number normalised to E.164 first),
    or whose name holds it (case-insensitive): exact matches first, then by name.
    Each: customer_id, name, vip, phones."""
    from crm.phones import normalise_e164

    text = text.strip()
    phone = normalise_e164(text)
    like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await db.fetch(
        """SELECT c.customer_id, c.name, c.vip,
                  coalesce((SELECT array_agg(phone ORDER BY phone) FROM customer_phones p
                             WHERE p.customer_id = c.customer_id), '{}') AS phones,
                  (c.customer_id = $1 OR EXISTS (SELECT 1 FROM customer_phones p
                                                  WHERE p.customer_id = c.customer_id AND p.phone = $2)) AS exact
             FROM customers c
            WHERE c.customer_id = $1 OR c.name ILIKE $3
               OR EXISTS (SELECT 1 FROM customer_phones p WHERE p.customer_id = c.customer_id AND p.phone = $2)
            ORDER BY exact DESC, c.name, c.customer_id LIMIT $4""", text, phone, like, limit)
    return [{"customer_id": r["customer_id"], "name": r["name"], "vip": r["vip"], "phones": list(r["phones"])}
            for r in rows]


async def customer_recordings(db: Db, customer_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Recordings of the customer's calls and of their tickets (not deleted), newest first."""
    rows = await db.fetch(
        """SELECT r.recording_id, r.call_id, r.started_at, r.duration_s::float8 AS duration_s, r.agent, r.state
             FROM recordings r
            WHERE r.state <> 'deleted'
              AND (r.call_id IN (SELECT call_id FROM customer_calls WHERE customer_id = $1)
                   OR r.recording_id::text IN (SELECT tr.recording_id FROM ticket_recordings tr
                                                 JOIN tickets t USING (ticket_id) WHERE t.customer_id = $1))
            ORDER BY r.started_at DESC, r.recording_id DESC LIMIT $2""", customer_id, limit)
    return [dict(r) for r in rows]
