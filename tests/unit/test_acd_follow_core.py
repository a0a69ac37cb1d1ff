"""The following router's inputs (acd/core.py) and the leader's rows as observations
(acd/follow.py), one behaviour each; the property test is test_acd_follow_properties.py."""
from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given

from acd import follow
from acd.config import parse_config
from acd.core import FOLLOW_SKEW_S, RING_GUARD, AcdInputError, Ignored, Offer, Router, Withdrawn

T0 = 1_700_000_000.0
CONFIG = parse_config({
    "skills": ["s"],
    "agents": [{"id": "a1", "name": "A", "device": "PJSIP/a1", "queues": {"q": {}}},
               {"id": "a2", "name": "B", "device": "Local/agent2@agents/n", "queues": {"q": {}}}],
    "queues": [{"id": "q", "wrapup_s": 20, "max_wait_s": 60, "on_max_wait": "voicemail"}],
})


def shadow() -> Router:
    r = Router(CONFIG, following=True)
    r.login("a1", T0)
    r.login("a2", T0)
    return r


def test_a_following_router_offers_nothing_and_an_observed_offer_reserves_the_agent():
    r = shadow()
    assert r.call_waiting("c1", "q", T0 + 1) == []
    assert not any(isinstance(d, Offer) for d in r.offer_observed("c1", "a2", T0 + 1))
    view = r.agent_state("a2")
    assert (view.state, view.call_id) == ("reserved", "c1")
    assert [w.offered_to for w in r.waiting_calls()] == ["a2"]
    assert isinstance(r.offer_observed("c1", "a2", T0 + 1)[0], Ignored)     # seen twice


def test_an_offer_observed_for_another_agent_frees_the_first():
    r = shadow()
    r.call_waiting("c1", "q", T0 + 1)
    r.offer_observed("c1", "a1", T0 + 1)
    r.offer_observed("c1", "a2", T0 + 2)
    assert r.agent_state("a1").state == "available"
    assert r.agent_state("a2").call_id == "c1"


def test_the_ring_guard_does_not_fire_while_following_and_the_leaders_withdrawal_is_followed():
    r = shadow()
    r.call_waiting("c1", "q", T0)
    r.offer_observed("c1", "a1", T0)
    assert not any(isinstance(d, Withdrawn) for d in r.tick(T0 + 500))
    assert r.agent_state("a1").state == "reserved"
    out = r.offer_ended("c1", "a1", "withdrawn", T0 + 501)
    assert isinstance(out[0], Withdrawn)
    assert (r.agent_state("a1").state, r.agent_state("a1").reason) == ("not_ready", "missed")


def test_max_wait_is_the_leaders_while_following_and_comes_back_on_lead():
    r = shadow()
    r.set_not_ready("a1", "x", T0)
    r.set_not_ready("a2", "x", T0)
    r.call_waiting("c1", "q", T0)
    r.tick(T0 + 100)
    assert [w.call_id for w in r.waiting_calls()] == ["c1"]       # not decided here
    assert r.max_wait_observed("c1", "other", T0 + 100)[0].reason == "call not waiting in that queue"
    out = r.lead(T0 + 101)
    assert [type(d).__name__ for d in out] == ["MaxWait", "Dequeued"]


def test_an_observed_state_older_than_one_applied_is_ignored():
    r = shadow()
    r.agent_state_observed("a1", "not_ready", "lunch", T0 + 10)
    assert isinstance(r.agent_state_observed("a1", "available", "ready", T0 + 5)[0], Ignored)
    assert r.agent_state("a1").reason == "lunch"


def test_an_observed_state_from_before_a_call_seen_here_is_ignored():
    r = shadow()
    r.call_waiting("c1", "q", T0 + 1)
    r.offer_observed("c1", "a1", T0 + 2)       # seen at once in this node's model
    # The leader's row of a1 becoming available just before (read later from the database).
    assert isinstance(r.agent_state_observed("a1", "available", "ready", T0 + 1.5)[0], Ignored)
    assert r.agent_state("a1").state == "reserved"


def test_a_break_the_agent_asked_for_during_the_call_wins_over_the_wrapup_seen_here():
    r = shadow()
    r.call_waiting("c1", "q", T0)
    r.offer_observed("c1", "a1", T0)
    r.offer_ended("c1", "a1", "answered", T0 + 1)
    r.call_finished("c1", "a1", T0 + 30.002)          # this node saw the end a moment later
    assert r.agent_state("a1").state == "wrapup"
    r.agent_state_observed("a1", "not_ready", "lunch", T0 + 30.0)    # the leader's pending break
    view = r.agent_state("a1")
    assert (view.state, view.reason, view.since) == ("not_ready", "lunch", T0 + 30.0)
    # A row much older than the state held here is not about it.
    r.agent_state_observed("a2", "not_ready", "x", T0 + 40)
    assert isinstance(r.agent_state_observed("a1", "available", "r", T0 + 30.0 - FOLLOW_SKEW_S - 1)[0], Ignored)


def test_a_wrapup_observed_for_an_agent_on_call_here_ends_the_call_with_the_queues_timer():
    r = shadow()
    r.call_waiting("c1", "q", T0)
    r.offer_observed("c1", "a1", T0)
    r.offer_ended("c1", "a1", "answered", T0 + 1)
    r.agent_state_observed("a1", "wrapup", "wrap-up after call c1", T0 + 9)
    view = r.agent_state("a1")
    assert (view.state, view.wrapup_ends_at) == ("wrapup", T0 + 29)


def test_reserved_and_on_call_rows_are_followed_through_offers_not_states():
    r = shadow()
    assert isinstance(r.agent_state_observed("a1", "reserved", "offered call c9", T0 + 1)[0], Ignored)
    with pytest.raises(AcdInputError):
        r.agent_state_observed("a1", "dancing", "", T0 + 2)


def test_lead_offers_the_longest_waiting_call_to_the_longest_idle_agent():
    r = shadow()
    r.call_waiting("c1", "q", T0 + 1)
    r.call_waiting("c2", "q", T0 + 2)
    r.set_not_ready("a2", "x", T0 + 3)
    offers = [d for d in r.lead(T0 + 4) if isinstance(d, Offer)]
    assert [(o.call_id, o.agent_id) for o in offers] == [("c1", "a1")]
    assert r.lead(T0 + 5) == []


def test_rows_become_observations():
    assert follow.from_annotation("c1", "acd.offer", {"agent": "a1"}, 5.0) == follow.OfferSeen("c1", "a1", 5.0)
    assert follow.from_annotation("c1", "acd.withdrawn", {"agent": "a1", "reason": RING_GUARD}, 5.0) \
        == follow.OfferGone("c1", "a1", 5.0)
    assert follow.from_annotation("c1", "acd.withdrawn", {"agent": "a1", "reason": "caller abandoned"}, 5.0) is None
    assert follow.from_annotation("c1", "acd.maxwait", {"queue": "q", "action": "voicemail"}, 5.0) \
        == follow.MaxWaitSeen("c1", "q", 5.0)
    assert follow.from_annotation("c1", "acd.maxwait", {"queue_id": "q", "action": "overflow"}, 5.0) \
        == follow.MaxWaitSeen("c1", "q", 5.0)
    assert follow.from_annotation("c1", "acd.moved", {"target": "q2", "priority": 3, "own_priority": False}, 5.0) \
        == follow.MovedSeen("c1", "q2", 3, 5.0, False)
    assert follow.from_annotation("c1", "acd.dequeued", {"reason": "answered"}, 5.0) is None
    assert follow.from_annotation("c1", "acd.dequeued", {"reason": "emergency"}, 5.0) \
        == follow.DivertedSeen("c1", "emergency", 5.0)
    assert follow.from_state_row("a1", "not_ready", None, 5.0) == follow.StateSeen("a1", "not_ready", "", 5.0)
    assert follow.from_state_row("a1", "gone", "x", 5.0) is None


@given(kind=st.sampled_from(["acd.offer", "acd.withdrawn", "acd.maxwait", "acd.moved", "acd.dequeued", "x"]),
       data=st.dictionaries(st.sampled_from(["agent", "reason", "queue", "queue_id", "target", "priority",
                                             "own_priority"]),
                            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                                      st.lists(st.integers(), max_size=2))))
def test_any_row_becomes_an_observation_or_none_and_feeding_it_never_raises(kind, data):
    """Rows come from the database: whatever a row holds, no exception, and feeding what
    comes out (unknown agents, calls, queues) changes nothing it does not know."""
    o = follow.from_annotation("c1", kind, data, T0)
    r = shadow()
    follow.feed(r, [o] if o is not None else [])


def test_an_offers_channel_names_its_agent():
    devices = {"a1": "PJSIP/a1", "a2": "Local/agent2@agents/n", "a10": "PJSIP/a10"}
    assert follow.agent_of_channel("PJSIP/a1-0000002a", devices) == "a1"
    assert follow.agent_of_channel("PJSIP/a10-0000002b", devices) == "a10"
    assert follow.agent_of_channel("Local/agent2@agents-0000001b;1", devices) == "a2"
    assert follow.agent_of_channel("a2", devices) == "a2"
    assert follow.agent_of_channel("PJSIP/trunk-01", devices) is None
    assert follow.agent_of_channel(None, devices) is None


def test_calls_asterisk_no_longer_lists_are_gone():
    listing = [{"Channel": "PJSIP/t-1"}, {"Channel": "PJSIP/t-3"}]
    assert follow.gone_calls({"c1": "PJSIP/t-1", "c2": "PJSIP/t-2", "cb": None, "c3": "PJSIP/t-3"}, listing) == ["c2"]


def test_a_shadow_starts_a_stored_wrapup_as_a_wrapup_that_ends_on_time():
    from acd.resume import Stored, start_states

    stored = {"a1": Stored("wrapup", "wrap-up after call c0", T0 - 5), "a2": Stored("wrapup", "x", T0 - 50)}
    cold = start_states(CONFIG, stored, T0)
    assert [s.state for s in cold] == ["available", "available"]
    warm = start_states(CONFIG, stored, T0, keep_wrapup=True)
    assert [(s.state, s.since) for s in warm] == [("wrapup", T0 - 5), ("wrapup", T0 - 50)]
    r = Router(CONFIG, following=True)
    for s in warm:
        r.resume(s.agent_id, s.state, s.reason, s.since, T0)
    assert r.agent_state("a1").wrapup_ends_at == T0 + 15          # the queue's 20 s from the stored start
    r.tick(T0)
    assert [r.state_of(a) for a in ("a1", "a2")] == ["wrapup", "available"]   # a2's ended before the start
    r.tick(T0 + 15)
    assert r.state_of("a1") == "available"


def test_only_each_agents_newest_state_of_a_batch_is_fed():
    batch = [follow.StateSeen("a1", "available", "login", 1.0), follow.OfferSeen("c1", "a1", 1.0),
             follow.StateSeen("a1", "reserved", "offered call c1", 1.0), follow.StateSeen("a2", "not_ready", "x", 2.0)]
    assert follow.latest_states(batch) == [batch[1], batch[2], batch[3]]


def test_a_step_the_leader_skipped_is_caught_up_and_never_undone():
    cfg = parse_config({
        "skills": ["s"],
        "agents": [{"id": "a1", "name": "A", "device": "PJSIP/a1", "skills": {"s": 2}, "queues": {"q": {}}}],
        "queues": [{"id": "q", "requirements": [{"skill": "s", "min_level": 5}],
                    "steps": [{"after_s": 30, "requirements": [{"skill": "s", "min_level": 1}]}]}],
    })
    r = Router(cfg, following=True)
    r.call_waiting("c1", "q", T0)
    assert [d.step for d in r.escalation_observed("c1", "q", 1, T0 + 1)] == [1]
    assert isinstance(r.escalation_observed("c1", "q", 1, T0 + 2)[0], Ignored)
    assert r.waiting_calls()[0].step == 1
    assert follow.from_annotation("c1", "acd.escalated", {"queue_id": "q", "step": 1}, 5.0) \
        == follow.EscalatedSeen("c1", "q", 1, 5.0)


def test_a_withdrawal_read_after_the_leader_offered_the_call_again_is_history():
    r = shadow()
    r.call_waiting("c1", "q", T0)
    r.offer_observed("c1", "a1", T0)
    r.offer_observed("c1", "a1", T0 + 20)          # the leader's ring guard, then a new offer
    assert r.agent_state("a1").since == T0 + 20
    assert isinstance(r.offer_ended("c1", "a1", "withdrawn", T0 + 20)[0], Ignored)
    assert r.agent_state("a1").state == "reserved"


def test_the_same_state_observed_takes_the_leaders_time_and_idle_order():
    r = shadow()
    r.call_waiting("c1", "q", T0 + 1)
    r.agent_state_observed("a1", "available", "ready", T0 + 0.5)
    r.agent_state_observed("a2", "available", "ready", T0 - 0.5)    # idle longer at the leader
    assert r.agent_state("a2").since == T0 - 0.5
    offers = [d for d in r.lead(T0 + 2) if isinstance(d, Offer)]
    assert [(o.call_id, o.agent_id) for o in offers] == [("c1", "a2")]


def test_broker_messages_become_observations():
    from api.hub import AgentSnapshot, agent_message, call_message
    from cti.events import CallView

    view = CallView(call_id="c1", state="queued", direction="inbound", caller_num="1", caller_name="x", exten="s",
                    started_at=1.0, answered_at=None, queue="q", queue_joined_at=1.0, queue_left_at=None, agent=None,
                    agent_answered_at=None, ended_at=None, hangup_cause=None, hangup_cause_txt=None,
                    end_estimated=False, abandoned=False, legs=1)
    offer = call_message("acd.offer", "c1", 4, 5.0, view, {"agent": "a1", "queue": "q"})
    assert follow.from_message(offer) == follow.OfferSeen("c1", "a1", 5.0)
    state = agent_message(AgentSnapshot("a1", "not_ready", "lunch", 6.0, None, None), "available")
    assert follow.from_message(state) == follow.StateSeen("a1", "not_ready", "lunch", 6.0)
    assert follow.from_message(call_message("call.queued", "c1", 1, 1.0, view, {})) is None


@given(st.dictionaries(st.sampled_from(["type", "agent_id", "state", "reason", "since", "call_id", "at", "data"]),
                       st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=8), st.sampled_from(
                           ["agent.state", "acd.offer", "available", "a1"]),
                           st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))))
def test_any_broker_message_becomes_an_observation_or_none(body):
    """Whatever a message holds: no exception, and the router's clock stays finite."""
    o = follow.from_message(body)
    r = shadow()
    follow.feed(r, [o] if o is not None else [])
    assert all(math.isfinite(r.agent_state(a).since) for a in ("a1", "a2"))
