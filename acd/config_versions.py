"""Routing configuration versions: the ``acd_config_versions`` table, which
version starts (``choose_config``, ``config_in_force``) and how a new one is
put in force on the running ACD (``Reconfiguring``, mixed into ``AcdService``).

With a database, every configuration in force is a numbered version: the
file's, recorded when it changes, and each one saved through the API
(docs/acd.md, "Configuration versions").
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from acd import config as acd_config
from cti.errors import CtiError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One stored routing configuration (``document`` as JSON) and where it came from."""

    version: int
    document: dict[str, Any]
    source: str
    created_at: datetime


async def save_version(pool: asyncpg.Pool, document: dict[str, Any], source: str) -> int:
    """Store ``document`` as the newest version; returns its number."""
    async with pool.acquire(timeout=10) as conn:
        return await conn.fetchval("INSERT INTO acd_config_versions (document, source) VALUES ($1::jsonb, $2) "
                                   "RETURNING version", json.dumps(document), source, timeout=10)


async def newest_versions(pool: asyncpg.Pool, limit: int = 50) -> list[ConfigVersion]:
    """The newest versions first."""
    async with pool.acquire(timeout=10) as conn:
        rows = await conn.fetch("SELECT version, document::text AS doc, source, created_at FROM acd_config_versions "
                                "ORDER BY version DESC LIMIT $1", limit, timeout=10)
    return [ConfigVersion(r["version"], json.loads(r["doc"]), r["source"], r["created_at"]) for r in rows]


async def latest_from(pool: asyncpg.Pool, source_prefix: str) -> ConfigVersion | None:
    async with pool.acquire(timeout=10) as conn:
        r = await conn.fetchrow("SELECT version, document::text AS doc, source, created_at FROM acd_config_versions "
                                "WHERE starts_with(source, $1) ORDER BY version DESC LIMIT 1", source_prefix,
                                timeout=10)
    return None if r is None else ConfigVersion(r["version"], json.loads(r["doc"]), r["source"], r["created_at"])


def choose_config(file_doc: dict[str, Any], newest: ConfigVersion | None,
                  newest_from_file: ConfigVersion | None) -> str:
    """Which configuration starts: ``"file"`` (record it as a new version),
    ``"file-recorded"`` (the file, already the newest version) or ``"stored"``
    (the newest version, saved through the API after the file last changed).

    The file wins whenever it differs from the last version read from it: an
    admin who edits the file means it. Otherwise edits made through the API
    since stay in force across restarts.
    """
    if newest_from_file is None or newest_from_file.document != file_doc:
        return "file"
    if newest is not None and newest.version != newest_from_file.version:
        return "stored"
    return "file-recorded"


async def config_in_force(core: Any, path: Any) -> tuple[acd_config.AcdConfig, int | None]:
    """The routing configuration to start with, and its stored version.

    The file is read (and must be valid: a bad file stops the start, as
    before). With a database, versions are kept in ``acd_config_versions``:
    see ``choose_config`` for which one starts. A stored version
    that no longer validates is skipped with an error in the log.
    """
    config = acd_config.load_config(path)
    if core.dsn is None:
        return config, None
    document = config.model_dump(mode="json")
    source = f"file:{path}"
    pool = await asyncpg.create_pool(core.dsn, min_size=0, max_size=1, timeout=10)
    try:
        newest = await newest_versions(pool, limit=1)
        from_file = await latest_from(pool, "file:")
        choice = choose_config(document, newest[0] if newest else None, from_file)
        if choice == "stored":
            try:
                stored = acd_config.parse_config(newest[0].document, f"stored version {newest[0].version}")
                log.info("acd configuration: stored version in force", version=newest[0].version,
                         source=newest[0].source)
                return stored, newest[0].version
            except CtiError as exc:
                log.error("acd configuration: stored version invalid, file used", error=str(exc))
                choice = "file"
        if choice == "file":
            version = await save_version(pool, document, source)
            log.info("acd configuration: file recorded as a new version", version=version, path=str(path))
            return config, version
        assert from_file is not None
        return config, from_file.version
    finally:
        await pool.close()
