"""The leadership lease against a real PostgreSQL: two contenders in one event loop.

The contenders are stepped by the test (``drive``), so a "paused" one is simply not
stepped while its session, and its advisory lock, stay open: what SIGSTOP does.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import asyncpg
import pytest

from cti.lease_pg import PgLeadership, request_handover
from cti.leadership import Decision, HandoverAsked, LeaseConfig, StartLeading, StepDown
from cti.migrate import migrate

CONFIG = LeaseConfig(ttl=1.5, renew_within=1.0, renew_every=0.25, poll_every=0.25)


class Contender:
    def __init__(self, dsn: str, name: str) -> None:
        self.decisions: list[tuple[float, Decision]] = []
        self.node = PgLeadership(dsn, "test", name, CONFIG, on_decision=self._record)

    def _record(self, d: Decision) -> None:
        self.decisions.append((time.monotonic(), d))

    def started(self) -> list[StartLeading]:
        return [d for _, d in self.decisions if isinstance(d, StartLeading)]

    def stepped_down(self) -> list[tuple[float, StepDown]]:
        return [(t, d) for t, d in self.decisions if isinstance(d, StepDown)]


async def drive(contenders: list[Contender], seconds: float, *, until=None) -> None:
    """Step every contender each 50 ms for ``seconds`` (or until ``until()`` is true),
    checking that two never lead at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for c in contenders:
            await c.node.step()
        assert sum(c.node.leading() for c in contenders) <= 1
        if until is not None and until():
            return
        await asyncio.sleep(0.05)


@pytest.fixture
async def pair(database: str) -> AsyncIterator[tuple[Contender, Contender, str]]:
    await migrate(database)
    a, b = Contender(database, "a"), Contender(database, "b")
    try:
        yield a, b, database
    finally:
        await a.node.close()
        await b.node.close()


async def lead_first(a: Contender, b: Contender) -> tuple[Contender, Contender]:
    await drive([a, b], 10, until=lambda: a.node.leading() or b.node.leading())
    leader, other = (a, b) if a.node.leading() else (b, a)
    await drive([a, b], 1.0)
    assert leader.node.leading() and not other.node.leading()
    return leader, other


async def test_only_one_of_two_contenders_leads(pair) -> None:
    a, b, dsn = pair
    leader, other = await lead_first(a, b)
    await drive([a, b], 3 * CONFIG.ttl)      # longer than a ttl: renewals keep it
    assert leader.node.leading() and not other.started()
    assert leader.node.epoch == 1
    conn = await asyncpg.connect(dsn)
    row = await conn.fetchrow("SELECT holder, epoch FROM leadership WHERE cluster = 'test'")
    await conn.close()
    assert (row["holder"], row["epoch"]) == (leader.node.node_id, 1)


async def test_killed_session_steps_down_and_the_other_takes_over_with_the_next_epoch(pair) -> None:
    a, b, dsn = pair
    leader, other = await lead_first(a, b)
    conn = await asyncpg.connect(dsn)
    killed_at = time.monotonic()
    assert await conn.fetchval("SELECT pg_terminate_backend($1)", leader.node.backend_pid)
    await conn.close()
    await drive([a, b], 10, until=lambda: other.node.leading())
    took_over = time.monotonic()
    (down_at, down), = leader.stepped_down()
    assert down.reason == "connection lost" and down_at - killed_at < CONFIG.renew_within
    assert other.node.epoch == leader.node.epoch + 1
    # No earlier than a ttl after the last heartbeat the standby could have seen: renewals run
    # when drive() steps the leader (every 50 ms), so that heartbeat is up to renew_every plus
    # one tick and its step's round trips older than the kill.
    assert took_over - killed_at >= CONFIG.ttl - CONFIG.renew_every - 0.1
    await drive([a, b], 2 * CONFIG.ttl)
    assert other.node.leading() and not leader.node.leading()


async def test_paused_leader_steps_down_on_resume_and_never_leads_with_its_old_epoch(pair) -> None:
    a, b, _ = pair
    leader, other = await lead_first(a, b)
    old_epoch = leader.node.epoch
    # Pause: the leader is not stepped (its session and lock stay open) for longer
    # than the ttl; the other evicts the silent lock holder and takes over.
    await drive([other], 10, until=lambda: other.node.leading())
    assert not leader.node.leading()            # its own clock already says so
    assert other.node.epoch == old_epoch + 1
    # Resume: the first step ends its leadership, without a single renewal.
    out = await leader.node.step()
    assert [d.reason for d in out if isinstance(d, StepDown)] == ["renewal overdue"]
    await drive([a, b], 3 * CONFIG.ttl)
    assert other.node.leading() and not leader.node.leading()
    assert [d.epoch for d in leader.started()] == [old_epoch]


# A ttl long enough that only the release can explain a takeover within the drive's bound.
SLOW = LeaseConfig(ttl=8.0, renew_within=4.0, renew_every=0.25, poll_every=0.25)


async def test_a_handover_asked_in_the_row_is_told_and_the_release_lets_the_other_lead_without_a_ttl(
        database: str) -> None:
    await migrate(database)
    dsn = database
    a, b = Contender(dsn, "a"), Contender(dsn, "b")
    for c, name in ((a, "a"), (b, "b")):
        c.node = PgLeadership(dsn, "test-slow", name, SLOW, on_decision=c._record)
    try:
        await _hand_over(a, b, dsn)
    finally:
        await a.node.close()
        await b.node.close()


async def _hand_over(a: Contender, b: Contender, dsn: str) -> None:
    await drive([a, b], SLOW.ttl + 5, until=lambda: a.node.leading() or b.node.leading())
    leader, other = (a, b) if a.node.leading() else (b, a)
    old_epoch = leader.node.epoch
    conn = await asyncpg.connect(dsn)
    try:
        assert await request_handover(conn, "test-slow", leader.node.node_id, old_epoch)
        assert not await request_handover(conn, "test-slow", other.node.node_id, old_epoch)   # not the holder
        await drive([a, b], 5, until=lambda: any(isinstance(d, HandoverAsked) for _, d in leader.decisions))
        assert leader.node.leading()
        release = asyncio.create_task(leader.node.release(timeout=5))
        await asyncio.sleep(0)
        assert not leader.node.leading()                 # stepped down before the row is released
        # Well under the ttl (8 s): only the released row lets the other lead this soon.
        await drive([a, b], SLOW.ttl / 2, until=lambda: other.node.leading())
        assert other.node.leading(), "the released row was not taken over at once"
        assert await release is True
        assert [d.reason for _, d in leader.stepped_down()] == ["handover"]
        assert other.node.epoch == old_epoch + 1
        row = await conn.fetchrow("SELECT holder, released, handover_requested FROM leadership"
                                  " WHERE cluster = 'test-slow'")
        assert (row["holder"], row["released"], row["handover_requested"]) == (other.node.node_id, False, False)
    finally:
        await conn.close()
    await drive([a, b], 2.0)                             # the old leader stays out
    assert other.node.leading() and not leader.node.leading() and len(leader.started()) == 1
