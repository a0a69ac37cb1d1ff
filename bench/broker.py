"""Call events through the broker: bus -> BrokerPublisher -> NATS JetStream -> BrokerFeed.

A real ``cti.events.Bus`` carries call events a real ``CallModel`` makes from
synthetic AMI frames (a call: Newchannel, CtiInbound, Up, Hangup: 5 events,
bodies of 500-700 bytes); the publisher (``api.broker``) is subscribed to it as in
the daemon; a consumer (``BrokerFeed``, an ordered consumer from sequence 1) reads
the stream in the same process. Each run has its own stream, deleted afterwards.

Measured:
- **throughput**: ``--burst`` events published on the bus as fast as the bus takes
  them (a frame's events per publish, yielding to the loop between frames) while the
  consumer waits; time and process CPU from the first publish until the broker has
  acknowledged the last (events/s the leader can publish, and **the leader's CPU per
  event**: model, bus, publisher, nats client: everything the leader pays to hand an
  event to any number of API nodes); the time the bus spent in the publisher's
  subscriber; then the consumer reads them all (events/s read);
- **latency** at ``--rate`` events/s for ``--seconds``: from the bus publish of an
  event to the consumer's receipt of it (same process, same clock), p50/p99/max.
The follower must see no gap and no repeat, or the run fails.

    .venv/bin/python bench/broker.py [--url nats://127.0.0.1:4222] [--burst 20000] [--rate 500] [--seconds 20]
                                     [--window 64]

``--window``: publishes awaiting their acknowledgement at once (``broker_window``; 1: one at a time).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats  # noqa: E402

from api.broker import BrokerFeed, BrokerPublisher  # noqa: E402
from cti.calls import CallModel  # noqa: E402
from cti.events import Bus  # noqa: E402


def call_frames(i: int, t: float) -> list[dict[str, str]]:
    uid = f"bench-{i}"
    base = {"Uniqueid": uid, "Linkedid": uid}
    return [
        {"Event": "Newchannel", **base, "Channel": f"PJSIP/trunk-{i:08x}", "CallerIDNum": f"+4930{i:07d}",
         "CallerIDName": f"Caller {i}", "Timestamp": f"{t:.6f}"},
        {"Event": "UserEvent", "UserEvent": "CtiInbound", **base, "DID": "5000", "Timestamp": f"{t:.6f}"},
        {"Event": "Newstate", **base, "ChannelStateDesc": "Up", "Timestamp": f"{t:.6f}"},
        {"Event": "Hangup", **base, "Cause": "16", "Cause-txt": "Normal Clearing", "Timestamp": f"{t:.6f}"},
    ]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def run(url: str, burst: int, rate: float, seconds: float, window: int = 64) -> dict:
    run_id = secrets.token_hex(4)
    stream, cluster = f"CTI_BENCH_{run_id}", f"bench{run_id}"
    bus = Bus()
    model = CallModel()
    pub = BrokerPublisher(bus, url, cluster=cluster, stream=stream, buffer_max=1_000_000, window=window)
    sent_at: dict[int, float] = {}          # bus_seq -> perf_counter at publish
    spent = [0.0]
    inner = pub.on_call_event

    def timed(ev):                          # the publisher's cost on the bus, measured around it
        t0 = time.perf_counter()
        inner(ev)
        spent[0] += time.perf_counter() - t0
        sent_at[pub.bus_seq] = t0
    bus.subscribe(timed)
    pub._unsubscribe = []                    # subscribed above, through the timer
    pub._task = asyncio.create_task(pub._run())
    nc = await nats.connect(url)
    feed = BrokerFeed(nc, cluster=cluster, stream=stream)
    calls = 0

    def one_call() -> int:
        nonlocal calls
        calls += 1
        n = 0
        for h in call_frames(calls, time.time()):
            evs = model.feed(h, time.time())
            bus.publish(*evs)
            n += len(evs)
        return n

    try:
        while not pub.connected:
            await asyncio.sleep(0.05)
        await feed.open()
        # Latency at a modest rate.
        lat: list[float] = []
        received = 0
        final: list[int | None] = [None]

        async def consume() -> None:
            nonlocal received
            idle = 0
            while final[0] is None or received < final[0]:
                try:
                    d, v = await feed.next(timeout=0.5)
                except asyncio.TimeoutError:
                    idle += 1
                    if idle > 60:
                        raise SystemExit(f"stalled: received {received} of {final[0]}, publisher {pub.stats()}, "
                                         f"follower at {feed.follower.last_stream_seq}") from None
                    continue
                idle = 0
                assert v.kind == "ok", (v, d.stream_seq)
                received += 1
                lat.append(time.perf_counter() - sent_at[d.bus_seq])
        reader = asyncio.create_task(consume())
        published = 0
        t_start = time.perf_counter()
        while published < rate * seconds:
            published += one_call()
            await asyncio.sleep(max(0.0, t_start + published / rate - time.perf_counter()))
        final[0] = published
        await reader
        latency = {"events": len(lat), "rate": rate, "p50_ms": round(pct(lat, 50) * 1e3, 2),
                   "p99_ms": round(pct(lat, 99) * 1e3, 2), "max_ms": round(max(lat) * 1e3, 2),
                   "mean_ms": round(statistics.fmean(lat) * 1e3, 2)}
        # Throughput: a burst.
        spent[0] = 0.0
        first = received
        goal = received
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        while goal - first < burst:
            for _ in range(20):
                goal += one_call()
            await asyncio.sleep(0)
        bus_s = time.perf_counter() - t0
        while len(pub.outbox):
            await asyncio.sleep(0.001)
        publish_s = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        lat.clear()
        final[0] = goal
        t1 = time.perf_counter()
        await consume()
        consume_s = time.perf_counter() - t1
        n = goal - first
        throughput = {"events": n, "calls": n // 5, "window": window, "publish_s": round(publish_s, 3),
                      "publish_events_per_s": round(n / publish_s),
                      "leader_cpu_us_per_event": round(cpu / n * 1e6, 1),
                      "bus_publish_s": round(bus_s, 3),
                      "publisher_us_per_event_on_bus": round(spent[0] / n * 1e6, 1),
                      "consume_events_per_s": round(n / consume_s)}
        assert feed.follower.gaps == 0 and feed.follower.duplicates == 0
        return {"url": url, "latency": latency, "throughput": throughput,
                "outbox": pub.stats(), "follower": {"gaps": feed.follower.gaps,
                                                    "duplicates": feed.follower.duplicates}}
    finally:
        await feed.close()
        await pub.stop()
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="nats://127.0.0.1:4222")
    ap.add_argument("--burst", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--window", type=int, default=64)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.url, a.burst, a.rate, a.seconds, a.window)), indent=2))


if __name__ == "__main__":
    main()
