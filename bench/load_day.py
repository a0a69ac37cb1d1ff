"""The day-in-an-hour soak's extras (``bench/load.py --day``): what a mid-size center's day
has beside calls and desktops. Recordings of every answered call (``mode = "all"``),
callbacks asked for in the IVR (key 4), tickets filed by agents from their screen-pops,
and a webhook subscription delivering every ``call.ended`` to a receiver in this process.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.harness import free_port
from bench.load_desktops import PASSWORD, WsClient, login

RECORDING_TOML = 'mode = "all"\nretention_days = 1\n'
CUSTOMERS = 2000


def day_settings(workdir: Path) -> dict[str, Any]:
    """The daemon's extra ``CTI_*`` settings for a day: record every call, call back
    through the demo's answering callee, deliver webhooks to loopback."""
    (workdir / "recording.toml").write_text(RECORDING_TOML)
    root = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root"))
    spool = "/var/spool/asterisk/monitor/cti-load"
    return {"recording_config": workdir / "recording.toml", "recording_dir": spool,
            "recording_read_dir": f"{root}{spool}", "webhook_allow": "127.0.0.0/8",
            "acd_callback_dial": "Local/{number}@cti-demo-callee/n", "acd_callback_retry_s": 5}


@dataclass
class Receiver:
    """The webhook target: counts deliveries (every answer 204)."""

    port: int = field(default_factory=free_port)
    received: int = 0
    bytes: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, req: web.Request) -> web.Response:
        self.bytes += len(await req.read())
        self.received += 1
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Day:
    """Customers and an admin in the database, the webhook subscription, and agents
    filing a ticket for a share of their screen-pops."""

    def __init__(self, dsn: str, base: str, http: aiohttp.ClientSession, ticket_share: float = 0.1,
                 seed: int = 11) -> None:
        self.dsn, self.base, self.http = dsn, base, http
        self.ticket_share = ticket_share
        self.rng = random.Random(seed)
        self.receiver = Receiver()
        self.tickets = 0
        self.ticket_errors = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, agents: list[WsClient]) -> None:
        from api import accounts
        from api.auth import Passwords

        hashed = await asyncio.to_thread(lambda: Passwords().hash(PASSWORD))
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.copy_records_to_table("customers", columns=["customer_id", "name"],
                                             records=[(f"day-{i}", f"Customer {i}") for i in range(CUSTOMERS)])
            await accounts.create_user(conn, username="load-admin", display_name="Admin", role="admin",
                                       password_hash=hashed)
        finally:
            await conn.close()
        url = await self.receiver.start()
        token = await login(self.http, self.base, "load-admin")
        async with self.http.post(self.base + "/api/webhooks", json={"url": url, "events": ["call.ended"]},
                                  headers={"Authorization": f"Bearer {token}"}) as r:
            if r.status != 201:
                raise RuntimeError(f"webhook subscription: {r.status} {await r.text()}")
        self._task = asyncio.create_task(self._tickets(agents))

    async def _tickets(self, agents: list[WsClient]) -> None:
        seen = {c.name: len(c.pops) for c in agents}
        while True:
            await asyncio.sleep(1)
            for c in agents:
                new, seen[c.name] = c.pops[seen[c.name]:], len(c.pops)
                for p in new:
                    if p.phase == "offered" and self.rng.random() < self.ticket_share:
                        await self._file(c, p.call_id)

    async def _file(self, c: WsClient, call_id: str) -> None:
        body = {"type": "repair", "customer_id": f"day-{self.rng.randrange(CUSTOMERS)}", "call_id": call_id}
        try:
            async with self.http.post(self.base + "/api/tickets", json=body,
                                      headers={"Authorization": f"Bearer {c.token}"}) as r:
                if r.status == 201:
                    self.tickets += 1
                else:
                    self.ticket_errors += 1
        except (aiohttp.ClientError, OSError):
            self.ticket_errors += 1

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.receiver.stop()
        conn = await asyncpg.connect(self.dsn)
        try:
            recordings = await conn.fetchval("SELECT count(*) FROM recordings")
            callbacks = dict(await conn.fetch("SELECT status, count(*) FROM callbacks GROUP BY status"))
            open_tickets = await conn.fetchval("SELECT count(*) FROM tickets WHERE state = 'open'")
        finally:
            await conn.close()
        return {"tickets_filed": self.tickets, "ticket_errors": self.ticket_errors, "open_tickets": open_tickets,
                "recordings": recordings, "callbacks": {k: v for k, v in callbacks.items()},
                "webhooks_received": self.receiver.received, "webhook_bytes": self.receiver.bytes}
