"""Interval reports on a year of calls for a 200-agent centre, beside baselines; and the
wallboard's feeding (incremental ledger vs reading today from the database).

Seeds a scratch PostgreSQL database (migrations applied) with ``--calls`` queued
calls (default 5,000,000) over the last 365 days in 10 queues, answered by 200
agents (each agent's calls one after another: no overlap), 10% abandoned; a
``call.agent_left`` event per answered call and the agent state log (on call,
wrap-up, available: three rows per answered call). Generated in SQL
(``generate_series``), so the seed takes minutes, not hours. Then times, each
on the same data in the same run:

1. one day at 15-minute intervals read from the calls (``acd.rollups.interval_counts``
   with no rollup): with migration 0011's indexes, and with them dropped (in a
   rolled-back transaction: the baseline);
2. 31 days at day intervals: from the calls, and from the 15-minute rollups;
3. a year at week intervals from the rollups (and the one-off cost of rolling the
   year up, as the daemon does a few minutes at a time);
4. the wallboard: a board from the ledger (a day of calls in memory, a few calls
   changed since the last push), beside reading today's calls from PostgreSQL for
   each refresh (the other way to feed it).

    .venv/bin/python bench/reports.py [--calls 5000000] [--repeat 3]

PostgreSQL: the server on 127.0.0.1:5432 (user postgres); the scratch database is
dropped at the end (also on error) unless ``--keep``. Where that server does not answer,
an embedded one in a temporary directory (removed at the end, ``--keep`` or not).
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from acd import reports, rollups  # noqa: E402
from acd.figures import StateChange, attach_wrapup, spans_from_changes  # noqa: E402
from acd.wallboard import AgentLive, board, parse_board_config  # noqa: E402
from bench.harness import scratch_database  # noqa: E402
from cti.migrate import migrate  # noqa: E402

AGENTS, QUEUES = 200, 10
UTC = timezone.utc

SEED = """
WITH g AS (
    SELECT i, i % {agents} AS a, (i / {agents}) AS k,
           $1::timestamptz + ((i / {agents}) * $2::double precision + (i % {agents}) * 3) * interval '1 second' AS slot,
           (hashint4(i) & 1023) AS h
    FROM generate_series(0, $3::int - 1) AS s(i)
)
INSERT INTO calls (call_id, state, direction, caller_num, started_at, queue, queue_joined_at, queue_left_at, agent,
                   agent_answered_at, answered_at, ended_at, abandoned)
SELECT 'c' || i, 'ended', 'inbound', '+4420' || lpad(i::text, 8, '0'), slot, 'q' || (h % {queues}), slot,
       slot + (h % 60) * interval '1 second',
       CASE WHEN h % 10 = 0 THEN NULL ELSE 'a' || a END,
       CASE WHEN h % 10 = 0 THEN NULL ELSE slot + (h % 60) * interval '1 second' END,
       slot,
       slot + ((h % 60) + CASE WHEN h % 10 = 0 THEN 0 ELSE 60 + h % 300 END) * interval '1 second',
       h % 10 = 0
FROM g
"""

EVENTS = """
INSERT INTO call_events (call_id, seq, at, kind, data)
SELECT call_id, 9, ended_at, 'call.agent_left', jsonb_build_object('agent', agent)
FROM calls WHERE agent IS NOT NULL
"""

STATES = """
INSERT INTO agent_states (agent_id, at, state, previous, reason)
SELECT agent, agent_answered_at, 'on_call', 'available', NULL FROM calls WHERE agent IS NOT NULL
UNION ALL
SELECT agent, ended_at, 'wrapup', 'on_call', NULL FROM calls WHERE agent IS NOT NULL
UNION ALL
SELECT agent, ended_at + (10 + (hashint4(length(call_id) + (extract(epoch FROM ended_at))::int) & 63)) * interval '1 second',
       'available', 'wrapup', NULL FROM calls WHERE agent IS NOT NULL
"""


async def seed(conn: asyncpg.Connection, n: int, start: datetime) -> float:
    spacing = 365 * 86_400 / (n / AGENTS)
    t0 = time.perf_counter()
    await conn.execute("INSERT INTO agents (agent_id, name, updated_at) SELECT 'a' || i, 'Agent ' || i, now() "
                       f"FROM generate_series(0, {AGENTS - 1}) i")
    await conn.execute("INSERT INTO agent_states (agent_id, at, state, previous, reason) "
                       "SELECT 'a' || i, $1::timestamptz - interval '1 day', 'available', 'logged_out', NULL "
                       f"FROM generate_series(0, {AGENTS - 1}) i", start)
    await conn.execute(SEED.format(agents=AGENTS, queues=QUEUES), start, spacing, n, timeout=3600)
    await conn.execute(EVENTS, timeout=3600)
    await conn.execute(STATES, timeout=3600)
    await conn.execute("VACUUM ANALYZE calls", timeout=3600)
    await conn.execute("VACUUM ANALYZE call_events", timeout=3600)
    await conn.execute("VACUUM ANALYZE agent_states", timeout=3600)
    return time.perf_counter() - t0


async def timed(fn, repeat: int) -> tuple[float, object]:
    out = None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = await fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


class Rollback(Exception):
    pass


async def without_indexes(conn: asyncpg.Connection, fn):
    """Run ``fn`` with migration 0011's report indexes dropped, then put everything back."""
    result = None
    try:
        async with conn.transaction():
            await conn.execute("DROP INDEX calls_queue_joined_at_idx")
            await conn.execute("DROP INDEX call_events_queue_moves_idx")
            result = await fn()
            raise Rollback
    except Rollback:
        pass
    return result


def ledger_board(rows: list[dict], events: list[dict], changes: list[StateChange], cfg, now: float,
                 day_start: float, changed: int) -> dict:
    """What the wallboard does per push: rebuild the calls that changed, then the board."""
    by_call: dict[str, list] = {}
    for e in events:
        by_call.setdefault(e["call_id"], []).append(e)
    built = {r["call_id"]: reports.build_queue_calls([r], by_call.get(r["call_id"], []), now=now) for r in rows}
    t0 = time.perf_counter()
    for r in rows[:changed]:
        built[r["call_id"]] = reports.build_queue_calls([r], by_call.get(r["call_id"], []), now=now)
    spans = spans_from_changes(changes)
    calls = attach_wrapup([c for cs in built.values() for c in cs], spans)
    agents = [AgentLive(f"a{i}", f"Agent {i}", "available", "", now - 10, None, None) for i in range(AGENTS)]
    snap = board(calls, agents, cfg, now=now, day_start=day_start, queues=[f"q{i}" for i in range(QUEUES)],
                 agent_spans=spans)
    snap["_s"] = time.perf_counter() - t0
    return snap


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=365)
    now = end.timestamp()
    async with scratch_database(prefix="cti_bench_reports", keep=args.keep) as scratch:
        dsn = scratch.dsn
        await migrate(dsn)
        conn = await asyncpg.connect(dsn, command_timeout=3600)
        seed_s = await seed(conn, args.calls, start)
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("calls", "call_events", "agent_states")}
        print(f"# {date.today()} {platform.node()} Python {platform.python_version()} "
              f"PostgreSQL {conn.get_server_version().major}; rows {counts}; seeded in {seed_s:.0f} s")
        cfg = parse_board_config({}, {f"q{i}": (20.0, 0.8) for i in range(QUEUES)})
        queues = [f"q{i}" for i in range(QUEUES)]
        day = (end - timedelta(days=100)).timestamp()

        async def one_day():
            return await rollups.interval_counts(conn, day, day + 86_400, cfg, queues, now=now)

        t_day, (qc, _, _, src) = await timed(one_day, args.repeat)
        t_day_noidx, (qc2, _, _, _) = await without_indexes(conn, lambda: timed(one_day, 1))
        assert qc == qc2 and src["raw"] == 96
        print(f"1 day, 15-min, from the calls: {t_day * 1000:.0f} ms with the indexes, "
              f"{t_day_noidx * 1000:.0f} ms without ({sum(k.arrived for k in qc.values())} calls)")

        month_lo = (end - timedelta(days=31)).timestamp()

        async def month():
            return await rollups.interval_counts(conn, month_lo, now, cfg, queues, now=now)

        t_month_raw, (raw_counts, _, _, src) = await timed(month, 1)
        assert src["rollup"] == 0
        t0 = time.perf_counter()
        done = await rollups.roll_up(conn, start.timestamp(), now, cfg, queues, now=now, settle_s=0)
        t_rollup = time.perf_counter() - t0
        t_month_rollup, (roll_counts, _, _, src) = await timed(month, args.repeat)
        assert src["raw"] == 0 and roll_counts == raw_counts, "rollups must give the very same counts"
        print(f"31 days, day intervals: {t_month_raw:.2f} s from the calls, {t_month_rollup * 1000:.0f} ms "
              f"from the rollups")

        async def year():
            return await rollups.interval_counts(conn, start.timestamp(), now, cfg, queues, now=now)

        t_year, (ycounts, _, _, src) = await timed(year, args.repeat)
        assert src["raw"] == 0

        async def year_agent():
            return await rollups.interval_counts(conn, start.timestamp(), now, cfg, queues, now=now, agents="a7")

        t_year_agent, (_, asec, _, _) = await timed(year_agent, args.repeat)
        print(f"365 days from the rollups: queues {t_year * 1000:.0f} ms ({len(ycounts)} queue-intervals), one agent "
              f"{t_year_agent * 1000:.0f} ms ({len(asec)} intervals); rolling the year up once: {t_rollup:.0f} s "
              f"({done} intervals)")

        # The wallboard: today = the busiest day of the seed (about calls/365 calls).
        b_lo = datetime.fromtimestamp(day, UTC)
        b_hi = datetime.fromtimestamp(day + 86_400, UTC)
        rows = [dict(r) for r in await conn.fetch("SELECT * FROM calls WHERE queue_joined_at >= $1 AND "
                                                  "queue_joined_at < $2", b_lo, b_hi)]
        events = [dict(e) for e in await reports.call_events(conn, [r["call_id"] for r in rows])]
        changes = await reports.state_changes(conn, b_lo, b_hi)
        bnow = day + 86_400 - 1
        times = [ledger_board(rows, events, changes, cfg, bnow, day, 10)["_s"] for _ in range(args.repeat)]

        async def from_db():
            calls = await reports.queue_calls(conn, b_lo, b_hi, now=b_hi)
            return board(calls, [], cfg, now=bnow, day_start=day, queues=queues)

        t_db, _ = await timed(from_db, args.repeat)
        print(f"wallboard, a day of {len(rows)} calls: {statistics.median(times) * 1000:.0f} ms per push from the "
              f"ledger (10 calls changed), {t_db * 1000:.0f} ms reading today from PostgreSQL")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
