"""The ACD's start-up read of each agent's last stored state (acd.routing_shell._LAST_STATES,
docs/acd.md "Taking over after a restart"), beside a plain DISTINCT ON over each agent's whole
history (the baseline), on a temporary ``agent_states`` table of ``--rows`` changes for
``--agents`` agents.

    .venv/bin/python bench/resume_states.py [--rows 300000] [--agents 50] [--repeat 5]

PostgreSQL: ``--dsn`` (default the server on 127.0.0.1:5432, user postgres); the table is a
temporary one (gone with the session). Prints the median execution time of each (EXPLAIN ANALYZE).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from acd.routing_shell import _LAST_STATES  # noqa: E402

PLAIN = """
SELECT DISTINCT ON (agent_id) agent_id, at, state, reason FROM agent_states
WHERE agent_id = ANY($1::text[])
ORDER BY agent_id, at DESC,
    CASE state WHEN 'logged_out' THEN 0 WHEN 'not_ready' THEN 1 WHEN 'available' THEN 2 ELSE 3 END
"""


async def main(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.dsn)
    try:
        await conn.execute("""CREATE TEMP TABLE agent_states (agent_id text NOT NULL, at timestamptz NOT NULL,
            state text NOT NULL, previous text, reason text, PRIMARY KEY (agent_id, at, state))""")
        await conn.execute("""INSERT INTO agent_states SELECT 'a' || (i % $2), now() - make_interval(secs => i),
            (ARRAY['available','reserved','on_call','wrapup','not_ready'])[1 + i % 5], NULL, 'r'
            FROM generate_series(1, $1) i""", args.rows, args.agents)
        await conn.execute("ANALYZE agent_states")
        ids = [f"a{i}" for i in range(args.agents)]
        for name, sql in (("plain DISTINCT ON (baseline)", PLAIN), ("per-agent probe (_LAST_STATES)", _LAST_STATES)):
            times = []
            for _ in range(args.repeat):
                plan = [r[0] for r in await conn.fetch("EXPLAIN ANALYZE " + sql, ids)]
                times.append(float(plan[-1].split(":")[1].split()[0]))
            assert len(await conn.fetch(sql, ids)) == args.agents
            print(f"{name}: median {statistics.median(times):.2f} ms over {args.repeat} "
                  f"({args.rows} rows, {args.agents} agents)")
    finally:
        await conn.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(p.parse_args()))
