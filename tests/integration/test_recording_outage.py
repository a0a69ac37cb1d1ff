"""A recording's row survives PostgreSQL going away during the call (recording/rows.py).

The daemon reaches PostgreSQL only through ``bench.pgcut.Link``, a TCP path the test cuts:
nothing passes, no reset (a partition as the daemon sees it). A call recorded by policy
starts and ends while the path is cut, so neither the row's insert nor its finish can
reach the database then; the store's writer keeps the row (one snapshot per recording)
and writes it when the path is restored: the test finds it with its file, duration,
size, checksum and end. The statement's own rules (upsert, never backwards, pauses moved
once) are checked against PostgreSQL directly first."""
from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from bench.pgcut import Link
from cti.demo import place_call, set_demo_times
from cti.migrate import migrate
from recording import recording_db as rec_db
from recording.recorder import RECORDING
from recording.rows import RecordingRow
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_recording import ACD, POLICY, rec_dirs  # noqa: F401  (a fixture)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


def row(call_id: str = "1765098000.7", **kw) -> RecordingRow:
    values = dict(call_id=call_id, segment=1, agent="a1", agents=("a1",), queue="sales", caller_num="+15550001",
                  sides="mixed", reason="policy", started_by="policy", file_name=f"{call_id}.wav", started_at=T0)
    return RecordingRow(**(values | kw))


async def test_the_snapshot_inserts_brings_forward_never_back_and_moves_pauses_once(database):
    await migrate(database)
    conn = await asyncpg.connect(database)
    try:
        async def write(r: RecordingRow) -> None:
            await conn.execute(RecordingRow.statement, *r.args())

        async def stored(name: str):
            return await conn.fetchrow("SELECT * FROM recordings WHERE file_name = $1", name)

        # The start's insert reached the database, with a pause; the finish comes by the writer.
        start = row()
        rid = await rec_db.insert_recording(conn, call_id=start.call_id, segment=1, agent="a1", queue="sales",
                                            caller_num="+15550001", sides="mixed", reason="policy",
                                            started_by="policy", file_name=start.file_name, started_at=T0)
        await rec_db.add_pause(conn, rid, 1, T0 + timedelta(seconds=2), 2.0, "a1")
        await rec_db.end_pause(conn, rid, 1, T0 + timedelta(seconds=4), 4.0, "a1")
        await rec_db.set_state(conn, rid, "paused")
        await write(start)                                  # the start's snapshot again: the state stays
        assert (await stored(start.file_name))["state"] == "paused"
        end = T0 + timedelta(seconds=9)
        await write(start.with_agent("a2").stopping(end))
        done = start.with_agent("a2").finished(state="saved", stopped_at=end, duration_s=8.5, size_bytes=136044,
                                               sha256="ab" * 32, error=None, audio_lead_s=0.5)
        for _ in range(3):                                  # a batch written again (its commit lost)
            await write(done)
        r = await stored(start.file_name)
        assert r["recording_id"] == rid
        assert (r["state"], r["stopped_at"], float(r["duration_s"]), r["size_bytes"], r["sha256"]) == (
            "saved", end, 8.5, 136044, "ab" * 32)
        assert r["agents"] == ["a1", "a2"] and float(r["audio_lead_s"]) == 0.5
        p = await conn.fetchrow("SELECT start_s, end_s FROM recording_pauses WHERE recording_id = $1", rid)
        assert (float(p["start_s"]), float(p["end_s"])) == (1.5, 3.5)      # moved once, not three times
        await write(start.stopping(end + timedelta(seconds=5)))           # a late, older snapshot: no effect
        assert (await stored(start.file_name))["state"] == "saved"

        # Nothing reached the database at the start: the finish alone makes the whole row.
        lost = row("1765098000.8")
        await write(lost.finished(state="failed", stopped_at=end, duration_s=None, size_bytes=None, sha256=None,
                                  error="no audio file", audio_lead_s=None))
        r = await stored(lost.file_name)
        assert (r["call_id"], r["state"], r["started_at"], r["stopped_at"], r["error"], r["queue"]) == (
            "1765098000.8", "failed", T0, end, "no audio file", "sales")

        # A deleted recording is never brought back.
        await rec_db.mark_deleted(conn, r["recording_id"], end, "swept")
        await write(lost.finished(state="saved", stopped_at=end, duration_s=1.0, size_bytes=1, sha256=None,
                                  error=None, audio_lead_s=None))
        assert (await stored(lost.file_name))["state"] == "deleted"
        assert await conn.fetchval("SELECT count(*) FROM recordings") == 2
    finally:
        await conn.close()


@pytest.fixture
async def cut_rec(asterisk, database, tmp_path, demo_ami, rec_dirs):  # noqa: F811
    """A recording daemon whose only path to PostgreSQL is a cuttable link."""
    hangup_all()
    link = Link(database)
    await link.start()
    inside, outside = rec_dirs
    d = await start_daemon(daemon_settings(link.dsn, tmp_path, acd_config=ACD, recording_config=POLICY,
                                           recording_dir=inside, recording_read_dir=outside))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10,
                         what="the ACD announced itself to the dialplan")
        yield d, link
    finally:
        link.restore()
        await d.stop()
        await link.stop()
        await set_demo_times(demo_ami)


async def test_a_recording_row_survives_a_database_outage_during_the_call(cut_rec, demo_ami, database, rec_dirs):  # noqa: F811
    d, link = cut_rec
    service = d.runner.app[RECORDING]
    writer = d.core.writer
    assert writer is not None
    # Talk long enough for the start to run its course with no database: the segment look-up
    # (DB_TIMEOUT) before the dialplan starts MixMonitor, then the insert (DB_TIMEOUT again).
    await set_demo_times(demo_ami, ring=(0, 0), talk=(8, 8))

    link.cut()
    cut_at = time.monotonic()
    p = await place_call(demo_ami, caller_num="+442000000077", caller_name="Rec Cut", context="cti-demo-direct",
                         variables={"CTI_QUEUE": "sales"}, caller_context="cti-demo-talker")
    # The recording started (its file is being written) and its row was deferred to the writer.
    await eventually(lambda: service.deferred >= 1, timeout=30, what="the recording row deferred to the writer")
    assert service.started >= 1
    # The call ends and the file is finished, still without a database: the finish waits too.
    await eventually(lambda: service.finished >= 1, timeout=40, what="the recording finished while cut off")
    assert service.rows_pending() == 1                 # one snapshot per recording, the latest
    assert service.health()["rows_pending"] == 1
    path = rec_dirs[1] / f"{p.channel_id}.wav"
    assert path.exists()
    direct = await asyncpg.connect(database)           # the test's own path is not cut
    try:
        assert await direct.fetchval("SELECT count(*) FROM recordings") == 0
        await asyncio.sleep(3)                          # the writer keeps retrying, the row kept
        assert service.rows_pending() == 1
        assert writer.stats.failures >= 2 and not writer.stats.connected
        down_s = time.monotonic() - cut_at
        assert down_s > 10, down_s                        # a real outage, through the whole 8 s call

        link.restore()

        async def landed():
            return await direct.fetchrow("SELECT * FROM recordings WHERE call_id = $1 AND state = 'saved'",
                                         p.channel_id)

        r = await eventually(landed, timeout=60, interval=0.3, what="the recording row written after the outage")
    finally:
        await direct.close()
    body = path.read_bytes()
    assert r["file_name"] == f"{p.channel_id}.wav" and r["segment"] == 1
    assert (r["agent"], r["queue"], r["reason"], r["caller_num"]) == ("t1", "sales", "policy", "+442000000077")
    assert r["size_bytes"] == len(body) > 44 and r["sha256"] == hashlib.sha256(body).hexdigest()
    assert r["duration_s"] is not None and float(r["duration_s"]) > 5, r["duration_s"]
    assert r["stopped_at"] is not None and r["stopped_at"] > r["started_at"]
    assert r["error"] is None
    await eventually(lambda: service.rows_pending() == 0, timeout=10, what="nothing left in the writer")
