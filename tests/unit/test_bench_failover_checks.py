"""bench/failover_checks.py (pure): a desktop's ``seq`` against the broker's stream, and the
waiting callers' order against when each was served, on small hand-made sequences."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.failover_checks import answering_offer, expected_seqs, gaps, order_violations, seq_check

# (stream sequence, agents it names): 1-8, a1 in 2, 4, 5, 8; a2 in 3, 5, 7.
STREAM = [(1, frozenset()), (2, frozenset({"a1"})), (3, frozenset({"a2"})), (4, frozenset({"a1"})),
          (5, frozenset({"a1", "a2"})), (6, frozenset()), (7, frozenset({"a2"})), (8, frozenset({"a1"}))]


def test_a_supervisor_expects_every_message_of_its_window():
    assert expected_seqs(STREAM, None, after=2, upto=6) == [3, 4, 5, 6]


def test_an_agent_expects_the_messages_naming_it_in_its_window():
    assert expected_seqs(STREAM, "a1", after=0, upto=8) == [2, 4, 5, 8]
    assert expected_seqs(STREAM, "a2", after=3, upto=6) == [5]
    assert expected_seqs(reversed(STREAM), "a1", after=4, upto=8) == [5, 8]
    assert expected_seqs(STREAM, "nobody", after=0, upto=8) == []


def test_everything_once_in_order_is_contiguous():
    got = seq_check([3, 4, 5, 6], [3, 4, 5, 6])
    assert got.contiguous and got.expected == 4 and got.received == 4


def test_an_agent_skipping_other_agents_messages_is_contiguous():
    assert seq_check([2, 4, 5, 8], expected_seqs(STREAM, "a1", 0, 8)).contiguous


def test_a_resume_whose_replay_fills_the_gap_is_contiguous():
    # Connection lost after 4; the resume from 4 on the other node replays 5 and 6, then live 7.
    assert seq_check([3, 4, 5, 6, 7], [3, 4, 5, 6, 7]).contiguous


def test_a_resync_leaves_a_gap_that_is_reported():
    # Lost after 4; the other node answered resync at head 6: 5 and 6 never came.
    got = seq_check([3, 4, 7, 8], [3, 4, 5, 6, 7, 8])
    assert not got.contiguous and got.missing == [5, 6] and not got.repeated and not got.out_of_order


def test_a_replay_that_repeats_what_was_had_is_reported():
    got = seq_check([3, 4, 5, 4, 5, 6], [3, 4, 5, 6])
    assert not got.contiguous and got.repeated == [4, 5] and got.missing == [] and got.received == 6


def test_out_of_order_and_unexpected_messages_are_reported():
    got = seq_check([2, 5, 4, 3, 8], expected_seqs(STREAM, "a1", 0, 8))
    assert got.out_of_order == [4, 3] and got.unexpected == [3] and not got.contiguous
    assert got.missing == []


def test_the_tail_a_client_never_received_is_missing():
    got = seq_check([3, 4], [3, 4, 5, 6])
    assert got.missing == [5, 6] and not got.contiguous


def test_nothing_expected_nothing_received_is_contiguous():
    assert seq_check([], []).contiguous


def test_gaps_as_runs():
    assert gaps([9, 5, 6, 7, 12]) == [(5, 7), (9, 9), (12, 12)]
    assert gaps([]) == []


def test_callers_served_in_their_order_are_in_order():
    got = order_violations(["c1", "c2", "c3"], {"c1": 10.0, "c2": 10.5, "c3": 11.0})
    assert got.in_order and got.compared == 3 and got.unserved == []


def test_a_caller_served_before_one_ahead_is_a_violation():
    got = order_violations(["c1", "c2", "c3", "c4"], {"c1": 10.0, "c2": 12.0, "c3": 11.0, "c4": 13.0})
    assert got.violations == [("c2", "c3")] and got.overtaken == ["c2"] and not got.in_order


def test_every_pair_served_the_other_way_round_counts():
    got = order_violations(["c1", "c2", "c3"], {"c1": 3.0, "c2": 2.0, "c3": 1.0})
    assert got.violations == [("c1", "c2"), ("c1", "c3"), ("c2", "c3")] and got.overtaken == ["c1", "c2"]


def test_one_batch_at_the_same_moment_is_not_a_violation():
    assert order_violations(["c1", "c2"], {"c1": 5.0, "c2": 5.0}).in_order


def test_callers_never_served_are_counted_apart_and_compared_with_nobody():
    got = order_violations(["c1", "c2", "c3"], {"c1": None, "c3": 4.0, "c2": 5.0})
    assert got.unserved == ["c1"] and got.compared == 2 and got.violations == [("c2", "c3")]


def test_a_caller_twice_in_the_order_is_refused():
    with pytest.raises(ValueError, match="twice"):
        order_violations(["c1", "c1"], {"c1": 1.0})


def test_the_answered_offer_is_the_last_naming_the_agent_who_answered():
    offers = [(1.0, "a1"), (4.0, "a2"), (9.0, "a1")]
    assert answering_offer(offers, "a2") == 4.0          # offered to a1 first, not answered; then a2
    assert answering_offer(offers, "a1") == 9.0          # offered to a1 twice: the later one
    assert answering_offer(offers, None) is None         # nobody answered
    assert answering_offer(offers, "a3") is None and answering_offer([], "a1") is None


@given(st.lists(st.integers(1, 500), unique=True).map(sorted), st.data())
def test_dropping_or_repeating_any_message_is_found(expected, data):
    assert seq_check(expected, expected).contiguous
    if expected:
        i = data.draw(st.integers(0, len(expected) - 1))
        dropped = seq_check(expected[:i] + expected[i + 1:], expected)
        assert dropped.missing == [expected[i]] and not dropped.contiguous
        again = seq_check(expected[:i + 1] + expected[i:], expected)
        assert again.repeated == [expected[i]] and not again.contiguous


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12))
def test_served_in_time_order_is_never_a_violation_and_reversed_is_every_pair(times):
    order = [f"c{i}" for i in range(len(times))]
    ascending = dict(zip(order, sorted(times)))
    assert order_violations(order, ascending).in_order
    distinct = sorted(set(times), reverse=True)
    names = order[:len(distinct)]
    got = order_violations(names, dict(zip(names, distinct)))
    assert len(got.violations) == len(distinct) * (len(distinct) - 1) // 2
