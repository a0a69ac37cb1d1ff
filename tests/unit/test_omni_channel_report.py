"""Figures per channel (omni.channel_report, pure): a call's queue stays are one contact,
a task is one; offered, answered, abandoned, the answer wait's p50/p90 and handle time
per channel; the counts add up whatever the records."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from acd.figures import QueueCall
from omni.channel_report import CHANNEL_COLUMNS, Contact, channel_rows, from_task, nearest_rank, voice_contacts
from omni.tasks import Task

T0 = 1_800_000_000.0


def _task(status, created=T0, assigned=None, closed=None, channel="chat"):
    return Task("t", channel, "q", "ada@example.org", "s", "r", created, status, None, assigned, closed)


def test_an_overflowed_call_is_one_contact_waiting_from_its_first_queue():
    calls = [QueueCall(call_id="c1", queue="sales", arrived_at=T0, outcome="timed_out", left_at=T0 + 30),
             QueueCall(call_id="c1", queue="overflow", arrived_at=T0 + 30, outcome="answered", left_at=T0 + 40,
                       agent="a1", talk_s=100, hold_s=10, wrapup_s=5),
             QueueCall(call_id="c2", queue="sales", arrived_at=T0, outcome="abandoned", left_at=T0 + 7)]
    got = sorted(voice_contacts(calls), key=lambda c: c.outcome)
    assert got == [Contact("voice", "abandoned", 7.0, None, T0), Contact("voice", "answered", 40.0, 115.0, T0)]


def test_a_task_answered_closed_abandoned_or_waiting():
    assert from_task(_task("closed", assigned=T0 + 12, closed=T0 + 312)) == \
        Contact("chat", "answered", 12.0, 300.0, T0)
    assert from_task(_task("assigned", assigned=T0 + 3)) == Contact("chat", "answered", 3.0, None, T0)
    assert from_task(_task("abandoned", closed=T0 + 45)) == Contact("chat", "abandoned", 45.0, None, T0)
    assert from_task(_task("closed", closed=T0 + 60)).outcome == "abandoned"      # closed by its channel, unanswered
    assert from_task(_task("waiting")) == Contact("chat", "waiting", None, None, T0)


def test_rows_per_channel_in_order_with_zeros_for_a_quiet_channel():
    contacts = [Contact("chat", "answered", w, 100.0) for w in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    contacts += [Contact("chat", "abandoned", 50.0), Contact("voice", "timed_out", 60.0),
                 Contact("email", "waiting", None), Contact("email", "answered", 3600.0, None)]
    rows = channel_rows(contacts)
    assert [r["channel"] for r in rows] == ["voice", "chat", "email", "message"]
    voice, chat, email, message = rows
    assert (chat["offered"], chat["answered"], chat["abandoned"]) == (11, 10, 1)
    assert (chat["wait_p50_s"], chat["wait_p90_s"], chat["aht_s"], chat["handled"]) == (5.0, 9.0, 100.0, 10)
    assert (voice["offered"], voice["timed_out"], voice["wait_p50_s"]) == (1, 1, None)
    assert (email["waiting"], email["wait_p50_s"], email["aht_s"]) == (1, 3600.0, None)
    assert message == {"channel": "message", "offered": 0, "answered": 0, "abandoned": 0, "timed_out": 0,
                       "waiting": 0, "wait_p50_s": None, "wait_p90_s": None, "aht_s": None, "handled": 0}
    assert list(message) == CHANNEL_COLUMNS


def test_rows_per_interval_in_time_order_each_with_every_channel():
    contacts = [Contact("chat", "answered", 4.0, 60.0, T0 + 10), Contact("voice", "abandoned", 9.0, None, T0 + 3700),
                Contact("chat", "answered", 6.0, None, T0 + 20)]
    rows = channel_rows(contacts, bucket=lambda t: t - (t - T0) % 3600)
    assert [(r["start"], r["channel"], r["offered"]) for r in rows] == [
        (T0, "voice", 0), (T0, "chat", 2), (T0, "email", 0), (T0, "message", 0),
        (T0 + 3600, "voice", 1), (T0 + 3600, "chat", 0), (T0 + 3600, "email", 0), (T0 + 3600, "message", 0)]
    assert rows[1]["wait_p50_s"] == 4.0 and rows[1]["wait_p90_s"] == 6.0
    assert channel_rows([], bucket=lambda t: t) == []


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="outcome"):
        Contact("chat", "lost", 1.0)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(0.01, 1.0))
def test_nearest_rank_is_the_smallest_value_with_q_of_them_at_or_below(values, q):
    got = nearest_rank(values, q)
    assert got in values
    assert sum(v <= got for v in values) >= q * len(values) - 1e-9
    assert all(sum(v <= x for v in values) < q * len(values) - 1e-9 for x in values if x < got)


contact = st.builds(
    lambda ch, outcome, wait, handle: Contact(ch, outcome, None if outcome == "waiting" else wait,
                                              handle if outcome == "answered" else None),
    st.sampled_from(["voice", "chat", "email", "message", "sms"]),
    st.sampled_from(["answered", "abandoned", "timed_out", "waiting"]),
    st.floats(0, 1e5, allow_nan=False), st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False)))


@given(st.lists(contact, max_size=60))
def test_the_counts_add_up_and_the_percentiles_are_ordered(contacts):
    rows = channel_rows(contacts)
    assert sum(r["offered"] for r in rows) == len(contacts)
    for r in rows:
        assert r["offered"] == r["answered"] + r["abandoned"] + r["timed_out"] + r["waiting"]
        assert r["handled"] <= r["answered"]
        assert (r["wait_p50_s"] is None) == (r["answered"] == 0)
        if r["wait_p50_s"] is not None:
            assert r["wait_p50_s"] <= r["wait_p90_s"]
    assert [r["channel"] for r in rows][:4] == ["voice", "chat", "email", "message"]


@given(st.dates(), st.dates(), st.sampled_from(["json", "csv", "xml"]))
def test_the_report_s_query_is_a_short_range_of_days_that_can_be_bounded(start, end, fmt):
    """Fuzzed: a query the route can turn into a time range (end + 1 day exists), or a
    validation error naming why."""
    from datetime import date, timedelta

    from pydantic import ValidationError

    from api.wallboard_models import ChannelReportQuery

    try:
        q = ChannelReportQuery.model_validate({"start": start.isoformat(), "end": end.isoformat(), "format": fmt})
    except ValidationError as exc:
        assert exc.errors()
        return
    assert q.start <= q.end and (q.end - q.start).days <= 62 and q.format in ("json", "csv")
    assert q.end + timedelta(days=1) <= date.max
