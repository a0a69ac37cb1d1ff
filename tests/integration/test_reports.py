"""Report inputs read back from a real PostgreSQL, rows written by the daemon's own writer (cti.writer):
the figures equal the ones computed by hand from the same timeline."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from acd.figures import ANSWERED, TIMED_OUT, SlPolicy, agent_figures, group_by, queue_figures
from acd.reports import agent_spans, queue_calls, state_changes
from acd.rows import AgentRow, AgentStateRow
from cti.call_db import CallEventRow, CallRow
from cti.migrate import migrate
from cti.writer import Writer

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(seconds=600)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(call_id: str, state: str, **kw: object) -> CallRow:
    fields: dict[str, object] = {"direction": "inbound", "caller_num": "+3225550100", "started_at": at(-5)}
    fields.update(kw)
    return CallRow(call_id=call_id, state=state, **fields)  # type: ignore[arg-type]


def events(call_id: str, *items: tuple[float, str, dict]) -> list[CallEventRow]:
    return [CallEventRow(call_id=call_id, seq=i + 1, at=at(t), kind=kind, data=data)
            for i, (t, kind, data) in enumerate(items)]


def timeline() -> list:
    out: list = [AgentRow(agent_id=a, name=a.upper(), device=f"PJSIP/{a}", updated_at=at(-900)) for a in ("a1", "a2")]
    # c1: sales, answered after 10 s by a1, 20 s on hold, agent leaves at 130, wrap-up 30 s.
    out.append(row("c1", "ended", queue="sales", queue_joined_at=at(0), queue_left_at=at(10), agent="a1",
                   agent_answered_at=at(10), answered_at=at(0), ended_at=at(131)))
    out += events("c1", (0, "call.queued", {"queue": "sales", "acd": True}), (10, "call.connected", {"agent": "a1"}),
                  (50, "call.held", {}), (70, "call.resumed", {}), (130, "call.agent_left", {"agent": "a1"}))
    # c2: sales, the caller hangs up after 40 s.
    out.append(row("c2", "ended", queue="sales", queue_joined_at=at(60), queue_left_at=at(100),
                   ended_at=at(100), abandoned=True))
    # c3: sales, overflows to support after 60 s, answered there 20 s later by a2 (no wrap-up).
    out.append(row("c3", "ended", queue="sales", queue_joined_at=at(120), queue_left_at=at(200), agent="a2",
                   agent_answered_at=at(200), ended_at=at(261)))
    out += events("c3", (180, "acd.maxwait", {"queue_id": "sales", "action": "overflow", "target": "support"}),
                  (200, "acd.dequeued", {"queue_id": "support", "reason": "answered", "waited_s": 20}),
                  (260, "call.agent_left", {"agent": "a2"}))
    # c4: support, max wait after 100 s sends it to voicemail, where the caller hangs up.
    out.append(row("c4", "ended", queue="support", queue_joined_at=at(300), queue_left_at=at(450),
                   ended_at=at(450), abandoned=True))
    out += events("c4", (400, "acd.maxwait", {"queue_id": "support", "action": "voicemail", "target": None}),
                  (400, "acd.dequeued", {"queue_id": "support", "reason": "max_wait", "waited_s": 100}))
    # c5: sales, still waiting; c6 before the range, c7 after it.
    out.append(row("c5", "queued", queue="sales", queue_joined_at=at(500)))
    out.append(row("c6", "ended", queue="sales", queue_joined_at=at(-3600), ended_at=at(-3500), abandoned=True))
    out.append(row("c7", "queued", queue="sales", queue_joined_at=at(900)))
    # The agents' state log; a1 was available since before the range.
    for agent, t, state, reason in [("a1", -600, "available", "login"), ("a1", 5, "reserved", "offer"),
                                    ("a1", 10, "on_call", ""), ("a1", 130, "wrapup", ""),
                                    ("a1", 160, "available", "wrapup over"),
                                    ("a2", -600, "not_ready", "lunch"), ("a2", 190, "available", ""),
                                    ("a2", 195, "reserved", ""), ("a2", 200, "on_call", ""),
                                    ("a2", 260, "available", ""), ("a2", 700, "logged_out", "")]:
        out.append(AgentStateRow(agent_id=agent, at=at(t), state=state, reason=reason))
    return out


@pytest.fixture
async def stored(database: str) -> str:
    await migrate(database)
    writer = Writer(database)
    await writer.start()
    for r in timeline():
        writer.submit(r)
    assert await writer.drain(10)
    await writer.stop()
    assert writer.stats.rejected == 0
    return database


async def test_queue_figures_from_stored_calls_equal_the_hand_computed_ones(stored: str) -> None:
    conn = await asyncpg.connect(stored, timeout=10)
    try:
        calls = await queue_calls(conn, T0, at(900), now=NOW)
    finally:
        await conn.close()
    visits = sorted((c.call_id, c.queue, c.outcome) for c in calls)
    assert visits == [("c1", "sales", "answered"), ("c2", "sales", "abandoned"), ("c3", "sales", "timed_out"),
                      ("c3", "support", "answered"), ("c4", "support", "timed_out"), ("c5", "sales", "waiting")]
    c1 = next(c for c in calls if c.call_id == "c1")
    assert (c1.wait_s, c1.talk_s, c1.hold_s, c1.wrapup_s) == (10, 100, 20, 30)

    policy = SlPolicy(threshold_s=20)
    per_queue = {q: queue_figures(cs, policy, now=NOW.timestamp()) for q, cs in group_by(calls, lambda c: c.queue).items()}
    sales, support = per_queue["sales"], per_queue["support"]
    assert (sales.offered, sales.answered, sales.abandoned, sales.timed_out, sales.waiting) == (4, 1, 1, 1, 1)
    assert sales.service_level == pytest.approx(1 / 3)
    assert (sales.asa_s, sales.aht_s) == (10, 150)
    assert sales.abandon_rate == pytest.approx(1 / 4)
    assert sales.longest_waiting_s == 100
    assert (support.offered, support.answered, support.timed_out) == (2, 1, 1)
    assert support.service_level == pytest.approx(1 / 2)        # answered at exactly 20 s meets it
    assert (support.asa_s, support.aht_s, support.avg_wrapup_s) == (20, 60, 0)
    c3 = [c for c in calls if c.call_id == "c3"]
    assert [(c.outcome, c.arrived_at, c.left_at) for c in sorted(c3, key=lambda c: c.arrived_at)] == [
        (TIMED_OUT, at(120).timestamp(), at(180).timestamp()), (ANSWERED, at(180).timestamp(), at(200).timestamp())]


async def test_agent_time_from_the_stored_state_log(stored: str) -> None:
    conn = await asyncpg.connect(stored, timeout=10)
    try:
        changes = await state_changes(conn, T0, NOW)
        spans = await agent_spans(conn, T0, NOW, now=NOW)
    finally:
        await conn.close()
    # The state at the start of the range is each agent's last change before it.
    assert sorted((c.agent_id, c.state) for c in changes if c.at < T0.timestamp()) == [
        ("a1", "available"), ("a2", "not_ready")]
    a1 = agent_figures([s for s in spans if s.agent_id == "a1"], T0.timestamp(), NOW.timestamp())
    assert (a1.seconds["available"], a1.seconds["reserved"], a1.seconds["on_call"], a1.seconds["wrapup"]) == \
        (445, 5, 120, 30)
    assert a1.occupancy == pytest.approx(155 / 600)
    a2 = agent_figures([s for s in spans if s.agent_id == "a2"], T0.timestamp(), NOW.timestamp())
    assert a2.not_ready_by_reason == {"lunch": 190}
    assert a2.utilization == pytest.approx(65 / 600)             # reserved 5 + on call 60
    assert a2.seconds["logged_out"] == 0                          # logging out at 700 is after now
