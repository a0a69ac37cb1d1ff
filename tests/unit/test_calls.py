"""The call model against AMI transcripts captured from the sandbox Asterisk."""
from __future__ import annotations

import pytest

from cti.calls import CallModel, derive_state
from cti.events import CallEvent
from tests.transcripts import events, frames


def run(name: str, chunk: int | None = None) -> tuple[CallModel, list[CallEvent]]:
    model = CallModel()
    out: list[CallEvent] = []
    for f in frames(name, chunk):
        if f.name is not None:
            out.extend(model.feed(f.headers, 0.0))
    return model, out


def of_kind(evs: list[CallEvent], kind: str) -> list[CallEvent]:
    return [e for e in evs if e.kind == kind]


def states(evs: list[CallEvent], call_id: str) -> list[str]:
    return [e.data["new"] for e in evs if e.kind == "call.state" and e.call_id == call_id]


def test_answered_queue_call_goes_through_every_state_in_order():
    model, evs = run("basic")
    (started,) = of_kind(evs, "call.started")
    cid = started.call_id
    assert states(evs, cid) == ["ivr", "queued", "offered", "talking", "ivr", "ended"]
    assert model.calls == {} and model.legs == {} and model.bridges == {}


def test_caller_id_is_the_origin_legs_and_its_name_is_unescaped():
    _, evs = run("basic")
    end = of_kind(evs, "call.ended")[0].call
    assert end.caller_num == "+4930123456"
    assert end.caller_name == 'J"ürgen Müller'
    assert end.direction == "inbound" and end.exten == "5000"


def test_timestamps_come_from_asterisk_and_are_ordered():
    _, evs = run("basic")
    c = of_kind(evs, "call.ended")[0].call
    assert c.started_at > 1.7e9  # Asterisk's Timestamp header, not the fallback 0.0
    assert c.started_at <= c.answered_at <= c.queue_joined_at <= c.agent_answered_at
    assert c.agent_answered_at <= c.queue_left_at <= c.ended_at
    # The demo agent talks 2 s and rings 1-2 s: the call lasts between 3 and 6 s.
    assert 3.0 < c.ended_at - c.started_at < 6.0
    assert c.hangup_cause == 16 and c.hangup_cause_txt == "Normal Clearing"
    assert c.agent == "Agent 1" and not c.abandoned and not c.end_estimated


def test_sequence_numbers_count_up_per_call_without_gaps():
    _, evs = run("burst")
    by_call: dict[str, list[int]] = {}
    for e in evs:
        by_call.setdefault(e.call_id, []).append(e.seq)
    assert len(by_call) == 8
    for seqs in by_call.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_burst_of_eight_callers_all_answered_by_an_agent_and_closed():
    model, evs = run("burst")
    ended = {e.call_id: e.call for e in of_kind(evs, "call.ended")}
    assert len(ended) == 8
    assert sorted(c.caller_name for c in ended.values()) == [f"Caller {n}" for n in range(8)]
    assert all(c.agent and c.agent.startswith("Agent ") for c in ended.values())
    assert all(c.legs == 4 for c in ended.values())  # two Local halves for caller and agent
    assert model.calls == {}


def test_caller_who_hangs_up_in_queue_is_recorded_as_abandoned_with_wait():
    _, evs = run("abandon")
    (ab,) = of_kind(evs, "call.abandoned")
    assert ab.data["queue"] == "cti-fallback"
    assert 1.9 < ab.data["wait_s"] < 2.5  # patience was 2 s
    (offer_end,) = of_kind(evs, "call.offer_ended")
    assert offer_end.data["status"] == "CANCEL" and offer_end.data["agent"] == "Agent 1"
    end = of_kind(evs, "call.ended")[0].call
    assert end.abandoned and end.agent is None and end.agent_answered_at is None


def test_failed_originate_pseudo_channel_is_not_a_call():
    model, evs = run("originate_failed")
    started = of_kind(evs, "call.started")
    assert all("OutgoingSpoolFailed" not in e.data["channel"] for e in started)
    # The Local pair that failed is one call, never answered, ended.
    (end,) = of_kind(evs, "call.ended")
    assert end.call.answered_at is None and end.call.state == "ended"
    assert model.calls == {}


def test_bridge_moves_a_leg_to_the_call_of_the_older_linkedid():
    model, evs = run("bridge")
    ended = {e.call_id: e.call for e in of_kind(evs, "call.ended")}
    assert set(ended) == {"capA", "capB"}
    # capB's ;1 half entered capA's bridge and took capA's Linkedid.
    assert ended["capA"].legs == 3
    assert "talking" in states(evs, "capA")
    assert "talking" not in states(evs, "capB")  # its remaining half never bridged
    assert model.legs == {}


def test_one_byte_chunks_give_the_same_events_as_whole_transcript():
    _, whole = run("basic")
    _, split = run("basic", chunk=1)
    assert [(e.kind, e.call_id, e.seq, e.data) for e in split] == [(e.kind, e.call_id, e.seq, e.data) for e in whole]


def _resync_point() -> tuple[list, list, list, list]:
    """Live events before the CoreShowChannels reply, the listing, the queue entries, the rest."""
    evs = events("resync")
    first = next(i for i, f in enumerate(evs) if f.headers.get("ActionID") == "resync-channels")
    before = [f for f in evs[:first] if "ActionID" not in f.headers]
    listing = [f.headers for f in evs if f.name == "CoreShowChannel"]
    queue = [f.headers for f in evs if f.name == "QueueEntry"]
    last_reply = max(i for i, f in enumerate(evs) if f.headers.get("ActionID", "").startswith("resync-"))
    after = [f for f in evs[last_reply + 1:] if "ActionID" not in f.headers]
    return before, listing, queue, after


def test_resync_from_listing_rebuilds_the_same_calls_as_following_live():
    before, listing, queue, after = _resync_point()
    live = CallModel()
    for f in before:
        live.feed(f.headers, 0.0)
    at = float(before[-1].headers["Timestamp"])
    fresh = CallModel()
    fresh.resync(listing, queue, at)
    assert set(fresh.calls) == set(live.calls)
    assert len(fresh.calls) == 7
    for cid, call in live.calls.items():
        if call.state == "talking":
            assert fresh.calls[cid].state == "talking"
    # Two callers more than agents: they are waiting in the queue.
    assert sum(1 for c in fresh.calls.values() if c.state == "queued") >= 1
    assert all(c.queue == "cti-fallback" for c in fresh.calls.values() if c.state == "queued")


def test_after_resync_live_events_close_every_adopted_call_normally():
    before, listing, queue, after = _resync_point()
    fresh = CallModel()
    fresh.resync(listing, queue, float(before[-1].headers["Timestamp"]))
    out: list[CallEvent] = []
    for f in after:
        out.extend(fresh.feed(f.headers, 0.0))
    ended = of_kind(out, "call.ended")
    assert len(ended) == 7 and not any(e.data["estimated"] for e in ended)
    assert fresh.calls == {}


def test_calls_that_vanished_while_disconnected_end_estimated():
    before, *_ = _resync_point()
    model = CallModel()
    for f in before:
        model.feed(f.headers, 0.0)
    assert model.calls
    out = model.resync([], [], 1234.5)
    ended = of_kind(out, "call.ended")
    assert len(ended) == 7
    assert all(e.data["estimated"] and e.call.ended_at == 1234.5 for e in ended)
    assert all(e.call.end_estimated for e in ended)
    assert model.calls == {} and model.legs == {}


@pytest.mark.parametrize("mutate", [
    lambda h: h.pop("Uniqueid", None),
    lambda h: h.update(Linkedid=""),
    lambda h: h.update(Timestamp="not-a-number"),
    lambda h: h.update(Cause="sixteen"),
    lambda h: h.update(Uniqueid="never-seen"),
    lambda h: h.update(CallerIDName="Evil\r\nAction: Originate\r\n\r\n"),
])
def test_odd_values_in_real_events_never_raise(mutate):
    model = CallModel()
    for f in events("basic"):
        h = dict(f.headers)
        mutate(h)
        model.feed(h, 0.0)
    # Whatever the mutation, the transcript's own hangups still end
    # everything the model adopted: nothing leaks.
    assert model.calls == {} and model.legs == {}


def test_hostile_caller_name_is_kept_as_text():
    model = CallModel()
    out = []
    for f in events("basic"):
        h = dict(f.headers)
        if h.get("CallerIDName", "").startswith("J"):
            h["CallerIDName"] = 'Robert\\"); DROP TABLE calls;--\\r\\nAction: Hangup'
        out.extend(model.feed(h, 0.0))
    name = of_kind(out, "call.ended")[0].call.caller_name
    assert name == 'Robert"); DROP TABLE calls;--\r\nAction: Hangup'


def test_state_precedence_hold_beats_talking_beats_queue():
    model = CallModel()
    for f in events("basic"):
        model.feed(f.headers, 0.0)
        if any(len(members) >= 2 for members in model.bridges.values()):
            break
    (call,) = model.calls.values()
    call.in_queue = True
    assert derive_state(call, model.bridges) == "talking"
    leg = next(l for l in call.legs.values() if l.bridge)
    leg.on_hold = True
    assert derive_state(call, model.bridges) == "held"


@pytest.mark.parametrize("chunk", [None, 7])
def test_desktop_hold_in_a_holding_bridge_is_held_then_resumed(chunk):
    # hold.ami: the daemon's hold (both legs redirected into cti-hold's holding
    # bridge; the caller's music starts before the agent's leg joins) and resume
    # (the Bridge action). The held state is reached when the second leg joins,
    # not when the music starts, and it is reported as call.held all the same.
    _, evs = run("hold", chunk)
    kinds = [e.kind for e in evs if e.call_id == "holdA" and e.kind in ("call.held", "call.resumed", "call.ended")]
    assert kinds == ["call.held", "call.resumed", "call.ended"]
    held = next(e for e in evs if e.kind == "call.held")
    resumed = next(e for e in evs if e.kind == "call.resumed")
    assert held.call.state == "held" and resumed.call.state == "talking"
    assert 2.5 < resumed.at - held.at < 3.5  # Asterisk's own clock: the capture held for 3 s


@pytest.mark.parametrize("chunk", [None, 11])
def test_click_to_dial_is_outbound_and_the_dialling_agents_call(chunk):
    # click.ami: the agent's device (Local/agent1) answers the Originate into
    # cti-click-to-dial (UserEvent CtiOutbound, CtiAgent: a1), which dials the
    # customer. The customer's answer connects the call to a1, not to the
    # customer's channel.
    model, evs = run("click", chunk)
    ended = next(e for e in evs if e.kind == "call.ended" and e.call_id == "click1")
    view = ended.call
    assert view.direction == "outbound" and view.agent == "a1"
    # The caller ID is the one the customer sees; the number dialled is the call's exten.
    assert view.caller_num == "+4930000000" and view.exten == "+4930555666"
    assert view.agent_answered_at is not None
    offered = [e.data["agent"] for e in evs if e.kind == "call.offered" and e.call_id == "click1"]
    connected = [e.data["agent"] for e in evs if e.kind == "call.connected" and e.call_id == "click1"]
    assert offered == ["a1"] and connected == ["a1"]
    kinds = [e.kind for e in evs if e.call_id == "click1"]
    assert kinds.index("call.outbound") < kinds.index("call.offered") < kinds.index("call.connected")
    assert model.calls == {}


def test_an_outbound_mark_on_another_leg_or_with_a_bad_agent_id_is_ignored():
    from tests.transcripts import frames as load
    model = CallModel()
    evs: list[CallEvent] = []
    for f in load("click"):
        if f.name is None:
            continue
        h = dict(f.headers)
        if h.get("UserEvent") == "CtiOutbound":
            h["CtiAgent"] = "a1\r\nAction: Hangup"
        evs.extend(model.feed(h, 0.0))
    view = next(e for e in evs if e.kind == "call.ended" and e.call_id == "click1").call
    assert view.direction != "outbound" and not any(e.kind == "call.outbound" for e in evs)


def _listing_caller_bridged_with_agent() -> list[dict[str, str]]:
    """CoreShowChannels after a restart: a caller in cti-acd-offer bridged with an agent's leg."""
    common = {"ChannelStateDesc": "Up", "Linkedid": "c1"}
    return [
        {**common, "Channel": "Local/p120@cti-demo-caller-00000001;1", "Uniqueid": "c1", "Duration": "00:00:09",
         "Context": "cti-acd-offer", "BridgeId": "b1", "CallerIDNum": "+4930123", "CallerIDName": "Ann"},
        {**common, "Channel": "Local/p120@cti-demo-caller-00000001;2", "Uniqueid": "c1-2", "Duration": "00:00:09"},
        {**common, "Channel": "Local/agent4@cti-demo-agents-00000002;1", "Uniqueid": "c1-a",
         "Duration": "00:00:04", "BridgeId": "b1"},
    ]


def test_an_agent_found_talking_after_a_restart_is_named_on_the_call():
    model = CallModel()
    model.resync(_listing_caller_bridged_with_agent(), [], 1000.0)
    assert model.calls["c1"].state == "talking" and model.calls["c1"].agent is None
    out = model.agent_found("c1", "a4", "Local/agent4@cti-demo-agents/n", 1000.5)
    (connected,) = of_kind(out, "call.connected")
    assert connected.data["agent"] == "a4" and connected.data["estimated"]
    assert connected.data["uniqueid"] == "c1-a"
    c = connected.call
    assert (c.agent, c.agent_answered_at, c.state) == ("a4", 1000.5, "talking")
    assert c.answered_at <= c.agent_answered_at
    # Found again (another resync): nothing new; the agent's leg ending leaves the call as usual.
    assert model.agent_found("c1", "a4", "Local/agent4@cti-demo-agents/n", 1001.0) == []
    assert model.agent_found("gone", "a4", "x", 1001.0) == []
    left = model.feed({"Event": "Hangup", "Uniqueid": "c1-a", "Linkedid": "c1", "Cause": "16",
                       "Channel": "Local/agent4@cti-demo-agents-00000002;1"}, 1002.0)
    assert [e.data["agent"] for e in of_kind(left, "call.agent_left")] == ["a4"]


def test_a_call_first_seen_in_a_resync_starts_with_its_oldest_leg_whatever_the_listing_order():
    listing = list(reversed(_listing_caller_bridged_with_agent()))  # the agent's leg (4 s old) first
    model = CallModel()
    model.resync(listing, [{"Uniqueid": "c1", "Queue": "billing", "Wait": "7"}], 1000.0)
    c = model.calls["c1"]
    assert c.started_at == 1000.0 - 9        # the caller's leg, 9 s old
    assert c.started_at <= c.answered_at and c.started_at <= c.queue_joined_at


def test_a_queue_wait_longer_than_the_channels_age_moves_the_start_back():
    # CoreShowChannel's Duration and QueueStatus's Wait are whole seconds, rounded down
    # separately: a caller 1.9 s old who queued at 0.1 s shows Duration 1 and Wait 2
    # (a fault-suite run met it). The call must not start after it joined the queue.
    model = CallModel()
    listing = [{"Channel": "Local/p60@cti-demo-caller-00000009;1", "Uniqueid": "q1", "Linkedid": "q1",
                "Duration": "00:00:01", "ChannelStateDesc": "Up", "Context": "cti-fallback"}]
    entries = [{"Event": "QueueEntry", "Queue": "cti-fallback", "Uniqueid": "q1", "Wait": "2", "Position": "1"}]
    model.resync(listing, entries, 1000.0)
    call = model.calls["q1"]
    assert call.queue_joined_at == 998.0 and call.started_at == 998.0
    assert call.started_at <= call.queue_joined_at


def test_the_phone_reload_local_channel_is_not_a_call():
    """The phone service originates Local/pjsip@cti-phone-reload/n to have the dialplan reload
    res_pjsip (phone/gateway.py): neither half is a call, live or in a resync."""
    model = CallModel()
    out = []
    for half, uid in ((";1", "r-1"), (";2", "r-2")):
        out += model.feed({"Event": "Newchannel", "Channel": f"Local/pjsip@cti-phone-reload-0000002a{half}",
                           "Uniqueid": uid, "Linkedid": "r-1", "ChannelStateDesc": "Down"}, 100.0)
    assert out == [] and model.calls == {}
    assert model.resync([{"Channel": "Local/pjsip@cti-phone-reload-0000002a;1", "Uniqueid": "r-1",
                          "Linkedid": "r-1", "ChannelStateDesc": "Up"}], [], 101.0) == []
    assert model.calls == {}


def _acd_caller(uid: str, context: str = "cti-acd-wait") -> dict[str, str]:
    """A caller waiting for the ACD, as CoreShowChannels lists it after a restart."""
    return {"Event": "CoreShowChannel", "Channel": "Local/p300@cti-demo-caller-00000001;1",
            "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "+4470000009",
            "CallerIDName": "Waiting", "Context": context, "Exten": "s", "Priority": "4",
            "Uniqueid": uid, "Linkedid": uid, "Application": "WaitExten", "ApplicationData": "3600,m(default)",
            "Duration": "00:00:40", "BridgeId": ""}


def test_a_caller_found_waiting_after_a_restart_who_hangs_up_is_an_abandon_with_the_whole_wait():
    """A model started after the caller's CtiAcdWait (a restart, a standby taking over) learns
    from the ACD's adoption that the caller waits; the hang-up is then an abandon, its wait
    counted from the start the dialplan stored, not from the restart."""
    model = CallModel()
    model.resync([_acd_caller("c1")], [], 1000.0)
    assert model.calls["c1"].state != "queued"          # nothing in the listing says it waits
    out = model.waiting_found("c1", "sales", 960.0, 1001.0)
    assert [e.data.get("new") for e in out if e.kind == "call.state"] == ["queued"]
    assert model.calls["c1"].queue == "sales" and model.calls["c1"].queue_joined_at == 960.0
    assert model.waiting_found("c1", "sales", 960.0, 1002.0) == []   # told once is enough
    ended = model.feed({"Event": "Hangup", "Uniqueid": "c1", "Linkedid": "c1", "Cause": "16",
                        "Timestamp": "1010.0", "Channel": "Local/p300@cti-demo-caller-00000001;1"}, 1010.0)
    abandoned = of_kind(ended, "call.abandoned")
    assert len(abandoned) == 1 and abandoned[0].data["queue"] == "sales" and abandoned[0].data["wait_s"] == 50.0
    assert model.calls.get("c1") is None or model.calls["c1"].abandoned


def test_waiting_found_leaves_a_call_with_an_agent_or_gone_alone():
    model = CallModel()
    model.resync([_acd_caller("c1")], [], 1000.0)
    model.agent_found("c1", "a1", "Local/agent1@cti-demo-agents/n", 1000.5)
    assert model.waiting_found("c1", "sales", 960.0, 1001.0) == []
    assert model.calls["c1"].state != "queued"
    assert model.waiting_found("gone", "sales", 960.0, 1001.0) == []


def test_an_offer_named_after_its_dial_began_names_the_answer_and_the_agents_leg():
    """A standby learns whose offer a Dial was only from its channel (acd/shadow.py):
    named then, the answer and the leg's end carry the agent, not the channel."""
    model = CallModel()
    out: list[CallEvent] = []
    for f in frames("basic"):
        if f.name is None:
            continue
        evs = model.feed(f.headers, 0.0)
        out.extend(evs)
        for e in evs:
            if e.kind == "call.offered":
                model.name_offer(e.call_id, e.data["uniqueid"], "a7")
    assert of_kind(out, "call.offered") and of_kind(out, "call.offered")[0].data["agent"] != "a7"
    # (the transcript's app_queue leg, which is not a Dial, names its member itself)
    assert [e.data["agent"] for e in of_kind(out, "call.connected")][0] == "a7"
    assert [e.data["agent"] for e in of_kind(out, "call.agent_left")][0] == "a7"
    model.name_offer("no-such-call", "x", "a7")        # nothing to name: nothing happens
