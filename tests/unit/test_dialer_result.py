"""The agent's result of a campaign call the runner connected, pure parts: which command a
result is, the "no result" close of a lead left answered, when a lead counts as stale,
and the hub message that carries the lead card to the agent."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import given

from api.dialer_routes import campaign_lead_message
from dialer.leads import (NO_RESULT, TERMINAL, Answered, Callback, Complete, Dial, NoResult, OptOut, Lead,
                          RetryRules, State, TransitionRefused, agent_result, allowed_commands, apply)
from dialer.runner import stale_answered

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
RULES = RetryRules()
AFTER = timedelta(minutes=30)


def answered() -> Lead:
    return apply(apply(Lead(1, "+13175550100"), Dial(), RULES, T0), Answered(), RULES, T0)


def test_a_result_is_an_opt_out_first_then_a_callback_then_done_with_its_disposition():
    at = T0 + timedelta(days=1)
    assert agent_result("sale", at, True) == OptOut()
    assert agent_result("sale", at, False) == Callback(at)
    assert agent_result("sale", None, False) == Complete("sale")
    assert agent_result(None, None, False) == Complete("done")


def test_each_result_moves_an_answered_lead_to_done_retry_at_t_or_do_not_call():
    at = T0 + timedelta(days=1)
    done = apply(answered(), agent_result("sale", None, False), RULES, T0)
    assert (done.state, done.last_outcome) == (State.DONE, "sale")
    retry = apply(answered(), agent_result(None, at, False), RULES, T0)
    assert (retry.state, retry.retry_at) == (State.RETRY, at)
    dnc = apply(answered(), agent_result("sale", at, True), RULES, T0)
    assert dnc.state is State.DO_NOT_CALL


def test_no_result_closes_an_answered_lead_as_done_with_the_stated_outcome():
    lead = apply(answered(), NoResult(), RULES, T0 + AFTER)
    assert (lead.state, lead.last_outcome, lead.retry_at) == (State.DONE, NO_RESULT, None)
    assert "no_result" in allowed_commands(State.ANSWERED)


@pytest.mark.parametrize("state", [s for s in State if s is not State.ANSWERED])
def test_no_result_is_refused_in_every_other_state(state):
    lead = Lead(1, "+13175550100", state=state, retry_at=T0 if state is State.RETRY else None)
    with pytest.raises(TransitionRefused):
        apply(lead, NoResult(), RULES, T0)


def test_a_result_after_no_result_is_refused():
    closed = apply(answered(), NoResult(), RULES, T0)
    assert closed.state in TERMINAL
    with pytest.raises(TransitionRefused):
        apply(closed, agent_result("sale", None, False), RULES, T0)


def test_a_lead_is_stale_the_setting_after_its_call_ended_not_before():
    ended = T0 + timedelta(minutes=5)
    assert not stale_answered(T0, ended, False, ended + AFTER - timedelta(seconds=1), AFTER)
    assert stale_answered(T0, ended, False, ended + AFTER, AFTER)


def test_a_live_call_is_never_stale_and_an_unseen_end_counts_from_the_connection():
    assert not stale_answered(T0, None, True, T0 + timedelta(days=3), AFTER)
    assert stale_answered(T0, None, False, T0 + AFTER, AFTER)
    assert not stale_answered(T0, None, False, T0 + AFTER - timedelta(seconds=1), AFTER)


@given(connected=st.integers(0, 10_000), talk=st.one_of(st.none(), st.integers(0, 10_000)),
       live=st.booleans(), wait=st.integers(-10_000, 10_000), after=st.integers(60, 7 * 86400))
def test_stale_means_not_live_and_at_least_after_past_the_end(connected, talk, live, wait, after):
    c = T0 + timedelta(seconds=connected)
    h = None if talk is None else c + timedelta(seconds=talk)
    end = h or c
    now = end + timedelta(seconds=wait)
    got = stale_answered(c, h, live, now, timedelta(seconds=after))
    assert got == (not live and wait >= after)
    # Monotonic: once stale, later is stale too.
    if got:
        assert stale_answered(c, h, live, now + timedelta(hours=1), timedelta(seconds=after))


def test_the_hub_message_names_the_agent_the_attempt_the_call_and_carries_the_card():
    card = {"lead_id": 3, "phone": "+13175550100", "name": None, "customer_id": None, "attempts": 1,
            "last_outcome": None, "campaign_id": 2, "campaign": "survey", "script": "Hello",
            "survey": [{"id": "q1", "text": "Happy?", "type": "yes_no", "options": []}]}
    msg = campaign_lead_message(7, "dialer-7-1", "s1", card)
    assert msg["type"] == "campaign.lead" and msg["agent_id"] == "s1"
    assert (msg["attempt_id"], msg["call_id"], msg["card"]) == (7, "dialer-7-1", card)
    assert json.loads(json.dumps(msg)) == msg
