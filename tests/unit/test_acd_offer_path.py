"""The arrival path of the ACD shell (AcdService): a caller arriving while an agent
is free is offered with AMI actions written during the event's delivery, in the
order decided; a write that fails is handled after. A fake AMI records what is
written: no Asterisk, no database."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from acd.config import AcdConfig
from acd.routing_shell import AcdService
from cti.daemon import Core
from cti.errors import AmiDisconnected
from cti.events import CallEvent, CallQueued, CallView
from tests.wireami import WireAmi

CONFIG = AcdConfig.model_validate({
    "skills": ["any"],
    "agents": [{"id": "a1", "name": "Ada", "device": "Local/agent1@cti-demo-agents/n",
                "queues": {"bench": {}}, "auto_login": True}],
    "queues": [{"id": "bench", "ring_timeout_s": 15, "wrapup_s": 0}],
})
CHANNEL = "Local/p300@cti-demo-caller-00000001;1"


def _service() -> AcdService:
    core = Core(SimpleNamespace(acd_default_queue="bench", acd_announce_every=0), ami=WireAmi())  # type: ignore[arg-type]
    service = AcdService(core, CONFIG)
    service._apply(service.router.auto_login(time.time()))
    return service


def _queued(call_id: str, at: float) -> CallEvent:
    view = CallView(call_id=call_id, state="queued", direction="inbound", caller_num="+100", caller_name="x",
                    exten="s", started_at=at, answered_at=at, queue="bench", queue_joined_at=at, queue_left_at=None,
                    agent=None, agent_answered_at=None, ended_at=None, hangup_cause=None, hangup_cause_txt=None,
                    end_estimated=False, abandoned=False, legs=1)
    return CallQueued(call_id, at, 3, view, queue="bench", acd=True, channel=CHANNEL, uniqueid=call_id)


async def test_an_arrival_with_an_agent_free_is_on_the_wire_when_its_event_has_been_delivered():
    service = _service()
    service.on_call_event(_queued("c1", time.time()))
    # No turn of the loop yet: Setvar and Redirect were written while the event was delivered.
    written = [(a, h.get("Variable") or h.get("Context")) for a, h in service.core.ami.written]
    assert written == [("Setvar", "CTI_OFFER"), ("Redirect", "cti-acd-offer")]
    assert service.core.ami.written[0][1]["Value"] == "1,a1,15,Local/agent1@cti-demo-agents/n"
    for fut in service.core.ami.replies:
        fut.set_result(SimpleNamespace(response=SimpleNamespace(headers={})))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert (service.offers_sent, service.offers_failed) == (1, 0)


async def test_an_offer_that_cannot_be_written_leaves_the_agent_free_and_waits_for_the_connection():
    service = _service()
    service.core.ami.down = True
    service.on_call_event(_queued("c1", time.time()))
    assert service.calls["c1"].agent == "a1"       # decided; the failure is handled on the next turn
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert service.offers_failed == 1
    assert service.calls["c1"].agent is None
    # No connection is no fault of the agent's: free, not "unreachable", and not offered
    # again and again while the connection is down.
    state = service.router.agent_state("a1")
    assert (state.state, state.reason) == ("available", "offer of call c1 not sent")
    assert [w.call_id for w in service.router.waiting_calls()] == ["c1"]
    assert service.router.link_down
    service.on_call_event(_queued("c2", time.time()))
    await asyncio.sleep(0)
    assert service.offers_failed == 1 and service.calls["c2"].agent is None
    # Reconnected (adopt runs on every resync): the longest waiting caller is offered.
    service.core.ami.down = False
    await service.adopt([])
    assert service.calls["c1"].agent == "a1"
    assert [h.get("Value", "").split(",")[1] for a, h in service.core.ami.written if a == "Setvar"] == ["a1"]


async def test_an_offer_lost_with_the_connection_may_ring_so_it_stands_until_the_ring_guard():
    service = _service()
    service.on_call_event(_queued("c1", time.time()))
    service.core.ami.replies[1].set_exception(AmiDisconnected("Redirect: connection lost before the reply"))
    service.core.ami.replies[0].set_exception(AmiDisconnected("Setvar: connection lost before the reply"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert service.calls["c1"].agent == "a1"
    assert service.router.agent_state("a1").state == "reserved"
    assert service.router.link_down


async def test_an_announcement_decided_before_an_offer_is_written_before_it():
    service = _service()
    service.agent_request("a1", "set_not_ready", "break")
    service.on_call_event(_queued("c1", time.time()))
    service._announce("c1")
    service.agent_request("a1", "set_ready")
    contexts = [h.get("Context") for a, h in service.core.ami.written if a == "Redirect"]
    assert contexts == ["cti-acd-announce", "cti-acd-offer"]


async def test_a_node_whose_lease_ran_out_writes_nothing_for_an_arrival():
    """The HA gate (cti.ha.HaNode.may_act): decisions taken while not leading are dropped,
    not written (a leader resumed after a pause, before its lease loop has run)."""
    service = _service()
    leading = [True]
    service.may_act = lambda: leading[0]
    leading[0] = False
    service.on_call_event(_queued("c1", time.time()))
    assert service.core.ami.written == []
    service._announcements(time.time() + 3600)
    assert service.core.ami.written == []
    # The same arrival on a node that leads is on the wire at once (the gate is all that differed).
    other = _service()
    other.may_act = lambda: True
    other.on_call_event(_queued("c1", time.time()))
    assert [a for a, _ in other.core.ami.written] == ["Setvar", "Redirect"]


async def test_an_arrival_during_the_first_adoption_waits_for_it_and_is_routed_once_after():
    """At start (or a takeover) the talking agents are adopted before any caller is routed:
    an arrival meanwhile is held, then routed in turn; one the adoption took is not entered twice."""
    service = _service()
    service.adopting = True
    service.on_call_event(_queued("c1", time.time()))
    assert service.core.ami.written == [] and "c1" not in service.calls
    service.on_call_event(_queued("c1", time.time()))      # the same arrival seen twice (resync)
    service.release_arrivals()
    assert [a for a, _ in service.core.ami.written] == ["Setvar", "Redirect"]
    assert service.calls["c1"].agent == "a1" and not service.adopting
