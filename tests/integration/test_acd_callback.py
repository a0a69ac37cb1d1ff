"""Callbacks in the sandbox: a waiting caller presses 1, hangs up, keeps their
place, and is called back when an agent is free (tests/integration/acd-callback.toml)."""
from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from acd.callback_db import fetch_callback
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon

CONFIG = Path(__file__).with_name("acd-callback.toml")


def settings(database: str, tmp_path: Path, **kw):
    values = dict(acd_config=CONFIG, acd_announce_every=0,
                  acd_callback_dial="Local/{number}@cti-demo-callee/n", acd_callback_retry_s=1,
                  acd_callback_attempts=2)
    values.update(kw)
    return daemon_settings(database, tmp_path, **values)


async def started(database: str, tmp_path: Path, **kw):
    d = await start_daemon(settings(database, tmp_path, **kw))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10,
                     what="the ACD announced itself to the dialplan")
    return d


async def caller(demo_ami, number: str, *, press_1_after: int | None = None, patience: int = 60):
    """A caller routed straight to the queue 'care'; presses 1 after some seconds if asked."""
    variables = {"CTI_QUEUE": "care"}
    context = "cti-demo-caller"
    if press_1_after is not None:
        variables["__DIGITS"] = "W" * press_1_after + "1"
        context = "cti-demo-dtmf"
    return await place_call(demo_ami, caller_num=number, caller_name="Caller", patience=patience,
                            context="cti-demo-direct", variables=variables, caller_context=context)


async def agent_states(dsn: str, agent: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT state, reason FROM agent_states WHERE agent_id = $1 ORDER BY at", agent)
    finally:
        await conn.close()
    return [(r["state"], r["reason"] or "") for r in rows]


@pytest.fixture
async def demo_times(demo_ami):
    hangup_all()
    await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
    yield
    await set_demo_times(demo_ami)


async def test_a_callback_keeps_its_place_across_a_restart_and_is_called_back_first(
        asterisk, database, tmp_path, demo_ami, demo_times):
    d = await started(database, tmp_path)  # nobody logged in: callers wait
    try:
        first = await caller(demo_ami, "+442071000001", press_1_after=3)
        await eventually(lambda: first.channel_id in d.acd.calls, timeout=10, what="first caller waiting")
        second = await caller(demo_ami, "+442071000002", patience=90)
        cb = await eventually(lambda: fetch_callback(database, first.channel_id), timeout=20,
                              what="the callback request stored")
        assert (cb.number, cb.queue, cb.status, cb.attempts) == ("+442071000001", "care", "pending", 0)
        # The first caller hung up after the confirmation; the place is still theirs.
        await eventually(lambda: d.acd.calls[first.channel_id].channel is None, timeout=15,
                         what="the first caller hung up")
        waiting = d.acd.router.waiting_calls()
        assert [(w.call_id, w.callback) for w in waiting] == [(first.channel_id, True), (second.channel_id, False)]
    finally:
        await d.stop()  # the second caller goes to the fallback queue; the callback is in the database

    d = await started(database, tmp_path)
    try:
        await eventually(lambda: d.acd.callbacks_restored == 1, timeout=10, what="the callback restored")
        later = await caller(demo_ami, "+442071000003", patience=90)
        await eventually(lambda: later.channel_id in d.acd.calls, timeout=10, what="a later caller waiting")
        waiting = d.acd.router.waiting_calls()
        assert [(w.call_id, w.callback) for w in waiting] == [(first.channel_id, True), (later.channel_id, False)]
        assert waiting[0].arrived_at == pytest.approx(cb.since)
        d.acd.agent_request("c1", "login")
        done = await eventually(lambda: _status(database, first.channel_id, "connected"), timeout=30,
                                what="the customer called back and connected")
        assert (done.agent_id, done.attempts, done.last_result) == ("c1", 1, "ANSWER")
        assert done.last_leg.startswith(first.channel_id + "-cb")
        # Then c1 takes the later caller.
        rows = await eventually(lambda: _ended(database, later.channel_id), timeout=40, what="the later caller served")
        assert rows["agent"] == "c1" and not rows["abandoned"]
        states = await agent_states(database, "c1")
        on_calls = [reason for state, reason in states if state == "on_call"]
        assert on_calls == [f"answered call {first.channel_id}", f"answered call {later.channel_id}"]
    finally:
        await d.stop()


async def _ended(dsn: str, call_id: str):
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchrow("SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", call_id)
    finally:
        await conn.close()


async def _status(dsn: str, callback_id: str, status: str):
    cb = await fetch_callback(dsn, callback_id)
    return cb if cb is not None and cb.status == status else None


async def test_a_customer_who_never_answers_is_tried_again_then_given_up(
        asterisk, database, tmp_path, demo_ami, demo_times):
    d = await started(database, tmp_path, acd_callback_ring_s=5)
    await set_demo_times(demo_ami, ring=(0, 1), talk=(9, 9))  # the agent waits out the customer's ringing
    try:
        gone = await caller(demo_ami, "+9990001234", press_1_after=2)
        await eventually(lambda: fetch_callback(database, gone.channel_id), timeout=20, what="request stored")
        d.acd.agent_request("c1", "login")
        failed = await eventually(lambda: _status(database, gone.channel_id, "failed"), timeout=60,
                                  what="two tries, then given up")
        assert (failed.attempts, failed.last_result) == (2, "NOANSWER")
        await eventually(lambda: d.acd.router.agent_state("c1").state == "available", timeout=10,
                         what="the agent free again")
        assert gone.channel_id not in d.acd.calls
        assert d.acd.router.waiting_calls() == []
    finally:
        await d.stop()
