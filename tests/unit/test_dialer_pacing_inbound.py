"""Pacing with inbound callers on the same agents (dialer.pacing, "Inbound on the same agents"):
the Poisson law of the arrivals against the textbook, the agents they take against brute
force, the hard guard counting only the free agents inbound's upper quantile leaves, the
model counting what inbound takes, and no change at all without inbound."""
from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from dialer import pacing
from dialer.pacing import DialState, Measured, Mode, PacingConfig, PacingError, decide, inbound_takers, quantile

M = Measured(live_rate=0.25, answer_delay_s=12.0, handle_s=180.0)
H = M.answer_delay_s + PacingConfig().answer_wait_s            # the horizon decide() uses
PER_HOUR = 1 / 3600.0


def textbook_poisson(mean: float, i: int) -> float:
    return math.exp(-mean) * mean ** i / math.factorial(i)


@pytest.mark.parametrize("mean", [0.01, 0.5, 1.33, 4.0, 25.0])
def test_the_poisson_law_matches_the_textbook_and_gathers_its_tail(mean):
    pmf = pacing._poisson(mean, 60)
    assert sum(pmf) == pytest.approx(1.0, abs=1e-9)
    for i, v in enumerate(pmf[:-1]):
        assert v == pytest.approx(textbook_poisson(mean, i), abs=1e-12)
    short = pacing._poisson(mean, 3)                            # P(N >= 3) gathered on 3
    assert len(short) == 4 and short[3] == pytest.approx(1 - sum(textbook_poisson(mean, i) for i in range(3)))


def test_a_huge_mean_does_not_underflow_every_agent_is_taken():
    assert pacing._poisson(5000.0, 40)[-1] == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(rate_h=st.floats(0, 3000), free=st.integers(0, 8), busy=st.integers(0, 8), spare=st.integers(0, 6))
def test_the_agents_inbound_takes_are_its_arrivals_beyond_the_reserve(rate_h, free, busy, spare):
    state = DialState(free, busy, 0, inbound_per_s=rate_h * PER_HOUR, inbound_spare=spare)
    d = inbound_takers(state, H, PacingConfig())
    assert sum(d) == pytest.approx(1.0, abs=1e-9) and len(d) <= free + busy + 1
    mean = rate_h * PER_HOUR * H
    for j in range(len(d) - 1):            # the last value gathers everything at or above it
        brute = sum(textbook_poisson(mean, n) for n in range(0, 200) if max(0, n - spare) == j)
        assert d[j] == pytest.approx(brute, abs=1e-9)


def test_no_inbound_or_the_rule_before_takes_no_agent():
    state = DialState(3, 10, 0, inbound_per_s=300 * PER_HOUR)
    assert inbound_takers(state, H, PacingConfig(inbound_quantile=None)) == [1.0]
    assert inbound_takers(DialState(3, 10, 0), H, PacingConfig()) == [1.0]


def test_the_quantile_is_the_smallest_value_reaching_the_level():
    pmf = [0.5, 0.3, 0.15, 0.05]
    assert [quantile(pmf, lv) for lv in (0.5, 0.51, 0.8, 0.95, 0.99, 1.0)] == [0, 1, 1, 2, 3, 3]


@settings(max_examples=200, deadline=None)
@given(y=st.lists(st.floats(0, 1), min_size=1, max_size=8), d=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_the_agents_left_match_the_double_sum(y, d):
    if sum(y) == 0 or sum(d) == 0:
        return
    y = [v / sum(y) for v in y]
    d = [v / sum(d) for v in d]
    z = pacing._less(y, d)
    for j in range(len(y)):
        brute = sum(py * pd for i, py in enumerate(y) for k, pd in enumerate(d) if max(0, i - k) == j)
        assert z[j] == pytest.approx(brute, abs=1e-12)


# -- the decision ---------------------------------------------------------------------------

def test_one_blended_agent_with_no_history_is_not_called_on_when_inbound_may_take_her():
    # One free agent, an inbound caller a minute: a one in six chance one arrives while the call
    # rings. No headroom: the call would be excess, so none starts, whatever the mode.
    busy_inbound = DialState(1, 0, 0, inbound_per_s=60 * PER_HOUR)
    for mode in ("progressive", "predictive"):
        assert decide(busy_inbound, M, PacingConfig(mode=mode), 0).launch == 0
        # The rule before counted her as the campaign's for the whole ring.
        assert decide(busy_inbound, M, PacingConfig(mode=mode, inbound_quantile=None), 0).launch == 1
        # A quiet queue (a call every four hours): her call is safe within the 99% quantile.
        quiet = DialState(1, 0, 0, inbound_per_s=0.25 * PER_HOUR)
        assert decide(quiet, M, PacingConfig(mode=mode), 0).launch == 1


def test_a_reserve_takes_the_inbound_arrivals_first():
    # 300 calls an hour over 14 s: 1.2 arrivals expected, 4 at the 99% quantile.
    state = DialState(6, 14, 0, inbound_per_s=300 * PER_HOUR)
    assert quantile(inbound_takers(state, H, PacingConfig()), 0.99) == 4
    assert decide(state, M, PacingConfig(), 0).launch == 2              # 6 free, 4 taken at worst
    reserved = DialState(6, 14, 0, inbound_per_s=300 * PER_HOUR, inbound_spare=4)
    assert decide(reserved, M, PacingConfig(), 0).launch == 6           # the 4 kept free take them


def test_the_headroom_pays_for_the_agents_inbound_may_take():
    state = DialState(6, 14, 0, inbound_per_s=300 * PER_HOUR)
    # With headroom the model decides (more calls than the sure free agents, fewer than before).
    with_room = decide(state, M, PacingConfig(), 100)
    assert 2 < with_room.launch < decide(DialState(6, 14, 0), M, PacingConfig(), 100).launch
    assert with_room.expected_abandoned <= PacingConfig().target * with_room.expected_answered


states = dict(free=st.integers(0, 25), busy=st.integers(0, 40), in_flight=st.integers(0, 60),
              rate_h=st.floats(0, 2000), spare=st.integers(0, 6), headroom=st.integers(0, 60),
              p=st.floats(0.02, 0.9), delay=st.floats(1, 40), handle=st.floats(20, 900),
              target=st.floats(0, 0.03), mode=st.sampled_from(["progressive", "predictive"]),
              level=st.floats(0.5, pacing.MAX_QUANTILE))


@settings(max_examples=400, deadline=None)
@given(**states)
def test_calls_beyond_the_free_agents_inbound_leaves_never_pass_the_headroom(
        free, busy, in_flight, rate_h, spare, headroom, p, delay, handle, target, mode, level):
    state = DialState(free, busy, in_flight, inbound_per_s=rate_h * PER_HOUR, inbound_spare=spare)
    m, config = Measured(p, delay, handle), PacingConfig(mode=mode, target=target, inbound_quantile=level)
    d = decide(state, m, config, headroom)
    taken = quantile(inbound_takers(state, delay + config.answer_wait_s, config), level)
    assert d.launch >= 0
    if d.launch:
        # Every call beyond the free agents inbound's upper quantile leaves may be abandoned:
        # the ledger's headroom pays for them all, as for any excess.
        assert in_flight + d.launch - max(0, free - taken) <= headroom
        if mode == "progressive":
            assert in_flight + d.launch <= free
    if d.launch > max(0, free - taken - in_flight):            # beyond the sure agents: the model allowed it
        assert d.expected_abandoned <= target * d.expected_answered + 1e-12


@settings(max_examples=300, deadline=None)
@given(**states, more=st.floats(0, 2000))
def test_more_inbound_traffic_never_means_more_calls(free, busy, in_flight, rate_h, spare, headroom, p, delay,
                                                     handle, target, mode, level, more):
    m, config = Measured(p, delay, handle), PacingConfig(mode=mode, target=target, inbound_quantile=level)
    calm = DialState(free, busy, in_flight, inbound_per_s=rate_h * PER_HOUR, inbound_spare=spare)
    busier = DialState(free, busy, in_flight, inbound_per_s=(rate_h + more) * PER_HOUR, inbound_spare=spare)
    quiet = DialState(free, busy, in_flight)
    assert decide(busier, m, config, headroom).launch <= decide(calm, m, config, headroom).launch \
        <= decide(quiet, m, config, headroom).launch


@settings(max_examples=300, deadline=None)
@given(**states)
def test_without_inbound_or_under_the_rule_before_nothing_changes(free, busy, in_flight, rate_h, spare, headroom, p,
                                                                  delay, handle, target, mode, level):
    m = Measured(p, delay, handle)
    plain = decide(DialState(free, busy, in_flight), m, PacingConfig(mode=mode, target=target), headroom)
    before = PacingConfig(mode=mode, target=target, inbound_quantile=None)
    blended = DialState(free, busy, in_flight, inbound_per_s=rate_h * PER_HOUR, inbound_spare=spare)
    assert decide(blended, m, before, headroom) == plain
    if mode == "progressive":
        assert plain.launch == max(0, free - in_flight)


def linear_inbound_decision(state: DialState, m: Measured, config: PacingConfig, headroom: int) -> int:
    """The reference: the sure agents, then one more call at a time while E[max(0, X - Z)],
    summed over X, Y and D by brute force, stays under the target."""
    agents = state.free + state.busy
    horizon = m.answer_delay_s + config.answer_wait_s
    d = inbound_takers(state, horizon, config)
    sure = max(0, state.free - quantile(d, config.inbound_quantile))
    cap = state.free if config.mode is Mode.PROGRESSIVE else math.floor(config.max_lines_per_agent * agents)
    limit = min(cap, sure + headroom) - state.in_flight
    y = pacing._shifted_binomial(state.free, state.busy, 1.0 - math.exp(-horizon / m.handle_s))

    def excess(k: int) -> float:
        x = pacing._binomial(k, m.live_rate)
        return sum(px * py * pd * max(0, i - max(0, j - t))
                   for i, px in enumerate(x) for j, py in enumerate(y) for t, pd in enumerate(d))

    n = max(0, sure - state.in_flight)
    while n < limit and excess(state.in_flight + n + 1) <= config.target * (state.in_flight + n + 1) * m.live_rate:
        n += 1
    return max(0, min(n, limit))


@settings(max_examples=150, deadline=None)
@given(free=st.integers(0, 8), busy=st.integers(1, 10), in_flight=st.integers(0, 12), rate_h=st.floats(1, 1500),
       spare=st.integers(0, 3), headroom=st.integers(0, 20), p=st.floats(0.05, 0.9), target=st.floats(0, 0.03),
       mode=st.sampled_from(["progressive", "predictive"]))
def test_the_bisection_decides_as_trying_one_call_at_a_time_with_inbound(free, busy, in_flight, rate_h, spare,
                                                                         headroom, p, target, mode):
    state = DialState(free, busy, in_flight, inbound_per_s=rate_h * PER_HOUR, inbound_spare=spare)
    m, config = Measured(p, 12.0, 180.0), PacingConfig(mode=mode, target=target)
    assert decide(state, m, config, headroom).launch == linear_inbound_decision(state, m, config, headroom)


@pytest.mark.parametrize("kw,name", [(dict(inbound_quantile=0.3), "inbound_quantile"),
                                     (dict(inbound_quantile=1.0), "inbound_quantile"),
                                     (dict(inbound_quantile="high"), "inbound_quantile")])
def test_a_bad_inbound_quantile_is_refused_by_name(kw, name):
    with pytest.raises(PacingError) as err:
        PacingConfig(**kw)
    assert err.value.field == name


@pytest.mark.parametrize("kw,name", [(dict(inbound_per_s=-1.0), "inbound_per_s"),
                                     (dict(inbound_per_s=float("nan")), "inbound_per_s"),
                                     (dict(inbound_per_s=float("inf")), "inbound_per_s"),
                                     (dict(inbound_spare=-1), "inbound_spare")])
def test_a_bad_inbound_state_is_refused_by_name(kw, name):
    with pytest.raises(PacingError) as err:
        DialState(1, 1, 0, **kw)
    assert err.value.field == name
