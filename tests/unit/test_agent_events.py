"""Agent states reach WebSocket clients as events from the ACD (``AgentStateChanged``
on the bus), with no periodic look at the router: the changes the hub once needed a
once-a-second poll for (a timer's, what is pending during a call, a new configuration)
are told by the ACD itself. Real ``Bus``, ``AcdService`` and hub service."""
from __future__ import annotations

import json
import time

import pytest

from acd.config import AcdConfig
from acd.core import UNREACHABLE
from api.hub import Scope
from api.ws import HubService

AGENT = {"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n", "skills": {"billing": 5},
         "queues": {"billing": {}}, "auto_login": True}
CONFIG = {"skills": ["billing"], "agents": [AGENT], "queues": [{"id": "billing", "wrapup_s": 5}]}


@pytest.fixture
async def running(acd_hub):
    """The ACD (agent a4 logged in before the hub starts, as in the daemon) and the hub
    (``acd_hub``, tests/unit/conftest.py), with a supervisor's connection attached."""
    o = await acd_hub(CONFIG)
    boss = o.hub.hub.attach("user:3", Scope(everything=True), None, {}, 0).conn
    o.hub.hub.take(boss)
    return o.acd, o.hub, boss


def _agent_messages(hub: HubService, conn: object) -> list[dict]:
    return [m for m in map(json.loads, hub.hub.take(conn)) if m["type"] == "agent.state"]  # type: ignore[arg-type]


async def test_wrapup_ended_by_the_timer_reaches_the_client_without_a_poll(running):
    acd, hub, boss = running
    now = time.time()
    acd._apply(acd.router.agent_on_call("a4", "c1", "billing", now))
    acd._apply(acd.router.call_finished("c1", "a4", now + 1))
    assert [(m["state"], m["previous"]) for m in _agent_messages(hub, boss)] == [
        ("on_call", "available"), ("wrapup", "on_call")]
    acd._apply(acd.router.tick(now + 7))        # what the ACD's timer task does when wrap-up is due
    (m,) = _agent_messages(hub, boss)
    assert (m["agent_id"], m["state"], m["previous"], m["reason"]) == ("a4", "available", "wrapup",
                                                                       "wrap-up over")


async def test_a_break_asked_for_during_a_call_reaches_the_client_as_pending(running):
    """No state changes (the agent stays on the call), only what is pending: the router
    decides nothing, the ACD still tells it."""
    acd, hub, boss = running
    acd._apply(acd.router.agent_on_call("a4", "c1", "billing", time.time()))
    _agent_messages(hub, boss)
    acd.agent_request("a4", "set_not_ready", "lunch")
    (m,) = _agent_messages(hub, boss)
    assert (m["state"], m["previous"], m["pending"]) == ("on_call", "on_call", "lunch")
    acd.agent_request("a4", "set_not_ready", "lunch")      # nothing new: nothing told
    assert _agent_messages(hub, boss) == []
    acd.device_reachable("a4", False)                        # the phone is gone: that is pending now
    (m,) = _agent_messages(hub, boss)
    assert (m["state"], m["pending"]) == ("on_call", UNREACHABLE)


async def test_an_agent_a_new_configuration_adds_reaches_the_client(running):
    acd, hub, boss = running
    added = {**AGENT, "id": "a5", "name": "Eve", "auto_login": False}
    acd.reconfigure(AcdConfig.model_validate({**CONFIG, "agents": [AGENT, added]}))
    got = {m["agent_id"]: (m["state"], m["previous"]) for m in _agent_messages(hub, boss)}
    assert got["a5"] == ("logged_out", None)
    assert got.get("a4", ("available", "available")) == ("available", "available")
