"""Routing configuration versions: the ``acd_config_versions`` table, which
version starts (``choose_config``, ``config_in_force``) and how a new one is
put in force on the running ACD (``Reconfiguring``, mixed into ``AcdService``).

With a database, every configuration in force is a numbered version: the
file's, recorded when it changes, and each one saved through the API
(docs/acd.md, "Configuration versions").
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

import asyncpg
import structlog

from acd import config as acd_config
from acd import core as acd_core
from acd.held_calls import Entry, Waiting
from cti.errors import CtiError

if TYPE_CHECKING:
    from cti.daemon import CoreServices

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


async def config_in_force(pool: asyncpg.Pool | None, path: Any) -> tuple[acd_config.AcdConfig, int | None]:
    """The routing configuration to start with, and its stored version.

    The file is read (and must be valid: a bad file stops the start, as
    before). With a database (``pool``: none in unit tests), versions are kept in ``acd_config_versions``:
    see ``choose_config`` for which one starts. A stored version
    that no longer validates is skipped with an error in the log.
    """
    config = acd_config.load_config(path)
    if pool is None:
        return config, None
    document = config.model_dump(mode="json")
    source = f"file:{path}"
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


class Reconfiguring:
    """Mixed into ``AcdService`` (acd/routing_shell.py): the API's configuration
    versions, and a new configuration put in force on the running router."""

    if TYPE_CHECKING:  # what AcdService provides
        core: CoreServices
        config: acd_config.AcdConfig
        config_version: int | None
        router: acd_core.Router
        calls: dict[str, Waiting]
        carried: dict[str, str]
        devices: dict[str, str]
        unreachable: set[str]
        voice_blocked: set[str]
        config_listeners: list[Callable[[acd_config.AcdConfig, float], None]]
        _pool: asyncpg.Pool | None
        _queues: dict[str, Any]
        told: dict[str, Any]
        _apply: Callable[[list[Any]], None]
        _tell: Callable[[str, float], None]
        _enter: Callable[[str, Entry, float], None]

    async def save_config_version(self, document: dict[str, Any], source: str) -> int | None:
        """Store ``document`` as the newest configuration version; returns its number,
        None without a database (versions need it)."""
        if self._pool is None:
            return None
        return await save_version(self._pool, document, source)

    async def config_versions(self, limit: int = 50) -> list[ConfigVersion]:
        """The stored versions, newest first (none without a database)."""
        if self._pool is None:
            return []
        return await newest_versions(self._pool, limit)

    def reconfigure(self, config: acd_config.AcdConfig, version: int | None = None) -> dict[str, int]:
        """Put a new routing configuration in force without dropping anyone.

        A fresh router is built and given what the old one held: agents keep
        their state (talking agents stay on their call, wrap-up starts again),
        waiting calls and callbacks keep their place (arrival time), offers
        ringing now are carried as the agent's call until they end. Agents no
        longer configured leave routing (their current call goes on in
        Asterisk); calls of a queue that is gone wait in the default queue.
        The service-level counters of the live board start again.
        """
        now = time.time()
        # A standby's shadow router stays a follower (acd/shadow.py follows the leader's versions).
        old = self.router
        new = acd_core.Router(config, following=old.following)
        queues = {q.id for q in config.queues}
        agents = {a.id: a for a in config.agents}
        for agent_id in agents:  # before anyone logs in: they log in at the device they sit at
            if agent_id in self.voice_blocked:     # their tasks still block calls (omni)
                new.set_voice_blocked(agent_id, True, now)
            if agent_id in self.devices:
                new.set_device(agent_id, self.devices[agent_id])
            if agent_id in self.unreachable:
                new.device_reachable(agent_id, False, now)
        default = self.core.settings.acd_default_queue
        out: list[Any] = []
        moved = dropped = 0
        for a in self.config.agents:
            view = old.agent_state(a.id)
            if a.id not in agents:
                for w in self.calls.values():
                    if w.agent == a.id:
                        w.agent = None
                continue
            if view.state == acd_core.LOGGED_OUT:
                continue
            if view.state in (acd_core.AVAILABLE, acd_core.NOT_READY):
                out += new.login(a.id, now)
                if view.state == acd_core.NOT_READY:
                    out += new.set_not_ready(a.id, view.reason, now)
                continue
            memberships = list(agents[a.id].queues)
            queue = view.queue_id if view.queue_id in queues else (memberships[0] if memberships else default)
            call = view.call_id or f"wrapup-{a.id}"
            out += new.agent_on_call(a.id, call, queue, now)
            if view.state == acd_core.WRAPUP:
                out += new.call_finished(call, a.id, now)
            elif view.state == acd_core.RESERVED:
                self.carried[call] = a.id
            if view.pending == "logout":
                out += new.logout(a.id, now)
            elif view.pending:
                out += new.set_not_ready(a.id, view.pending, now)
        self.router, self.config = new, config
        self._queues = {q.id: q for q in config.queues}
        self.config_version = version
        self._apply(out)
        # Every agent as the new router has it, told where it changed: also those whose
        # state did not (a pending break carried over) and those the configuration adds.
        for agent_id in set(self.told) - set(agents):
            del self.told[agent_id]
        for agent_id in agents:
            self._tell(agent_id, now)
        for w in old.waiting_calls():
            waiting = self.calls.get(w.call_id)
            if w.status == acd_core.RINGING or waiting is None or waiting.entry is None:
                continue
            entry = replace(waiting.entry, since=w.arrived_at, callback=w.callback)
            if entry.queue not in queues:
                entry = replace(entry, queue=default)
                dropped += 1
            self._enter(w.call_id, entry, now)
            moved += 1
        for listener in list(self.config_listeners):
            try:
                listener(config, now)
            except Exception:       # a listener's bug must not undo the new configuration
                log.exception("acd configuration listener failed")
        log.info("acd configuration in force", version=version, agents=len(config.agents),
                 queues=len(config.queues), calls_kept=moved, queue_gone=dropped, offers_carried=len(self.carried))
        return {"calls_kept": moved, "queue_gone": dropped, "offers_carried": len(self.carried)}
