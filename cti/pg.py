"""PostgreSQL helpers every feature shares: the daemon's one pool (``open_pool``), its reset and
close, and errors fit to show.

A DSN may hold a password: ``secrets_of`` lists what must never be shown and
``scrub`` blanks it out of any text we log or expose; ``describe_error`` keeps a
server error to its first line (its DETAIL may quote the row);
``describe_target`` names a server for logs without user or password.
"""
from __future__ import annotations

import asyncio
from typing import Union
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import structlog

Db = Union[asyncpg.Pool, asyncpg.Connection]


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
