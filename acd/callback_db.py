"""The ``callbacks`` table in PostgreSQL: callback requests and their states.

Writes run on one task, in order, each bounded by a timeout; a database that
is away delays them (they wait in a bounded queue, oldest dropped with a
warning past ``max_pending``), it never blocks routing.
"""
from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime, timezone
from typing import Any

import asyncpg
import structlog

from acd.callbacks import OPEN, Callback

log = structlog.get_logger(__name__)

_COLUMNS = ("callback_id", "number", "queue", "skills", "priority", "customer_id", "since", "requested_at",
            "status", "attempts", "not_before", "agent_id", "last_leg", "last_result")
_TIMES = {"since", "requested_at", "not_before"}


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def _row(cb: Callback) -> list[Any]:
    return [_utc(getattr(cb, c)) if c in _TIMES else getattr(cb, c) for c in _COLUMNS]


def _callback(rec: asyncpg.Record) -> Callback:
    values = {c: (rec[c].timestamp() if c in _TIMES and rec[c] is not None else rec[c]) for c in _COLUMNS}
    return Callback(**values)


_UPSERT = (
    f"INSERT INTO callbacks ({', '.join(_COLUMNS)}, updated_at) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}, now()) "
    "ON CONFLICT (callback_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:]) + ", updated_at = now()"
)


# The leader's changes since a time, for a standby's shadow (acd/shadow.py); the index of
# migration 0035 serves it.
CHANGED_SINCE = (f"SELECT {', '.join(_COLUMNS)}, updated_at FROM callbacks WHERE updated_at >= $1 "
                 "ORDER BY updated_at LIMIT 5000")


def callback_of(rec: Any) -> Callback:
    """A row of ``callbacks`` (``asyncpg.Record`` or a mapping) as a ``Callback``."""
    return _callback(rec)


async def load_open(pool: asyncpg.Pool, timeout: float = 10.0) -> list[Callback]:
    """Callback requests still to be carried out, oldest wait first."""
    async with pool.acquire(timeout=timeout) as conn:
        rows = await conn.fetch(f"SELECT {', '.join(_COLUMNS)} FROM callbacks WHERE status = ANY($1::text[]) "
                                "ORDER BY since", list(OPEN), timeout=timeout)
    return [_callback(r) for r in rows]


async def fetch_callback(dsn: str, callback_id: str) -> Callback | None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rec = await conn.fetchrow(f"SELECT {', '.join(_COLUMNS)} FROM callbacks WHERE callback_id = $1",
                                  callback_id, timeout=10)
    finally:
        await conn.close()
    return None if rec is None else _callback(rec)


class CallbackWriter:
    """Saves callback states in order on one task (the latest state wins)."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = 5.0, max_pending: int = 10_000) -> None:
        self.pool = pool
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: deque[Callback] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def save(self, cb: Callback) -> None:
        if len(self._pending) >= self.max_pending:
            lost = self._pending.popleft()
            self.dropped += 1
            log.warning("callback state not saved: too many pending", callback=lost.callback_id)
        self._pending.append(cb)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acd-callback-writer")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), flush_timeout)
        except asyncio.TimeoutError:
            log.warning("callback states not saved at stop", pending=len(self._pending))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            cb = self._pending[0]
            try:
                async with self.pool.acquire(timeout=self.timeout) as conn:
                    await conn.execute(_UPSERT, *_row(cb), timeout=self.timeout)
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failures += 1
                log.warning("callback state not saved yet", callback=cb.callback_id, error=str(exc))
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
                continue
            failures = 0
            self._pending.popleft()
            self.written += 1
