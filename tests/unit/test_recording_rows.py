"""Recording rows for the store's writer (recording/rows.py): the snapshot a recording's
start and finish share, and how the writer keeps it while PostgreSQL is away.
The statement itself runs against PostgreSQL in tests/integration/test_recording_outage.py."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from cti.writer import Writer
from recording.rows import RecordingRow

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


def start(call_id: str = "1765098000.42", segment: int = 1, agent: str | None = "a1") -> RecordingRow:
    name = f"{call_id}.wav" if segment == 1 else f"{call_id}.{segment}.wav"
    return RecordingRow(call_id=call_id, segment=segment, agent=agent, agents=(agent,) if agent else (), queue="sales",
                        caller_num="+15551234", sides="mixed", reason="policy", started_by="policy",
                        file_name=name, started_at=T0)


def test_the_row_is_a_snapshot_keyed_by_its_file_name_with_the_statements_arguments_in_order():
    row = start()
    assert row.key() == "1765098000.42.wav"
    args = row.args()
    assert len(args) == len(RecordingRow.columns) == 18
    assert max(int(n) for n in re.findall(r"\$(\d+)", RecordingRow.statement)) == 18
    assert args[RecordingRow.columns.index("agents")] == ["a1"]          # a list: asyncpg's text[]
    assert args[RecordingRow.columns.index("file_name")] == "1765098000.42.wav"
    assert args[RecordingRow.columns.index("state")] == "recording"
    assert row.ident() == {"call_id": "1765098000.42", "file_name": "1765098000.42.wav", "state": "recording"}


def test_agents_are_added_once_in_order():
    row = start().with_agent("a2").with_agent("a1").with_agent("a3")
    assert row.agents == ("a1", "a2", "a3")
    assert start(agent=None).with_agent("a9").agents == ("a9",)


def test_stopping_and_finishing_keep_the_starts_facts():
    row = start().with_agent("a2")
    stopped = row.stopping(T0 + timedelta(seconds=9))
    assert (stopped.state, stopped.stopped_at) == ("stopped", T0 + timedelta(seconds=9))
    done = stopped.finished(state="saved", stopped_at=T0 + timedelta(seconds=9), duration_s=8.62, size_bytes=137964,
                            sha256="ab" * 32, error=None, audio_lead_s=0.38)
    assert (done.call_id, done.file_name, done.started_at, done.agents, done.queue) == (
        row.call_id, row.file_name, T0, ("a1", "a2"), "sales")
    assert (done.state, done.duration_s, done.size_bytes, done.audio_lead_s) == ("saved", 8.62, 137964, 0.38)
    assert done.key() == row.key()


@pytest.mark.parametrize("kwargs, field", [
    ({"state": "paused"}, "state"),              # a pause is written straight, never by a snapshot
    ({"state": "deleted"}, "state"),             # only the retention sweep deletes
    ({"file_name": "../etc/passwd.wav"}, "file name"),
    ({"file_name": "x.mp3"}, "file name"),
    ({"segment": 0}, "segment"),
])
def test_a_row_it_cannot_be_is_refused_naming_what(kwargs, field):
    base = start()
    fields = {f: getattr(base, f) for f in RecordingRow.columns} | kwargs
    fields["agents"] = tuple(fields["agents"])
    with pytest.raises(ValueError, match=field):
        RecordingRow(**fields)


def test_a_finish_must_be_final():
    with pytest.raises(ValueError, match="saved or failed"):
        start().finished(state="stopped", stopped_at=T0, duration_s=None, size_bytes=None, sha256=None, error=None,
                         audio_lead_s=None)


def test_while_the_database_is_away_the_writer_keeps_one_row_per_recording_the_latest():
    """The start, the stop and the finish of a recording submitted during an outage
    leave one row waiting: the finish, which holds the start's facts (it cannot be
    overtaken by the start, and it inserts the row if the start's never landed)."""
    w = Writer("postgresql://cti@127.0.0.1:1/none", buffer_max=10)
    a, b = start("1765098000.1"), start("1765098000.2")
    w.submit(a)
    w.submit(b)
    w.submit(a.stopping(T0 + timedelta(seconds=5)))
    done = a.finished(state="saved", stopped_at=T0 + timedelta(seconds=5), duration_s=4.9, size_bytes=78444,
                      sha256="cd" * 32, error=None, audio_lead_s=0.1)
    w.submit(done)
    assert w.pending("recordings") == 2
    assert w.pending("calls") == 0
    assert w.stats.buffered == 2
    waiting = list(w._snapshots.values())
    assert waiting == [done, b]              # the first place kept, the latest row in it
