"""The daemon's ACD routing real calls in the sandbox (tests/integration/acd-test.toml)."""
from __future__ import annotations

import random
import re
from pathlib import Path

import asyncpg
import pytest

from acd.config import load_config
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon

ACD_TEST = Path(__file__).with_name("acd-test.toml")
CONFIG = load_config(ACD_TEST)
SKILLS = {a.id: a.skills for a in CONFIG.agents}
# The loosest requirement each queue reaches (its last escalation step).
LOOSEST = {q.id: (q.steps[-1].requirements if q.steps else q.requirements) for q in CONFIG.queues}


@pytest.fixture
async def acd(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10,
                     what="the ACD announced itself to the dialplan")
    await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
    try:
        yield d
    finally:
        await d.stop()
        await set_demo_times(demo_ami)


def not_ready(d, *agents: str) -> None:
    for a in agents:
        d.acd.agent_request(a, "set_not_ready", "test")


async def call(demo_ami, queue: str, n: int, *, priority: int | None = None, patience: int = 120):
    variables = {"CTI_QUEUE": queue}
    if priority is not None:
        variables["CTI_PRIORITY"] = str(priority)
    return await place_call(demo_ami, caller_num=f"+4420{n:07d}", caller_name=f"{queue} {n}",
                            patience=patience, context="cti-demo-direct", variables=variables)


async def fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def ended_rows(dsn: str, ids: list[str], timeout: float) -> dict[str, asyncpg.Record]:
    async def done():
        rows = await fetch(dsn, "SELECT * FROM calls WHERE call_id = ANY($1) AND ended_at IS NOT NULL", ids)
        return {r["call_id"]: r for r in rows} if len(rows) == len(ids) else None

    return await eventually(done, timeout=timeout, interval=0.3, what=f"{len(ids)} calls ended in the database")


def qualified(agent: str, queue: str) -> bool:
    return all(SKILLS[agent].get(r.skill, 0) >= r.min_level for r in LOOSEST[queue])


async def test_fifty_mixed_calls_each_answered_by_a_qualified_agent(acd, demo_ami, database):
    rng = random.Random(7)
    placed = []
    for n in range(50):
        queue = rng.choice(["sales", "sales", "support", "billing", "vip"])
        placed.append((queue, await call(demo_ami, queue, n, priority=rng.choice([None, None, 5]))))
    ids = [p.channel_id for _, p in placed]
    rows = await ended_rows(database, ids, timeout=180)
    for queue, p in placed:
        r = rows[p.channel_id]
        assert r["agent"] in SKILLS, (p.channel_id, r["agent"])
        assert qualified(r["agent"], queue), (queue, r["agent"])
        assert r["queue"] == queue and not r["abandoned"]
        assert r["queue_joined_at"] <= r["agent_answered_at"] <= r["ended_at"]
    states = await fetch(database, "SELECT DISTINCT state FROM agent_states")
    assert {"available", "reserved", "on_call", "wrapup"} <= {s["state"] for s in states}
    assert acd.acd.offers_failed == 0


async def test_higher_priority_caller_is_served_first(acd, demo_ami, database):
    not_ready(acd, "a1", "a2", "a3", "a4", "a5")
    low = [await call(demo_ami, "sales", n) for n in range(3)]
    high = await call(demo_ami, "vip", 9)
    await eventually(lambda: len(acd.acd.calls) == 4, timeout=10, what="four callers waiting")
    acd.acd.agent_request("a1", "set_ready")
    rows = await ended_rows(database, [p.channel_id for p in low] + [high.channel_id], timeout=60)
    first = min(rows.values(), key=lambda r: r["agent_answered_at"])
    assert first["call_id"] == high.channel_id
    # The rest by arrival in the queue (Originates race: placing order is not arrival order).
    rest = [r for r in rows.values() if r["call_id"] != high.channel_id]
    by_answer = sorted(rest, key=lambda r: r["agent_answered_at"])
    by_arrival = sorted(rest, key=lambda r: r["queue_joined_at"])
    assert [r["call_id"] for r in by_answer] == [r["call_id"] for r in by_arrival]


async def test_agent_who_does_not_answer_goes_not_ready_and_call_is_offered_again(acd, demo_ami, database):
    not_ready(acd, "a2", "a3", "a4", "a5")
    acd.acd.agent_request("lazy", "login")  # sales 10: the best proficiency, offered first
    p = await call(demo_ami, "sales", 1)
    rows = await ended_rows(database, [p.channel_id], timeout=40)
    assert rows[p.channel_id]["agent"] == "a1"
    events = await fetch(database, "SELECT kind, data FROM call_events WHERE call_id = $1 ORDER BY seq", p.channel_id)
    offers = [e for e in events if e["kind"] == "acd.offer"]
    assert [__import__("json").loads(e["data"])["agent"] for e in offers] == ["lazy", "a1"]
    missed = await fetch(database, "SELECT state, reason FROM agent_states WHERE agent_id = 'lazy' ORDER BY at")
    assert ("not_ready", "missed") in [(m["state"], m["reason"]) for m in missed]
    assert acd.acd.router.agent_state("lazy").state == "not_ready"


async def test_caller_who_hangs_up_while_waiting_is_recorded_as_abandoned(acd, demo_ami, database):
    not_ready(acd, "a1", "a2", "a3", "a4", "a5")
    p = await call(demo_ami, "billing", 1, patience=2)
    rows = await ended_rows(database, [p.channel_id], timeout=20)
    r = rows[p.channel_id]
    assert r["abandoned"] and r["agent"] is None
    (ab,) = await fetch(database, "SELECT data FROM call_events WHERE call_id = $1 AND kind = 'call.abandoned'",
                        p.channel_id)
    assert 1.5 < __import__("json").loads(ab["data"])["wait_s"] < 3.5
    assert acd.acd.calls == {}


async def test_escalation_lets_a_long_waiting_call_reach_a_less_proficient_agent(acd, demo_ami, database):
    not_ready(acd, "a1", "a2", "a4", "a5")  # only Cleo (support 4) is left; the queue needs 5
    p = await call(demo_ami, "support", 1)
    rows = await ended_rows(database, [p.channel_id], timeout=40)
    r = rows[p.channel_id]
    assert r["agent"] == "a3"
    waited = (r["agent_answered_at"] - r["queue_joined_at"]).total_seconds()
    assert waited >= 6.0  # not before the step
    kinds = [e["kind"] for e in await fetch(database, "SELECT kind FROM call_events WHERE call_id = $1 ORDER BY seq",
                                            p.channel_id)]
    assert "acd.escalated" in kinds and kinds.index("acd.escalated") < kinds.index("acd.offer")


async def test_daemon_stopping_hands_waiting_callers_to_the_fallback_queue(acd, demo_ami, database):
    not_ready(acd, "a1", "a2", "a3", "a4", "a5")
    p = await call(demo_ami, "sales", 1)
    await eventually(lambda: p.channel_id in acd.acd.calls, timeout=10)
    model = acd.core.model
    await acd.acd.stop()  # as at shutdown
    await eventually(lambda: model.calls.get(p.channel_id) and model.calls[p.channel_id].queue == "cti-fallback",
                     timeout=10, what="the caller joined app_queue")


async def test_waiting_caller_hears_position_and_wait_then_is_served(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    announced: list[dict[str, str]] = []
    demo_ami.add_listener(lambda f: f.name == "UserEvent" and f.headers.get("UserEvent") == "CtiAcdAnnounce"
                          and announced.append(dict(f.headers)))
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=3))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        await set_demo_times(demo_ami, ring=(0, 0), talk=(1, 1))
        not_ready(d, "a1", "a2", "a3", "a4", "a5")
        first = await call(demo_ami, "billing", 1)
        second = await call(demo_ami, "billing", 2)
        await eventually(lambda: {a["Uniqueid"] for a in announced} >= {first.channel_id, second.channel_id},
                         timeout=15, what="both callers heard an announcement")
        # Positions follow arrival in the queue (the two Originates race each other).
        positions = {a["Uniqueid"]: a["Position"] for a in announced}
        assert sorted(positions[c] for c in (first.channel_id, second.channel_id)) == ["1", "2"]
        head = min((first.channel_id, second.channel_id), key=lambda c: positions[c])
        d.acd.agent_request("a4", "set_ready")  # billing 8: takes both, in order
        rows = await ended_rows(database, [first.channel_id, second.channel_id], timeout=40)
        assert all(r["agent"] == "a4" and not r["abandoned"] for r in rows.values())
        assert min(rows.values(), key=lambda r: r["agent_answered_at"])["call_id"] == head
        assert min(rows.values(), key=lambda r: r["queue_joined_at"])["call_id"] == head
    finally:
        await d.stop()
        await set_demo_times(demo_ami)


async def test_restarted_daemon_adopts_callers_already_waiting(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    settings = daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0)
    first = await start_daemon(settings)
    await eventually(lambda: first.acd is not None and first.acd.heartbeats > 0, timeout=10)
    await set_demo_times(demo_ami, ring=(0, 0), talk=(1, 1))
    not_ready(first, "a1", "a2", "a3", "a4", "a5")
    callers = [await call(demo_ami, "billing", n, priority=3) for n in range(2)]
    await eventually(lambda: len(first.acd.calls) == 2, timeout=10)
    first.acd.handover = False  # as if it died: the callers stay in cti-acd-wait
    await first.stop()
    second = await start_daemon(settings)  # the agents stay not ready, as stored (acd.resume)
    try:
        await eventually(lambda: second.acd is not None and second.acd.adopted == 2, timeout=15,
                         what="the waiting callers adopted")
        assert {second.acd.router.agent_state(a).state for a in ("a1", "a2", "a3", "a4", "a5")} == {"not_ready"}
        for agent in ("a3", "a4"):
            second.acd.agent_request(agent, "set_ready")
        rows = await ended_rows(database, [c.channel_id for c in callers], timeout=40)
        assert all(r["agent"] in ("a3", "a4") and not r["abandoned"] for r in rows.values())
        queued = [w for w in second.acd.router.waiting_calls()]
        assert queued == []
    finally:
        await second.stop()
        await set_demo_times(demo_ami)


async def test_a_caller_adopted_after_a_restart_who_hangs_up_is_recorded_as_abandoned(
        asterisk, database, tmp_path, demo_ami):
    """The restarted daemon's call model never saw the caller queue (CtiAcdWait came before
    it started); the ACD's adoption tells it, so the hang-up is an abandon with the whole wait."""
    hangup_all()
    settings = daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0)
    first = await start_daemon(settings)
    await eventually(lambda: first.acd is not None and first.acd.heartbeats > 0, timeout=10)
    # Skills nobody has: the caller waits through both daemons until it gives up.
    p = await place_call(demo_ami, caller_num="+442000000777", caller_name="gives up", patience=12,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "billing", "CTI_SKILLS": "french:10"})
    await eventually(lambda: p.channel_id in first.acd.calls, timeout=10, what="the caller waiting")
    first.acd.handover = False  # as if it died: the caller stays in cti-acd-wait
    await first.stop()
    second = await start_daemon(settings)
    try:
        await eventually(lambda: second.acd is not None and second.acd.adopted == 1, timeout=15,
                         what="the waiting caller adopted")
        rows = await ended_rows(database, [p.channel_id], timeout=30)
        row = rows[p.channel_id]
        assert row["abandoned"] and row["agent"] is None and row["queue"] == "billing"
        assert (row["queue_left_at"] - row["queue_joined_at"]).total_seconds() >= 10   # the whole wait
    finally:
        await second.stop()


async def test_restarted_daemon_finds_agents_talking_and_wraps_them_up(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    settings = daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0)
    first = await start_daemon(settings)
    await eventually(lambda: first.acd is not None and first.acd.heartbeats > 0, timeout=10)
    await set_demo_times(demo_ami, ring=(0, 0), talk=(8, 8))
    not_ready(first, "a1", "a2", "a3", "a5")  # billing: only a4 (Dev) left
    talking = await call(demo_ami, "billing", 1)
    await eventually(lambda: first.acd.router.agent_state("a4").state == "on_call", timeout=10,
                     what="a4 talking")
    first.acd.handover = False  # as if it died mid-call
    await first.stop()
    second = await start_daemon(settings)  # a4 (stored on call) logs in again and is found talking
    try:
        acd = second.acd
        await eventually(lambda: acd is not None and acd.router.agent_state("a4").state == "on_call", timeout=15,
                         what="the talking agent adopted")
        assert acd.router.agent_state("a4").call_id == talking.channel_id
        # Not offered another call while talking: a new billing caller waits for a3.
        not_ready(second, "a1", "a2", "a3", "a5")
        waiting = await call(demo_ami, "billing", 2)
        await eventually(lambda: waiting.channel_id in acd.calls, timeout=10, what="the next caller waiting")
        assert acd.router.agent_state("a4").state == "on_call"
        # The call ends (the agent hangs up after 8 s): wrap-up, then the waiting caller.
        rows = await ended_rows(database, [talking.channel_id, waiting.channel_id], timeout=40)
        assert rows[waiting.channel_id]["agent"] == "a4"
        states = await fetch(database, "SELECT state, reason FROM agent_states WHERE agent_id = 'a4' ORDER BY at")
        reasons = [(r["state"], r["reason"]) for r in states]
        assert ("on_call", f"found on call {talking.channel_id}") in reasons
        assert reasons.index(("on_call", f"found on call {talking.channel_id}")) < \
            max(i for i, (st, _) in enumerate(reasons) if st == "wrapup")
    finally:
        await second.stop()
        await set_demo_times(demo_ami)


async def test_the_wait_start_the_dialplan_keeps_is_to_the_millisecond(acd, demo_ami, database):
    """``CTI_WAIT_START`` (what an adoption orders callers by when the record has no join
    yet) is epoch seconds with milliseconds, at or before the join the daemon stored."""
    p = await place_call(demo_ami, caller_num="+442000000778", caller_name="waits", patience=10,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "billing", "CTI_SKILLS": "french:10"})
    await eventually(lambda: p.channel_id in acd.acd.calls, timeout=10, what="the caller waiting")
    reply = await demo_ami.send("Getvar", {"Channel": acd.acd.calls[p.channel_id].channel,
                                           "Variable": "CTI_WAIT_START"}, shape="single")
    value = reply.response.headers.get("Value") or ""
    assert re.fullmatch(r"\d{10}\.\d{3}", value), value

    async def joined():
        rows = await fetch(database, "SELECT queue_joined_at FROM calls WHERE call_id = $1", p.channel_id)
        return rows[0]["queue_joined_at"] if rows and rows[0]["queue_joined_at"] else None

    stored = await eventually(joined, timeout=10, what="the queue join stored")
    assert float(value) <= stored.timestamp()
    hangup_all()
