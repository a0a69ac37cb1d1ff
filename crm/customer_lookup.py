"""Customers for caller lookups: a few queries on numbers already normalised (``crm.phones``).

Numbers are stored in E.164 (``+`` then 2 to 15 digits, no leading 0 after
the +) in ``customer_phones``, one row per number, primary key = the number:
a lookup is one exact index probe. A caller ID is normalised the same way
before it is looked up, so ``0049 30 1234``, ``+49-30-1234`` and (with the
national prefix known) ``030 1234`` all match ``+49301234``.

A customer may also have an account number (unique; letters, digits, ``_ . -``,
at most 64), which a caller types in the IVR: ``find_by_account`` is also one
index probe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

import asyncpg

from crm.phones import normalise_e164
from cti.pg import is_pool

__all__ = ["ACCOUNT", "CustomerRecord", "find_by_account", "find_by_phone", "save_customer"]

Db = Union[asyncpg.Pool, asyncpg.Connection]

ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    customer_id: str
    name: str
    language: str | None
    vip: bool


async def find_by_phone(db: Db, phone: str) -> CustomerRecord | None:
    """The customer owning ``phone`` (already E.164), or None."""
    row = await db.fetchrow(
        """SELECT c.customer_id, c.name, c.language, c.vip
             FROM customer_phones p JOIN customers c USING (customer_id)
            WHERE p.phone = $1""", phone)
    return None if row is None else CustomerRecord(row["customer_id"], row["name"], row["language"], row["vip"])


async def find_by_account(db: Db, account: str) -> CustomerRecord | None:
    """The customer with account number ``account``, or None (also for a value
    that cannot be an account number)."""
    if not ACCOUNT.match(account):
        return None
    row = await db.fetchrow(
        "SELECT customer_id, name, language, vip FROM customers WHERE account_number = $1", account)
    return None if row is None else CustomerRecord(row["customer_id"], row["name"], row["language"], row["vip"])


async def save_customer(db: Db, customer_id: str, name: str, phones: Iterable[str], *,
                        language: str | None = None, vip: bool = False,
                        account_number: str | None = None) -> None:
    """Create or replace a customer and its numbers (each must be E.164).
    Raises ``ValueError`` for a number that is not, or an account number that
    cannot be one (``ACCOUNT``)."""
    numbers = list(phones)
    for n in numbers:
        if normalise_e164(n) != n:
            raise ValueError(f"{n!r} is not an E.164 number")
    if account_number is not None and not ACCOUNT.match(account_number):
        raise ValueError(f"{account_number!r} is not an account number (letters, digits, _ . -; at most 64)")
    conn_ctx = db.acquire() if is_pool(db) else None
    conn = await conn_ctx.__aenter__() if conn_ctx is not None else db
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO customers (customer_id, name, language, vip, account_number)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name,
                       language = EXCLUDED.language, vip = EXCLUDED.vip,
                       account_number = EXCLUDED.account_number, updated_at = now()""",
                customer_id, name, language, vip, account_number)
            await conn.execute("DELETE FROM customer_phones WHERE customer_id = $1", customer_id)
            await conn.executemany(
                """INSERT INTO customer_phones (phone, customer_id) VALUES ($1, $2)
                   ON CONFLICT (phone) DO UPDATE SET customer_id = EXCLUDED.customer_id""",
                [(n, customer_id) for n in numbers])
    finally:
        if conn_ctx is not None:
            await conn_ctx.__aexit__(None, None, None)
