"""The batching writer: the daemon never waits for the database.

``Writer.submit`` puts a row in a bounded in-memory buffer and returns; one
background task writes the buffer in batches, one transaction each, with
idempotent statements, so a batch that is written twice (its commit
acknowledgement lost) changes nothing.

A row is any ``cti.rows.Row``: it names its table and statement, gives its arguments,
and says whether it is a *snapshot* (it has a key: while rows wait, only the
latest snapshot of each key is kept, so an outage costs one buffered row per
call, not one per event) or is written once, in order (no key: a call's events,
an agent's state changes). The calls' rows are ``cti.call_db``'s; features bring
their own (the ACD's are in ``acd.rows``).

Why it is shaped like this:

- When PostgreSQL is unreachable (refused, lost, timed out: each batch is
  bounded by ``timeout``), the batch goes back to the front of the buffer, in
  order, and the writer retries with exponential backoff, reconnecting. Only
  two things lose rows, both loudly logged and counted: a full buffer (rows
  written once are dropped first, newest first; calls are what reports need),
  and a row PostgreSQL refuses for good (a data or constraint error), which is
  found by writing the batch's rows one by one and dropped alone.
- An error we cannot classify is treated as an outage (retried), never as a
  bad row: a missing table or a wrong password must not empty the buffer.
- The DSN may hold a password: it is kept as a ``SecretStr`` and scrubbed from
  every error message we log or expose.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import asyncpg
import structlog
from pydantic import SecretStr

from cti.call_db import CallEventRow, CallRow
from cti.pg import close_connection, describe_error, describe_target, scrub, secrets_of
from cti.rows import Row

if TYPE_CHECKING:
    from cti.config import Settings
    from cti.events import CallEvent

log = structlog.get_logger(__name__)


# Only these mean "this row is bad" (SQLSTATE classes 22, 23, 54); the client-side
# encoding errors of asyncpg are DataError too.
_ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
               asyncpg.ProgramLimitExceededError)

DROP_LOG_INTERVAL = 10.0        # seconds between two "buffer full" errors
OUTAGE_LOG_INTERVAL = 30.0      # seconds between two "still unavailable" errors
REJECT_LOG_INTERVAL = 1.0       # seconds between two "row rejected" errors


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What the health endpoint shows of the writer."""

    buffered: int        # rows waiting (in flight included)
    written: int         # rows written since start
    dropped: int         # rows refused at submit: the buffer was full
    rejected: int        # rows the database refused for good
    failures: int        # write attempts that failed (unreachable, lost, timed out)
    connected: bool      # the last attempt reached the database
    last_error: str | None


class Writer:
    """The background batching writer (see the module doc).

    ``submit`` from the event loop; ``await start()`` once; ``await stop()`` at shutdown.
    """

    def __init__(
        self,
        dsn: str | SecretStr,
        *,
        buffer_max: int = 100_000,
        batch_max: int = 500,
        timeout: float = 5.0,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timeout`` bounds each attempt (connect and write one batch), in seconds."""
        self._dsn = dsn if isinstance(dsn, SecretStr) else SecretStr(dsn)
        self._secrets = secrets_of(self._dsn.get_secret_value())
        self._target = describe_target(self._dsn.get_secret_value())
        self.buffer_max = buffer_max
        self.batch_max = batch_max
        self.timeout = timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._clock = clock
        # Pending rows: snapshots by (type, key) (latest wins, first position kept);
        # rows written once ("events": a call's events, an agent's state changes)
        # in submission order.
        self._snapshots: OrderedDict[tuple[type, str], Row] = OrderedDict()
        self._events: deque[Row] = deque()
        self._inflight: deque[tuple[Row, tuple[Any, ...]]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._abandoned = False
        self._conn: asyncpg.Connection | None = None
        # counters
        self._written = 0
        self._dropped = 0
        self._dropped_events = 0
        self._dropped_snapshots = 0   # logged as dropped_calls: calls' (and agents') snapshots
        self._rejected = 0
        self._failures = 0
        self._connected = False
        self._last_error: str | None = None
        # log throttles
        self._drops_unlogged = 0
        self._drop_logged_at = float("-inf")
        self._down_since: float | None = None
        self._outage_logged_at = float("-inf")
        self._reject_logged_at = float("-inf")
        self._rejects_unlogged = 0

    @classmethod
    def from_settings(cls, settings: Settings, dsn: str | SecretStr | None = None, **kwargs: Any) -> Writer:
        """A writer sized by the settings; ``dsn`` overrides ``settings.database_url``
        (the embedded server's DSN). Raises: ``ValueError`` with no DSN at all."""
        url = dsn if dsn is not None else settings.database_url
        if url is None:
            raise ValueError("no database URL: start the embedded server and pass its DSN")
        return cls(url, buffer_max=settings.db_buffer_max, batch_max=settings.db_batch_max, **kwargs)

    def __repr__(self) -> str:
        s = self.stats
        return (f"Writer(target={self._target!r}, buffered={s.buffered}, written={s.written}, "
                f"dropped={s.dropped}, connected={s.connected})")

    # -- the hot path ---------------------------------------------------------

    def submit(self, row: Row) -> None:
        """Queue ``row`` for writing. Never blocks, never raises for a full buffer
        (the row, or an older event, is dropped and counted). Raises ``TypeError``
        for something that is not a row."""
        if not isinstance(getattr(type(row), "statement", None), str):
            raise TypeError(f"not a row: {type(row).__name__}")
        key = row.key()
        if key is None:
            if self._size() >= self.buffer_max:
                self._drop(event=True)       # the newest event is this one
                return
            self._events.append(row)
        else:
            self._put_snapshot((type(row), key), row)
        self._wakeup.set()

    def on_call_event(self, event: CallEvent) -> None:
        """A ``cti.events.Bus`` subscriber: queue the call's snapshot and the event."""
        self.submit(CallRow.from_view(event.call))
        self.submit(CallEventRow.from_event(event))

    def _put_snapshot(self, key: tuple[type, str], row: Row) -> None:
        if key not in self._snapshots and self._size() >= self.buffer_max:
            if self._events:
                self._events.pop()           # make room: the newest event goes
                self._drop(event=True)
            else:
                self._drop(event=False)      # nothing but snapshots: refuse this one
                return
        self._snapshots[key] = row           # a newer snapshot keeps the older one's place

    def _size(self) -> int:
        return len(self._snapshots) + len(self._events)

    def _drop(self, *, event: bool) -> None:
        self._dropped += 1
        if event:
            self._dropped_events += 1
        else:
            self._dropped_snapshots += 1
        self._drops_unlogged += 1
        self._log_drops()

    def _log_drops(self, force: bool = False) -> None:
        if not self._drops_unlogged:
            return
        now = self._clock()
        if not force and now - self._drop_logged_at < DROP_LOG_INTERVAL:
            return
        log.error("store.buffer_full", dropped=self._drops_unlogged, dropped_total=self._dropped,
                  dropped_events=self._dropped_events, dropped_calls=self._dropped_snapshots,
                  buffer_max=self.buffer_max, connected=self._connected,
                  hint="PostgreSQL is unreachable or too slow: history is being lost")
        self._drop_logged_at = now
        self._drops_unlogged = 0

    # -- health ----------------------------------------------------------------

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            buffered=self._size() + len(self._inflight), written=self._written,
            dropped=self._dropped, rejected=self._rejected, failures=self._failures,
            connected=self._connected, last_error=self._last_error,
        )

    def pending(self, table: str) -> int:
        """Rows of ``table`` waiting (in flight included): a walk over the buffer, for
        a scrape, not the hot path."""
        return (sum(1 for row in self._snapshots.values() if row.table == table)
                + sum(1 for row in self._events if row.table == table)
                + sum(1 for row, _ in self._inflight if row.table == table))

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None:
            self._closing = self._abandoned = False
            self._task = asyncio.create_task(self._run(), name="cti.writer")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Write what is buffered for up to ``flush_timeout`` seconds, then stop.
        Rows still buffered then are lost and logged. Never raises."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            self._wakeup.set()
            try:
                await asyncio.wait({task}, timeout=flush_timeout)
            finally:
                # Until it is done: a cancellation racing a finishing wait can be
                # lost, and the loop also checks _abandoned at every turn.
                self._abandoned = True
                while not task.done():
                    task.cancel()
                    await asyncio.wait({task}, timeout=1.0)
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                log.error("store.writer_crashed", error=scrub(describe_error(exc), self._secrets))
        await self._disconnect()
        self._log_drops(force=True)
        left = self.stats.buffered
        if left:
            log.error("store.unflushed", rows=left, snapshots=len(self._snapshots), events=len(self._events),
                      last_error=self._last_error)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is buffered or in flight. Returns False on timeout."""
        deadline = self._clock() + timeout
        while self.stats.buffered:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # -- the background task -------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff_min
        while not self._abandoned:
            if not self._size():
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._take()
            try:
                reached = await self._write_inflight()
            except asyncio.CancelledError:
                self._requeue()
                raise
            except Exception as exc:     # unreachable, lost, timed out, or unknown: retry
                self._requeue()
                self._on_failure(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            if reached:
                self._on_success()
            delay = self.backoff_min
            self._log_drops()

    def _take(self) -> None:
        """Move up to ``batch_max`` rows to the in-flight queue. Snapshots first, but
        at least half a batch of events when events wait (neither starves)."""
        n = self.batch_max
        keyed = len(self._snapshots)
        if self._events:
            keyed = min(keyed, max(n // 2, n - len(self._events)))
        rows: list[Row] = []
        while len(rows) < min(keyed, n) and self._snapshots:
            rows.append(self._snapshots.popitem(last=False)[1])
        while len(rows) < n and self._events:
            rows.append(self._events.popleft())
        for row in rows:
            try:
                self._inflight.append((row, row.args()))
            except (TypeError, ValueError) as exc:
                self._reject(row, exc)

    def _requeue(self) -> None:
        """Put the in-flight rows back at the front, in their order; a newer
        snapshot of the same call submitted meanwhile wins."""
        while self._inflight:
            row, _ = self._inflight.pop()
            key = row.key()
            if key is None:
                self._events.appendleft(row)
                continue
            snap = (type(row), key)
            if snap not in self._snapshots:
                self._snapshots[snap] = row
            self._snapshots.move_to_end(snap, last=False)
        # A batch back in the buffer may overfill it: the newest events go.
        while self._size() > self.buffer_max and self._events:
            self._events.pop()
            self._drop(event=True)

    async def _write_inflight(self) -> bool:
        """Write the in-flight rows. Returns whether the database was reached
        (False when every row was refused before sending). Raises on an outage,
        leaving the rows not yet written in flight."""
        if not self._inflight:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await self._write(list(self._inflight))
        except _ROW_ERRORS:
            pass                                 # find the culprit(s): one row at a time
        else:
            self._written += len(self._inflight)
            self._inflight.clear()
            return True
        while self._inflight:
            row, args = self._inflight[0]
            try:
                async with asyncio.timeout(self.timeout):
                    await self._write([(row, args)])
            except _ROW_ERRORS as exc:
                self._reject(row, exc)
            else:
                self._written += 1
            self._inflight.popleft()
        return True

    async def _write(self, items: list[tuple[Row, tuple[Any, ...]]]) -> None:
        conn = await self._connection()
        by_statement: dict[str, list[tuple[Any, ...]]] = {}
        for row, args in items:
            by_statement.setdefault(row.statement, []).append(args)
        async with conn.transaction():
            for statement, args_list in by_statement.items():
                await conn.executemany(statement, args_list)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await asyncpg.connect(
                self._dsn.get_secret_value(), timeout=self.timeout,
                server_settings={"application_name": "cti-store-writer"},
            )
        return self._conn

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await close_connection(conn)

    def _on_failure(self, exc: BaseException, retry_in: float) -> None:
        self._failures += 1
        self._connected = False
        self._last_error = scrub(describe_error(exc), self._secrets)
        # The connection may be mid-query (a timeout) or dead: start afresh.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            log.error("store.unavailable", target=self._target, error=self._last_error,
                      buffered=self.stats.buffered, retry_in=round(retry_in, 3))
            self._outage_logged_at = now
        elif now - self._outage_logged_at >= OUTAGE_LOG_INTERVAL:
            log.error("store.still_unavailable", target=self._target, error=self._last_error,
                      buffered=self.stats.buffered, down_s=round(now - self._down_since, 1),
                      failures=self._failures)
            self._outage_logged_at = now

    def _on_success(self) -> None:
        if self._connected:
            return
        self._connected = True
        if self._down_since is not None:
            log.warning("store.recovered", target=self._target,
                        down_s=round(self._clock() - self._down_since, 1), buffered=self.stats.buffered)
            self._down_since = None
        else:
            log.info("store.connected", target=self._target)

    def _reject(self, row: Row, exc: BaseException) -> None:
        self._rejected += 1
        self._rejects_unlogged += 1
        now = self._clock()
        if now - self._reject_logged_at < REJECT_LOG_INTERVAL:
            return
        # Identify the row, never dump it: it holds caller data and free-form jsonb.
        log.error("store.row_rejected", table=row.table, **row.ident(), error=scrub(describe_error(exc), self._secrets),
                  rejected=self._rejects_unlogged, rejected_total=self._rejected)
        self._reject_logged_at = now
        self._rejects_unlogged = 0
