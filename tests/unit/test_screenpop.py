"""api.screenpop: which agents get a card when, and what the card says."""
from __future__ import annotations

from api.screenpop import Pop, Tracker, card, ivr_summary

VIEW = {"call_id": "c1", "state": "offered", "direction": "inbound", "caller_num": "+4930111",
        "caller_name": "Ada", "exten": "5001", "started_at": 100.0, "queue": "sales", "queue_joined_at": 110.0,
        "queue_left_at": None, "agent": None, "agent_answered_at": None, "ended_at": None}


def _ivr(t: Tracker) -> None:
    for i, (action, inp, value) in enumerate([("enter", None, "open"), ("option", "3", None),
                                              ("collected", "account", "123456"), ("queue", None, "billing")], 1):
        t.feed("call.ivr", "c1", 100.0 + i, {"step": i, "menu": "main", "action": action, "input": inp, "value": value})


def test_an_offer_pops_the_offered_agent_and_later_phases_reach_every_agent_popped():
    t = Tracker()
    _ivr(t)
    t.feed("call.queued", "c1", 110.0, {"queue": "billing", "priority": 3, "customer": "cust-1"})
    assert t.feed("call.offered", "c1", 115.0, {"agent": "a1"}) == [Pop("c1", "a1", "offered")]
    assert t.feed("call.offer_ended", "c1", 118.0, {"agent": "a1"}) == []
    assert t.feed("call.offered", "c1", 120.0, {"agent": "a2"}) == [Pop("c1", "a2", "offered")]
    assert t.feed("call.connected", "c1", 121.0, {"agent": "a2"}) == [Pop("c1", "a2", "answered")]
    assert t.feed("call.state", "c1", 130.0, {"old": "talking", "new": "held"}) == [
        Pop("c1", "a1", "held"), Pop("c1", "a2", "held")]
    assert t.feed("call.state", "c1", 131.0, {"old": "held", "new": "talking"}) == [
        Pop("c1", "a1", "resumed"), Pop("c1", "a2", "resumed")]
    assert t.feed("call.state", "c1", 132.0, {"old": "talking", "new": "talking"}) == []
    assert t.feed("call.ended", "c1", 140.0, {}) == [Pop("c1", "a1", "ended"), Pop("c1", "a2", "ended")]
    assert "c1" not in t.calls


def test_events_of_calls_never_offered_pop_nobody():
    t = Tracker()
    assert t.feed("call.ended", "zz", 1.0, {}) == []
    assert t.feed("call.offered", "c1", 1.0, {"agent": None}) == []


def test_the_tracker_forgets_the_oldest_call_beyond_its_bound():
    t = Tracker(max_calls=2)
    for cid in ("a", "b", "c"):
        t.feed("call.queued", cid, 1.0, {"queue": "q"})
    assert list(t.calls) == ["b", "c"]


def test_ivr_summary_lists_choices_entered_data_and_the_outcome():
    s = ivr_summary([{"menu": "main", "action": "option", "input": "3"},
                     {"menu": "main", "action": "collected", "input": "account", "value": "123456"},
                     {"menu": "main", "action": "queue", "value": "billing"}])
    assert s["choices"] == ["main: 3"]
    assert s["entered"] == {"account": "123456"}
    assert s["outcome"] == {"action": "queue", "value": "billing"}


def test_the_card_carries_caller_customer_ivr_queue_wait_and_priority():
    t = Tracker()
    _ivr(t)
    t.feed("call.queued", "c1", 110.0, {"queue": "billing", "priority": 3})
    (pop,) = t.feed("call.offered", "c1", 125.5, {"agent": "a1"})
    msg = card(pop, t.calls["c1"], VIEW, 200.0, lookup={
        "status": "found", "customer": {"customer_id": "cust-1", "name": "Ada Lovelace", "vip": True},
        "open_tickets": [{"ticket_id": 7}], "recent_calls": []})
    c = msg["card"]
    assert (msg["type"], msg["phase"], msg["agent_id"]) == ("screenpop", "offered", "a1")
    assert c["caller"] == {"number": "+4930111", "name": "Ada"}
    assert c["customer"]["name"] == "Ada Lovelace" and c["open_tickets"] == [{"ticket_id": 7}]
    assert (c["queue"], c["priority"], c["wait_s"]) == ("billing", 3, 15.5)
    assert c["ivr"]["choices"] == ["main: 3"] and c["ivr"]["entered"] == {"account": "123456"}


def test_steps_read_back_from_the_database_replace_an_empty_path_and_a_missing_lookup_is_pending():
    msg = card(Pop("c1", "a1", "answered"), None, VIEW, 200.0,
               ivr_steps=[{"menu": "main", "action": "option", "input": "1"}])
    assert msg["card"]["ivr"]["choices"] == ["main: 1"]
    assert msg["card"]["customer_lookup"] == "pending" and msg["card"]["wait_s"] == 90.0


def test_the_card_names_the_emergency_switch_covering_the_call_and_none_otherwise():
    switch = {"id": 4, "scope": "prefix", "value": "+3399", "action": "continue", "target": "",
              "reason": "known issue", "starts_at": 100.0, "ends_at": None}
    covered = card(Pop("c1", "a1", "offered"), None, VIEW, 200.0, incident=switch)["card"]
    assert covered["incident"] == switch and covered["incident"] is not switch
    assert card(Pop("c1", "a1", "offered"), None, VIEW, 200.0)["card"]["incident"] is None
