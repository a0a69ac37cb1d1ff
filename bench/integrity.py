"""After a load or fault run: is every placed call in the database exactly once, closed, consistent?

The traffic generator knows the id of every call it placed (``PlacedCall.channel_id``
is the caller channel's Uniqueid, which becomes the call's Linkedid and so its
``call_id``). Afterwards we read every ``calls`` row that started in the run's
window and compare:

- missing: placed, but no row;
- extra: a row in the window that nobody placed (a call split in two, or counted twice);
- open: a row never closed (``ended_at`` NULL);
- inconsistent: timestamps out of order (start <= answer <= end, queue join <= queue
  left <= end, agent answer within the call), or a state that disagrees with ``ended_at``.

``check`` is pure (rows in, report out); ``fetch_and_check`` is the I/O around it.
Used by bench/load.py, bench/faults.py and their short versions in the tests.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Calls the daemon makes itself (callback legs, click-to-dial, supervisor spies) carry
# ids of their own; callers that place only inbound calls ignore rows with these prefixes.
DEFAULT_FOREIGN_PREFIXES: tuple[str, ...] = ()


@dataclass(slots=True)
class IntegrityReport:
    placed: int
    rows: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    open: list[str] = field(default_factory=list)
    inconsistent: dict[str, str] = field(default_factory=dict)
    estimated: list[str] = field(default_factory=list)   # closed by reconcile, not by a hangup seen live

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.open or self.inconsistent)

    def summary(self) -> dict[str, Any]:
        return {"placed": self.placed, "rows": self.rows, "missing": len(self.missing),
                "extra": len(self.extra), "open": len(self.open),
                "inconsistent": len(self.inconsistent), "end_estimated": len(self.estimated)}

    def explain(self, limit: int = 5) -> str:
        parts = [f"{k}={v}" for k, v in self.summary().items()]
        for name in ("missing", "extra", "open"):
            ids = getattr(self, name)
            if ids:
                parts.append(f"{name}: {', '.join(ids[:limit])}")
        for cid, why in list(self.inconsistent.items())[:limit]:
            parts.append(f"{cid}: {why}")
        return "; ".join(parts)


def _order_problem(row: Mapping[str, Any]) -> str | None:
    start: datetime = row["started_at"]
    end: datetime | None = row["ended_at"]
    # Asterisk stamps events with its clock and we keep microseconds: allow no slack
    # on ordering, except a millisecond for values derived from different events.
    eps = timedelta(milliseconds=1)

    def before(a: datetime | None, b: datetime | None, what: str) -> str | None:
        if a is not None and b is not None and a > b + eps:
            return f"{what} ({a.isoformat()} > {b.isoformat()})"
        return None

    checks = [
        before(start, row.get("answered_at"), "answered before start"),
        before(start, end, "ended before start"),
        before(row.get("answered_at"), end, "ended before answer"),
        before(start, row.get("queue_joined_at"), "queued before start"),
        before(row.get("queue_joined_at"), row.get("queue_left_at"), "left queue before joining"),
        before(row.get("queue_left_at"), end, "ended before leaving queue"),
        before(row.get("agent_answered_at"), end, "ended before agent answered"),
    ]
    for problem in checks:
        if problem:
            return problem
    if end is None and row["state"] == "ended":
        return "state ended without ended_at"
    if end is not None and row["state"] != "ended":
        return f"ended_at set but state {row['state']}"
    if row.get("abandoned") and row.get("agent_answered_at") is not None:
        return "abandoned but answered by an agent"
    return None


def check(placed_ids: Iterable[str], rows: Iterable[Mapping[str, Any]], *,
          foreign_prefixes: tuple[str, ...] = DEFAULT_FOREIGN_PREFIXES) -> IntegrityReport:
    """Compare the calls placed with the rows found in the run's window."""
    placed = list(dict.fromkeys(placed_ids))
    by_id: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        by_id[row["call_id"]] = row
    wanted = set(placed)
    report = IntegrityReport(placed=len(placed), rows=len(by_id))
    report.missing = [cid for cid in placed if cid not in by_id]
    report.extra = sorted(cid for cid in by_id
                          if cid not in wanted and not cid.startswith(foreign_prefixes))
    for cid in placed:
        row = by_id.get(cid)
        if row is None:
            continue
        if row["ended_at"] is None:
            report.open.append(cid)
        if row.get("end_estimated"):
            report.estimated.append(cid)
        problem = _order_problem(row)
        if problem:
            report.inconsistent[cid] = problem
    return report


async def fetch_and_check(pool_or_conn: Any, placed_ids: Iterable[str], *, since: datetime, until: datetime,
                          id_prefix: str = "",
                          foreign_prefixes: tuple[str, ...] = DEFAULT_FOREIGN_PREFIXES) -> IntegrityReport:
    """Read the window's rows whose id starts with ``id_prefix``, and every placed id; ``check`` them.

    The window is widened by a minute each side: a call placed just before ``since``
    by our clock can carry an Asterisk timestamp a little earlier.
    """
    placed = list(placed_ids)
    like = id_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await pool_or_conn.fetch(
        "SELECT * FROM calls WHERE (started_at BETWEEN $1 AND $2 AND call_id LIKE $3) OR call_id = ANY($4)",
        since - timedelta(minutes=1), until + timedelta(minutes=1), like, placed)
    return check(placed, [dict(r) for r in rows], foreign_prefixes=foreign_prefixes)
