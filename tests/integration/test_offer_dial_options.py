"""The offer's Dial in the sandbox (asterisk-config/extensions.conf, cti-acd-offer): the phone
options' handlers (auto-answer before ringing, the zip tone on answer) are added only for an
agent who has them set: a pre-dial handler holds the caller in autoservice, which cost up to
10 ms to every offer (BENCHMARKS.md, issue 26). Both kinds of agent still ring and talk."""
from __future__ import annotations

from pathlib import Path

import pytest

from cti.demo import place_call, set_demo_times
from tests.integration.conftest import eventually, hangup_all

ACD_TEST = Path(__file__).with_name("acd-test.toml")


@pytest.fixture
async def acd_daemon(fenced_daemon):
    d, _ = await fenced_daemon(ACD_TEST)
    return d


async def offer_dial(demo_ami, d, agent: str, options: str, n: int) -> tuple[str, str]:
    """Agent ``agent`` alone ready with phone options ``options``: a caller offered to them;
    returns the Dial options the offer used and the call's id once it is talking."""
    acd = d.acd
    await demo_ami.send("Setvar", {"Variable": f"CTI_PHONE_OPTS_{agent}", "Value": options}, shape="single")
    await set_demo_times(demo_ami, ring=(1, 1), talk=(2, 2))    # the queue rings 3 s
    acd.agent_request(agent, "set_ready")
    p = await place_call(demo_ami, caller_num=f"+44200000070{n}", caller_name=f"options {n}", patience=60,
                         context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})

    async def ringing() -> str | None:
        w = acd.calls.get(p.channel_id)
        if w is None or w.agent != agent or not w.channel:
            return None
        reply = await demo_ami.send("Getvar", {"Channel": w.channel, "Variable": "CTI_OFFER_DIAL"}, shape="single")
        return reply.response.headers.get("Value") or None

    used = await eventually(ringing, timeout=15, what=f"the caller ringing {agent}")
    await eventually(lambda: acd.router.agent_state(agent).state == "on_call" and
                     (acd.calls.get(p.channel_id) or None) is not None and acd.calls[p.channel_id].answered,
                     timeout=15, what=f"{agent} talking")
    acd.agent_request(agent, "set_not_ready", "test")
    hangup_all()
    return used, p.channel_id


async def test_handlers_only_for_an_agent_who_has_the_options(acd_daemon, demo_ami):
    d = acd_daemon
    try:
        plain, _ = await offer_dial(demo_ami, d, "a1", "", 1)
        assert plain == "mt"
        both, _ = await offer_dial(demo_ami, d, "a2", "aa,zip", 2)
        assert both == "mtb(cti-phone-ring^s^1(a2))U(cti-phone-answered^s^1(a2))"
        aa_only, _ = await offer_dial(demo_ami, d, "a1", "aa", 3)
        assert aa_only == "mtb(cti-phone-ring^s^1(a1))"
    finally:
        for agent in ("a1", "a2"):
            await demo_ami.send("Setvar", {"Variable": f"CTI_PHONE_OPTS_{agent}", "Value": ""}, shape="single")
