"""Field engineers: who a ticket can be dispatched to, by region.

A minimal table (migration 0013): id, name, region, contact (where dispatch
notifications go: an e-mail address, a phone number, a URL; its meaning is the
sender's), active. ``check_dispatch`` is the pure rule a dispatch must pass;
the rest reads and writes the table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

import asyncpg

from crm.tickets import InvalidCommand, Ticket

Db = Union[asyncpg.Pool, asyncpg.Connection]

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Engineer:
    engineer_id: str
    name: str
    region: str
    contact: str
    active: bool


def validate(engineer_id: str, name: str, region: str, contact: str) -> None:
    """Raises ``InvalidCommand`` naming the first bad field."""
    if not ID.match(engineer_id or ""):
        raise InvalidCommand("engineer_id", "must be an id: letters, digits and _.:@+- (at most 64)")
    if not name or not name.strip() or len(name) > 200 or _CONTROL.search(name):
        raise InvalidCommand("name", "must be 1 to 200 characters without control characters")
    if not ID.match(region or ""):
        raise InvalidCommand("region", "must be a region name: letters, digits and _.:@+- (at most 64)")
    if len(contact) > 500 or _CONTROL.search(contact):
        raise InvalidCommand("contact", "must be at most 500 characters without control characters")


def check_dispatch(ticket: Ticket, engineer: Engineer | None, engineer_id: str) -> None:
    """A dispatch to ``engineer_id`` (``engineer``: its row, None when unknown) is
    refused unless the engineer exists, is active and works the ticket's region
    (a ticket without a region may go to anyone). Raises ``InvalidCommand`` (field ``engineer``)."""
    if engineer is None:
        raise InvalidCommand("engineer", f"unknown engineer {engineer_id!r}")
    if not engineer.active:
        raise InvalidCommand("engineer", f"engineer {engineer_id!r} is not active")
    if ticket.region is not None and engineer.region != ticket.region:
        raise InvalidCommand("engineer", f"engineer {engineer_id!r} works region {engineer.region!r}, the ticket"
                                         f" is in {ticket.region!r}")


def _engineer(r: asyncpg.Record) -> Engineer:
    return Engineer(r["engineer_id"], r["name"], r["region"], r["contact"], r["active"])


async def get(db: Db, engineer_id: str) -> Engineer | None:
    r = await db.fetchrow("SELECT engineer_id, name, region, contact, active FROM engineers WHERE engineer_id = $1",
                          engineer_id)
    return None if r is None else _engineer(r)


async def list_engineers(db: Db, *, region: str | None = None, active: bool | None = None) -> list[Engineer]:
    """Engineers, by region then id; filtered by region and by active when given."""
    rows = await db.fetch(
        """SELECT engineer_id, name, region, contact, active FROM engineers
            WHERE ($1::text IS NULL OR region = $1) AND ($2::boolean IS NULL OR active = $2)
            ORDER BY region, engineer_id""", region, active)
    return [_engineer(r) for r in rows]


async def save(db: Db, engineer_id: str, *, name: str, region: str, contact: str = "",
               active: bool = True) -> tuple[Engineer, bool]:
    """Create or replace an engineer. Returns it and whether it is new.
    Raises ``InvalidCommand`` naming a bad field."""
    validate(engineer_id, name, region, contact)
    r = await db.fetchrow(
        """INSERT INTO engineers (engineer_id, name, region, contact, active) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (engineer_id) DO UPDATE SET name = EXCLUDED.name, region = EXCLUDED.region,
               contact = EXCLUDED.contact, active = EXCLUDED.active, updated_at = now()
           RETURNING engineer_id, name, region, contact, active, (xmax = 0) AS created""",
        engineer_id, name.strip(), region, contact.strip(), active)
    return _engineer(r), r["created"]


def as_dict(e: Engineer) -> dict[str, Any]:
    return {"engineer_id": e.engineer_id, "name": e.name, "region": e.region, "contact": e.contact,
            "active": e.active}
