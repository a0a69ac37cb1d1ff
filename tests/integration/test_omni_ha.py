"""Tasks in a high-availability pair (docs/omnichannel.md, docs/ha.md): two real daemons on
one Asterisk and one PostgreSQL. A customer's web chat is filed on the leader and waits; the
standby routes no task (its chat socket and task routes answer 503); the leader is killed
and the new leader takes the waiting chat back from PostgreSQL, keeping its place ahead of
a chat filed after the takeover, and serves its transcript."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.harness import DaemonProcess, daemon_env, free_port
from tests.integration.conftest import eventually

ROUTING = """skills = ["sales"]
[[agents]]
id = "a1"
name = "Ada"
device = "Local/agent1@cti-demo-agents/n"
skills = { sales = 5 }
queues = { sales = {}, webchat = {} }
capacity = { chat = 2 }

[[queues]]
id = "sales"

[[queues]]
id = "webchat"
channel = "chat"
sl_seconds = 30
"""
START = {"type": "start", "name": "Grace", "email": "grace@example.org", "question": "Is my order on its way?"}


def _node(database: str, tmp: Path, name: str, routing: Path) -> DaemonProcess:
    state = tmp / name
    state.mkdir()
    env = daemon_env(database, state, acd_config=routing, ha_cluster="omni-pair", ha_node=name,
                     acd_announce_every=0, agi_port=free_port())
    return DaemonProcess(env, tmp / f"{name}.log")


async def _part(d: DaemonProcess, part: str) -> dict[str, Any]:
    got = await d.health()
    return {} if got is None else got[1].get(part) or {}


async def _leading(d: DaemonProcess) -> dict[str, Any] | None:
    ha = await _part(d, "ha")
    return ha if ha.get("role") == "leader" else None


async def _frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        f = await ws.receive_json(timeout=10)
        if f["type"] == kind:
            return f


@pytest.fixture
async def pair(asterisk, database, tmp_path, demo_ami):
    tmp_path.chmod(0o755)
    await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    routing = tmp_path / "acd.toml"
    routing.write_text(ROUTING)
    n1, n2 = _node(database, tmp_path, "n1", routing), _node(database, tmp_path, "n2", routing)
    try:
        await n1.start()
        await eventually(lambda: _leading(n1), timeout=20, what="n1 leading")
        await n2.start()

        async def standing_by() -> bool:
            ha = await _part(n2, "ha")
            return ha.get("role") == "standby" and ha.get("holder") == "n1"

        await eventually(standing_by, timeout=10, what="n2 a standby that has read n1's lease")
        yield n1, n2
    finally:
        for d in (n1, n2):
            if d.proc is not None and d.proc.returncode is None:
                d.send_signal(signal.SIGCONT)
            await d.stop(timeout=20)
        await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")


async def test_the_new_leader_takes_back_a_waiting_chat_and_the_standby_routes_none(pair):
    n1, n2 = pair
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        # a1 is logged out: the chat waits on the leader.
        async with http.ws_connect(n1.url + "/chat/ws") as ws:
            await ws.send_json(START)
            started = await _frame(ws, "started")
            assert started["status"] == "waiting"
            assert (await _frame(ws, "queue"))["position"] == 1
        assert (await _part(n1, "omni"))["open"] == 1
        # The standby routes nothing: its chat socket and its task list answer 503.
        standby = await _part(n2, "omni")
        assert standby["running"] is False and standby["open"] == 0
        async with http.get(n2.url + "/chat/ws") as r:
            assert r.status == 503 and "does not lead" in await r.text()
        async with http.get(n2.url + "/api/tasks") as r:
            assert r.status in (401, 503)      # no session: refused before or at the standby check

        await n1.kill()
        await eventually(lambda: _leading(n2), timeout=20, what="n2 took over")

        async def restored() -> dict[str, Any] | None:
            omni = await _part(n2, "omni")
            return omni if omni.get("running") else None

        omni = await eventually(restored, timeout=20, what="n2 routing tasks")
        assert omni["restored"] == 1 and omni["open"] == 1
        # A chat filed now waits behind the one taken back.
        async with http.ws_connect(n2.url + "/chat/ws") as ws:
            await ws.send_json({**START, "email": "linus@example.org"})
            await _frame(ws, "started")
            assert (await _frame(ws, "queue"))["position"] == 2
        async with http.get(f"{n2.url}/chat/transcript/{started['token']}") as r:
            assert r.status == 200 and "Is my order on its way?" in await r.text()
