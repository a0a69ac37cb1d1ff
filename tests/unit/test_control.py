"""cti.control: commands become the right AMI actions; bad values never reach Asterisk."""
from __future__ import annotations

import pytest

from cti import control
from cti.amiproto import encode_action
from cti.calls import CallModel

CALLER = "Local/p60@cti-demo-caller-00000001;1"
AGENT = "Local/stay1@cti-demo-agents-00000002;1"


def test_hold_sets_the_key_on_both_legs_then_redirects_both_into_the_holding_context():
    acts = control.actions(control.Hold("demo-1", CALLER, AGENT))
    assert [a for a, _ in acts] == ["Setvar", "Setvar", "Redirect"]
    assert {h["Channel"] for _, h in acts[:2]} == {CALLER, AGENT}
    redirect = acts[2][1]
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (CALLER, "cti-hold", "caller")
    assert (redirect["ExtraChannel"], redirect["ExtraContext"], redirect["ExtraExten"]) == (AGENT, "cti-hold", "agent")


def test_resume_bridges_the_two_legs_again():
    assert control.actions(control.Resume(CALLER, AGENT)) == [
        ("Bridge", {"Channel1": CALLER, "Channel2": AGENT, "Tone": "no"})]


def test_blind_transfer_to_a_queue_sets_the_queue_on_the_caller_first():
    acts = control.actions(control.BlindTransfer(CALLER, AGENT, control.Target("queue", "sales")))
    assert acts[0] == ("Setvar", {"Channel": CALLER, "Variable": "CTI_QUEUE", "Value": "sales"})
    assert acts[-1] == ("BlindTransfer", {"Channel": AGENT, "Context": "cti-transfer", "Exten": "queue"})


def test_attended_transfer_to_an_agent_dials_their_device_from_the_agent_leg():
    t = control.Target("agent", "a2", "Local/agent2@cti-demo-agents/n")
    acts = control.actions(control.AttendedTransfer(AGENT, t))
    assert acts[0][1] == {"Channel": AGENT, "Variable": "__CTI_XFER_DIAL", "Value": "Local/agent2@cti-demo-agents/n"}
    assert acts[-1] == ("Atxfer", {"Channel": AGENT, "Context": "cti-atxfer", "Exten": "8"})


def test_attended_transfer_to_a_number_keys_it_as_digits_with_a_prefix_for_the_plus():
    num = control.actions(control.AttendedTransfer(AGENT, control.Target("number", "+4930123")))
    assert num[-1][1]["Exten"] == "94930123"
    assert control.actions(control.AttendedTransfer(AGENT, control.Target("number", "030123")))[-1][1]["Exten"] == "7030123"


def test_attended_transfer_to_a_queue_is_refused():
    with pytest.raises(control.ControlError) as e:
        control.actions(control.AttendedTransfer(AGENT, control.Target("queue", "sales")))
    assert e.value.field == "target.kind"


def test_dtmf_is_one_playdtmf_per_digit_on_the_given_channel():
    acts = control.actions(control.Dtmf(CALLER, "12#"))
    assert [(h["Channel"], h["Digit"]) for _, h in acts] == [(CALLER, "1"), (CALLER, "2"), (CALLER, "#")]


@pytest.mark.parametrize("cmd,field", [
    (control.Dtmf(CALLER, "1\r\nAction: Originate"), "digits"),
    (control.Dtmf("PJSIP/x\r\nAction: Hangup", "1"), "channel"),
    (control.Hangup(("Local/x;1\nAction: Hangup",)), "channel"),
    (control.Hold("demo 1'; DROP TABLE calls", CALLER, AGENT), "call_id"),
    (control.BlindTransfer(CALLER, AGENT, control.Target("number", "12345\r\n")), "target.value"),
    (control.BlindTransfer(CALLER, AGENT, control.Target("queue", "sales,other")), "target.value"),
    (control.ClickToDial("a1", "Local/agent1@x/n", "+49\"30", "Local/+4930@x/n", "", 30, "dial-1"), "number"),
    (control.ClickToDial("a1", "Local/agent1@x/n", "+4930123", "Local/+4930@x/n", "A\r\nB", 30, "dial-1"), "caller_id"),
])
def test_hostile_values_are_refused_naming_the_field(cmd, field):
    with pytest.raises(control.ControlError) as e:
        control.actions(cmd)
    assert e.value.field == field


@pytest.mark.parametrize("cmd,field", [
    (control.Dtmf(CALLER, "12\n"), "digits"),
    (control.Dtmf(CALLER + "\n", "1"), "channel"),
    (control.Hangup(("Local/x;1\n",)), "channel"),
    (control.Hold("call-1\n", CALLER, AGENT), "call_id"),
    (control.BlindTransfer(CALLER, AGENT, control.Target("number", "+4930555\n")), "target.value"),
    (control.BlindTransfer(CALLER, AGENT, control.Target("queue", "sales\n")), "target.value"),
    (control.AttendedTransfer(AGENT, control.Target("agent", "a1", "Local/agent1@x/n\n")), "target.device"),
    (control.ClickToDial("a1\n", "Local/agent1@x/n", "+4930123", "Local/+4930@x/n", "", 30, "dial-1"), "agent_id"),
])
def test_a_trailing_newline_is_refused_too(cmd, field):
    """``$`` matches before a final newline: every check is a full match."""
    with pytest.raises(control.ControlError) as e:
        control.actions(cmd)
    assert e.value.field == field


async def test_a_refused_value_is_a_422_before_asterisk_is_asked():
    from api.desktop import _run
    from api.errors import ApiError

    with pytest.raises(ApiError) as e:
        await _run(None, control.BlindTransfer(CALLER, AGENT, control.Target("number", "+4930555\n")))  # type: ignore[arg-type]
    assert (e.value.status, e.value.error_id) == (422, "invalid_body") and "target.value" in e.value.message


def test_click_to_dial_rings_the_agent_first_showing_the_customer_number():
    (name, h), = control.actions(control.ClickToDial("a1", "Local/agent1@cti-demo-agents/n", "+4930123456",
                                                     control.dial_string("Local/{number}@cti-demo-callee/n", "+4930123456"),
                                                     '"Shop" <+4930999>', 30, "dial-abc"))
    assert name == "Originate" and h["Channel"] == "Local/agent1@cti-demo-agents/n"
    assert h["Context"] == "cti-click-to-dial" and h["CallerID"] == '"+4930123456" <+4930123456>'
    assert "CTI_DIAL=Local/+4930123456@cti-demo-callee/n" in h["Variable"]
    assert h["ChannelId"] == "dial-abc"
    encode_action(name, h, "1")  # every value passes the AMI encoder's own checks


def _connected_call() -> tuple[CallModel, str]:
    m = CallModel()
    t = 1000.0
    feed = lambda **h: m.feed({k.replace("_", ""): v for k, v in h.items()}, t)  # noqa: E731
    feed(Event="Newchannel", Uniqueid="c1", Linkedid="c1", Channel=CALLER, CallerIDNum="+4930111")
    feed(Event="Newchannel", Uniqueid="g1", Linkedid="c1", Channel=AGENT)
    feed(Event="DialBegin", Uniqueid="c1", Linkedid="c1", Channel=CALLER, DestUniqueid="g1", DestChannel=AGENT)
    m.calls["c1"].offers["g1"] = ("a1", AGENT)
    feed(Event="DialEnd", Uniqueid="c1", Linkedid="c1", Channel=CALLER, DestUniqueid="g1", DialStatus="ANSWER")
    return m, "c1"


def test_parties_are_read_from_the_call_model_and_an_agent_controls_only_their_own_call():
    m, cid = _connected_call()
    p = control.parties(m.calls[cid])
    assert (p.caller, p.agent_leg, p.agent) == (CALLER, AGENT, "a1")
    assert control.refuse("hangup", p, agent_id="a2", any_call=False)[1] == "not_your_call"
    assert control.refuse("hangup", p, agent_id=None, any_call=False)[1] == "not_your_call"
    assert control.refuse("hangup", p, agent_id="a1", any_call=False) is None
    assert control.refuse("hangup", p, agent_id=None, any_call=True) is None
    assert control.refuse("resume", p, agent_id="a1", any_call=False)[1] == "call_state"


def test_a_call_without_an_agent_leg_cannot_be_held():
    p = control.Parties("c1", CALLER, None, "a1", "queued", (CALLER,))
    assert control.refuse("hold", p, agent_id="a1", any_call=False)[0] == 409
