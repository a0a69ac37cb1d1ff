"""The lead machine: the table, retry rules per outcome, and random command sequences
against the invariants (terminal states stay, no dial before its time, attempts bounded)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from dialer.leads import (
    MIN_RING, TERMINAL, TRANSITIONS, Answered, Callback, Complete, Dial, DoNotCall, Ended,
    InvalidRule, Lead, NoResult, OptOut, Outcome, RetryRule, RetryRules, Skip, State, TransitionRefused,
    allowed_commands, apply, dialable,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
RULES = RetryRules()
RING = timedelta(seconds=20)


def dialed(lead: Lead | None = None, now: datetime = T0) -> Lead:
    return apply(lead or Lead(1, "+13175550100"), Dial(), RULES, now)


def test_a_busy_lead_is_retried_after_the_busy_delay():
    lead = apply(dialed(), Ended(Outcome.BUSY), RULES, T0)
    assert lead.state is State.RETRY
    assert lead.retry_at == T0 + timedelta(minutes=15)
    assert lead.outcomes == {Outcome.BUSY: 1} and lead.attempts == 1


def test_a_retry_is_not_dialed_before_its_time():
    lead = apply(dialed(), Ended(Outcome.NO_ANSWER, RING), RULES, T0)
    assert not dialable(lead, T0 + timedelta(hours=1))
    with pytest.raises(TransitionRefused, match="not before"):
        apply(lead, Dial(), RULES, T0 + timedelta(hours=1))
    assert dialable(lead, T0 + timedelta(hours=2))
    assert apply(lead, Dial(), RULES, T0 + timedelta(hours=2)).state is State.DIALING


def test_no_answer_needs_fifteen_seconds_of_ringing_or_it_counts_as_failed():
    short = apply(dialed(), Ended(Outcome.NO_ANSWER, MIN_RING - timedelta(seconds=1)), RULES, T0)
    assert short.last_outcome == "failed" and short.outcomes == {Outcome.FAILED: 1}
    full = apply(dialed(), Ended(Outcome.NO_ANSWER, MIN_RING), RULES, T0)
    assert full.last_outcome == "no_answer"


def test_each_outcome_has_its_own_bound():
    rules = RetryRules(per_outcome={**RULES.per_outcome, Outcome.BUSY: RetryRule(timedelta(minutes=5), 1)})
    lead = apply(dialed(), Ended(Outcome.BUSY), rules, T0)
    assert lead.state is State.RETRY
    lead = apply(apply(lead, Dial(), rules, lead.retry_at), Ended(Outcome.BUSY), rules, lead.retry_at)
    assert lead.state is State.EXHAUSTED and lead.retry_at is None


def test_the_campaign_bound_covers_every_outcome():
    rules = RetryRules(max_attempts=2)
    lead = apply(dialed(), Ended(Outcome.BUSY), rules, T0)
    now = lead.retry_at
    lead = apply(apply(lead, Dial(), rules, now), Ended(Outcome.NO_ANSWER, RING), rules, now)
    assert lead.state is State.EXHAUSTED and lead.attempts == 2


def test_a_machine_gets_a_voicemail_drop_and_is_done_when_the_campaign_says_so():
    assert apply(dialed(), Ended(Outcome.MACHINE), RULES, T0).state is State.RETRY
    drop = RetryRules(machine_voicemail=True)
    assert apply(dialed(), Ended(Outcome.MACHINE), drop, T0).state is State.DONE


def test_a_callback_is_honoured_at_the_time_the_person_asked():
    talking = apply(dialed(), Answered(), RULES, T0)
    at = T0 + timedelta(days=1, hours=3)
    lead = apply(talking, Callback(at), RULES, T0)
    assert lead.state is State.RETRY and lead.retry_at == at and lead.last_outcome == "callback"


@pytest.mark.parametrize("at", [T0, T0 - timedelta(minutes=1), T0 + timedelta(days=31),
                                datetime(2026, 12, 8, 9, 0)], ids=["now", "past", "too far", "naive"])
def test_a_callback_time_must_be_ahead_bounded_and_zoned(at):
    with pytest.raises(InvalidRule) as err:
        apply(apply(dialed(), Answered(), RULES, T0), Callback(at), RULES, T0)
    assert err.value.field == "at"


def test_a_skip_in_preview_waits_without_spending_an_attempt():
    lead = apply(Lead(1, "+1"), Skip("customer in hospital"), RULES, T0)
    assert lead.state is State.RETRY and lead.attempts == 0 and lead.retry_at == T0 + RULES.skip_delay
    with pytest.raises(InvalidRule):
        apply(Lead(1, "+1"), Skip(" "), RULES, T0)


def test_do_not_call_is_reachable_from_every_state_but_itself_and_is_terminal():
    for state in State:
        kinds = allowed_commands(state)
        assert ("do_not_call" in kinds) == (state is not State.DO_NOT_CALL)
    assert allowed_commands(State.DO_NOT_CALL) == []


def test_opt_out_during_the_call_puts_the_lead_on_the_list():
    assert apply(apply(dialed(), Answered(), RULES, T0), OptOut(), RULES, T0).state is State.DO_NOT_CALL


def test_a_refusal_names_the_lead_the_state_and_what_it_allows():
    with pytest.raises(TransitionRefused, match=r"lead 1: 'complete' is not allowed in state 'new'.*dial"):
        apply(Lead(1, "+1"), Complete("sale"), RULES, T0)


@pytest.mark.parametrize("kw,name", [
    (dict(max_attempts=0), "max_attempts"), (dict(ring_timeout=timedelta(seconds=10)), "ring_timeout"),
    (dict(per_outcome={Outcome.BUSY: RetryRule(timedelta(minutes=5), 1)}), "per_outcome"),
    (dict(skip_delay=timedelta(0)), "skip_delay"),
])
def test_bad_rules_are_refused_naming_the_field(kw, name):
    with pytest.raises(InvalidRule) as err:
        RetryRules(**kw)
    assert err.value.field == name


def test_a_retry_delay_under_a_minute_is_refused():
    with pytest.raises(InvalidRule, match="delay"):
        RetryRule(timedelta(seconds=30), 1)


# -- random sequences ---------------------------------------------------------------

commands = st.one_of(
    st.just(Dial()), st.just(Answered()), st.just(OptOut()), st.just(DoNotCall()), st.just(NoResult()),
    st.builds(Skip, st.just("busy agent")),
    st.builds(Ended, st.sampled_from(list(Outcome)), st.sampled_from([None, timedelta(seconds=5), RING])),
    st.builds(Complete, st.just("sale")),
    st.builds(Callback, st.integers(1, 48 * 60).map(lambda m: timedelta(minutes=m))),  # offset from now
)
rules_strategy = st.builds(
    RetryRules,
    per_outcome=st.fixed_dictionaries({o: st.builds(RetryRule, st.integers(1, 600).map(lambda m: timedelta(minutes=m)),
                                                   st.integers(0, 4)) for o in Outcome}),
    max_attempts=st.integers(1, 8), machine_voicemail=st.booleans())


@settings(max_examples=300, deadline=None)
@given(rules=rules_strategy, steps=st.lists(st.tuples(commands, st.integers(0, 6 * 3600)), max_size=40))
def test_random_sequences_keep_the_invariants(rules, steps):
    lead, now = Lead(7, "+441632960001"), T0
    dials = 0
    for command, wait in steps:
        now += timedelta(seconds=wait)
        if isinstance(command, Callback):
            command = Callback(now + command.at)
        before = lead
        try:
            lead = apply(lead, command, rules, now)
        except (TransitionRefused, InvalidRule):
            assert (before.state, command.name) not in TRANSITIONS or isinstance(command, (Dial, Callback))
            continue
        assert before.state not in TERMINAL or lead.state is State.DO_NOT_CALL
        assert (lead.state is State.RETRY) == (lead.retry_at is not None)
        assert lead.retry_at is None or lead.retry_at > now
        assert lead.revision == before.revision + 1
        if isinstance(command, Dial):
            dials += 1
            assert dialable(before, now) and before.state not in TERMINAL
        assert lead.attempts == dials <= rules.max_attempts
        assert sum(lead.outcomes.values()) <= lead.attempts
        for outcome, n in lead.outcomes.items():
            assert n <= rules.per_outcome[outcome].max_times + 1
