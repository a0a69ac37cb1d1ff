"""The ``calls`` and ``call_events`` tables: the rows the writer stores, and the queries on them.

A call is stored as a *snapshot* (``CallRow``) upserted by its id; the writer
keeps only the latest one of each call while rows wait. The upsert never
un-ends an ended call, never replaces a real end by an estimated one, and never
sets a known value back to NULL (a snapshot rebuilt after a reconnect may know
less). A call's events (``CallEventRow``) are written once each, by
``(call_id, seq)``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from cti.pg import Db
from cti.rows import TableRow

if TYPE_CHECKING:
    from cti.events import CallEvent, CallView

CALL_STATES = frozenset({"ringing", "ivr", "queued", "offered", "talking", "held", "transferred", "ended"})

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


# -- rows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRow(TableRow):
    """A full snapshot of one call; the latest one written wins (see the module doc).

    Timestamps are timezone-aware (naive ones are taken as UTC by asyncpg).
    ``state`` is one of ``CALL_STATES``; anything else is refused by the database.
    """

    table: ClassVar[str] = "calls"
    statement: ClassVar[str] = _UPSERT_CALL
    columns: ClassVar[tuple[str, ...]] = _CALL_COLUMNS
    key_column: ClassVar[str | None] = "call_id"
    ident_columns: ClassVar[tuple[str, ...]] = ("call_id",)

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
class CallEventRow(TableRow):
    """One domain event of a call; written once per (call_id, seq)."""

    table: ClassVar[str] = "call_events"
    statement: ClassVar[str] = _INSERT_EVENT
    ident_columns: ClassVar[tuple[str, ...]] = ("call_id", "seq", "kind")

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

    def args(self) -> tuple[Any, ...]:
        # default=str: a datetime or a Path in event data is kept, not refused.
        data = json.dumps(self.data, default=str, allow_nan=False)
        return (self.call_id, self.seq, self.at, self.kind, data)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _utc_or_none(ts: float | None) -> datetime | None:
    return None if ts is None else _utc(ts)


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
