"""The dialplan's lookup hook under load: requests/s and latency percentiles.

A real aiohttp server with ``api.dialplan_hooks`` (and its asyncpg pool) on loopback, a
real PostgreSQL with ``--customers`` customers (one number each), and an
aiohttp client keeping ``--concurrency`` requests in flight for ``--seconds``;
numbers are drawn at random, half of them known.

    .venv/bin/python bench/hooks.py [--seconds 5] [--concurrency 16] [--customers 10000]

PostgreSQL: the server on 127.0.0.1:5432 (user postgres) when it answers, in a
throw-away database; else an embedded one in a temporary directory.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402

from api.dialplan_hooks import setup_hooks  # noqa: E402
from bench.harness import scratch_database  # noqa: E402
from cti.migrate import migrate  # noqa: E402
from cti.config import load_settings  # noqa: E402
from cti.daemon import CORE, Core  # noqa: E402
from cti.pg import close_pool, open_pool  # noqa: E402

SECRET = "bench-hook-secret"   # the hooks need one; the client sends it as the dialplan does


async def seed(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.copy_records_to_table("customers", records=[(f"C{i}", f"Customer {i}", "en", i % 10 == 0)
                                                           for i in range(n)],
                                     columns=["customer_id", "name", "language", "vip"])
    await conn.copy_records_to_table("customer_phones", records=[(f"+49301{i:07d}", f"C{i}") for i in range(n)],
                                     columns=["phone", "customer_id"])
    await conn.execute("ANALYZE")
    await conn.close()


async def load(url: str, seconds: float, concurrency: int, customers: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(1)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"X-CTI-Hook-Secret": SECRET}) as http:
        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                i = rng.randrange(customers * 2)            # half known, half unknown
                t0 = time.perf_counter()
                async with http.get(url, params={"number": f"+49301{i:07d}"}) as r:
                    body = await r.read()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200 or not body.startswith(b"ok,"):
                    errors += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--customers", type=int, default=10_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database() as scratch:
            dsn = scratch.dsn
            await migrate(dsn)
            await seed(dsn, args.customers)
            settings = load_settings(database_url=dsn, state_dir=tmp, log_level="warning", hook_secret=SECRET)
            app = web.Application()
            core = app[CORE] = Core(settings, dsn=dsn)
            core.pool = await open_pool(dsn)     # the daemon's shared pool (opened by its core there)
            setup_hooks(app, core)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            url = f"http://127.0.0.1:{port}/hooks/lookup"
            await load(url, 1.0, args.concurrency, args.customers)          # warm-up
            n, lat, errors = await load(url, args.seconds, args.concurrency, args.customers)
            await runner.cleanup()
            await close_pool(core.pool)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.customers} customers, "
          f"concurrency {args.concurrency}, {args.seconds:g} s")
    print("| requests | errors | requests/s | p50 | p99 | max |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {n} | {errors} | {n / args.seconds:,.0f} | {pct(lat, 0.5) * 1000:.2f} ms | "
          f"{pct(lat, 0.99) * 1000:.2f} ms | {max(lat) * 1000:.2f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
