"""The gate before the Redirect (acd/epoch.py ``gated``, ``[cti-acd-gate]``; docs/ha.md
"Fencing in the dialplan"): in an HA pair every routing Redirect of the ACD is an Originate
into the dialplan's gate, which moves the caller only when the sender's epoch is in force;
the values as the dialplan cuts them, malformed ones refused, the shell writing them."""
from __future__ import annotations

import itertools
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


@given(epoch=epochs, seq=st.integers(1, 2**62), context=contexts, exten=extens)
def test_a_gated_redirect_is_an_originate_into_the_gate_with_the_value_cut_as_written(epoch, seq, context, exten):
    name, headers = gate_action(epoch, seq, CHANNEL, context, exten)
    assert (name, headers["Channel"], headers["Application"]) == ("Originate", GATE_CHANNEL, "Hangup")
    variables = dict(v.split("=", 1) for v in headers["Variable"])
    # [cti-acd-gate]: CUT at colons, epoch field 1, seq 2, context 3, extension 4; no comma
    # (the Originate's Variable header splits at commas); the channel it moves.
    assert "," not in variables["CTI_GATE"]
    assert variables["CTI_GATE"].split(":") == [str(epoch), str(seq), context, exten]
    assert parse_gate(variables["CTI_GATE"]) == (epoch, seq, context, exten)
    assert variables["CTI_GATE_CHANNEL"] == CHANNEL


@pytest.mark.parametrize("epoch, context, exten", [
    (0, "cti-acd-offer", "s"), (True, "cti-acd-offer", "s"), (3, "cti-fallback", "s"), (3, "default", "s"),
    (3, "cti-acd-offer-x", "s"), (3, "cti-acd-offer", "s:1"), (3, "cti-acd-offer", "1"), (3, "cti-acd-offer", ""),
    (3, "cti-acd-wait", "Back")])
def test_a_gate_value_the_dialplan_could_misread_or_would_refuse_is_refused(epoch, context, exten):
    with pytest.raises(ValueError):
        gate_value(epoch, 1, context, exten)


@pytest.mark.parametrize("seq", [0, -1, True, "3", 1.0])
def test_a_gate_sequence_number_is_a_positive_integer(seq):
    with pytest.raises(ValueError):
        gate_value(3, seq, "cti-acd-offer", "s")


@pytest.mark.parametrize("bad", ["", "3:1:cti-acd-offer", "x:1:cti-acd-offer:s", "3:1:cti-hold:caller",
                                 "3:cti-acd-offer:s", "3:x:cti-acd-offer:s", "3:1:cti-acd-offer:s:1",
                                 "3,1,cti-acd-offer,s", "3:1:cti-acd-wait:back2"])
def test_a_malformed_gate_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_gate(bad)


@pytest.mark.parametrize("channel", ["", "PJSIP/a,b", "PJSIP/a\r\nAction: Hangup"])
def test_a_gate_for_a_channel_name_that_would_break_the_header_is_refused(channel):
    with pytest.raises(ValueError):
        gate_action(3, 1, channel, "cti-acd-offer", "s")


def test_gating_replaces_only_routing_redirects_numbered_in_writing_order_and_keeps_the_values():
    actions = [*maxwait_actions(4, CHANNEL, "voicemail"),
               ("Redirect", {"Channel": CHANNEL, "Context": "cti-hold", "Exten": "caller", "Priority": "1"}),
               redirect_action(CHANNEL, "cti-acd-wait", "back")]
    seqs = itertools.count(7)
    out = gated(4, actions, seqs)
    assert out[0] == actions[0]                                          # CTI_MAXWAIT's Setvar, first
    assert out[1] == gate_action(4, 7, CHANNEL, "cti-acd-maxwait", "voicemail")
    assert out[2] == actions[2]                                          # not a routing action: as it was
    assert out[3] == gate_action(4, 8, CHANNEL, "cti-acd-wait", "back")
    assert next(seqs) == 9                                               # the next write goes on from there


def test_the_dialplan_gate_moves_callers_only_into_the_contexts_the_daemon_gates():
    text = EXTENSIONS.read_text()
    section = text[text.index("[cti-acd-gate]"):]
    section = section[:section.index("\n\n")]
    pattern = re.search(r'REGEX\("\^\((.+?)\)\$" \$\{CTI_GATE_TO\}', section)
    assert pattern is not None and pattern.group(1) == GATED_CONTEXT.pattern
    # Compared and moved under the epoch's lock, the same as the raise's; the channel's last
    # mover read and written under it too, before the move.
    assert section.index("LOCK(cti-acd-epoch)") < section.index("SHARED(CTI_GATE_LAST,") \
        < section.index("Set(SHARED(CTI_GATE_LAST,") < section.index("ChannelRedirect") < section.index("UNLOCK")
    assert "Action: redirect" in section


def _gate_allows(last: str, value: str, in_force: int) -> bool:
    """[cti-acd-gate]'s decision, as its lines compute it (for the order rule's unit test)."""
    epoch, seq, _, _ = parse_gate(value)
    last_epoch, _, last_seq = last.partition(":")
    le, ls = int("0" + last_epoch), int("0" + last_seq)
    return not (epoch < in_force or epoch < le or (epoch == le and seq <= ls))


@given(epoch=st.integers(1, 20), seqs=st.permutations(list(range(1, 7))))
def test_actions_reaching_the_gate_out_of_order_move_the_caller_only_forward(epoch, seqs):
    """Gates written 1..6 and reaching the dialplan in any order: the caller ends where the
    last written one sends it, and no older one moves it after a newer one did."""
    last, moved = "", []
    for seq in seqs:
        value = gate_value(epoch, seq, "cti-acd-wait", "back")
        if _gate_allows(last, value, epoch):
            last = f"{epoch}:{seq}"
            moved.append(seq)
    assert moved == sorted(moved) and (6 in moved)


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
    assert variables == {"CTI_GATE": "6:1:cti-acd-offer:s", "CTI_GATE_CHANNEL": CHANNEL}


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
    assert {"CTI_GATE": "6:2:cti-acd-wait:back", "CTI_GATE_CHANNEL": CHANNEL} in gates   # after the offer's 1
    assert "Redirect" not in [a for a, _ in pair.core.ami.written]


def test_a_redirect_overtaken_by_a_later_one_of_ours_is_not_counted_as_fenced():
    from cti.ami_inputs import ActionRefused

    pair = _service()
    pair.set_epoch(6)
    fields = dict(call_id="c1", channel=CHANNEL, callback="", epoch="6")
    pair.on_action_refused(ActionRefused(action="redirect", current="6", **fields))
    assert pair.actions_refused == 0 and not pair.fenced
    pair.on_action_refused(ActionRefused(action="redirect", current="7", **fields))
    assert pair.actions_refused == 1 and pair.fenced
