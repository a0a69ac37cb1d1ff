"""Pacing: the binomial model against brute force, the modes, the caps' hard guard,
the 24-hour and 30-day ledger, and blending with inbound."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from dialer import pacing
from dialer.pacing import (
    AbandonLedger, DialState, Measured, Mode, PacingConfig, PacingError, decide,
)

T0 = datetime(2026, 12, 7, 9, tzinfo=timezone.utc)
M = Measured(live_rate=0.25, answer_delay_s=12.0, handle_s=180.0)
CONFIG = PacingConfig()


@pytest.mark.parametrize("n,p", [(0, 0.3), (1, 0.25), (7, 0.25), (30, 0.9), (12, 1.0)])
def test_the_binomial_law_matches_the_textbook(n, p):
    pmf = pacing._binomial(n, p)
    assert len(pmf) == n + 1
    for i, v in enumerate(pmf):
        assert v == pytest.approx(math.comb(n, i) * p ** i * (1 - p) ** (n - i), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(k=st.integers(0, 25), p=st.floats(0.01, 0.99), free=st.integers(0, 6), busy=st.integers(0, 20),
       q=st.floats(0.0, 1.0))
def test_expected_excess_matches_the_double_sum(k, p, free, busy, q):
    x, y = pacing._binomial(k, p), pacing._shifted_binomial(free, busy, q)
    brute = sum(px * py * max(0, i - j) for i, px in enumerate(x) for j, py in enumerate(y))
    assert pacing._expected_excess(x, y) == pytest.approx(brute, abs=1e-9)


def test_preview_starts_nothing_and_progressive_one_call_per_free_agent():
    state = DialState(free=4, busy=10, in_flight=1)
    assert decide(state, M, PacingConfig(mode=Mode.PREVIEW), 100).launch == 0
    d = decide(state, M, PacingConfig(mode=Mode.PROGRESSIVE), 100)
    assert d.launch == 3 and d.reason == "progressive"
    assert decide(DialState(1, 10, 3), M, PacingConfig(mode="progressive"), 100).launch == 0


def test_predictive_dials_ahead_of_free_agents_when_the_caps_allow():
    d = decide(DialState(free=3, busy=17, in_flight=0), M, CONFIG, headroom=100)
    assert d.launch > 3 and d.reason == "model"
    assert d.expected_abandoned <= CONFIG.target * d.expected_answered


def test_with_no_headroom_predictive_is_progressive():
    d = decide(DialState(free=3, busy=17, in_flight=0), M, CONFIG, headroom=0)
    assert d.launch == 3 and d.reason == "guard"


def test_all_agents_busy_and_calls_ringing_start_nothing():
    assert decide(DialState(free=0, busy=20, in_flight=3), M, CONFIG, headroom=100).launch == 0


def test_no_agent_no_call():
    assert decide(DialState(0, 0, 0), M, CONFIG, 100) .reason == "no_agents"


def test_false_positives_lower_the_models_aim():
    plain = decide(DialState(3, 17, 0), M, CONFIG, 100).launch
    fp = Measured(0.25, 12.0, 180.0, false_positives_per_live=CONFIG.target)
    assert decide(DialState(3, 17, 0), fp, CONFIG, 100).launch < plain


@settings(max_examples=300, deadline=None)
@given(free=st.integers(0, 30), busy=st.integers(0, 60), in_flight=st.integers(0, 80), headroom=st.integers(0, 40),
       p=st.floats(0.02, 0.9), delay=st.floats(1, 40), handle=st.floats(20, 900), target=st.floats(0, 0.03))
def test_a_decision_never_passes_the_guard_nor_the_lines(free, busy, in_flight, headroom, p, delay, handle, target):
    config = PacingConfig(target=target)
    d = decide(DialState(free, busy, in_flight), Measured(p, delay, handle), config, headroom)
    assert d.launch >= 0
    if d.launch:
        assert in_flight + d.launch - free <= headroom
        assert in_flight + d.launch <= config.max_lines_per_agent * (free + busy)
    if d.launch > max(0, free - in_flight):                    # beyond progressive: the model allowed it
        assert d.expected_abandoned <= target * d.expected_answered + 1e-12


def test_more_free_agents_never_mean_fewer_calls():
    launches = [decide(DialState(f, 20 - f, 2), M, CONFIG, 100).launch for f in range(0, 21)]
    assert launches == sorted(launches)


# -- the ledger and its caps --------------------------------------------------------------


def test_headroom_is_the_excess_the_cap_can_pay_for():
    ledger = AbandonLedger(PacingConfig(roll_guard=timedelta(0)))
    assert ledger.headroom(T0) == 0                            # no history: progressive
    ledger.record(T0, live=1000, abandoned=10)
    e = ledger.headroom(T0)
    assert (10 + e) / (1000 + e) <= 0.03 < (10 + e + 1) / (1000 + e + 1)


@settings(max_examples=300, deadline=None)
@given(live=st.integers(0, 5000), abandoned=st.integers(0, 200), machines=st.integers(0, 2000),
       fp=st.floats(0, 0.2), cap=st.floats(0.005, 0.03))
def test_even_if_the_whole_excess_is_abandoned_no_window_passes_its_cap(live, abandoned, machines, fp, cap):
    config = PacingConfig(cap=cap, target=0.0, amd_false_positive_share=fp, roll_guard=timedelta(0))
    ledger = AbandonLedger(config)
    ledger.record(T0 - timedelta(days=3), live=live, machines=machines)   # in the 30 days only
    ledger.record(T0, live=min(live, 100), abandoned=abandoned)
    e = ledger.headroom(T0)
    ledger.record(T0, live=e, abandoned=e)
    for rates in ledger.rates(T0).values():
        if e:
            assert rates.rate <= cap + 1e-12


def test_the_24h_window_forgets_and_the_30_day_window_remembers():
    ledger = AbandonLedger(PacingConfig(amd_false_positive_share=0.1))
    ledger.record(T0, live=100, abandoned=5, machines=10)
    later = ledger.rates(T0 + timedelta(hours=25))
    assert later["24h"].live == 0 and later["24h"].rate == 0
    assert later["30d"].abandoned == pytest.approx(5 + 1) and later["30d"].live == pytest.approx(101)
    assert ledger.rates(T0 + timedelta(days=31))["30d"].live == 0


def test_answers_about_to_leave_a_window_pay_for_nothing():
    ledger = AbandonLedger(PacingConfig(roll_guard=timedelta(hours=1)))
    ledger.record(T0, live=1000)
    assert ledger.headroom(T0 + timedelta(hours=22)) > 0
    assert ledger.headroom(T0 + timedelta(hours=23, minutes=30)) == 0      # leaves the 24 h within the hour


def test_the_ledger_refuses_time_going_backwards():
    ledger = AbandonLedger(CONFIG)
    ledger.record(T0, live=1)
    with pytest.raises(PacingError, match="backwards"):
        ledger.record(T0 - timedelta(minutes=2), live=1)


@pytest.mark.parametrize("kw,name", [(dict(cap=0.05), "cap"), (dict(target=0.04), "target"),
                                     (dict(cap=0.01, target=0.02), "target"), (dict(mode="turbo"), "mode"),
                                     (dict(answer_wait_s=3), "answer_wait_s")])
def test_bad_settings_are_refused_naming_the_field(kw, name):
    with pytest.raises(PacingError) as err:
        PacingConfig(**kw)
    assert err.value.field == name


def test_measured_figures_start_from_the_prior_and_follow_the_counts():
    assert Measured.from_counts(0, 0, 0, 0, 0).live_rate == pytest.approx(0.2)
    m = Measured.from_counts(10_000, 2_500, 2_500 * 12.0, 2_000, 2_000 * 180.0, false_positives=25)
    assert m.live_rate == pytest.approx(0.25, abs=0.002) and m.handle_s == pytest.approx(180, abs=2)
    assert m.false_positives_per_live == pytest.approx(25 / 2525)


def linear_decision(state: DialState, m: Measured, config: PacingConfig, headroom: int) -> int:
    """The reference: try one more call at a time while the model allows it."""
    agents = state.free + state.busy
    lines = math.floor(config.max_lines_per_agent * agents)
    limit = min(lines, state.free + headroom) - state.in_flight
    target = max(0.0, config.target - m.false_positives_per_live)
    q = 1.0 - math.exp(-(m.answer_delay_s + config.answer_wait_s) / m.handle_s)
    y = pacing._shifted_binomial(state.free, state.busy, q)
    n = max(0, state.free - state.in_flight)
    while n < limit:
        k = state.in_flight + n + 1
        if pacing._expected_excess(pacing._binomial(k, m.live_rate), y) > target * k * m.live_rate:
            break
        n += 1
    return max(0, min(n, limit))


@settings(max_examples=400, deadline=None)
@given(free=st.integers(0, 40), busy=st.integers(1, 120), in_flight=st.integers(0, 150), headroom=st.integers(0, 300),
       p=st.floats(0.02, 0.95), delay=st.floats(1, 40), handle=st.floats(20, 900), target=st.floats(0, 0.03))
def test_the_bisection_decides_as_trying_one_call_at_a_time(free, busy, in_flight, headroom, p, delay, handle, target):
    state, m, config = DialState(free, busy, in_flight), Measured(p, delay, handle), PacingConfig(target=target)
    assert decide(state, m, config, headroom).launch == linear_decision(state, m, config, headroom)
