"""Several Asterisk nodes, pure: qualified ids, one call model fed by two nodes,
a node's death, the trunk's far half, and when a node is dead (cti.nodes)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.calls import CallModel, channel_prefix
from cti.config import Settings
from cti.errors import ConfigError
from cti.events import CallEvent
from cti.nodes import (
    NodeBack, NodeDead, NodeWatch, check_node_name, node_of_id, node_specs, qualified, qualify,
)
from tests.transcripts import events


def _kinds(evs: list[CallEvent]) -> list[tuple[str, int]]:
    return [(e.kind, e.seq) for e in evs]


# -- ids ---------------------------------------------------------------------------

def test_one_node_leaves_the_headers_as_they_are():
    h = {"Event": "Newchannel", "Uniqueid": "cti-1.0", "Linkedid": "cti-1.0"}
    assert qualify(None, h) is h


def test_every_uniqueid_like_header_is_prefixed_with_the_node():
    h = {"Event": "DialBegin", "Uniqueid": "cti-1.0", "Linkedid": "cti-1.0", "DestUniqueid": "cti-1.1",
         "DestLinkedid": "cti-1.0", "BridgeUniqueid": "5f2e", "Channel": "PJSIP/1001-00000001", "Exten": "1.0"}
    q = qualify("b", h)
    assert q == {**h, "Uniqueid": "b-cti-1.0", "Linkedid": "b-cti-1.0", "DestUniqueid": "b-cti-1.1",
                 "DestLinkedid": "b-cti-1.0", "BridgeUniqueid": "b-5f2e"}
    assert h["Uniqueid"] == "cti-1.0"     # the frame's own headers are not changed


def test_a_listed_channel_s_bridge_is_qualified_as_the_events_name_it():
    item = {"Event": "CoreShowChannel", "Uniqueid": "cti-1.0", "Linkedid": "cti-1.0", "BridgeId": "5f2e"}
    enter = {"Event": "BridgeEnter", "Uniqueid": "cti-1.1", "Linkedid": "cti-1.0", "BridgeUniqueid": "5f2e"}
    assert qualify("b", item)["BridgeId"] == qualify("b", enter)["BridgeUniqueid"] == "b-5f2e"


def test_a_node_s_resync_then_live_bridge_events_agree_on_the_bridge():
    """Resynced alone in a bridge, the caller is joined there by a new leg: talking."""
    model = CallModel()
    listing = [{"Uniqueid": "cti-1.0", "Linkedid": "cti-1.0", "Channel": "PJSIP/c-1", "ChannelStateDesc": "Up",
                "BridgeId": "5f2e"}]
    model.resync([qualify("b", h) for h in listing], [], 10.0, node="b")
    assert model.calls["b-cti-1.0"].state != "talking"
    for h in ({"Event": "Newchannel", "Uniqueid": "cti-1.1", "Linkedid": "cti-1.0", "Channel": "PJSIP/x-2",
               "Timestamp": "11.0"},
              {"Event": "BridgeEnter", "Uniqueid": "cti-1.1", "Linkedid": "cti-1.0", "BridgeUniqueid": "5f2e",
               "Timestamp": "11.1"}):
        model.feed(qualify("b", h), 0.0, "b")
    assert model.calls["b-cti-1.0"].state == "talking"


def test_an_asterisk_whose_systemname_is_the_node_keeps_its_ids():
    h = {"Event": "Hangup", "Uniqueid": "b-1795.3", "Linkedid": "b-1795.2", "DestUniqueid": ""}
    assert qualify("b", h) is h
    assert qualified("b", "b-1795.3") == "b-1795.3"
    assert qualified("a", "b-1795.3") == "a-b-1795.3"


@given(st.dictionaries(st.sampled_from(["Uniqueid", "Linkedid", "DestUniqueid", "Channel", "Queue"]),
                       st.text(max_size=12)),
       st.sampled_from(["a", "b", "node7"]))
def test_qualifying_twice_changes_nothing_more_and_the_node_is_read_back(headers, node):
    once = qualify(node, headers)
    assert qualify(node, once) == once
    for key in ("Uniqueid", "Linkedid", "DestUniqueid"):
        if once.get(key):
            assert node_of_id(once[key], ["a", "b", "node7"]) == node


@given(st.text(max_size=40))
def test_a_node_name_is_letters_and_digits_or_refused(name):
    try:
        assert check_node_name(name) == name
    except ValueError as exc:
        assert "letters and digits" in str(exc)
    else:
        assert name.isascii() and name.isalnum() and "-" not in name


def test_the_single_node_settings_are_one_node_named_a(monkeypatch):
    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    s = Settings(ami_host="10.0.0.5", ami_port=5039, ami_user="u", ami_secret="s3cret-s3cret")
    (node,) = node_specs(s)
    assert (node.name, node.host, node.port, node.user) == ("a", "10.0.0.5", 5039, "u")
    assert "s3cret" not in repr(node)


def test_several_nodes_from_the_environment_in_their_order(monkeypatch):
    monkeypatch.setenv("CTI_AMI_NODES", '[{"name": "a", "host": "10.0.0.1", "secret": "x1y2z3w4"},'
                                        ' {"name": "b", "host": "10.0.0.2", "port": 5039, "secret": "q9r8s7"}]')
    nodes = node_specs(Settings())
    assert [(n.name, n.host, n.port) for n in nodes] == [("a", "10.0.0.1", 5038), ("b", "10.0.0.2", 5039)]


@pytest.mark.parametrize("nodes, field", [
    ([{"name": "a-1"}], "ami_nodes.0.name"),
    ([{"name": "a"}, {"name": "a"}], "ami_nodes"),
    ([{"name": "a", "port": 0}], "ami_nodes.0.port"),
    ([{"name": "a", "colour": "red"}], "ami_nodes.0.colour"),
])
def test_a_bad_node_list_is_refused_naming_the_field(nodes, field):
    from cti.config import load_settings
    with pytest.raises(ConfigError) as err:
        load_settings(ami_nodes=nodes)
    assert f"invalid setting {field}" in str(err.value)


# -- one model, two nodes ------------------------------------------------------------

def _feed_two(model: CallModel, name: str) -> tuple[list[CallEvent], list[CallEvent]]:
    """The same transcript played on node a and node b at once, frame by frame."""
    out = {"a": [], "b": []}
    for f in events(name):
        for node in ("a", "b"):
            out[node].extend(model.feed(qualify(node, f.headers), 0.0, node))
    return out["a"], out["b"]


def _alone(name: str) -> list[CallEvent]:
    model = CallModel()
    out: list[CallEvent] = []
    for f in events(name):
        out.extend(model.feed(f.headers, 0.0))
    return out


@pytest.mark.parametrize("name", ["basic", "burst", "hold", "bridge"])
def test_two_nodes_with_the_same_uniqueids_make_two_calls_each_as_if_alone(name):
    model = CallModel()
    on_a, on_b = _feed_two(model, name)
    alone = _alone(name)
    for node, got in (("a", on_a), ("b", on_b)):
        assert [(e.kind, f"{node}-{e.call_id}", e.seq) for e in alone] == [(e.kind, e.call_id, e.seq) for e in got]
        assert [e.call.state for e in alone] == [e.call.state for e in got]
    assert not model.calls and not model.legs


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=600), st.sampled_from(["basic", "hold", "abandon", "click"]),
       st.sampled_from(["burst", "bridge", "callback"]))
def test_any_interleaving_of_two_nodes_gives_each_node_s_calls_as_if_alone(picks, name_a, name_b):
    """Node a plays one transcript and node b another, their frames interleaved in any
    order: each node's events are exactly those of its transcript alone, ids prefixed."""
    streams = {"a": list(events(name_a)), "b": list(events(name_b))}
    model = CallModel()
    got: dict[str, list[CallEvent]] = {"a": [], "b": []}
    picks = iter(picks)
    while streams["a"] or streams["b"]:
        node = ("a" if next(picks, True) else "b") if streams["a"] and streams["b"] else \
            ("a" if streams["a"] else "b")
        f = streams[node].pop(0)
        got[node].extend(model.feed(qualify(node, f.headers), 0.0, node))
    for node, name in (("a", name_a), ("b", name_b)):
        assert [(e.kind, f"{node}-{e.call_id}", e.seq, e.call.state) for e in _alone(name)] == \
            [(e.kind, e.call_id, e.seq, e.call.state) for e in got[node]]


def test_each_call_knows_its_node_while_it_lives():
    model = CallModel()
    evs = events("basic")
    queued = next(i for i, f in enumerate(evs) if f.headers.get("UserEvent") or f.name == "QueueCallerJoin")
    for f in evs[:queued + 1]:
        for node in ("a", "b"):
            model.feed(qualify(node, f.headers), 0.0, node)
    assert {c.call_id: c.node for c in model.calls.values()} == {
        "a-cti-1795335442.0": "a", "b-cti-1795335442.0": "b"}
    assert model.node_of("b-cti-1795335442.0") == "b"
    assert all(leg.node == cid[0] for cid, c in model.calls.items() for leg in c.legs.values())


def _before_resync() -> list:
    evs = events("resync")
    first = next(i for i, f in enumerate(evs) if f.headers.get("ActionID") == "resync-channels")
    return [f for f in evs[:first] if "ActionID" not in f.headers]


def test_a_nodes_resync_ends_only_its_own_vanished_calls():
    model = CallModel()
    for f in _before_resync():
        for node in ("a", "b"):
            model.feed(qualify(node, f.headers), 0.0, node)
    assert len(model.calls) == 14
    out = model.resync([], [], 99.0, node="a")
    ended = [e for e in out if e.kind == "call.ended"]
    assert len(ended) == 7 and all(e.call_id.startswith("a-") and e.data["estimated"] for e in ended)
    assert len(model.calls) == 7 and all(c.node == "b" for c in model.calls.values())


def test_a_dead_node_s_calls_end_by_estimate_and_the_others_live_on():
    before = _before_resync()
    rest = [f for f in events("resync") if "ActionID" not in f.headers][len(before):]
    model = CallModel()
    for f in before:
        for node in ("a", "b"):
            model.feed(qualify(node, f.headers), 0.0, node)
    b_states = {cid: c.state for cid, c in model.calls.items() if c.node == "b"}
    out = model.node_down("a", 1234.5)
    assert out and all(e.call_id.startswith("a-") for e in out)
    ended = [e for e in out if e.kind == "call.ended"]
    assert len(ended) == 7
    assert all(e.data["estimated"] and e.call.ended_at == 1234.5 for e in ended)
    assert all(e.call.hangup_cause_txt == "Asterisk node a was lost" for e in ended)
    assert {cid: c.state for cid, c in model.calls.items()} == b_states
    # B goes on as if nothing happened: its calls end normally; A's events are of no call now.
    later: list[CallEvent] = []
    for f in rest:
        later.extend(model.feed(qualify("b", f.headers), 0.0, "b"))
    b_ended = [e for e in later if e.kind == "call.ended"]
    assert len(b_ended) == 7 and not any(e.data["estimated"] for e in b_ended)
    assert not model.calls and not model.legs


def test_a_node_back_after_its_death_is_adopted_by_its_resync():
    before = _before_resync()
    listing = [f.headers for f in events("resync") if f.name == "CoreShowChannel"]
    model = CallModel()
    for f in before:
        model.feed(qualify("a", f.headers), 0.0, "a")
    model.node_down("a", 50.0)
    assert not model.calls
    out = model.resync([qualify("a", h) for h in listing], [], 60.0, node="a")
    assert len([e for e in out if e.kind == "call.started"]) == len(model.calls) == 7
    assert all(c.node == "a" and c.call_id.startswith("a-") for c in model.calls.values())


# -- the inter-node trunk ------------------------------------------------------------

def _ev(event: str, **h: str) -> dict[str, str]:
    return {"Event": event, **h}


def _trunk_call() -> list[tuple[str, dict[str, str]]]:
    """A caller on node a offered through the trunk to agent1's phone on node b, answered,
    then the caller hangs up (the frames each node sends, in the order they come)."""
    a, b = "a-1.1", "b-9.4"
    return [
        ("a", _ev("Newchannel", Uniqueid=a, Linkedid=a, Channel="PJSIP/caller-00000001", CallerIDNum="5551234",
                  Timestamp="100.0")),
        ("a", _ev("Newstate", Uniqueid=a, Linkedid=a, ChannelStateDesc="Up", Timestamp="100.1")),
        ("a", _ev("UserEvent", UserEvent="CtiAcdWait", Uniqueid=a, Linkedid=a, Queue="support",
                  Timestamp="100.2")),
        ("a", _ev("Newchannel", Uniqueid="a-1.2", Linkedid=a, Channel="PJSIP/cti-trunk-b-00000002",
                  Timestamp="101.0")),
        ("a", _ev("DialBegin", Uniqueid=a, Linkedid=a, DestUniqueid="a-1.2", DestLinkedid=a,
                  DestChannel="PJSIP/cti-trunk-b-00000002", Timestamp="101.0")),
        ("b", _ev("Newchannel", Uniqueid=b, Linkedid=b, Channel="PJSIP/cti-trunk-a-00000007", Timestamp="101.1")),
        ("b", _ev("Newchannel", Uniqueid="b-9.5", Linkedid=b, Channel="PJSIP/1001-00000008", Timestamp="101.1")),
        ("b", _ev("DialBegin", Uniqueid=b, Linkedid=b, DestUniqueid="b-9.5", DestLinkedid=b,
                  DestChannel="PJSIP/1001-00000008", Timestamp="101.1")),
        ("b", _ev("DialEnd", Uniqueid=b, Linkedid=b, DestUniqueid="b-9.5", DialStatus="ANSWER", Timestamp="104.0")),
        ("b", _ev("BridgeEnter", Uniqueid=b, Linkedid=b, BridgeUniqueid="b-br1", Timestamp="104.0")),
        ("b", _ev("BridgeEnter", Uniqueid="b-9.5", Linkedid=b, BridgeUniqueid="b-br1", Timestamp="104.0")),
        ("a", _ev("DialEnd", Uniqueid=a, Linkedid=a, DestUniqueid="a-1.2", DialStatus="ANSWER", Timestamp="104.1")),
        ("a", _ev("BridgeEnter", Uniqueid=a, Linkedid=a, BridgeUniqueid="a-br1", Timestamp="104.1")),
        ("a", _ev("BridgeEnter", Uniqueid="a-1.2", Linkedid=a, BridgeUniqueid="a-br1", Timestamp="104.1")),
        ("a", _ev("Hangup", Uniqueid=a, Linkedid=a, Cause="16", Timestamp="130.0")),
        ("a", _ev("Hangup", Uniqueid="a-1.2", Linkedid=a, Cause="16", Timestamp="130.0")),
        ("b", _ev("Hangup", Uniqueid=b, Linkedid=b, Cause="16", Timestamp="130.1")),
        ("b", _ev("Hangup", Uniqueid="b-9.5", Linkedid=b, Cause="16", Timestamp="130.1")),
    ]


def test_a_caller_on_a_answered_through_the_trunk_on_b_is_one_call_of_a():
    model = CallModel(trunk_prefix="PJSIP/cti-trunk-")
    out: list[CallEvent] = []
    for node, h in _trunk_call():
        out.extend(model.feed(h, 0.0, node))
        if h.get("UserEvent") == "CtiAcdWait":   # the ACD offers agent1, whose phone is on b
            model.expect_agent("a-1.1", "agent1", "PJSIP/1001@cti-trunk-b")
    assert {e.call_id for e in out} == {"a-1.1"}
    kinds = [e.kind for e in out if e.kind != "call.state"]
    assert kinds == ["call.started", "call.answered", "call.queued", "call.offered", "call.connected",
                     "call.dequeued", "call.agent_left", "call.ended"]
    offered = next(e for e in out if e.kind == "call.offered")
    assert (offered.data["agent"], offered.data["device"]) == ("agent1", "PJSIP/cti-trunk-b-00000002")
    assert next(e for e in out if e.kind == "call.connected").data["agent"] == "agent1"
    assert not model.calls and not model.legs and not model.foreign
    assert model.trunk_legs == 2


def test_the_far_half_of_a_trunk_call_found_in_a_resync_is_no_call():
    model = CallModel(trunk_prefix="PJSIP/cti-trunk-")
    listing = [{"Uniqueid": "b-9.5", "Linkedid": "b-9.4", "Channel": "PJSIP/1001-00000008",
                "ChannelStateDesc": "Up", "BridgeId": "b-br1"},
               {"Uniqueid": "b-9.4", "Linkedid": "b-9.4", "Channel": "PJSIP/cti-trunk-a-00000007",
                "ChannelStateDesc": "Up", "BridgeId": "b-br1"}]
    assert model.resync(listing, [], 10.0, node="b") == []
    assert not model.calls and model.foreign == {"b-9.4": "b"}
    model.resync([], [], 11.0, node="b")
    assert not model.foreign


def test_a_trunk_channel_dialled_from_a_call_is_that_call_s_leg():
    model = CallModel(trunk_prefix="PJSIP/cti-trunk-")
    for node, h in _trunk_call()[:5]:
        model.feed(h, 0.0, node)
    assert set(model.calls["a-1.1"].legs) == {"a-1.1", "a-1.2"}


@pytest.mark.parametrize("device, prefix", [
    ("PJSIP/1001", "PJSIP/1001-"),
    ("PJSIP/1001@cti-trunk-b", "PJSIP/cti-trunk-b-"),
    ("Local/agent1@cti-demo-agents/n", "Local/agent1@cti-demo-agents-"),
])
def test_the_channels_a_dial_string_makes(device, prefix):
    assert channel_prefix(device) == prefix


# -- death and return ----------------------------------------------------------------

def test_a_node_lost_longer_than_allowed_is_dead_once_since_it_was_lost():
    w = NodeWatch(["a", "b"], 10.0, now=0.0)
    assert w.connected("a", 1.0) == [] and w.connected("b", 1.0) == []
    assert w.next_deadline() is None
    w.lost("b", 20.0)
    assert w.next_deadline() == 30.0
    assert w.tick(29.9) == []
    assert w.tick(30.0) == [NodeDead("b", 20.0)]
    assert w.tick(100.0) == [] and w.state("b") == "dead" and w.state("a") == "up"
    assert w.connected("b", 101.0) == [NodeBack("b", 101.0)]
    assert w.connected("b", 102.0) == []


def test_a_connection_back_within_the_grace_is_no_death():
    w = NodeWatch(["a"], 10.0, now=0.0)
    w.connected("a", 0.5)
    w.lost("a", 5.0)
    assert w.connected("a", 9.0) == []
    assert w.tick(50.0) == [] and w.next_deadline() is None


def test_a_node_never_reached_since_the_start_is_dead_too():
    w = NodeWatch(["a", "b"], 10.0, now=100.0)
    w.connected("a", 100.5)
    assert w.next_deadline() == 110.0
    assert w.tick(110.0) == [NodeDead("b", 100.0)]
    assert w.connected("b", 200.0) == [NodeBack("b", 200.0)]


# -- phones: a contact is a node's; the trunk when the phone is elsewhere ---------------

def test_a_dead_node_takes_its_phones_contacts_and_no_other_node_s():
    from phone.model import ContactChange, Reachability
    r = Reachability()
    r.feed(ContactChange("1001", "sip:1001@10.0.0.9:5060", True), "b")
    r.feed(ContactChange("1002", "sip:1002@10.0.0.8:5060", True), "a")
    r.feed(ContactChange("1003", "sip:1003@10.0.0.7:5060", True), "b")
    r.feed(ContactChange("1003", "sip:1003@10.0.0.6:5060", True), "a")
    assert r.nodes_of("1003") == {"a", "b"}
    assert r.drop_node("b") == {"1001": False}
    assert r.devices_up() == {"1002", "1003"} and r.nodes_of("1003") == {"a"}


def test_a_node_s_listing_replaces_only_that_node_s_contacts():
    from phone.model import ContactChange, Reachability
    r = Reachability()
    r.feed(ContactChange("1001", "sip:1001@x", True), "b")
    r.feed(ContactChange("1002", "sip:1002@y", True), "a")
    assert r.replace([ContactChange("1004", "sip:1004@z", True)], "b") == {"1001": False, "1004": True}
    assert r.devices_up() == {"1002", "1004"} and r.nodes_of("1004") == {"b"}


def test_a_contact_down_on_one_node_leaves_the_device_up_on_another():
    from phone.model import ContactChange, Reachability
    r = Reachability()
    r.feed(ContactChange("1001", "sip:1001@x", True), "a")
    r.feed(ContactChange("1001", "sip:1001@x", True), "b")
    assert r.feed(ContactChange("1001", "sip:1001@x", False), "b") is None
    assert r.up("1001") and r.nodes_of("1001") == {"a"}


@pytest.mark.parametrize("device, caller, nodes, dial", [
    ("PJSIP/1001", "a", {"a"}, "PJSIP/1001"),
    ("PJSIP/1001", "a", {"b"}, "PJSIP/1001@cti-trunk-b"),
    ("PJSIP/1001", "a", {"a", "b"}, "PJSIP/1001"),
    ("PJSIP/1001", "a", {"c", "b"}, "PJSIP/1001@cti-trunk-b"),
    ("PJSIP/1001", "a", set(), "PJSIP/1001"),
    ("PJSIP/1001", None, {"b"}, "PJSIP/1001"),
    ("Local/agent1@cti-demo-agents/n", "a", {"b"}, "Local/agent1@cti-demo-agents/n"),
    ("PJSIP/1001@other", "a", {"b"}, "PJSIP/1001@other"),
])
def test_the_dial_string_from_the_caller_s_node(device, caller, nodes, dial):
    from cti.nodes import route_device
    assert route_device(device, caller, nodes) == dial


# -- the shell's wiring, no I/O: a death reaches the model, the bus and the phones --------

class _Acd:
    """What the phone gateway tells the ACD (agent -> reachable), with one agent per phone."""

    def __init__(self, devices: dict[str, str]) -> None:
        from types import SimpleNamespace
        self.devices = devices
        self.config = SimpleNamespace(agents=[SimpleNamespace(id=a) for a in devices])
        self.reachable: dict[str, bool] = {}
        self.route_device = None

    def device_of(self, agent_id: str) -> str:
        return self.devices[agent_id]

    def device_reachable(self, agent_id: str, reachable: bool) -> None:
        self.reachable[agent_id] = reachable

    def bind_device(self, agent_id: str, device: str | None) -> None:
        pass


async def test_a_node_s_death_ends_its_calls_and_makes_its_agents_unreachable(monkeypatch):
    from cti.ami_inputs import ContactStatus
    from cti.daemon import Core, _node_changes, on_frame
    from phone.gateway import PhoneService
    from types import SimpleNamespace

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    core = Core(Settings(ami_secret="x9y8z7w6v5"))
    core.multi = True
    core.nodes = {"a": SimpleNamespace(connected=False), "b": SimpleNamespace(connected=False)}
    core.ami = core.nodes["a"]
    acd = _Acd({"agent1": "PJSIP/1001", "agent2": "PJSIP/1002"})
    phones = PhoneService(core, acd)
    await phones.start()
    assert acd.route_device == phones.route_device
    for node, aor in (("b", "1001"), ("a", "1002")):
        core.bus.publish(ContactStatus(aor, f"sip:{aor}@10.0.0.1", "Reachable", node))
    phones.listed = True
    phones._tell_acd()
    assert acd.reachable == {"agent1": True, "agent2": True}
    for f in _before_resync():
        for node in ("a", "b"):
            on_frame(core, SimpleNamespace(headers=f.headers), node)
    a_calls = {cid for cid, c in core.model.calls.items() if c.node == "a"}
    assert len(a_calls) == 7 and len(core.model.calls) == 14
    seen: list = []
    core.bus.subscribe(seen.append)
    _node_changes(core, [NodeDead("b", 42.0)])
    assert set(core.model.calls) == a_calls
    assert len([e for e in seen if e.kind == "call.ended" and e.call_id.startswith("b-")]) == 7
    assert acd.reachable == {"agent1": False, "agent2": True}
    # From a caller on node a, agent1's phone (on b, when it is back) rings through the trunk.
    core.bus.publish(ContactStatus("1001", "sip:1001@10.0.0.1", "Reachable", "b"))
    assert acd.reachable["agent1"] is True
    caller = next(iter(a_calls))
    assert phones.route_device(caller, "PJSIP/1001") == "PJSIP/1001@cti-trunk-b"
    assert phones.route_device(caller, "PJSIP/1002") == "PJSIP/1002"
    await phones.stop()


# -- the ACD with two nodes: each offer on its caller's node ---------------------------

def _acd_two_nodes():
    import time as _time

    from acd.config import AcdConfig
    from acd.routing_shell import AcdService
    from cti.daemon import Core
    from tests.wireami import WireAmi

    config = AcdConfig.model_validate({
        "skills": ["any"],
        "agents": [{"id": "a1", "name": "Ada", "device": "PJSIP/1001", "queues": {"q": {}}, "auto_login": True}],
        "queues": [{"id": "q", "ring_timeout_s": 15, "wrapup_s": 0}],
    })
    from types import SimpleNamespace
    wa, wb = WireAmi(), WireAmi()
    wa.connected = wb.connected = True
    core = Core(SimpleNamespace(acd_default_queue="q", acd_announce_every=0), ami=wa)  # type: ignore[arg-type]
    core.nodes, core.multi = {"a": wa, "b": wb}, True
    service = AcdService(core, config)
    service.route_device = lambda call_id, device: f"{device}@cti-trunk-a" if call_id.startswith("b-") else device
    service._apply(service.router.auto_login(_time.time()))
    return service, wa, wb


def _queued_on(call_id: str):
    import time as _time

    from cti.events import CallQueued, CallView
    at = _time.time()
    view = CallView(call_id=call_id, state="queued", direction="inbound", caller_num="+100", caller_name="x",
                    exten="s", started_at=at, answered_at=at, queue="q", queue_joined_at=at, queue_left_at=None,
                    agent=None, agent_answered_at=None, ended_at=None, hangup_cause=None, hangup_cause_txt=None,
                    end_estimated=False, abandoned=False, legs=1)
    return CallQueued(call_id, at, 3, view, queue="q", acd=True, channel="PJSIP/caller-00000001",
                      uniqueid=call_id)


async def test_the_offer_goes_to_the_caller_s_node_with_the_dial_string_from_there():
    service, wa, wb = _acd_two_nodes()
    service.on_call_event(_queued_on("b-c1"))
    assert wa.written == []
    assert [a for a, _ in wb.written] == ["Setvar", "Redirect"]
    assert wb.written[0][1]["Value"] == "1,a1,15,PJSIP/1001@cti-trunk-a"
    assert service.core.model.calls == {}        # expect_agent on an unknown call is a no-op


async def test_an_offer_to_a_node_away_holds_routing_until_that_node_is_back():
    import asyncio

    service, wa, wb = _acd_two_nodes()
    wb.down = True
    service.on_call_event(_queued_on("b-c1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert service.router.link_down and service.calls["b-c1"].agent is None
    wb.down = False
    await service.node_resynced("b", wb, [])
    assert not service.router.link_down
    assert service.calls["b-c1"].agent == "a1" and [a for a, _ in wb.written] == ["Setvar", "Redirect"]
    assert wa.written == []


async def test_a_dead_node_lets_routing_go_on_for_the_other_nodes_callers():
    import asyncio
    import dataclasses

    from cti.events import CallEnded

    service, wa, wb = _acd_two_nodes()
    wb.down = True
    service.on_call_event(_queued_on("b-c1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert service.router.link_down
    service.on_call_event(_queued_on("a-c2"))       # held back: nothing is offered meanwhile
    assert wa.written == []
    # Node b dies: its caller's call ends by estimate, then the death itself is told.
    q = _queued_on("b-c1")
    ended = dataclasses.replace(q.call, state="ended", ended_at=q.at, end_estimated=True)
    service.on_call_event(CallEnded("b-c1", q.at, 4, ended, cause=None, cause_txt="Asterisk node b was lost",
                                    estimated=True))
    service.on_node_dead(NodeDead("b", 1.0))
    assert not service.router.link_down
    assert service.calls["a-c2"].agent == "a1" and [a for a, _ in wa.written] == ["Setvar", "Redirect"]


# -- the daemon's shell on real sockets: two fake Asterisks, one dies and returns --------

async def test_the_daemon_follows_two_nodes_closes_a_dead_one_s_calls_and_adopts_them_again():
    import asyncio

    from aiohttp import web

    from cti.config import load_settings
    from cti.daemon import CORE, Core, ami_ctx, health
    from tests.fakeami import SECRET, FakeAmi, frame

    listing = {"a": [], "b": []}
    channel = [f.headers for f in events("resync") if f.name == "CoreShowChannel"][0]

    def lister(node):
        async def core_show_channels(peer, action):
            aid = action["ActionID"]
            peer.send(frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start")),
                      *[frame(*{**item, "ActionID": aid}.items()) for item in listing[node]],
                      frame(("Event", "CoreShowChannelsComplete"), ("ActionID", aid), ("EventList", "Complete"),
                            ("ListItems", str(len(listing[node])))))

        async def queue_status(peer, action):
            aid = action["ActionID"]
            peer.send(frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start")),
                      frame(("Event", "QueueStatusComplete"), ("ActionID", aid), ("EventList", "Complete")))
        return {"CoreShowChannels": core_show_channels, "QueueStatus": queue_status}

    fakes = {"a": FakeAmi(), "b": FakeAmi()}
    for name, fake in fakes.items():
        fake.handlers.update(lister(name))
        await fake.start()
        listing[name] = [channel]
    settings = load_settings(ami_nodes=[{"name": n, "host": "127.0.0.1", "port": f.port, "user": "cti",
                                         "secret": SECRET} for n, f in fakes.items()],
                             ami_node_dead_after=0.5, ami_reconnect_max=0.1, ami_ping_interval=5.0)
    app = web.Application()
    core = app[CORE] = Core(settings)
    app.cleanup_ctx.append(ami_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    seen: list = []
    core.bus.subscribe(seen.append)
    dead: list = []
    core.bus.subscribe_to(NodeDead, dead.append)
    uid = channel["Linkedid"]

    async def until(check, what):
        for _ in range(100):
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(what)

    try:
        await until(lambda: set(core.model.calls) == {f"a-{uid}", f"b-{uid}"}, "both nodes' calls adopted")
        assert core.model.node_of(f"b-{uid}") == "b" and core.ami is core.nodes["a"]
        assert health(core)["nodes"]["b"]["state"] == "up"
        # Node b's Asterisk goes away: dead after the grace; only its call ends, by estimate.
        await fakes["b"].close()
        await until(lambda: core.watch.state("b") == "dead", "node b dead")
        assert set(core.model.calls) == {f"a-{uid}"} and [d.node for d in dead] == ["b"]
        (ended,) = [e for e in seen if e.kind == "call.ended"]
        assert ended.call_id == f"b-{uid}" and ended.data["estimated"]
        assert ended.call.hangup_cause_txt == "Asterisk node b was lost"
        assert health(core)["ami"]["logged_in"] and health(core)["nodes"]["b"]["state"] == "dead"
        # It returns (the same port): followed again, its live call adopted again.
        await fakes["b"].start(fakes["b"].port)
        await until(lambda: core.watch.state("b") == "up" and f"b-{uid}" in core.model.calls, "node b back")
        assert core.model.calls[f"b-{uid}"].node == "b"
    finally:
        await runner.cleanup()
        for fake in fakes.values():
            await fake.close()


async def test_another_node_s_resync_adopts_its_waiting_caller_there_and_leaves_the_epoch_alone():
    from types import SimpleNamespace

    service, wa, wb = _acd_two_nodes()
    asked: list[tuple[str, str]] = []
    values = {"CTI_QUEUE": "q", "CTI_WAIT_START": "1000.0"}

    async def send(action, headers=None, *, shape, timeout=None):
        asked.append((headers["Channel"], headers["Variable"]))
        return SimpleNamespace(response=SimpleNamespace(headers={"Value": values.get(headers["Variable"], "")}))

    wb.send = send
    service.epoch_in_force = 1
    item = {"Event": "CoreShowChannel", "Channel": "PJSIP/caller-00000001", "Uniqueid": "b-9.1",
            "Linkedid": "b-9.1", "Context": "cti-acd-wait"}
    await service.node_resynced("b", wb, [item])
    assert {c for c, _ in asked} == {"PJSIP/caller-00000001"} and ("PJSIP/caller-00000001", "CTI_QUEUE") in asked
    assert service.calls["b-9.1"].agent == "a1"
    assert [a for a, _ in wb.written] == ["Setvar", "Redirect"] and wa.written == []
    assert service.epoch_in_force == 1


def test_ids_we_choose_for_the_primary_s_originates_are_as_its_events_carry_them(monkeypatch):
    from types import SimpleNamespace

    from cti.daemon import Core
    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    core = Core(Settings(ami_secret="x9y8z7w6v5"))
    core.nodes = {"a": SimpleNamespace()}
    assert core.primary_id("dial-1") == "dial-1"           # one node: as chosen
    core.nodes, core.multi = {"a": SimpleNamespace(), "b": SimpleNamespace()}, True
    assert core.primary_id("dial-1") == "a-dial-1" == qualified("a", "dial-1")
    assert qualify("a", {"Uniqueid": core.primary_id("dial-1")})["Uniqueid"] == "a-dial-1"


def test_click_to_dial_is_placed_on_the_node_where_the_agent_s_phone_is(monkeypatch):
    from types import SimpleNamespace

    from aiohttp import web

    from api.desktop import _dial_id
    from api.desktop_state import DESKTOP
    from cti.daemon import Core
    from phone.gateway import PHONES
    from phone.model import ContactChange, Reachability

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    core = Core(Settings(ami_secret="x9y8z7w6v5"))
    core.nodes, core.multi = {"a": SimpleNamespace(), "b": SimpleNamespace()}, True
    reach = Reachability()
    reach.feed(ContactChange("1001", "sip:1001@x", True), "b")
    app = web.Application()
    app[DESKTOP], app[PHONES] = SimpleNamespace(core=core), SimpleNamespace(reach=reach)
    req = SimpleNamespace(app=app)
    assert _dial_id(req, "PJSIP/1001", "dial-1") == "b-dial-1"
    assert _dial_id(req, "PJSIP/1002", "dial-2") == "a-dial-2"        # not registered anywhere known
    assert _dial_id(req, "Local/agent1@cti-demo-agents/n", "dial-3") == "a-dial-3"
    core.multi = False
    assert _dial_id(req, "PJSIP/1001", "dial-4") == "dial-4"           # one node: as chosen


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["connected", "lost", "tick"]), st.sampled_from(["a", "b"]),
                          st.floats(min_value=0.0, max_value=8.0, allow_nan=False)), max_size=40))
def test_the_watch_declares_a_death_exactly_when_a_node_was_away_long_enough(steps):
    """Against a naive reference: a node is dead once it has been away (lost, or never
    connected since the start) for dead_after; dead once per absence; back once after."""
    dead_after, now = 5.0, 0.0
    w = NodeWatch(["a", "b"], dead_after, now=now)
    away_since = {"a": 0.0, "b": 0.0}          # None while up
    dead = {"a": False, "b": False}
    for what, node, dt in steps:
        now += dt
        # Whatever is due before this step is declared by a tick at its deadline (the shell's timer).
        due = w.next_deadline()
        expected_due = [n for n in ("a", "b") if away_since[n] is not None and not dead[n]]
        assert (due is None) == (not expected_due)
        if due is not None:
            assert due == min(away_since[n] + dead_after for n in expected_due)
        if what == "tick":
            got = {c.node for c in w.tick(now) if isinstance(c, NodeDead)}
            want = {n for n in expected_due if now >= away_since[n] + dead_after}
            assert got == want
            for n in want:
                dead[n] = True
        elif what == "lost":
            w.lost(node, now)
            if away_since[node] is None:
                away_since[node] = now
        else:
            got = w.connected(node, now)
            assert got == ([NodeBack(node, now)] if dead[node] else [])
            away_since[node], dead[node] = None, False
        for n in ("a", "b"):
            want_state = {"dead"} if dead[n] else {"up"} if away_since[n] is None else {"starting", "down"}
            assert w.state(n) in want_state


# -- the trunk on captured transcripts (tests/fixtures/ami/trunk-a.ami, trunk-b.ami) ------

def _merged(names: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Both nodes' captured frames in Asterisk's time order (their Timestamps)."""
    out = []
    for node, name in names.items():
        for i, f in enumerate(events(name)):
            out.append((float(f.headers.get("Timestamp", "0") or 0), node, i, f.headers))
    return [(node, h) for _, node, _, h in sorted(out, key=lambda x: (x[0], x[1], x[2]))]


def test_callers_on_a_answered_through_the_trunk_on_b_are_a_s_calls_only():
    """Captured from tests/integration/test_asterisk_nodes.py: two callers on node a, each
    answered by a phone on node b through the trunk."""
    model = CallModel(trunk_prefix="PJSIP/cti-trunk-")
    out: list[CallEvent] = []
    for node, h in _merged({"a": "trunk-a", "b": "trunk-b"}):
        out.extend(model.feed(qualify(node, h), 0.0, node))
    calls = {e.call_id for e in out}
    assert calls and all(cid.startswith("a-") for cid in calls)
    offered = [e for e in out if e.kind == "call.offered"]
    assert offered and all(e.data["device"].startswith("PJSIP/cti-trunk-b-") for e in offered)
    connected = {e.call_id for e in out if e.kind == "call.connected"}
    ended = {e.call_id for e in out if e.kind == "call.ended"}
    assert {e.call_id for e in offered} <= connected <= ended
    assert model.trunk_legs >= 2 and not model.foreign and not model.calls
