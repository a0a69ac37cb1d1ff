"""Fencing by epoch (acd/epoch.py, docs/ha.md): the offer value the dialplan cuts, the
epoch filter, the per-epoch heartbeat; the shell's offers carrying its epoch and its
handling of an offer the dialplan refused. No Asterisk."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.epoch import (OfferValue, epoch_digits, heartbeat_variable, offer_value, parse_offer,
                       parse_refusal)
from tests.unit.test_acd_offer_path import CHANNEL, _queued, _service


def _cut(value: str, field: int, onwards: bool = False) -> str:
    """The dialplan's CUT(value,\\,,field) (or field- with ``onwards``)."""
    parts = value.split(",")
    return ",".join(parts[field - 1:]) if onwards else parts[field - 1]


def test_the_offer_value_is_epoch_agent_ring_device_with_the_device_last():
    value = offer_value(7, "a1", 15.9, "PJSIP/a1&PJSIP/a1-desk,x")
    assert value == "7,a1,15,PJSIP/a1&PJSIP/a1-desk,x"
    # What cti-acd-offer reads: epoch field 1, agent 2, ring 3, device 4 onwards.
    assert (_cut(value, 1), _cut(value, 2), _cut(value, 3), _cut(value, 4, True)) == \
        ("7", "a1", "15", "PJSIP/a1&PJSIP/a1-desk,x")


@given(epoch=st.integers(1, 2**62), agent=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
       ring=st.integers(0, 600), device=st.text(min_size=1, max_size=40).filter(lambda d: "\r" not in d))
def test_an_offer_value_parses_back_to_what_was_written(epoch, agent, ring, device):
    assert parse_offer(offer_value(epoch, agent, ring, device)) == OfferValue(epoch, agent, ring, device)


@pytest.mark.parametrize("bad", ["a1,15,PJSIP/a1", "x,a1,15,PJSIP/a1", "1,a1,soon,PJSIP/a1", ""])
def test_a_malformed_offer_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_offer(bad)


@pytest.mark.parametrize("epoch", [0, -1, True, 1.5, "3"])
def test_an_epoch_is_a_positive_integer(epoch):
    with pytest.raises(ValueError):
        offer_value(epoch, "a1", 15, "PJSIP/a1")
    with pytest.raises(ValueError):
        heartbeat_variable(epoch)


@pytest.mark.parametrize("raw,epoch", [("5", 5), ("05", 5), (" 1 2;", 12), ("4)}|", 4), ("", None), ("x", None),
                                       (None, None)])
def test_the_epoch_filter_keeps_digits_like_the_dialplan(raw, epoch):
    assert epoch_digits(raw) == epoch


def test_each_epoch_has_its_own_heartbeat():
    assert heartbeat_variable(1) == "CTI_ACD_HEARTBEAT_1"
    assert heartbeat_variable(12) == "CTI_ACD_HEARTBEAT_12"


def test_a_refusal_names_the_call_the_agent_and_both_epochs():
    r = parse_refusal({"Channel": CHANNEL, "Uniqueid": "u2", "Linkedid": "c1", "Agent": "a1",
                       "Epoch": "4", "Current": "5"})
    assert (r.call_id, r.agent, r.epoch, r.current) == ("c1", "a1", 4, 5)


async def test_offers_carry_the_epoch_set_last():
    service = _service()
    service.set_epoch(5)
    service.on_call_event(_queued("c1", time.time()))
    (_, setvar), (_, redirect) = service.core.ami.written
    assert setvar["Value"] == "5,a1,15,Local/agent1@cti-demo-agents/n"
    assert redirect["Context"] == "cti-acd-offer"


def _refused(call_id: str, agent: str, epoch: str, current: str) -> SimpleNamespace:
    return SimpleNamespace(headers={"Event": "UserEvent", "UserEvent": "CtiOfferRefused", "Channel": CHANNEL,
                                    "Linkedid": call_id, "Agent": agent, "Epoch": epoch, "Current": current})


async def test_a_refused_offer_ends_as_failed_and_the_daemon_knows_it_is_fenced():
    service = _service()
    service.set_epoch(4)
    service.on_call_event(_queued("c1", time.time()))
    for fut in service.core.ami.replies:
        fut.set_result(SimpleNamespace(response=SimpleNamespace(headers={})))
    await asyncio.sleep(0)
    service.on_ami_event(_refused("c1", "a1", "4", "5"))
    assert (service.offers_refused, service.fenced) == (1, True)
    assert service.calls["c1"].agent is None
    state = service.router.agent_state("a1")
    assert (state.state, state.reason) == ("not_ready", "unreachable")   # no offer loop while fenced
    assert [w.call_id for w in service.router.waiting_calls()] == ["c1"]
    # A refusal that is not about our standing offer changes nothing.
    service.on_ami_event(_refused("c1", "a1", "4", "5"))
    service.on_ami_event(_refused("c9", "a1", "4", "5"))
    assert service.offers_refused == 1
