"""A recording's row for the store's batching writer (``cti.writer``): written until it lands.

The row in ``recordings`` is a *snapshot* keyed by its file name (unique, made from
the call id and segment): the start's facts, and once the file is closed the
finish's too. While rows wait in the writer (PostgreSQL slow or away) only the
latest snapshot of a recording is kept, so the finish can never be overtaken by
the start: it *is* the start plus the end. The statement is an upsert: it inserts
the row when nothing holds it yet and otherwise brings the stored one forward,
never back:

- a row already final (``saved``/``failed``) or deleted is not touched by a
  snapshot that is not final (the same snapshot written twice changes nothing);
- while recording, the stored state stays (``paused`` is written straight to the
  database by a pause on a recording whose id is known);
- the agents are the union, in order (``agents`` is appended to directly too);
- the pauses' offsets move by ``audio_lead_s`` (recording time to file time) only
  when the stored row turns final in this very statement, so a retried batch does
  not move them twice.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from cti.rows import TableRow
from recording.policy import is_safe_file_name

STATES = frozenset({"recording", "stopped", "saved", "failed"})
FINAL = frozenset({"saved", "failed"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingRow(TableRow):
    """One recording's row as we know it now (see the module doc). Raises ``ValueError``
    for a state it cannot hold or a file name we could not have made."""

    table: ClassVar[str] = "recordings"
    columns: ClassVar[tuple[str, ...]] = (
        "call_id", "segment", "agent", "agents", "queue", "caller_num", "sides", "reason", "started_by",
        "file_name", "state", "started_at", "stopped_at", "duration_s", "size_bytes", "sha256", "error",
        "audio_lead_s")
    key_column: ClassVar[str | None] = "file_name"
    ident_columns: ClassVar[tuple[str, ...]] = ("call_id", "file_name", "state")
    statement: ClassVar[str] = """
        WITH before AS (SELECT recording_id, state FROM recordings WHERE file_name = $10),
        up AS (
            INSERT INTO recordings AS r (call_id, segment, agent, agents, queue, caller_num, sides, reason,
                                         started_by, file_name, state, started_at, stopped_at, duration_s,
                                         size_bytes, sha256, error, audio_lead_s)
            VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::numeric, $15, $16, $17,
                    $18::numeric)
            ON CONFLICT (file_name) DO UPDATE SET
                agents = r.agents || ARRAY(SELECT a FROM unnest(EXCLUDED.agents) a WHERE NOT a = ANY(r.agents)),
                state = CASE WHEN EXCLUDED.state = 'recording' THEN r.state ELSE EXCLUDED.state END,
                stopped_at = coalesce(r.stopped_at, EXCLUDED.stopped_at),
                duration_s = coalesce(EXCLUDED.duration_s, r.duration_s),
                size_bytes = coalesce(EXCLUDED.size_bytes, r.size_bytes),
                sha256 = coalesce(EXCLUDED.sha256, r.sha256),
                error = coalesce(EXCLUDED.error, r.error),
                audio_lead_s = coalesce(EXCLUDED.audio_lead_s, r.audio_lead_s)
            WHERE r.deleted_at IS NULL AND (r.state NOT IN ('saved', 'failed', 'deleted')
                                            OR EXCLUDED.state IN ('saved', 'failed'))
            RETURNING r.recording_id)
        UPDATE recording_pauses p SET start_s = greatest(0, round(p.start_s - $18::numeric, 3)),
                                      end_s = greatest(0, round(p.end_s - $18::numeric, 3))
        FROM before
        WHERE p.recording_id = before.recording_id AND before.state NOT IN ('saved', 'failed', 'deleted')
          AND $11 IN ('saved', 'failed') AND coalesce($18::numeric, 0) > 0"""

    call_id: str
    segment: int
    agent: str | None
    agents: tuple[str, ...] = ()
    queue: str | None
    caller_num: str | None
    sides: str
    reason: str
    started_by: str
    file_name: str
    state: str = "recording"
    started_at: datetime
    stopped_at: datetime | None = None
    duration_s: float | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    audio_lead_s: float | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"recording row: state {self.state!r} is not one of {sorted(STATES)}")
        if not is_safe_file_name(self.file_name):
            raise ValueError(f"recording row: {self.file_name!r} is not a recording's file name")
        if self.segment < 1:
            raise ValueError(f"recording row: segment {self.segment} < 1")

    def args(self) -> tuple[Any, ...]:
        values = TableRow.args(self)
        i = self.columns.index("agents")
        return values[:i] + (list(self.agents),) + values[i + 1:]

    def with_agent(self, agent: str) -> RecordingRow:
        """The row with ``agent`` among its agents (itself when already there)."""
        return self if agent in self.agents else replace(self, agents=self.agents + (agent,))

    def stopping(self, at: datetime) -> RecordingRow:
        """Stopped at ``at``: the file is being closed."""
        return replace(self, state="stopped", stopped_at=at)

    def finished(self, *, state: str, stopped_at: datetime, duration_s: float | None, size_bytes: int | None,
                 sha256: str | None, error: str | None, audio_lead_s: float | None) -> RecordingRow:
        """The final facts (``state`` saved or failed)."""
        if state not in FINAL:
            raise ValueError(f"recording row: a finished recording is saved or failed, not {state!r}")
        return replace(self, state=state, stopped_at=stopped_at, duration_s=duration_s, size_bytes=size_bytes,
                       sha256=sha256, error=error, audio_lead_s=audio_lead_s)
