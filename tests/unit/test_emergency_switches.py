"""The emergency switches' pure core (emergency/switches.py): scope, precedence, plans."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from emergency.switches import (
    ACTIONS, SCOPES, CallFacts, Switch, SwitchError, Untouched, WaitingPlan, active, check, choose, choose_early,
    covers, hook_line, next_change, plan,
)


def sw(id: int, scope: str = "all", value: str = "", action: str = "hangup", **kw) -> Switch:
    return Switch(id=id, scope=scope, value=value, action=action, **kw)


CALL = CallFacts(caller_num="+493012345", did="5000", queue="support", ivr_path=("main", "main:2"), node="n1")


def test_a_prefix_switch_covers_only_callers_whose_number_starts_with_it():
    s = sw(1, "prefix", "+4930")
    assert covers(s, CALL)
    assert not covers(s, CallFacts(caller_num="+4940123"))
    assert not covers(s, CallFacts(caller_num=""))


def test_each_scope_matches_its_own_attribute():
    assert covers(sw(1, "did", "5000"), CALL) and not covers(sw(1, "did", "5001"), CALL)
    assert covers(sw(1, "queue", "support"), CALL) and not covers(sw(1, "queue", "sales"), CALL)
    assert covers(sw(1, "ivr", "main:2"), CALL) and not covers(sw(1, "ivr", "main:3"), CALL)
    assert covers(sw(1, "node", "n1"), CALL) and not covers(sw(1, "node", "n2"), CALL)
    assert covers(sw(1), CallFacts())


def test_the_most_specific_scope_wins_over_a_later_broader_one():
    everything = sw(1, declared_at=200)
    prefix = sw(2, "prefix", "+49", declared_at=100)
    longer = sw(3, "prefix", "+4930", declared_at=50)
    assert choose([everything, prefix, longer], CALL, 300) == longer
    assert choose([everything, prefix], CALL, 300) == prefix
    assert choose([everything, sw(4, "queue", "support")], CALL, 300).id == 4


def test_among_equally_specific_switches_the_latest_declared_wins():
    a = sw(1, "queue", "support", declared_at=100)
    b = sw(2, "queue", "support", declared_at=150)
    assert choose([b, a], CALL, 300) == b


def test_a_scheduled_switch_applies_only_between_its_start_and_end():
    s = sw(1, starts_at=100, ends_at=200)
    assert choose([s], CALL, 99) is None
    assert choose([s], CALL, 100) == s
    assert choose([s], CALL, 200) is None
    assert next_change([s], 50) == 100 and next_change([s], 100) == 200 and next_change([s], 200) is None


def test_a_switch_turned_off_applies_no_more():
    s = sw(1, ended_at=150)
    assert s.active(149) and not s.active(150)
    assert active([s], 160) == []


def test_a_call_with_an_agent_is_untouched_whatever_the_action():
    for action in ACTIONS:
        assert isinstance(plan(sw(1, action=action, target="x"), "with_agent"), Untouched)


def test_waiting_callers_are_moved_per_the_action():
    assert plan(sw(1, action="hangup"), "waiting") == WaitingPlan(True, None, "hangup")
    assert plan(sw(1, action="voicemail"), "waiting") == WaitingPlan(True, None, "voicemail")
    assert plan(sw(1, action="number", target="+4930111"), "waiting") == WaitingPlan(True, None, "number")
    assert plan(sw(1, action="queue", target="sales"), "waiting") == WaitingPlan(False, "sales", None)
    assert plan(sw(1, action="queue", target="sales", prompt="ann"), "waiting") == WaitingPlan(False, "sales",
                                                                                                "continue")
    assert plan(sw(1, action="continue", prompt="ann"), "waiting") == WaitingPlan(False, None, "continue")
    assert plan(sw(1, action="continue"), "waiting") == WaitingPlan(False, None, None)
    assert plan(sw(1, action="voicemail"), "new") == "voicemail"


@pytest.mark.parametrize("args, field", [
    (("everything", "", "hangup", "", ""), "scope"),
    (("all", "x", "hangup", "", ""), "value"),
    (("prefix", "+49a", "hangup", "", ""), "value"),
    (("prefix", "+49", "explode", "", ""), "action"),
    (("prefix", "+49", "queue", "", ""), "target"),
    (("prefix", "+49", "number", "12,3", ""), "target"),
    (("prefix", "+49", "hangup", "sales", ""), "target"),
    (("prefix", "+49", "hangup", "", "a,b"), "prompt"),
    (("prefix", "+49", "hangup", "", "../etc/x"), "prompt"),
])
def test_a_bad_declaration_is_refused_naming_the_field(args, field):
    with pytest.raises(SwitchError, match=f"^{field}:"):
        check(*args, 0.0, None)


def test_an_end_before_the_start_is_refused():
    with pytest.raises(SwitchError, match="^ends_at:"):
        check("all", "", "hangup", "", "", 100.0, 100.0)


def test_the_hook_line_carries_action_target_and_prompt():
    assert hook_line(None) == "none"
    assert hook_line(sw(7, action="queue", target="sales", prompt="storm")) == "ok,7,queue,sales,storm"


# -- properties: choose against a naive reference ------------------------------------------

def _reference(switches: list[Switch], call: CallFacts, now: float) -> Switch | None:
    """The same rule said the slow way: filter, then sort by each criterion in turn."""
    order = ["all", "node", "queue", "ivr", "did", "prefix"]
    live = [s for s in switches if s.starts_at <= now and (s.ended_at is None or now < s.ended_at)
            and (s.ends_at is None or now < s.ends_at) and covers(s, call)]
    if not live:
        return None
    live.sort(key=lambda s: (order.index(s.scope), len(s.value) if s.scope == "prefix" else 0, s.declared_at, s.id))
    return live[-1]


_values = {"all": st.just(""), "node": st.sampled_from(["n1", "n2"]), "queue": st.sampled_from(["support", "sales"]),
           "did": st.sampled_from(["5000", "5001"]), "prefix": st.sampled_from(["+4", "+49", "+4930", "+33"]),
           "ivr": st.sampled_from(["main", "main:2", "main:3"])}


@st.composite
def switches(draw) -> list[Switch]:
    out = []
    for i in range(draw(st.integers(0, 8))):
        scope = draw(st.sampled_from(SCOPES))
        start = draw(st.integers(0, 100))
        out.append(Switch(id=i + 1, scope=scope, value=draw(_values[scope]), action="hangup",
                          declared_at=draw(st.integers(0, 100)), starts_at=start,
                          ends_at=draw(st.none() | st.integers(start + 1, 200)),
                          ended_at=draw(st.none() | st.integers(0, 200))))
    return out


calls = st.builds(CallFacts, caller_num=st.sampled_from(["", "+493011", "+4940", "+3312"]),
                  did=st.sampled_from(["5000", "5001"]), queue=st.sampled_from(["support", "sales"]),
                  ivr_path=st.sampled_from([(), ("main",), ("main", "main:2")]), node=st.sampled_from(["n1", "n2"]))


@given(switches(), calls, st.integers(0, 220))
def test_choose_makes_the_reference_decision(sws, call, now):
    assert choose(sws, call, now) == _reference(sws, call, now)


@given(switches(), calls, st.integers(0, 220))
def test_the_chosen_switch_is_first_among_the_active_ones_covering_the_call(sws, call, now):
    chosen = choose(sws, call, now)
    covering = [s for s in active(sws, now) if covers(s, call)]
    assert chosen == (covering[0] if covering else None)


@given(switches(), st.integers(0, 220))
def test_the_active_set_changes_only_at_next_change(sws, now):
    nxt = next_change(sws, now)
    before = {s.id for s in active(sws, now)}
    later = (nxt - 0.5) if nxt is not None else 1000
    if later > now:
        assert {s.id for s in active(sws, later)} == before


@given(switches(), calls, st.integers(0, 220))
def test_a_switch_taking_a_call_before_the_menu_is_the_one_the_route_step_would_choose(sws, call, now):
    """Whatever queue and IVR branch the menu then gives the call (``call`` has some)."""
    early = choose_early(sws, call, now)
    if early is not None:
        assert choose(sws, call, now) == early


def test_before_the_menu_the_number_did_and_node_are_known_not_the_queue_or_branch():
    facts = CallFacts(caller_num="+493012345", did="5000", node="n1")
    assert choose_early([sw(1, "prefix", "+4930")], facts, 10).id == 1
    assert choose_early([sw(1, "did", "5000")], facts, 10).id == 1
    assert choose_early([sw(1, "queue", "support")], CALL, 10) is None
    assert choose_early([sw(1, "ivr", "main")], CALL, 10) is None


def test_a_broad_switch_waits_for_the_route_step_while_a_queue_or_branch_switch_is_in_force():
    broad, queue = sw(1, declared_at=5), sw(2, "queue", "sales", declared_at=1)
    assert choose_early([broad], CALL, 10) == broad
    assert choose_early([broad, queue], CALL, 10) is None
    assert choose_early([broad, sw(3, "queue", "sales", ended_at=5)], CALL, 10) == broad   # not in force
    assert choose_early([sw(4, "prefix", "+49"), queue], CALL, 10).id == 4                 # outranks it anyway


# -- the feature code's PIN ------------------------------------------------------------------

def test_the_right_pin_passes_and_a_wrong_one_is_counted():
    from emergency.pin import PinGuard
    g = PinGuard()
    assert g.check("1234", "1234", 0) == "ok"
    assert g.check("9999", "1234", 1) == "wrong_pin"
    assert g.check("1234", None, 2) == "disabled"


def test_five_wrong_pins_lock_out_even_the_right_one_until_the_window_passes():
    from emergency.pin import PinGuard
    g = PinGuard(max_failures=5, window_s=600)
    for t in range(5):
        assert g.check("0000", "1234", t) == "wrong_pin"
    assert g.check("1234", "1234", 10) == "locked"
    assert g.check("1234", "1234", 600) == "ok"      # the first failure left the window
