"""A campaign's own window and retry rules from JSON, the ledger rebuilt from stored
attempts, the measured pacing inputs, the board's row and the results CSV (pure)."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.board import board_row, csv_cell, result_lines
from dialer.campaign_rules import (AttemptTotals, MinuteCounts, measured_from, rebuild_ledger, rules_from_json,
                                   rules_to_json, window_from_json, window_to_json)
from dialer.leads import InvalidRule, Outcome, RetryRules
from dialer.pacing import AbandonLedger, Measured, PacingConfig, Rates
from dialer.runner import CampaignRunner
from dialer.windows import CallingWindow, InvalidWindow

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)


# -- windows -----------------------------------------------------------------------------------

def test_no_window_is_the_default_one():
    assert window_from_json(None) == CallingWindow()


def test_a_window_reads_weekdays_hours_and_closed_dates():
    w = window_from_json({"hours": {"mon": ["08:30", "12:00"], "sat": ["10:00", "24:00"]},
                          "closed_dates": ["2026-12-25"]})
    assert w.hours[0] == (time(8, 30), time(12))
    assert w.hours[5][1] == time.max and 1 not in w.hours and 6 not in w.hours
    assert w.closed_dates == frozenset({date(2026, 12, 25)})
    assert w.open_at(datetime(2026, 5, 4, 11, 59)) and not w.open_at(datetime(2026, 5, 4, 12, 0))
    assert w.open_at(datetime(2026, 5, 9, 23, 59, 59)) and not w.open_at(datetime(2026, 5, 5, 10))


@pytest.mark.parametrize("obj, field", [
    ({"hours": {"monday": ["09:00", "17:00"]}}, "windows.hours.monday"),
    ({"hours": {"mon": ["9:00", "17:00"]}}, "windows.hours.mon.0"),
    ({"hours": {"mon": ["09:00", "25:00"]}}, "windows.hours.mon.1"),
    ({"hours": {"mon": ["24:00", "24:00"]}}, "windows.hours.mon.0"),
    ({"hours": {"mon": ["17:00", "09:00"]}}, "windows.hours.mon"),
    ({"hours": {"mon": ["09:00", "09:00"]}}, "windows.hours.mon"),
    ({"hours": {"mon": ["09:00"]}}, "windows.hours.mon"),
    ({"hours": {"mon": "09:00-17:00"}}, "windows.hours.mon"),
    ({"hours": {}}, "windows.hours"),
    ({"hours": []}, "windows.hours"),
    ({"hours": {"mon": ["09:00", "17:00"]}, "closed_dates": ["2026-02-30"]}, "windows.closed_dates.0"),
    ({"hours": {"mon": ["09:00", "17:00"]}, "closed_dates": [20261225]}, "windows.closed_dates.0"),
    ({"hours": {"mon": ["09:00", "17:00"]}, "closed_dates": "2026-12-25"}, "windows.closed_dates"),
    ({"hours": {"mon": ["09:00", "17:00"]}, "timezone": "UTC"}, "windows.timezone"),
])
def test_a_bad_window_is_refused_naming_its_field(obj, field):
    with pytest.raises(InvalidWindow) as e:
        window_from_json(obj)
    assert e.value.field == field


_clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@settings(deadline=None)        # a shared machine under load: no per-example deadline
@given(st.dictionaries(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                       st.tuples(_clock, st.one_of(_clock, st.just("24:00"))), min_size=1),
       st.lists(st.dates(date(2020, 1, 1), date(2040, 1, 1)), max_size=5))
def test_a_window_goes_to_json_and_back_unchanged_or_is_refused(hours, dates):
    obj = {"hours": {d: list(p) for d, p in hours.items()}, "closed_dates": [d.isoformat() for d in dates]}
    try:
        w = window_from_json(obj)
    except InvalidWindow as exc:
        assert exc.field.startswith("windows.hours.")     # only a start not before its end
        return
    assert window_from_json(window_to_json(w)) == w


# -- retry rules -------------------------------------------------------------------------------

def test_no_rules_are_the_defaults_with_the_campaigns_ring_time_and_machine_action():
    r = rules_from_json(None, ring_s=40, machine_voicemail=True)
    assert r.per_outcome == RetryRules().per_outcome and r.max_attempts == RetryRules().max_attempts
    assert r.ring_timeout == timedelta(seconds=40) and r.machine_voicemail


def test_rules_given_replace_their_outcome_and_the_others_keep_the_default():
    r = rules_from_json({"busy": {"delay_min": 5, "max_times": 10}, "no_answer": {"delay_min": 1440},
                         "max_attempts": 12, "skip_delay_min": 10})
    assert r.per_outcome[Outcome.BUSY].delay == timedelta(minutes=5) and r.per_outcome[Outcome.BUSY].max_times == 10
    assert r.per_outcome[Outcome.NO_ANSWER].delay == timedelta(days=1)
    assert r.per_outcome[Outcome.NO_ANSWER].max_times == RetryRules().per_outcome[Outcome.NO_ANSWER].max_times
    assert r.per_outcome[Outcome.MACHINE] == RetryRules().per_outcome[Outcome.MACHINE]
    assert r.max_attempts == 12 and r.skip_delay == timedelta(minutes=10)
    assert rules_from_json(rules_to_json(r)) == r


@pytest.mark.parametrize("obj, field", [
    ({"busy": {"delay_min": 0}}, "retry.busy.delay_min"),
    ({"busy": {"delay_min": 43201}}, "retry.busy.delay_min"),
    ({"busy": {"delay_min": "15"}}, "retry.busy.delay_min"),
    ({"busy": {"delay_min": 15.5}}, "retry.busy.delay_min"),
    ({"busy": {"max_times": -1}}, "retry.busy.max_times"),
    ({"busy": {"max_times": True}}, "retry.busy.max_times"),
    ({"busy": {"delay": 15}}, "retry.busy"),
    ({"busy": 15}, "retry.busy"),
    ({"answered": {"delay_min": 15}}, "retry.answered"),
    ({"max_attempts": 0}, "retry.max_attempts"),
    ({"max_attempts": 101}, "retry.max_attempts"),
    ({"skip_delay_min": 0}, "retry.skip_delay_min"),
    ({"max_callback_ahead_days": 366}, "retry.max_callback_ahead_days"),
])
def test_a_bad_rule_is_refused_naming_its_field(obj, field):
    with pytest.raises(InvalidRule) as e:
        rules_from_json(obj)
    assert e.value.field == field


def test_the_runner_dials_a_campaign_by_its_own_window_and_rules():
    r = CampaignRunner(core=None, acd=None)
    own = {"ring_s": 30, "machine_action": "retry", "retry": '{"busy": {"delay_min": 7, "max_times": 1}}',
           "windows": '{"hours": {"sun": ["10:00", "12:00"]}}'}
    windows, rules = r.campaign_rules(own)
    assert rules.per_outcome[Outcome.BUSY].delay == timedelta(minutes=7)
    assert rules.ring_timeout == timedelta(seconds=30)
    assert windows.window.hours == {6: (time(10), time(12))}
    sunday_11_berlin = datetime(2026, 5, 10, 9, 0, tzinfo=timezone.utc)
    assert windows.check(frozenset({"Europe/Berlin"}), sunday_11_berlin).allowed
    assert not windows.check(frozenset({"Europe/Berlin"}), sunday_11_berlin + timedelta(hours=2)).allowed
    default_windows, default_rules = r.campaign_rules({"ring_s": 25, "machine_action": "voicemail", "retry": None,
                                                      "windows": None})
    assert default_windows is r.windows and default_rules.machine_voicemail
    assert default_rules.per_outcome == RetryRules().per_outcome
    assert r.campaign_rules(own)[0] is windows          # one checker per window: verdicts cached


def test_a_runner_meeting_unusable_stored_rules_refuses_them():
    r = CampaignRunner(core=None, acd=None)
    with pytest.raises(InvalidRule):
        r.campaign_rules({"ring_s": 25, "machine_action": "retry", "retry": '{"busy": {"delay_min": 0}}',
                          "windows": None})


# -- the ledger rebuilt ------------------------------------------------------------------------

def _live_fed(config, events, now):
    ledger = AbandonLedger(config)
    for m in sorted(events, key=lambda m: m.at):
        ledger.record(m.at, live=m.live, abandoned=m.abandoned, machines=m.machines)
    return ledger


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40 * 24 * 60), st.integers(0, 5), st.integers(0, 2), st.integers(0, 3)),
                max_size=40))
def test_the_rebuilt_ledger_is_the_one_the_runner_held_live(minutes):
    now = T0
    config = PacingConfig(cap=0.03, amd_false_positive_share=0.01)
    events = [MinuteCounts(now - timedelta(minutes=m), live, ab, mach) for m, live, ab, mach in minutes]
    rebuilt = rebuild_ledger(config, events, now)
    live = _live_fed(config, [e for e in events if e.at > now - timedelta(days=30)], now)
    assert rebuilt.rates(now) == live.rates(now)
    assert rebuilt.headroom(now) == live.headroom(now)


def test_a_restarted_runner_keeps_the_headroom_its_history_paid_for():
    config = PacingConfig(cap=0.03)
    history = [MinuteCounts(T0 - timedelta(hours=3), live=400, abandoned=2)]
    assert AbandonLedger(config).headroom(T0) == 0                # a forgetting restart: progressive
    assert rebuild_ledger(config, history, T0).headroom(T0) == 10  # (0.03 * 400 - 2) / 0.97


def test_history_over_the_cap_leaves_no_headroom_after_a_restart():
    history = [MinuteCounts(T0 - timedelta(days=2), live=100, abandoned=5)]      # 5% over 30 days
    ledger = rebuild_ledger(PacingConfig(cap=0.03), history, T0)
    assert ledger.rates(T0)["30d"].rate == pytest.approx(0.05)
    assert ledger.rates(T0)["24h"].live == 0
    assert ledger.headroom(T0) == 0


def test_attempts_stamped_after_now_count_now_and_older_than_30_days_not_at_all():
    history = [MinuteCounts(T0 + timedelta(minutes=5), live=10, abandoned=1),
               MinuteCounts(T0 - timedelta(days=31), live=1000)]
    rates = rebuild_ledger(PacingConfig(), history, T0).rates(T0)
    assert rates["24h"].live == 10 and rates["30d"].live == 10


# -- measured inputs ---------------------------------------------------------------------------

def test_measured_inputs_start_at_the_prior_and_move_to_the_campaigns_own():
    prior = Measured(0.25, 8.0, 180.0)
    none = measured_from(AttemptTotals(), prior)
    assert (none.live_rate, none.answer_delay_s, none.handle_s) == (0.25, 8.0, 180.0)
    lots = measured_from(AttemptTotals(dials=5000, live=500, answer_delay_s=500 * 10.0, handled=450,
                                       handle_s=450 * 300.0), prior)
    assert lots.live_rate == pytest.approx(0.1, abs=0.002)
    # 10 s ringing + 2.5 s of AMD per live answer, blended with the prior's 8 s worth 50 calls
    assert lots.answer_delay_s == pytest.approx((500 * 12.5 + 50 * 8.0) / 550)
    assert lots.handle_s == pytest.approx((450 * 300.0 + 50 * 180.0) / 500)
    assert lots.false_positives_per_live == 0.0                  # no calibrated share: none counted


def test_the_calibrated_amd_share_of_the_measured_machines_lowers_the_models_aim():
    totals = AttemptTotals(dials=5000, live=1250, answer_delay_s=1250 * 10.0, handled=1200, handle_s=1200 * 180.0,
                           machines=600)
    m = measured_from(totals, Measured(0.25, 8.0, 180.0), amd_false_positive_share=0.05)
    # 5% of 600 machine verdicts were people: 30 hung up on, per 1,280 live answers (theirs included).
    assert m.false_positives_per_live == pytest.approx(30 / 1280)
    assert measured_from(totals, Measured(0.25, 8.0, 180.0)).false_positives_per_live == 0.0


# -- the board and the export ------------------------------------------------------------------

def test_a_board_row_says_when_a_window_is_over_the_cap():
    campaign = {"campaign_id": 1, "name": "c", "mode": "predictive", "state": "running", "queue": "q",
                "abandon_cap": 0.02, "dialed": 10, "connected": 3, "abandoned": 1, "leads_left": 5}
    under = {"24h": Rates(100, 1, 0.01), "30d": Rates(1000, 10, 0.01)}
    over = {"24h": Rates(100, 1, 0.01), "30d": Rates(100, 3, 0.03)}
    assert board_row(campaign, under, 4)["over_cap"] is False
    row = board_row(campaign, over, None)
    assert row["over_cap"] is True and row["abandon_30d"] == 0.03 and row["agents"] is None
    assert row["dialed"] == 10 and row["abandon_cap"] == 0.02
    assert row["connect_rate"] == 0.3 and row["in_flight"] is None
    assert board_row({**campaign, "dialed": 0, "connected": 0}, under, 4, 3)["connect_rate"] is None
    assert board_row(campaign, under, 4, 3)["in_flight"] == 3
    assert row["dial_level"] is None and row["pacing_reason"] is None       # not paced on this node
    paced = board_row(campaign, under, 4, 3, {"dial_level": 1.75, "pacing_reason": "model", "free_for_campaign": 4,
                                              "measured_live_rate": 0.25, "measured_answer_delay_s": 8.0,
                                              "measured_handle_s": 180.0, "paced_at": 1.0, "other": "left out"})
    assert paced["dial_level"] == 1.75 and paced["pacing_reason"] == "model" and paced["measured_handle_s"] == 180.0
    assert "other" not in paced


@pytest.mark.parametrize("text", ["=1+1", "+4930123", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_a_spreadsheet_would_run_is_escaped(text):
    assert csv_cell(text) == "'" + text


def test_the_results_csv_has_one_column_per_survey_question_and_nothing_runs():
    rows = [{"attempt_id": 1, "lead_id": 2, "phone": "+4930123", "name": "=HYPERLINK(\"x\")", "customer_id": None,
             "lead_state": "done", "started_at": T0, "ended_at": None, "outcome": "answered", "disposition": "sale",
             "agent_id": "a1", "amd_status": "HUMAN", "rang_ms": 4000, "call_id": "dialer-1-1", "result_at": T0,
             "answers": {"q1": "yes", "gone": "dropped", "q2": "-1, \"quoted\""}}]
    text = result_lines(rows, ["q1", "q2"], header=True)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 1
    r = parsed[0]
    assert r["phone"] == "'+4930123" and r["name"] == "'=HYPERLINK(\"x\")"
    assert r["answer.q1"] == "yes" and r["answer.q2"] == "'-1, \"quoted\"" and "answer.gone" not in r
    assert r["started_at"] == T0.isoformat() and r["ended_at"] == "" and r["rang_ms"] == "4000"
    assert result_lines(rows, [], header=False).count("\r\n") == 1


# -- the parsers fuzzed: any JSON is either taken or refused naming a field, never a crash --------

_json = st.recursive(st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.floats(allow_nan=False)
                     | st.text(max_size=12) | st.sampled_from(["09:00", "24:00", "2026-12-25", "23:59", "00:00"]),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                         st.sampled_from(["hours", "closed_dates", "mon", "sun", "busy", "no_answer", "delay_min",
                                          "max_times", "max_attempts", "skip_delay_min", "x"]), kids, max_size=4),
                     max_leaves=12)


@settings(deadline=None, max_examples=300)
@given(_json)
def test_any_json_is_a_window_or_a_refusal_naming_a_field(obj):
    try:
        w = window_from_json(obj)
    except InvalidWindow as exc:
        assert exc.field.startswith("windows")
        return
    assert window_from_json(window_to_json(w)) == w


@settings(deadline=None, max_examples=300)
@given(_json)
def test_any_json_is_rules_or_a_refusal_naming_a_field(obj):
    try:
        r = rules_from_json(obj)
    except InvalidRule as exc:
        assert exc.field.startswith("retry")
        return
    assert rules_from_json(rules_to_json(r)) == r
