"""A desktop and a supervisor moving to an API node that is behind them in the stream
(docs/scale-out.md, "The `seq` a client sees"; api.node_core.plan_resume).

What the 20-kill failover run showed (BENCHMARKS.md): a client moving to a node that had not
yet read the broker's stream up to the client's ``last_seq`` (restarted a moment before, or
slow) got a ``resync``, and the node then sent again, under the same numbers, what the client
already had. Here a leader daemon publishes real calls to a ``nats-server`` of the test's own;
two API nodes (``server.api_node``, in this process) read it; node 2's reading of the stream
is held (its real consumer, the messages waiting at the broker and in its subscription)
while the clients, on node 1, receive a call. They move to node 2 while it is still held,
past the node's wait: resumed, the hello at their own position and without a snapshot, no
resync. Node 2 is then let go and reads on; a second call follows. Every client's ``seq``,
from its first hello to the end, is exactly the stream's messages meant for it, once each.
"""
from __future__ import annotations

import asyncio
import json
import shutil

import aiohttp
import pytest
from aiohttp import web

nats = pytest.importorskip("nats", reason="nats-py is not installed (the 'broker' extra)")

from api.broker import BrokerFeed  # noqa: E402
from api.node import NODE  # noqa: E402
from cti.config import load_settings  # noqa: E402
from cti.demo import set_demo_times  # noqa: E402
from server import api_node  # noqa: E402
from tests.integration.conftest import eventually, free_port, hangup_all  # noqa: E402
from tests.integration.test_api import add_user, read_until, sales_call  # noqa: E402
from tests.integration.test_api_nodes import CONTROL, events, leader_on_broker, node_ready, node_ws  # noqa: E402
from tests.integration.test_broker import _nats_server  # noqa: E402


async def start_inprocess_node(*, nats_url: str, leader: str, dsn: str, stream: str, cluster: str):
    """``cti api-node``'s application in this process on a free port: ``(runner, port)``."""
    settings = load_settings(database_url=dsn, broker_url=nats_url, node_leader_url=leader,
                             broker_stream=stream, broker_cluster=cluster, log_format="json")
    app = api_node.build(settings, await api_node.stream_id(settings))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


class Held:
    """Holds a node's reading of the stream: its feed's ``next`` waits until ``release``."""

    def __init__(self, node) -> None:
        self.node = node
        self.gate = asyncio.Event()
        self.feed = node.feed
        self.real_next = node.feed.next

        async def held_next(timeout: float):
            await self.gate.wait()
            return await self.real_next(timeout=timeout)

        node.feed.next = held_next

    def release(self) -> None:
        self.feed.next = self.real_next
        self.gate.set()


async def test_clients_moving_to_a_node_behind_them_resume_with_no_repeat_and_no_gap(
        asterisk, database, tmp_path, demo_ami):
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary")
    hangup_all()
    nport = free_port()
    broker = _nats_server(nport, tmp_path / "js")
    nats_url = f"nats://127.0.0.1:{nport}"
    stream, cluster = "CTI_BEHIND", "behind"
    runners: list[web.AppRunner] = []
    d = None
    held = None
    try:
        d = await leader_on_broker(database, tmp_path, nport, stream, cluster)
        await set_demo_times(demo_ami, ring=(0, 1), talk=(2, 3))
        for agent in ("a2", "a3", "a4", "a5"):
            d.acd.agent_request(agent, "set_not_ready", "test")
        await add_user(database, "ada", "agent", agent_id="a1")
        await add_user(database, "sam", "supervisor")
        leader = f"http://127.0.0.1:{d.settings.http_port}"
        (r1, p1), (r2, p2) = [await start_inprocess_node(nats_url=nats_url, leader=leader, dsn=database,
                                                         stream=stream, cluster=cluster) for _ in range(2)]
        runners += [r1, r2]
        node2 = r2.app[NODE]
        node2.hubs.catch_up_s = 0.5
        async with aiohttp.ClientSession() as http:
            for p in (p1, p2):
                await eventually(lambda p=p: node_ready(http, p), 30, what=f"API node on {p} ready")
            tokens = {}
            for name in ("ada", "sam"):
                async with http.post(f"http://127.0.0.1:{p1}/api/login",
                                     json={"username": name, "password": "correct horse battery"}) as r:
                    assert r.status == 200, await r.text()
                    tokens[name] = (await r.json())["token"]
            ada1, sam1 = await node_ws(http, p1, tokens["ada"]), await node_ws(http, p1, tokens["sam"])
            ada_seen: list[dict] = []
            sam_seen: list[dict] = []
            (hello_a,) = await read_until(ada1, lambda m: m["type"] == "hello", 5, ada_seen)
            (hello_s,) = await read_until(sam1, lambda m: m["type"] == "hello", 5, sam_seen)
            assert hello_a["stream"] == hello_s["stream"] == node2.hubs.hub.epoch

            # Node 2 stops reading the stream; a call goes through node 1's clients meanwhile.
            held = Held(node2)
            await asyncio.sleep(1.2)            # a next() already waiting at the broker returns first
            behind = node2.hubs.hub.head
            cid = (await sales_call(demo_ami, 41)).channel_id
            ended = lambda c: lambda m: m.get("call_id") == c and m["type"] == "call.ended"  # noqa: E731
            await read_until(ada1, ended(cid), 40, ada_seen)
            await read_until(sam1, ended(cid), 10, sam_seen)
            await ada1.send_json({"type": "ping"})          # the desktop's ping: its seq at node 1's head
            await read_until(ada1, lambda m: m["type"] == "pong", 5, ada_seen)
            await ada1.close()
            await sam1.close()
            last_a, last_s = ada_seen[-1]["seq"], events(sam_seen)[-1]["seq"]
            assert node2.hubs.hub.head == behind < min(last_a, last_s), "node 2 was meant to be behind"

            # They move to node 2, still held: past its wait, resumed at their own position.
            ada2 = await node_ws(http, p2, tokens["ada"], stream=hello_a["stream"], last_seq=last_a)
            sam2 = await node_ws(http, p2, tokens["sam"], stream=hello_s["stream"], last_seq=last_s)
            ada_more = await read_until(ada2, lambda m: m["type"] == "hello", 10, [])
            sam_more = await read_until(sam2, lambda m: m["type"] == "hello", 10, [])
            for hello, last in ((ada_more[0], last_a), (sam_more[0], last_s)):
                assert hello["resumed"] is True and hello["seq"] == last and hello["snapshot"] is None, hello
            assert node2.hubs.hub.head == behind                    # still behind when they were resumed
            async with http.get(f"http://127.0.0.1:{p2}/healthz") as r:
                health = (await r.json())["node"]
            assert health["resumed_ahead"] == 2 and health["stream_last"] >= last_s
            # A pong meanwhile carries the client's own position, not the node's.
            await ada2.send_json({"type": "ping"})
            await read_until(ada2, lambda m: m["type"] == "pong", 5, ada_more)
            assert ada_more[-1]["seq"] == last_a

            # A position beyond what the broker holds is refused (node 2 asks the broker).
            bogus = await node_ws(http, p2, tokens["sam"], stream=hello_s["stream"], last_seq=last_s + 10_000)
            got = await read_until(bogus, lambda m: m["type"] == "resync", 10, [])
            assert got[0]["resumed"] is False and "ahead of the stream" in got[-1]["reason"]
            await bogus.close()

            # Node 2 reads on: what it read while they had it already is not sent again.
            held.release()
            await eventually(lambda: node2.hubs.hub.head >= last_s, 20, what="node 2 caught up")
            cid2 = (await sales_call(demo_ami, 42)).channel_id
            await read_until(ada2, ended(cid2), 40, ada_more)
            await read_until(sam2, ended(cid2), 15, sam_more)
            assert not [m for m in ada_more + sam_more if m["type"] == "resync"]

        # The stream, read independently.
        nc = await nats.connect(nats_url)
        try:
            feed = BrokerFeed(nc, cluster=cluster, stream=stream)
            await feed.open()
            top = max(m["seq"] for m in events(ada_more + sam_more))
            stored = []
            while not stored or stored[-1][0].stream_seq < top:
                stored.append(await feed.next(timeout=10))
            await feed.close()
        finally:
            await nc.close()
        by_seq = {x.stream_seq: x for x, _ in stored}
        sam_seqs = [m["seq"] for m in events(sam_seen) + events(sam_more)]
        assert sam_seqs == list(range(hello_s["seq"] + 1, sam_seqs[-1] + 1))       # every message, once
        assert any(behind < s <= last_s for s in sam_seqs)                         # node 2's backlog, had on node 1
        assert any(s > last_s for s in sam_seqs)
        ada_seqs = [m["seq"] for m in events(ada_seen) + events(ada_more)]
        assert ada_seqs == [s for s in range(hello_a["seq"] + 1, ada_seqs[-1] + 1) if "a1" in by_seq[s].agents]
        for m in events(sam_seen) + events(sam_more) + events(ada_seen) + events(ada_more):
            assert {k: v for k, v in m.items() if k != "seq"} == json.loads(by_seq[m["seq"]].body_json)
        kinds = [m["type"] for m in events(ada_more) if m.get("call_id") == cid2]
        assert kinds[-1] == "call.ended"
        assert all(m["type"] in CONTROL or "seq" in m for m in ada_more + sam_more)
    finally:
        if held is not None:
            held.release()
        for r in runners:
            await r.cleanup()
        if d is not None:
            await d.stop()
        broker.terminate()
        broker.wait(10)
