"""PostgreSQL: the rows the daemon writes, migrations, the batching writer, a few queries.

The daemon never waits for the database. ``Writer.submit`` puts a row in a
bounded in-memory buffer and returns; one background task writes the buffer in
batches, one transaction each, with idempotent upserts, so a batch that is
written twice (its commit acknowledgement lost) changes nothing.

Why it is shaped like this:

- A call is stored as a *snapshot* (``CallRow``) upserted by its id. While rows
  wait, only the latest snapshot of each call is kept, so an outage costs one
  buffered row per call, not one per event. The upsert never un-ends an ended
  call, never replaces a real end by an estimated one, and never sets a known
  value back to NULL (a snapshot rebuilt after a reconnect may know less).
- When PostgreSQL is unreachable (refused, lost, timed out: each batch is
  bounded by ``timeout``), the batch goes back to the front of the buffer, in
  order, and the writer retries with exponential backoff, reconnecting. Only
  two things lose rows, both loudly logged and counted: a full buffer (call
  events are dropped first, newest first; calls are what reports need), and a
  row PostgreSQL refuses for good (a data or constraint error), which is found
  by writing the batch's rows one by one and dropped alone.
- An error we cannot classify is treated as an outage (retried), never as a
  bad row: a missing table or a wrong password must not empty the buffer.
- The DSN may hold a password: it is kept as a ``SecretStr`` and scrubbed from
  every error message we log or expose.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import structlog
from pydantic import SecretStr

from cti.errors import DatabaseUnavailable, StoreError

if TYPE_CHECKING:
    from cti.config import Settings
    from cti.events import CallEvent, CallView

log = structlog.get_logger(__name__)

CALL_STATES = frozenset({"ringing", "ivr", "queued", "offered", "talking", "held", "transferred", "ended"})

Db = Union[asyncpg.Pool, asyncpg.Connection]


# -- rows ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRow:
    """A full snapshot of one call; the latest one written wins (see the module doc).

    Timestamps are timezone-aware (naive ones are taken as UTC by asyncpg).
    ``state`` is one of ``CALL_STATES``; anything else is refused by the database.
    """

    call_id: str                     # the Asterisk Linkedid
    state: str
    direction: str
    caller_num: str | None = None
    caller_name: str | None = None
    exten: str | None = None         # the dialled number
    started_at: datetime
    answered_at: datetime | None = None
    queue: str | None = None
    queue_joined_at: datetime | None = None
    queue_left_at: datetime | None = None
    agent: str | None = None
    agent_answered_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    abandoned: bool = False          # the caller hung up while queued
    end_estimated: bool = False      # closed after vanishing while the daemon was away
    legs: int = 1                    # channels seen

    @classmethod
    def from_view(cls, view: CallView) -> CallRow:
        """The row for a ``cti.events.CallView`` (epoch seconds become UTC datetimes)."""
        return cls(
            call_id=view.call_id, state=view.state, direction=view.direction,
            caller_num=view.caller_num, caller_name=view.caller_name, exten=view.exten,
            started_at=_utc(view.started_at), answered_at=_utc_or_none(view.answered_at),
            queue=view.queue, queue_joined_at=_utc_or_none(view.queue_joined_at),
            queue_left_at=_utc_or_none(view.queue_left_at), agent=view.agent,
            agent_answered_at=_utc_or_none(view.agent_answered_at),
            ended_at=_utc_or_none(view.ended_at), hangup_cause=view.hangup_cause,
            hangup_cause_txt=view.hangup_cause_txt, abandoned=view.abandoned,
            end_estimated=view.end_estimated, legs=view.legs,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEventRow:
    """One domain event of a call; written once per (call_id, seq)."""

    call_id: str
    seq: int                         # per call, from 1
    at: datetime
    kind: str                        # e.g. 'call.started'
    data: dict[str, Any] = field(default_factory=dict)   # stored as jsonb

    @classmethod
    def from_event(cls, event: CallEvent) -> CallEventRow:
        """Any event, as its public form (``kind`` and ``data``, as WebSocket and webhook
        JSON give them); ``CallEvent.from_record`` turns a row back into the event."""
        return cls(call_id=event.call_id, seq=event.seq, at=_utc(event.at), kind=event.kind,
                   data=dict(event.data))


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRow:
    """An agent (a stable id apart from the device they sit at); a newer ``updated_at`` wins."""

    agent_id: str
    name: str
    device: str | None = None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateRow:
    """One change of an agent's state (the agent state log, for reports); written once."""

    agent_id: str
    at: datetime
    state: str                       # logged_out, available, reserved, on_call, wrapup, not_ready
    previous: str | None = None
    reason: str | None = None        # not-ready reason code, or why the router changed it


Row = Union[CallRow, CallEventRow, AgentRow, AgentStateRow]
# Rows written once, in order (never coalesced).
_APPEND_ONLY = (CallEventRow, AgentStateRow)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _utc_or_none(ts: float | None) -> datetime | None:
    return None if ts is None else _utc(ts)


# -- SQL ---------------------------------------------------------------------

_CALL_COLUMNS = (
    "call_id", "state", "direction", "caller_num", "caller_name", "exten", "started_at",
    "answered_at", "queue", "queue_joined_at", "queue_left_at", "agent", "agent_answered_at",
    "ended_at", "hangup_cause", "hangup_cause_txt", "abandoned", "end_estimated", "legs",
)
_KEEP_KNOWN = ("caller_num", "caller_name", "exten", "queue", "queue_joined_at",
               "queue_left_at", "agent", "ended_at", "hangup_cause", "hangup_cause_txt")

_SEP = ",\n    "
# The WHERE clause keeps an ended call ended: a later non-ended snapshot (or an
# estimated end over a real one) leaves the stored row as it is. A call is answered
# once: the stored answer stays. So does the stored agent's answer while the agent
# is the same (a restarted daemon only estimates both; a new agent is a new answer).
_UPSERT_CALL = f"""
INSERT INTO calls AS c ({", ".join(_CALL_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_CALL_COLUMNS) + 1))})
ON CONFLICT (call_id) DO UPDATE SET
    state = EXCLUDED.state,
    direction = EXCLUDED.direction,
    started_at = LEAST(c.started_at, EXCLUDED.started_at),
    {_SEP.join(f"{col} = COALESCE(EXCLUDED.{col}, c.{col})" for col in _KEEP_KNOWN)},
    answered_at = COALESCE(c.answered_at, EXCLUDED.answered_at),
    agent_answered_at = CASE WHEN EXCLUDED.agent IS NOT NULL AND EXCLUDED.agent IS DISTINCT FROM c.agent
                             THEN EXCLUDED.agent_answered_at
                             ELSE COALESCE(c.agent_answered_at, EXCLUDED.agent_answered_at) END,
    abandoned = EXCLUDED.abandoned OR c.abandoned,
    end_estimated = EXCLUDED.end_estimated,
    legs = GREATEST(EXCLUDED.legs, c.legs),
    updated_at = now()
WHERE c.state <> 'ended'
   OR (EXCLUDED.state = 'ended' AND (c.end_estimated OR NOT EXCLUDED.end_estimated))
"""

_INSERT_EVENT = """
INSERT INTO call_events (call_id, seq, at, kind, data) VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (call_id, seq) DO NOTHING
"""

_UPSERT_AGENT = """
INSERT INTO agents AS a (agent_id, name, device, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (agent_id) DO UPDATE SET
    name = EXCLUDED.name, device = EXCLUDED.device, updated_at = EXCLUDED.updated_at
WHERE a.updated_at <= EXCLUDED.updated_at
"""

_INSERT_AGENT_STATE = """
INSERT INTO agent_states (agent_id, at, state, previous, reason) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (agent_id, at, state) DO NOTHING
"""

_STATEMENTS = {CallRow: _UPSERT_CALL, CallEventRow: _INSERT_EVENT, AgentRow: _UPSERT_AGENT,
               AgentStateRow: _INSERT_AGENT_STATE}


def _encode(row: Row) -> tuple[Any, ...]:
    """The statement arguments for ``row``. Raises TypeError/ValueError for data
    that cannot be encoded (the row is then refused alone)."""
    if isinstance(row, CallRow):
        return tuple(getattr(row, col) for col in _CALL_COLUMNS)
    if isinstance(row, CallEventRow):
        # default=str: a datetime or a Path in event data is kept, not refused.
        data = json.dumps(row.data, default=str, allow_nan=False)
        return (row.call_id, row.seq, row.at, row.kind, data)
    if isinstance(row, AgentStateRow):
        return (row.agent_id, row.at, row.state, row.previous, row.reason)
    return (row.agent_id, row.name, row.device, row.updated_at)


# -- migrations ----------------------------------------------------------------

# pg_advisory_lock key: any constant shared by every process migrating this schema.
_MIGRATION_LOCK_KEY = 0x6374_695F_6D69_67   # "cti_mig"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[str, str]]:
    """The migrations shipped in ``cti/migrations``, in order.

    Returns: ``(version, sql)`` pairs, version being the file's 4-digit prefix.
    Raises: ``StoreError`` for a misnamed file or a repeated version.
    """
    found: dict[str, str] = {}
    for entry in (importlib.resources.files("cti") / "migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _MIGRATION_NAME.match(entry.name)
        if m is None:
            raise StoreError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        if m.group(1) in found:
            raise StoreError(f"two migrations have version {m.group(1)}")
        found[m.group(1)] = entry.read_text(encoding="utf-8")
    return sorted(found.items())


async def migrate(conn_or_dsn: Db | str | SecretStr, *, lock_timeout: float = 60.0,
                  connect_timeout: float = 10.0) -> list[str]:
    """Apply the migrations not applied yet, each in its own transaction.

    Safe to run from several processes at once: they take turns on an advisory lock.
    Returns: the versions applied now (empty when the schema was up to date).
    Raises: ``StoreError`` when a migration fails (it is rolled back);
    ``DatabaseUnavailable`` when a DSN cannot be connected to, or the lock is not
    obtained within ``lock_timeout`` seconds.
    """
    if isinstance(conn_or_dsn, (str, SecretStr)):
        dsn = conn_or_dsn.get_secret_value() if isinstance(conn_or_dsn, SecretStr) else conn_or_dsn
        try:
            conn = await asyncpg.connect(dsn, timeout=connect_timeout)
        except Exception as exc:
            raise DatabaseUnavailable(_scrub(_describe(exc), _secrets_of(dsn))) from None
        try:
            return await _migrate(conn, lock_timeout)
        finally:
            await _close(conn)
    if isinstance(conn_or_dsn, asyncpg.Pool):
        async with conn_or_dsn.acquire() as conn:
            return await _migrate(conn, lock_timeout)
    return await _migrate(conn_or_dsn, lock_timeout)


async def _migrate(conn: Any, lock_timeout: float) -> list[str]:
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY, timeout=lock_timeout)
    except TimeoutError:
        raise DatabaseUnavailable(f"another process held the migration lock for {lock_timeout:g}s") from None
    applied: list[str] = []
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            except asyncpg.PostgresError as exc:
                raise StoreError(f"migration {version} failed: {_describe(exc)}") from None
            log.info("store.migrated", version=version)
            applied.append(version)
    finally:
        # Closing the session releases the lock too; never hide the real error.
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY, timeout=5)
    return applied


# -- queries ---------------------------------------------------------------------


async def open_calls(pool: Db) -> list[str]:
    """The ids of the calls the database holds as open (``ended_at IS NULL``), oldest first."""
    rows = await pool.fetch("SELECT call_id FROM calls WHERE ended_at IS NULL ORDER BY started_at")
    return [r["call_id"] for r in rows]


async def close_calls(pool: Db, call_ids: Iterable[str], ended_at: datetime, reason: str) -> list[str]:
    """End the calls among ``call_ids`` still open: state 'ended', ``end_estimated``,
    ``hangup_cause_txt = reason`` (an end is never before the start).

    Returns: the ids of the calls closed now.
    """
    rows = await pool.fetch(
        """UPDATE calls SET state = 'ended', ended_at = GREATEST(started_at, $2),
               end_estimated = true, hangup_cause_txt = $3, updated_at = now()
           WHERE call_id = ANY($1::text[]) AND ended_at IS NULL
           RETURNING call_id""",
        list(call_ids), ended_at, reason,
    )
    return [r["call_id"] for r in rows]


async def fetch_call(pool: Db, call_id: str) -> dict[str, Any] | None:
    """The stored call (every column, durations included), or None."""
    row = await pool.fetchrow("SELECT * FROM calls WHERE call_id = $1", call_id)
    return None if row is None else dict(row)


# -- the writer ---------------------------------------------------------------------

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
        self._secrets = _secrets_of(self._dsn.get_secret_value())
        self._target = _describe_target(self._dsn.get_secret_value())
        self.buffer_max = buffer_max
        self.batch_max = batch_max
        self.timeout = timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._clock = clock
        # Pending rows: snapshots keyed (one per call/agent, latest wins, first
        # position kept), events in submission order.
        self._calls: OrderedDict[str, CallRow] = OrderedDict()
        self._agents: OrderedDict[str, AgentRow] = OrderedDict()
        self._events: deque[CallEventRow | AgentStateRow] = deque()
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
        self._dropped_calls = 0
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
        if isinstance(row, _APPEND_ONLY):
            if self._size() >= self.buffer_max:
                self._drop(event=True)       # the newest event is this one
                return
            self._events.append(row)
        elif isinstance(row, CallRow):
            self._put_keyed(self._calls, row.call_id, row)
        elif isinstance(row, AgentRow):
            self._put_keyed(self._agents, row.agent_id, row)
        else:
            raise TypeError(f"not a row: {type(row).__name__}")
        self._wakeup.set()

    def on_call_event(self, event: CallEvent) -> None:
        """A ``cti.events.Bus`` subscriber: queue the call's snapshot and the event."""
        self.submit(CallRow.from_view(event.call))
        self.submit(CallEventRow.from_event(event))

    def _put_keyed(self, pending: OrderedDict[str, Any], key: str, row: Row) -> None:
        if key not in pending and self._size() >= self.buffer_max:
            if self._events:
                self._events.pop()           # make room: the newest event goes
                self._drop(event=True)
            else:
                self._drop(event=False)      # nothing but snapshots: refuse this one
                return
        pending[key] = row                   # a newer snapshot keeps the older one's place

    def _size(self) -> int:
        return len(self._calls) + len(self._agents) + len(self._events)

    def _drop(self, *, event: bool) -> None:
        self._dropped += 1
        if event:
            self._dropped_events += 1
        else:
            self._dropped_calls += 1
        self._drops_unlogged += 1
        self._log_drops()

    def _log_drops(self, force: bool = False) -> None:
        if not self._drops_unlogged:
            return
        now = self._clock()
        if not force and now - self._drop_logged_at < DROP_LOG_INTERVAL:
            return
        log.error("store.buffer_full", dropped=self._drops_unlogged, dropped_total=self._dropped,
                  dropped_events=self._dropped_events, dropped_calls=self._dropped_calls,
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

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None:
            self._closing = self._abandoned = False
            self._task = asyncio.create_task(self._run(), name="cti.store.writer")

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
                log.error("store.writer_crashed", error=_scrub(_describe(exc), self._secrets))
        await self._disconnect()
        self._log_drops(force=True)
        left = self.stats.buffered
        if left:
            log.error("store.unflushed", rows=left, calls=len(self._calls), events=len(self._events),
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
        keyed = len(self._calls) + len(self._agents)
        if self._events:
            keyed = min(keyed, max(n // 2, n - len(self._events)))
        rows: list[Row] = []
        while len(rows) < min(keyed, n) and self._calls:
            rows.append(self._calls.popitem(last=False)[1])
        while len(rows) < min(keyed, n) and self._agents:
            rows.append(self._agents.popitem(last=False)[1])
        while len(rows) < n and self._events:
            rows.append(self._events.popleft())
        for row in rows:
            try:
                self._inflight.append((row, _encode(row)))
            except (TypeError, ValueError) as exc:
                self._reject(row, exc)

    def _requeue(self) -> None:
        """Put the in-flight rows back at the front, in their order; a newer
        snapshot of the same call submitted meanwhile wins."""
        while self._inflight:
            row, _ = self._inflight.pop()
            if isinstance(row, _APPEND_ONLY):
                self._events.appendleft(row)
                continue
            pending: OrderedDict[str, Any]
            pending, key = ((self._calls, row.call_id) if isinstance(row, CallRow)
                            else (self._agents, row.agent_id))
            if key not in pending:
                pending[key] = row
            pending.move_to_end(key, last=False)
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
        by_kind: dict[type, list[tuple[Any, ...]]] = {}
        for row, args in items:
            by_kind.setdefault(type(row), []).append(args)
        async with conn.transaction():
            for kind, args_list in by_kind.items():
                await conn.executemany(_STATEMENTS[kind], args_list)

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
            await _close(conn)

    def _on_failure(self, exc: BaseException, retry_in: float) -> None:
        self._failures += 1
        self._connected = False
        self._last_error = _scrub(_describe(exc), self._secrets)
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
        ident: dict[str, Any] = {"table": _TABLES[type(row)]}
        if isinstance(row, CallRow):
            ident["call_id"] = row.call_id
        elif isinstance(row, CallEventRow):
            ident.update(call_id=row.call_id, seq=row.seq, kind=row.kind)
        else:
            ident["agent_id"] = row.agent_id
        log.error("store.row_rejected", **ident, error=_scrub(_describe(exc), self._secrets),
                  rejected=self._rejects_unlogged, rejected_total=self._rejected)
        self._reject_logged_at = now
        self._rejects_unlogged = 0


_TABLES = {CallRow: "calls", CallEventRow: "call_events", AgentRow: "agents", AgentStateRow: "agent_states"}


# -- helpers -------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """Class and message; for a server error, its first line only (a DETAIL may quote the row)."""
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__} [{exc.sqlstate}]: {exc.args[0] if exc.args else ''}".strip()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _secrets_of(dsn: str) -> list[str]:
    """The strings of ``dsn`` that must never be shown: itself and its password(s)."""
    found = {dsn}
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found |= {parts.password, unquote(parts.password)}
        for value in parse_qs(parts.query).get("password", []):
            found.add(value)
    except ValueError:
        pass
    return sorted((s for s in found if s), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "**********")
    return text


def _describe_target(dsn: str) -> str:
    """host:port/database of a DSN, for logs (no user, no password)."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or parse_qs(parts.query).get("host", ["(default)"])[0]
        port = parts.port or parse_qs(parts.query).get("port", [""])[0]
    except ValueError:
        return "(unparsable DSN)"
    return f"{host}{':' + str(port) if port else ''}{parts.path or '/'}"


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=2.0)
    except Exception:
        conn.terminate()


async def keep_session(conn: "asyncpg.Connection") -> None:
    """A pool's ``reset`` (``create_pool(reset=keep_session)``): nothing beyond what asyncpg
    always does on release (an open transaction is rolled back, listeners dropped).

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` at every release: one more round trip and statement per query on a
    pool, the largest single cost of the daemon's database traffic under load
    (bench/load.py). Our pooled connections keep no session state to undo: no
    ``SET`` (only ``SET LOCAL``), no ``LISTEN``, no session advisory lock (the
    migration lock is taken on a connection of its own), no cursor outside a
    transaction. Code that needs session state takes a connection of its own."""


async def close_pool(pool: "asyncpg.Pool | None", timeout: float = 5.0) -> None:
    """Close a connection pool, waiting at most ``timeout`` for its queries; then cut it."""
    if pool is None:
        return
    try:
        async with asyncio.timeout(timeout):
            await pool.close()
    except TimeoutError:
        pool.terminate()
