"""Recording against the real sandbox and PostgreSQL: a call answered by a simulated agent who
talks (a 1000 Hz tone) is recorded by policy; its file's length is the talk time; a pause
leaves silence exactly where the stored interval says; the API serves the file with ranges,
to the right people only; the retention sweep deletes back-dated recordings.

Asterisk runs in a chroot: it writes to ``recording_dir`` inside it, the daemon reads the
same directory from the host (``recording_read_dir``)."""
from __future__ import annotations

import array
import asyncio
import hashlib
import math
import os
import shutil
import subprocess
import sys
import uuid
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from cti.demo import place_call, set_demo_times
from cti.migrate import migrate
from tests.integration.conftest import ROOT, daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import add_user, bearer, login, url

ACD = Path(__file__).with_name("recording-acd.toml")
POLICY = Path(__file__).with_name("recording-test.toml")
# The sandbox's root (scripts/asterisk-sandbox): Asterisk's / seen from the host.
CHROOT = Path(os.environ.get("CTI_SANDBOX_ROOT") or "/var/cache/cti/asterisk-root")
RATE = 8000


@pytest.fixture
def rec_dirs():
    """A fresh recording directory: (as Asterisk sees it, as we see it)."""
    inside = f"/var/spool/asterisk/monitor/cti-test-{uuid.uuid4().hex[:10]}"
    outside = CHROOT / inside.lstrip("/")
    try:
        yield inside, outside
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.fixture
async def rec(asterisk, database, tmp_path, demo_ami, rec_dirs):
    hangup_all()
    inside, outside = rec_dirs
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD, recording_config=POLICY,
                                           recording_dir=inside, recording_read_dir=outside))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10,
                     what="the ACD announced itself to the dialplan")
    await add_user(database, "ada", "agent", "t1")
    await add_user(database, "ben", "agent", "t2")
    await add_user(database, "sam", "supervisor")
    await add_user(database, "sue", "supervisor")
    await add_user(database, "quinn", "qa")
    conn = await asyncpg.connect(database)
    await conn.execute("UPDATE users SET team = 'red' WHERE username IN ('ada', 'sam')")
    await conn.execute("UPDATE users SET team = 'blue' WHERE username IN ('ben', 'sue')")
    await conn.close()
    try:
        yield d
    finally:
        await d.stop()
        await set_demo_times(demo_ami)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def fetchrow(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(sql, *args)
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def saved(dsn: str, call_id: str, timeout: float = 40):
    async def done():
        row = await fetchrow(dsn, "SELECT * FROM recordings WHERE call_id = $1 AND state IN ('saved', 'failed')",
                             call_id)
        return row

    return await eventually(done, timeout=timeout, interval=0.3, what=f"the recording of {call_id} finished")


async def talk_time(dsn: str, call_id: str) -> float:
    """From the agent's answer to the agent's hang-up, as the call's events say."""
    async def events():
        rows = await fetch(dsn, "SELECT kind, at FROM call_events WHERE call_id = $1 AND kind IN "
                                "('call.connected', 'call.agent_left') ORDER BY seq", call_id)
        return {r["kind"]: r["at"] for r in rows} if len(rows) == 2 else None

    at = await eventually(events, timeout=10, what="the agent's answer and hang-up stored")
    return (at["call.agent_left"] - at["call.connected"]).total_seconds()


def samples(path: Path) -> array.array:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        data = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder != "little":
        data.byteswap()
    return data


def rms(data: array.array, start_s: float, end_s: float) -> float:
    piece = data[int(start_s * RATE):int(end_s * RATE)]
    assert len(piece) > 0, (start_s, end_s, len(data))
    return math.sqrt(sum(x * x for x in piece) / len(piece))


async def test_answered_call_is_recorded_for_its_talk_time_and_served_with_ranges_to_the_right_people(
        rec, demo_ami, database, http, rec_dirs):
    await set_demo_times(demo_ami, ring=(0, 0), talk=(4, 4))
    p = await place_call(demo_ami, caller_num="+442000000001", caller_name="Rec One", context="cti-demo-direct",
                         variables={"CTI_QUEUE": "sales"}, caller_context="cti-demo-talker")
    row = await saved(database, p.channel_id)
    talk = await talk_time(database, p.channel_id)
    assert row["state"] == "saved" and row["agent"] == "t1" and row["queue"] == "sales"
    assert row["reason"] == "policy" and row["sides"] == "mixed" and row["caller_num"] == "+442000000001"
    path = rec_dirs[1] / row["file_name"]
    assert row["file_name"] == f"{p.channel_id}.wav"
    data = samples(path)
    duration = len(data) / RATE
    # The agent talks (a tone) for DEMO_TALK = 4 s. Between the answer (call.connected) and
    # that, Asterisk's Answer() waits up to 500 ms for media, and nothing flows: MixMonitor
    # writes only what flows, so the file is the 4 s of talk and starts that much later.
    assert abs(duration - 4.0) < 0.25, duration
    assert 0 <= talk - duration < 0.7, (talk, duration)
    # The dialplan starts MixMonitor once the caller is bridged (a bridge feature, not the AMI
    # action): the recording's own start lies between the answer and the first audio, so its
    # lead (start to first audio) is at most the answer's.
    assert 0 <= float(row["audio_lead_s"]) <= talk - duration + 0.1, (row["audio_lead_s"], talk, duration)
    assert abs(float(row["duration_s"]) - duration) < 0.01
    body = path.read_bytes()
    assert row["size_bytes"] == len(body) > 44 and row["sha256"] == hashlib.sha256(body).hexdigest()
    assert rms(data, 0.3, duration - 0.3) > 1000          # the agent's tone is there

    rid = row["recording_id"]
    ada = bearer(await login(http, rec, "ada"))
    async with http.get(url(rec, "/api/recordings"), headers=ada) as r:
        assert r.status == 200
        assert [x["recording_id"] for x in (await r.json())["recordings"]] == [rid]
    async with http.get(url(rec, f"/api/recordings/{rid}/audio"), headers={**ada, "Range": "bytes=100-1099"}) as r:
        assert r.status == 206, await r.text()
        assert r.headers["Content-Range"] == f"bytes 100-1099/{len(body)}"
        assert await r.read() == body[100:1100]
    async with http.get(url(rec, f"/api/recordings/{rid}/audio?download=true"), headers=ada) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
        assert r.headers["Content-Disposition"].startswith("attachment")
        assert await r.read() == body

    # Agent B sees nothing of it; their team's supervisor neither; A's supervisor and QA do.
    ben = bearer(await login(http, rec, "ben"))
    for who, expected in ((ben, 404), (bearer(await login(http, rec, "sue")), 404),
                          (bearer(await login(http, rec, "sam")), 206), (bearer(await login(http, rec, "quinn")), 206)):
        async with http.get(url(rec, f"/api/recordings/{rid}/audio"), headers={**who, "Range": "bytes=0-9"}) as r:
            assert r.status == expected
            if expected == 206:
                assert await r.read() == body[:10]
    async with http.get(url(rec, "/api/recordings"), headers=ben) as r:
        assert (await r.json())["recordings"] == []

    # Paths never come from the request.
    for path_try in ("/api/recordings/..%2F..%2F..%2Fetc%2Fpasswd/audio", f"/api/recordings/{rid}%2F..%2F..%2Fetc%2Fpasswd",
                     "/api/recordings/%2e%2e/%2e%2e/etc/passwd", f"/api/recordings/{rid}/audio?file=../../../etc/passwd",
                     f"/api/recordings/{rid}/../../../../etc/passwd", "/api/recordings/99999999999999999999999/audio"):
        async with http.get(url(rec, path_try), headers=ada) as r:
            assert 400 <= r.status < 500, (path_try, r.status)
            assert b"root:" not in await r.read()

    access = await fetch(database, "SELECT principal, action, byte_range, outcome FROM recording_access "
                                   "WHERE recording_id = $1 ORDER BY access_id", rid)
    assert [(a["principal"], a["outcome"]) for a in access] == [
        ("session:ada", "served"), ("session:ada", "served"), ("session:ben", "refused"),
        ("session:sue", "refused"), ("session:sam", "served"), ("session:quinn", "served")]
    assert access[0]["byte_range"] == "bytes=100-1099" and access[1]["action"] == "download"


async def test_pause_and_resume_store_the_interval_and_leave_silence_there(rec, demo_ami, database, http):
    await set_demo_times(demo_ami, ring=(0, 0), talk=(7, 7))
    p = await place_call(demo_ami, caller_num="+442000000002", caller_name="Rec Two", context="cti-demo-direct",
                         variables={"CTI_QUEUE": "sales"}, caller_context="cti-demo-talker")
    ada = bearer(await login(http, rec, "ada"))
    ben = bearer(await login(http, rec, "ben"))

    async def recording():
        async with http.get(url(rec, f"/api/calls/{p.channel_id}/recording"), headers=ada) as r:
            return r.status == 200 and (await r.json())["recording"]

    await eventually(recording, timeout=20, what="the call is being recorded")
    await asyncio.sleep(1.5)
    async with http.post(url(rec, f"/api/calls/{p.channel_id}/recording"), headers=ben, json={"action": "pause"}) as r:
        assert r.status == 403          # not B's call
    async with http.post(url(rec, f"/api/calls/{p.channel_id}/recording"), headers=ada,
                         json={"action": "pause\r\nAction: Hangup"}) as r:
        body = await r.json()
        assert r.status == 422 and body["details"][0]["field"] == "body.action"
    async with http.post(url(rec, "/api/calls/no-such-call/recording"), headers=ada, json={"action": "pause"}) as r:
        assert r.status == 404 and (await r.json())["error_id"] == "no_live_call"
    async with http.post(url(rec, f"/api/calls/{p.channel_id}/recording"), headers=ada, json={"action": "pause"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == "paused"
    async with http.post(url(rec, f"/api/calls/{p.channel_id}/recording"), headers=ada, json={"action": "pause"}) as r:
        assert r.status == 409 and (await r.json())["error_id"] == "recording_state"
    await asyncio.sleep(2.0)
    async with http.post(url(rec, f"/api/calls/{p.channel_id}/recording"), headers=ada, json={"action": "resume"}) as r:
        assert r.status == 200 and (await r.json())["state"] == "recording"
    row = await saved(database, p.channel_id)
    (pause,) = await fetch(database, "SELECT * FROM recording_pauses WHERE recording_id = $1", row["recording_id"])
    start, end = float(pause["start_s"]), float(pause["end_s"])
    assert 0.5 < start < 3.0 and 1.8 < end - start < 2.5
    assert pause["paused_by"] == pause["resumed_by"] == "session:ada"
    data = samples(Path(rec.settings.recording_read_dir) / row["file_name"])
    duration = len(data) / RATE
    # MixMonitorMute writes zeros in place of both parties' audio: the file keeps the call's
    # length (7 s of talk) and the stored stretch, in file time, holds nothing but zeros;
    # both tones are there up to it and again after it.
    assert abs(duration - float(row["duration_s"])) < 0.01 and abs(duration - 7.0) < 0.25
    piece = data[int((start + 0.1) * RATE):int((end - 0.1) * RATE)]
    assert len(piece) > 1.5 * RATE and max(abs(x) for x in piece) == 0
    assert rms(data, 0.2, start - 0.1) > 5000 and rms(data, end + 0.1, end + 1.0) > 5000
    kinds = [r["kind"] for r in await fetch(database, "SELECT kind FROM call_events WHERE call_id = $1 ORDER BY seq",
                                            p.channel_id)]
    assert [k for k in kinds if k.startswith("recording.")] == ["recording.started", "recording.paused",
                                                                  "recording.resumed"]


# -- retention and QA: back-dated rows and files, no call needed ------------------------------

async def add_recording(conn, *, call_id: str, agent: str | None, queue: str | None, days_ago: float,
                        read_dir: Path | None = None, state: str = "saved") -> tuple[int, Path | None]:
    started = datetime.now(timezone.utc) - timedelta(days=days_ago)
    name = f"{call_id}.wav"
    rid = await conn.fetchval(
        "INSERT INTO recordings (call_id, agent, agents, queue, sides, reason, started_by, file_name, state, "
        "started_at, stopped_at, duration_s, size_bytes) VALUES ($1, $2, CASE WHEN $2::text IS NULL THEN "
        "'{}'::text[] ELSE ARRAY[$2::text] END, $3, 'mixed', 'policy', 'policy', $4, $5, $6, $6::timestamptz + interval '1 minute', "
        "60, 1044) RETURNING recording_id", call_id, agent, queue, name, state, started)
    path = None
    if read_dir is not None:
        path = read_dir / name
        path.write_bytes(b"RIFF" + bytes(1040))
    return rid, path


def sweep_cli(dsn: str, read_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CTI_DATABASE_URL": dsn, "CTI_LOG_FORMAT": "json", "CTI_RECORDING_CONFIG": str(POLICY),
           "CTI_RECORDING_READ_DIR": str(read_dir)}
    return subprocess.run([sys.executable, "-m", "server.cli", "recordings", "sweep", *args], text=True,
                          capture_output=True, timeout=60, cwd=ROOT, env=env)


async def test_retention_sweep_deletes_back_dated_recordings_per_queue_and_reports_missing_files(
        database, tmp_path):
    await migrate(database)
    read_dir = tmp_path / "rec"
    read_dir.mkdir()
    conn = await asyncpg.connect(database)
    try:
        old_sales, old_sales_file = await add_recording(conn, call_id="c-sales-40", agent="t1", queue="sales",
                                                        days_ago=40, read_dir=read_dir)       # 30 days: goes
        new_sales, new_sales_file = await add_recording(conn, call_id="c-sales-10", agent="t1", queue="sales",
                                                        days_ago=10, read_dir=read_dir)       # kept
        billing, billing_file = await add_recording(conn, call_id="c-billing-40", agent="t2", queue="billing",
                                                    days_ago=40, read_dir=read_dir)           # 365 days: kept
        other, other_file = await add_recording(conn, call_id="c-other-100", agent="t2", queue="support",
                                                days_ago=100, read_dir=read_dir)              # default 90: goes
        gone, _ = await add_recording(conn, call_id="c-gone-100", agent="t2", queue=None, days_ago=100)  # no file
    finally:
        await conn.close()

    dry = sweep_cli(database, read_dir, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert old_sales_file.exists() and other_file.exists()
    assert f"would delete {old_sales} c-sales-40.wav" in dry.stdout

    run = sweep_cli(database, read_dir)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert f"deleted {old_sales} c-sales-40.wav" in lines and f"deleted {other} c-other-100.wav" in lines
    assert any(line.startswith(f"missing {gone} c-gone-100.wav") for line in lines)
    assert lines[-1].startswith("checked 4, deleted 2, missing 1, failed 0")  # only those past 30 days are read
    assert not old_sales_file.exists() and not other_file.exists()
    assert new_sales_file.exists() and billing_file.exists()
    rows = {r["recording_id"]: r for r in await fetch(database, "SELECT * FROM recordings")}
    assert {rid for rid, r in rows.items() if r["state"] == "deleted"} == {old_sales, other, gone}
    assert all(rows[rid]["deleted_at"] is not None for rid in (old_sales, other, gone))
    assert rows[gone]["error"] == "file missing at the retention sweep"
    assert rows[new_sales]["deleted_at"] is None and rows[billing]["state"] == "saved"

    again = sweep_cli(database, read_dir)
    # Only billing's (past the shortest retention, within its own) is looked at again; nothing goes.
    assert again.returncode == 0 and again.stdout.splitlines()[-1].startswith("checked 1, deleted 0, missing 0, failed 0")


async def test_deleted_recording_answers_gone_and_qa_samples_scores_and_shows_per_agent(rec, database, http):
    conn = await asyncpg.connect(database)
    try:
        deleted, _ = await add_recording(conn, call_id="c-deleted", agent="t1", queue="sales", days_ago=50,
                                         state="deleted")
        await conn.execute("UPDATE recordings SET deleted_at = now() WHERE recording_id = $1", deleted)
        for i in range(10):
            await add_recording(conn, call_id=f"c-t1-{i}", agent="t1", queue="sales", days_ago=1)
        for i in range(4):
            await add_recording(conn, call_id=f"c-t2-{i}", agent="t2", queue="billing", days_ago=1)
    finally:
        await conn.close()
    ada, quinn = bearer(await login(http, rec, "ada")), bearer(await login(http, rec, "quinn"))
    async with http.get(url(rec, f"/api/recordings/{deleted}/audio"), headers=ada) as r:
        assert r.status == 410 and (await r.json())["error_id"] == "deleted"
    async with http.get(url(rec, "/api/recordings?queue=billing"), headers=ada) as r:
        assert (await r.json())["recordings"] == []              # t2's, not hers
    async with http.get(url(rec, "/api/recordings?queue=billing&caller=44"), headers=quinn) as r:
        assert r.status == 200 and (await r.json())["recordings"] == []   # no caller numbers on these rows
    async with http.get(url(rec, "/api/recordings?queue=billing"), headers=quinn) as r:
        assert len((await r.json())["recordings"]) == 4

    async with http.post(url(rec, "/api/qa/sample"), headers=ada) as r:
        assert r.status == 403
    async with http.post(url(rec, "/api/qa/sample"), headers=quinn) as r:
        assert await r.json() == {"considered": 14, "picked": 7}          # share 0.5: 5 of t1's, 2 of t2's
    async with http.post(url(rec, "/api/qa/sample"), headers=quinn) as r:
        assert await r.json() == {"considered": 0, "picked": 0}           # each recording is looked at once
    async with http.get(url(rec, "/api/qa/reviews?state=pending"), headers=quinn) as r:
        pending = (await r.json())["reviews"]
    assert sorted(x["agent"] for x in pending) == ["t1"] * 5 + ["t2"] * 2

    review = next(x for x in pending if x["agent"] == "t1")
    score_url = url(rec, f"/api/qa/reviews/{review['review_id']}/score")
    async with http.post(score_url, headers=quinn, json={"points": {"greeting": 7, "tone": 1}}) as r:
        body = await r.json()
        assert r.status == 422 and body["error_id"] == "invalid_score"
        assert "tone: not on the form" in body["message"] and "resolution: missing" in body["message"]
    async with http.post(score_url, headers=quinn, json={"points": {"greeting": 4, "resolution": 5},
                                                          "comment": "good start"}) as r:
        assert r.status == 200, await r.text()
        scored = await r.json()
    assert scored["state"] == "scored" and scored["total"] == 57.5 and scored["reviewer"] == "session:quinn"
    async with http.get(url(rec, "/api/qa/agents"), headers=ada) as r:
        mine = (await r.json())["agents"]
    assert mine == [{"agent": "t1", "scored": 1, "pending": 4, "average": 57.5, "lowest": 57.5, "highest": 57.5,
                     "last_scored_at": mine[0]["last_scored_at"]}]
    async with http.get(url(rec, "/api/qa/agents"), headers=quinn) as r:
        assert [a["agent"] for a in (await r.json())["agents"]] == ["t1", "t2"]
