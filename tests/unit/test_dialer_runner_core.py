"""The campaign runner's pure parts (dialer.runner): what a call's steps make of its
outcome, how many calls a campaign starts, blending, the CtiDialer UserEvent; and the
shell's handling of hostile or stray events, with a fake bus and no I/O."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.ami_inputs import DialerStep, LegHungUp, OriginateResult, parse
from dialer.pacing import Measured, PacingConfig
from dialer.blending import InboundQueue, blended_queues, inbound_waiting
from dialer.runner import AgentsView, Attempt, CampaignRunner, dial_string, final_outcome, launch_count, pace, rang

M = Measured(0.25, 8.0, 180.0)


def attempt(**kw: Any) -> Attempt:
    return Attempt(attempt_id=7, lead_id=3, campaign_id=1, leg="dialer-7-1", started=1000.0, ring_s=20, **kw)


@pytest.mark.parametrize("reason, outcome", [("5", "busy"), ("3", "no_answer"), ("8", "failed"), ("0", "failed"),
                                             ("1", "failed"), ("99", "failed"), (None, "failed")])
def test_a_call_nobody_answered_takes_its_outcome_from_the_originate_reason(reason, outcome):
    assert final_outcome(attempt(originate_reason=reason)) == outcome


def test_what_an_answered_call_becomes():
    assert final_outcome(attempt(answered_at=1010.0, amd_status="MACHINE")) == "machine"
    assert final_outcome(attempt(answered_at=1010.0, amd_status="MACHINE", voicemail=True)) == "machine"
    assert final_outcome(attempt(answered_at=1010.0, amd_status="HUMAN")) == "abandoned"
    assert final_outcome(attempt(answered_at=1010.0, amd_status="NOTSURE", abandoned=True)) == "abandoned"
    assert final_outcome(attempt(answered_at=1010.0, amd_status="HUMAN", agent="a1")) == "answered"
    # Hung up during AMD: nobody was kept waiting for an agent.
    assert final_outcome(attempt(answered_at=1010.0)) == "failed"
    assert final_outcome(attempt(answered_at=1010.0, amd_status="HANGUP")) == "failed"


def test_the_ring_time_runs_to_the_answer_or_to_the_end():
    assert rang(attempt(answered_at=1012.5), 1100.0) == timedelta(seconds=12.5)
    assert rang(attempt(), 1016.0) == timedelta(seconds=16)


def test_preview_and_waiting_inbound_callers_start_nothing():
    cfg = PacingConfig()
    assert launch_count("preview", AgentsView(5, 5), 0, 10, M, cfg) == 0
    waiting = InboundQueue("care", 1, (), 0.0, 180.0, 80.0, 20.0)
    assert launch_count("progressive", AgentsView(5, 5, (waiting,)), 0, 10, M, cfg) == 0
    assert launch_count("predictive", AgentsView(5, 5, (waiting,)), 0, 10, M, cfg) == 0
    assert launch_count("progressive", AgentsView(5, 5), 0, 10, M, cfg) == 5


@given(free=st.integers(0, 30), staffed_extra=st.integers(0, 30), in_flight=st.integers(0, 40),
       headroom=st.integers(0, 50))
def test_progressive_never_has_more_calls_in_flight_than_free_agents(free, staffed_extra, in_flight, headroom):
    n = launch_count("progressive", AgentsView(free, free + staffed_extra), in_flight, headroom, M, PacingConfig())
    assert n >= 0 and (n == 0 or in_flight + n <= free)


@given(free=st.integers(0, 30), busy=st.integers(0, 30), in_flight=st.integers(0, 40))
def test_predictive_without_history_dials_no_more_than_progressive(free, busy, in_flight):
    # No live answers yet: the caps' headroom is 0, so no call beyond the free agents.
    n = launch_count("predictive", AgentsView(free, free + busy), in_flight, 0, M, PacingConfig())
    assert n == max(0, free - in_flight)


def test_the_pacing_says_its_dial_level_and_why():
    cfg = PacingConfig()
    waiting = InboundQueue("care", 1, (), 0.0, 180.0, 80.0, 20.0)
    held = pace("predictive", AgentsView(5, 5, (waiting,)), 2, 10, M, cfg, now=100.0)
    assert (held.launch, held.reason, held.free, held.dial_level) == (0, "inbound", 0, None)
    progressive = pace("progressive", AgentsView(4, 6), 1, 10, M, cfg, now=100.0)
    assert progressive.launch == 3 and progressive.reason == "progressive"
    assert progressive.dial_level == 1.0                     # 1 in flight + 3 started, 4 free
    view = progressive.view()
    assert view["pacing_reason"] == "progressive" and view["free_for_campaign"] == 4 and view["paced_at"] == 100.0
    assert view["measured_live_rate"] == round(M.live_rate, 4)
    assert pace("preview", AgentsView(3, 3), 0, 10, M, cfg).dial_level == 0.0
    assert pace("predictive", AgentsView(0, 3), 0, 10, M, cfg).dial_level is None


@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30), st.integers(0, 40),
       st.sampled_from(["progressive", "predictive"]))
def test_the_dial_level_is_the_calls_per_free_agent_after_the_decision(free, extra, in_flight, headroom, mode):
    p = pace(mode, AgentsView(free, free + extra), in_flight, headroom, M, PacingConfig())
    assert p.launch == launch_count(mode, AgentsView(free, free + extra), in_flight, headroom, M, PacingConfig())
    if free == 0:
        assert p.dial_level is None
    else:
        assert p.dial_level == round((in_flight + p.launch) / free, 3)
        if mode == "progressive":
            assert p.launch == 0 or p.dial_level <= 1.0


def test_blending_counts_waiting_inbound_callers_of_the_campaign_agents_other_queues_only():
    config = SimpleNamespace(agents=[SimpleNamespace(queues={"blend": {}, "care": {}}),
                                     SimpleNamespace(queues={"survey": {}}),
                                     SimpleNamespace(queues={"other": {}})])
    assert blended_queues(config, "blend") == {"care"}
    assert blended_queues(config, "survey") == frozenset()
    w = lambda cid, q, status="waiting", callback=False: SimpleNamespace(  # noqa: E731
        call_id=cid, queue_id=q, status=status, callback=callback)
    waiting = [w("in1", "care"), w("in2", "care", "ringing"), w("cb", "care", callback=True), w("x", "other"),
               w("dialer-1-1", "care")]
    assert inbound_waiting(waiting, frozenset({"care"}), {"dialer-1-1"}) == 1


def test_a_dial_string_takes_only_an_e164_number():
    assert dial_string("Local/{number}@cti-outbound", "+442079460101") == "Local/+442079460101@cti-outbound"
    for bad in ("442079460101", "+44 20", "+4420,7", "+1&Local/x"):
        with pytest.raises(ValueError):
            dial_string("Local/{number}@cti-outbound", bad)


def test_the_dialplan_step_is_parsed_typed():
    ev = parse({"Event": "UserEvent", "UserEvent": "CtiDialer", "Uniqueid": "dialer-7-1", "Linkedid": "dialer-7-1",
                "Attempt": "7", "Step": "amd", "Status": "MACHINE", "Cause": "LONGGREETING-1600-1500"})
    assert ev == DialerStep("dialer-7-1", "7", "amd", "MACHINE", "LONGGREETING-1600-1500")
    assert parse({"Event": "UserEvent", "UserEvent": "CtiDialer", "Step": "amd"}) is None


# -- the shell, with a fake bus -----------------------------------------------------------


@dataclass
class FakeBus:
    typed: dict[type, list] = field(default_factory=dict)
    plain: list = field(default_factory=list)

    def subscribe(self, fn):
        self.plain.append(fn)
        return lambda: None

    def subscribe_to(self, kind, fn):
        self.typed.setdefault(kind, []).append(fn)
        return lambda: None

    def send(self, ev):
        for fn in self.typed.get(type(ev), []):
            fn(ev)


class Recorder(CampaignRunner):
    def _record(self, a, outcome):      # no database: keep what would be written
        a.recorded = True
        self.written.append((a.attempt_id, outcome, a.amd_status, a.agent))

    def _record_hung_up(self, a):        # the end of a connected call: the "no result" clock
        self.written.append((a.attempt_id, "hung_up", a.amd_status, a.agent))


def runner() -> Recorder:
    core = SimpleNamespace(bus=FakeBus(), settings=SimpleNamespace(dialer_tick_s=1.0), ami=None, pool=None)
    acd = SimpleNamespace(divert=lambda call_id, reason: None)
    r = Recorder(core, acd)
    r.written = []
    core.bus.subscribe(r._on_call_event)
    core.bus.subscribe_to(DialerStep, r._on_step)
    core.bus.subscribe_to(OriginateResult, r._on_originated)
    core.bus.subscribe_to(LegHungUp, r._on_hangup)
    return r


def test_a_call_through_its_steps_is_written_once_with_its_outcome():
    r = runner()
    r.calls["dialer-7-1"] = attempt()
    bus = r.core.bus
    bus.send(DialerStep("dialer-7-1", "7", "answered", "", ""))
    bus.send(DialerStep("dialer-7-1", "7", "amd", "HUMAN", "HUMAN-200-800"))
    bus.send(DialerStep("dialer-7-1", "7", "abandoned", "", ""))
    bus.send(LegHungUp("dialer-7-1"))
    bus.send(LegHungUp("dialer-7-1"))
    assert r.written == [(7, "abandoned", "HUMAN", None)]
    assert r.ledgers[1].rates(datetime.now(timezone.utc))["24h"].rate == 1.0


def test_a_connected_call_is_answered_at_once_and_not_written_again_at_its_end():
    r = runner()
    r.calls["dialer-7-1"] = attempt(answered_at=1001.0, amd_status="HUMAN")
    for fn in r.core.bus.plain:
        fn(SimpleNamespace(kind="call.connected", call_id="dialer-7-1", data={"agent": "a1"}))
    r.core.bus.send(LegHungUp("dialer-7-1"))
    assert r.written == [(7, "answered", "HUMAN", "a1"), (7, "hung_up", "HUMAN", "a1")] and not r.calls


def test_a_hangup_before_the_originate_response_waits_for_its_reason():
    async def go():
        r = runner()
        r.calls["dialer-7-1"] = attempt()
        r.core.bus.send(LegHungUp("dialer-7-1"))
        assert r.written == []                      # not "failed" for want of the reason
        r.core.bus.send(OriginateResult("dialer-7-1", False, "5"))
        assert r.written == [(7, "busy", None, None)]
        r.calls["dialer-8-2"] = lost = Attempt(8, 4, 1, "dialer-8-2", 1000.0, 20)
        r.core.bus.send(LegHungUp("dialer-8-2"))
        r._finish_unless_done(lost)                 # what the grace timer does
        assert r.written[-1] == (8, "failed", None, None)

    asyncio.run(go())


def test_a_failed_originate_is_written_with_its_reason():
    r = runner()
    r.calls["dialer-7-1"] = attempt()
    r.core.bus.send(OriginateResult("dialer-7-1", False, "5"))
    assert r.written == [(7, "busy", None, None)]


@given(st.dictionaries(st.sampled_from(["Uniqueid", "Attempt", "Step", "Status", "Cause", "Linkedid"]),
                       st.text(max_size=30)))
def test_stray_or_hostile_steps_change_nothing_of_calls_they_do_not_name(headers):
    r = runner()
    r.calls["dialer-7-1"] = attempt()
    ev = parse({"Event": "UserEvent", "UserEvent": "CtiDialer", **headers})
    if ev is not None:
        r.core.bus.send(ev)
    a = r.calls.get("dialer-7-1")
    if ev is None or ev.uniqueid != "dialer-7-1" or ev.attempt != "7":
        assert a is not None and a.answered_at is None and a.amd_status is None and not r.written
    else:
        assert a is not None and (a.amd_status is None or len(a.amd_status) <= 20)


def test_the_emergency_stop_halts_placing_calls_before_the_database_answers():
    async def go():
        r = runner()
        paused = asyncio.Event()

        async def pause_all(db):
            assert r._halted           # already halted in memory
            paused.set()
            return [1, 2]

        import dialer.store as store
        old, store.pause_all = store.pause_all, pause_all
        try:
            assert await r.pause_all() == [1, 2]
        finally:
            store.pause_all = old
        assert paused.is_set() and r.stopped_at is not None
        assert await r.tick(None) == 0
        r.wake()
        assert not r._halted

    asyncio.run(go())


def test_an_emergency_switch_covering_every_call_pauses_the_campaigns_and_a_narrow_one_does_not():
    from emergency.service import EmergencyService
    from emergency.switches import Switch

    async def go():
        paused: list[int] = []

        async def hook():
            paused.append(1)

        svc = EmergencyService(SimpleNamespace(settings=SimpleNamespace(node_name="main"), ami=None))
        svc.campaign_pause_hooks.append(hook)
        narrow = Switch(1, "queue", "care", "hangup")
        svc.apply([narrow], 100.0)
        svc.apply([narrow, Switch(2, "node", "other", "hangup")], 101.0)
        await asyncio.sleep(0)
        assert paused == []
        svc.apply([narrow, Switch(3, "all", "", "continue")], 102.0)
        await asyncio.sleep(0)
        assert paused == [1]
        svc.apply([narrow, Switch(3, "all", "", "continue")], 103.0)     # still in force: not again
        svc.apply([Switch(4, "node", "main", "hangup")], 104.0)
        await asyncio.sleep(0)
        assert paused == [1, 1]

    asyncio.run(go())


@dataclass
class FakeHa:
    leading: bool = False
    on_lead: list = field(default_factory=list)
    on_step_down: list = field(default_factory=list)

    def may_act(self) -> bool:
        return self.leading


def test_in_an_ha_pair_the_runner_runs_only_while_its_node_leads():
    from aiohttp import web

    from api.dialer_routes import RUNNER, setup_dialer_runner
    from cti.daemon import CORE

    async def go():
        app = web.Application()
        core = SimpleNamespace(bus=FakeBus(), settings=SimpleNamespace(dialer_tick_s=3600.0), ami=object(),
                               pool=object(), health_parts={})
        app[CORE] = core
        ha = FakeHa()
        acd = SimpleNamespace(router=None, config=SimpleNamespace(agents=[]))
        runner = setup_dialer_runner(app, acd, enabled=True, ha=ha)
        assert app[RUNNER] is runner and runner._task is None           # a standby: not started
        assert await runner.tick(datetime.now(timezone.utc)) == 0        # nor placing anything (pool untouched)
        assert len(ha.on_lead) == 1 and len(ha.on_step_down) == 1
        ha.leading = True
        runner.ledgers[1] = object()                                     # what an earlier term left
        await ha.on_lead[0](7)
        assert runner._task is not None and runner.ledgers == {}         # rebuilt from the database
        ha.leading = False
        await ha.on_step_down[0]()
        assert runner._task is None and runner.health()["running"] is False

    asyncio.run(go())
