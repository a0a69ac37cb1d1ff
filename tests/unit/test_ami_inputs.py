"""The AMI events features act on, typed at the edge (cti/ami_inputs.py), and
published on the bus after the call events of their frame (cti.daemon.on_frame)."""
from __future__ import annotations

from types import SimpleNamespace

from cti import ami_inputs
from cti.ami_inputs import (
    CallbackRequest, CallbackResult, ContactStatus, LegHungUp, OriginateResult, RecordingReport, VoicemailLeft,
)
from cti.calls import CallModel
from cti.daemon import Core, on_frame
from tests.transcripts import events


def test_each_family_parses_to_its_record():
    ue = {"Event": "UserEvent", "Linkedid": "c1", "Uniqueid": "l1", "Channel": "PJSIP/x-1"}
    assert ami_inputs.parse({**ue, "UserEvent": "CtiCallbackResult", "Callback": "c9", "Status": " ANSWER "}) == \
        CallbackResult("c9", "ANSWER")
    assert ami_inputs.parse({**ue, "UserEvent": "CtiRecording", "File": "/r/c1.wav", "Status": "started",
                             "Reason": "answer"}) == RecordingReport("c1", "PJSIP/x-1", "/r/c1.wav", "started", "answer")
    assert ami_inputs.parse({**ue, "UserEvent": "CtiVoicemail", "Mailbox": "100@cti"}) == VoicemailLeft("c1", "100@cti")
    assert ami_inputs.parse({"Event": "OriginateResponse", "Uniqueid": "l2", "Response": "Failure",
                             "Reason": "3"}) == OriginateResult("l2", False, "3")
    assert ami_inputs.parse({"Event": "Hangup", "Uniqueid": "l2", "Linkedid": "c1"}) == LegHungUp("l2")
    assert ami_inputs.parse({"Event": "ContactStatus", "AOR": "d1", "URI": "sip:d1@h", "ContactStatus": "Reachable"}) \
        == ContactStatus("d1", "sip:d1@h", "Reachable")


def test_a_captured_callback_request_keeps_the_dialplans_values():
    (frame,) = [f for f in events("callback") if f.headers.get("UserEvent") == "CtiCallbackRequest"]
    req = ami_inputs.parse(frame.headers)
    assert isinstance(req, CallbackRequest) and req.call_id == "capreq" and req.number == "+442071000001"


def test_other_events_and_ones_without_their_key_are_not_inputs():
    assert ami_inputs.parse({"Event": "Newchannel", "Uniqueid": "l1"}) is None
    assert ami_inputs.parse({"Event": "UserEvent", "UserEvent": "CtiAcdWait", "Linkedid": "c1"}) is None
    assert ami_inputs.parse({"Event": "UserEvent", "UserEvent": "CtiVoicemail"}) is None           # no call
    assert ami_inputs.parse({"Event": "Hangup"}) is None                                          # no leg
    assert ami_inputs.parse({"Event": "ContactStatus", "AOR": "d1", "ContactStatus": "Created"}) is None
    assert ami_inputs.parse({}) is None


def test_the_daemon_publishes_an_input_after_the_call_events_of_its_frame():
    core = Core(SimpleNamespace(), model=CallModel())  # type: ignore[arg-type]
    seen: list[str] = []
    core.bus.subscribe(lambda ev: seen.append(ev.kind))
    core.bus.subscribe_to(LegHungUp, lambda ev: seen.append(f"hung up {ev.uniqueid}"))
    leg = {"Channel": "Local/x@t-00000001;1", "Uniqueid": "l1", "Linkedid": "l1"}
    on_frame(core, SimpleNamespace(headers={"Event": "Newchannel", "ChannelState": "4", "ChannelStateDesc": "Ring",
                                            "Exten": "s", "Context": "t", **leg}))
    on_frame(core, SimpleNamespace(headers={"Event": "Hangup", "Cause": "16", **leg}))
    assert seen[0] == "call.started" and seen[-1] == "hung up l1" and "call.ended" in seen
