"""Epoch fencing of what was not fenced before (docs/ha.md, "Fencing in the dialplan"): a
supervisor's move of a waiting caller goes through [cti-acd-move], which sets the caller's
CTI_QUEUE/CTI_PRIORITY only at the epoch in force; an emergency switch's redirect of a
waiting caller goes through [cti-emergency-move], which sends a deposed leader's back to
the wait; in a pair every routing Redirect goes through [cti-acd-gate], which moves nobody
for a deposed leader. In the sandbox's dialplan, as tests/integration/test_fencing.py does."""
from __future__ import annotations

import itertools
import time
from typing import Any

from acd.epoch import emergency_actions, gated, heartbeat_variable, maxwait_actions, redirect_action
from cti.ami import AmiClient
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import eventually
from tests.integration import test_fencing
from tests.integration.test_fencing import _context, _rang_agent1, _user_events

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


async def test_a_deposed_leaders_late_redirect_through_the_gate_does_not_pull_a_caller_from_an_agent(quiet,
                                                                                                     demo_ami):
    d, events = quiet
    acd = d.acd
    acd.gate_redirects = True           # as in a pair (acd/setup.py)
    acd.set_epoch(5)
    await eventually(lambda: acd.epoch_in_force == 5, timeout=10, what="epoch 5 in force")
    p = await place_call(demo_ami, caller_num="+442000000531", caller_name="fenced 4", patience=120,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
    await eventually(lambda: p.channel_id in acd.calls, timeout=10, what="the caller waiting for the ACD")
    channel = acd.calls[p.channel_id].channel
    assert channel is not None
    # The leader of 5 offers through the gate: agent1 rings, answers and talks for a minute.
    await set_demo_times(demo_ami, ring=(1, 1), talk=(60, 60))
    acd.agent_request("a1", "set_ready")
    await eventually(lambda: _rang_agent1(events, p.channel_id), timeout=10, what="agent1 rung through the gate")
    assert await _context(demo_ami, channel) == "cti-acd-offer"

    # A deposed leader (epoch 4) sends its late actions as a pair's leader writes them: the
    # return to the wait after a withdrawn offer, and a "hangup" maximum wait. Neither moves
    # the caller: refused at the gate, before any Redirect.
    stale = itertools.count(10**6)         # its own count, far ahead of the leader's: the epoch decides
    for name, headers in [*gated(4, [redirect_action(channel, "cti-acd-wait", "back")], stale),
                          *gated(4, maxwait_actions(4, channel, "hangup"), stale)]:
        await demo_ami.send(name, headers, shape="single")
    refused = await eventually(lambda: len(_refused(events, "redirect")) == 2 and _refused(events, "redirect"),
                               timeout=10, what="both gated redirects of epoch 4 refused")
    assert [(r["Epoch"], r["Current"], r["Target"]) for r in refused] == [("4", "5", channel)] * 2
    assert await _context(demo_ami, channel) == "cti-acd-offer"            # still with agent1
    assert _refused(events, "maxwait") == []             # it never reached cti-acd-maxwait
    assert d.core.model.calls[p.channel_id].ended_at is None
    assert len(_rang_agent1(events, p.channel_id)) == 1                    # the ring was not interrupted

    # The leader of 5's own "hangup" maximum wait through the gate moves it: the call ends. (Its
    # number follows the leader's own: an older one is refused as out of order.)
    late = gated(5, maxwait_actions(5, channel, "hangup"), itertools.count(1))
    for name, headers in late:
        await demo_ami.send(name, headers, shape="single")
    refused = await eventually(lambda: len(_refused(events, "redirect")) == 3 and _refused(events, "redirect"),
                               timeout=10, what="an action of 5 older than the last one that moved the caller")
    assert (refused[2]["Epoch"], refused[2]["Seq"]) == ("5", "1")
    assert await _context(demo_ami, channel) == "cti-acd-offer"
    for name, headers in gated(5, maxwait_actions(5, channel, "hangup"), acd.gate_seq):
        await demo_ami.send(name, headers, shape="single")
    await eventually(lambda: d.core.model.calls.get(p.channel_id) is None
                     or d.core.model.calls[p.channel_id].ended_at is not None, timeout=10,
                     what="the caller moved by epoch 5 and hung up")
    assert len(_refused(events, "redirect")) == 3 and _refused(events, "maxwait") == []
    # No call record for the gate's Local channels.
    assert not [leg.channel for call in d.core.model.calls.values() for leg in call.legs.values()
                if "cti-acd-gate" in leg.channel]
