"""The gate before the Redirect (acd/epoch.py ``gated``, ``[cti-acd-gate]``; docs/ha.md
"Fencing in the dialplan"): in an HA pair every routing Redirect of the ACD is an Originate
into the dialplan's gate, which moves the caller only when the sender's epoch is in force;
the values as the dialplan cuts them, malformed ones refused, the shell writing them."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.epoch import (GATE_CHANNEL, GATED_CONTEXT, gate_action, gate_value, gated, maxwait_actions, parse_gate,
                       redirect_action)
from cti.calls import CallModel
from tests.unit.test_acd_offer_path import CHANNEL, _queued, _service

EXTENSIONS = Path(__file__).parents[2] / "asterisk-config" / "extensions.conf"
epochs = st.integers(1, 2**62)
contexts = st.sampled_from(["cti-acd-offer", "cti-acd-announce", "cti-acd-wait", "cti-acd-maxwait",
                            "cti-emergency-move"])
extens = st.from_regex(r"[a-z]{1,20}", fullmatch=True)


@given(epoch=epochs, context=contexts, exten=extens)
def test_a_gated_redirect_is_an_originate_into_the_gate_with_the_value_cut_as_written(epoch, context, exten):
    name, headers = gate_action(epoch, CHANNEL, context, exten)
    assert (name, headers["Channel"], headers["Application"]) == ("Originate", GATE_CHANNEL, "Hangup")
    variables = dict(v.split("=", 1) for v in headers["Variable"])
    # [cti-acd-gate]: CUT at colons, epoch field 1, context 2, extension 3; no comma (the
    # Originate's Variable header splits at commas); the channel it moves.
    assert "," not in variables["CTI_GATE"] and variables["CTI_GATE"].split(":") == [str(epoch), context, exten]
    assert parse_gate(variables["CTI_GATE"]) == (epoch, context, exten)
    assert variables["CTI_GATE_CHANNEL"] == CHANNEL


@pytest.mark.parametrize("epoch, context, exten", [
    (0, "cti-acd-offer", "s"), (True, "cti-acd-offer", "s"), (3, "cti-fallback", "s"), (3, "default", "s"),
    (3, "cti-acd-offer-x", "s"), (3, "cti-acd-offer", "s:1"), (3, "cti-acd-offer", "1"), (3, "cti-acd-offer", ""),
    (3, "cti-acd-wait", "Back")])
def test_a_gate_value_the_dialplan_could_misread_or_would_refuse_is_refused(epoch, context, exten):
    with pytest.raises(ValueError):
        gate_value(epoch, context, exten)


@pytest.mark.parametrize("bad", ["", "3:cti-acd-offer", "x:cti-acd-offer:s", "3:cti-hold:caller",
                                 "3:cti-acd-offer:s:1", "3,cti-acd-offer,s", "3:cti-acd-wait:back2"])
def test_a_malformed_gate_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_gate(bad)


@pytest.mark.parametrize("channel", ["", "PJSIP/a,b", "PJSIP/a\r\nAction: Hangup"])
def test_a_gate_for_a_channel_name_that_would_break_the_header_is_refused(channel):
    with pytest.raises(ValueError):
        gate_action(3, channel, "cti-acd-offer", "s")


def test_gating_replaces_only_routing_redirects_and_keeps_the_values_before_them():
    actions = [*maxwait_actions(4, CHANNEL, "voicemail"),
               ("Redirect", {"Channel": CHANNEL, "Context": "cti-hold", "Exten": "caller", "Priority": "1"})]
    out = gated(4, actions)
    assert out[0] == actions[0]                                          # CTI_MAXWAIT's Setvar, first
    assert out[1] == gate_action(4, CHANNEL, "cti-acd-maxwait", "voicemail")
    assert out[2] == actions[2]                                          # not a routing action: as it was


def test_the_dialplan_gate_moves_callers_only_into_the_contexts_the_daemon_gates():
    text = EXTENSIONS.read_text()
    section = text[text.index("[cti-acd-gate]"):]
    section = section[:section.index("\n\n")]
    pattern = re.search(r'REGEX\("\^\((.+?)\)\$" \$\{CTI_GATE_TO\}', section)
    assert pattern is not None and pattern.group(1) == GATED_CONTEXT.pattern
    # Compared and moved under the epoch's lock, the same as the raise's.
    assert section.index("LOCK(cti-acd-epoch)") < section.index("ChannelRedirect") < section.index("UNLOCK")
    assert "Action: redirect" in section


def test_the_call_model_ignores_the_gates_local_channels():
    model = CallModel()
    frame = {"Event": "Newchannel", "Channel": "Local/redirect@cti-acd-gate-0000002a;2", "Uniqueid": "9.1",
             "Linkedid": "9.1", "CallerIDNum": "", "Exten": "redirect", "Context": "cti-acd-gate",
             "ChannelState": "0"}
    assert model.feed(frame, time.time()) == [] and model.calls == {}


async def test_a_pair_writes_its_offer_through_the_gate_and_a_lone_daemon_redirects():
    lone = _service()
    lone.on_call_event(_queued("c1", time.time()))
    assert [a for a, _ in lone.core.ami.written] == ["Setvar", "Redirect"]
    pair = _service()
    pair.gate_redirects = True
    pair.set_epoch(6)
    pair.on_call_event(_queued("c1", time.time()))
    written = pair.core.ami.written
    assert [a for a, _ in written] == ["Setvar", "Originate"]           # no Redirect at all
    assert written[0][1]["Value"].startswith("6,a1,")
    variables = dict(v.split("=", 1) for v in written[1][1]["Variable"])
    assert variables == {"CTI_GATE": "6:cti-acd-offer:s", "CTI_GATE_CHANNEL": CHANNEL}


async def test_a_pair_sends_a_withdrawn_callers_return_to_the_wait_through_the_gate():
    pair = _service()
    pair.gate_redirects = True
    pair.set_epoch(6)
    pair.on_call_event(_queued("c1", time.time()))
    pair.core.ami.written.clear()
    agent = pair.calls["c1"].agent
    pair._apply(pair.router.tick(time.time() + 3600))        # the ring guard gives up on the offer
    assert pair.calls["c1"].agent != agent or agent is None
    gates = [dict(v.split("=", 1) for v in h["Variable"]) for a, h in pair.core.ami.written if a == "Originate"]
    assert {"CTI_GATE": "6:cti-acd-wait:back", "CTI_GATE_CHANNEL": CHANNEL} in gates
    assert "Redirect" not in [a for a, _ in pair.core.ami.written]
