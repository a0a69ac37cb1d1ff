"""Wrap-up the agent can extend (bounded by the queue's wrapup_max_s) and a disposition the
queue can require before the agent is available again: the pure router decides."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.config import parse_config
from acd.core import AgentState, AgentStateError, Ignored, Offer, Router
from cti.errors import ConfigError
from tests.unit.test_acd_core import T0, agent, offers, queue, router


def answered(r: Router, call_id: str, at: float) -> list:
    r.call_waiting(call_id, "q", at)
    r.offer_answered(call_id, "a", at)
    return r.call_finished(call_id, "a", at + 5)


def test_extending_moves_the_end_by_the_step_and_never_past_the_max():
    r = router([agent("a")], [queue(wrapup_s=10, wrapup_max_s=50, wrapup_extend_s=30)])
    answered(r, "c1", T0)                      # wrap-up from T0+5 to T0+15
    assert r.agent_state("a").wrapup_ends_at == T0 + 15
    assert r.agent_state("a").wrapup_max_at == T0 + 55
    assert r.extend_wrapup("a", T0 + 6) == []  # no state change, only its end
    assert r.agent_state("a").wrapup_ends_at == T0 + 45
    r.extend_wrapup("a", T0 + 7)
    assert r.agent_state("a").wrapup_ends_at == T0 + 55   # capped
    with pytest.raises(AgentStateError, match="no longer"):
        r.extend_wrapup("a", T0 + 8)
    assert r.tick(T0 + 45) == []               # the old ends went stale
    assert r.next_deadline() == T0 + 55
    assert only_state(r.tick(T0 + 55)).new == "available"


def only_state(ds: list) -> AgentState:
    found = [d for d in ds if isinstance(d, AgentState)]
    assert len(found) == 1, ds
    return found[0]


def test_a_queue_without_wrapup_max_allows_no_extension_and_outside_wrapup_there_is_none():
    r = router([agent("a")], [queue(wrapup_s=10)])
    with pytest.raises(AgentStateError, match="no timed wrap-up"):
        r.extend_wrapup("a", T0)
    answered(r, "c1", T0)
    assert r.agent_state("a").wrapup_max_at is None
    with pytest.raises(AgentStateError, match="no longer"):
        r.extend_wrapup("a", T0 + 6)


def test_wrapup_max_below_wrapup_s_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="wrapup_max_s"):
        parse_config({"skills": ["s"], "agents": [], "queues": [queue(wrapup_s=60, wrapup_max_s=30)]})


def test_a_required_disposition_holds_the_agent_in_wrapup_after_the_timer_until_saved():
    r = router([agent("a")], [queue(wrapup_s=10, disposition_required=True)])
    answered(r, "c1", T0)
    assert r.agent_state("a").disposition_due == "c1"
    r.call_waiting("c2", "q", T0 + 6)
    ds = r.tick(T0 + 15)
    st_ = only_state(ds)
    assert (st_.old, st_.new) == ("wrapup", "wrapup") and "disposition" in st_.reason
    assert offers(ds) == []
    assert r.agent_state("a").wrapup_ends_at is None
    with pytest.raises(AgentStateError, match="disposition of call c1"):
        r.set_ready("a", T0 + 16)
    with pytest.raises(AgentStateError, match="disposition"):
        r.end_wrapup("a", T0 + 16)
    assert isinstance(r.disposition_saved("a", "c9", T0 + 17)[0], Ignored)
    ds = r.disposition_saved("a", "c1", T0 + 18)
    assert [(d.old, d.new) for d in ds if isinstance(d, AgentState)] == [("wrapup", "available"),
                                                                         ("available", "reserved")]
    assert offers(ds) == [("c2", "a")]


def test_a_disposition_saved_during_the_timer_lets_the_timer_end_wrapup_as_usual():
    r = router([agent("a")], [queue(wrapup_s=10, disposition_required=True)])
    answered(r, "c1", T0)
    assert r.disposition_saved("a", "c1", T0 + 6) == []
    assert r.agent_state("a").state == "wrapup"
    assert only_state(r.tick(T0 + 15)).new == "available"


def test_with_no_wrapup_time_a_required_disposition_still_means_wrapup_until_saved():
    r = router([agent("a")], [queue(wrapup_s=0, disposition_required=True)])
    ds = answered(r, "c1", T0)
    assert only_state(ds).new == "wrapup"
    assert r.agent_state("a").wrapup_ends_at is None
    assert only_state(r.disposition_saved("a", "c1", T0 + 9)).new == "available"


def test_not_ready_and_logout_stay_possible_but_ready_waits_for_the_disposition():
    r = router([agent("a")], [queue(wrapup_s=10, disposition_required=True)])
    answered(r, "c1", T0)
    assert only_state(r.set_not_ready("a", "break", T0 + 6)).new == "not_ready"
    with pytest.raises(AgentStateError, match="disposition"):
        r.set_ready("a", T0 + 7)
    r.disposition_saved("a", "c1", T0 + 8)
    assert r.agent_state("a").state == "not_ready"      # the agent says when they are ready
    assert only_state(r.set_ready("a", T0 + 9)).new == "available"
    # Logging out forgets what was due: a new session starts clean.
    answered(r, "c2", T0 + 10)
    r.logout("a", T0 + 16)
    r.login("a", T0 + 17)
    assert r.agent_state("a").state == "available" and r.agent_state("a").disposition_due is None


def test_a_device_back_from_unreachable_does_not_make_an_agent_owing_a_disposition_available():
    r = router([agent("a")], [queue(wrapup_s=10, disposition_required=True)])
    answered(r, "c1", T0)
    r.device_reachable("a", False, T0 + 6)
    ds = r.device_reachable("a", True, T0 + 7)
    assert only_state(ds).new == "not_ready" and "disposition" in only_state(ds).reason


# -- property: never available while a disposition is due; wrap-up never past its max -----

STEPS = st.lists(st.tuples(st.sampled_from(["call", "tick", "extend", "ready", "end", "not_ready", "save",
                                            "logout", "login", "unreachable", "reachable"]),
                           st.floats(0, 40)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(STEPS, st.booleans(), st.sampled_from([0, 5, 10]), st.sampled_from([None, 10, 25]))
def test_the_agent_is_never_available_while_a_required_disposition_is_due(steps, required, wrapup_s, max_s):
    if max_s is not None and max_s < wrapup_s:
        max_s = None
    r = Router(parse_config({"skills": ["s"], "agents": [agent("a")], "queues": [queue(
        wrapup_s=wrapup_s, wrapup_max_s=max_s, wrapup_extend_s=7, disposition_required=required)]}))
    r.login("a", T0)
    now, n, due = T0, 0, None
    for what, dt in steps:
        now += dt
        try:
            if what == "call" and r.agent_state("a").state == "available":
                n += 1
                ds = r.call_waiting(f"c{n}", "q", now)
                assert [o.call_id for o in ds if isinstance(o, Offer)] == [f"c{n}"]
                r.offer_answered(f"c{n}", "a", now)
                r.call_finished(f"c{n}", "a", now + 1)
                ended = now + 1
                due = f"c{n}" if required else None
            elif what == "tick":
                r.tick(now)
            elif what == "extend":
                r.extend_wrapup("a", now)
            elif what == "ready":
                r.set_ready("a", now)
            elif what == "end":
                r.end_wrapup("a", now)
            elif what == "not_ready":
                r.set_not_ready("a", "break", now)
            elif what == "save" and due is not None:
                r.disposition_saved("a", due, now)
                due = None
            elif what == "logout":
                r.logout("a", now)
                due = None
            elif what == "login":
                r.login("a", now)
            elif what in ("unreachable", "reachable"):
                r.device_reachable("a", what == "reachable", now)
        except AgentStateError:
            pass
        v = r.agent_state("a")
        assert v.disposition_due == due
        if due is not None:
            assert v.state != "available"
        if v.wrapup_ends_at is not None:
            assert v.state == "wrapup"
            limit = ended + (max_s if max_s is not None else wrapup_s)
            assert v.wrapup_ends_at <= limit + 1e-6
