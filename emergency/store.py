"""Emergency switches in PostgreSQL (migration 0019): declare, end, read, and the
record of what happened to each call a switch reached. Plain functions over an
asyncpg connection or pool; the callers bound the time they wait."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from emergency.switches import Switch, check

_COLUMNS = ("id, scope, value, action, target, prompt, announcement, reason, preset, starts_at, ends_at, "
            "declared_at, declared_by, ended_at, ended_by, ended_reason")


def _ts(v: datetime | None) -> float | None:
    return None if v is None else v.timestamp()


def _utc(v: float | None) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(v, timezone.utc)


def to_switch(r: Any) -> Switch:
    return Switch(id=r["id"], scope=r["scope"], value=r["value"], action=r["action"], target=r["target"],
                  prompt=r["prompt"], reason=r["reason"], declared_at=r["declared_at"].timestamp(),
                  starts_at=r["starts_at"].timestamp(), ends_at=_ts(r["ends_at"]), ended_at=_ts(r["ended_at"]))


def as_dict(r: Any) -> dict[str, Any]:
    """A stored row as the API and the CLI show it."""
    return {k: r[k] for k in _COLUMNS.split(", ")}


async def declare(conn: Any, *, scope: str, value: str, action: str, target: str, prompt: str, reason: str,
                  by: str, starts_at: float | None = None, ends_at: float | None = None,
                  announcement: str = "", preset: str | None = None) -> Any:
    """Store a new switch (validated first: ``SwitchError``); returns its row.
    ``starts_at`` None: now, by the database's clock."""
    check(scope, value, action, target, prompt, starts_at if starts_at is not None else time.time(), ends_at)
    return await conn.fetchrow(
        f"INSERT INTO emergency_switches (scope, value, action, target, prompt, announcement, reason, preset, "
        f"starts_at, ends_at, declared_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, now()), $10, $11) "
        f"RETURNING {_COLUMNS}",
        scope, value, action, target, prompt, announcement, reason, preset, _utc(starts_at), _utc(ends_at), by)


async def end(conn: Any, switch_id: int, *, by: str, reason: str) -> Any:
    """Switch one off now; its row, or None when there is no such switch still on."""
    return await conn.fetchrow(
        f"UPDATE emergency_switches SET ended_at = now(), ended_by = $2, ended_reason = $3 "
        f"WHERE id = $1 AND ended_at IS NULL RETURNING {_COLUMNS}", switch_id, by, reason)


async def open_switches(conn: Any) -> list[Switch]:
    """Switches not switched off and not past their scheduled end (active or still to start)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM emergency_switches WHERE ended_at IS NULL "
                            f"AND (ends_at IS NULL OR ends_at > now()) ORDER BY id")
    return [to_switch(r) for r in rows]


async def listing(conn: Any, *, include_ended: bool, limit: int = 100) -> list[Any]:
    where = "" if include_ended else "WHERE ended_at IS NULL AND (ends_at IS NULL OR ends_at > now()) "
    return await conn.fetch(f"SELECT {_COLUMNS} FROM emergency_switches {where}ORDER BY id DESC LIMIT $1", limit)


async def preset(conn: Any, name: str) -> Any:
    """The latest switch declared under preset ``name`` (the template the phone's
    feature code turns on again), or None."""
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM emergency_switches WHERE preset = $1 "
                               f"ORDER BY id DESC LIMIT 1", name)


async def record_calls(conn: Any, rows: list[tuple[int, str, str, str, str]]) -> None:
    """What happened to calls: (switch id, call id, step, outcome, detail) each."""
    if rows:
        await conn.executemany("INSERT INTO emergency_calls (switch_id, call_id, step, outcome, detail) "
                               "VALUES ($1, $2, $3, $4, $5)", rows)


async def report(conn: Any, *, since: float, until: float) -> list[dict[str, Any]]:
    """Each switch that was on at some time in [since, until): when it was on, how
    many calls it reached and the count per outcome."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, (SELECT coalesce(jsonb_object_agg(o.outcome, o.n), '{{}}'::jsonb) FROM "
        f"(SELECT outcome, count(*) AS n FROM emergency_calls c WHERE c.switch_id = s.id GROUP BY outcome) o) "
        f"AS outcomes FROM emergency_switches s WHERE starts_at < $2 "
        f"AND coalesce(least(ended_at, ends_at), 'infinity') > $1 ORDER BY id", _utc(since), _utc(until))
    out = []
    for r in rows:
        d = as_dict(r)
        d["outcomes"] = json.loads(r["outcomes"]) if isinstance(r["outcomes"], str) else dict(r["outcomes"])
        d["calls"] = sum(d["outcomes"].values())
        out.append(d)
    return out
