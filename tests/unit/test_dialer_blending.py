"""Blending (dialer.blending): the reserve of free agents a campaign keeps for the inbound
queues its agents also serve, the arrival rate it measures, its JSON, and the runner's
``launch_count`` never dialing while the reserve is not met."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.blending import (ArrivalLog, InboundQueue, InvalidReserve, ReserveConfig, calls_per_hour, inbound_queues,
                             outbound_agents, queue_need, reserve_from_json, reserve_to_json)
from dialer.pacing import Measured, PacingConfig
from dialer.runner import AgentsView, launch_count

NOW = 1_800_000_000.0
M = Measured(0.25, 8.0, 180.0)


def care(*, waiting: int = 0, per_hour: float = 60.0, span_min: int = 15, busy: int = 0, other_free: int = 0,
         handle_s: float = 180.0, sl_percent: float = 80.0) -> InboundQueue:
    """A queue that had ``per_hour`` arrivals an hour, evenly, over the last ``span_min`` minutes."""
    n = round(per_hour * span_min / 60)
    arrivals = tuple(NOW - (i + 0.5) * span_min * 60 / max(1, n) for i in range(n))
    return InboundQueue("care", waiting, arrivals, NOW - 3600, handle_s, sl_percent, 20.0, busy, other_free)


SL = ReserveConfig(service_level=True)


def test_no_inbound_queue_leaves_every_free_agent_to_outbound():
    r = outbound_agents(NOW, 6, [], ReserveConfig(agents=3, service_level=True))
    assert (r.outbound, r.reserved, r.reason, r.holds_back) == (6, 0, "no_inbound", False)


def test_a_caller_waiting_takes_every_free_agent():
    r = outbound_agents(NOW, 6, [care(waiting=1)], ReserveConfig())
    assert (r.outbound, r.reserved, r.reason, r.holds_back) == (0, 6, "caller_waiting", True)


def test_the_default_reserve_keeps_nothing_while_nobody_waits():
    assert outbound_agents(NOW, 6, [care(per_hour=600)], ReserveConfig()).outbound == 6


def test_a_fixed_reserve_keeps_that_many_free_agents():
    assert outbound_agents(NOW, 6, [care()], ReserveConfig(agents=2)).outbound == 4
    kept = outbound_agents(NOW, 2, [care()], ReserveConfig(agents=2))
    assert (kept.outbound, kept.reserved, kept.needed, kept.holds_back) == (0, 2, 2, True)
    # Even with no free agent: a reserve not met stops the campaign (agents about to free are inbound's).
    assert outbound_agents(NOW, 0, [care()], ReserveConfig(agents=1)).holds_back
    assert not outbound_agents(NOW, 0, [care()], ReserveConfig()).holds_back


def test_the_service_level_reserve_is_what_erlang_c_asks_less_the_agents_on_inbound_calls():
    # 60 calls an hour of 180 s: 3 erlangs; Erlang C needs 5 agents for 80% within 20 s.
    assert queue_need(care(), 60.0) == 5
    assert outbound_agents(NOW, 8, [care()], SL).outbound == 3
    assert outbound_agents(NOW, 8, [care(busy=2)], SL).outbound == 5
    # The queue's free agents who are not the campaign's count for it too.
    assert outbound_agents(NOW, 8, [care(busy=2, other_free=3)], SL).outbound == 8
    # The larger of the two reserves.
    assert outbound_agents(NOW, 8, [care(busy=4)], ReserveConfig(agents=3, service_level=True)).outbound == 5


def test_the_reserve_is_summed_over_the_inbound_queues():
    other = InboundQueue("sales", 0, care().arrivals, NOW - 3600, 180.0, 80.0, 20.0)
    assert outbound_agents(NOW, 12, [care(), other], SL).outbound == 2


def test_a_quiet_queue_needs_no_reserve_and_a_target_of_zero_none():
    assert outbound_agents(NOW, 4, [care(per_hour=0)], SL).outbound == 4
    assert queue_need(care(sl_percent=0), 60.0) == 0


def test_traffic_erlang_c_cannot_staff_keeps_every_agent():
    assert outbound_agents(NOW, 50, [care(per_hour=10_000_000, span_min=15)], SL).outbound == 0


def test_the_rate_counts_only_the_window_and_since_the_queue_was_first_seen():
    q = InboundQueue("care", 0, (NOW - 10, NOW - 100, NOW - 1000, NOW - 5000), NOW - 7200, 180, 80, 20)
    assert calls_per_hour(q, NOW, 15 * 60) == pytest.approx(2 * 4)          # 2 in 15 min
    assert calls_per_hour(q, NOW, 60 * 60) == pytest.approx(3)              # 3 in the hour
    assert calls_per_hour(q, NOW, 60) == pytest.approx(1 * 60)              # 1 in the last minute
    young = InboundQueue("care", 0, (NOW - 10,), NOW - 20, 180, 80, 20)
    assert calls_per_hour(young, NOW, 15 * 60) == pytest.approx(60)         # over a minute at least
    # An arrival after now (a clock step) is not counted.
    assert calls_per_hour(InboundQueue("care", 0, (NOW + 5,), NOW - 7200, 180, 80, 20), NOW, 900) == 0


def test_with_no_reserve_a_blended_campaign_still_dials_on_agents_about_to_free():
    # No free agent, nobody waiting, no reserve: predictive may count on busy agents freeing.
    view = AgentsView(0, 100, (care(),))
    assert launch_count("predictive", view, 0, 50, M, PacingConfig(), now=NOW, reserve=ReserveConfig()) > 0
    assert launch_count("predictive", view, 0, 50, M, PacingConfig(), now=NOW, reserve=ReserveConfig(agents=1)) == 0


def test_the_runner_counts_the_measured_inbound_arrivals_as_taking_agents_during_the_ring():
    # One free blended agent, no history (headroom 0), nobody waiting: at 60 inbound calls an hour
    # one may take her while the call rings, so no call; the rule before called.
    view = AgentsView(1, 1, (care(per_hour=60),))
    assert launch_count("progressive", view, 0, 0, M, PacingConfig(), now=NOW) == 0
    assert launch_count("progressive", view, 0, 0, M, PacingConfig(inbound_quantile=None), now=NOW) == 1
    # A quiet queue (no arrival in the window): she is the campaign's.
    assert launch_count("progressive", AgentsView(1, 1, (care(per_hour=0),)), 0, 0, M, PacingConfig(), now=NOW) == 1
    # Six free agents at 300 an hour: the reserve of 4 takes the arrivals first, so the campaign
    # counts on its 2 (6 less the reserve) without losing any to inbound.
    busy = AgentsView(6, 20, (care(per_hour=300),))
    assert launch_count("progressive", busy, 0, 0, M, PacingConfig(), now=NOW) == 2
    assert launch_count("progressive", busy, 0, 0, M, PacingConfig(), now=NOW, reserve=ReserveConfig(agents=4)) == 2
    assert launch_count("progressive", busy, 0, 0, M, PacingConfig(inbound_quantile=None), now=NOW) == 6


def test_the_arrival_log_turns_entered_counts_into_instants():
    log = ArrivalLog(keep_s=600)
    log.observe("care", 40, NOW)             # the first count only sets the mark
    assert log.arrivals("care") == ((), NOW)
    log.observe("care", 42, NOW + 5)
    log.observe("care", 42, NOW + 6)
    log.observe("care", 43, NOW + 9)
    assert log.arrivals("care") == ((NOW + 5, NOW + 5, NOW + 9), NOW)
    log.observe("care", 3, NOW + 10)         # the ACD started again: a new mark, nothing added
    log.observe("care", 4, NOW + 700)        # the old instants are dropped
    assert log.arrivals("care") == ((NOW + 700,), NOW)
    assert log.arrivals("sales") == ((), float("inf"))


def test_inbound_queues_read_from_the_router_and_config():
    a = lambda i, *qs: SimpleNamespace(id=i, queues={q: {} for q in qs})  # noqa: E731
    config = SimpleNamespace(agents=[a("b1", "blend", "care"), a("b2", "blend", "care"), a("c1", "care"),
                                     a("c2", "care"), a("s1", "survey")],
                             queues=[SimpleNamespace(id="care", sl_seconds=30.0)])
    states = {"b1": ("on_call", "care", "in-1"), "b2": ("available", None, None), "c1": ("available", None, None),
              "c2": ("wrapup", "care", "in-0")}
    stats = SimpleNamespace(offered=10, waiting=1, ringing=0, handle_time_s=200.0, sl_target=90.0)
    router = SimpleNamespace(
        waiting_calls=lambda: [SimpleNamespace(call_id="in-2", queue_id="care", status="waiting", callback=False)],
        agent_state=lambda i: SimpleNamespace(state=states[i][0], queue_id=states[i][1], call_id=states[i][2],
                                              voice_blocked=False),
        queue_stats=lambda q, now: stats)
    log = ArrivalLog()
    (q,) = inbound_queues(router, config, "blend", set(), log, NOW)
    assert (q.queue_id, q.waiting, q.busy, q.other_free) == ("care", 1, 2, 1)
    assert (q.handle_s, q.sl_percent, q.sl_seconds, q.observed_since) == (200.0, 90.0, 30.0, NOW)
    assert inbound_queues(router, config, "survey", set(), log, NOW) == []


# -- the runner's decision ------------------------------------------------------------------

queues = st.builds(
    InboundQueue, queue_id=st.sampled_from(["care", "sales", "billing"]), waiting=st.integers(0, 3),
    arrivals=st.lists(st.floats(NOW - 20_000, NOW + 100), max_size=300).map(tuple),
    observed_since=st.floats(NOW - 30_000, NOW), handle_s=st.floats(1, 3000), sl_percent=st.floats(0, 100),
    sl_seconds=st.floats(0, 600), busy=st.integers(0, 20), other_free=st.integers(0, 20))
reserves = st.builds(ReserveConfig, agents=st.integers(0, 30), service_level=st.booleans(),
                     arrivals_min=st.integers(1, 240))


@settings(max_examples=300, deadline=None)
@given(inbound=st.lists(queues, max_size=3), reserve=reserves, free=st.integers(0, 40), busy=st.integers(0, 60),
       in_flight=st.integers(0, 40), headroom=st.integers(0, 200), mode=st.sampled_from(["progressive", "predictive"]),
       now=st.floats(NOW - 1000, NOW + 1000))
def test_no_call_is_started_while_a_caller_waits_or_the_reserve_is_not_met(inbound, reserve, free, busy, in_flight, headroom, mode,
                                                          now):
    r = outbound_agents(now, free, inbound, reserve)
    n = launch_count(mode, AgentsView(free, free + busy, tuple(inbound)), in_flight, headroom, M, PacingConfig(),
                     now=now, reserve=reserve)
    assert r.outbound + r.reserved == free and r.outbound >= 0
    if inbound:
        # A caller waiting, or a reserve of one agent or more holding every free agent: no call.
        if any(q.waiting for q in inbound) or (r.needed > 0 and r.outbound == 0) \
                or 0 < reserve.agents and free <= reserve.agents:
            assert n == 0 and r.holds_back
        # What is kept is never less than the fixed reserve (when there are that many free).
        assert r.reserved >= min(free, reserve.agents)
    alone = launch_count(mode, AgentsView(free, free + busy), in_flight, headroom, M, PacingConfig())
    if not inbound or (r.needed == 0 and r.reason != "caller_waiting" and r.calls_per_hour == 0):
        # Nothing kept for inbound and no inbound arrival: the campaign paces as if it did not blend.
        assert n == alone
    # Inbound arrivals take agents during the ring (dialer.pacing): never more calls than alone.
    assert n <= alone
    if mode == "progressive":
        assert in_flight + n <= max(in_flight, r.outbound)


@settings(max_examples=200, deadline=None)
@given(q=queues, extra=st.integers(1, 50), free=st.integers(0, 40), reserve=reserves)
def test_more_inbound_arrivals_never_free_an_agent_for_outbound(q, extra, free, reserve):
    busier = InboundQueue(q.queue_id, q.waiting, q.arrivals + (NOW - 1,) * extra, q.observed_since, q.handle_s,
                          q.sl_percent, q.sl_seconds, q.busy, q.other_free)
    assert outbound_agents(NOW, free, [busier], reserve).outbound <= outbound_agents(NOW, free, [q], reserve).outbound


# -- the reserve's JSON ---------------------------------------------------------------------

def test_no_reserve_is_the_default_one():
    assert reserve_from_json(None) == ReserveConfig() == ReserveConfig(0, False, 15)


@pytest.mark.parametrize("obj, field", [
    ([], "reserve"), ({"agents": -1}, "reserve.agents"), ({"agents": 501}, "reserve.agents"),
    ({"agents": True}, "reserve.agents"), ({"agents": 1.5}, "reserve.agents"),
    ({"service_level": "yes"}, "reserve.service_level"), ({"service_level": 1}, "reserve.service_level"),
    ({"arrivals_min": 0}, "reserve.arrivals_min"), ({"arrivals_min": 241}, "reserve.arrivals_min"),
    ({"agent": 2}, "reserve.agent"),
])
def test_a_bad_reserve_is_refused_naming_its_field(obj, field):
    with pytest.raises(InvalidReserve) as e:
        reserve_from_json(obj)
    assert e.value.field == field


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.dictionaries(st.sampled_from(["agents", "service_level", "arrivals_min", "other"]),
                                 st.one_of(st.integers(-5, 600), st.booleans(), st.text(max_size=3), st.none(),
                                           st.floats(allow_nan=True)))))
def test_any_reserve_json_is_read_or_refused_by_name(obj):
    try:
        r = reserve_from_json(obj)
    except InvalidReserve as exc:
        assert exc.field.startswith("reserve")
        return
    assert reserve_from_json(reserve_to_json(r)) == r
