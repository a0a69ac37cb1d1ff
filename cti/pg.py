"""PostgreSQL helpers every feature shares: the daemon's one pool (``open_pool``), its reset and
close, each feature's share of it (``FeaturePool``), and errors fit to show.

A DSN may hold a password: ``secrets_of`` lists what must never be shown and
``scrub`` blanks it out of any text we log or expose; ``describe_error`` keeps a
server error to its first line (its DETAIL may quote the row);
``describe_target`` names a server for logs without user or password.
"""
from __future__ import annotations

import asyncio
from typing import Any, Mapping, Union
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import structlog

Db = Union[asyncpg.Pool, "FeaturePool", asyncpg.Connection]


def describe_error(exc: BaseException) -> str:
    """Class and message; for a server error, its first line only (a DETAIL may quote the row)."""
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__} [{exc.sqlstate}]: {exc.args[0] if exc.args else ''}".strip()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def secrets_of(dsn: str) -> list[str]:
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


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` (from ``secrets_of``) blanked out."""
    for secret in secrets:
        text = text.replace(secret, "**********")
    return text


def describe_target(dsn: str) -> str:
    """host:port/database of a DSN, for logs (no user, no password)."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or parse_qs(parts.query).get("host", ["(default)"])[0]
        port = parts.port or parse_qs(parts.query).get("port", [""])[0]
    except ValueError:
        return "(unparsable DSN)"
    return f"{host}{':' + str(port) if port else ''}{parts.path or '/'}"


async def close_connection(conn: asyncpg.Connection) -> None:
    """Close ``conn`` politely for up to 2 s, then cut it. Never raises."""
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


# The daemon's one pool, shared by every feature (``Core.pool``). Its size is the sum
# of what the features' own pools allowed before they shared one: the API 10, the
# dialplan hooks 8, the IVR 4, the wallboard and reports 3, recording 3, the ACD 2,
# phones 2. Two connections are kept open (the hooks and the API answer on a
# caller's or a user's time). The statement bound is the longest a feature allows
# (a report, 60 s); features with a tighter one keep it around their calls
# (the API 2 s, the hooks 1 s, recording 5 s).
POOL_MAX = 32
POOL_MIN = 2
POOL_COMMAND_TIMEOUT = 60.0


async def open_pool(dsn: str, *, connect_timeout: float = 5.0) -> "asyncpg.Pool":
    """The daemon's shared pool (``reset=keep_session``). Never fails for a database
    that is away: the pool then starts empty and connects on first use, so each
    feature answers as it does for an outage (503, a retry) and recovers with it."""
    common = dict(max_size=POOL_MAX, timeout=connect_timeout, command_timeout=POOL_COMMAND_TIMEOUT,
                  server_settings={"application_name": "cti"}, reset=keep_session)
    try:
        return await asyncpg.create_pool(dsn, min_size=POOL_MIN, **common)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        structlog.get_logger(__name__).error("database.pool_cold", error=describe_error(exc))
        # min_size=0: no connection is made here (asyncpg connects on acquire).
        return await asyncpg.create_pool(dsn, min_size=0, **common)


async def close_pool(pool: "asyncpg.Pool | None", timeout: float = 5.0) -> None:
    """Close a connection pool, waiting at most ``timeout`` for its queries; then cut it."""
    if pool is None:
        return
    try:
        async with asyncio.timeout(timeout):
            await pool.close()
    except TimeoutError:
        pool.terminate()


# -- each feature's share -------------------------------------------------------------

# How many of the shared pool's connections a feature may hold at once (``db_feature_max``
# overrides any of them). Each is well under the pool's size, so one feature at its cap (a
# slow report, a burst of API calls) leaves the others most of the pool: the dialplan hooks
# and the IVR answer on a caller's time. The sizes are those of the pools the features had
# before they shared one, but the reports': REPORTS_AT_ONCE (api.wallboard_service) and the
# wallboard's rollup. What is not named here (the core's own queries, the ACD, the features
# that take ``Core.pool``) is bounded by its own work only.
FEATURE_MAX: Mapping[str, int] = {"api": 10, "hooks": 8, "ivr": 4, "reports": 5, "recording": 3, "phones": 2}


def feature_limits(overrides: Mapping[str, int]) -> dict[str, int]:
    """``FEATURE_MAX`` with ``overrides`` over it. Raises ``ValueError`` naming a feature
    that is not one or a limit outside 1..POOL_MAX."""
    for name, n in overrides.items():
        if name not in FEATURE_MAX:
            raise ValueError(f"{name!r} is not a feature with a share of the pool "
                             f"(one of {', '.join(sorted(FEATURE_MAX))})")
        if not 1 <= n <= POOL_MAX:
            raise ValueError(f"{name}: {n} connections is outside 1..{POOL_MAX}")
    return {**FEATURE_MAX, **overrides}


class FeaturePool:
    """One feature's view of the shared pool: the pool's own methods (``acquire``, also
    awaited and then ``release``d; ``fetch``, ``fetchrow``, ``fetchval``, ``execute``,
    ``executemany``), with at most ``limit`` of its connections held at once. A caller
    past the cap waits for one of the feature's own connections, never another's; an
    ``acquire`` timeout covers that wait too. ``in_use`` and ``waiting`` are for
    ``/metrics``."""

    def __init__(self, feature: str, pool: Any, limit: int) -> None:
        self.feature = feature
        self.pool = pool
        self.limit = limit
        self.in_use = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    def acquire(self, *, timeout: float | None = None) -> "_Acquire":
        return _Acquire(self, timeout)

    async def _take(self, timeout: float | None) -> Any:
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_use += 1
        try:
            async with asyncio.timeout_at(deadline):
                return await self.pool.acquire()
        except BaseException:
            self._give_back()
            raise

    def _give_back(self) -> None:
        self.in_use -= 1
        self._slots.release()

    async def release(self, conn: Any) -> None:
        try:
            await self.pool.release(conn)
        finally:
            self._give_back()

    async def fetch(self, query: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args, timeout=timeout, **kw)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args, timeout=timeout, **kw)

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, column=column, timeout=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args, timeout=timeout)

    async def executemany(self, command: str, args: Any, *, timeout: float | None = None) -> None:
        async with self.acquire() as conn:
            await conn.executemany(command, args, timeout=timeout)


class _Acquire:
    """``async with share.acquire() as conn`` or ``conn = await share.acquire()`` (then
    ``await share.release(conn)``), as asyncpg's pool allows both."""

    def __init__(self, share: FeaturePool, timeout: float | None) -> None:
        self.share, self.timeout, self.conn = share, timeout, None

    def __await__(self) -> Any:
        return self.share._take(self.timeout).__await__()

    async def __aenter__(self) -> Any:
        self.conn = await self.share._take(self.timeout)
        return self.conn

    async def __aexit__(self, *exc: Any) -> None:
        conn, self.conn = self.conn, None
        await self.share.release(conn)


def is_pool(db: Any) -> bool:
    """Whether ``db`` lends connections (the pool, or a feature's share of it) rather than
    being one."""
    return isinstance(db, (asyncpg.Pool, FeaturePool))
