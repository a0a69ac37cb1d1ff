"""Memory per unit: how much the daemon's RSS grows per connected desktop, waiting call,
configured agent, queue and open ticket (docs/sizing.md).

    scripts/run-isolated sizing .venv/bin/python bench/sizing.py [--desktops 500] [--waiting 100]
        [--agents 1000] [--queues 200] [--tickets 5000]

Four daemons on scratch databases, one after the other, each measured after its start-up
work (the report roll-up 30 s in) has settled:

- the base: 10 agents, nobody logged in (so callers wait), 3 queues. Its RSS, then with
  ``--desktops`` idle agent desktops connected (lean clients in 2 processes: each a user, a
  session, a WebSocket and an empty stream), then with ``--waiting`` callers waiting in a
  queue, then with ``--tickets`` open tickets in the database and the work lists read;
- 10 agents logged in and 3 queues; then the same with ``--agents`` more agents (logged in,
  available), and with ``--queues`` more queues.

Each figure is (RSS after - RSS before) / N: RSS, not the Python heap, so it includes what
the allocator keeps around the objects; N is large so that the noise of a few hundred KB
stays small per unit. A desktop's replay ring is empty here (idle desktops): the ring of a
busy one is ``ws_replay_max`` events at most, measured from a day's run
(``cti_ws_replay_bytes``) and added in docs/sizing.md.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DaemonProcess, scratch_database  # noqa: E402
from bench.load_callers import QUEUES  # noqa: E402
from bench.load_daemon import acd_toml, load_daemon_env  # noqa: E402
from bench.load_desktops import ClientProcesses, PASSWORD, login, make_sessions  # noqa: E402
from bench.load_figures import raise_fd_limit, rss_kb  # noqa: E402
from cti import sandbox  # noqa: E402
from cti.ami import AmiClient  # noqa: E402
from cti.demo import place_call  # noqa: E402

SETTLE_S = 50.0     # the daemon rolls up report history 30 s after it starts
BASE_AGENTS = 10


def routing(agents: int, extra_queues: int = 0, logged_in: bool = True) -> str:
    text = acd_toml(agents)
    if not logged_in:
        text = text.replace("auto_login = true", "auto_login = false")
    for i in range(extra_queues):
        text += (f'\n[[queues]]\nid = "extra{i}"\nrequirements = [{{ skill = "support", min_level = 1 }}]\n'
                 "ring_timeout_s = 15\nwrapup_s = 0\npreferred_agent_s = 0\n")
    return text


async def settled_rss(daemon: DaemonProcess, wait: float = 5.0, what: str = "") -> float:
    """The daemon's RSS in MB, the median of 5 reads ``wait`` s apart."""
    print(f"# {time.strftime('%H:%M:%S')} measuring {what}", file=sys.stderr, flush=True)
    reads = []
    for _ in range(5):
        await asyncio.sleep(wait)
        reads.append(rss_kb(daemon.pid)[0] / 1024)
    return sorted(reads)[2]


class Daemon:
    def __init__(self, routing_text: str) -> None:
        self.routing_text = routing_text

    async def __aenter__(self) -> "Daemon":
        self._scratch_cm = scratch_database(prefix="cti_sizing")
        self.scratch = await self._scratch_cm.__aenter__()
        self._tmp = tempfile.TemporaryDirectory(prefix="cti-sizing-")
        work = Path(self._tmp.name)
        (work / "acd.toml").write_text(self.routing_text)
        env = load_daemon_env(work, self.scratch.dsn, 0, acd_config=work / "acd.toml", log_level="warning")
        self.daemon = DaemonProcess(env, work / "daemon.log")
        t0 = time.monotonic()
        await self.daemon.start()
        await asyncio.sleep(max(0.0, t0 + SETTLE_S - time.monotonic()))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.daemon.stop()
        await self._scratch_cm.__aexit__(*exc)
        self._tmp.cleanup()


async def base_run(a: argparse.Namespace, http: aiohttp.ClientSession) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Daemon(routing(BASE_AGENTS, logged_in=False)) as d:
        rss0 = await settled_rss(d.daemon, what="the base")
        out["base_mb"] = round(rss0, 1)
        # Idle desktops.
        tokens = await make_sessions(d.scratch.dsn, a.desktops, prefix="size", role="agent", agents=True)
        procs = ClientProcesses(d.daemon.url.replace("http", "ws") + "/ws", tokens, 2)
        connected = await procs.connected()
        rss1 = await settled_rss(d.daemon, what="with the desktops")
        out["desktops"] = {"n": connected, "mb": round(rss1 - rss0, 1),
                           "kb_per_unit": round((rss1 - rss0) * 1024 / connected, 1)}
        # Waiting callers (nobody logged in: they all wait).
        ami = AmiClient("127.0.0.1", 5038, "cti-load", sandbox.secret(sandbox.LOAD))
        await ami.start()
        await ami.wait_connected(15)
        try:
            for i in range(a.waiting):
                await place_call(ami, caller_num=f"+4930{5_000_000 + i}", caller_name=f"Waiting {i}", patience=900,
                                 context="cti-demo-direct", variables={"CTI_QUEUE": QUEUES[i % 3]}, id_prefix="ld")
            deadline = time.monotonic() + 120
            waiting = 0.0
            while time.monotonic() < deadline:
                m = await d.daemon.metrics(http)
                waiting = sum(v for k, v in m.items() if k.startswith("cti_queue_waiting_calls"))
                if waiting >= a.waiting:
                    break
                await asyncio.sleep(1)
            rss2 = await settled_rss(d.daemon, what="with the waiting calls")
            out["waiting_calls"] = {"n": a.waiting, "seen_waiting": waiting, "mb": round(rss2 - rss1, 1),
                                    "kb_per_unit": round((rss2 - rss1) * 1024 / a.waiting, 1)}
            # Open tickets, and the work lists read.
            await make_tickets(d.scratch.dsn, a.tickets)
            token = await login_admin(d.scratch.dsn, http, d.daemon.url)
            for path in ("/api/tickets?state=open", "/api/tickets/overdue", "/api/tickets/callbacks") * 5:
                async with http.get(d.daemon.url + path, headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
            rss3 = await settled_rss(d.daemon, what="with the tickets")
            out["open_tickets"] = {"n": a.tickets, "mb": round(rss3 - rss2, 1),
                                   "kb_per_unit": round((rss3 - rss2) * 1024 / max(1, a.tickets), 3)}
            # The callers go before the next daemon starts on the same Asterisk.
            with contextlib.suppress(Exception):
                await ami.send("Hangup", {"Channel": "/^Local\\//"}, shape="single")
            await asyncio.sleep(5)
        finally:
            await ami.stop()
            await procs.results()
    return out


async def make_tickets(dsn: str, n: int) -> None:
    """``n`` open tickets of ``n // 10`` customers (through the store, audit rows and all)."""
    from crm.ticket_store import create_ticket

    conn = await asyncpg.connect(dsn)
    try:
        customers = max(1, n // 10)
        await conn.copy_records_to_table("customers", columns=["customer_id", "name"],
                                         records=[(f"size-{i}", f"Customer {i}") for i in range(customers)])
        for i in range(n):
            await create_ticket(conn, type="repair", customer_id=f"size-{i % customers}", source="manual",
                                actor="sizing")
    finally:
        await conn.close()


async def login_admin(dsn: str, http: aiohttp.ClientSession, base: str) -> str:
    from api import accounts
    from api.auth import Passwords

    conn = await asyncpg.connect(dsn)
    try:
        await accounts.create_user(conn, username="size-admin", display_name="Admin", role="admin",
                                   password_hash=Passwords().hash(PASSWORD))
    finally:
        await conn.close()
    return await login(http, base, "size-admin")


async def config_run(agents: int, extra_queues: int) -> float:
    async with Daemon(routing(agents, extra_queues)) as d:
        return await settled_rss(d.daemon, what=f"{agents} agents, {extra_queues} more queues")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--desktops", type=int, default=500)
    ap.add_argument("--waiting", type=int, default=100)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--queues", type=int, default=200)
    ap.add_argument("--tickets", type=int, default=5000)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    raise_fd_limit(a.desktops + 2000)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        out = await base_run(a, http)
    base = await config_run(BASE_AGENTS, 0)
    out["config_base_mb"] = round(base, 1)
    more_agents = await config_run(BASE_AGENTS + a.agents, 0)
    out["agents"] = {"n": a.agents, "mb": round(more_agents - base, 1),
                     "kb_per_unit": round((more_agents - base) * 1024 / a.agents, 1), "rss_mb": round(more_agents, 1)}
    more_queues = await config_run(BASE_AGENTS, a.queues)
    out["queues"] = {"n": a.queues, "mb": round(more_queues - base, 1),
                     "kb_per_unit": round((more_queues - base) * 1024 / a.queues, 1), "rss_mb": round(more_queues, 1)}
    text = json.dumps(out, indent=1)
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
