"""Epoch fencing in the sandbox's dialplan (docs/ha.md, "Fencing in the dialplan"): the
epoch in Asterisk only rises ([cti-acd-epoch]), and cti-acd-offer refuses an offer of a
lower epoch: nothing rings, the caller waits on, UserEvent CtiOfferRefused says so."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from acd.epoch import EPOCH_CHANNEL, EPOCH_GLOBAL, callback_variables, heartbeat_variable
from cti.ami import AmiClient
from cti.demo import place_call
from cti.errors import AmiError
from tests.integration.conftest import eventually

ACD_TEST = Path(__file__).with_name("acd-test.toml")
AGENT1 = "Local/agent1@cti-demo-agents"


async def _epoch(ami: AmiClient) -> str:
    reply = await ami.send("Getvar", {"Variable": EPOCH_GLOBAL}, shape="single")
    return reply.response.headers.get("Value") or ""


@pytest.fixture
async def fenced(fenced_daemon):
    """A daemon with the ACD, every agent not ready (``fenced_daemon``, tests/integration/conftest.py)."""
    return await fenced_daemon(ACD_TEST)


def _user_events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("Event") == "UserEvent" and e.get("UserEvent") == name]


def _rang_agent1(events: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("Event") == "DialBegin" and e.get("Linkedid") == call_id
            and e.get("DestChannel", "").startswith(AGENT1)]


async def test_an_offer_below_the_epoch_in_force_is_refused_and_one_at_it_rings(fenced, demo_ami):
    d, events = fenced
    acd = d.acd
    # Raised to 5 through the monotonic path.
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5, timeout=10, what="epoch 5 in force")
    assert await _epoch(demo_ami) == "5"
    p = await place_call(demo_ami, caller_num="+442000000501", caller_name="fenced 1", patience=120,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
    await eventually(lambda: p.channel_id in acd.calls, timeout=10, what="the caller waiting for the ACD")

    # A deposed leader: this daemon's offers now carry 4. Its heartbeat (CTI_ACD_HEARTBEAT_4)
    # is read by nobody; the new leader's is kept fresh here by hand.
    acd.set_epoch(4)
    await eventually(lambda: acd.fenced, timeout=10, what="the daemon told it is fenced")
    assert await _epoch(demo_ami) == "5"
    await demo_ami.send("Setvar", {"Variable": heartbeat_variable(5), "Value": str(int(time.time()) + 60)},
                        shape="single")
    acd.agent_request("a1", "set_ready")
    refused = await eventually(lambda: _user_events(events, "CtiOfferRefused"), timeout=10,
                               what="the offer of epoch 4 refused")
    assert (refused[0]["Agent"], refused[0]["Epoch"], refused[0]["Current"]) == ("a1", "4", "5")
    assert refused[0]["Linkedid"] == p.channel_id
    await eventually(lambda: acd.offers_refused == 1, timeout=5, what="the daemon saw the refusal")
    assert _rang_agent1(events, p.channel_id) == []
    # The caller waits on (back in cti-acd-wait), still a waiting call of the router.
    waiting = acd.calls[p.channel_id]
    reply = await demo_ami.send("Getvar", {"Channel": waiting.channel, "Variable": "CONTEXT"}, shape="single")
    assert reply.response.headers.get("Value") == "cti-acd-wait"
    assert [w.call_id for w in acd.router.waiting_calls()] == [p.channel_id]
    assert acd.router.agent_state("a1").reason == "unreachable"

    # Leading with 5 again: the same caller is offered and agent1 rings.
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5 and not acd.fenced, timeout=10, what="epoch 5 ours again")
    acd.agent_request("a1", "set_ready")
    await eventually(lambda: _rang_agent1(events, p.channel_id), timeout=10, what="agent1 rung at epoch 5")
    await eventually(lambda: acd.calls.get(p.channel_id) is None or acd.calls[p.channel_id].answered, timeout=10,
                     what="the call answered")
    assert len(_user_events(events, "CtiOfferRefused")) == 1


async def test_a_late_raise_to_a_lower_epoch_leaves_the_higher_one(fenced, demo_ami):
    d, events = fenced
    acd = d.acd
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5, timeout=10, what="epoch 5 in force")
    # A deposed leader's late raise, straight into the dialplan: unanswered, nothing lowered.
    with pytest.raises(AmiError):
        await demo_ami.send("Originate", {"Channel": EPOCH_CHANNEL, "Application": "Hangup", "Timeout": "5000",
                                          "Variable": "CTI_NEW_EPOCH=4"}, shape="single", timeout=10)
    assert await _epoch(demo_ami) == "5"
    # The same through the daemon: it learns it is fenced.
    acd.set_epoch(4)
    assert await acd.raise_epoch() is False
    assert acd.fenced and await _epoch(demo_ami) == "5"
    # Junk is filtered to digits: "4)}" is 4, refused; an empty value changes nothing.
    for junk in ("4)}", "", "x"):
        with pytest.raises(AmiError):
            await demo_ami.send("Originate", {"Channel": EPOCH_CHANNEL, "Application": "Hangup", "Timeout": "5000",
                                              "Variable": f"CTI_NEW_EPOCH={junk}"}, shape="single", timeout=10)
    assert await _epoch(demo_ami) == "5"
    asked = [(e["Asked"], e["Current"]) for e in _user_events(events, "CtiAcdEpoch")]
    assert ("4", "5") in asked and ("5", "5") in asked
    # No call record for the raises' Local channels.
    assert not [leg.channel for call in d.core.model.calls.values() for leg in call.legs.values()
                if "cti-acd-epoch" in leg.channel]


@pytest.fixture
async def quiet(fenced_daemon):
    """As ``fenced``, without the ACD's own announcements (they are sent by hand here)."""
    return await fenced_daemon(ACD_TEST, acd_announce_every=0)


async def _context(ami: AmiClient, channel: str) -> str | None:
    reply = await ami.send("Getvar", {"Channel": channel, "Variable": "CONTEXT"}, shape="single")
    return reply.response.headers.get("Value")


async def test_a_deposed_leaders_announcement_max_wait_and_callback_are_refused_by_the_dialplan(quiet, demo_ami):
    d, events = quiet
    acd = d.acd
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5, timeout=10, what="epoch 5 in force")
    p = await place_call(demo_ami, caller_num="+442000000511", caller_name="fenced 2", patience=120,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
    await eventually(lambda: p.channel_id in acd.calls, timeout=10, what="the caller waiting for the ACD")
    channel = acd.calls[p.channel_id].channel
    # Deposed: this daemon's actions now carry 4, while Asterisk holds 5.
    acd.set_epoch(4)
    await eventually(lambda: acd.fenced, timeout=10, what="the daemon told it is fenced")
    await demo_ami.send("Setvar", {"Variable": heartbeat_variable(5), "Value": str(int(time.time()) + 120)},
                        shape="single")

    def refused(action: str) -> list[dict[str, Any]]:
        return [e for e in _user_events(events, "CtiActionRefused") if e.get("Action") == action]

    # An announcement of epoch 4: nothing played, the caller back in the wait.
    acd._announce(p.channel_id)
    (r,) = await eventually(lambda: refused("announce"), timeout=10, what="the announcement of epoch 4 refused")
    assert (r["Epoch"], r["Current"], r["Linkedid"]) == ("4", "5", p.channel_id)
    assert _user_events(events, "CtiAcdAnnounce") == []
    await eventually(lambda: acd.actions_refused == 1, timeout=5, what="the daemon counted the refusal")

    # A max-wait exit of epoch 4 ("hangup" would end the call): the caller waits on.
    acd._send_maxwait(p.channel_id, channel, "hangup")
    (r,) = await eventually(lambda: refused("maxwait"), timeout=10, what="the max wait of epoch 4 refused")
    assert (r["Epoch"], r["Current"]) == ("4", "5")
    assert _user_events(events, "CtiAcdMaxWait") == []
    assert await _context(demo_ami, channel) == "cti-acd-wait"
    assert p.channel_id in d.core.model.calls and d.core.model.calls[p.channel_id].ended_at is None

    # A callback Originate of epoch 4: the agent's leg answers, the customer is not dialled,
    # no CtiCallbackResult; one of epoch 5 dials the customer.
    def callback(epoch: int, callback_id: str, number: str) -> dict[str, Any]:
        return {"Channel": AGENT1, "Context": "cti-acd-callback", "Exten": "s", "Priority": "1", "Timeout": "10000",
                "Async": "true", "Variable": callback_variables(epoch, {
                    "CTI_CALLBACK": callback_id, "CTI_AGENT": "a1", "CTI_CALLBACK_RING": "5",
                    "CTI_CALLBACK_DIAL": f"Local/{number}@cti-outbound", "CTI_CALLBACK_CID": ""})}

    def dialled(number: str) -> list[dict[str, Any]]:
        return [e for e in events if e.get("Event") == "DialBegin"
                and e.get("DestChannel", "").startswith(f"Local/{number}@cti-outbound")]

    await demo_ami.send("Originate", callback(4, "cbstale", "+442000000777"), shape="single")
    (r,) = await eventually(lambda: refused("callback"), timeout=15, what="the callback of epoch 4 refused")
    assert (r["Callback"], r["Epoch"], r["Current"]) == ("cbstale", "4", "5")
    await demo_ami.send("Originate", callback(5, "cbnow", "+442000000778"), shape="single")
    await eventually(lambda: dialled("+442000000778"), timeout=15, what="the callback of epoch 5 dialled")
    await eventually(lambda: [e for e in _user_events(events, "CtiCallbackResult") if e.get("Callback") == "cbnow"],
                     timeout=15, what="the result of the callback of epoch 5")
    assert dialled("+442000000777") == []
    assert [e for e in _user_events(events, "CtiCallbackResult") if e.get("Callback") == "cbstale"] == []

    # Epoch 5's own max wait passes (so the refusals above were the epoch's doing).
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5 and not acd.fenced, timeout=10, what="epoch 5 ours again")
    acd._send_maxwait(p.channel_id, channel, "hangup")
    (m,) = await eventually(lambda: _user_events(events, "CtiAcdMaxWait"), timeout=10, what="the max wait of 5")
    assert m["Action"] == "hangup" and len(refused("maxwait")) == 1
