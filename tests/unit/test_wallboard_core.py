"""The wallboard and report rows (acd/wallboard.py), on hand-computed examples and properties."""
from __future__ import annotations

import csv
import io
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from acd.figures import (
    ABANDONED, ANSWERED, TIMED_OUT, WAITING, AgentSpan, MetricsError, QueueCall, QueueCounts,
    by_bucket, count_calls, figures_from_counts, queue_figures,
)
from acd.wallboard import (
    AgentLive, alert_text, alerts, board, colours_of, csv_text, parse_board_config, report_rows,
)
from tests.unit.test_metrics import NOW_ST, POLICIES, calls_st

T0 = 1_700_000_000.0          # 2023-11-14 22:13:20 UTC
UTC = ZoneInfo("UTC")


def qc(cid, outcome, arrived, wait=None, queue="sales", **kw):
    left = None if outcome == WAITING else arrived + wait
    return QueueCall(call_id=cid, queue=queue, arrived_at=arrived, outcome=outcome, left_at=left, **kw)


def config(**queues):
    return parse_board_config({"defaults": {"short_abandon_s": 5}, "queues": queues},
                              {"sales": (20.0, 0.8), "support": (30.0, 0.9)})


NOW = T0 + 3600
DAY = T0 - 1000


def test_board_figures_are_the_hand_computed_ones():
    calls = [
        qc("a1", ANSWERED, NOW - 3000, 10, agent="x", talk_s=100, hold_s=20, wrapup_s=30),   # within 20 s
        qc("a2", ANSWERED, NOW - 1200, 40, agent="x", talk_s=200, hold_s=0, wrapup_s=10),    # last 30 only
        qc("a3", ANSWERED, NOW - 600, 5, agent="y"),                                         # still talking
        qc("b1", ABANDONED, NOW - 500, 30),                                                  # counted
        qc("b2", ABANDONED, NOW - 400, 2),                                                   # short: left out
        qc("t1", TIMED_OUT, NOW - 2000, 60),
        qc("w1", WAITING, NOW - 90),
        qc("old", ANSWERED, DAY - 50, 1),                                                    # yesterday
    ]
    snap = board(calls, [], config(), now=NOW, day_start=DAY, queues=["sales", "support"],
                 callers={"b1": ("+4420", "Ann")}, callbacks={"b1": "pending"})
    sales = next(q for q in snap["queues"] if q["queue"] == "sales")
    today = sales["today"]
    assert (today["arrived"], today["offered"], today["short_abandoned"]) == (7, 6, 1)
    assert (today["answered"], today["abandoned"], today["timed_out"], today["waiting"]) == (3, 1, 1, 1)
    # abandons counted against: answered within (a1, a3) / (3 answered + 1 abandoned + 1 timed out)
    assert today["service_level"] == 0.4
    assert today["asa_s"] == round((10 + 40 + 5) / 3, 3)
    assert today["aht_s"] == (150 + 210) / 2
    assert today["abandon_rate"] == round(1 / 6, 4)
    assert sales["waiting"] == 1 and sales["longest_waiting_s"] == 90
    # last 15 min: a3, b1, (b2 short), w1 -> SL = 1 within / (1 answered + 1 abandoned)
    assert sales["last_15"]["service_level"] == 0.5
    # last 30 min: a2 (40 s, late), a3, b1, w1 -> 1 / 3
    assert sales["last_30"]["service_level"] == round(1 / 3, 4)
    assert sales["policy"] == "80% in 20 s, abandons counted against, abandons under 5 s excluded"
    assert sales["colours"]["service_level"] == "red" and sales["colours"]["longest_waiting_s"] == "amber"
    assert [a["call_id"] for a in snap["abandoned"]] == ["b1"]
    assert snap["abandoned"][0]["number"] == "+4420" and snap["abandoned"][0]["callback"] == "pending"
    support = next(q for q in snap["queues"] if q["queue"] == "support")
    assert support["today"]["offered"] == 0 and support["today"]["service_level"] is None
    assert support["colours"]["service_level"] is None


def test_agents_are_listed_by_state_with_time_in_state_and_occupancy_today():
    agents = [AgentLive("a", "Ann", "available", "", NOW - 10, None, None),
              AgentLive("b", "Bob", "on_call", "", NOW - 70, "c9", "sales"),
              AgentLive("c", "Cy", "not_ready", "lunch", NOW - 300, None, None)]
    spans = [AgentSpan("a", "available", None, DAY, NOW - 1800), AgentSpan("a", "on_call", None, NOW - 1800, None)]
    snap = board([], agents, config(), now=NOW, day_start=DAY, agent_spans=spans)
    assert [(a["agent_id"], a["in_state_s"]) for a in snap["agents"]] == [("b", 70), ("a", 10), ("c", 300)]
    assert snap["agents"][0]["call_id"] == "c9" and snap["agents"][0]["queue"] == "sales"
    assert snap["agent_counts"]["not_ready"] == 1
    assert snap["occupancy_today"] == round(1800 / (NOW - DAY), 4)


def test_an_alert_fires_when_a_colour_gets_worse_only():
    calls = [qc("w1", WAITING, NOW - 70)]
    first = board(calls, [], config(), now=NOW, day_start=DAY)
    assert alerts({}, first) == [{"queue": "sales", "figure": "longest_waiting_s", "from": None, "to": "amber",
                                  "value": 70, "text": "sales: longest wait 70 s > 60 s amber threshold"}]
    later = board(calls, [], config(), now=NOW + 60, day_start=DAY)
    assert [(a["from"], a["to"]) for a in alerts(colours_of(first), later)] == [("amber", "red")]
    assert alerts(colours_of(later), later) == []
    calmer = board([], [], config(), now=NOW + 61, day_start=DAY)
    assert alerts(colours_of(later), calmer) == []


def test_an_alert_says_the_figure_its_value_and_the_limit_crossed_in_words():
    q = {"queue": "sales", "target": 0.8, "thresholds": {
        "service_level_30": {"amber": 0.8, "red": 0.7, "higher_is_better": True},
        "abandon_rate": {"amber": 0.05, "red": 0.1, "higher_is_better": False}}}
    assert alert_text(q, "service_level_30", "amber", 0.7, "Sales") == \
        "Sales: service level over the last 30 min 70% < 80% target"
    assert alert_text(q, "service_level_30", "red", 0.655, "Sales") == \
        "Sales: service level over the last 30 min 65.5% < 70% red threshold (target 80%)"
    assert alert_text(q, "abandon_rate", "red", 1.0, "") == "sales: abandon rate today 100% > 10% red threshold"


def test_thresholds_and_policy_come_from_the_configuration():
    cfg = config(sales={"threshold_s": 30, "variant": "abandons_ignored", "target": 0.9,
                        "thresholds": {"asa_s": {"amber": 5, "red": 8}}})
    sales = cfg.of("sales")
    assert (sales.policy.threshold_s, sales.policy.variant, sales.policy.short_abandon_s) == (30, "abandons_ignored", 5)
    assert sales.rag["asa_s"].colour(6) == "amber" and sales.rag["service_level"].amber == 0.9
    assert cfg.of("support").policy.threshold_s == 30.0 and cfg.of("support").policy.target == 0.9
    assert cfg.of("unknown").policy.threshold_s == 20.0


@pytest.mark.parametrize("doc, words", [
    ({"queues": {"q": {"variant": "nope"}}}, "queues.q: variant"),
    ({"queues": {"q": {"thresholds": {"asa": {"amber": 1, "red": 2}}}}}, "unknown figure 'asa'"),
    ({"queues": {"q": {"thresholds": {"asa_s": {"amber": 9, "red": 2}}}}}, "queues.q.thresholds.asa_s"),
    ({"queues": {"q": {"threshold_s": "20"}}}, "threshold_s must be a number"),
    ({"queues": {"q": {"colour": 1}}}, "unknown keys ['colour']"),
    ({"abandoned_listed": -1}, "abandoned_listed"),
    ({"extra": 1}, "unknown keys ['extra']"),
])
def test_a_bad_board_configuration_is_refused_naming_the_field(doc, words):
    with pytest.raises(MetricsError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_board_config(doc)


@settings(max_examples=200, deadline=None)
@given(calls=calls_st(), policy=POLICIES, now=NOW_ST, cut=st.integers(0, 40))
def test_counts_of_two_parts_add_up_to_the_counts_of_the_whole(calls, policy, now, cut):
    whole = count_calls(calls, policy, now=now)
    parts = count_calls(calls[:cut], policy, now=now) + count_calls(calls[cut:], policy, now=now)
    for name in QueueCounts.__slots__:
        a, b = getattr(whole, name), getattr(parts, name)
        assert a == b or abs(a - b) < 1e-6, name
    assert figures_from_counts(parts, policy).service_level == pytest.approx(
        queue_figures(calls, policy, now=now).service_level)


@settings(max_examples=100, deadline=None)
@given(calls=calls_st(), policy=POLICIES, now=NOW_ST, g=st.sampled_from(["60min", "day", "week"]))
def test_report_rows_from_15_minute_counts_equal_rows_from_the_calls(calls, policy, now, g):
    tz = ZoneInfo("Asia/Kolkata")
    fine = {}
    for start, part in by_bucket(calls, "15min", tz).items():
        for q in {c.queue for c in part}:
            fine[(q, start)] = count_calls([c for c in part if c.queue == q], policy, now=now)
    coarse = {}
    for start, part in by_bucket(calls, g, tz).items():
        for q in {c.queue for c in part}:
            coarse[(q, start)] = count_calls([c for c in part if c.queue == q], policy, now=now)
    policies = {"q": policy, "r": policy}
    a, b = report_rows(fine, policies, g, tz), report_rows(coarse, policies, g, tz)
    assert [(r["queue"], r["start"], r["offered"], r["answered_within"]) for r in a] == \
           [(r["queue"], r["start"], r["offered"], r["answered_within"]) for r in b]
    assert [r["service_level"] for r in a] == [r["service_level"] for r in b]


def test_csv_flattens_nested_columns_and_defuses_formulas():
    rows = [{"agent": "=HYPERLINK(\"x\")", "occupancy": 0.5, "not_ready_by_reason": {"lunch": 60.0, "a,b": 1.0}},
            {"agent": "b\r\nc", "occupancy": None, "not_ready_by_reason": {}}]
    text = csv_text(rows, ["agent", "occupancy", "not_ready_by_reason"])
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["agent", "occupancy", "not_ready_by_reason.a,b", "not_ready_by_reason.lunch"]
    assert parsed[1] == ["'=HYPERLINK(\"x\")", "0.5", "1.0", "60.0"]
    assert parsed[2] == ["b\r\nc", "", "", ""]
