"""Tasks and chat messages in PostgreSQL (migration 0020). Plain functions over an
asyncpg connection or pool; the callers bound the time they wait."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from omni.tasks import Task

_COLUMNS = ("task_id, channel, queue_id, customer_ref, subject, ref, status, agent_id, created_at, assigned_at, "
            "closed_at, disposition, queued_at")


def _utc(v: float | None) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(v, timezone.utc)


def _ts(v: datetime | None) -> float | None:
    return None if v is None else v.timestamp()


def to_task(r: Any) -> Task:
    return Task(r["task_id"], r["channel"], r["queue_id"], r["customer_ref"], r["subject"], r["ref"],
                r["created_at"].timestamp(), r["status"], r["agent_id"], _ts(r["assigned_at"]),
                _ts(r["closed_at"]), r["disposition"], _ts(r["queued_at"]))


async def insert_task(conn: Any, t: Task) -> Task | None:
    """Store a new task; None when the channel already filed one with this ``ref`` (the
    caller then reads that one: filing is idempotent per channel and ref)."""
    row = await conn.fetchrow(
        f"INSERT INTO tasks (task_id, channel, queue_id, customer_ref, subject, ref, created_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel, ref) DO NOTHING RETURNING {_COLUMNS}",
        t.task_id, t.channel, t.queue, t.customer_ref, t.subject, t.ref, _utc(t.created_at))
    return None if row is None else to_task(row)


async def by_ref(conn: Any, channel: str, ref: str) -> Task | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tasks WHERE channel = $1 AND ref = $2", channel, ref)
    return None if row is None else to_task(row)


async def get_task(conn: Any, task_id: str) -> Task | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = $1", task_id)
    return None if row is None else to_task(row)


async def set_assigned(conn: Any, task_id: str, agent_id: str, at: float) -> None:
    await conn.execute("UPDATE tasks SET status = 'assigned', agent_id = $2, assigned_at = $3 "
                       "WHERE task_id = $1 AND status = 'waiting'", task_id, agent_id, _utc(at))


async def set_closed(conn: Any, task_id: str, at: float, disposition: str) -> None:
    await conn.execute("UPDATE tasks SET status = 'closed', closed_at = $2, disposition = $3 "
                       "WHERE task_id = $1 AND status = 'assigned'", task_id, _utc(at), disposition)


async def set_waiting(conn: Any, task_id: str, queue: str, queued_at: float | None = None) -> None:
    """The task waits (again) in ``queue``: transferred (``queued_at``: when), or its agent
    left the configuration (``queued_at`` None: kept). ``created_at`` stays: its place goes
    on from it after a restart."""
    await conn.execute("UPDATE tasks SET status = 'waiting', queue_id = $2, agent_id = NULL, assigned_at = NULL, "
                       "queued_at = coalesce($3, queued_at) "
                       "WHERE task_id = $1 AND status IN ('waiting', 'assigned')", task_id, queue, _utc(queued_at))


async def set_queue(conn: Any, task_id: str, queue: str, queued_at: float | None = None) -> None:
    """The task belongs to ``queue`` now: its queue left the configuration (``queued_at``
    None: kept), or a maximum wait overflowed it (``queued_at``: when)."""
    await conn.execute("UPDATE tasks SET queue_id = $2, queued_at = coalesce($3, queued_at) WHERE task_id = $1",
                       task_id, queue, _utc(queued_at))


async def day_counts(conn: Any, since: float, sl_seconds: dict[str, float]) -> dict[str, tuple[int, int, int, int]]:
    """Per queue, the tasks that left it since ``since``: (offered, answered, answered within
    the queue's ``sl_seconds``, abandoned), as ``TaskRouter.queue_stats`` counts them. A
    task counts in the queue it is in now (a transfer counted it in each before a restart)."""
    rows = await conn.fetch(
        "SELECT queue_id, count(*) FILTER (WHERE assigned_at IS NOT NULL) AS answered, "
        "count(*) FILTER (WHERE status = 'abandoned') AS abandoned, "
        "array_agg(extract(epoch FROM assigned_at - created_at)::float8) FILTER (WHERE assigned_at IS NOT NULL) "
        "AS waits FROM tasks WHERE (assigned_at >= $1 OR (status = 'abandoned' AND closed_at >= $1)) "
        "GROUP BY queue_id", _utc(since))
    out: dict[str, tuple[int, int, int, int]] = {}
    for r in rows:
        limit = sl_seconds.get(r["queue_id"])
        within = sum(1 for w in r["waits"] or () if limit is not None and w <= limit)
        out[r["queue_id"]] = (r["answered"] + r["abandoned"], r["answered"], within, r["abandoned"])
    return out


async def tasks_between(conn: Any, start: float, end: float, limit: int = 200_000) -> list[Task]:
    """Tasks filed in [start, end), oldest first, at most ``limit`` (the channel report)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM tasks WHERE created_at >= $1 AND created_at < $2 "
                            f"ORDER BY created_at LIMIT $3", _utc(start), _utc(end), limit)
    return [to_task(r) for r in rows]


async def set_abandoned(conn: Any, task_id: str, at: float) -> None:
    await conn.execute("UPDATE tasks SET status = 'abandoned', closed_at = $2 "
                       "WHERE task_id = $1 AND status = 'waiting'", task_id, _utc(at))


async def open_tasks(conn: Any) -> list[Task]:
    """Tasks waiting or assigned (for a restart: the router takes them back)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM tasks WHERE status IN ('waiting', 'assigned') "
                            f"ORDER BY created_at, task_id")
    return [to_task(r) for r in rows]


async def add_message(conn: Any, task_id: str, seq: int, sender: str, body: str, at: float,
                      agent_id: str | None = None) -> None:
    """Store one chat message under the seq the chat gave it (a repeat is ignored)."""
    await conn.execute(
        "INSERT INTO chat_messages (task_id, seq, sender, agent_id, body, at) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT DO NOTHING", task_id, seq, sender, agent_id, body, _utc(at))


async def messages(conn: Any, task_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The chat's messages after seq ``after``, in order."""
    rows = await conn.fetch("SELECT seq, sender, agent_id, body, at FROM chat_messages "
                            "WHERE task_id = $1 AND seq > $2 ORDER BY seq", task_id, after)
    return [{"seq": r["seq"], "sender": r["sender"], "agent_id": r["agent_id"], "body": r["body"],
             "at": r["at"].timestamp()} for r in rows]


async def messages_of(conn: Any, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The messages of several chats at once (a restart rebuilding its open chats), in order."""
    rows = await conn.fetch("SELECT task_id, seq, sender, agent_id, body, at FROM chat_messages "
                            "WHERE task_id = ANY($1::text[]) ORDER BY task_id, seq", task_ids)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["task_id"], []).append({"seq": r["seq"], "sender": r["sender"], "agent_id": r["agent_id"],
                                                 "body": r["body"], "at": r["at"].timestamp()})
    return out
