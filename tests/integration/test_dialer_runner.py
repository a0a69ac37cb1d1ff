"""The campaign runner in the sandbox (docs/dialer.md, "The runner"): simulated customers
([cti-demo-customer]) who answer, do not answer, are busy or are answering machines (an
espeak greeting long enough for AMD); every outcome recorded with its call and retry time;
a number on the do-not-call list never dialed; a person no agent takes hears the
abandonment message; a blended agent takes an inbound caller before the next outbound
call; the emergency stop pauses every campaign (tests/integration/dialer-acd.toml)."""
from __future__ import annotations

import os
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from time import time as time_now

import asyncpg
import pytest

from cti.ami_inputs import DialerStep
from cti.demo import place_call
from dialer import store
from dialer.lead_import import parse_leads
from dialer.windows import CallingWindow, WindowChecker
from emergency.prompts import speak
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon

CONFIG = Path(__file__).with_name("dialer-acd.toml")
HUMAN, NO_ANSWER, BUSY, MACHINE, ON_DNC = ("+442079460101", "+442079460201", "+442079460301", "+442079460401",
                                          "+442079460102")
LONELY, BLEND_1, BLEND_2 = "+442079460501", "+442079460104", "+442079460105"
# Asterisk runs in its sandbox root: prompts go where it sees them.
SANDBOX_ROOT = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root"))
PROMPTS = "/var/lib/asterisk/sounds/dialer-test"
ALWAYS = CallingWindow(hours={d: (time(0), time.max) for d in range(7)})


async def _campaign(dsn: str, name: str, queue: str, phones: list[str], **kw) -> int:
    cid = await store.create_campaign(dsn, name, mode="progressive", queue=queue, caller_id="+442079460000",
                                      ring_s=15, **kw)
    valid, rejected = parse_leads("phone\n" + "\n".join(phones) + "\n")
    assert not rejected
    report = await store.import_leads(dsn, cid, valid)
    assert report.created == len(phones)
    return cid


async def _leads(dsn: str, cid: int) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["phone"]: r for r in await conn.fetch("SELECT * FROM dialer_leads WHERE campaign_id = $1", cid)}
    finally:
        await conn.close()


async def _on_calls(dsn: str, agent: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT reason FROM agent_states WHERE agent_id = $1 AND state = 'on_call'"
                                " ORDER BY at", agent)
    finally:
        await conn.close()
    return [r["reason"] for r in rows]


async def _three(dsn: str) -> list[str] | None:
    order = await _on_calls(dsn, "b1")
    return order if len(order) >= 3 else None


async def _ended(dsn: str, cid: int, n: int) -> list[dict] | None:
    rows = await store.attempts(dsn, cid)
    return rows if len(rows) >= n and all(r["outcome"] is not None for r in rows) else None


@pytest.fixture
async def prompts() -> dict[str, str]:
    out = str(SANDBOX_ROOT / PROMPTS.lstrip("/"))
    made = {
        "machine": await speak("Hello, you have reached the Morgan family. We cannot take your call right now."
                               " Please leave your name, your number and a short message after the tone.", out),
        "abandon": await speak("This is Example Surveys calling. Sorry, nobody is free to take your call."
                               " To stop our calls, call 0 8 0 0, 1 2 3, 4 5 6.", out),
    }
    return {k: PROMPTS + "/" + Path(v).name for k, v in made.items()}


async def test_a_campaign_day_in_the_sandbox(asterisk, database, pool, tmp_path, demo_ami, prompts):
    hangup_all()
    for name, value in (("DEMO_CUSTOMER_TALK", "5"), ("DEMO_MACHINE_GREETING", prompts["machine"])):
        await demo_ami.send("Setvar", {"Variable": name, "Value": value}, shape="single")
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=CONFIG, acd_announce_every=0,
                                           dialer_enabled=True, dialer_tick_s=0.5,
                                           dialer_dial="Local/{number}@cti-demo-customer/n"))
    survey = await _campaign(pool, "survey", "survey", [HUMAN, NO_ANSWER, BUSY, ON_DNC, MACHINE])
    lonely = await _campaign(pool, "lonely", "lonely", [LONELY], abandon_prompt=prompts["abandon"])
    # Bea is the one agent of "blend" and also takes "care": pacing calls on her only while an
    # inbound caller is unlikely to take her during the ring (dialer.pacing, "Inbound on the same
    # agents"). Her campaign measures inbound over 4 hours, and "care" has been quiet that long:
    # the one inbound call below is 0.25 an hour, not 60 (over the first minute).
    blend = await _campaign(pool, "blend", "blend", [BLEND_1, BLEND_2], reserve={"arrivals_min": 240})
    # On the list after the import: the check is at dial time.
    await store.add_dnc(pool, ON_DNC, reason="asked us not to call")

    steps: list[DialerStep] = []
    d.core.bus.subscribe_to(DialerStep, steps.append)
    from api.dialer_routes import RUNNER
    runner = d.runner.app[RUNNER]
    runner.windows = WindowChecker(ALWAYS)       # the test runs at any hour of the day
    runner.arrivals.observe("care", 0, time_now() - 4 * 3600)
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="the ACD is up")
        for cid in (survey, lonely, blend):
            assert await store.set_campaign_state(pool, cid, "running")
        runner.wake()

        # The board's pacing: the survey's campaign paced with its agents free (progressive: one
        # call per free agent at most); it says why and what it measured.
        paced = await eventually(lambda: (v := runner.pacing(survey)) and v["dial_level"] is not None and v,
                                 timeout=10, what="the survey paced with an agent free")
        assert paced["pacing_reason"] in ("progressive", "guard", "model") and paced["free_for_campaign"] >= 1
        assert 0 <= paced["dial_level"] <= 1.0
        assert 0 < paced["measured_live_rate"] <= 1 and paced["measured_handle_s"] > 0
        # The blended agent's first outbound call connects; an inbound caller then waits for her.
        first = await eventually(lambda: _on_calls(database, "b1"), timeout=20, what="Bea on her first call")
        inbound = await place_call(demo_ami, caller_num="+442071230000", caller_name="Inbound", patience=14,
                                   context="cti-demo-direct", variables={"CTI_QUEUE": "care"})

        rows = await eventually(lambda: _ended(pool, survey, 4), timeout=45, what="the survey's calls ended")
        by_phone = {r["phone"]: r for r in rows}
        assert set(by_phone) == {HUMAN, NO_ANSWER, BUSY, MACHINE}, "the number on the DNC list was dialed"
        assert by_phone[HUMAN]["outcome"] == "answered" and by_phone[HUMAN]["agent_id"] in ("s1", "s2", "s3")
        assert by_phone[HUMAN]["amd_status"] == "HUMAN"
        assert by_phone[NO_ANSWER]["outcome"] == "no_answer" and by_phone[NO_ANSWER]["rang_ms"] >= 15000
        assert by_phone[BUSY]["outcome"] == "busy"
        assert (by_phone[MACHINE]["outcome"], by_phone[MACHINE]["amd_status"]) == ("machine", "MACHINE")
        for r in rows:
            assert r["call_id"] and r["call_id"].startswith(f"dialer-{r['attempt_id']}-")
        leads = await _leads(database, survey)
        assert leads[ON_DNC]["state"] == "do_not_call" and leads[ON_DNC]["attempts"] == 0
        assert leads[HUMAN]["state"] == "answered"
        delays = {NO_ANSWER: timedelta(hours=2), BUSY: timedelta(minutes=15), MACHINE: timedelta(hours=4)}
        for phone, delay in delays.items():
            assert leads[phone]["state"] == "retry", phone
            assert leads[phone]["retry_at"] - by_phone[phone]["ended_at"] == delay, phone

        # The person nobody took heard the abandonment message; retried in an hour.
        (row,) = await eventually(lambda: _ended(pool, lonely, 1), timeout=30, what="the lonely call ended")
        assert row["outcome"] == "abandoned" and row["amd_status"] == "HUMAN" and row["agent_id"] is None
        played = [s for s in steps if s.uniqueid == row["call_id"] and s.step == "abandon_played"]
        assert [s.status for s in played] == ["SUCCESS"]
        lead = (await _leads(database, lonely))[LONELY]
        assert (lead["state"], lead["retry_at"] - row["ended_at"]) == ("retry", timedelta(hours=1))

        # Bea: outbound, then the inbound caller who waited, then the next outbound call.
        calls = await eventually(lambda: _ended(pool, blend, 2), timeout=45, what="both blend calls made")
        order = await eventually(lambda: _three(database), timeout=10, what="Bea's third call")
        assert order == [f"answered call {calls[0]['call_id']}", f"answered call {inbound.channel_id}",
                         f"answered call {calls[1]['call_id']}"], (first, order)

        # The emergency stop: every running campaign paused at once.
        assert await store.set_campaign_state(pool, survey, "running")
        paused = await runner.pause_all()
        assert survey in paused
        states = {c["campaign_id"]: c["state"] for c in await store.list_campaigns(pool)}
        assert all(s != "running" for s in states.values()), states
        assert await runner.tick(datetime.now(timezone.utc)) == 0
    finally:
        await d.stop()
        hangup_all()
