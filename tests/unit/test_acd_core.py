"""The routing core, one behaviour per test. Time is whatever ``now`` says."""
from __future__ import annotations

import pytest

from acd.config import parse_config
from acd.core import (
    OFFER_GRACE_S, AcdInputError, AgentState, AgentStateError, Dequeued, Escalated, Ignored, MaxWait, Moved,
    Offer, Router, Withdrawn,
)

T0 = 1_700_000_000.0


def agent(aid: str, skills: dict | None = None, queues: dict | None = None, **kw) -> dict:
    return {"id": aid, "name": aid.title(), "device": f"PJSIP/{aid}", "skills": skills or {"s": 5},
            "queues": {"q": {}} if queues is None else queues, **kw}


def queue(qid: str = "q", reqs: dict | None = None, **kw) -> dict:
    reqs = {"s": 1} if reqs is None else reqs
    return {"id": qid, "requirements": [{"skill": s, "min_level": lvl} for s, lvl in reqs.items()],
            "wrapup_s": 0, **kw}


def router(agents: list[dict], queues: list[dict] | None = None, login: bool = True) -> Router:
    cfg = parse_config({"skills": ["s", "t", "fr"], "agents": agents, "queues": queues or [queue()]})
    r = Router(cfg)
    if login:
        for a in agents:
            r.login(a["id"], T0)
    return r


def offers(ds: list) -> list[tuple[str, str]]:
    return [(d.call_id, d.agent_id) for d in ds if isinstance(d, Offer)]


def only(ds: list, kind: type):
    found = [d for d in ds if isinstance(d, kind)]
    assert len(found) == 1, ds
    return found[0]


def serve(r: Router, call_id: str, agent_id: str, at: float) -> None:
    """Answer and finish a call (talk 0 s)."""
    r.offer_answered(call_id, agent_id, at)
    r.call_finished(call_id, agent_id, at)


# -- agent states -------------------------------------------------------------

def test_login_makes_the_agent_available_and_says_so():
    r = router([agent("a")], login=False)
    assert r.login("a", T0) == [AgentState("a", "logged_out", "available", "login", T0)]
    assert r.agent_state("a").state == "available"


def test_login_twice_changes_nothing():
    r = router([agent("a")])
    assert r.login("a", T0 + 1) == []


def test_ready_while_logged_out_is_refused_with_the_state():
    r = router([agent("a")], login=False)
    with pytest.raises(AgentStateError, match="agent 'a' is logged_out: cannot set_ready"):
        r.set_ready("a", T0)


def test_unknown_agent_is_refused():
    r = router([agent("a")])
    with pytest.raises(AcdInputError, match="unknown agent 'zz'"):
        r.login("zz", T0)


def test_not_ready_with_a_new_reason_is_a_state_change_with_that_reason():
    r = router([agent("a")])
    assert r.set_not_ready("a", "lunch", T0 + 1) == [AgentState("a", "available", "not_ready", "lunch", T0 + 1)]
    assert r.set_not_ready("a", "lunch", T0 + 2) == []
    assert r.set_not_ready("a", "training", T0 + 3) == [
        AgentState("a", "not_ready", "not_ready", "training", T0 + 3)]


def test_ready_agent_takes_the_waiting_call_at_once():
    r = router([agent("a")])
    r.set_not_ready("a", "break", T0)
    assert offers(r.call_waiting("c1", "q", T0 + 1)) == []
    assert offers(r.set_ready("a", T0 + 2)) == [("c1", "a")]


def test_wrapup_lasts_the_queues_wrapup_s_then_the_agent_takes_the_next_call():
    r = router([agent("a")], [queue(wrapup_s=10)])
    r.call_waiting("c1", "q", T0)
    r.offer_answered("c1", "a", T0 + 1)
    ds = r.call_finished("c1", "a", T0 + 20)
    assert only(ds, AgentState).new == "wrapup"
    r.call_waiting("c2", "q", T0 + 21)
    assert r.next_deadline() == T0 + 30
    assert r.tick(T0 + 29.9) == []
    ds = r.tick(T0 + 30)
    assert [(d.old, d.new) for d in ds if isinstance(d, AgentState)] == [("wrapup", "available"),
                                                                         ("available", "reserved")]
    assert offers(ds) == [("c2", "a")]


def test_agent_can_end_wrapup_early_and_it_is_a_noop_elsewhere():
    r = router([agent("a")], [queue(wrapup_s=10)])
    r.call_waiting("c1", "q", T0)
    serve(r, "c1", "a", T0 + 1)
    ds = r.end_wrapup("a", T0 + 2)
    assert only(ds, AgentState).reason == "wrap-up ended by agent"
    assert r.end_wrapup("a", T0 + 3) == []
    assert r.next_deadline() is None  # the wrap-up timer went stale


def test_not_ready_asked_during_a_call_applies_after_wrapup():
    r = router([agent("a")], [queue(wrapup_s=5)])
    r.call_waiting("c1", "q", T0)
    r.offer_answered("c1", "a", T0 + 1)
    assert r.set_not_ready("a", "lunch", T0 + 2) == []
    assert r.agent_state("a").pending == "lunch"
    r.call_finished("c1", "a", T0 + 3)
    r.call_waiting("c2", "q", T0 + 4)
    ds = r.tick(T0 + 8)
    assert [(d.new, d.reason) for d in ds] == [("not_ready", "lunch")]
    assert r.position("c2") == 1


def test_ready_during_a_call_cancels_a_pending_not_ready():
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    r.offer_answered("c1", "a", T0 + 1)
    r.set_not_ready("a", "lunch", T0 + 2)
    r.set_ready("a", T0 + 3)
    assert only(r.call_finished("c1", "a", T0 + 4), AgentState).new == "available"


def test_logout_during_a_call_waits_for_its_end_and_skips_wrapup():
    r = router([agent("a")], [queue(wrapup_s=30)])
    r.call_waiting("c1", "q", T0)
    r.offer_answered("c1", "a", T0 + 1)
    assert r.logout("a", T0 + 2) == []
    assert r.agent_state("a").pending == "logout"
    ds = r.call_finished("c1", "a", T0 + 3)
    assert [(d.old, d.new) for d in ds] == [("on_call", "logged_out")]


def test_logout_while_ringing_lets_the_ring_end_first():
    r = router([agent("a"), agent("b")])
    r.set_not_ready("b", "break", T0)
    r.call_waiting("c1", "q", T0 + 1)
    assert r.logout("a", T0 + 2) == []
    ds = r.offer_failed("c1", "a", "noanswer", T0 + 3)
    assert [(d.new, d.reason) for d in ds if isinstance(d, AgentState)] == [
        ("logged_out", "missed; logout (deferred)")]
    assert r.waiting_calls()[0].status == "waiting"


# -- offers ----------------------------------------------------------------------

def test_arriving_call_is_offered_at_once_with_the_queues_ring_timeout():
    r = router([agent("a")], [queue(ring_timeout_s=20)])
    ds = r.call_waiting("c1", "q", T0 + 5)
    assert ds[0] == AgentState("a", "available", "reserved", "offered call c1", T0 + 5)
    offer = ds[1]
    assert (offer.call_id, offer.agent_id, offer.device, offer.queue_id, offer.ring_timeout_s, offer.step) == (
        "c1", "a", "PJSIP/a", "q", 20, 0)
    assert offer.reason == "step 0 (s>=1); longest idle 5.0s"
    assert r.position("c1") == 0 and r.agent_state("a").call_id == "c1"


def test_agent_below_the_required_level_is_never_offered():
    r = router([agent("a", {"s": 2})], [queue(reqs={"s": 3})])
    assert offers(r.call_waiting("c1", "q", T0)) == []
    assert r.position("c1") == 1


def test_agent_not_member_of_the_queue_is_never_offered():
    r = router([agent("a", queues={"other": {}})], [queue(), queue("other")])
    assert offers(r.call_waiting("c1", "q", T0)) == []


def test_unknown_queue_is_refused():
    r = router([agent("a")])
    with pytest.raises(AcdInputError, match="unknown queue 'nope'"):
        r.call_waiting("c1", "nope", T0)


def test_same_call_waiting_twice_is_ignored():
    r = router([agent("a")], login=False)
    r.call_waiting("c1", "q", T0)
    assert r.call_waiting("c1", "q", T0 + 1) == [Ignored("call_waiting", "c1", None, "call already waiting")]


def test_one_agent_gets_one_offer_and_the_second_call_waits():
    r = router([agent("a")])
    assert offers(r.call_waiting("c1", "q", T0)) == [("c1", "a")]
    assert offers(r.call_waiting("c2", "q", T0 + 1)) == []
    assert r.position("c2") == 1


def test_higher_priority_queue_is_served_first_even_if_younger():
    r = router([agent("a", queues={"lo": {}, "hi": {}})], [queue("lo"), queue("hi", priority=5)])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("old", "lo", T0 + 1)
    r.call_waiting("new", "hi", T0 + 50)
    assert offers(r.set_ready("a", T0 + 60)) == [("new", "a")]


def test_call_priority_overrides_the_queues():
    r = router([agent("a")])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("old", "q", T0 + 1)
    r.call_waiting("vip", "q", T0 + 2, priority=3)
    assert offers(r.set_ready("a", T0 + 3)) == [("vip", "a")]
    assert r.position("old") == 1


def test_same_priority_longest_waiting_call_first():
    r = router([agent("a")])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("c1", "q", T0 + 1)
    r.call_waiting("c2", "q", T0 + 2)
    ds = r.set_ready("a", T0 + 10)
    assert offers(ds) == [("c1", "a")]
    assert only(ds, Offer).reason == "step 0 (s>=1); agent free: priority 0, waited 9.0s"


def test_aging_weight_lets_a_younger_call_of_a_faster_aging_queue_go_first():
    r = router([agent("a", queues={"slow": {}, "fast": {}})],
               [queue("slow"), queue("fast", aging_weight=3.0)])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("s1", "slow", T0)           # waited 30 s at T0+30
    r.call_waiting("f1", "fast", T0 + 20)
    ds = r.set_ready("a", T0 + 31)             # slow: 31, fast: 11 x 3 = 33
    assert offers(ds) == [("f1", "a")]
    assert "effective 33.0s" in only(ds, Offer).reason


def test_agent_takes_its_preferred_queue_before_another_of_equal_call_priority():
    r = router([agent("a", queues={"q1": {"priority": 1}, "q2": {"priority": 0}})],
               [queue("q1"), queue("q2")])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("c1", "q1", T0)
    r.call_waiting("c2", "q2", T0 + 5)
    assert offers(r.set_ready("a", T0 + 10)) == [("c2", "a")]


def test_queue_offers_to_the_better_membership_before_the_longer_idle():
    r = router([agent("backup", queues={"q": {"priority": 1}}), agent("main", queues={"q": {}})])
    ds = r.call_waiting("c1", "q", T0 + 10)
    assert offers(ds) == [("c1", "main")]


def test_delay_keeps_the_call_from_an_agent_until_it_has_waited_that_long():
    r = router([agent("late", queues={"q": {"delay_s": 20}})])
    assert offers(r.call_waiting("c1", "q", T0)) == []
    assert r.next_deadline() == T0 + 20
    ds = r.tick(T0 + 20)
    assert offers(ds) == [("c1", "late")]
    assert only(ds, Offer).reason.endswith("delay 20s passed")


def test_agent_freed_before_a_delay_passes_does_not_take_the_call():
    r = router([agent("late", queues={"q": {"delay_s": 20}})])
    r.set_not_ready("late", "break", T0)
    r.call_waiting("c1", "q", T0 + 1)
    assert offers(r.set_ready("late", T0 + 5)) == []
    assert offers(r.set_not_ready("late", "x", T0 + 6) + r.set_ready("late", T0 + 21)) == [("c1", "late")]


@pytest.mark.parametrize("selection,expected", [
    ("longest_idle", "a1"),          # available since T0
    ("best_proficiency", "a3"),      # s=9
    ("fewest_calls", "a2"),          # 0 calls today
])
def test_selection_policy_picks_among_available_agents(selection, expected):
    r = router([agent("a1", {"s": 5}, queues={"q": {}, "warm": {}}), agent("a2", {"s": 5}),
                agent("a3", {"s": 9}, queues={"q": {}, "warm": {}})],
               [queue(selection=selection), queue("warm")])
    # a1 and a3 each take a call elsewhere first, so a1 is longest idle but busier.
    r.logout("a2", T0)
    r.call_waiting("w1", "warm", T0 + 1)   # a1 (longest idle)
    serve(r, "w1", "a1", T0 + 1)
    r.call_waiting("w2", "warm", T0 + 2)   # a3 now longest idle
    serve(r, "w2", "a3", T0 + 2)
    r.login("a2", T0 + 3)
    assert offers(r.call_waiting("c1", "q", T0 + 10)) == [("c1", expected)]


def test_best_proficiency_names_the_proficiency_in_the_reason():
    r = router([agent("a", {"s": 7})], [queue(selection="best_proficiency")])
    assert "best proficiency 7" in only(r.call_waiting("c1", "q", T0), Offer).reason


def test_round_robin_takes_turns():
    r = router([agent("a1"), agent("a2"), agent("a3")], [queue(selection="round_robin")])
    got = []
    for i in range(6):
        o = only(r.call_waiting(f"c{i}", "q", T0 + i), Offer)
        got.append(o.agent_id)
        serve(r, o.call_id, o.agent_id, T0 + i)
    assert got == ["a1", "a2", "a3", "a1", "a2", "a3"]


def test_new_day_resets_the_counts_fewest_calls_ranks_by():
    r = router([agent("a1"), agent("a2")], [queue(selection="fewest_calls")])
    r.set_not_ready("a2", "x", T0)
    for i in range(2):
        r.call_waiting(f"c{i}", "q", T0 + i)
        serve(r, f"c{i}", "a1", T0 + i)
    r.set_ready("a2", T0 + 5)
    r.call_waiting("c9", "q", T0 + 6)
    serve(r, "c9", "a2", T0 + 6)        # a1: 2 calls today, a2: 1
    r.new_day(T0 + 7)                   # both 0: a1 has been idle longer
    assert offers(r.call_waiting("d1", "q", T0 + 8)) == [("d1", "a1")]


def test_extra_skills_from_the_ivr_narrow_the_agents():
    r = router([agent("en", {"s": 5}), agent("fr", {"s": 5, "fr": 4})])
    assert offers(r.call_waiting("c1", "q", T0 + 1, skills={"fr": 3})) == [("c1", "fr")]
    assert offers(r.call_waiting("c2", "q", T0 + 2, skills={"fr": 5})) == []
    assert r.waiting_calls()[-1].requirements == (("fr", 5), ("s", 1))


def test_extra_skill_unknown_or_out_of_range_is_refused():
    r = router([agent("a")])
    with pytest.raises(AcdInputError, match="unknown skill 'klingon'"):
        r.call_waiting("c1", "q", T0, skills={"klingon": 1})
    with pytest.raises(AcdInputError, match="level must be 1..10"):
        r.call_waiting("c1", "q", T0, skills={"fr": 11})


# -- failures, abandons ------------------------------------------------------------

def test_no_answer_makes_the_agent_missed_and_the_call_keeps_its_place():
    r = router([agent("a"), agent("b")])
    r.set_not_ready("b", "break", T0)
    r.call_waiting("c1", "q", T0 + 1)             # rings a
    r.call_waiting("c2", "q", T0 + 2)             # waits
    ds = r.offer_failed("c1", "a", "noanswer", T0 + 17)
    assert only(ds, AgentState) == AgentState("a", "reserved", "not_ready", "missed", T0 + 17)
    assert r.position("c1") == 1 and r.position("c2") == 2
    assert r.waiting_calls()[0].arrived_at == T0 + 1
    assert offers(r.set_ready("b", T0 + 18)) == [("c1", "b")]


@pytest.mark.parametrize("reason,state", [("busy", "busy"), ("rejected", "rejected"), ("failed", "unreachable")])
def test_other_failures_take_the_agent_out_with_their_reason(reason, state):
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    assert only(r.offer_failed("c1", "a", reason, T0 + 1), AgentState).reason == state


def test_unknown_failure_reason_is_refused():
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    with pytest.raises(AcdInputError, match="noanswer"):
        r.offer_failed("c1", "a", "sleepy", T0 + 1)


def test_answer_for_an_offer_no_longer_standing_is_ignored():
    r = router([agent("a"), agent("b")])
    r.call_waiting("c1", "q", T0)                 # a (longest idle by order)
    r.offer_failed("c1", "a", "noanswer", T0 + 1)  # now rings b
    assert r.offer_answered("c1", "a", T0 + 2) == [Ignored("offer_answered", "c1", "a", "no such offer standing")]
    assert r.ignored == 1


def test_answer_dequeues_the_call_and_puts_the_agent_on_call():
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    ds = r.offer_answered("c1", "a", T0 + 3)
    assert ds == [AgentState("a", "reserved", "on_call", "answered call c1", T0 + 3),
                  Dequeued("c1", "q", "answered", 3.0, T0 + 3)]
    assert r.waiting_calls() == [] and r.position("c1") is None


def test_abandon_while_waiting_dequeues_the_call():
    r = router([agent("a")], login=False)
    r.call_waiting("c1", "q", T0)
    assert r.call_abandoned("c1", T0 + 4) == [Dequeued("c1", "q", "abandoned", 4.0, T0 + 4)]
    assert r.queue_stats("q", T0 + 5).abandoned == 1
    assert r.call_abandoned("c1", T0 + 5)[0].reason == "call not waiting"


def test_abandon_while_ringing_withdraws_the_offer_and_frees_the_agent_for_the_next_call():
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    r.call_waiting("c2", "q", T0 + 1)
    ds = r.call_abandoned("c1", T0 + 2)
    assert ds[0] == Withdrawn("c1", "a", "caller abandoned", T0 + 2)
    assert (ds[1].old, ds[1].new) == ("reserved", "available")
    assert ds[2] == Dequeued("c1", "q", "abandoned", 2.0, T0 + 2)
    assert offers(ds) == [("c2", "a")]


def test_unreported_ring_is_given_up_after_ring_timeout_and_grace():
    r = router([agent("a"), agent("b")], [queue(ring_timeout_s=10)])
    r.call_waiting("c1", "q", T0)
    assert r.next_deadline() == T0 + 10 + OFFER_GRACE_S
    ds = r.tick(T0 + 10 + OFFER_GRACE_S)
    assert ds[0] == Withdrawn("c1", "a", "no answer reported within ring timeout", T0 + 15)
    assert ds[1].reason == "missed"
    assert offers(ds) == [("c1", "b")]


# -- escalation ------------------------------------------------------------------

def two_step_queue(**kw) -> dict:
    return queue(reqs={"s": 5}, steps=[{"after_s": 30, "requirements": [{"skill": "s", "min_level": 3}]},
                                       {"after_s": 90, "requirements": [{"skill": "s", "min_level": 1}]}], **kw)


def test_escalation_steps_relax_requirements_as_the_caller_waits():
    r = router([agent("junior", {"s": 1})], [two_step_queue()])
    assert offers(r.call_waiting("c1", "q", T0)) == []
    assert r.next_deadline() == T0 + 30
    assert r.tick(T0 + 30) == [Escalated("c1", "q", 1, T0 + 30, "waited 30s in q; now s>=3")]
    ds = r.tick(T0 + 90)
    assert only(ds, Escalated).step == 2
    assert only(ds, Offer).reason == "step 2 (s>=1); longest idle 90.0s"


def test_late_tick_applies_every_due_step_at_once():
    r = router([agent("junior", {"s": 1})], [two_step_queue()])
    r.call_waiting("c1", "q", T0)
    ds = r.tick(T0 + 100)
    assert [d.step for d in ds if isinstance(d, Escalated)] == [1, 2]
    assert offers(ds) == [("c1", "junior")]


def test_escalation_while_ringing_changes_the_step_but_not_the_offer():
    r = router([agent("mid", {"s": 3})], [queue(reqs={"s": 3}, ring_timeout_s=60,
                                               steps=[{"after_s": 30, "requirements": [{"skill": "s"}]}])])
    r.call_waiting("c1", "q", T0)
    ds = r.tick(T0 + 30)
    assert only(ds, Escalated).step == 1 and offers(ds) == []
    assert r.waiting_calls()[0].status == "ringing"


def test_skip_if_nobody_escalates_at_once_when_nobody_logged_in_qualifies():
    steps = [{"after_s": 60, "requirements": [{"skill": "s"}], "skip_if_nobody": True}]
    r = router([agent("junior", {"s": 1})], [queue(reqs={"s": 9}, steps=steps)])
    ds = r.call_waiting("c1", "q", T0)
    assert only(ds, Escalated).reason == "nobody logged in meets s>=9; now s>=1"
    assert offers(ds) == [("c1", "junior")]


def test_skip_if_nobody_waits_while_a_qualified_agent_is_logged_in_then_acts_when_they_leave():
    steps = [{"after_s": 60, "requirements": [{"skill": "s"}], "skip_if_nobody": True}]
    r = router([agent("senior", {"s": 9}), agent("junior", {"s": 1})], [queue(reqs={"s": 9}, steps=steps)])
    r.set_not_ready("senior", "break", T0)
    r.set_not_ready("junior", "break", T0)
    r.call_waiting("c1", "q", T0 + 1)
    r.set_ready("junior", T0 + 2)
    assert r.waiting_calls()[0].step == 0
    ds = r.logout("senior", T0 + 3)
    assert only(ds, Escalated).step == 1
    assert offers(ds) == [("c1", "junior")]


# -- max wait ------------------------------------------------------------------------

def test_max_wait_overflow_moves_the_call_keeping_its_arrival_time():
    r = router([agent("b", queues={"b": {}})],
               [queue("a", max_wait_s=60, on_max_wait={"overflow": "b"}),
                queue("b", steps=[{"after_s": 70, "requirements": [{"skill": "s"}]}])])
    r.set_not_ready("b", "break", T0)
    r.call_waiting("c1", "a", T0)
    r.call_waiting("c2", "b", T0 + 10)
    ds = r.tick(T0 + 60)
    assert ds == [MaxWait("c1", "a", "overflow", "b", T0 + 60)]
    w = {c.call_id: c for c in r.waiting_calls()}
    assert (w["c1"].queue_id, w["c1"].arrived_at, w["c1"].entered_at, w["c1"].step) == ("b", T0, T0 + 60, 0)
    assert r.position("c1") == 1 and r.position("c2") == 2
    assert r.queue_stats("a", T0 + 61).timed_out == 1
    # b's own step timer counts from the overflow, not from arrival
    assert r.next_deadline() == T0 + 80  # c2's step
    r.tick(T0 + 80)
    assert r.next_deadline() == T0 + 130  # c1's step


@pytest.mark.parametrize("action", ["voicemail", "callback"])
def test_max_wait_voicemail_or_callback_takes_the_call_out(action):
    r = router([agent("a")], [queue(max_wait_s=60, on_max_wait=action)], login=False)
    r.call_waiting("c1", "q", T0)
    assert r.tick(T0 + 60) == [MaxWait("c1", "q", action, None, T0 + 60),
                               Dequeued("c1", "q", "max_wait", 60.0, T0 + 60)]
    assert r.next_deadline() is None


def test_max_wait_while_ringing_waits_for_the_ring_to_end():
    r = router([agent("a")], [queue(max_wait_s=10, on_max_wait="voicemail", ring_timeout_s=30)])
    r.call_waiting("c1", "q", T0)
    assert r.tick(T0 + 10) == []
    ds = r.offer_failed("c1", "a", "noanswer", T0 + 30)
    assert only(ds, MaxWait).action == "voicemail" and only(ds, Dequeued).reason == "max_wait"


# -- borrowing -------------------------------------------------------------------------

def lending_setup() -> Router:
    return router([agent("own", queues={"sales": {}}), agent("lent", queues={"billing": {}})],
                  [queue("sales", borrow_from=["billing"]),
                   queue("billing", lend_while_sl_above=50, sl_seconds=10)])


def test_borrower_takes_its_own_members_before_borrowed_agents():
    r = lending_setup()
    r.set_not_ready("own", "x", T0)
    r.set_ready("own", T0 + 1)   # own is now the shorter idle one, still preferred
    assert offers(r.call_waiting("c1", "sales", T0 + 2)) == [("c1", "own")]
    ds = r.call_waiting("c2", "sales", T0 + 3)
    assert offers(ds) == [("c2", "lent")]
    assert "borrowed from billing" in only(ds, Offer).reason


def test_lender_below_its_service_level_stops_lending_and_resumes_when_healthy():
    r = lending_setup()
    r.logout("own", T0)
    r.set_not_ready("lent", "x", T0)
    r.call_waiting("b1", "billing", T0)
    r.call_abandoned("b1", T0 + 1)                # billing SL 0 % < 50 %
    assert not r.queue_stats("billing", T0 + 1).lending
    r.set_ready("lent", T0 + 2)
    assert offers(r.call_waiting("c1", "sales", T0 + 3)) == []
    assert offers(r.call_waiting("b2", "billing", T0 + 4)) == [("b2", "lent")]
    r.offer_answered("b2", "lent", T0 + 5)        # in time: SL 1/2 = 50 %, lends again
    assert r.queue_stats("billing", T0 + 5).lending
    assert offers(r.call_finished("b2", "lent", T0 + 6)) == [("c1", "lent")]


def test_waiting_borrower_call_is_offered_the_moment_the_lender_recovers():
    r = router([agent("lent", queues={"billing": {}}), agent("b2", queues={"billing": {}})],
               [queue("sales", borrow_from=["billing"]), queue("billing", lend_while_sl_above=50)])
    r.set_not_ready("lent", "x", T0)
    r.call_waiting("b1", "billing", T0)          # rings b2
    r.call_abandoned("b1", T0 + 1)              # SL 0 %: stops lending
    r.set_ready("lent", T0 + 2)
    assert offers(r.call_waiting("c1", "sales", T0 + 3)) == []
    r.set_not_ready("lent", "x", T0 + 4)
    r.call_waiting("b2call", "billing", T0 + 5)  # rings b2 (lent is not ready)
    ds = r.offer_answered("b2call", "b2", T0 + 6)  # SL 50 %: lends again
    assert offers(ds) == []                      # lent is not ready: nothing yet
    assert offers(r.set_ready("lent", T0 + 7)) == [("c1", "lent")]


# -- preferred agent ------------------------------------------------------------------

def returning_customer() -> Router:
    r = router([agent("a"), agent("b")], [queue(preferred_agent_s=10)])
    r.call_waiting("c1", "q", T0, customer_id="cust")  # a (first by order)
    r.offer_answered("c1", "a", T0 + 1)
    return r


def test_returning_caller_is_held_for_the_agent_who_served_them():
    r = returning_customer()
    ds = r.call_waiting("c2", "q", T0 + 5, customer_id="cust")
    assert offers(ds) == []                        # b is free, but a served them
    assert r.waiting_calls()[0].held_for == "a" and r.next_deadline() == T0 + 15
    ds = r.call_finished("c1", "a", T0 + 8)
    assert offers(ds) == [("c2", "a")]
    assert only(ds, Offer).reason == "step 0 (s>=1); preferred agent (last served customer cust)"


def test_preferred_window_over_the_call_goes_to_anyone():
    r = returning_customer()
    r.call_waiting("c2", "q", T0 + 5, customer_id="cust")
    ds = r.tick(T0 + 15)
    assert offers(ds) == [("c2", "b")]
    assert only(ds, Offer).reason.endswith("preferred agent window over")


def test_preferred_agent_available_at_arrival_gets_it_even_if_not_longest_idle():
    r = returning_customer()
    r.call_finished("c1", "a", T0 + 2)
    assert offers(r.call_waiting("c2", "q", T0 + 3, customer_id="cust")) == [("c2", "a")]


def test_preferred_agent_logging_out_releases_the_held_call():
    r = returning_customer()
    r.call_waiting("c2", "q", T0 + 5, customer_id="cust")
    r.logout("a", T0 + 6)                          # deferred: a is on a call
    ds = r.call_finished("c1", "a", T0 + 7)
    assert [d.new for d in ds if isinstance(d, AgentState)][0] == "logged_out"
    assert offers(ds) == [("c2", "b")]


def test_explicit_preferred_agent_is_used_without_a_customer():
    r = router([agent("a"), agent("b")])
    assert offers(r.call_waiting("c1", "q", T0, preferred_agent="b")) == [("c1", "b")]


def test_logged_out_preferred_agent_is_not_waited_for():
    r = router([agent("a"), agent("b")])
    r.logout("b", T0)
    assert offers(r.call_waiting("c1", "q", T0 + 1, preferred_agent="b")) == [("c1", "a")]


# -- queries ------------------------------------------------------------------------------

def test_queue_stats_service_level_counts_answers_within_sl_seconds():
    r = router([agent("a")], [queue(sl_seconds=10)])
    r.call_waiting("fast", "q", T0)
    serve(r, "fast", "a", T0 + 5)
    r.set_not_ready("a", "x", T0 + 5)
    r.call_waiting("slow", "q", T0 + 6)
    r.set_ready("a", T0 + 20)
    serve(r, "slow", "a", T0 + 21)                 # waited 15 s
    r.set_not_ready("a", "x", T0 + 22)
    r.call_waiting("gone", "q", T0 + 22)
    r.call_waiting("left", "q", T0 + 23)
    r.call_abandoned("gone", T0 + 24)
    s = r.queue_stats("q", T0 + 33)
    assert (s.offered, s.answered, s.answered_within_sl, s.abandoned) == (3, 2, 1, 1)
    assert s.service_level == pytest.approx(100 / 3)
    assert (s.waiting, s.ringing, s.longest_wait_s) == (1, 0, 10.0)
    assert (s.agents_eligible, s.agents_available) == (1, 0)


def test_estimated_wait_is_position_times_handle_time_over_staffed_agents():
    r = router([agent("a"), agent("b")], [queue(expected_handle_s=100, wrapup_s=20)])
    r.call_waiting("c1", "q", T0)
    r.call_waiting("c2", "q", T0)
    r.call_waiting("c3", "q", T0 + 1)
    r.call_waiting("c4", "q", T0 + 2)
    assert r.estimated_wait("c1", T0 + 3) == 0.0            # ringing
    assert r.estimated_wait("c4", T0 + 3) == 2 * 120 / 2
    r.set_not_ready("b", "x", T0 + 3)                       # b still rings: still staffed
    r.offer_failed("c2", "b", "noanswer", T0 + 4)           # b out: c2 back first
    assert r.position("c2") == 1
    assert r.estimated_wait("c4", T0 + 5) == 3 * 120 / 1
    assert r.estimated_wait("nope", T0 + 5) is None


def test_handle_time_moving_average_follows_talk_time():
    r = router([agent("a")], [queue(expected_handle_s=100)])
    r.call_waiting("c1", "q", T0)
    r.offer_answered("c1", "a", T0)
    r.call_finished("c1", "a", T0 + 200)
    assert r.queue_stats("q", T0 + 200).handle_time_s == pytest.approx(100 + 0.2 * 100)


def test_estimated_wait_is_unknown_when_nobody_staffed_could_take_the_call():
    r = router([agent("a")], login=False)
    r.call_waiting("c1", "q", T0)
    assert r.estimated_wait("c1", T0 + 1) is None


def test_time_going_backwards_is_taken_as_the_last_time_seen():
    r = router([agent("a")])
    r.set_not_ready("a", "x", T0 + 10)
    ds = r.set_ready("a", T0 + 5)
    assert ds[0].at == T0 + 10


def test_overflowed_call_takes_the_target_queues_priority_unless_it_has_its_own():
    r = router([agent("b", queues={"b": {}})],
               [queue("a", max_wait_s=10, on_max_wait={"overflow": "b"}), queue("b", priority=7)], login=False)
    r.call_waiting("plain", "a", T0)
    r.call_waiting("own", "a", T0, priority=2)
    r.tick(T0 + 10)
    assert {c.call_id: c.priority for c in r.waiting_calls()} == {"plain": 7, "own": 2}


def test_auto_login_logs_in_the_agents_the_config_marks():
    r = router([agent("a", auto_login=True), agent("b")], login=False)
    assert [(d.agent_id, d.new) for d in r.auto_login(T0)] == [("a", "available")]
    assert r.agent_state("b").state == "logged_out"


def test_nothing_to_wake_for_when_nothing_waits():
    r = router([agent("a")])
    assert r.next_deadline() is None and r.tick(T0 + 100) == []


def test_held_call_counts_in_positions_and_says_for_whom():
    r = returning_customer()
    r.call_waiting("c2", "q", T0 + 5, customer_id="cust")
    r.set_not_ready("b", "x", T0 + 5)
    r.call_waiting("c3", "q", T0 + 6)
    (held, waiting) = r.waiting_calls()
    assert (held.call_id, held.status, held.held_for) == ("c2", "held", "a")
    assert (waiting.status, r.position("c3")) == ("waiting", 2)


# -- taking over a wait that began earlier; callbacks keeping their place -------------

def test_a_wait_that_began_earlier_keeps_its_place_ahead_of_later_callers():
    r = router([agent("a")], login=False)
    r.call_waiting("late", "q", T0 + 50)
    r.call_waiting("early", "q", T0 + 60, since=T0 + 10)
    assert [c.call_id for c in r.waiting_calls()] == ["early", "late"]
    assert offers(r.login("a", T0 + 61)) == [("early", "a")]


def test_a_wait_that_began_earlier_has_passed_the_steps_it_waited_through():
    r = router([agent("a", skills={"s": 2})],
               [queue(reqs={"s": 5}, steps=[{"after_s": 30, "requirements": [{"skill": "s", "min_level": 1}]}])])
    ds = r.call_waiting("c1", "q", T0 + 40, since=T0)
    assert only(ds, Escalated).step == 1
    assert offers(ds) == [("c1", "a")]


def test_a_wait_that_began_in_the_future_begins_now():
    r = router([agent("a")], login=False)
    r.call_waiting("c1", "q", T0, since=T0 + 100)
    assert r.waiting_calls()[0].arrived_at == T0


def test_a_taken_over_call_past_its_max_wait_goes_at_once():
    r = router([agent("a")], [queue(max_wait_s=60, on_max_wait="voicemail")], login=False)
    ds = r.call_waiting("c1", "q", T0 + 100, since=T0)
    assert only(ds, MaxWait).action == "voicemail"
    assert r.waiting_calls() == []


def test_a_callback_keeps_its_place_and_never_times_out():
    r = router([agent("a")], [queue(max_wait_s=60, on_max_wait="voicemail")], login=False)
    r.call_waiting("c1", "q", T0)
    r.call_waiting("c2", "q", T0 + 5)
    assert r.to_callback("c1", T0 + 20) == []
    ds = r.tick(T0 + 66)
    assert [d.call_id for d in ds if isinstance(d, MaxWait)] == ["c2"]
    (cb,) = r.waiting_calls()
    assert (cb.call_id, cb.callback, cb.arrived_at) == ("c1", True, T0)
    assert r.next_deadline() is None
    assert offers(r.login("a", T0 + 500)) == [("c1", "a")]


def test_a_callback_request_entered_as_such_has_no_max_wait():
    r = router([agent("a")], [queue(max_wait_s=60, on_max_wait="voicemail")], login=False)
    r.call_waiting("cb", "q", T0 + 100, since=T0, callback=True)
    assert [c.call_id for c in r.waiting_calls()] == ["cb"]


def test_a_callback_offer_nobody_answers_keeps_its_place():
    r = router([agent("a"), agent("b")], login=False)
    r.call_waiting("cb", "q", T0, callback=True)
    r.call_waiting("c2", "q", T0 + 1)
    r.login("a", T0 + 2)
    ds = r.offer_failed("cb", "a", "noanswer", T0 + 20)
    assert r.agent_state("a").state == "not_ready"
    assert offers(r.login("b", T0 + 21)) == [("cb", "b")]
    assert ds == [d for d in ds if not isinstance(d, Offer)]


def test_a_call_already_ringing_an_agent_does_not_become_a_callback():
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    assert only(r.to_callback("c1", T0 + 1), Ignored).reason == "an agent is ringing for it"
    assert only(r.to_callback("nope", T0 + 1), Ignored).reason == "call not waiting"


# -- calls found in progress (a daemon taking over) ------------------------------------

@pytest.mark.parametrize("before", ["logged_out", "available", "not_ready", "wrapup"])
def test_an_agent_found_talking_is_on_call_and_wraps_up_when_it_ends(before):
    r = router([agent("a")], [queue(wrapup_s=5)], login=before != "logged_out")
    if before == "not_ready":
        r.set_not_ready("a", "break", T0)
    elif before == "wrapup":
        r.call_waiting("c0", "q", T0)
        serve(r, "c0", "a", T0)
    ds = r.agent_on_call("a", "c1", "q", T0 + 1)
    assert only(ds, AgentState).new == "on_call" and r.agent_state("a").call_id == "c1"
    r.call_waiting("c2", "q", T0 + 2)
    assert r.waiting_calls()[0].status == "waiting"  # not offered to a talking agent
    assert only(r.call_finished("c1", "a", T0 + 30), AgentState).new == "wrapup"


@pytest.mark.parametrize("before,after", [("logged_out", "logged_out"), ("not_ready", "wrapup"),
                                          ("available", "wrapup")])
def test_a_transfer_target_goes_back_to_what_it_was_doing(before, after):
    r = router([agent("a")], [queue(wrapup_s=5)], login=before != "logged_out")
    if before == "not_ready":
        r.set_not_ready("a", "lunch", T0)
    ds = r.agent_on_call("a", "c1", "q", T0 + 1, back_to_previous=True)
    assert only(ds, AgentState).new == "on_call"
    assert only(r.call_finished("c1", "a", T0 + 30), AgentState).new == after
    r.tick(T0 + 40)
    state = r.agent_state("a")
    assert state.state == {"logged_out": "logged_out", "not_ready": "not_ready", "available": "available"}[before]
    if before == "not_ready":
        assert state.reason == "lunch"


def test_an_agent_already_ringing_is_not_taken_for_talking_elsewhere():
    r = router([agent("a")])
    r.call_waiting("c1", "q", T0)
    assert only(r.agent_on_call("a", "other", "q", T0 + 1), Ignored).reason == "agent is reserved"
    with pytest.raises(AcdInputError, match="unknown queue 'nope'"):
        r.agent_on_call("a", "other", "nope", T0 + 1)


# -- supervisor moves ---------------------------------------------------------------

def test_raising_a_calls_priority_puts_it_ahead_and_keeps_its_arrival():
    r = router([agent("a")])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("c1", "q", T0 + 1)
    r.call_waiting("c2", "q", T0 + 2)
    assert r.move_call("c2", T0 + 3, priority=7) == [Moved("c2", "q", "q", 7, T0 + 3, True)]
    assert r.position("c2") == 1 and r.position("c1") == 2
    assert [c.arrived_at for c in r.waiting_calls() if c.call_id == "c2"] == [T0 + 2]
    assert offers(r.set_ready("a", T0 + 4)) == [("c2", "a")]


def test_moving_a_call_to_another_queue_offers_it_there_and_counts_a_time_out_in_the_first():
    r = router([agent("a", queues={"other": {}})], [queue("q"), queue("other")])
    ds = r.call_waiting("c1", "q", T0)
    assert offers(ds) == []                         # "a" is no member of q
    ds = r.move_call("c1", T0 + 5, queue_id="other")
    assert only(ds, Moved) == Moved("c1", "q", "other", 0, T0 + 5)
    assert offers(ds) == [("c1", "a")]
    assert r.queue_stats("q", T0 + 5).timed_out == 1
    assert r.queue_stats("other", T0 + 5).ringing == 1


def test_a_call_ringing_an_agent_is_not_moved():
    r = router([agent("a")], [queue("q"), queue("other")])
    r.call_waiting("c1", "q", T0)
    assert isinstance(r.move_call("c1", T0 + 1, queue_id="other")[0], Ignored)
    assert isinstance(r.move_call("nope", T0 + 1, priority=3)[0], Ignored)


def test_moving_to_an_unknown_queue_or_with_a_bad_priority_is_refused():
    r = router([agent("a")])
    r.set_not_ready("a", "break", T0)
    r.call_waiting("c1", "q", T0)
    with pytest.raises(AcdInputError, match="unknown queue"):
        r.move_call("c1", T0, queue_id="nowhere")
    with pytest.raises(AcdInputError, match="priority"):
        r.move_call("c1", T0, priority="9")  # type: ignore[arg-type]
