"""Epoch fencing of the ACD's routing actions other than offers (acd/epoch.py, docs/ha.md):
announcements, max-wait exits and callback Originates carry the sender's epoch in the
value the dialplan acts on; the shell writes them with its epoch in force and counts the
dialplan's refusals. A fake AMI records what is written: no Asterisk."""
from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd import core as acd_core
from acd.epoch import (CALLBACK_EPOCH_VARIABLE, AnnounceValue, announce_actions, callback_variables,
                       maxwait_actions, maxwait_value, parse_action_refusal, parse_announce, parse_maxwait)
from acd.held_calls import Waiting
from cti import ami_inputs
from tests.unit.test_acd_epoch import _cut
from tests.unit.test_acd_offer_path import CHANNEL, _queued, _service

epochs = st.integers(1, 2**62)


@given(epoch=epochs, position=st.integers(1, 10_000), minutes=st.integers(-1, 10_000))
def test_an_announcement_value_is_cut_by_the_dialplan_into_what_was_written(epoch, position, minutes):
    (setvar_name, setvar), (redirect_name, redirect) = announce_actions(epoch, CHANNEL, position, minutes)
    value = setvar["Value"]
    # What cti-acd-announce reads: epoch field 1, position 2, minutes 3.
    assert (_cut(value, 1), _cut(value, 2), _cut(value, 3)) == (str(epoch), str(position), str(minutes))
    assert parse_announce(value) == AnnounceValue(epoch, position, minutes)
    assert (setvar_name, setvar["Channel"], setvar["Variable"]) == ("Setvar", CHANNEL, "CTI_ANNOUNCE")
    assert (redirect_name, redirect["Channel"], redirect["Context"], redirect["Exten"]) == \
        ("Redirect", CHANNEL, "cti-acd-announce", "s")


@given(epoch=epochs, action=st.sampled_from(["voicemail", "callback", "hangup"]))
def test_a_max_wait_value_names_the_epoch_and_the_extension_it_is_sent_to(epoch, action):
    (_, setvar), (_, redirect) = maxwait_actions(epoch, CHANNEL, action)
    assert setvar["Variable"] == "CTI_MAXWAIT"
    # cti-acd-maxwait checks field 1 against the epoch in force and field 2 against its extension.
    assert (_cut(setvar["Value"], 1), _cut(setvar["Value"], 2)) == (str(epoch), redirect["Exten"])
    assert redirect["Context"] == "cti-acd-maxwait" and redirect["Exten"] == action
    assert parse_maxwait(setvar["Value"]) == (epoch, action)


@pytest.mark.parametrize("action", ["", "x", "Voicemail", "voice,mail", "vm1", "overflow,support"])
def test_a_max_wait_action_the_dialplan_has_no_extension_for_is_refused(action):
    with pytest.raises(ValueError):
        maxwait_value(3, action)


@pytest.mark.parametrize("bad", ["", "3", "x,voicemail", "3,voicemail,x", "3,Voicemail"])
def test_a_malformed_max_wait_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_maxwait(bad)


@pytest.mark.parametrize("bad", ["", "3,1", "x,1,2", "3,one,2", "3,1,2,4"])
def test_a_malformed_announcement_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_announce(bad)


@pytest.mark.parametrize("epoch", [0, -2, True, 2.0, "3"])
def test_every_fenced_action_refuses_a_bad_epoch(epoch):
    for build in (lambda: announce_actions(epoch, CHANNEL, 1, 1), lambda: maxwait_actions(epoch, CHANNEL, "voicemail"),
                  lambda: callback_variables(epoch, {})):
        with pytest.raises(ValueError):
            build()


def test_the_callback_originate_carries_the_epoch_beside_its_variables():
    out = callback_variables(7, {"CTI_CALLBACK": "c1", "CTI_AGENT": "a1"})
    assert out == ["CTI_CALLBACK=c1", "CTI_AGENT=a1", f"{CALLBACK_EPOCH_VARIABLE}=7"]
    # A variable of the same name given by a caller cannot override it.
    assert callback_variables(7, {CALLBACK_EPOCH_VARIABLE: "99"}) == [f"{CALLBACK_EPOCH_VARIABLE}=7"]


# -- the shell ----------------------------------------------------------------------


async def test_announcements_and_max_wait_exits_carry_the_epoch_set_last():
    service = _service()
    service.set_epoch(6)
    service.agent_request("a1", "set_not_ready", "break")
    service.on_call_event(_queued("c1", time.time()))
    service._announce("c1")
    service._apply([acd_core.MaxWait("c1", "bench", "voicemail", None, time.time())])
    written = [(a, h.get("Variable") or h.get("Context"), h.get("Value") or h.get("Exten"))
               for a, h in service.core.ami.written]
    assert written == [("Setvar", "CTI_ANNOUNCE", "6,1,-1"), ("Redirect", "cti-acd-announce", "s"),
                       ("Setvar", "CTI_MAXWAIT", "6,voicemail"), ("Redirect", "cti-acd-maxwait", "voicemail")]


async def test_a_node_not_leading_writes_no_max_wait_exit():
    service = _service()
    service.may_act = lambda: False
    service.calls["c1"] = Waiting(channel=CHANNEL, announced_at=time.time())
    service._apply([acd_core.MaxWait("c1", "bench", "voicemail", None, time.time())])
    assert service.core.ami.written == []


def _action_refused(action: str, epoch: str, current: str, **extra: str) -> ami_inputs.ActionRefused:
    typed = ami_inputs.parse({"Event": "UserEvent", "UserEvent": "CtiActionRefused", "Channel": CHANNEL,
                              "Linkedid": "c1", "Action": action, "Epoch": epoch, "Current": current, **extra})
    assert isinstance(typed, ami_inputs.ActionRefused)
    return typed


def test_the_dialplans_refusal_is_typed_at_the_edge():
    ev = _action_refused("callback", "4", "5", Callback="cb1")
    assert ev == ami_inputs.ActionRefused("c1", CHANNEL, "callback", "cb1", "4", "5")
    r = parse_action_refusal(ev)
    assert (r.action, r.call_id, r.callback, r.epoch, r.current) == ("callback", "c1", "cb1", 4, 5)
    assert parse_action_refusal(_action_refused("announce", "", "x")).epoch is None


async def test_a_refused_action_of_ours_is_counted_and_tells_us_we_are_fenced():
    service = _service()
    service.set_epoch(4)
    # Another node's refusal (every node sees the UserEvent): not ours, nothing changes.
    service.on_action_refused(_action_refused("announce", "3", "5"))
    assert (service.actions_refused, service.fenced) == (0, False)
    service.on_action_refused(_action_refused("maxwait", "4", "5"))
    assert (service.actions_refused, service.fenced) == (1, True)
    assert service.health()["actions_refused"] == 1


@given(headers=st.dictionaries(st.sampled_from(["Linkedid", "Uniqueid", "Channel", "Action", "Callback", "Epoch",
                                                "Current"]), st.text(max_size=30)))
def test_any_refusal_the_dialplan_or_a_forger_sends_is_read_without_error(headers):
    """Fuzz: whatever the UserEvent holds, it is typed, its epochs are digits or None, and
    the shell counts it only when it carries the shell's own epoch."""
    ev = ami_inputs.parse({"Event": "UserEvent", "UserEvent": "CtiActionRefused", **headers})
    assert isinstance(ev, ami_inputs.ActionRefused)
    r = parse_action_refusal(ev)
    assert r.epoch is None or (isinstance(r.epoch, int) and r.epoch >= 0)
    service = _service()
    service.set_epoch(3)
    service.on_action_refused(ev)
    assert service.actions_refused == (1 if r.epoch == 3 else 0)
