"""Clients follow the leader (docs/ha.md, "Clients follow the leader"): a pair of real daemons
with a NATS JetStream broker of the test's own; an agent's desktop and a supervisor connected
to the standby, another supervisor to the leader; the leader is killed (SIGKILL); the standby
takes over and its publisher continues the stream: every client's ``seq`` stays contiguous
(no gap, no repeat), the one that was on the dead leader resumes on the standby.

The ``nats-server`` runs on a free loopback port (skipped when the binary is absent), so the
test runs inside ``scripts/test-isolated`` too, where the machine's brokers are not reachable.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

nats = pytest.importorskip("nats", reason="nats-py is not installed (the 'broker' extra)")

from api.broker import BrokerFeed  # noqa: E402
from bench.harness import DaemonProcess, daemon_env, free_port  # noqa: E402
from cti.demo import place_call, set_demo_times  # noqa: E402
from tests.integration.conftest import eventually, hangup_all  # noqa: E402
from tests.integration.test_api import add_user, bearer, read_until, sales_call  # noqa: E402
from tests.integration.test_broker import _answers, _nats_server  # noqa: E402
from tests.integration.test_ha import ROUTING, _role  # noqa: E402

CONTROL = {"hello", "resync", "pong", "error", "wallboard"}
CLUSTER, STREAM = "it-follow", "CTI_FOLLOW"


def _node(database: str, tmp: Path, name: str, routing: Path, port: int, peers: str, nats_url: str) -> DaemonProcess:
    state = tmp / name
    state.mkdir()
    env = daemon_env(database, state, acd_config=routing, ha_cluster=CLUSTER, ha_node=name, acd_announce_every=0,
                     agi_port=free_port(), http_port=port, ha_peers=peers, broker_url=nats_url,
                     broker_stream=STREAM, broker_cluster=CLUSTER)
    return DaemonProcess(env, tmp / f"{name}.log")


def events(seen: list[dict]) -> list[dict]:
    return [m for m in seen if m["type"] not in CONTROL]


async def _stream_ready(d: DaemonProcess) -> dict[str, Any] | None:
    got = await d.health()
    part = (got[1].get("stream") or {}) if got is not None else {}
    return part if part.get("ready") else None


async def _ws(http: aiohttp.ClientSession, d: DaemonProcess, token: str, **resume: Any):
    ws = await http.ws_connect(d.url + "/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5))
    await ws.send_json({"type": "auth", "token": token, **resume})
    return ws


async def test_clients_of_the_pair_keep_a_contiguous_seq_across_the_leaders_kill(asterisk, database, tmp_path,
                                                                                   demo_ami):
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary")
    tmp_path.chmod(0o755)
    hangup_all()
    await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    nport = free_port()
    broker = _nats_server(nport, tmp_path / "js")
    nats_url = f"nats://127.0.0.1:{nport}"
    routing = tmp_path / "acd.toml"
    routing.write_text(ROUTING)
    p1, p2 = free_port(), free_port()
    peers = f"n1=http://127.0.0.1:{p1},n2=http://127.0.0.1:{p2}"
    n1 = _node(database, tmp_path, "n1", routing, p1, peers, nats_url)
    n2 = _node(database, tmp_path, "n2", routing, p2, peers, nats_url)
    try:
        await eventually(lambda: _answers("127.0.0.1", nport), 10, what="nats-server listening")
        await set_demo_times(demo_ami, ring=(1, 1), talk=(14, 14))
        await n1.start()
        await eventually(lambda: _role(n1, "leader"), timeout=20, what="n1 leading")
        await n2.start()

        async def standing_by() -> bool:
            ha = await _role(n2, "standby")
            return ha is not None and ha["holder"] == "n1"

        await eventually(standing_by, timeout=10, what="n2 a standby that has read n1's lease")
        for d in (n1, n2):
            await eventually(lambda d=d: _stream_ready(d), timeout=20, what="the node's /ws read the stream")
        await add_user(database, "ada", "agent", agent_id="a1")
        await add_user(database, "sam", "supervisor")
        await add_user(database, "sue", "supervisor")

        async with aiohttp.ClientSession() as http:
            tokens = {}
            for name in ("ada", "sam", "sue"):
                # Logging in on the standby: forwarded to the leader (the shared database either way).
                async with http.post(n2.url + "/api/login",
                                     json={"username": name, "password": "correct horse battery"}) as r:
                    assert r.status == 200, await r.text()
                    tokens[name] = (await r.json())["token"]
            ada, sam = await _ws(http, n2, tokens["ada"]), await _ws(http, n2, tokens["sam"])
            sue = await _ws(http, n1, tokens["sue"])          # on the leader, to be moved by its death
            seen: dict[str, list[dict]] = {"ada": [], "sam": [], "sue": []}
            hellos = {}
            for name, ws in (("ada", ada), ("sam", sam), ("sue", sue)):
                (hellos[name],) = await read_until(ws, lambda m: m["type"] == "hello", 10, seen[name])
            assert hellos["ada"]["stream"] == hellos["sam"]["stream"] == hellos["sue"]["stream"]
            assert hellos["sam"]["ha"]["leading"] is False and hellos["sam"]["ha"]["leader"] == "n1"
            assert hellos["sam"]["ha"]["shared_stream"] is True and hellos["sue"]["ha"]["leading"] is True
            assert hellos["sam"]["ha"]["leader_url"] == n1.url

            # A command on the standby, with the agent's own credential: the leader acts, and
            # the state change comes back to the agent through the stream.
            for action, state in (("not_ready", "not_ready"), ("ready", "available")):
                async with http.post(n2.url + "/api/acd/agents/a1/state", headers=bearer(tokens["ada"]),
                                     json={"action": action, "reason": "break"}) as r:
                    assert r.status == 200, await r.text()
                await read_until(ada, lambda m, s=state: m["type"] == "agent.state" and m["state"] == s, 15,
                                 seen["ada"])

            first = (await sales_call(demo_ami, 41)).channel_id
            connected = lambda cid: lambda m: m.get("call_id") == cid and m["type"] == "call.connected"  # noqa: E731
            ended = lambda cid: lambda m: m.get("call_id") == cid and m["type"] == "call.ended"  # noqa: E731
            for name, ws in (("ada", ada), ("sam", sam), ("sue", sue)):
                await read_until(ws, connected(first), 40, seen[name])

            # A caller who gives up 2 s after calling: the leader dies at once, so the caller's
            # end comes between the kill and the takeover (at least a ttl less one poll and one
            # renewal: 2.5 s), seen by the standby's model only: the new leader publishes it.
            gone = (await place_call(demo_ami, caller_num="+442000000443", caller_name="gone", patience=2,
                                     context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})).channel_id
            await read_until(sam, lambda m: m.get("call_id") == gone, 10, seen["sam"])
            # The leader dies mid-call; the standby takes over; its publisher continues the stream.
            await n1.kill()
            last_sue = max(m["seq"] for m in seen["sue"])
            await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over")
            sue = await _ws(http, n2, tokens["sue"], stream=hellos["sue"]["stream"], last_seq=last_sue)
            (back,) = await read_until(sue, lambda m: m["type"] == "hello", 10, [])
            assert back["resumed"] is True and back["ha"]["leading"] is True

            # The adopted call ends, told by the new leader; a second call is routed by it.
            for name, ws in (("ada", ada), ("sam", sam), ("sue", sue)):
                await read_until(ws, ended(first), 40, seen[name])
            if not any(ended(gone)(m) for m in seen["sam"]):       # published first in the new term
                await read_until(sam, ended(gone), 20, seen["sam"])
            second = (await sales_call(demo_ami, 42)).channel_id
            for name, ws in (("ada", ada), ("sam", sam), ("sue", sue)):
                await read_until(ws, connected(second), 40, seen[name])

        # What the stream holds, read independently: two publishers, one after the other.
        nc = await nats.connect(nats_url)
        try:
            feed = BrokerFeed(nc, cluster=CLUSTER, stream=STREAM)
            await feed.open()
            top = max(m["seq"] for name in seen for m in events(seen[name]))
            stored = []
            while not stored or stored[-1][0].stream_seq < top:
                stored.append(await feed.next(timeout=10))
            await feed.close()
        finally:
            await nc.close()
        assert all(v.kind == "ok" for _, v in stored)
        by_seq = {x.stream_seq: x for x, _ in stored}
        origins = list(dict.fromkeys(x.origin for x, _ in stored))
        assert len(origins) == 2, origins          # the old leader's, then the new leader's; never mixed
        switch = min(s for s, x in by_seq.items() if x.origin == origins[1])
        assert all(x.origin == origins[0] for s, x in by_seq.items() if s < switch)

        # The caller's end, which only the standby's model saw, published by the new leader, once.
        gone_ends = [m["seq"] for m in seen["sam"] if m.get("call_id") == gone and m["type"] == "call.ended"]
        assert len(gone_ends) == 1 and gone_ends[0] >= switch
        assert "call ends the old leader did not publish" in n2.log_path.read_text(errors="replace")
        for name in ("sam", "sue"):       # supervisors: every message of the stream, once each, in order
            seqs = [m["seq"] for m in events(seen[name])]
            assert seqs == list(range(hellos[name]["seq"] + 1, seqs[-1] + 1)), name
            assert seqs[0] < switch <= seqs[-1]      # across the takeover
        ada_seqs = [m["seq"] for m in events(seen["ada"])]
        assert ada_seqs == [s for s in range(hellos["ada"]["seq"] + 1, ada_seqs[-1] + 1) if "a1" in by_seq[s].agents]
        assert ada_seqs[0] < switch <= ada_seqs[-1]
        for name in seen:                 # byte for byte what the leaders published
            for m in events(seen[name]):
                assert {k: v for k, v in m.items() if k != "seq"} == json.loads(by_seq[m["seq"]].body_json)
    finally:
        for d in (n1, n2):
            await d.stop(timeout=20)
        for f in sorted(tmp_path.glob("n?.log")):      # shown by pytest when the test fails
            print(f"--- {f.name}:\n{f.read_text(errors='replace')[-4000:]}")
        hangup_all()
        await set_demo_times(demo_ami)
        await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.send_signal(signal.SIGKILL)
