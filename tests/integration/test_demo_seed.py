"""`cti demo-seed` on a real PostgreSQL: the demo's logins (passwords printed once, working),
one agent login per simulated agent of acd/examples/demo.toml, customers with a ticket each,
and a second run that changes nothing."""
from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from acd.config import load_config
from api.auth import Passwords
from cti.migrate import migrate
from server.demo_seed import seed

DEMO_ACD = Path(__file__).resolve().parents[2] / "acd" / "examples" / "demo.toml"


async def test_demo_seed_makes_logins_for_the_demo_agents_and_customers_once(database):
    await migrate(database)
    conn = await asyncpg.connect(database)
    try:
        lines = await seed(conn)
        text = "\n".join(lines)
        users = {r["username"]: r for r in await conn.fetch("SELECT username, role, agent_id, password_hash FROM users")}
        assert users["admin"]["role"] == "admin" and users["super"]["role"] == "supervisor"
        demo_agents = {a.id for a in load_config(DEMO_ACD).agents}
        agents = {u["agent_id"] for u in users.values() if u["role"] == "agent"}
        assert agents and agents <= demo_agents          # every login is an agent the ACD knows
        password = re.search(r"agent1 +agent +password (\S+)", text).group(1)
        assert Passwords().verify(users["agent1"]["password_hash"], password)
        assert await conn.fetchval("SELECT count(*) FROM customers WHERE customer_id LIKE 'demo-%'") == 3
        assert await conn.fetchval("SELECT count(*) FROM tickets WHERE state = 'open'") == 3
        again = "\n".join(await seed(conn))
        assert "password unchanged" in again and password not in again
        assert await conn.fetchval("SELECT count(*) FROM tickets") == 3
    finally:
        await conn.close()
