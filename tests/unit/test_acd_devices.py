"""The router's device inputs: hot-desking (set_device) and reachability (device_reachable)."""
from __future__ import annotations

import pytest

from acd.core import UNREACHABLE, AgentState, AgentStateError, Offer, Router
from acd.config import parse_config

T0 = 1_700_000_000.0


def router(*ids: str, login: bool = True) -> Router:
    agents = [{"id": a, "name": a, "device": f"Local/{a}@demo/n", "skills": {"s": 5}, "queues": {"q": {}}}
              for a in ids]
    cfg = parse_config({"skills": ["s"], "agents": agents,
                        "queues": [{"id": "q", "requirements": [{"skill": "s"}], "wrapup_s": 0}]})
    r = Router(cfg)
    if login:
        for a in ids:
            r.login(a, T0)
    return r


def offer(ds: list) -> Offer:
    found = [d for d in ds if isinstance(d, Offer)]
    assert len(found) == 1, ds
    return found[0]


def test_offers_ring_the_device_the_agent_is_bound_to():
    r = router("a")
    r.set_device("a", "PJSIP/desk-7")
    assert offer(r.call_waiting("c1", "q", T0 + 1)).device == "PJSIP/desk-7"
    assert r.agent_state("a").device == "PJSIP/desk-7"


def test_an_unreachable_device_makes_an_available_agent_not_ready_with_the_reason():
    r = router("a")
    assert r.device_reachable("a", False, T0 + 1) == [AgentState("a", "available", "not_ready", UNREACHABLE, T0 + 1)]
    v = r.agent_state("a")
    assert (v.state, v.reason, v.reachable) == ("not_ready", "unreachable", False)


def test_an_unreachable_agent_is_not_offered_calls():
    r = router("a")
    r.device_reachable("a", False, T0 + 1)
    assert not [d for d in r.call_waiting("c1", "q", T0 + 2) if isinstance(d, Offer)]


def test_the_device_back_makes_the_agent_available_and_offered_the_waiting_call():
    r = router("a")
    r.device_reachable("a", False, T0 + 1)
    r.call_waiting("c1", "q", T0 + 2)
    out = r.device_reachable("a", True, T0 + 3)
    assert AgentState("a", "not_ready", "available", "device reachable", T0 + 3) in out
    assert offer(out).call_id == "c1"


def test_a_break_taken_while_unreachable_survives_the_device_coming_back():
    r = router("a")
    r.device_reachable("a", False, T0 + 1)
    r.set_not_ready("a", "lunch", T0 + 2)
    assert r.device_reachable("a", True, T0 + 3) == []
    assert (r.agent_state("a").state, r.agent_state("a").reason) == ("not_ready", "lunch")


def test_ready_is_refused_while_the_device_is_unreachable():
    r = router("a")
    r.device_reachable("a", False, T0 + 1)
    with pytest.raises(AgentStateError, match="unreachable"):
        r.set_ready("a", T0 + 2)


def test_login_at_an_unreachable_device_gives_not_ready_unreachable():
    r = router("a", login=False)
    r.device_reachable("a", False, T0)
    assert r.login("a", T0 + 1) == [AgentState("a", "logged_out", "not_ready", UNREACHABLE, T0 + 1)]


def test_a_talking_agent_whose_device_drops_goes_not_ready_when_the_call_ends():
    r = router("a")
    r.call_waiting("c1", "q", T0 + 1)
    r.offer_answered("c1", "a", T0 + 2)
    assert r.device_reachable("a", False, T0 + 3) == []
    assert r.agent_state("a").pending == UNREACHABLE
    out = r.call_finished("c1", "a", T0 + 4)
    assert out[-1] == AgentState("a", "on_call", "not_ready", UNREACHABLE, T0 + 4)


def test_the_device_back_during_the_call_cancels_the_pending_not_ready():
    r = router("a")
    r.call_waiting("c1", "q", T0 + 1)
    r.offer_answered("c1", "a", T0 + 2)
    r.device_reachable("a", False, T0 + 3)
    r.device_reachable("a", True, T0 + 4)
    assert r.agent_state("a").pending is None


def test_reporting_the_same_reachability_twice_decides_nothing():
    r = router("a")
    r.device_reachable("a", False, T0 + 1)
    assert r.device_reachable("a", False, T0 + 2) == []
    assert router("b").device_reachable("b", True, T0) == []


def test_the_other_agents_still_take_calls():
    r = router("a", "b")
    r.device_reachable("a", False, T0 + 1)
    assert offer(r.call_waiting("c1", "q", T0 + 2)).agent_id == "b"
