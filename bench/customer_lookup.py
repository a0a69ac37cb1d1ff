"""Caller-ID lookup on a million customers: p50/p99 through ``crm.customer_lookup``, beside baselines.

Loads ``--customers`` customers (default 1,000,000; seeded; 30% have a second
number, so about 1.3 M numbers) into a scratch PostgreSQL database with COPY,
then looks up caller IDs one after the other on one connection, the way the
dialplan hook and the IVR do: ``normalise_e164`` (presentations vary: ``+49 30
...``, ``0049...``, ``030 ...``), then ``find_by_phone``. Half the caller IDs
are known, half unknown. Measured in the same run, on the same data:

- ours: the exact E.164 lookup through the primary key's index;
- baseline "no index": the same query with index scans switched off for the
  session (what the lookup costs without the normalised, indexed column);
- baseline "LIKE scan": normalising at query time instead of at write time,
  matching the caller's last 9 digits against every stored number stripped of
  non-digits (``regexp_replace(...) LIKE '%' || digits``), as one does when
  numbers are stored as typed.

The baselines scan the table for every lookup, so they run on a smaller sample
(``--baseline-lookups``). Each baseline's answers are checked against ours.
The scratch database is dropped at the end (also on error).

    .venv/bin/python bench/customer_lookup.py [--customers 1000000] [--lookups 20000]
                                              [--baseline-lookups 40] [--seed 7]

PostgreSQL: the server on 127.0.0.1:5432 (user postgres) when it answers, in a
throw-away database; else an embedded one in a temporary directory.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.harness import scratch_database  # noqa: E402
from cti.migrate import migrate  # noqa: E402
from crm.customer_lookup import find_by_phone  # noqa: E402
from crm.phones import normalise_e164  # noqa: E402

MOD = 10 ** 8            # 8 subscriber digits after the prefix
A, B = 7919 * 13, 12345  # affine bijection on [0, MOD): unique, scattered numbers


def landline(i: int) -> str:
    return f"+4930{(i * A + B) % MOD:08d}"


def mobile(i: int) -> str:
    return f"+49151{(i * A + B) % MOD:08d}"


def present(number: str, rng: random.Random) -> str:
    """The number as a caller ID might show it."""
    national = "0" + number[3:]
    return rng.choice([number, "00" + number[1:], national, f"{national[:3]} {national[3:]}",
                       f"+49 ({number[3:5]}) {number[5:]}"])


async def load(conn: asyncpg.Connection, n: int, rng: random.Random) -> int:
    """COPY n customers and their numbers, in chunks. Returns how many numbers."""
    chunk = 200_000
    phones = 0
    for start in range(0, n, chunk):
        ids = range(start, min(n, start + chunk))
        await conn.copy_records_to_table(
            "customers", columns=["customer_id", "name", "language", "vip"],
            records=[(f"C{i:07d}", f"Customer {i}", rng.choice(("de", "en", "fr")), i % 50 == 0) for i in ids])
        rows = [(landline(i), f"C{i:07d}") for i in ids]
        rows += [(mobile(i), f"C{i:07d}") for i in ids if i % 10 < 3]
        await conn.copy_records_to_table("customer_phones", columns=["phone", "customer_id"], records=rows)
        phones += len(rows)
    await conn.execute("VACUUM ANALYZE customers")
    await conn.execute("VACUUM ANALYZE customer_phones")
    return phones


def callers(n_customers: int, count: int, rng: random.Random) -> list[tuple[str, str | None]]:
    """(caller ID as presented, the customer it belongs to or None)."""
    out = []
    for _ in range(count):
        i = rng.randrange(n_customers)
        if rng.random() < 0.5:
            number, owner = (mobile(i), f"C{i:07d}") if i % 10 < 3 and rng.random() < 0.5 else (landline(i), f"C{i:07d}")
        else:
            number, owner = f"+4940{rng.randrange(MOD):08d}", None      # Hamburg: nobody's
        out.append((present(number, rng), owner))
    return out


async def measure(lookup: Callable[[str], Awaitable[str | None]], sample: list[tuple[str, str | None]]) -> list[float]:
    latencies = []
    gc.disable()
    try:
        for raw, owner in sample:
            t0 = time.perf_counter()
            found = await lookup(raw)
            latencies.append(time.perf_counter() - t0)
            if found != owner:
                raise AssertionError(f"{raw!r}: found {found!r}, expected {owner!r}")
    finally:
        gc.enable()
    return latencies


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=20_000)
    p.add_argument("--baseline-lookups", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    rng = random.Random(args.seed)
    results: list[tuple[str, list[float]]] = []
    async with scratch_database() as scratch:
        dsn = scratch.dsn
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            t0 = time.perf_counter()
            phones = await load(conn, args.customers, rng)
            load_s = time.perf_counter() - t0
            size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('customer_phones'))")

            def through(db: asyncpg.Connection) -> Callable[[str], Awaitable[str | None]]:
                async def lookup(raw: str) -> str | None:
                    number = normalise_e164(raw, "49")
                    found = await find_by_phone(db, number) if number else None
                    return found.customer_id if found else None
                return lookup

            ours = through(conn)

            async def like_scan(raw: str) -> str | None:
                digits = "".join(c for c in raw if c.isdigit())[-9:]
                return await conn.fetchval(
                    """SELECT c.customer_id FROM customer_phones p JOIN customers c USING (customer_id)
                        WHERE regexp_replace(p.phone, '[^0-9]', '', 'g') LIKE '%' || $1 LIMIT 1""", digits)

            await measure(ours, callers(args.customers, 2000, rng))                     # warm-up
            sample = callers(args.customers, args.lookups, rng)
            results.append(("crm.customer_lookup: normalise_e164 + find_by_phone (primary-key index)",
                            await measure(ours, sample)))
            small = callers(args.customers, args.baseline_lookups, rng)
            # A connection of its own: a plan cached on ours would keep using the index.
            plain = await asyncpg.connect(dsn, server_settings={
                "enable_indexscan": "off", "enable_bitmapscan": "off", "enable_indexonlyscan": "off"})
            try:
                results.append(("baseline: same query, index scans off (sequential scan)",
                                await measure(through(plain), small)))
            finally:
                await plain.close()
            results.append(("baseline: normalise at query time, LIKE on last 9 digits",
                            await measure(like_scan, small)))
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    print(f"{date.today()}: Python {platform.python_version()}, PostgreSQL {version}, {os.cpu_count()} CPUs; "
          f"{args.customers:,} customers, {phones:,} numbers (customer_phones {size}), loaded with COPY in "
          f"{load_s:.1f} s; seed {args.seed}; one connection, lookups one after the other, half of them unknown "
          f"numbers; every answer checked")
    print()
    print("| lookup | lookups | p50 | p99 | max | lookups/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, lat in results:
        print(f"| {name} | {len(lat):,} | {pct(lat, 0.5) * 1000:.3f} ms | {pct(lat, 0.99) * 1000:.3f} ms | "
              f"{max(lat) * 1000:.3f} ms | {len(lat) / sum(lat):,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
