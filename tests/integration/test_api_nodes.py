"""Stateless API nodes (docs/scale-out.md): a leader daemon, a real NATS JetStream, two
``cti api-node`` processes; a desktop and a supervisor move from a killed node to the other
and resume with their ``seq`` contiguous.

The test runs its own ``nats-server`` on a free loopback port (skipped when the binary is
absent), so it runs inside ``scripts/test-isolated`` too, where the machine's brokers are not
reachable; its stream and subjects are its own.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

nats = pytest.importorskip("nats", reason="nats-py is not installed (the 'broker' extra)")

from api.auth import ROLES  # noqa: E402
from api.broker import BROKER, BrokerFeed  # noqa: E402
from api.node_routes import setup_node_reads  # noqa: E402
from api.registry import API  # noqa: E402
from api.wallboard_service import WALLBOARD  # noqa: E402
from cti.demo import set_demo_times  # noqa: E402
from tests.integration.conftest import ROOT, daemon_settings, eventually, free_port, hangup_all, start_daemon  # noqa: E402
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, read_until, sales_call  # noqa: E402
from tests.integration.test_api_matrix import expired_session  # noqa: E402
from tests.integration.test_broker import _answers, _nats_server, demo_ami_call  # noqa: E402

# Messages that carry a seq but are not events of the stream (no number of their own).
CONTROL = {"hello", "resync", "pong", "error", "wallboard"}


def start_node(port: int, *, nats_url: str, leader: str, dsn: str, stream: str, cluster: str,
               log: Path) -> subprocess.Popen:
    env = {**os.environ, "CTI_HTTP_PORT": str(port), "CTI_BROKER_URL": nats_url, "CTI_NODE_LEADER_URL": leader,
           "CTI_DATABASE_URL": dsn, "CTI_BROKER_STREAM": stream, "CTI_BROKER_CLUSTER": cluster,
           "CTI_LOG_FORMAT": "json", "CTI_LOG_LEVEL": "warning"}
    with open(log, "wb") as out:     # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "server.cli", "api-node"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def node_ready(http: aiohttp.ClientSession, port: int) -> bool:
    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status == 200 and (await r.json())["node"]["ready"]


async def node_ws(http, port: int, token: str, **resume):
    ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5))
    await ws.send_json({"type": "auth", "token": token, **resume})
    return ws


async def leader_on_broker(database: str, tmp_path: Path, nport: int, stream: str, cluster: str):
    """A leader daemon (the sandbox Asterisk, ``ACD_TEST``) publishing to the nats-server on
    ``nport`` once it listens; returned when its ACD runs and its publisher is connected."""
    await eventually(lambda: _answers("127.0.0.1", nport), 10, what="nats-server listening")
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           broker_url=f"nats://127.0.0.1:{nport}", broker_stream=stream,
                                           broker_cluster=cluster))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        await eventually(lambda: d.runner.app[BROKER].connected, 10, what="the publisher connected")
    except BaseException:
        await d.stop()
        raise
    return d


def show_node_logs(tmp_path: Path) -> None:
    """The nodes' logs, printed (pytest shows them when the test fails)."""
    for f in sorted(tmp_path.glob("node-*.log")):
        print(f"--- {f.name}:\n{f.read_text(errors='replace')[-4000:]}")


def stop_node(node: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s, if it still runs."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()


def events(seen: list[dict]) -> list[dict]:
    return [m for m in seen if m["type"] not in CONTROL]


async def test_desktops_move_from_a_killed_api_node_to_another_and_resume_without_gap_or_repeat(
        asterisk, database, tmp_path, demo_ami):
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary")
    hangup_all()
    nport = free_port()
    broker = _nats_server(nport, tmp_path / "js")
    nats_url = f"nats://127.0.0.1:{nport}"
    stream, cluster = "CTI_NODES", "east"
    nodes: list[subprocess.Popen] = []
    d = None
    try:
        d = await leader_on_broker(database, tmp_path, nport, stream, cluster)
        await set_demo_times(demo_ami, ring=(0, 1), talk=(4, 5))
        for agent in ("a2", "a3", "a4", "a5"):
            d.acd.agent_request(agent, "set_not_ready", "test")
        await add_user(database, "ada", "agent", agent_id="a1")
        await add_user(database, "sam", "supervisor")
        leader = f"http://127.0.0.1:{d.settings.http_port}"
        p1, p2 = free_port(), free_port()
        for p in (p1, p2):
            nodes.append(start_node(p, nats_url=nats_url, leader=leader, dsn=database, stream=stream, cluster=cluster,
                                    log=tmp_path / f"node-{p}.log"))
        async with aiohttp.ClientSession() as http:
            for p in (p1, p2):
                await eventually(lambda p=p: node_ready(http, p), 30, what=f"API node on {p} ready")
            # Logins go through node 1 to the leader (forwarded with what the client sent).
            tokens = {}
            for name in ("ada", "sam"):
                async with http.post(f"http://127.0.0.1:{p1}/api/login",
                                     json={"username": name, "password": "correct horse battery"}) as r:
                    assert r.status == 200, await r.text()
                    tokens[name] = (await r.json())["token"]
            async with http.get(f"http://127.0.0.1:{p1}/api/acd/state") as r:
                assert r.status == 401                         # no credential: refused, as the leader would
            ada1, sam1 = await node_ws(http, p1, tokens["ada"]), await node_ws(http, p1, tokens["sam"])
            ada_seen: list[dict] = []
            sam_seen: list[dict] = []
            (hello_a,) = await read_until(ada1, lambda m: m["type"] == "hello", 5, ada_seen)
            (hello_s,) = await read_until(sam1, lambda m: m["type"] == "hello", 5, sam_seen)
            assert hello_a["stream"] == hello_s["stream"] and hello_a["scope"]["agent_id"] == "a1"
            start_seq = hello_s["seq"]

            placed = await sales_call(demo_ami, 31)
            cid = placed.channel_id
            connected = lambda m: m.get("call_id") == cid and m["type"] == "call.connected"  # noqa: E731
            await read_until(ada1, connected, 40, ada_seen)
            await read_until(sam1, connected, 10, sam_seen)

            # Node 1 dies mid-call; the call goes on meanwhile.
            nodes[0].send_signal(signal.SIGKILL)
            nodes[0].wait(10)
            last_a, last_s = ada_seen[-1]["seq"], sam_seen[-1]["seq"]
            await asyncio.sleep(1.0)

            ada2 = await node_ws(http, p2, tokens["ada"], stream=hello_a["stream"], last_seq=last_a)
            sam2 = await node_ws(http, p2, tokens["sam"], stream=hello_s["stream"], last_seq=last_s)
            ended = lambda m: m.get("call_id") == cid and m["type"] == "call.ended"  # noqa: E731
            ada_more = await read_until(ada2, ended, 30, [])
            sam_more = await read_until(sam2, ended, 30, [])
            assert ada_more[0]["type"] == "hello" and ada_more[0]["resumed"] is True, ada_more[:2]
            assert sam_more[0]["type"] == "hello" and sam_more[0]["resumed"] is True, sam_more[:2]

            # A command through node 2 (the agent's own credential): the leader acts, the
            # state change comes back through the broker to the agent on node 2.
            async with http.post(f"http://127.0.0.1:{p2}/api/acd/agents/a1/state", headers=bearer(tokens["ada"]),
                                 json={"action": "not_ready", "reason": "break"}) as r:
                assert r.status == 200, await r.text()
            await read_until(ada2, lambda m: m["type"] == "agent.state" and (m["state"] == "not_ready" or bool(m["pending"])),
                             15, ada_more)
            # The wallboard the leader built reaches the supervisor on node 2 (no node builds one).
            boards = await read_until(sam2, lambda m: m["type"] == "wallboard", 15, [])
            assert boards[-1]["at"] <= d.runner.app[WALLBOARD].snapshot["at"]
            sam_more += boards

            # The broker restarts (its store kept) while a second call goes on: the leader holds
            # the events, the node's consumer picks up where it was, the supervisor on node 2
            # gets the call whole, numbers still contiguous.
            pub = d.runner.app[BROKER]
            broker.terminate()
            broker.wait(10)
            cid2 = (await demo_ami_call(demo_ami, 33)).channel_id
            await eventually(lambda: not pub.connected and len(pub.outbox) > 0, 20, what="events held by the leader")
            broker = _nats_server(nport, tmp_path / "js")
            more2 = await read_until(sam2, lambda m: m.get("call_id") == cid2 and m["type"] == "call.ended", 60, [])
            sam_more += more2
            kinds2 = [m["type"] for m in events(more2) if m.get("call_id") == cid2]
            assert kinds2[0] == "call.started" and kinds2[-1] == "call.ended"
            async with http.get(f"http://127.0.0.1:{p2}/healthz") as r:
                health = await r.json()
            assert health["node"]["boards"] >= 1 and health["node"]["gaps"] == 0
            assert health["node"]["resubscribed"] >= 1      # its consumer made again after the restart

        # What the stream holds, read independently.
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
        assert all(v.kind == "ok" for _, v in stored)
        by_seq = {x.stream_seq: x for x, _ in stored}

        sam_events = events(sam_seen) + events(sam_more)
        sam_seqs = [m["seq"] for m in sam_events]
        # The supervisor's stream is the broker stream: contiguous across the move, once each.
        assert sam_seqs == list(range(start_seq + 1, sam_seqs[-1] + 1))
        assert any(s <= last_s for s in sam_seqs) and any(s > last_s for s in sam_seqs)
        # The agent's: exactly the stream's messages that concern a1, in order, once each.
        ada_seqs = [m["seq"] for m in events(ada_seen) + events(ada_more)]
        top_a = ada_seqs[-1]
        assert ada_seqs == [s for s in range(hello_a["seq"] + 1, top_a + 1) if "a1" in by_seq[s].agents]
        # Byte for byte the bodies the leader published.
        for m in sam_events + events(ada_seen) + events(ada_more):
            assert {k: v for k, v in m.items() if k != "seq"} == json.loads(by_seq[m["seq"]].body_json)
        kinds = [m["type"] for m in events(ada_more)]
        assert "call.ended" in kinds and kinds[-1] == "agent.state"
    finally:
        show_node_logs(tmp_path)
        for n in nodes:
            stop_node(n)
        if d is not None:
            await d.stop()
        broker.terminate()
        broker.wait(10)


def node_routes() -> list:
    """The routes an API node answers itself (as ``cti api-node`` declares them)."""
    from aiohttp import web

    async def nowhere(request):      # never called: the declarations only
        raise AssertionError

    return setup_node_reads(web.Application(), nowhere, nowhere).routes


async def test_an_api_node_answers_the_polled_reads_from_the_leaders_boards_with_the_leaders_roles(
        asterisk, database, tmp_path, demo_ami):
    """GET /api/wallboard, /api/acd/state and /api/me on a node: the authorization matrix of
    each (the leader's roles for the same route), the answers from the board the leader
    published (none forwarded once the node has one), a caller waiting there as on the
    leader, and an agent's change (a write, forwarded) in the node's next picture."""
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary")
    hangup_all()
    nport = free_port()
    broker = _nats_server(nport, tmp_path / "js")
    nats_url = f"nats://127.0.0.1:{nport}"
    stream, cluster = "CTI_READS", "west"
    node = None
    d = None
    try:
        d = await leader_on_broker(database, tmp_path, nport, stream, cluster)
        for agent in ("a1", "a2", "a3", "a4", "a5"):
            d.acd.agent_request(agent, "set_not_ready", "test")      # a caller waits
        for role in ROLES:
            await add_user(database, f"r-{role}", role, "a1" if role == "agent" else None)
        p = free_port()
        base = f"http://127.0.0.1:{p}"
        node = start_node(p, nats_url=nats_url, leader=f"http://127.0.0.1:{d.settings.http_port}", dsn=database,
                          stream=stream, cluster=cluster, log=tmp_path / f"node-{p}.log")
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: node_ready(http, p), 30, what="the API node ready")
            tokens = {role: bearer(await login(http, d, f"r-{role}")) for role in ROLES}
            expired = await expired_session(http, d, database, "r-expired")
            placed = await sales_call(demo_ami, 41)
            cid = placed.channel_id
            await eventually(lambda: cid in {w.call_id for w in d.acd.router.waiting_calls()}, 20,
                             what="the caller waiting")

            async def reads() -> dict:
                async with http.get(f"{base}/healthz") as r:
                    return (await r.json())["node"]["reads"]

            async def picture_has_caller() -> bool:
                async with http.get(f"{base}/api/acd/state", headers=tokens["supervisor"]) as r:
                    return r.status == 200 and cid in {w["call_id"] for w in (await r.json())["waiting"]}

            await eventually(picture_has_caller, 15, what="the caller in the node's picture")
            before = await reads()

            # The matrix: each route the node answers itself, with the leader's roles.
            leader_roles = {(r.method, r.path): r.roles for r in d.runner.app[API].routes}
            routes = node_routes()
            assert {r.path for r in routes} == {"/api/wallboard", "/api/acd/state", "/api/me", "/api/agent/calls",
                                                "/api/mail/threads"}
            answered = 0
            for route in routes:
                assert route.roles == leader_roles[(route.method, route.path)], route.path
                for headers, what in (({}, "no credential"), (expired, "an expired session")):
                    async with http.get(base + route.path, headers=headers) as r:
                        assert r.status == 401, f"{route.path} with {what}: {r.status}"
                for role in ROLES:
                    async with http.get(base + route.path, headers=tokens[role]) as r:
                        body = await r.json()
                        want = 200 if role in route.roles else 403
                        assert r.status == want, f"{route.path} as {role}: {r.status} {body}"
                        answered += r.status == 200
                        if route.path == "/api/me" and r.status == 200:
                            assert body["name"] == f"r-{role}" and body["role"] == role
            after = await reads()
            assert after["forwarded"] == before["forwarded"]                 # none went to the leader
            assert after["served"] - before["served"] == answered           # the 401s and 403s are the wrapper's

            # The database's reads: the node's answer is the leader's.
            for path, role in (("/api/agent/calls?limit=5", "agent"), ("/api/mail/threads?state=open", "supervisor")):
                bodies = []
                for where in (base, f"http://127.0.0.1:{d.settings.http_port}"):
                    async with http.get(where + path, headers=tokens[role]) as r:
                        assert r.status == 200, await r.text()
                        bodies.append(await r.json())
                assert bodies[0] == bodies[1], path

            # The node's picture and the leader's: the same caller waiting, the same agents' states.
            async with http.get(f"{base}/api/acd/state", headers=tokens["admin"]) as r:
                on_node = await r.json()
                assert int(r.headers["Age"]) >= 0
            async with http.get(f"http://127.0.0.1:{d.settings.http_port}/api/acd/state",
                                headers=tokens["admin"]) as r:
                on_leader = await r.json()
            assert [w["call_id"] for w in on_node["waiting"]] == [w["call_id"] for w in on_leader["waiting"]]
            assert {a["agent_id"]: a["state"] for a in on_node["agents"]} == \
                {a["agent_id"]: a["state"] for a in on_leader["agents"]}
            async with http.get(f"{base}/api/wallboard", headers=tokens["supervisor"]) as r:
                board = await r.json()
            assert board["type"] == "wallboard" and "acd_state" not in board
            assert board["at"] <= d.runner.app[WALLBOARD].snapshot["at"]

            # A write through the node goes to the leader; its effect comes back in a board.
            async with http.post(f"{base}/api/acd/agents/a2/state", headers=tokens["admin"],
                                 json={"action": "ready"}) as r:
                assert r.status == 200, await r.text()

            async def a2_not_not_ready() -> bool:
                async with http.get(f"{base}/api/acd/state", headers=tokens["supervisor"]) as r:
                    state = {a["agent_id"]: a["state"] for a in (await r.json())["agents"]}
                return state["a2"] != "not_ready"

            await eventually(a2_not_not_ready, 15, what="a2's change in the node's picture")
    finally:
        show_node_logs(tmp_path)
        if node is not None:
            stop_node(node)
        if d is not None:
            await d.stop()
        hangup_all()
        broker.terminate()
        broker.wait(10)
