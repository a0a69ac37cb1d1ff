"""Queue and agent figures (acd.figures): hand-computed sets, intervals on the local clock, properties."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from acd.figures import (
    ABANDONED, ABANDONS_AGAINST, ABANDONS_IGNORED, ABANDONS_IN_FAVOUR, ANSWERED, GRANULARITIES, TIMED_OUT,
    WAITING, AgentSpan, MetricsError, QueueCall, Rag, SlPolicy, StateChange, agent_figures, attach_wrapup,
    bucket_start, buckets, by_bucket, group_by, next_bucket, queue_figures, rolling, spans_from_changes,
    split_spans,
)

T0 = 1_700_000_000.0
PARIS = ZoneInfo("Europe/Paris")
ZONES = [timezone.utc, PARIS, ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe"),
         ZoneInfo("America/Santiago"), ZoneInfo("America/Havana"), ZoneInfo("America/Sao_Paulo")]


def call(cid: str, outcome: str, wait: float | None, *, at: float = T0, queue: str = "q", agent: str | None = None,
         talk: float | None = None, hold: float = 0.0, wrap: float | None = None) -> QueueCall:
    return QueueCall(call_id=cid, queue=queue, arrived_at=at, outcome=outcome,
                     left_at=None if wait is None else at + wait, agent=agent, talk_s=talk, hold_s=hold,
                     wrapup_s=wrap)


# -- the figures of a known mix -------------------------------------------------------

MIX = [
    call("a1", ANSWERED, 10, agent="x", talk=100, hold=20, wrap=30),
    call("a2", ANSWERED, 30, agent="y", talk=200, wrap=10),
    call("a3", ANSWERED, 20, agent="x"),                # still talking; answered exactly at the threshold
    call("b1", ABANDONED, 3),                           # short
    call("b2", ABANDONED, 15),                          # within the threshold
    call("b3", ABANDONED, 40),
    call("t1", TIMED_OUT, 120),
    call("w1", WAITING, None, at=T0 + 100),
]
NOW = T0 + 150


def test_a_known_mix_gives_the_hand_computed_figures():
    f = queue_figures(MIX, SlPolicy(threshold_s=20, short_abandon_s=5), now=NOW)
    assert (f.arrived, f.offered, f.short_abandoned) == (8, 7, 1)
    assert (f.answered, f.abandoned, f.timed_out, f.waiting) == (3, 2, 1, 1)
    assert (f.answered_within, f.abandoned_within) == (2, 1)
    assert f.sl_abandons_ignored == pytest.approx(2 / 4)      # a1 a3 / a1 a2 a3 t1
    assert f.sl_abandons_against == pytest.approx(2 / 6)
    assert f.sl_abandons_in_favour == pytest.approx(3 / 6)    # b2 counts as met
    assert f.service_level == f.sl_abandons_against            # the policy's variant
    assert f.asa_s == pytest.approx(20.0)                       # (10 + 30 + 20) / 3
    assert f.handled == 2
    assert f.aht_s == pytest.approx((150 + 210) / 2)
    assert (f.avg_talk_s, f.avg_hold_s, f.avg_wrapup_s) == (150, 10, 20)
    assert f.abandon_rate == pytest.approx(2 / 7)
    assert f.abandon_rate_all == pytest.approx(3 / 8)
    assert f.avg_abandon_wait_s == pytest.approx(27.5)
    assert f.longest_wait_s == 120
    assert f.longest_waiting_s == 50


def test_without_a_short_abandon_threshold_every_abandon_counts():
    f = queue_figures(MIX, SlPolicy(threshold_s=20), now=NOW)
    assert (f.offered, f.short_abandoned, f.abandoned, f.abandoned_within) == (8, 0, 3, 2)
    assert f.sl_abandons_against == pytest.approx(2 / 7)
    assert f.sl_abandons_in_favour == pytest.approx(4 / 7)
    assert f.abandon_rate == f.abandon_rate_all == pytest.approx(3 / 8)


def test_the_chosen_variant_is_the_service_level():
    for variant in (ABANDONS_IGNORED, ABANDONS_AGAINST, ABANDONS_IN_FAVOUR):
        f = queue_figures(MIX, SlPolicy(variant=variant, short_abandon_s=5), now=NOW)
        assert f.service_level == getattr(f, "sl_" + variant)


def test_no_calls_give_counts_of_zero_and_no_shares():
    f = queue_figures([], now=NOW)
    assert (f.offered, f.answered) == (0, 0)
    assert f.service_level is f.asa_s is f.aht_s is f.abandon_rate is f.longest_wait_s is None


def test_policy_label_names_the_variant_and_the_exclusion():
    assert SlPolicy(threshold_s=20, short_abandon_s=5).label == \
        "80% in 20 s, abandons counted against, abandons under 5 s excluded"
    assert SlPolicy(target=0.9, threshold_s=30, variant=ABANDONS_IGNORED).label == "90% in 30 s, abandons ignored"


@pytest.mark.parametrize("kwargs, field", [
    ({"outcome": "lost"}, "outcome"),
    ({"outcome": ANSWERED, "left_at": None}, "left_at"),
    ({"outcome": WAITING, "left_at": T0 + 1}, "left_at"),
    ({"outcome": ANSWERED, "left_at": T0 - 1}, "left_at"),
    ({"outcome": ABANDONED, "left_at": T0 + 1, "talk_s": 5}, "talk_s"),
    ({"outcome": ANSWERED, "left_at": T0 + 1, "hold_s": -1}, "hold_s"),
    ({"outcome": ANSWERED, "left_at": T0 + 1, "talk_s": float("nan")}, "talk_s"),
    ({"outcome": ANSWERED, "left_at": float("inf")}, "left_at"),
])
def test_a_bad_call_record_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(MetricsError, match=field):
        QueueCall(call_id="c\r\n'; DROP TABLE calls", queue="q", arrived_at=T0, **kwargs)


def test_bad_policy_and_thresholds_are_refused():
    with pytest.raises(MetricsError, match="variant"):
        SlPolicy(variant="favourable")
    with pytest.raises(MetricsError, match="target"):
        SlPolicy(target=1.5)
    with pytest.raises(MetricsError, match="red"):
        Rag(amber=0.8, red=0.9)
    with pytest.raises(MetricsError, match="red"):
        Rag(amber=60, red=30, higher_is_better=False)


def test_rag_colours_with_values_on_a_threshold_on_the_better_side():
    sl = Rag(amber=0.8, red=0.7)
    assert [sl.colour(v) for v in (0.95, 0.8, 0.79, 0.7, 0.69, None)] == \
        ["green", "green", "amber", "amber", "red", None]
    wait = Rag(amber=30, red=60, higher_is_better=False)
    assert [wait.colour(v) for v in (0, 30, 31, 60, 61)] == ["green", "green", "amber", "amber", "red"]


# -- agents ------------------------------------------------------------------------------


def test_agent_time_by_state_and_reason_with_occupancy_and_utilization():
    spans = spans_from_changes([
        StateChange("x", T0, "available"),
        StateChange("x", T0 + 100, "reserved"),
        StateChange("x", T0 + 110, "on_call"),
        StateChange("x", T0 + 310, "wrapup"),
        StateChange("x", T0 + 350, "not_ready", "lunch"),
        StateChange("x", T0 + 650, "not_ready", None),
        StateChange("x", T0 + 700, "logged_out"),
    ], until=T0 + 1700)
    f = agent_figures(spans, T0, T0 + 1700)
    assert f.seconds["available"] == 100 and f.seconds["on_call"] == 200 and f.seconds["logged_out"] == 1000
    assert f.not_ready_by_reason == {"": 50, "lunch": 300}
    assert (f.logged_in_s, f.ready_s, f.busy_s) == (700, 350, 250)
    assert f.occupancy == pytest.approx(250 / 350)
    assert f.utilization == pytest.approx(250 / 700)


def test_an_open_span_lasts_until_the_window_end_only():
    spans = spans_from_changes([StateChange("x", T0, "on_call")])
    assert spans[0].end is None
    assert agent_figures(spans, T0 - 50, T0 + 30).seconds["on_call"] == 30


def test_changes_after_until_have_not_begun():
    spans = spans_from_changes([StateChange("x", T0, "available"), StateChange("x", T0 + 50, "on_call")],
                               until=T0 + 20)
    assert [(s.state, s.start, s.end) for s in spans] == [("available", T0, T0 + 20)]


def test_wrapup_is_the_wrapup_span_starting_when_the_agent_leg_ended():
    spans = spans_from_changes([
        StateChange("x", T0 + 10, "on_call"), StateChange("x", T0 + 70, "wrapup"),
        StateChange("x", T0 + 85, "available"), StateChange("x", T0 + 100, "on_call"),
        StateChange("x", T0 + 130, "available"), StateChange("x", T0 + 150, "on_call"),
        StateChange("x", T0 + 160, "wrapup"),
    ])
    calls = [call("c1", ANSWERED, 10, agent="x", talk=50, hold=10),      # ends T0+70: wrap-up 15
             call("c2", ANSWERED, 100, agent="x", talk=30),              # ends T0+130: no wrap-up
             call("c3", ANSWERED, 150, agent="x", talk=10),              # ends T0+160: still in wrap-up
             call("c4", ABANDONED, 5)]
    out = attach_wrapup(calls, spans)
    assert [c.wrapup_s for c in out] == [15, 0, None, None]
    assert out[3] is calls[3]


def test_a_bad_span_is_refused():
    with pytest.raises(MetricsError, match="state"):
        AgentSpan("x", "asleep", None, T0, None)
    with pytest.raises(MetricsError, match="end"):
        AgentSpan("x", "available", None, T0, T0 - 1)


# -- intervals -----------------------------------------------------------------------


def ts(tz, *args, fold=0) -> float:
    return datetime(*args, tzinfo=tz, fold=fold).timestamp()


def test_intervals_follow_the_local_clock_of_the_zone():
    kolkata = ZoneInfo("Asia/Kolkata")              # UTC+5:30: local half hours are UTC :00/:30
    t = ts(kolkata, 2026, 3, 2, 9, 44, 59)
    assert bucket_start(t, "30min", kolkata) == ts(kolkata, 2026, 3, 2, 9, 30)
    assert bucket_start(t, "60min", kolkata) == ts(kolkata, 2026, 3, 2, 9, 0)
    assert bucket_start(t, "day", kolkata) == ts(kolkata, 2026, 3, 2)
    assert bucket_start(t, "week", kolkata) == ts(kolkata, 2026, 3, 2)    # a Monday
    assert bucket_start(t + 86400 * 6, "week", kolkata) == ts(kolkata, 2026, 3, 2)


def test_a_repeated_hour_is_two_intervals_and_that_day_lasts_25_hours():
    # Paris, 25 October 2026: 03:00 CEST becomes 02:00 CET.
    first, second = ts(PARIS, 2026, 10, 25, 2, 30), ts(PARIS, 2026, 10, 25, 2, 30, fold=1)
    assert second - first == 3600
    assert bucket_start(first, "60min", PARIS) == ts(PARIS, 2026, 10, 25, 2)
    assert bucket_start(second, "60min", PARIS) == ts(PARIS, 2026, 10, 25, 2, fold=1)
    day = bucket_start(first, "day", PARIS)
    assert next_bucket(day, "day", PARIS) - day == 25 * 3600
    assert len(buckets(day, next_bucket(day, "day", PARIS), "60min", PARIS)) == 25


def test_a_skipped_hour_makes_a_23_hour_day():
    day = bucket_start(ts(PARIS, 2026, 3, 29, 12), "day", PARIS)
    assert next_bucket(day, "day", PARIS) - day == 23 * 3600
    assert len(buckets(day, next_bucket(day, "day", PARIS), "15min", PARIS)) == 92


def test_a_call_belongs_to_the_interval_it_arrived_in():
    c = call("late", ANSWERED, 2000, at=ts(timezone.utc, 2026, 1, 5, 9, 59))   # answered at 10:32
    assert list(by_bucket([c], "30min", timezone.utc)) == [ts(timezone.utc, 2026, 1, 5, 9, 30)]


def test_bad_granularity_and_window_are_refused():
    with pytest.raises(MetricsError, match="granularity"):
        bucket_start(T0, "45min", PARIS)
    with pytest.raises(MetricsError, match="before"):
        buckets(T0, T0 - 1, "15min", PARIS)
    with pytest.raises(MetricsError, match="window_s"):
        rolling([], T0, 0)


YEARS = st.integers(min_value=int(ts(timezone.utc, 2015, 1, 1)), max_value=int(ts(timezone.utc, 2035, 1, 1)))


@settings(max_examples=400, deadline=None)
@given(t=YEARS, tz=st.sampled_from(ZONES), g=st.sampled_from(sorted(GRANULARITIES)))
def test_intervals_tile_time(t, tz, g):
    """Each instant lies in exactly one interval: its start is a fixed point, at or before it,
    and the next interval starts after it."""
    start = bucket_start(t, g, tz)
    end = next_bucket(start, g, tz)
    assert start <= t < end
    assert bucket_start(start, g, tz) == start
    assert bucket_start(end, g, tz) == end
    assert bucket_start(end - 1, g, tz) == start


@settings(max_examples=200, deadline=None)
@given(t1=YEARS, t2=YEARS, tz=st.sampled_from(ZONES), g=st.sampled_from(sorted(GRANULARITIES)))
def test_interval_starts_never_go_back_in_time(t1, t2, tz, g):
    t1, t2 = sorted((t1, t2))
    assert bucket_start(t1, g, tz) <= bucket_start(t2, g, tz)


# -- properties of random call sets -------------------------------------------------------


@st.composite
def calls_st(draw):
    out = []
    for i in range(draw(st.integers(0, 40))):
        outcome = draw(st.sampled_from([ANSWERED, ABANDONED, TIMED_OUT, WAITING]))
        at = T0 + draw(st.integers(0, 4 * 3600))
        wait = None if outcome == WAITING else draw(st.floats(0, 600))
        talk = wrap = None
        hold = 0.0
        if outcome == ANSWERED:
            talk = draw(st.none() | st.floats(0, 900))
            hold = draw(st.floats(0, 120))
            wrap = draw(st.none() | st.floats(0, 60))
        out.append(call(f"c{i}", outcome, wait, at=at, queue=draw(st.sampled_from("qr")),
                        agent=draw(st.sampled_from(["x", "y", None])), talk=talk, hold=hold, wrap=wrap))
    return out


POLICIES = st.builds(SlPolicy, threshold_s=st.floats(0, 120), short_abandon_s=st.floats(0, 30),
                     variant=st.sampled_from([ABANDONS_IGNORED, ABANDONS_AGAINST, ABANDONS_IN_FAVOUR]))
NOW_ST = st.just(T0 + 4 * 3600 + 1)


@settings(max_examples=300, deadline=None)
@given(calls=calls_st(), policy=POLICIES, now=NOW_ST)
def test_counts_partition_the_calls(calls, policy, now):
    f = queue_figures(calls, policy, now=now)
    assert f.arrived == len(calls) == f.offered + f.short_abandoned
    assert f.offered == f.answered + f.abandoned + f.timed_out + f.waiting
    assert f.answered + f.abandoned <= f.offered
    assert f.answered_within <= f.answered and f.abandoned_within <= f.abandoned
    assert f.handled <= f.answered


@settings(max_examples=300, deadline=None)
@given(calls=calls_st(), policy=POLICIES, now=NOW_ST)
def test_service_level_variants_are_shares_in_their_order(calls, policy, now):
    f = queue_figures(calls, policy, now=now)
    variants = [f.sl_abandons_ignored, f.sl_abandons_against, f.sl_abandons_in_favour]
    for v in variants:
        assert v is None or 0.0 <= v <= 1.0
    if f.sl_abandons_against is not None:
        # Abandons in the denominator only can only lower it; counting some as met only raise it.
        assert f.sl_abandons_against <= f.sl_abandons_in_favour
        if f.sl_abandons_ignored is not None:
            assert f.sl_abandons_against <= f.sl_abandons_ignored
    for v in (f.abandon_rate, f.abandon_rate_all):
        assert v is None or 0.0 <= v <= 1.0


@settings(max_examples=200, deadline=None)
@given(calls=calls_st(), policy=POLICIES, now=NOW_ST)
def test_asa_lies_between_the_shortest_and_longest_answered_wait(calls, policy, now):
    f = queue_figures(calls, policy, now=now)
    waits = [c.wait_s for c in calls if c.outcome == ANSWERED]
    if waits:
        assert min(waits) - 1e-9 <= f.asa_s <= max(waits) + 1e-9
    else:
        assert f.asa_s is None


@settings(max_examples=200, deadline=None)
@given(calls=calls_st(), policy=POLICIES, now=NOW_ST, tz=st.sampled_from(ZONES),
       g=st.sampled_from(["15min", "30min", "60min", "day"]))
def test_intervals_partition_the_calls_and_their_counts_add_up(calls, policy, now, tz, g):
    parts = by_bucket(calls, g, tz)
    assert sorted(c.call_id for p in parts.values() for c in p) == sorted(c.call_id for c in calls)
    for key, part in parts.items():
        assert all(bucket_start(c.arrived_at, g, tz) == key for c in part)
    whole = queue_figures(calls, policy, now=now)
    pieces = [queue_figures(p, policy, now=now) for p in parts.values()]
    for name in ("offered", "answered", "abandoned", "timed_out", "waiting", "short_abandoned",
                 "answered_within", "abandoned_within", "handled"):
        assert sum(getattr(p, name) for p in pieces) == getattr(whole, name)
    per_queue = group_by(calls, lambda c: c.queue)
    assert sum(queue_figures(p, policy, now=now).offered for p in per_queue.values()) == whole.offered


@settings(max_examples=200, deadline=None)
@given(calls=calls_st(), window=st.integers(1, 3600), now=st.integers(int(T0), int(T0) + 5 * 3600))
def test_rolling_window_keeps_the_arrivals_of_the_window(calls, window, now):
    kept = {c.call_id for c in rolling(calls, now, window)}
    assert kept == {c.call_id for c in calls if now - window < c.arrived_at <= now}


@st.composite
def changes_st(draw):
    out = []
    for agent in ("x", "y"):
        t = T0 + draw(st.integers(0, 600))
        for _ in range(draw(st.integers(0, 12))):
            out.append(StateChange(agent, t, draw(st.sampled_from(["logged_out", "available", "reserved",
                                                                   "on_call", "wrapup", "not_ready"])),
                                   draw(st.sampled_from([None, "lunch", "training"]))))
            t += draw(st.integers(0, 1800))
    return out


@settings(max_examples=200, deadline=None)
@given(changes=changes_st(), tz=st.sampled_from(ZONES), g=st.sampled_from(["15min", "30min", "60min"]))
def test_agent_time_split_over_intervals_adds_up_to_the_whole(changes, tz, g):
    start, end = T0, T0 + 6 * 3600
    spans = spans_from_changes(changes, until=end)
    bounds = buckets(start, end, g, tz)
    parts = split_spans(spans, bounds)
    lo, hi = bounds[0][0], bounds[-1][1]
    whole = agent_figures(spans, lo, hi)
    pieces = [agent_figures(parts[b], b, e) for b, e in bounds]
    for state, secs in whole.seconds.items():
        assert sum(p.seconds[state] for p in pieces) == pytest.approx(secs, abs=1e-6)
    assert sum(p.logged_in_s for p in pieces) == pytest.approx(whole.logged_in_s, abs=1e-6)
    assert whole.logged_in_s <= (hi - lo) * 2 + 1e-6
    for p in pieces:
        for v in (p.occupancy, p.utilization):
            assert v is None or 0 <= v <= 1 + 1e-12


def _transitions(tz, year: int) -> list[float]:
    """The instants (to the hour) where ``tz``'s UTC offset changes during ``year``."""
    t = ts(timezone.utc, year, 1, 1)
    out, before = [], datetime.fromtimestamp(t, tz).utcoffset()
    for _ in range(366 * 24):
        t += 3600
        now = datetime.fromtimestamp(t, tz).utcoffset()
        if now != before:
            out.append(t)
        before = now
    return out


@pytest.mark.parametrize("tz", ZONES[1:], ids=str)
def test_intervals_tile_time_around_every_offset_change(tz):
    changes = _transitions(tz, 2016) + _transitions(tz, 2026)
    assert changes or str(tz) == "Asia/Kolkata"
    for change in changes:
        for g in GRANULARITIES:
            previous = -1.0
            for t in range(int(change) - 3 * 3600 - 1, int(change) + 3 * 3600, 293):
                start = bucket_start(t, g, tz)
                assert start >= previous
                previous = start
                end = next_bucket(start, g, tz)
                assert start <= t < end
                assert bucket_start(start, g, tz) == start and bucket_start(end - 1, g, tz) == start


