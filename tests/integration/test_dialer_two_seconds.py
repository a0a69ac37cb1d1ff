"""The 2 s rule in the sandbox's dialplan (asterisk-config/extensions.conf, cti-acd-offer): a
campaign's person (``CTI_DIALER_ATTEMPT`` set) is offered with only what is left of the 2 s
since the greeting (``CTI_WAIT_START``): an agent made free late rings for the rest of those 2 s,
not 2 s more; with nothing left nothing rings and the person hears the goodbye
(``cti-dialer,abandon``). An inbound caller's offer is unchanged."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from cti.demo import place_call, set_demo_times
from tests.integration.conftest import eventually, hangup_all

ACD_TEST = Path(__file__).with_name("acd-test.toml")


def _recorder(demo_ami) -> list[tuple[float, dict[str, Any]]]:
    seen: list[tuple[float, dict[str, Any]]] = []
    demo_ami.add_listener(lambda frame: seen.append((time.monotonic(), dict(frame.headers))))
    return seen


def _of(seen, call_id: str, event: str, **match: str) -> list[tuple[float, dict[str, Any]]]:
    return [(t, h) for t, h in seen if h.get("Event") == event and h.get("Uniqueid") == call_id
            and all(h.get(k) == v for k, v in match.items())]


async def _campaign_person(demo_ami, d, n: int, ready_after: float, ring: tuple[int, int]) -> tuple[str, float]:
    """A person of a campaign waiting in ``sales`` with every agent not ready; agent a1 made
    ready ``ready_after`` seconds after the person's wait began (their ``CTI_WAIT_START``).
    Returns the call's id and the wait's start (monotonic)."""
    acd = d.acd
    await set_demo_times(demo_ami, ring=ring, talk=(1, 1))
    p = await place_call(demo_ami, caller_num=f"+44200000090{n}", caller_name=f"person {n}", patience=30,
                         context="cti-demo-direct",
                         variables={"CTI_QUEUE": "sales", "CTI_DIALER_ATTEMPT": f"99000{n}"})
    w = await eventually(lambda: acd.calls.get(p.channel_id), timeout=10, what="the person waiting")
    reply = await demo_ami.send("Getvar", {"Channel": w.channel, "Variable": "CTI_WAIT_START"}, shape="single")
    waited = time.time() - float(reply.response.headers["Value"])
    started = time.monotonic() - waited
    await asyncio.sleep(max(0.0, started + ready_after - time.monotonic()))
    acd.agent_request("a1", "set_ready")
    return p.channel_id, started


@pytest.fixture
async def sales(fenced_daemon, demo_ami):
    """The daemon, and the sandbox's events seen with their arrival times; a1 not ready after."""
    d, _ = await fenced_daemon(ACD_TEST)
    try:
        yield d, _recorder(demo_ami)
    finally:
        d.acd.agent_request("a1", "set_not_ready", "test")
        hangup_all()


async def _abandoned(seen, call_id: str) -> None:
    await eventually(lambda: _of(seen, call_id, "UserEvent", UserEvent="CtiDialer", Step="abandoned"),
                     timeout=15, what="the person sent to the goodbye")


async def test_an_agent_free_late_rings_for_what_is_left_of_the_two_seconds(sales, demo_ami):
    d, seen = sales
    # Free 1.3 s after the greeting: 0.7 s of ring left; the phone answers after 1 s.
    call_id, started = await _campaign_person(demo_ami, d, 1, ready_after=1.3, ring=(1, 1))
    await _abandoned(seen, call_id)
    begins = _of(seen, call_id, "DialBegin")
    ends = _of(seen, call_id, "DialEnd")
    assert len(begins) == 1 and len(ends) == 1, (begins, ends)
    assert ends[0][1].get("DialStatus") == "NOANSWER"
    # The ring stopped at the 2 s since the greeting (the events' own delivery aside),
    # not 2 s after the offer.
    assert ends[0][0] - started < 2.6, ends[0][0] - started
    assert ends[0][0] - begins[0][0] < 1.0
    assert d.acd.router.agent_state("a1").state != "on_call"


async def test_nothing_rings_once_the_two_seconds_are_gone(sales, demo_ami):
    d, seen = sales
    call_id, _ = await _campaign_person(demo_ami, d, 2, ready_after=2.4, ring=(0, 0))
    await _abandoned(seen, call_id)
    assert _of(seen, call_id, "DialBegin") == []


async def test_an_agent_free_at_once_still_connects_the_person(sales, demo_ami):
    d, seen = sales
    call_id, _ = await _campaign_person(demo_ami, d, 3, ready_after=0.0, ring=(0, 0))
    await eventually(lambda: _of(seen, call_id, "DialEnd"), timeout=15, what="the offer's Dial ended")
    assert _of(seen, call_id, "DialEnd")[0][1].get("DialStatus") == "ANSWER"
    assert not _of(seen, call_id, "UserEvent", UserEvent="CtiDialer", Step="abandoned")
