"""Erlang C, Erlang A, required agents and the forecast (acd.staffing)."""
from __future__ import annotations

import heapq
import math
import random
from datetime import datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from acd.staffing import (
    SlotCounts, SlotForecast, StaffingError, erlang_a_figures, erlang_b, erlang_c, erlang_c_figures,
    forecast_slot, plan_interval, required_agents, required_agents_a, same_slot_history, scheduled,
)

# -- Erlang C --------------------------------------------------------------------------


def test_the_published_worked_example():
    """100 calls per 30 minutes, AHT 3 min, 80% in 20 s, shrinkage 30%: 14 agents raw,
    20 scheduled, service level about 0.888, occupancy about 0.714."""
    s = required_agents(100, 180, 1800, sl_target=0.8, sl_seconds=20, shrinkage=0.3)
    assert (s.agents, s.scheduled) == (14, 20)
    assert s.figures.traffic == pytest.approx(10.0)
    assert s.figures.service_level == pytest.approx(0.888, abs=5e-4)
    assert s.figures.occupancy == pytest.approx(0.714, abs=5e-4)
    assert s.figures.p_wait == pytest.approx(0.1741, abs=1e-4)
    assert s.figures.asa_s == pytest.approx(7.84, abs=0.01)
    # 13 agents miss the target: 14 is the fewest.
    assert erlang_c_figures(13, 10.0, 180, 20).service_level < 0.8


def test_erlang_b_table_values():
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=1e-6)
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(0, 3.0) == 1.0


def _exact_c(n: int, a: int) -> Fraction:
    """Erlang C in exact rational arithmetic (a whole number of erlangs)."""
    terms = [Fraction(a) ** k / math.factorial(k) for k in range(n)]
    top = Fraction(a) ** n / math.factorial(n) * Fraction(n, n - a)
    return top / (sum(terms) + top)


@pytest.mark.parametrize("n, a", [(2, 1), (14, 10), (60, 50), (200, 180), (400, 390), (300, 5)])
def test_erlang_c_matches_exact_arithmetic_for_hundreds_of_agents(n, a):
    exact = _exact_c(n, a)
    assert erlang_c(n, float(a)) == pytest.approx(float(exact), rel=1e-9, abs=1e-300)


def test_thousands_of_agents_neither_overflow_nor_lose_the_answer():
    s = required_agents(20_000, 300, 1800, sl_target=0.9, sl_seconds=15)     # 3,333 erlangs
    assert 3333 < s.agents < 3500
    assert s.figures.service_level >= 0.9
    assert erlang_c_figures(s.agents - 1, s.figures.traffic, 300, 15).service_level < 0.9
    assert erlang_c(5000, 10.0) == 0.0      # below double precision, not an error


def test_an_overloaded_queue_never_meets_its_target():
    f = erlang_c_figures(10, 10.0, 180, 20)
    assert (f.p_wait, f.service_level, f.asa_s, f.occupancy) == (1.0, 0.0, math.inf, 1.0)


def test_no_calls_need_no_agents():
    s = required_agents(0, 180, 1800, sl_target=0.8, sl_seconds=20, shrinkage=0.3)
    assert (s.agents, s.scheduled) == (0, 0)
    assert erlang_c_figures(0, 0.0, 180, 20).service_level == 1.0


def test_asa_and_occupancy_goals_can_ask_for_more_agents():
    base = required_agents(100, 180, 1800, sl_target=0.8, sl_seconds=20)
    by_asa = required_agents(100, 180, 1800, sl_target=0.8, sl_seconds=20, max_asa_s=2)
    by_occ = required_agents(100, 180, 1800, sl_target=0.8, sl_seconds=20, max_occupancy=0.6)
    assert by_asa.agents > base.agents and by_asa.figures.asa_s <= 2
    assert erlang_c_figures(by_asa.agents - 1, 10.0, 180, 20).asa_s > 2
    assert by_occ.agents == 17          # 10 / 17 = 0.588; 10 / 16 = 0.625


@pytest.mark.parametrize("call, field", [
    (lambda: required_agents(-1, 180, 1800, sl_target=0.8, sl_seconds=20), "calls"),
    (lambda: required_agents(10, 0, 1800, sl_target=0.8, sl_seconds=20), "aht_s"),
    (lambda: required_agents(10, 180, 1800, sl_target=1.0, sl_seconds=20), "sl_target"),
    (lambda: required_agents(10, 180, 1800, sl_target=0.8, sl_seconds=float("nan")), "sl_seconds"),
    (lambda: required_agents(10, 180, 1800, sl_target=0.8, sl_seconds=20, shrinkage=1.0), "shrinkage"),
    (lambda: erlang_c(-1, 3.0), "agents"),
    (lambda: erlang_a_figures(5, 10, 180, 1800, patience_s=0, sl_seconds=20), "patience_s"),
])
def test_bad_arguments_are_refused_naming_them(call, field):
    with pytest.raises(StaffingError, match=field):
        call()


def test_shrinkage_rounds_up_and_is_exact_on_round_figures():
    assert scheduled(14, 0.3) == 20
    assert scheduled(14, 0.0) == 14
    assert scheduled(15, 0.3) == 22     # 21.43


@settings(max_examples=150, deadline=None)
@given(a=st.floats(0.1, 300), t=st.floats(0, 60), aht=st.floats(30, 900))
def test_more_agents_never_make_things_worse(a, t, aht):
    n0 = math.floor(a) + 1
    figs = [erlang_c_figures(n, a, aht, t) for n in range(n0, n0 + 8)]
    for x, y in zip(figs, figs[1:]):
        assert y.p_wait <= x.p_wait + 1e-12
        assert y.service_level >= x.service_level - 1e-12
        assert y.asa_s <= x.asa_s + 1e-9
        assert 0 <= y.p_wait <= 1 and 0 <= y.service_level <= 1


@settings(max_examples=100, deadline=None)
@given(calls=st.integers(1, 3000), aht=st.floats(30, 600), target=st.floats(0.5, 0.95), t=st.floats(5, 60))
def test_required_agents_is_the_fewest_meeting_the_target(calls, aht, target, t):
    s = required_agents(calls, aht, 1800, sl_target=target, sl_seconds=t)
    assert s.figures.service_level >= target
    a = s.figures.traffic
    if s.agents - 1 > a:
        assert erlang_c_figures(s.agents - 1, a, aht, t).service_level < target


# -- Erlang A ---------------------------------------------------------------------------


def test_erlang_a_approaches_erlang_c_as_patience_grows():
    c = erlang_c_figures(14, 10.0, 180, 20)
    previous = None
    for patience in (60, 600, 6_000, 60_000, 10_000_000):
        a = erlang_a_figures(14, 100, 180, 1800, patience_s=patience, sl_seconds=20)
        gap = abs(a.service_level - c.service_level)
        assert previous is None or gap < previous
        previous = gap
    assert a.service_level == pytest.approx(c.service_level, abs=1e-5)
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-5)
    assert a.asa_s == pytest.approx(c.asa_s, rel=1e-4)


@pytest.mark.parametrize("n", [8, 11, 14])
def test_more_patience_means_more_waiting_fewer_abandons_and_a_lower_answered_service_level(n):
    figs = [erlang_a_figures(n, 100, 180, 1800, patience_s=p, sl_seconds=20) for p in (10, 30, 60, 180, 600, 3600)]
    for less, more in zip(figs, figs[1:]):
        assert more.p_wait > less.p_wait
        assert more.p_abandon < less.p_abandon
        assert more.asa_s > less.asa_s
        assert more.service_level_answered < less.service_level_answered


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 60), calls=st.integers(1, 1500), aht=st.floats(60, 600), patience=st.floats(5, 900))
def test_erlang_a_abandons_match_littles_law_and_stay_shares(n, calls, aht, patience):
    """In M/M/n+M every waiting caller abandons at rate 1/patience, so P(abandon) =
    mean queue length / (arrival rate x patience) = mean wait / patience."""
    f = erlang_a_figures(n, calls, aht, 1800, patience_s=patience, sl_seconds=20)
    assert f.p_abandon == pytest.approx(f.avg_wait_s / patience, rel=1e-6, abs=1e-9)
    for v in (f.p_wait, f.p_abandon, f.service_level, f.service_level_answered, f.occupancy):
        assert 0 <= v <= 1
    assert f.service_level <= 1 - f.p_abandon + 1e-9


def _simulate(n: int, calls: int, aht: float, patience: float, t: float, callers: int, seed: int):
    """M/M/n+M served first come first served: a caller is served by the first agent
    free after everyone before them was served or gave up, if their patience lasts."""
    rnd = random.Random(seed)
    free = [0.0] * n
    now = 0.0
    within = abandoned = served = 0
    waited = 0.0
    for _ in range(callers):
        now += rnd.expovariate(calls / 1800)
        patience_left = rnd.expovariate(1 / patience)
        start = max(free[0], now)
        if start - now <= patience_left:
            heapq.heapreplace(free, start + rnd.expovariate(1 / aht))
            served += 1
            waited += start - now
            within += start - now <= t
        else:
            abandoned += 1
    return within / callers, abandoned / callers, waited / served


@pytest.mark.parametrize("n, patience", [(14, 60), (11, 60), (5, 30)])
def test_erlang_a_agrees_with_a_simulation(n, patience):
    sl, ab, asa = _simulate(n, 100, 180, patience, 20, callers=200_000, seed=n)
    f = erlang_a_figures(n, 100, 180, 1800, patience_s=patience, sl_seconds=20)
    assert f.service_level == pytest.approx(sl, abs=0.015)
    assert f.p_abandon == pytest.approx(ab, abs=0.01)
    assert f.asa_s == pytest.approx(asa, rel=0.06)


def test_erlang_a_needs_fewer_agents_than_erlang_c_when_callers_give_up():
    a = required_agents_a(100, 180, 1800, patience_s=60, sl_target=0.8, sl_seconds=20, shrinkage=0.3)
    c = required_agents(100, 180, 1800, sl_target=0.8, sl_seconds=20)
    assert a.agents < c.agents
    assert a.figures.service_level >= 0.8
    assert erlang_a_figures(a.agents - 1, 100, 180, 1800, patience_s=60, sl_seconds=20).service_level < 0.8
    assert a.scheduled == scheduled(a.agents, 0.3)


def test_erlang_a_on_an_overloaded_queue_still_settles():
    f = erlang_a_figures(5, 200, 180, 1800, patience_s=120, sl_seconds=20)      # 20 erlangs on 5 agents
    assert f.p_abandon > 0.7 and f.occupancy == pytest.approx(20 * (1 - f.p_abandon) / 5)


def test_erlang_a_refuses_a_queue_that_cannot_settle():
    with pytest.raises(StaffingError, match="patience"):
        erlang_a_figures(5, 2000, 180, 1800, patience_s=1e9, sl_seconds=20)


# -- forecast ------------------------------------------------------------------------


def test_forecast_is_a_weighted_mean_with_aht_as_a_ratio_of_sums():
    history = [SlotCounts(100, 90, 90 * 200), SlotCounts(80, 80, 80 * 150), SlotCounts(60, 50, 50 * 100)]
    f = forecast_slot(history)                      # weights 3, 2, 1
    assert f.volume == pytest.approx((300 + 160 + 60) / 6)
    assert f.aht_s == pytest.approx((3 * 18000 + 2 * 12000 + 5000) / (3 * 90 + 2 * 80 + 50))
    assert f.weeks_used == 3


def test_a_week_without_data_is_skipped_not_read_as_zero():
    f = forecast_slot([None, SlotCounts(80, 80, 8000)], weights=[1, 1])
    assert (f.volume, f.aht_s, f.weeks_used) == (80, 100, 1)
    assert forecast_slot([None, None]) == SlotForecast(0.0, None, 0)


def test_bad_weights_are_refused():
    with pytest.raises(StaffingError, match="weights"):
        forecast_slot([SlotCounts(1, 1, 1)], weights=[1, 2])
    with pytest.raises(StaffingError, match="weights"):
        forecast_slot([SlotCounts(1, 1, 1)], weights=[-1])


def test_same_slot_history_keeps_the_local_time_across_a_dst_change():
    paris = ZoneInfo("Europe/Paris")

    def at(*args):
        return datetime(*args, tzinfo=paris).timestamp()

    counts = {at(2026, 10, 26, 9): SlotCounts(10, 10, 1000), at(2026, 10, 19, 9): SlotCounts(20, 20, 2000)}
    got = same_slot_history(counts, at(2026, 11, 2, 9), 3, paris)
    assert got == [counts[at(2026, 10, 26, 9)], counts[at(2026, 10, 19, 9)], None]
    assert at(2026, 10, 26, 9) - at(2026, 10, 19, 9) == 7 * 86400 + 3600    # the week with 25 hours


def test_a_plan_gives_both_models():
    p = plan_interval(SlotForecast(100, 180, 4), 1800, sl_target=0.8, sl_seconds=20, shrinkage=0.3, patience_s=60)
    assert (p.erlang_c.agents, p.erlang_c.scheduled) == (14, 20)
    assert p.erlang_a is not None and p.erlang_a.agents < 14
    assert p.traffic == pytest.approx(10)
