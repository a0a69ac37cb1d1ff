"""The ACD taking over after a restart (AcdService.adopt) on a channel listing, with a
fake AMI that answers Getvar from a table: no Asterisk, no database."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from acd.config import AcdConfig
from acd.routing_shell import AcdService
from cti.daemon import Core

CONFIG = AcdConfig.model_validate({
    "skills": ["billing"],
    "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                "skills": {"billing": 5}, "queues": {"billing": {}}, "auto_login": True}],
    "queues": [{"id": "billing", "ring_timeout_s": 15, "wrapup_s": 1}],
})


class FakeAmi:
    """Getvar answered from ``values`` (channel -> variable -> value); every other action is recorded."""

    def __init__(self, values: dict[str, dict[str, str]]) -> None:
        self.values = values
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, action: str, headers: dict[str, Any] | None = None, *, shape: str,
                   timeout: float | None = None) -> Any:
        headers = headers or {}
        self.sent.append((action, headers))
        value = self.values.get(headers.get("Channel", ""), {}).get(headers.get("Variable", ""), "")
        return SimpleNamespace(response=SimpleNamespace(headers={"Value": value}))

    def submit(self, action: str, headers: dict[str, Any] | None = None, *, shape: str,
               timeout: float | None = None) -> Any:
        self.sent.append((action, headers or {}))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(SimpleNamespace(response=SimpleNamespace(headers={})))
        return fut


def _service(values: dict[str, dict[str, str]]) -> AcdService:
    core = Core(SimpleNamespace(acd_default_queue="billing"), ami=FakeAmi(values))  # type: ignore[arg-type]
    service = AcdService(core, CONFIG)
    service._apply(service.router.auto_login(time.time()))
    return service


WAITING = {"Channel": "Local/p90@cti-demo-caller-00000001;1", "Uniqueid": "w1", "Linkedid": "w1",
           "Context": "cti-acd-wait", "ChannelStateDesc": "Up", "Duration": "00:00:05"}
TALKING = {"Channel": "Local/p90@cti-demo-caller-00000002;1", "Uniqueid": "t1", "Linkedid": "t1",
           "Context": "cti-acd-offer", "BridgeId": "b1", "ChannelStateDesc": "Up", "Duration": "00:00:20"}
AGENT_LEG = {"Channel": "Local/agent4@cti-demo-agents-00000003;1", "Uniqueid": "t1-a", "Linkedid": "t1",
             "Context": "cti-phone-answered", "BridgeId": "b1", "ChannelStateDesc": "Up", "Duration": "00:00:12"}
VALUES = {WAITING["Channel"]: {"CTI_QUEUE": "billing", "CTI_WAIT_START": str(int(time.time()) - 5)},
          TALKING["Channel"]: {"CTI_AGENT": "a4", "CTI_QUEUE": "billing"}}


async def test_an_agent_found_talking_is_not_offered_a_caller_listed_before_its_call():
    service = _service(VALUES)
    listing = [WAITING, TALKING, AGENT_LEG]   # Asterisk lists channels in no particular order
    service.core.model.resync(listing, [], time.time())
    await service.adopt(listing)
    state = service.router.agent_state("a4")
    assert (state.state, state.call_id) == ("on_call", "t1")
    offers = [h["Channel"] for a, h in service.core.ami.sent if a == "Redirect" and h["Context"] == "cti-acd-offer"]
    assert offers == []          # the only agent is talking: the caller waits for them
    assert "w1" in service.calls and service.calls["w1"].agent is None
    assert service.core.model.calls["t1"].agent == "a4"


RINGING = {"Channel": "Local/p90@cti-demo-caller-00000004;1", "Uniqueid": "r1", "Linkedid": "r1",
           "Context": "cti-acd-offer", "Application": "Dial", "ChannelStateDesc": "Up", "Duration": "00:00:09"}


async def test_an_agent_still_ringing_for_a_caller_is_not_offered_another_and_the_ringing_is_left_alone():
    """A takeover (or restart) while the old leader's offer rings: the agent the dialplan named
    (CTI_AGENT) is busy with that caller; the caller is not pulled out of the ringing."""
    values = {**VALUES, RINGING["Channel"]: {"CTI_AGENT": "a4", "CTI_QUEUE": "billing"}}
    service = _service(values)
    listing = [WAITING, RINGING]
    service.core.model.resync(listing, [], time.time())
    await service.adopt(listing)
    assert service.router.agent_state("a4").call_id == "r1"
    redirects = [h["Channel"] for a, h in service.core.ami.sent if a == "Redirect"]
    assert redirects == []       # neither the ringing caller nor the waiting one goes to a4
    assert service.core.model.calls["r1"].agent is None      # not said answered: it only rings


async def test_a_caller_in_the_offer_context_before_its_agent_is_named_waits_as_before():
    service = _service(VALUES)             # no CTI_AGENT on it yet (Redirected, Dial not reached)
    listing = [dict(RINGING)]
    service.core.model.resync(listing, [], time.time())
    await service.adopt(listing)
    assert "r1" in service.calls and service.calls["r1"].agent == "a4"       # adopted waiting, offered a4


def test_an_adopted_caller_keeps_the_stored_join_of_the_same_entry_else_the_dialplans_wait_start():
    """The stored join (when the daemon saw CtiAcdWait) is kept when it belongs to the entry the
    dialplan's whole-second wait start names: adopting rewrites nothing the reports hold."""
    from acd.held_calls import SAME_ENTRY_S, adopted_wait_start
    assert adopted_wait_start(1000.0, 1000.734) == 1000.734      # the same entry, precise
    assert adopted_wait_start(1000.0, None) == 1000.0            # never stored (a crash before a write)
    assert adopted_wait_start(1000.0, 940.2) == 1000.0           # an earlier entry: transferred back
    assert adopted_wait_start(1000.0, 1000.0 + SAME_ENTRY_S) == 1000.0
    assert adopted_wait_start(1000.0, 999.9) == 1000.0
