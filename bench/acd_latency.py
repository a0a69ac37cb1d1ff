"""Queue entry -> agent ringing, and agent free -> next caller ringing: our ACD beside app_queue.

Same sandbox, same five simulated agents, same callers, one run:

1. **app_queue**: no ACD heartbeat, so the dialplan sends callers to the
   ``cti-fallback`` queue (strategy rrmemory, autofill=yes, the agents as
   static members).
2. **our ACD**: the daemon runs in this process with ``bench/acd-bench.toml``
   (one queue, the five agents, no wrap-up: the same work as app_queue does).

Every time is taken from Asterisk's own event timestamps (``timestampevents``):
queue entry is ``QueueCallerJoin`` (app_queue) or ``UserEvent CtiAcdWait``
(ours); ringing is the caller's ``DialBegin`` towards the agent; an agent is
free when its Local leg's ``Hangup`` arrives.

Scenarios per router:
- *agents free*: N callers arriving 0.3 s apart, talk 1 s: someone is always free.
- *agents busy*: a burst of 40 callers at once onto 5 agents talking 1 s.

    scripts/asterisk-sandbox up
    .venv/bin/python bench/acd_latency.py [--calls 200]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from api.app import build  # noqa: E402
from cti.ami import AmiClient  # noqa: E402
from cti.config import load_settings  # noqa: E402
from cti.demo import DEMO_SECRET, DEMO_USER, place_call, set_demo_times  # noqa: E402

BENCH_ACD = ROOT / "bench" / "acd-bench.toml"


class Recorder:
    """Collects the events that time a call, keyed by the caller's Uniqueid."""

    def __init__(self) -> None:
        self.entry: dict[str, float] = {}
        self.ring: dict[str, float] = {}
        self.rings: list[tuple[float, str, str]] = []     # (t, agent, caller)
        self.freed: list[tuple[float, str]] = []          # (t, agent)

    def __call__(self, frame) -> None:
        h = frame.headers
        name = h.get("Event")
        ts = h.get("Timestamp")
        if ts is None:
            return
        t = float(ts)
        if name == "QueueCallerJoin" or (name == "UserEvent" and h.get("UserEvent") == "CtiAcdWait"):
            self.entry.setdefault(h["Uniqueid"], t)
        elif name == "DialBegin" and "Uniqueid" in h and h.get("DestChannel", "").startswith("Local/agent"):
            caller = h["Uniqueid"]
            self.ring.setdefault(caller, t)
            self.rings.append((t, _agent(h["DestChannel"]), caller))
        elif name == "Hangup" and h.get("Channel", "").startswith("Local/agent") and h["Channel"].endswith(";1"):
            self.freed.append((t, _agent(h["Channel"])))

    def entry_to_ring(self, ids: list[str]) -> list[float]:
        return [self.ring[i] - self.entry[i] for i in ids if i in self.ring and i in self.entry]

    def free_to_ring(self, ids: set[str]) -> list[float]:
        """For each agent freed while callers of ``ids`` waited: time to its next ring."""
        out = []
        for t_free, agent in self.freed:
            waiting = [c for c in ids if c in self.entry and self.entry[c] < t_free
                       and self.ring.get(c, float("inf")) > t_free]
            if not waiting:
                continue
            nxt = [t for t, a, c in self.rings if a == agent and t >= t_free and c in ids]
            if nxt:
                out.append(min(nxt) - t_free)
        return out


def _agent(channel: str) -> str:
    return channel.split("/", 1)[1].split("@", 1)[0]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def scenario(ami: AmiClient, rec: Recorder, *, calls: int, gap: float, tag: str) -> list[str]:
    ids = []
    for n in range(calls):
        p = await place_call(ami, caller_num=f"+100{n:05d}", caller_name=f"{tag} {n}", patience=300,
                             context="cti-demo-direct", variables={"CTI_QUEUE": "bench"})
        ids.append(p.channel_id)
        if gap:
            await asyncio.sleep(gap)
    # Wait until every caller has rung an agent and the agents are free again.
    for _ in range(600):
        if all(i in rec.ring for i in ids):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)
    return ids


async def run_router(router: str, calls: int, burst: int) -> dict[str, list[float]]:
    ami = AmiClient("127.0.0.1", 5038, DEMO_USER, DEMO_SECRET)
    rec = Recorder()
    ami.add_listener(rec)
    await ami.start()
    await ami.wait_connected(15)
    try:
        await set_demo_times(ami, ring=(0, 0), talk=(1, 1))
        if router == "ours":
            with tempfile.TemporaryDirectory() as tmp:
                # No database URL: the embedded PostgreSQL in a throwaway directory.
                settings = load_settings(acd_config=BENCH_ACD, http_port=0, state_dir=Path(tmp), hooks=False,
                                         log_level="warning", log_format="json")
                runner = web.AppRunner(build(settings), handle_signals=False, access_log=None)
                await runner.setup()
                try:
                    await asyncio.sleep(3)  # heartbeat set, agents logged in
                    free_ids = await scenario(ami, rec, calls=calls, gap=0.3, tag="free")
                    busy_ids = await scenario(ami, rec, calls=burst, gap=0.0, tag="busy")
                finally:
                    await runner.cleanup()
        else:
            await ami.send("Setvar", {"Variable": "CTI_ACD_HEARTBEAT", "Value": "0"}, shape="single")
            free_ids = await scenario(ami, rec, calls=calls, gap=0.3, tag="free")
            busy_ids = await scenario(ami, rec, calls=burst, gap=0.0, tag="busy")
        return {"free": rec.entry_to_ring(free_ids), "busy_entry": rec.entry_to_ring(busy_ids),
                "busy_free": rec.free_to_ring(set(busy_ids))}
    finally:
        await ami.send("Setvar", {"Variable": "CTI_ACD_HEARTBEAT", "Value": "0"}, shape="single")
        await set_demo_times(ami)
        await ami.stop()


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - |"
    ms = [v * 1000 for v in values]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.1f} ms | {pct(ms, 0.99):.1f} ms "
            f"| {max(ms):.1f} ms |")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--burst", type=int, default=40)
    args = ap.parse_args()
    results = {}
    for router in ("app_queue", "ours"):
        results[router] = await run_router(router, args.calls, args.burst)
    print(f"{args.calls} callers 0.3 s apart, then a burst of {args.burst}; 5 agents, ring 0 s, talk 1 s\n")
    print("| measure | n | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for label, key in (("queue entry -> agent ringing, agents free", "free"),
                       ("queue entry -> agent ringing, burst (includes waiting)", "busy_entry"),
                       ("agent free -> next caller ringing, callers waiting", "busy_free")):
        for router in ("app_queue", "ours"):
            print(row(f"{label}: {router}", results[router][key]))


if __name__ == "__main__":
    asyncio.run(main())
