"""Tickets in the real PostgreSQL: the whole cycle with its audit trail, refusals that
write nothing, two agents on one ticket at once, the work lists and bulk imports."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import asyncpg
import pytest

from crm import ticket_store as ts
from crm.customer_lookup import save_customer
from crm.customer_model import Address
from crm.customer_store import add_address, customer_view
from cti.migrate import migrate
from crm.tickets import (
    DEFAULT_TYPES, CallbackNoAnswer, Cancel, Confirm, Dispatch, InvalidCommand, Reopen, ResolveByPhone, SendToLead,
    State, TicketConflict, TicketNotFound, TransitionRefused, VisitFailed, VisitSucceeded, is_overdue,
)
from tests.integration.conftest import eventually

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database)
    p = await asyncpg.create_pool(database, min_size=1, max_size=10)
    try:
        for cid, name, phone in [("C1", "Chloé Dubois", "+33123456789"), ("C2", "Ben Ode", "+49301234"),
                                 ("C3", "Cy Three", "+49305555")]:
            await save_customer(p, cid, name, [phone])
        await add_address(p, "C1", Address(line1="1 rue X", city="Paris", region="paris-north"), primary=True)
        yield p
    finally:
        await p.close()


async def audit_count(pool: asyncpg.Pool, ticket_id: int) -> int:
    return await pool.fetchval("SELECT count(*) FROM ticket_audit WHERE ticket_id = $1", ticket_id)


async def test_the_whole_cycle_is_stored_and_audited_step_by_step(pool):
    t, created = await ts.create_ticket(pool, type="repair", customer_id="C1", source="call", actor="agent1",
                                        note="no dial tone", call_id="1732950000.1", now=T0)
    assert (t.state, t.region, t.ticket_id) == (State.OPEN, "paris-north", created.ticket_id)
    steps = [
        (SendToLead(actor="agent1", lead="lead-paris"), State.WITH_LEAD),
        (Dispatch(actor="lead-paris", engineer="eng7"), State.DISPATCHED),
        (VisitFailed(actor="eng7", cause="engineer", reason="part missing"), State.DISPATCHED),
        (VisitFailed(actor="eng7", cause="customer", reason="nobody home"), State.TO_REDISPATCH),
        (Dispatch(actor="agent1", engineer="eng8", note="customer home after 5pm"), State.DISPATCHED),
        (VisitSucceeded(actor="eng8"), State.AWAITING_CALLBACK),
        (CallbackNoAnswer(actor="agent2"), State.AWAITING_CALLBACK),
        (Confirm(actor="agent2", note="works"), State.CLOSED),
    ]
    entries = [created]
    engineers = []
    for i, (command, state) in enumerate(steps, start=1):
        t, entry = await ts.transition(pool, t.ticket_id, command, now=T0 + timedelta(hours=i))
        assert t.state is state
        engineers.append(t.engineer)
        entries.append(entry)
        if state is State.AWAITING_CALLBACK:
            listed = await ts.callback_list(pool, now=T0 + timedelta(hours=i))
            assert [(c["ticket"].ticket_id, c["customer_name"], c["phones"]) for c in listed] == \
                   [(t.ticket_id, "Chloé Dubois", ["+33123456789"])]
    assert engineers[1:4] == ["eng7", "eng7", None]           # the engineer's own failure: same engineer
    stored = await ts.get_ticket(pool, t.ticket_id)
    assert stored == t and stored.visits == 3 and stored.resolution == "confirmed"
    trail = await ts.audit_trail(pool, t.ticket_id)
    assert trail == entries
    assert [e.seq for e in trail] == list(range(1, 10))
    assert [(e.from_state, e.to_state) for e in trail][:2] == [(None, State.OPEN), (State.OPEN, State.WITH_LEAD)]
    assert trail[3].data == {"cause": "engineer", "reason": "part missing"} and trail[5].note == "customer home after 5pm"
    assert await ts.callback_list(pool) == []
    view = await customer_view(pool, "C1")
    assert [(x["ticket_id"], x["state"], x["call_ids"]) for x in view["tickets"]] == \
           [(t.ticket_id, "closed", ["1732950000.1"])]
    assert [c["call_id"] for c in view["calls"]] == ["1732950000.1"]


async def test_a_refused_transition_writes_nothing(pool):
    t, _ = await ts.create_ticket(pool, type="installation", customer_id="C2", source="manual", actor="a", now=T0)
    with pytest.raises(TransitionRefused, match=rf"ticket {t.ticket_id}: 'confirm' is not allowed in state 'open'"):
        await ts.transition(pool, t.ticket_id, Confirm(actor="a"), now=T0)
    assert await ts.get_ticket(pool, t.ticket_id) == t and await audit_count(pool, t.ticket_id) == 1
    with pytest.raises(TicketNotFound):
        await ts.transition(pool, 999_999, Confirm(actor="a"))
    with pytest.raises(TicketNotFound):
        await ts.link_recording(pool, 999_999, "rec-1")
    with pytest.raises(InvalidCommand, match="customer_id: unknown customer 'nobody'"):
        await ts.create_ticket(pool, type="repair", customer_id="nobody", source="manual", actor="a")


async def test_two_agents_on_one_ticket_one_wins_the_other_gets_a_clear_conflict(pool):
    t, _ = await ts.create_ticket(pool, type="repair", customer_id="C2", source="manual", actor="a", now=T0)
    first = await pool.acquire()
    second = await pool.acquire()
    try:
        tx = first.transaction()
        await tx.start()
        await ts.transition(first, t.ticket_id, Dispatch(actor="agent1", engineer="eng1"), expected_revision=1, now=T0)
        waiting = asyncio.create_task(ts.transition(second, t.ticket_id, Dispatch(actor="agent2", engineer="eng2"),
                                                    expected_revision=1, now=T0, lock_timeout=30))
        # the second one waits on the row lock the first holds
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = $1",
            second.get_server_pid()), timeout=10)
        await tx.commit()
        with pytest.raises(TicketConflict, match=rf"ticket {t.ticket_id} changed since revision 1: .*revision 2"):
            await waiting
    finally:
        await pool.release(first)
        await pool.release(second)
    stored = await ts.get_ticket(pool, t.ticket_id)
    assert (stored.engineer, stored.revision) == ("eng1", 2)
    assert [e.actor for e in await ts.audit_trail(pool, t.ticket_id)] == ["a", "agent1"]


async def test_many_concurrent_dispatches_exactly_one_is_applied(pool):
    t, _ = await ts.create_ticket(pool, type="repair", customer_id="C3", source="manual", actor="a", now=T0)
    results = await asyncio.gather(*(ts.transition(pool, t.ticket_id, Dispatch(actor=f"agent{i}", engineer=f"eng{i}"))
                                     for i in range(8)), return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 7
    assert all(isinstance(e, TransitionRefused) and e.state is State.DISPATCHED for e in lost)
    stored = await ts.get_ticket(pool, t.ticket_id)
    assert stored.engineer == won[0][0].engineer and await audit_count(pool, t.ticket_id) == 2


async def test_a_ticket_locked_too_long_is_a_conflict_not_a_hang(pool):
    t, _ = await ts.create_ticket(pool, type="repair", customer_id="C3", source="manual", actor="a", now=T0)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM tickets WHERE ticket_id = $1 FOR UPDATE", t.ticket_id)
        with pytest.raises(TicketConflict, match="stayed locked"):
            await ts.transition(pool, t.ticket_id, Cancel(actor="b", reason="dup"), lock_timeout=0.2)
    assert (await ts.get_ticket(pool, t.ticket_id)).state is State.OPEN


async def test_overdue_list_agrees_with_the_pure_definition(pool):
    made = []
    for i, (type_, cid) in enumerate([("repair", "C1"), ("missed_upload", "C2"), ("installation", "C3"),
                                      ("site_visit", "C1"), ("missed_upload", "C3")]):
        t, _ = await ts.create_ticket(pool, type=type_, customer_id=cid, source="manual", actor="a",
                                      now=T0 + timedelta(hours=i))
        made.append(t)
    await ts.transition(pool, made[0].ticket_id, Dispatch(actor="a", engineer="e"), now=T0)
    await ts.transition(pool, made[0].ticket_id, VisitSucceeded(actor="e"), now=T0 + timedelta(hours=30))
    await ts.transition(pool, made[1].ticket_id, ResolveByPhone(actor="a"), now=T0 + timedelta(hours=2))
    await ts.transition(pool, made[4].ticket_id, Cancel(actor="a", reason="dup"), now=T0 + timedelta(hours=5))
    everything = [await ts.get_ticket(pool, t.ticket_id) for t in made]
    for days in (0, 1, 1.5, 2, 3, 8, 20):
        now = T0 + timedelta(days=days)
        expected = sorted((t for t in everything if is_overdue(t, now)), key=lambda t: t.ticket_id)
        got = await ts.overdue(pool, now=now)
        assert sorted(got, key=lambda t: t.ticket_id) == expected, days
    assert [t.ticket_id for t in await ts.overdue(pool, now=T0 + timedelta(days=20))] == \
           [made[0].ticket_id, made[2].ticket_id, made[3].ticket_id]      # callback due first, then by due time


async def test_by_customer_and_not_visited_lately(pool):
    await save_customer(pool, "C4", "Di Four", ["+49306666"])
    await add_address(pool, "C3", Address(line1="x", region="south"), primary=True)
    await add_address(pool, "C4", Address(line1="y", region="south"), primary=True)

    async def visit(cid: str, when: datetime) -> int:
        t, _ = await ts.create_ticket(pool, type="repair", customer_id=cid, source="manual", actor="a", now=when)
        await ts.transition(pool, t.ticket_id, Dispatch(actor="a", engineer="e"), now=when)
        await ts.transition(pool, t.ticket_id, VisitSucceeded(actor="e"), now=when)
        return t.ticket_id

    now = T0 + timedelta(days=200)
    old = await visit("C1", now - timedelta(days=100))
    await visit("C2", now - timedelta(days=2))
    await ts.create_ticket(pool, type="site_visit", customer_id="C4", source="manual", actor="a", now=now)
    lately = await ts.not_visited_lately(pool, since=timedelta(days=30), now=now)
    assert [(r["customer_id"], r["region"]) for r in lately] == [("C3", "south"), ("C1", "paris-north")]
    assert lately[1]["last_visit"] == now - timedelta(days=100)
    assert [r["customer_id"] for r in await ts.not_visited_lately(pool, since=timedelta(days=30), now=now,
                                                                  region="south")] == ["C3"]
    assert [t.ticket_id for t in await ts.by_customer(pool, "C1")] == [old]
    assert await ts.by_customer(pool, "C1", live_only=True) == [await ts.get_ticket(pool, old)]


async def test_bulk_import_skips_customers_with_a_live_ticket_of_the_type(pool):
    open_one, _ = await ts.create_ticket(pool, type="missed_upload", customer_id="C1", source="manual", actor="a")
    closed_one, _ = await ts.create_ticket(pool, type="missed_upload", customer_id="C2", source="manual", actor="a")
    await ts.transition(pool, closed_one.ticket_id, ResolveByPhone(actor="a"))
    result = await ts.import_list(pool, ["C1", "C2", "C3", "C2", "ghost"], type="missed_upload", actor="upload-check",
                                  note="no upload on 2026-11-29", now=T0)
    assert sorted(result.created) == ["C2", "C3"] and result.skipped_open == ["C1"]
    assert result.unknown == ["ghost"] and result.repeated == ["C2"]
    t = await ts.get_ticket(pool, result.created["C3"])
    assert (t.source.value, t.state, t.due_at) == ("import", State.OPEN, T0 + DEFAULT_TYPES.get("missed_upload").due)
    assert (await ts.audit_trail(pool, t.ticket_id))[0].note == "no upload on 2026-11-29"
    again = await ts.import_list(pool, ["C1", "C2", "C3"], type="missed_upload", actor="upload-check")
    assert again.created == {} and again.skipped_open == ["C1", "C2", "C3"]
    # a different type is not a duplicate; two imports at once create each ticket once
    both = await asyncio.gather(*(ts.import_list(pool, ["C1", "C2", "C3"], type="site_visit", actor="x")
                                  for _ in range(2)))
    assert sorted(c for r in both for c in r.created) == ["C1", "C2", "C3"]
    assert sorted(c for r in both for c in r.skipped_open) == ["C1", "C2", "C3"]


async def test_hostile_text_is_stored_verbatim_and_reopen_works(pool):
    hostile = "Robert'); DROP TABLE tickets;--\r\nX-Injected: 1 \"quoted\" \\ ünïcode"
    t, _ = await ts.create_ticket(pool, type="repair", customer_id="C2", source="ivr", actor="ivr", note=hostile,
                                  title="O'Brien \"box\"")
    t, _ = await ts.transition(pool, t.ticket_id, ResolveByPhone(actor="agent'1", note=hostile))
    t, _ = await ts.transition(pool, t.ticket_id, Reopen(actor="agent1", reason=hostile[:200]))
    trail = await ts.audit_trail(pool, t.ticket_id)
    assert [e.note for e in trail[:2]] == [hostile, hostile] and trail[2].data == {"reason": hostile[:200]}
    assert (await ts.get_ticket(pool, t.ticket_id)).title == "O'Brien \"box\"" and t.state is State.OPEN
    assert await pool.fetchval("SELECT count(*) FROM tickets") == 1


async def test_a_long_list_gets_one_ticket_and_one_audit_row_per_customer(pool):
    await pool.executemany("INSERT INTO customers (customer_id, name) VALUES ($1, $2)",
                           [(f"M{i:04d}", f"Missed {i}") for i in range(1500)])
    listed = [f"M{i:04d}" for i in range(1500)]
    result = await ts.import_list(pool, listed, type="missed_upload", actor="upload-check", now=T0)
    assert sorted(result.created) == listed and len(set(result.created.values())) == 1500
    counts = await pool.fetchrow(
        """SELECT count(*) AS tickets, count(DISTINCT customer_id) AS customers,
                  (SELECT count(*) FROM ticket_audit a WHERE a.seq = 1 AND a.command = 'create') AS created
             FROM tickets WHERE source = 'import'""")
    assert dict(counts) == {"tickets": 1500, "customers": 1500, "created": 1500}
    t = await ts.get_ticket(pool, result.created["M0042"])
    assert t.customer_id == "M0042" and (await ts.audit_trail(pool, t.ticket_id))[0].actor == "upload-check"
