"""The daemon's AMI connection drops while callers wait and agents become free: the
offers that cannot be written are nobody's fault. Before this was handled, each
failed write made its agent not ready "unreachable" and the router at once offered
the caller to the next free agent, whose write failed too: one dropped connection
(a keepalive timeout in a soak) left every free agent unreachable."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from acd.events import AgentStateChanged
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon

ACD_TEST = Path(__file__).with_name("acd-test.toml")


async def test_offers_held_back_while_the_ami_connection_is_down_go_out_when_it_is_back(
        asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST))
    acd = d.acd
    assert acd is not None
    events: list[dict[str, Any]] = []
    demo_ami.add_listener(lambda frame: events.append(dict(frame.headers)))
    try:
        await eventually(lambda: acd.epoch_in_force == 1 and acd.heartbeats > 0, timeout=10,
                         what="the ACD leads and beats")
        for a in ("a1", "a2", "a3", "a4", "a5"):
            acd.agent_request(a, "set_not_ready", "test")
        await set_demo_times(demo_ami, ring=(0, 1), talk=(30, 31))
        callers = [await place_call(demo_ami, caller_num=f"+44200000070{i}", caller_name=f"drop {i}",
                                    patience=120, context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
                   for i in range(2)]
        await eventually(lambda: all(p.channel_id in acd.calls for p in callers), timeout=10,
                         what="both callers waiting for the ACD")

        # The connection drops; in the same turn of the loop both sales agents become free.
        ami = d.core.ami
        states: list[AgentStateChanged] = []
        d.core.bus.subscribe_to(AgentStateChanged, states.append)
        ami._conn.abort("test: connection dropped")  # noqa: SLF001 - a dropped TCP session, as a keepalive timeout ends it
        acd.agent_request("a1", "set_ready")
        acd.agent_request("a2", "set_ready")
        await eventually(lambda: acd.offers_failed >= 1, timeout=5, what="an offer that could not be written")

        # Back: both callers are offered and ring their agents.
        def rang() -> set[str]:
            return {e.get("Linkedid", "") for e in events
                    if e.get("Event") == "DialBegin" and "@cti-demo-agents" in e.get("DestChannel", "")}
        await eventually(lambda: {p.channel_id for p in callers} <= rang(), timeout=20,
                         what="both callers offered after the reconnect")
        assert not acd.router.link_down
        assert [s.view for s in states if s.view.reason == "unreachable"] == []
    finally:
        await d.stop()
        await set_demo_times(demo_ami)
        hangup_all()
