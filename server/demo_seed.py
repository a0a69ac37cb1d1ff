"""`cti demo-seed` (DEMO ONLY, run by scripts/demo): the demo's users and customers.

Makes, when missing: an admin (``admin``), a supervisor of the floor (``super``), one agent
login per simulated agent of acd/examples/demo.toml (``agent1`` .. ``agent5``, each with that
agent id), the customers of ``cti.demo.DEMO_CUSTOMERS`` (who call now and then) with an open
ticket each. New passwords are random and printed once; an existing user keeps theirs.
"""
from __future__ import annotations

import secrets

from api import accounts
from api.auth import Passwords
from crm import ticket_store
from crm.customer_lookup import save_customer
from cti.demo import DEMO_CUSTOMERS

USERS = [("admin", "admin", None, "Demo Admin"), ("super", "supervisor", None, "Demo Supervisor")] + [
    (f"agent{n}", "agent", f"agent{n}", f"Agent {n}") for n in range(1, 6)]
TICKETS = ["repair", "installation", "missed_upload"]


async def seed(db) -> list[str]:
    """Create what is missing; the lines to print (with new passwords)."""
    lines = ["Logins (new passwords are shown this once):"]
    hasher = Passwords()
    for username, role, agent_id, display in USERS:
        if await db.fetchval("SELECT 1 FROM users WHERE username = $1", username):
            lines.append(f"  {username:8} {role:10} (exists: password unchanged)")
            continue
        password = secrets.token_urlsafe(9)
        await accounts.create_user(db, username=username, display_name=display, role=role,
                                   password_hash=hasher.hash(password), agent_id=agent_id,
                                   team="floor" if role != "admin" else None)
        lines.append(f"  {username:8} {role:10} password {password}"
                     + (f"  (agent id {agent_id})" if agent_id else ""))
    lines.append("Customers (they call now and then; each has an open ticket):")
    for n, (number, name, vip) in enumerate(DEMO_CUSTOMERS, 1):
        cid = f"demo-{n}"
        fresh = not await db.fetchval("SELECT 1 FROM customers WHERE customer_id = $1", cid)
        if fresh:
            await save_customer(db, cid, name, [number], vip=vip, language="en")
            await ticket_store.create_ticket(db, type=TICKETS[(n - 1) % len(TICKETS)], customer_id=cid,
                                             source="import", actor="demo", note="demo ticket")
        lines.append(f"  {cid:8} {name} {number}" + (" (VIP)" if vip else ""))
    return lines
