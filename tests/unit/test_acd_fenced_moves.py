"""Epoch fencing of a supervisor's move and of the emergency service's redirect (acd/epoch.py,
docs/ha.md "Fencing in the dialplan"): the values as the dialplan cuts them, malformed ones
refused, and the ACD's shell writing a move through the dialplan's gate with its epoch."""
from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.epoch import (MOVE_CHANNEL, emergency_actions, emergency_value, move_actions, move_value, parse_emergency,
                       parse_move)
from tests.unit.test_acd_epoch import _cut
from tests.unit.test_acd_offer_path import CHANNEL, _queued, _service

epochs = st.integers(1, 2**62)
queues = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
fields = st.from_regex(r"[A-Za-z0-9_.:@+/-]{0,30}", fullmatch=True)


@given(epoch=epochs, queue=queues, priority=st.integers(-1000, 10**6))
def test_a_move_is_an_originate_into_the_gate_with_the_value_cut_as_written(epoch, queue, priority):
    ((name, headers),) = move_actions(epoch, CHANNEL, queue, priority)
    assert (name, headers["Channel"], headers["Application"]) == ("Originate", MOVE_CHANNEL, "Hangup")
    variables = dict(v.split("=", 1) for v in headers["Variable"])
    value = variables["CTI_MOVE"]
    # cti-acd-move: CUT at colons, epoch field 1, queue 2, priority 3; no comma (the Originate's
    # Variable header splits at commas); the channel whose variables it sets.
    assert "," not in value and value.split(":") == [str(epoch), queue, str(priority)]
    assert parse_move(value) == (epoch, queue, priority) and variables["CTI_MOVE_CHANNEL"] == CHANNEL


@pytest.mark.parametrize("epoch, queue, priority", [(0, "q", 1), (3, "a,b", 1), (3, "a:b", 1), (3, "", 1), (3, "q", "9"),
                                                    (3, "q", True), (True, "q", 1)])
def test_a_move_the_dialplan_could_misread_is_refused(epoch, queue, priority):
    with pytest.raises(ValueError):
        move_value(epoch, queue, priority)


@pytest.mark.parametrize("channel", ["", "PJSIP/a,b", "PJSIP/a\r\nAction: Hangup"])
def test_a_move_of_a_channel_name_that_would_break_the_header_is_refused(channel):
    with pytest.raises(ValueError):
        move_actions(3, channel, "q", 1)


@pytest.mark.parametrize("bad", ["", "3:q", "x:q:1", "3:q:x", "3:a b:1", "3:q:1:2", "3,q,1"])
def test_a_malformed_move_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_move(bad)


@given(epoch=epochs, action=st.sampled_from(["continue", "hangup", "number", "voicemail"]),
       switch=st.integers(0, 10**9), target=fields, prompt=fields)
def test_an_emergency_redirect_names_the_epoch_and_the_extension_it_is_sent_to(epoch, action, switch, target,
                                                                               prompt):
    (_, setvar), (_, redirect) = emergency_actions(epoch, CHANNEL, action, switch, target, prompt)
    value = setvar["Value"]
    assert setvar["Variable"] == "CTI_EMERGENCY_MOVE"
    # cti-emergency-move checks field 1 against the epoch in force and field 2 against its extension.
    assert (_cut(value, 1), _cut(value, 2)) == (str(epoch), redirect["Exten"])
    assert (_cut(value, 3), _cut(value, 4), _cut(value, 5)) == (str(switch), target, prompt)
    assert redirect["Context"] == "cti-emergency-move" and redirect["Exten"] == action
    assert parse_emergency(value) == (epoch, action, switch, target, prompt)


@pytest.mark.parametrize("action, target, prompt", [("Hangup", "", ""), ("x", "", ""), ("number", "+44,1", ""),
                                                    ("continue", "", "a,b"), ("continue", "", "x y")])
def test_an_emergency_value_the_dialplan_could_misread_is_refused(action, target, prompt):
    with pytest.raises(ValueError):
        emergency_value(3, action, 1, target, prompt)


async def test_the_acd_moves_a_waiting_caller_through_the_gate_with_its_epoch():
    service = _service()
    for a in service.config.agents:
        service.agent_request(a.id, "set_not_ready", "test")
    service.set_epoch(7)
    service.on_call_event(_queued("c1", time.time()))
    service.core.ami.written.clear()
    assert service.move_call("c1", priority=9)
    written = service.core.ami.written
    assert [a for a, _ in written] == ["Originate"]       # no plain Setvar of CTI_QUEUE/CTI_PRIORITY
    variables = dict(v.split("=", 1) for v in written[0][1]["Variable"])
    assert variables == {"CTI_MOVE": "7:bench:9", "CTI_MOVE_CHANNEL": CHANNEL}
