"""Epoch fencing of what was not fenced before (docs/ha.md, "Fencing in the dialplan"): a
supervisor's move of a waiting caller goes through [cti-acd-move], which sets the caller's
CTI_QUEUE/CTI_PRIORITY only at the epoch in force; an emergency switch's redirect of a
waiting caller goes through [cti-emergency-move], which sends a deposed leader's back to
the wait. In the sandbox's dialplan, as tests/integration/test_fencing.py does."""
from __future__ import annotations

import time
from typing import Any

from acd.epoch import emergency_actions, heartbeat_variable
from cti.ami import AmiClient
from cti.demo import place_call
from tests.integration.conftest import eventually
from tests.integration import test_fencing
from tests.integration.test_fencing import _context, _user_events

quiet = test_fencing.quiet      # the fixture: a daemon with the ACD, its announcements off


async def _var(ami: AmiClient, channel: str, name: str) -> str:
    reply = await ami.send("Getvar", {"Channel": channel, "Variable": name}, shape="single")
    return reply.response.headers.get("Value") or ""


def _refused(events: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [e for e in _user_events(events, "CtiActionRefused") if e.get("Action") == action]


async def test_a_deposed_leaders_move_and_emergency_redirect_are_refused_by_the_dialplan(quiet, demo_ami):
    d, events = quiet
    acd = d.acd
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5, timeout=10, what="epoch 5 in force")
    p = await place_call(demo_ami, caller_num="+442000000521", caller_name="fenced 3", patience=120,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
    await eventually(lambda: p.channel_id in acd.calls, timeout=10, what="the caller waiting for the ACD")
    channel = acd.calls[p.channel_id].channel
    assert channel is not None
    before = await _var(demo_ami, channel, "CTI_PRIORITY")

    # Deposed: this daemon's actions now carry 4 while Asterisk holds 5 (its heartbeat kept here).
    acd.set_epoch(4)
    await eventually(lambda: acd.fenced, timeout=10, what="the daemon told it is fenced")
    await demo_ami.send("Setvar", {"Variable": heartbeat_variable(5), "Value": str(int(time.time()) + 120)},
                        shape="single")

    # A move of epoch 4: the router moved it (its own view), the channel's variables are untouched.
    assert acd.move_call(p.channel_id, priority=9)
    (r,) = await eventually(lambda: _refused(events, "move"), timeout=10, what="the move of epoch 4 refused")
    assert (r["Epoch"], r["Current"], r["Target"]) == ("4", "5", channel)
    assert _user_events(events, "CtiAcdMove") == []
    assert await _var(demo_ami, channel, "CTI_PRIORITY") == before
    await eventually(lambda: acd.actions_refused == 1, timeout=5, what="the daemon counted the refusal")

    # An emergency switch's "hangup" of epoch 4, straight as the service writes it: the caller
    # goes back to the wait, not hung up.
    for name, headers in emergency_actions(4, channel, "hangup", 17, "", ""):
        await demo_ami.send(name, headers, shape="single")
    (r,) = await eventually(lambda: _refused(events, "emergency"), timeout=10,
                            what="the emergency redirect of epoch 4 refused")
    assert (r["Epoch"], r["Current"], r["Linkedid"]) == ("4", "5", p.channel_id)
    assert [e for e in _user_events(events, "CtiEmergency") if e.get("Linkedid") == p.channel_id] == []
    async def waiting() -> bool:
        return await _context(demo_ami, channel) == "cti-acd-wait"

    await eventually(waiting, timeout=5, what="back in the wait")
    assert d.core.model.calls[p.channel_id].ended_at is None
    # A value naming another action than the extension it is sent to is refused too.
    (_, setvar), (_, redirect) = emergency_actions(5, channel, "hangup", 17, "", "")
    await demo_ami.send("Setvar", setvar, shape="single")
    await demo_ami.send("Redirect", {**redirect, "Exten": "voicemail"}, shape="single")
    await eventually(lambda: len(_refused(events, "emergency")) == 2, timeout=10, what="a mismatched action refused")

    # Leading with 5 again: its move sets the channel's priority; its emergency "continue" runs.
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5 and not acd.fenced, timeout=10, what="epoch 5 ours again")
    assert acd.move_call(p.channel_id, priority=7)
    (m,) = await eventually(lambda: _user_events(events, "CtiAcdMove"), timeout=10, what="the move of epoch 5")
    assert (m["Epoch"], m["Queue"]) == ("5", "sales")
    await eventually(lambda: _var(demo_ami, channel, "CTI_PRIORITY"), timeout=5, what="the priority set")
    assert await _var(demo_ami, channel, "CTI_PRIORITY") == "7"
    for name, headers in emergency_actions(5, channel, "continue", 17, "", ""):
        await demo_ami.send(name, headers, shape="single")
    (e,) = await eventually(lambda: [x for x in _user_events(events, "CtiEmergency")
                                     if x.get("Linkedid") == p.channel_id], timeout=10, what="the switch of epoch 5")
    assert (e["Switch"], e["Action"], e["Step"]) == ("17", "continue", "wait")
    assert len(_refused(events, "move")) == 1 and len(_refused(events, "emergency")) == 2
    # No call record for the gate's Local channels.
    assert not [leg.channel for call in d.core.model.calls.values() for leg in call.legs.values()
                if "cti-acd-move" in leg.channel]
