"""Faults: Asterisk dying under live calls, the daemon restarting, PostgreSQL going away."""
from __future__ import annotations

import asyncpg

from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, sandbox, start_daemon


async def _rows(dsn: str, ids: list[str]) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM calls WHERE call_id = ANY($1)", ids)
    finally:
        await conn.close()
    return {r["call_id"]: r for r in rows}


async def test_asterisk_killed_under_live_calls_daemon_reconnects_and_closes_them(daemon, demo_ami, database):
    await set_demo_times(demo_ami, ring=(1, 1), talk=(60, 60))
    placed = [await place_call(demo_ami, caller_num=f"+3360000{n:04d}", caller_name=f"Restart {n}", patience=120)
              for n in range(6)]  # five agents: five talking, one waiting in the queue
    ids = [p.channel_id for p in placed]
    core = daemon.core
    await eventually(lambda: sum(1 for c in core.model.calls.values() if c.state == "talking") == 5, timeout=20,
                     what="five calls talking")
    await eventually(lambda: core.writer.stats.buffered == 0 and len(core.model.calls) == 6, timeout=10)
    opened = await _rows(database, ids)
    assert len(opened) == 6 and all(r["ended_at"] is None for r in opened.values())
    resyncs = core.ami.health.resyncs

    sandbox("kill")
    await eventually(lambda: not core.ami.health.logged_in, timeout=15, what="daemon noticed Asterisk died")
    sandbox("up")
    await eventually(lambda: core.ami.health.logged_in and core.ami.health.resyncs > resyncs, timeout=30,
                     what="daemon reconnected and resynced by itself")

    async def all_closed():
        rows = await _rows(database, ids)
        return rows if all(r["ended_at"] is not None for r in rows.values()) else None

    rows = await eventually(all_closed, timeout=20, what="every call closed in the database")
    for r in rows.values():
        assert r["state"] == "ended" and r["end_estimated"]
        assert r["started_at"] <= r["ended_at"]
    assert core.model.calls == {}

    # And the daemon follows new calls as before.
    await set_demo_times(demo_ami, ring=(1, 1), talk=(1, 1))
    after = await place_call(demo_ami, caller_num="+33699999999", caller_name="After restart", patience=30)

    async def recorded():
        row = (await _rows(database, [after.channel_id])).get(after.channel_id)
        return row if row is not None and row["ended_at"] is not None else None

    row = await eventually(recorded, timeout=30, what="a call after the restart recorded")
    assert row["caller_name"] == "After restart" and not row["end_estimated"]


async def test_calls_that_end_while_the_daemon_is_down_are_closed_when_it_returns(asterisk, demo_ami, database, tmp_path):
    settings = daemon_settings(database, tmp_path)
    first = await start_daemon(settings)
    await set_demo_times(demo_ami, ring=(1, 1), talk=(4, 4))
    placed = [await place_call(demo_ami, caller_num=f"+3370000{n:04d}", caller_name=f"Away {n}", patience=60)
              for n in range(3)]
    ids = [p.channel_id for p in placed]
    await eventually(lambda: sum(1 for c in first.core.model.calls.values() if c.state == "talking") == 3,
                     timeout=20)
    await eventually(lambda: first.core.writer.stats.buffered == 0, timeout=10)
    await first.stop()  # the calls are still up, and open in the database
    assert all(r["ended_at"] is None for r in (await _rows(database, ids)).values())

    await eventually(lambda: _no_channels(), timeout=20, what="the calls ended in Asterisk")
    second = await start_daemon(settings)
    try:
        async def all_closed():
            rows = await _rows(database, ids)
            return rows if len(rows) == 3 and all(r["ended_at"] is not None for r in rows.values()) else None

        rows = await eventually(all_closed, timeout=20, what="calls closed by the returning daemon")
        assert all(r["end_estimated"] for r in rows.values())
    finally:
        await second.stop()


def _no_channels() -> bool:
    import subprocess

    from tests.integration.conftest import SANDBOX

    out = subprocess.run([str(SANDBOX), "cli", "core show channels count"], capture_output=True, text=True,
                         timeout=10).stdout
    return "0 active channels" in out


async def test_postgres_away_during_calls_loses_no_record(asterisk, demo_ami, tmp_path):
    from cti.embedded_pg import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg")
    dsn = await pg.start()
    d = await start_daemon(daemon_settings(dsn, tmp_path))
    try:
        await set_demo_times(demo_ami, ring=(1, 1), talk=(2, 3))
        first = [await place_call(demo_ami, caller_num=f"+3480000{n:04d}", caller_name=f"Before {n}", patience=60)
                 for n in range(4)]
        await eventually(lambda: d.core.writer.stats.written > 0, timeout=10)

        await pg.stop()  # the database goes away with calls up
        during = [await place_call(demo_ami, caller_num=f"+3481000{n:04d}", caller_name=f"During {n}", patience=60)
                  for n in range(6)]
        ids = [p.channel_id for p in first + during]
        # Every call starts and ends while the database is away.
        await eventually(lambda: not d.core.model.calls and d.core.frames_in > 0, timeout=60,
                         what="all calls ended while PostgreSQL is down")
        assert d.core.writer.stats.buffered > 0 and not d.core.writer.stats.connected

        assert await pg.start() == dsn  # back, same place
        await eventually(lambda: d.core.writer.stats.buffered == 0, timeout=30, what="the writer caught up")
        assert d.core.writer.stats.dropped == 0
        rows = await _rows(dsn, ids)
        assert set(rows) == set(ids)
        for p in first + during:
            r = rows[p.channel_id]
            assert r["caller_name"] == p.caller_name and r["ended_at"] is not None and not r["end_estimated"]
        conn = await asyncpg.connect(dsn)
        try:
            timelines = await conn.fetch(
                "SELECT call_id, count(*) AS n, max(seq) AS last FROM call_events"
                " WHERE call_id = ANY($1) GROUP BY call_id", ids)
        finally:
            await conn.close()
        assert len(timelines) == len(ids)
        assert all(t["n"] == t["last"] for t in timelines)  # every event of every call, once
    finally:
        await d.stop()
        await pg.stop()


async def test_an_agent_who_answers_while_the_daemon_is_down_is_named_on_the_call_record(
        asterisk, demo_ami, database, tmp_path):
    from tests.integration.conftest import hangup_all
    from tests.integration.test_acd import call, ended_rows

    hangup_all()
    acd = tmp_path / "acd.toml"
    acd.write_text('skills = ["billing"]\n[[agents]]\nid = "a4"\nname = "Dev"\n'
                   'device = "Local/agent4@cti-demo-agents/n"\nskills = { billing = 5 }\n'
                   'queues = { billing = {} }\nauto_login = true\n'
                   '[[queues]]\nid = "billing"\nring_timeout_s = 15\nwrapup_s = 1\n')
    settings = daemon_settings(database, tmp_path, acd_config=acd, acd_announce_every=0)
    first = await start_daemon(settings)
    try:
        await eventually(lambda: first.acd is not None and first.acd.heartbeats > 0, timeout=10)
        await set_demo_times(demo_ami, ring=(5, 5), talk=(8, 8))  # a4 answers after 5 s of ringing
        caller = await call(demo_ami, "billing", 7)
        await eventually(lambda: caller.channel_id in first.core.model.calls
                         and first.core.model.calls[caller.channel_id].state == "offered", timeout=15,
                         what="a4 ringing")
        first.acd.handover = False  # as if it died while the agent's phone rang
    finally:
        await first.stop()
    await eventually(lambda: _bridged(), timeout=15, what="a4 answered while the daemon was down")
    second = await start_daemon(settings)
    try:
        (row,) = (await ended_rows(database, [caller.channel_id], timeout=40)).values()
        assert row["agent"] == "a4" and row["agent_answered_at"] is not None and not row["abandoned"]
        assert row["answered_at"] <= row["agent_answered_at"] <= row["ended_at"]
    finally:
        await second.stop()
        await set_demo_times(demo_ami)


def _bridged() -> bool:
    """The demo agent a4 (Local/agent4) is up and in a bridge."""
    import subprocess

    from tests.integration.conftest import SANDBOX

    out = subprocess.run([str(SANDBOX), "cli", "core show channels concise"], capture_output=True, text=True,
                         timeout=10).stdout
    for line in out.splitlines():
        f = line.split("!")
        if len(f) > 12 and f[0].startswith("Local/agent4@") and f[4] == "Up" and f[12]:
            return True
    return False
