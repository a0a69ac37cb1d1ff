"""The public JSON of call events, pinned: what WebSocket clients and webhook receivers get.

Every event of captured calls (tests/fixtures/ami) and of a hand-made one (what no
transcript shows) goes through the WebSocket message builder (``api.hub.call_message``)
and the webhook body builder (``api.webhooks.payload``) the way api/ws.py and
api/webhook_service.py call them. The kinds, their ``data`` (keys in order) and the
envelope are the public API: a change here is a change for every client.
"""
from __future__ import annotations

import re

import pytest

from api.hub import call_message
from api.webhooks import payload
from cti import events as events_module
from cti.calls import CallModel
from cti.events import CallEvent
from tests.transcripts import events


def transcript(name: str) -> list[CallEvent]:
    model = CallModel()
    out: list[CallEvent] = []
    for f in events(name):
        out.extend(model.feed(f.headers, 0.0))
    return out


def synthetic() -> list[CallEvent]:
    """Hand-made AMI input for what no transcript shows: the daemon's ACD queue, an
    AgentConnect alone, both transfers, a merge, an annotation, an agent found after a restart."""
    m = CallModel()
    out: list[CallEvent] = []

    def feed(**h: str) -> None:
        out.extend(m.feed(h, 0.0))
    # An ACD caller who hangs up while waiting.
    feed(Event="Newchannel", Uniqueid="a1", Linkedid="a1", Channel="PJSIP/trunk-00000001", CallerIDNum="+4930111",
         CallerIDName="Ann", Timestamp="100.0")
    feed(Event="UserEvent", UserEvent="CtiInbound", Uniqueid="a1", Linkedid="a1", DID="5000", Timestamp="100.5")
    feed(Event="UserEvent", UserEvent="CtiAcdWait", Uniqueid="a1", Linkedid="a1", Queue="sales",
         Skills='"en,billing"', CtiPriority="2", Customer="cust-7", Timestamp="101.0")
    feed(Event="Hangup", Uniqueid="a1", Linkedid="a1", Cause="16", **{"Cause-txt": "Normal Clearing"},
         Timestamp="109.25")
    # app_queue connects an agent (AgentConnect alone), who transfers blind, then attended.
    feed(Event="Newchannel", Uniqueid="b1", Linkedid="b1", Channel="PJSIP/trunk-00000002", Timestamp="200.0")
    feed(Event="Newstate", Uniqueid="b1", Linkedid="b1", ChannelStateDesc="Up", Timestamp="200.5")
    feed(Event="QueueCallerJoin", Uniqueid="b1", Linkedid="b1", Queue="support", Position="1", Timestamp="201.0")
    feed(Event="AgentConnect", Uniqueid="b1", Linkedid="b1", MemberName="Agent 2",
         Interface="Local/agent2@cti-demo-agents/n", Timestamp="205.0")
    feed(Event="BlindTransfer", TransfererUniqueid="b1", TransfererLinkedid="b1", Extension="6000", Result="Success",
         Timestamp="210.0")
    feed(Event="AttendedTransfer", OrigTransfererUniqueid="b1", OrigTransfererLinkedid="b1",
         SecondTransfererChannel="PJSIP/1002-00000009", Result="Success", Timestamp="211.0")
    feed(Event="Hangup", Uniqueid="b1", Linkedid="b1", Cause="16", Timestamp="215.0")
    # A bridge moves the only leg of d1 into c1: d1 ends merged.
    feed(Event="Newchannel", Uniqueid="c1", Linkedid="c1", Channel="PJSIP/1001-00000003", Timestamp="300.0")
    feed(Event="Newchannel", Uniqueid="d1", Linkedid="d1", Channel="PJSIP/1002-00000004", Timestamp="300.5")
    feed(Event="BridgeEnter", Uniqueid="d1", Linkedid="c1", BridgeUniqueid="br1", Timestamp="301.0")
    annotation = m.annotate("c1", "acd.offer", 301.5, agent="a1", device="PJSIP/1001", ring_timeout_s=15.0)
    assert annotation is not None
    out.append(annotation)
    feed(Event="Hangup", Uniqueid="d1", Linkedid="c1", Cause="16", Timestamp="302.0")
    feed(Event="Hangup", Uniqueid="c1", Linkedid="c1", Cause="16", Timestamp="302.0")
    # After a restart: the agent found talking with a caller.
    listing = [
        {"ChannelStateDesc": "Up", "Linkedid": "e1", "Channel": "Local/p120@cti-demo-caller-00000001;1",
         "Uniqueid": "e1", "Duration": "00:00:09", "BridgeId": "b9"},
        {"ChannelStateDesc": "Up", "Linkedid": "e1", "Channel": "Local/agent4@cti-demo-agents-00000002;1",
         "Uniqueid": "e1-a", "Duration": "00:00:04", "BridgeId": "b9"},
    ]
    out.extend(m.resync(listing, [{"Uniqueid": "e1", "Queue": "billing", "Wait": "7"}], 1000.0))
    out.extend(m.agent_found("e1", "a4", "Local/agent4@cti-demo-agents/n", 1000.5))
    out.extend(m.resync([], [], 1010.0))
    assert not m.calls
    return out


def scenario(name: str) -> list[CallEvent]:
    return synthetic() if name == "synthetic" else transcript(name)


def ws_body(ev: CallEvent) -> dict:
    return call_message(ev.kind, ev.call_id, ev.seq, ev.at, ev.call, ev.data)


def webhook_body(ev: CallEvent) -> dict:
    return payload(ev.kind, ev.call_id, ev.seq, ev.at, ev.call, ev.data)


# (type, call_id, data) of every event, in order; data compared with its keys' order.
PINNED = {
    "basic": [
        ('call.started', 'cti-1795335442.0', {'channel': 'Local/p60@cti-demo-caller-00000000;1'}),
        ('call.state', 'cti-1795335442.0', {'old': 'ringing', 'new': 'ivr'}),
        ('call.answered', 'cti-1795335442.0', {}),
        ('call.inbound', 'cti-1795335442.0', {'did': '5000'}),
        ('call.state', 'cti-1795335442.0', {'old': 'ivr', 'new': 'queued'}),
        ('call.queued', 'cti-1795335442.0', {'queue': 'cti-fallback', 'position': 1}),
        ('call.state', 'cti-1795335442.0', {'old': 'queued', 'new': 'offered'}),
        ('call.offered', 'cti-1795335442.0',
         {'agent': 'Agent 1', 'device': 'Local/agent1@cti-demo-agents/n',
          'uniqueid': 'cti-1795335442.2', 'queue': 'cti-fallback'}),
        ('call.state', 'cti-1795335442.0', {'old': 'offered', 'new': 'talking'}),
        ('call.connected', 'cti-1795335442.0',
         {'agent': 'Agent 1', 'device': 'Local/agent1@cti-demo-agents/n', 'uniqueid': 'cti-1795335442.2'}),
        ('call.dequeued', 'cti-1795335442.0', {'queue': 'cti-fallback'}),
        ('call.state', 'cti-1795335442.0', {'old': 'talking', 'new': 'ivr'}),
        ('call.agent_left', 'cti-1795335442.0', {'agent': 'Agent 1', 'uniqueid': 'cti-1795335442.2'}),
        ('call.state', 'cti-1795335442.0', {'old': 'ivr', 'new': 'ended'}),
        ('call.ended', 'cti-1795335442.0', {'cause': 16, 'cause_txt': 'Normal Clearing', 'estimated': False}),
    ],
    "abandon": [
        ('call.started', 'cti-1795335505.0', {'channel': 'Local/p2@cti-demo-caller-00000000;1'}),
        ('call.state', 'cti-1795335505.0', {'old': 'ringing', 'new': 'ivr'}),
        ('call.answered', 'cti-1795335505.0', {}),
        ('call.inbound', 'cti-1795335505.0', {'did': '5000'}),
        ('call.state', 'cti-1795335505.0', {'old': 'ivr', 'new': 'queued'}),
        ('call.queued', 'cti-1795335505.0', {'queue': 'cti-fallback', 'position': 1}),
        ('call.state', 'cti-1795335505.0', {'old': 'queued', 'new': 'offered'}),
        ('call.offered', 'cti-1795335505.0',
         {'agent': 'Agent 1', 'device': 'Local/agent1@cti-demo-agents/n',
          'uniqueid': 'cti-1795335505.2', 'queue': 'cti-fallback'}),
        ('call.state', 'cti-1795335505.0', {'old': 'offered', 'new': 'queued'}),
        ('call.offer_ended', 'cti-1795335505.0',
         {'agent': 'Agent 1', 'device': 'Local/agent1@cti-demo-agents/n', 'status': 'CANCEL'}),
        ('call.abandoned', 'cti-1795335505.0', {'queue': 'cti-fallback', 'wait_s': 2.022, 'position': 1}),
        ('call.state', 'cti-1795335505.0', {'old': 'queued', 'new': 'ivr'}),
        ('call.dequeued', 'cti-1795335505.0', {'queue': 'cti-fallback'}),
        ('call.state', 'cti-1795335505.0', {'old': 'ivr', 'new': 'ended'}),
        ('call.ended', 'cti-1795335505.0', {'cause': 16, 'cause_txt': 'Normal Clearing', 'estimated': False}),
    ],
    "click": [
        ('call.started', 'click1', {'channel': 'Local/agent1@cti-demo-agents-00000000;1'}),
        ('call.state', 'click1', {'old': 'ringing', 'new': 'ivr'}),
        ('call.answered', 'click1', {}),
        ('call.outbound', 'click1', {'agent': 'a1', 'number': '+4930555666'}),
        ('call.state', 'click1', {'old': 'ivr', 'new': 'offered'}),
        ('call.offered', 'click1',
         {'agent': 'a1', 'device': 'Local/+4930555666@cti-demo-callee-00000001;1', 'uniqueid': 'cti-1796053488.2'}),
        ('call.state', 'click1', {'old': 'offered', 'new': 'talking'}),
        ('call.connected', 'click1',
         {'agent': 'a1', 'device': 'Local/+4930555666@cti-demo-callee-00000001;1', 'uniqueid': 'cti-1796053488.2'}),
        ('call.state', 'click1', {'old': 'talking', 'new': 'ivr'}),
        ('call.agent_left', 'click1', {'agent': 'a1', 'uniqueid': 'cti-1796053488.2'}),
        ('call.state', 'click1', {'old': 'ivr', 'new': 'ended'}),
        ('call.ended', 'click1', {'cause': 16, 'cause_txt': 'Normal Clearing', 'estimated': False}),
    ],
    "hold": [
        ('call.started', 'holdA', {'channel': 'Local/p16@cti-demo-caller-00000000;1'}),
        ('call.state', 'holdA', {'old': 'ringing', 'new': 'ivr'}),
        ('call.answered', 'holdA', {}),
        ('call.started', 'holdB', {'channel': 'Local/agent1@cti-demo-agents-00000001;1'}),
        ('call.state', 'holdB', {'old': 'ringing', 'new': 'ivr'}),
        ('call.answered', 'holdB', {}),
        ('call.state', 'holdA', {'old': 'ivr', 'new': 'talking'}),
        ('call.state', 'holdA', {'old': 'talking', 'new': 'ivr'}),
        ('call.state', 'holdA', {'old': 'ivr', 'new': 'held'}),
        ('call.held', 'holdA', {}),
        ('call.state', 'holdA', {'old': 'held', 'new': 'talking'}),
        ('call.resumed', 'holdA', {}),
        ('call.state', 'holdA', {'old': 'talking', 'new': 'ivr'}),
        ('call.state', 'holdA', {'old': 'ivr', 'new': 'talking'}),
        ('call.state', 'holdA', {'old': 'talking', 'new': 'ivr'}),
        ('call.state', 'holdB', {'old': 'ivr', 'new': 'ended'}),
        ('call.ended', 'holdB', {'cause': 16, 'cause_txt': 'Normal Clearing', 'estimated': False}),
        ('call.state', 'holdA', {'old': 'ivr', 'new': 'ended'}),
        ('call.ended', 'holdA', {'cause': 16, 'cause_txt': 'Normal Clearing', 'estimated': False}),
    ],
    "synthetic": [
        ('call.started', 'a1', {'channel': 'PJSIP/trunk-00000001'}),
        ('call.inbound', 'a1', {'did': '5000'}),
        ('call.state', 'a1', {'old': 'ringing', 'new': 'queued'}),
        ('call.queued', 'a1',
         {'queue': 'sales', 'acd': True, 'channel': 'PJSIP/trunk-00000001', 'uniqueid': 'a1',
          'skills': 'en,billing', 'priority': 2, 'customer': 'cust-7'}),
        ('call.abandoned', 'a1', {'queue': 'sales', 'wait_s': 8.25, 'position': None}),
        ('call.state', 'a1', {'old': 'queued', 'new': 'ended'}),
        ('call.ended', 'a1', {'cause': 16, 'cause_txt': 'Normal Clearing', 'estimated': False}),
        ('call.started', 'b1', {'channel': 'PJSIP/trunk-00000002'}),
        ('call.state', 'b1', {'old': 'ringing', 'new': 'ivr'}),
        ('call.answered', 'b1', {}),
        ('call.state', 'b1', {'old': 'ivr', 'new': 'queued'}),
        ('call.queued', 'b1', {'queue': 'support', 'position': 1}),
        ('call.connected', 'b1', {'agent': 'Agent 2', 'device': 'Local/agent2@cti-demo-agents/n'}),
        ('call.state', 'b1', {'old': 'queued', 'new': 'transferred'}),
        ('call.transferred', 'b1', {'type': 'blind', 'target': '6000', 'result': 'Success'}),
        ('call.transferred', 'b1', {'type': 'attended', 'target': 'PJSIP/1002-00000009', 'result': 'Success'}),
        ('call.abandoned', 'b1', {'queue': 'support', 'wait_s': 14.0, 'position': None}),
        ('call.state', 'b1', {'old': 'transferred', 'new': 'ended'}),
        ('call.ended', 'b1', {'cause': 16, 'cause_txt': None, 'estimated': False}),
        ('call.started', 'c1', {'channel': 'PJSIP/1001-00000003'}),
        ('call.started', 'd1', {'channel': 'PJSIP/1002-00000004'}),
        ('call.state', 'd1', {'old': 'ringing', 'new': 'ended'}),
        ('call.merged', 'd1', {'into': 'c1'}),
        ('call.ended', 'd1', {'cause': None, 'cause_txt': None, 'estimated': False}),
        ('acd.offer', 'c1', {'agent': 'a1', 'device': 'PJSIP/1001', 'ring_timeout_s': 15.0}),
        ('call.state', 'c1', {'old': 'ringing', 'new': 'ended'}),
        ('call.ended', 'c1', {'cause': 16, 'cause_txt': None, 'estimated': False}),
        ('call.started', 'e1', {'channel': 'Local/p120@cti-demo-caller-00000001;1'}),
        ('call.state', 'e1', {'old': 'ringing', 'new': 'talking'}),
        ('call.dequeued', 'e1', {'queue': 'billing'}),
        ('call.connected', 'e1',
         {'agent': 'a4', 'device': 'Local/agent4@cti-demo-agents/n', 'uniqueid': 'e1-a', 'estimated': True}),
        ('call.state', 'e1', {'old': 'talking', 'new': 'ivr'}),
        ('call.agent_left', 'e1', {'agent': 'a4', 'uniqueid': 'e1-a'}),
        ('call.state', 'e1', {'old': 'ivr', 'new': 'ended'}),
        ('call.ended', 'e1',
         {'cause': None, 'cause_txt': 'ended while the daemon was disconnected', 'estimated': True}),
    ],
}

VIEW_KEYS = ["call_id", "state", "direction", "caller_num", "caller_name", "exten", "started_at", "answered_at",
             "queue", "queue_joined_at", "queue_left_at", "agent", "agent_answered_at", "ended_at", "hangup_cause",
             "hangup_cause_txt", "end_estimated", "abandoned", "legs"]


def _pinned(bodies: list[dict]) -> list[tuple]:
    return [(b["type"], b["call_id"], list(b["data"].items())) for b in bodies]


@pytest.mark.parametrize("name", sorted(PINNED))
@pytest.mark.parametrize("build", [ws_body, webhook_body], ids=["websocket", "webhook"])
def test_every_events_type_and_data_are_the_pinned_ones(name, build):
    expected = [(kind, cid, list(data.items())) for kind, cid, data in PINNED[name]]
    assert _pinned([build(ev) for ev in scenario(name)]) == expected


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_envelope_carries_the_sequence_time_and_whole_call(name):
    for ev in scenario(name):
        ws, hook = ws_body(ev), webhook_body(ev)
        assert list(ws) == ["type", "call_id", "call_seq", "at", "call", "data"]
        assert list(hook) == ["id", "type", "call_id", "call_seq", "at", "call", "data"]
        assert hook["id"] == f"{ev.call_id}:{ev.seq}"
        assert (ws["call_seq"], ws["at"]) == (hook["call_seq"], hook["at"]) == (ev.seq, ev.at)
        assert list(ws["call"]) == list(hook["call"]) == VIEW_KEYS
        assert ws["call"] == hook["call"] and ws["call"]["call_id"] == ev.call_id


def test_every_kind_the_events_table_lists_is_pinned():
    listed = set(re.findall(r"^(call\.[a-z_]+)\s", events_module.__doc__, re.MULTILINE))
    pinned = {kind for rows in PINNED.values() for kind, _, _ in rows}
    assert listed and listed <= pinned


def test_every_kind_the_events_table_lists_has_its_type():
    listed = set(re.findall(r"^(call\.[a-z_]+)\s", events_module.__doc__, re.MULTILINE))
    assert set(events_module.KINDS) == listed
    assert all(cls.kind == kind for kind, cls in events_module.KINDS.items())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_a_stored_kind_and_data_give_back_the_same_typed_event(name):
    for ev in scenario(name):
        again = CallEvent.from_record(ev.kind, ev.call_id, ev.at, ev.seq, ev.call, ev.data)
        assert again == ev and type(again) is type(ev)
        assert list(again.data.items()) == list(ev.data.items())
