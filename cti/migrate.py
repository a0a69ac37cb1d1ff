"""Schema migrations: the plain SQL files of ``cti/migrations``, applied once each, in order.

``schema_migrations`` records the versions applied. Several processes may start
at once: they take turns on an advisory lock, so each migration runs once.
"""
from __future__ import annotations

import contextlib
import importlib.resources
import re
from typing import Any

import asyncpg
import structlog
from pydantic import SecretStr

from cti.errors import DatabaseUnavailable, StoreError
from cti.pg import Db, close_connection, describe_error, scrub, secrets_of

log = structlog.get_logger(__name__)

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
            raise DatabaseUnavailable(scrub(describe_error(exc), secrets_of(dsn))) from None
        try:
            return await _migrate(conn, lock_timeout)
        finally:
            await close_connection(conn)
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
                raise StoreError(f"migration {version} failed: {describe_error(exc)}") from None
            log.info("store.migrated", version=version)
            applied.append(version)
    finally:
        # Closing the session releases the lock too; never hide the real error.
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY, timeout=5)
    return applied
