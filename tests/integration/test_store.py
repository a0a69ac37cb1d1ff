"""The PostgreSQL store against real servers.

Uses the server on 127.0.0.1:5432 (user postgres, trust; ``CTI_TEST_PG_ADMIN``
to point elsewhere) or, when it is unreachable, an embedded one. Each test
creates and drops its own database, so tests can run in parallel and leave
nothing. The outage test stops and restarts a throwaway embedded server of its
own: a real outage, not a simulated one.
"""
from __future__ import annotations

import asyncio
import math
import os
import secrets
import shutil
import socket
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
import structlog

from acd.rows import AgentRow, AgentStateRow
from cti.call_db import CallEventRow, CallRow, close_calls, fetch_call, open_calls
from cti.config import Settings
from cti.embedded_pg import EmbeddedPostgres, start_embedded
from cti.errors import DatabaseUnavailable, EmbeddedPgError
from cti.migrate import migrate, migrations
from cti.pg import keep_session
from cti.writer import Writer

ADMIN_DSN = os.environ.get("CTI_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


# -- fixtures ------------------------------------------------------------------


def _tcp_reachable(dsn: str) -> bool:
    parts = urlsplit(dsn)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def _with_database(dsn: str, name: str, password: str | None = None) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", parts.query, parts.fragment))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pg_admin() -> AsyncIterator[str]:
    """An admin DSN: the local server, else an embedded one, else skip."""
    if _tcp_reachable(ADMIN_DSN):
        yield ADMIN_DSN
        return
    tmp = Path(tempfile.mkdtemp(prefix="cti-pg-"))
    pg = EmbeddedPostgres(tmp / "pg", start_timeout=30)
    try:
        await pg.start()
    except EmbeddedPgError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"no PostgreSQL: {ADMIN_DSN} is unreachable and the embedded server failed: {exc}")
    try:
        yield pg.dsn
    finally:
        await pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _drop_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def new_db(pg_admin: str) -> AsyncIterator[tuple[str, Callable[[], object]]]:
    """(DSN, create) of a database that does not exist until ``await create()``."""
    name = f"cti_test_{secrets.token_hex(6)}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_admin, timeout=10)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    yield _with_database(pg_admin, name), create
    await _drop_database(pg_admin, name)


@pytest.fixture
async def db(new_db: tuple[str, Callable[[], object]]) -> str:
    """The DSN of a fresh, empty database."""
    dsn, create = new_db
    await create()
    return dsn


@pytest.fixture
async def schema(db: str) -> str:
    """The DSN of a fresh, migrated database."""
    await migrate(db)
    return db


@pytest.fixture
def pg_tmp() -> AsyncIterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cti-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def embedded(pg_tmp: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A throwaway embedded server of the test's own."""
    pg = EmbeddedPostgres(pg_tmp / "pg", start_timeout=20)
    try:
        await pg.start()
    except EmbeddedPgError as exc:
        pytest.skip(f"the embedded PostgreSQL cannot start here: {exc}")
    yield pg
    await pg.stop()


# -- helpers ---------------------------------------------------------------------


def call(call_id: str, state: str = "ringing", **kw: object) -> CallRow:
    fields: dict[str, object] = {"direction": "inbound", "caller_num": "+3225550100", "started_at": T0}
    fields.update(kw)
    return CallRow(call_id=call_id, state=state, **fields)  # type: ignore[arg-type]


def event(call_id: str, seq: int, kind: str = "call.state", **data: object) -> CallEventRow:
    return CallEventRow(call_id=call_id, seq=seq, at=T0 + timedelta(seconds=seq), kind=kind, data=data)


def ended(call_id: str, secs: float = 90, **kw: object) -> CallRow:
    fields: dict[str, object] = {
        "answered_at": T0 + timedelta(seconds=10), "agent": "a-1",
        "ended_at": T0 + timedelta(seconds=secs), "hangup_cause": 16,
        "hangup_cause_txt": "Normal Clearing",
    }
    fields.update(kw)
    return call(call_id, "ended", **fields)


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def rows(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- migrations -------------------------------------------------------------------


ALL_VERSIONS = [version for version, _ in migrations()]


async def test_migrate_twice_is_a_noop_the_second_time(db: str) -> None:
    assert await migrate(db) == ALL_VERSIONS
    assert ALL_VERSIONS[:2] == ["0001", "0002"]
    assert await migrate(db) == []
    versions = await rows(db, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == ALL_VERSIONS
    tables = await rows(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    assert {"agent_states", "agents", "call_events", "calls", "schema_migrations"} <= {
        r["tablename"] for r in tables}


async def test_two_processes_migrating_at_once_apply_each_migration_once(db: str) -> None:
    results = await asyncio.gather(migrate(db), migrate(db))
    assert sorted(results) == [[], ALL_VERSIONS]


# -- what the upsert keeps -------------------------------------------------------------


async def test_durations_are_computed_from_the_timestamps(schema: str) -> None:
    w = Writer(schema)
    await w.start()
    w.submit(ended("c1", secs=95.5))
    w.submit(call("c2", "ended", ended_at=T0 + timedelta(seconds=30)))   # never answered
    w.submit(call("c3", "talking", answered_at=T0))                     # still open
    assert await w.drain(10)
    await w.stop()
    conn = await asyncpg.connect(schema)
    try:
        c1, c2, c3 = [await fetch_call(conn, c) for c in ("c1", "c2", "c3")]
    finally:
        await conn.close()
    assert (c1["duration_s"], c1["billsec_s"]) == (95.5, 85.5)
    assert (c2["duration_s"], c2["billsec_s"]) == (30, 0)
    assert (c3["duration_s"], c3["billsec_s"]) == (None, None)


async def test_a_later_snapshot_never_unends_a_call_nor_forgets_a_timestamp(schema: str) -> None:
    w = Writer(schema)
    await w.start()
    w.submit(call("c1", "talking", answered_at=T0 + timedelta(seconds=5), queue="sales"))
    assert await w.drain(10)
    w.submit(call("c1", "talking", legs=3))            # a thinner snapshot (after a resync)
    assert await w.drain(10)
    stored = await rows(schema, "SELECT * FROM calls")
    assert stored[0]["answered_at"] == T0 + timedelta(seconds=5)
    assert (stored[0]["queue"], stored[0]["legs"]) == ("sales", 3)
    w.submit(ended("c1"))
    assert await w.drain(10)
    w.submit(call("c1", "talking"))                    # late: must not reopen it
    assert await w.drain(10)
    await w.stop()
    (stored,) = await rows(schema, "SELECT * FROM calls")
    assert (stored["state"], stored["ended_at"]) == ("ended", T0 + timedelta(seconds=90))
    assert stored["hangup_cause"] == 16


async def test_a_restarted_daemons_estimates_never_replace_the_answers_already_stored(schema: str) -> None:
    w = Writer(schema)
    await w.start()
    for cid in ("c1", "c2"):
        w.submit(call(cid, "talking", answered_at=T0 + timedelta(seconds=1), agent="a-1",
                      agent_answered_at=T0 + timedelta(seconds=3)))
    assert await w.drain(10)
    # After a restart the model estimates: answered when the leg was first listed,
    # the agent found talking at the resync.
    w.submit(call("c1", "talking", answered_at=T0 + timedelta(seconds=2), agent="a-1",
                  agent_answered_at=T0 + timedelta(seconds=60)))
    # A new agent is a new answer (a transfer): it replaces the first.
    w.submit(call("c2", "talking", answered_at=T0 + timedelta(seconds=1), agent="a-2",
                  agent_answered_at=T0 + timedelta(seconds=30)))
    w.submit(call("c3", "talking", answered_at=T0 + timedelta(seconds=2), agent="a-3",
                  agent_answered_at=T0 + timedelta(seconds=60)))   # nothing stored yet: taken as is
    assert await w.drain(10)
    await w.stop()
    got = {r["call_id"]: r for r in await rows(schema, "SELECT * FROM calls")}
    assert (got["c1"]["answered_at"], got["c1"]["agent"], got["c1"]["agent_answered_at"]) == (
        T0 + timedelta(seconds=1), "a-1", T0 + timedelta(seconds=3))
    assert (got["c2"]["agent"], got["c2"]["agent_answered_at"]) == ("a-2", T0 + timedelta(seconds=30))
    assert (got["c3"]["answered_at"], got["c3"]["agent_answered_at"]) == (
        T0 + timedelta(seconds=2), T0 + timedelta(seconds=60))


async def test_open_calls_are_closed_as_estimated_and_a_real_end_replaces_the_estimate(schema: str) -> None:
    w = Writer(schema)
    await w.start()
    for cid in ("c1", "c2", "c3"):
        w.submit(call(cid, "talking"))
    w.submit(ended("c3"))
    assert await w.drain(10)
    pool = await asyncpg.create_pool(schema, min_size=1, max_size=2)
    try:
        assert sorted(await open_calls(pool)) == ["c1", "c2"]
        closed = await close_calls(pool, ["c1", "c2", "c3"], T0 + timedelta(minutes=5), "daemon restart")
        assert sorted(closed) == ["c1", "c2"]
        assert await open_calls(pool) == []
        c1 = await fetch_call(pool, "c1")
        assert c1 is not None
        assert (c1["state"], c1["end_estimated"], c1["hangup_cause_txt"]) == ("ended", True, "daemon restart")
        assert c1["duration_s"] == 300
        # An estimated end never overwrites a real one; a real end overwrites an estimate.
        w.submit(ended("c3", secs=999, end_estimated=True))
        w.submit(ended("c1", secs=60))
        assert await w.drain(10)
        c1, c3 = await fetch_call(pool, "c1"), await fetch_call(pool, "c3")
        assert c1 is not None and c3 is not None
        assert (c1["end_estimated"], c1["duration_s"], c1["hangup_cause_txt"]) == (False, 60, "Normal Clearing")
        assert (c3["end_estimated"], c3["duration_s"]) == (False, 90)
        assert await fetch_call(pool, "nope") is None
    finally:
        await pool.close()
        await w.stop()


async def test_events_and_agents_are_idempotent(schema: str) -> None:
    w = Writer(schema)
    await w.start()
    w.submit(event("c1", 1, "call.started", channel="PJSIP/alice-0001"))
    w.submit(event("c1", 1, "call.started", channel="replayed"))
    w.submit(AgentRow(agent_id="a-1", name="Alice", device="PJSIP/alice", updated_at=T0))
    assert await w.drain(10)
    w.submit(AgentRow(agent_id="a-1", name="Alice B.", device="PJSIP/desk-2", updated_at=T0 + timedelta(hours=1)))
    assert await w.drain(10)
    w.submit(AgentRow(agent_id="a-1", name="stale", device=None, updated_at=T0))   # older: ignored
    assert await w.drain(10)
    await w.stop()
    evs = await rows(schema, "SELECT * FROM call_events")
    assert [(r["seq"], r["kind"]) for r in evs] == [(1, "call.started")]
    assert evs[0]["data"] == '{"channel": "PJSIP/alice-0001"}'
    (agent,) = await rows(schema, "SELECT * FROM agents")
    assert (agent["name"], agent["device"]) == ("Alice B.", "PJSIP/desk-2")


# -- the writer when things go wrong -----------------------------------------------------


async def test_snapshots_of_one_call_coalesce_while_the_database_is_down(
    new_db: tuple[str, Callable[[], object]],
) -> None:
    dsn, create = new_db                 # the database does not exist yet: every attempt fails
    w = Writer(dsn, backoff_max=0.2)
    for legs in range(1, 101):
        w.submit(call("c1", "queued", legs=legs))
    assert w.stats.buffered == 1
    await w.start()
    await eventually(lambda: w.stats.failures >= 2)
    for legs in range(101, 201):
        w.submit(call("c1", "talking", legs=legs))
    # One pending snapshot (plus, at most, the one an attempt has in flight).
    assert w.stats.buffered <= 2
    w.submit(ended("c1", legs=201))
    assert not w.stats.connected and w.stats.written == 0
    await create()
    await migrate(dsn)
    assert await w.drain(10)
    await w.stop()
    (stored,) = await rows(dsn, "SELECT * FROM calls")
    assert (stored["state"], stored["legs"]) == ("ended", 201)
    assert w.stats.written <= 2 and w.stats.dropped == 0


async def test_after_a_real_postgres_outage_no_call_record_is_missing(embedded: EmbeddedPostgres) -> None:
    """PostgreSQL stopped for a while during calls: once it is back, every row is there."""
    dsn = embedded.dsn
    await migrate(dsn)
    w = Writer(dsn, timeout=2.0, backoff_max=0.3, batch_max=50)
    with structlog.testing.capture_logs() as logs:
        await w.start()
        for i in range(20):                               # calls in progress before the outage
            w.submit(call(f"c{i}", "ringing"))
            w.submit(event(f"c{i}", 1, "call.started"))
        assert await w.drain(10)
        assert w.stats.connected

        await embedded.stop()                             # the outage: the open connection dies
        for i in range(20):
            w.submit(call(f"c{i}", "talking", answered_at=T0 + timedelta(seconds=5)))
            w.submit(event(f"c{i}", 2, "call.answered"))
        await eventually(lambda: w.stats.failures >= 2 and not w.stats.connected)
        for i in range(20):
            w.submit(ended(f"c{i}", secs=60 + i))
            w.submit(event(f"c{i}", 3, "call.ended", cause=16))
        for i in range(20, 30):                           # calls that start and end during it
            w.submit(ended(f"c{i}", secs=30))
            w.submit(event(f"c{i}", 1, "call.started"))
            w.submit(event(f"c{i}", 2, "call.ended", cause=16))
        # While down: one snapshot per call and every event wait, nothing is dropped.
        assert w.stats.buffered == 30 + 20 * 2 + 10 * 2
        assert w.stats.written == 40

        await embedded.start()                            # back
        assert await w.drain(15)
        await w.stop()

    assert w.stats.dropped == 0 and w.stats.rejected == 0
    calls = await rows(dsn, "SELECT call_id, state, duration_s FROM calls ORDER BY call_id")
    assert sorted(r["call_id"] for r in calls) == sorted(f"c{i}" for i in range(30))
    assert all(r["state"] == "ended" for r in calls)
    assert {r["call_id"]: r["duration_s"] for r in calls}["c7"] == 67
    evs = await rows(dsn, "SELECT call_id, seq FROM call_events")
    assert len(evs) == 20 * 3 + 10 * 2
    names = [e["event"] for e in logs]
    assert "store.unavailable" in names and "store.recovered" in names


async def test_a_full_buffer_drops_newest_events_first_keeps_calls_and_logs_loudly(schema: str) -> None:
    clock = FakeClock()
    w = Writer(schema, buffer_max=10, clock=clock)          # not started: nothing drains
    with structlog.testing.capture_logs() as logs:
        for i in range(3):
            w.submit(call(f"c{i}"))
        for seq in range(1, 8):
            w.submit(event("c0", seq))                       # full now: 3 calls, 7 events
        for seq in range(8, 13):
            w.submit(event("c0", seq))                       # 5 events dropped
        w.submit(call("c3"))                                 # room made: event 7 goes
        w.submit(call("c4"))                                 # and event 6
        w.submit(call("c0", "talking"))                      # coalesced: no room needed
        assert (w.stats.buffered, w.stats.dropped) == (10, 7)
        clock.now += 11
        w.submit(event("c0", 99))                            # dropped: logged again after 10 s
    errors = [e for e in logs if e["event"] == "store.buffer_full"]
    assert [e["log_level"] for e in errors] == ["error", "error"]
    assert errors[0]["dropped"] == 1                          # the first drop is logged at once
    assert errors[1]["dropped"] == 7 and errors[1]["dropped_total"] == 8
    assert errors[1]["dropped_calls"] == 0

    await w.start()
    assert await w.drain(10)
    await w.stop()
    stored = await rows(schema, "SELECT call_id, state FROM calls ORDER BY call_id")
    assert [(r["call_id"], r["state"]) for r in stored] == [
        ("c0", "talking"), ("c1", "ringing"), ("c2", "ringing"), ("c3", "ringing"), ("c4", "ringing")]
    seqs = await rows(schema, "SELECT seq FROM call_events ORDER BY seq")
    assert [r["seq"] for r in seqs] == [1, 2, 3, 4, 5]         # the oldest events are kept


async def test_a_full_buffer_of_calls_refuses_a_new_call_and_counts_it() -> None:
    w = Writer("postgresql://postgres@127.0.0.1:1/none", buffer_max=2)
    with structlog.testing.capture_logs() as logs:
        w.submit(call("c1"))
        w.submit(call("c2"))
        w.submit(call("c3"))
        w.submit(call("c1", "talking"))                      # an update of a buffered call fits
    assert (w.stats.buffered, w.stats.dropped) == (2, 1)
    assert logs[0]["event"] == "store.buffer_full" and logs[0]["dropped_calls"] == 1


async def test_rows_the_database_refuses_are_dropped_alone_without_wedging_the_rest(schema: str) -> None:
    clock = FakeClock()
    w = Writer(schema, clock=clock)
    with structlog.testing.capture_logs() as logs:
        w.submit(call("good-1"))
        w.submit(call("bad-state", "parked"))                               # check violation
        w.submit(call("bad-text", caller_name="Bob\x00"))                   # invalid text
        w.submit(call("good-2"))
        w.submit(event("good-1", 1, "call.started"))
        w.submit(event("bad-json", 1, "call.state", wait=math.nan))         # not JSON
        w.submit(event("good-1", 2, "call.ended"))
        await w.start()
        assert await w.drain(10)
        clock.now += 5
        w.submit(call("bad-again", "parked"))
        w.submit(call("good-3"))
        assert await w.drain(10)
        await w.stop()
    assert (w.stats.rejected, w.stats.written) == (4, 5)
    stored = await rows(schema, "SELECT call_id FROM calls ORDER BY call_id")
    assert [r["call_id"] for r in stored] == ["good-1", "good-2", "good-3"]
    evs = await rows(schema, "SELECT seq FROM call_events ORDER BY seq")
    assert [r["seq"] for r in evs] == [1, 2]
    rejected = [e for e in logs if e["event"] == "store.row_rejected"]
    assert rejected and all(e["log_level"] == "error" for e in rejected)
    assert {e["call_id"] for e in rejected} >= {"bad-again"}
    # The row is identified, never dumped (a DETAIL would quote the caller's data).
    assert not any("+3225550100" in repr(e) or "Failing row" in repr(e) for e in logs)


async def test_the_dsn_password_never_appears_in_logs_stats_or_repr(schema: str) -> None:
    password = "s3cret-Pw-4711"
    unreachable = f"postgresql://postgres:{password}@127.0.0.1:1/cti"
    bad_port = f"postgresql://postgres:{password}@localhost:notaport/cti"
    working = _with_database(schema, urlsplit(schema).path.lstrip("/"), password=password)
    with structlog.testing.capture_logs() as logs:
        writers = [Writer(d, backoff_max=0.1) for d in (unreachable, bad_port, working)]
        for w in writers:
            await w.start()
            w.submit(call("c1"))
        await eventually(lambda: writers[0].stats.failures >= 2 and writers[1].stats.failures >= 2)
        assert await writers[2].drain(10)
        for w in writers:
            await w.stop(flush_timeout=0.2)
        with pytest.raises(DatabaseUnavailable) as exc_info:
            await migrate(unreachable, connect_timeout=2)
    assert writers[2].stats.written == 1 and writers[2].stats.connected
    assert writers[0].stats.last_error and writers[1].stats.last_error
    shown = [repr(logs), str(exc_info.value)] + [repr(w) + repr(w.stats) for w in writers]
    assert not any(password in text for text in shown)
    assert any(e["event"] == "store.unflushed" for e in logs)


async def test_a_server_that_never_answers_costs_one_bounded_attempt_at_a_time() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()              # accept, then say nothing until the client leaves
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    w = Writer(f"postgresql://postgres@127.0.0.1:{port}/cti", timeout=0.2, backoff_max=0.05)
    try:
        await w.start()
        w.submit(call("c1"))
        await eventually(lambda: w.stats.failures >= 3, timeout=5)
        assert w.stats.last_error is not None and "Timeout" in w.stats.last_error
        assert w.stats.buffered == 1
    finally:
        await w.stop(flush_timeout=0.1)
        server.close()
        await server.wait_closed()


async def test_stop_flushes_what_is_buffered(schema: str) -> None:
    w = Writer(schema, batch_max=7)
    await w.start()
    for i in range(50):
        w.submit(call(f"c{i}"))
    await w.stop(flush_timeout=10)
    assert w.stats.buffered == 0
    assert len(await rows(schema, "SELECT 1 FROM calls")) == 50


async def test_stop_returns_within_its_timeout_while_the_database_is_down() -> None:
    w = Writer("postgresql://postgres@127.0.0.1:1/none", timeout=1.0)
    await w.start()
    w.submit(call("c1"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with structlog.testing.capture_logs() as logs:
        await w.stop(flush_timeout=0.5)
    assert loop.time() - started < 2
    assert [e for e in logs if e["event"] == "store.unflushed"][0]["rows"] == 1


# -- the embedded server ---------------------------------------------------------------


async def test_the_embedded_server_starts_gives_a_working_dsn_and_keeps_its_data(pg_tmp: Path) -> None:
    settings = Settings(state_dir=pg_tmp / "state")
    try:
        pg = await start_embedded(settings, start_timeout=20)
    except EmbeddedPgError as exc:
        pytest.skip(f"the embedded PostgreSQL cannot start here: {exc}")
    try:
        assert pg.pgdata == pg_tmp / "state" / "pg"
        conn = await asyncpg.connect(pg.dsn, timeout=5)
        try:
            assert await conn.fetchval("SHOW listen_addresses") == ""      # no TCP at all
            await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
        await pg.stop()
        with pytest.raises(EmbeddedPgError):
            pg.dsn
        dsn = await pg.start()
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            assert await conn.fetchval("SELECT x FROM kept") == 42
        finally:
            await conn.close()
    finally:
        await pg.stop()


async def test_a_data_directory_of_another_major_version_is_refused_with_what_to_do(
        embedded: EmbeddedPostgres) -> None:
    # Such as one made by PostgreSQL 16 (the pgserver wheel of earlier releases).
    await embedded.stop()
    (embedded.pgdata / "PG_VERSION").write_text("16\n")
    with pytest.raises(EmbeddedPgError, match=r"PostgreSQL 16 database .* cannot open it.*pg_dumpall"):
        await embedded.start()


async def test_agent_state_log_rows_are_written_once_in_order(db: str) -> None:
    await migrate(db)
    writer = Writer(db)
    await writer.start()
    states = [("available", None, "login"), ("reserved", "available", "offer c1"),
              ("not_ready", "reserved", "missed")]
    for n, (state, previous, reason) in enumerate(states):
        row = AgentStateRow(agent_id="agent1", at=T0.replace(second=n), state=state, previous=previous,
                            reason=reason)
        writer.submit(row)
        writer.submit(row)  # a repeat is written once
    assert await writer.drain(10)
    await writer.stop()
    got = await rows(db, "SELECT state, previous, reason FROM agent_states ORDER BY at")
    assert [tuple(r) for r in got] == states


async def test_a_pool_with_keep_session_still_rolls_back_what_a_borrower_left_open(db: str) -> None:
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1, reset=keep_session)
    try:
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
            await conn.execute("CREATE TABLE t (x int)")
            tr = conn.transaction()
            await tr.start()
            await conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.execute("SELECT 1 / 0")
            # released inside a failed transaction, never rolled back by its borrower
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first and not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await pool.close()
