"""Recording rows in PostgreSQL (migration 0009): metadata, pauses, access audit, QA reviews.

Every function takes a pool or a connection and is bounded by the caller
(the pool's ``command_timeout`` or ``asyncio.timeout``). Who may see what is a
``Scope`` turned into one SQL condition, so a list and a single fetch can never
disagree about it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Union

import asyncpg

from cti.pg import is_pool
Db = Union[asyncpg.Pool, asyncpg.Connection]


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose recordings a principal sees: all, one agent's, or a team's agents'.
    ``Scope()`` sees nothing."""

    everything: bool = False
    agent_id: str | None = None
    team: str | None = None

    def condition(self, args: list[Any], column: str = "r.agent") -> str:
        """A SQL condition on ``column``, appending its parameters to ``args``."""
        if self.everything:
            return "true"
        if self.agent_id is not None:
            args.append(self.agent_id)
            return f"{column} = ${len(args)}"
        if self.team is not None:
            args.append(self.team)
            return (f"{column} IN (SELECT u.agent_id FROM users u WHERE u.team = ${len(args)}"
                    " AND u.agent_id IS NOT NULL)")
        return "false"


# -- writing ---------------------------------------------------------------------

async def next_segment(db: Db, call_id: str) -> int:
    return await db.fetchval("SELECT coalesce(max(segment), 0) + 1 FROM recordings WHERE call_id = $1", call_id)


async def insert_recording(db: Db, *, call_id: str, segment: int, agent: str | None, queue: str | None,
                           caller_num: str | None, sides: str, reason: str, started_by: str, file_name: str,
                           started_at: datetime) -> int:
    return await db.fetchval(
        """INSERT INTO recordings (call_id, segment, agent, agents, queue, caller_num, sides, reason,
                                   started_by, file_name, state, started_at)
           VALUES ($1, $2, $3, CASE WHEN $3::text IS NULL THEN '{}'::text[] ELSE ARRAY[$3::text] END,
                   $4, $5, $6, $7, $8, $9, 'recording', $10)
           RETURNING recording_id""",
        call_id, segment, agent, queue, caller_num, sides, reason, started_by, file_name, started_at)


async def id_of(db: Db, file_name: str) -> int | None:
    """The id of the recording in ``file_name`` (a bare name), or None: no row (yet)."""
    return await db.fetchval("SELECT recording_id FROM recordings WHERE file_name = $1", file_name)


async def set_state(db: Db, recording_id: int, state: str, stopped_at: datetime | None = None) -> None:
    await db.execute("UPDATE recordings SET state = $2, stopped_at = coalesce($3, stopped_at) "
                     "WHERE recording_id = $1 AND state IN ('recording', 'paused', 'stopped')",
                     recording_id, state, stopped_at)


async def add_agent(db: Db, recording_id: int, agent: str) -> None:
    await db.execute("UPDATE recordings SET agents = array_append(agents, $2) "
                     "WHERE recording_id = $1 AND NOT ($2 = ANY(agents))", recording_id, agent)


async def add_pause(db: Db, recording_id: int, n: int, paused_at: datetime, start_s: float, by: str) -> None:
    await db.execute("INSERT INTO recording_pauses (recording_id, n, paused_at, start_s, paused_by) "
                     "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", recording_id, n, paused_at, start_s, by)


async def end_pause(db: Db, recording_id: int, n: int, resumed_at: datetime, end_s: float, by: str) -> None:
    await db.execute("UPDATE recording_pauses SET resumed_at = $3, end_s = $4, resumed_by = $5 "
                     "WHERE recording_id = $1 AND n = $2 AND resumed_at IS NULL",
                     recording_id, n, resumed_at, end_s, by)


async def finish(db: Db, recording_id: int, *, state: str, stopped_at: datetime, duration_s: float | None,
                 size_bytes: int | None, sha256: str | None, error: str | None, audio_lead_s: float | None) -> None:
    """The recording's final facts; its pauses' offsets move ``audio_lead_s`` earlier
    (from recording time to file time)."""
    async with _transaction(db) as conn:
        await conn.execute(
            """UPDATE recordings SET state = $2, stopped_at = coalesce(stopped_at, $3), duration_s = $4,
                                     size_bytes = $5, sha256 = $6, error = $7, audio_lead_s = $8
               WHERE recording_id = $1 AND deleted_at IS NULL""",
            recording_id, state, stopped_at, duration_s, size_bytes, sha256, error, audio_lead_s)
        if audio_lead_s:
            await conn.execute(
                """UPDATE recording_pauses SET start_s = greatest(0, round(start_s - $2, 3)),
                                               end_s = greatest(0, round(end_s - $2, 3))
                   WHERE recording_id = $1""", recording_id, audio_lead_s)


class _transaction:
    """A transaction on a pool's connection, or on the connection given."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.conn: Any = None
        self.tx: Any = None
        self.acquired = False

    async def __aenter__(self) -> asyncpg.Connection:
        if is_pool(self.db):
            self.conn = await self.db.acquire()
            self.acquired = True
        else:
            self.conn = self.db
        self.tx = self.conn.transaction()
        await self.tx.start()
        return self.conn

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None:
                await self.tx.commit()
            else:
                await self.tx.rollback()
        finally:
            if self.acquired:
                await self.db.release(self.conn)


async def audit(db: Db, recording_id: int, *, principal: str, role: str, action: str, byte_range: str | None,
                outcome: str, remote: str | None) -> None:
    await db.execute("INSERT INTO recording_access (recording_id, principal, role, action, byte_range, outcome, remote) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                     recording_id, principal, role, action, byte_range, outcome, remote)


# -- reading ---------------------------------------------------------------------

_COLUMNS = """r.recording_id, r.call_id, r.segment, r.agent, r.agents, r.queue, r.caller_num, r.sides, r.reason,
              r.started_by, r.file_name, r.state, r.started_at, r.stopped_at, r.duration_s, r.audio_lead_s, r.size_bytes,
              r.sha256, r.error, r.deleted_at"""


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None
    queue: str | None = None
    caller: str | None = None          # digits (and +): a part of the caller's number
    ticket_id: int | None = None
    call_id: str | None = None
    limit: int = 100
    offset: int = 0


async def list_recordings(db: Db, scope: Scope, f: Filters) -> list[asyncpg.Record]:
    args: list[Any] = []
    where = [scope.condition(args)]
    for value, sql in ((f.since, "r.started_at >= ${}"), (f.until, "r.started_at < ${}"), (f.agent, "r.agent = ${}"),
                       (f.queue, "r.queue = ${}"), (f.call_id, "r.call_id = ${}")):
        if value is not None:
            args.append(value)
            where.append(sql.format(len(args)))
    if f.caller is not None:
        args.append("%" + f.caller.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        where.append(f"r.caller_num LIKE ${len(args)}")
    if f.ticket_id is not None:
        args.append(f.ticket_id)
        n = len(args)
        where.append(f"(r.call_id IN (SELECT call_id FROM ticket_calls WHERE ticket_id = ${n}) OR "
                     f"r.recording_id::text IN (SELECT recording_id FROM ticket_recordings WHERE ticket_id = ${n}))")
    args += [f.limit, f.offset]
    return await db.fetch(f"SELECT {_COLUMNS} FROM recordings r WHERE {' AND '.join(where)} "
                          f"ORDER BY r.started_at DESC, r.recording_id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
                          *args)


async def get_recording(db: Db, recording_id: int, scope: Scope) -> asyncpg.Record | None:
    """The recording, or None when it does not exist *or* ``scope`` may not see it."""
    args: list[Any] = [recording_id]
    cond = scope.condition(args)
    return await db.fetchrow(f"SELECT {_COLUMNS} FROM recordings r WHERE r.recording_id = $1 AND {cond}", *args)


async def visible(db: Db, recording_ids: Iterable[int], scope: Scope) -> set[int]:
    """Those of ``recording_ids`` that ``scope`` may see (the same rule as the
    recording routes: pages that list recordings show only these)."""
    args: list[Any] = [list(recording_ids)]
    if not args[0]:
        return set()
    cond = scope.condition(args)
    rows = await db.fetch(f"SELECT r.recording_id FROM recordings r WHERE r.recording_id = ANY($1) AND {cond}", *args)
    return {r["recording_id"] for r in rows}


async def pauses(db: Db, recording_ids: Iterable[int]) -> dict[int, list[asyncpg.Record]]:
    rows = await db.fetch("SELECT * FROM recording_pauses WHERE recording_id = ANY($1) ORDER BY recording_id, n",
                          list(recording_ids))
    out: dict[int, list[asyncpg.Record]] = {}
    for r in rows:
        out.setdefault(r["recording_id"], []).append(r)
    return out


async def accesses(db: Db, recording_id: int) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM recording_access WHERE recording_id = $1 ORDER BY access_id", recording_id)


# -- retention ---------------------------------------------------------------------

async def kept_before(db: Db, before: datetime) -> list[asyncpg.Record]:
    """Recordings not deleted yet that started before ``before`` (sweep candidates)."""
    return await db.fetch("SELECT recording_id, queue, started_at, file_name, state FROM recordings "
                          "WHERE deleted_at IS NULL AND started_at < $1 AND state NOT IN ('recording', 'paused') "
                          "ORDER BY started_at", before)


async def mark_deleted(db: Db, recording_id: int, at: datetime, note: str | None) -> bool:
    status = await db.execute("UPDATE recordings SET state = 'deleted', deleted_at = $2, "
                              "error = coalesce($3, error) WHERE recording_id = $1 AND deleted_at IS NULL",
                              recording_id, at, note)
    return status.endswith(" 1")


# -- quality review -------------------------------------------------------------------

async def unsampled(db: Db) -> list[asyncpg.Record]:
    return await db.fetch("SELECT recording_id, agent FROM recordings "
                          "WHERE NOT qa_considered AND state = 'saved' AND agent IS NOT NULL")


async def record_sample(conn: asyncpg.Connection, considered: list[int], picked: list[int]) -> int:
    """Mark ``considered`` as looked at and put ``picked`` on the review list, in one
    transaction. Returns the number of reviews added."""
    async with conn.transaction():
        await conn.execute("UPDATE recordings SET qa_considered = true WHERE recording_id = ANY($1)", considered)
        status = await conn.execute(
            "INSERT INTO qa_reviews (recording_id, agent) SELECT recording_id, agent FROM recordings "
            "WHERE recording_id = ANY($1) ON CONFLICT (recording_id) DO NOTHING", picked)
    return int(status.split()[-1])


async def reviews(db: Db, *, state: str | None, agent: str | None, limit: int) -> list[asyncpg.Record]:
    args: list[Any] = []
    where = ["true"]
    for value, sql in ((state, "q.state = ${}"), (agent, "q.agent = ${}")):
        if value is not None:
            args.append(value)
            where.append(sql.format(len(args)))
    args.append(limit)
    return await db.fetch(
        f"""SELECT q.*, r.call_id, r.queue, r.started_at, r.duration_s, r.state AS recording_state
            FROM qa_reviews q JOIN recordings r USING (recording_id)
            WHERE {' AND '.join(where)} ORDER BY q.sampled_at, q.review_id LIMIT ${len(args)}""", *args)


async def save_score(db: Db, review_id: int, *, reviewer: str, form: list[dict[str, Any]], points: dict[str, int],
                     total: float, comment: str | None) -> asyncpg.Record | None:
    return await db.fetchrow(
        """UPDATE qa_reviews SET state = 'scored', reviewer = $2, scored_at = now(), form = $3::jsonb,
                                 points = $4::jsonb, total = $5, comment = $6
           WHERE review_id = $1 RETURNING *""",
        review_id, reviewer, json.dumps(form), json.dumps(points), total, comment)


async def agent_scores(db: Db, scope: Scope) -> list[asyncpg.Record]:
    args: list[Any] = []
    cond = scope.condition(args, "q.agent")
    return await db.fetch(
        f"""SELECT q.agent, count(*) FILTER (WHERE q.state = 'scored') AS scored,
                   count(*) FILTER (WHERE q.state = 'pending') AS pending,
                   round(avg(q.total) FILTER (WHERE q.state = 'scored'), 2) AS average,
                   min(q.total) AS lowest, max(q.total) AS highest, max(q.scored_at) AS last_scored_at
            FROM qa_reviews q WHERE {cond} GROUP BY q.agent ORDER BY q.agent""", *args)
