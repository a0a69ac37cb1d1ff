"""The event broker (docs/broker.md) with a real NATS JetStream and a real call.

The first test uses the machine's NATS on 127.0.0.1:4222, or a ``nats-server`` of its own
when that does not answer (inside scripts/test-isolated); each run has its own stream and
subjects, deleted afterwards. The
outage test runs its own ``nats-server`` on a free port (skipped when the binary is
absent), so it can start it late and stop it.
"""
from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

nats = pytest.importorskip("nats", reason="nats-py is not installed (the 'broker' extra)")

from api.broker import BROKER, BrokerFeed  # noqa: E402
from cti.demo import set_demo_times  # noqa: E402
from tests.integration.conftest import daemon_settings, eventually, free_port, hangup_all, start_daemon  # noqa: E402
from tests.integration.test_api import (  # noqa: E402
    ACD_TEST,
    add_user,
    login,
    read_until,
    sales_call,
    url,
    ws_open,
)

NATS_URL = "nats://127.0.0.1:4222"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


async def read_feed(feed: BrokerFeed, stop, timeout: float) -> list:
    """(Delivered, Verdict) pairs until ``stop(delivered)``; fail after ``timeout`` seconds."""
    out = []
    async with asyncio.timeout(timeout):
        while True:
            d, v = await feed.next(timeout=timeout)
            out.append((d, v))
            if stop(d):
                return out


async def test_a_consumer_reads_a_calls_events_in_order_as_a_websocket_client_does_and_resumes_without_gap(
        asterisk, database, tmp_path, demo_ami):
    own = None
    nats_url = NATS_URL
    if not _answers("127.0.0.1", 4222):
        # No machine broker (scripts/test-isolated's namespace has only loopback): one of our own.
        if shutil.which("nats-server") is None:
            pytest.skip("no NATS on 127.0.0.1:4222 and no nats-server binary")
        port = free_port()
        own = _nats_server(port, tmp_path / "js")
        nats_url = f"nats://127.0.0.1:{port}"
        await eventually(lambda: _answers("127.0.0.1", port), 10, what="nats-server listening")
    hangup_all()
    run = secrets.token_hex(4)
    stream, cluster = f"CTI_TEST_{run}", f"t{run}"
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           broker_url=nats_url, broker_stream=stream, broker_cluster=cluster))
    nc = await nats.connect(nats_url)
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        await eventually(lambda: d.runner.app[BROKER].connected, 10, what="the publisher connected")
        await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
        for agent in ("a2", "a3", "a4", "a5"):
            d.acd.agent_request(agent, "set_not_ready", "test")
        await add_user(database, "sam", "supervisor")
        async with aiohttp.ClientSession() as http:
            ws = await ws_open(http, d, await login(http, d, "sam"))
            await read_until(ws, lambda m: m["type"] == "hello", 5, [])
            placed = await sales_call(demo_ami, 8)
            cid = placed.channel_id
            seen = await read_until(ws, lambda m: m.get("call_id") == cid and m["type"] == "call.ended", 40, [])
            await ws.close()
            async with http.get(url(d, "/metrics")) as r:
                metrics = await r.text()
        assert "cti_broker_connected 1.0" in metrics
        pushed = [{k: v for k, v in m.items() if k != "seq"} for m in seen
                  if m.get("call_id") == cid and "call_seq" in m]

        feed = BrokerFeed(nc, cluster=cluster, stream=stream)
        await feed.open()
        got = await read_feed(feed, lambda x: x.body.get("call_id") == cid and x.body["type"] == "call.ended", 20)
        await feed.close()
        assert [v.kind for _, v in got] == ["ok"] * len(got)          # no gap, no repeat
        assert [x.stream_seq for x, _ in got] == list(range(1, len(got) + 1))
        assert [x.bus_seq for x, _ in got] == list(range(1, len(got) + 1))
        # The call's events: the same bodies, in the same order, as the WebSocket client got.
        brokered = [x.body for x, _ in got if x.body.get("call_id") == cid and "call_seq" in x.body]
        assert brokered == pushed
        kinds = [b["type"] for b in brokered]
        assert kinds.index("call.queued") < kinds.index("acd.offer") < kinds.index("call.connected")
        # The agent who took it: its state changes went too, to its own subject, naming it.
        connected = next(b for b in brokered if b["type"] == "call.connected")
        agent = connected["data"]["agent"]
        states = [x for x, _ in got if x.body["type"] == "agent.state" and x.body["agent_id"] == agent]
        assert states and all(x.subject == f"cti.{cluster}.agent.{agent}" and x.agents == {agent} for x in states)
        assert any(s.body.get("call_id") == cid for s in states)

        # A consumer that stored the stream sequence of the call's offer resumes after it.
        mark = next(x.stream_seq for x, _ in got if x.body["type"] == "acd.offer" and x.body["call_id"] == cid)
        later = BrokerFeed(nc, cluster=cluster, stream=stream, after=mark)
        await later.open()
        rest = await read_feed(later, lambda x: x.stream_seq == got[-1][0].stream_seq, 20)
        await later.close()
        assert [v.kind for _, v in rest] == ["ok"] * len(rest)
        assert [(x.stream_seq, x.body_json) for x, _ in rest] == [
            (x.stream_seq, x.body_json) for x, _ in got if x.stream_seq > mark]
    finally:
        await d.stop()
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()
            if own is not None:
                own.terminate()
                own.wait(10)


def _nats_server(port: int, store: Path) -> subprocess.Popen:
    return subprocess.Popen([shutil.which("nats-server") or "nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_a_broker_that_is_away_neither_blocks_nor_breaks_the_daemon(asterisk, database, tmp_path, demo_ami):
    """Events are held while the broker is away (up to broker_buffer_max, the rest dropped and
    counted), the call goes on and reaches the database and WebSocket clients, and what was
    held reaches the broker, in order, once it is up; the consumer sees where the drop was."""
    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary to start and stop a broker of the test's own")
    hangup_all()
    port = free_port()
    stream, cluster = "CTI_OUTAGE", "outage"
    d = await start_daemon(daemon_settings(database, tmp_path, broker_url=f"nats://127.0.0.1:{port}",
                                           broker_stream=stream, broker_cluster=cluster, broker_buffer_max=4))
    server = None
    nc = None
    try:
        pub = d.runner.app[BROKER]
        ended: list[str] = []
        d.core.bus.subscribe(lambda ev: ended.append(ev.call_id) if ev.kind == "call.ended" else None)
        cid = (await demo_ami_call(demo_ami, 1)).channel_id
        # The daemon follows the call to its end as if no broker were configured.
        await eventually(lambda: cid in ended, 30, what="the call over")
        assert not pub.connected and pub.failures > 0
        assert len(pub.outbox) == 4 and pub.outbox.dropped == pub.outbox.offered - 4 > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(url(d, "/metrics")) as r:
                metrics = await r.text()
            async with http.get(url(d, "/healthz")) as r:
                health = await r.json()
        # Healthy all the same (the events are held), and the broker's part says why it waits.
        assert r.status == 200 and health["ok"]
        assert (health["broker"]["connected"], health["broker"]["buffered"]) == (0, 4)
        assert "cti_broker_connected 0.0" in metrics
        assert "cti_broker_buffered_messages 4.0" in metrics
        assert f"cti_broker_dropped_total {float(pub.outbox.dropped)}" in metrics
        held = [env.bus_seq for env in list(pub.outbox._q)]
        assert held == [1, 2, 3, 4]

        # A bound of 4 also drops from a burst (one AMI frame's events) while connected:
        # raise it for the rest, so the only hole left is the outage's.
        pub.outbox.limit = 1000
        dropped = pub.outbox.dropped
        server = _nats_server(port, tmp_path / "js")
        await eventually(lambda: pub.connected and len(pub.outbox) == 0, 20, what="the held events published")
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        feed = BrokerFeed(nc, cluster=cluster, stream=stream)
        await feed.open()
        first = await read_feed(feed, lambda x: x.stream_seq == 4, 10)
        assert [(x.bus_seq, v.kind) for x, v in first] == [(1, "ok"), (2, "ok"), (3, "ok"), (4, "ok")]
        assert first[0][0].body["type"] == "call.started" and first[0][0].body["call_id"] == cid
        # The next call goes straight through; the consumer is told what was dropped between.
        second = (await demo_ami_call(demo_ami, 2)).channel_id
        after = await read_feed(feed, lambda x: x.body.get("call_id") == second and x.body["type"] == "call.ended", 30)
        assert (after[0][1].kind, after[0][1].missing) == ("bus_gap", dropped)
        assert [v.kind for _, v in after[1:]] == ["ok"] * (len(after) - 1)
        assert pub.outbox.dropped == dropped
        kinds = [x.body["type"] for x, _ in after if x.body.get("call_id") == second]
        assert kinds[0] == "call.started" and kinds[-1] == "call.ended"
        await feed.close()
        await nc.close()
        nc = None

        # The broker restarts (its store kept) while a call goes on: the publisher's client
        # reconnects by itself and nothing is lost, repeated or reordered.
        last = after[-1][0]
        server.terminate()
        server.wait(10)
        third = (await demo_ami_call(demo_ami, 3)).channel_id
        await eventually(lambda: third in ended, 30, what="the third call over")
        assert len(pub.outbox) > 0 and not pub.connected
        server = _nats_server(port, tmp_path / "js")
        await eventually(lambda: pub.connected and len(pub.outbox) == 0, 20, what="the held events published")
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        resumed = BrokerFeed(nc, cluster=cluster, stream=stream, after=last.stream_seq)
        resumed.follower.last_bus[last.origin] = last.bus_seq
        await resumed.open()
        rest = await read_feed(resumed, lambda x: x.body.get("call_id") == third and x.body["type"] == "call.ended",
                               20)
        await resumed.close()
        assert [v.kind for _, v in rest] == ["ok"] * len(rest)
        assert [x.bus_seq for x, _ in rest] == list(range(last.bus_seq + 1, last.bus_seq + 1 + len(rest)))
        assert pub.outbox.dropped == dropped
    finally:
        await d.stop()
        if nc is not None:
            await nc.close()
        if server is not None:
            server.terminate()
            server.wait(10)


async def demo_ami_call(demo_ami, n: int):
    """A caller the sandbox answers and hangs up by itself (no ACD needed)."""
    from tests.integration.test_api import place_call
    return await place_call(demo_ami, caller_num=f"+4421{n:07d}", caller_name=f"Caller {n}", patience=3,
                            context="cti-demo-direct")
