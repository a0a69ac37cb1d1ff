"""Live lists kept in step in the background (docs/dialer.md, "Live lists"): the service
that runs ``dialer.live_store.sync_all`` every ``SYNC_S`` seconds and at once when kicked (a
ticket changed state through the API, a campaign was started, an agent recorded a result).

Kicks are coalesced: however many come while a pass runs, one more pass follows. A pass that
fails is logged and the next one tries again: the diff is idempotent, so a missed pass costs
only time. In an HA pair it runs on the leader only (``api.dialer_routes``); the dial-time
check (``dialer.live_store.OFF_LIST``) keeps a ticket that left its list from being called
between two passes, wherever the dial happens.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Callable

import asyncpg
import structlog

from dialer import live_store

log = structlog.get_logger(__name__)

#: Seconds between two reconciliations when nothing kicks one.
SYNC_S = 30.0


class LiveListSync:
    def __init__(self, pool: Callable[[], Any], *, interval: float = SYNC_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._pool = pool
        self.interval = interval
        self._clock = clock
        self._kicked = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.passes = 0
        self.added = 0
        self.withdrawn = 0

    def kick(self, *_: Any) -> None:
        """Sync soon (coalesced with other kicks). Takes and ignores any arguments, so it can be
        a hook of the ticket routes (``(ticket, audit entry)``)."""
        self._kicked.set()

    async def run_once(self) -> list[live_store.SyncReport]:
        pool = self._pool()
        if pool is None:
            return []
        reports = await live_store.sync_all(pool, self._clock())
        self.passes += 1
        self.added += sum(len(r.added) for r in reports)
        self.withdrawn += sum(len(r.withdrawn) for r in reports)
        return reports

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._kicked.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._kicked.clear()
            try:
                await self.run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("live lists sync pass failed", error=str(exc))
            except Exception:       # the loop outlives any one pass: the next one tries again
                log.exception("live lists sync pass failed")

    async def start(self, *_: Any) -> None:
        if self._task is None:
            self._kicked.set()          # a first pass at once
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="dialer-live-lists")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def health(self) -> dict:
        return {"running": self._task is not None, "passes": self.passes, "added": self.added,
                "withdrawn": self.withdrawn}
