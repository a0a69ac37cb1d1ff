"""Queue entry -> agent ringing, and agent free -> next caller ringing: our ACD beside app_queue.

Same sandbox, same five simulated agents, same callers, one run:

1. **app_queue**: no ACD heartbeat, so the dialplan sends callers to the
   ``cti-fallback`` queue (strategy rrmemory, autofill=yes, the agents as
   static members).
2. **our ACD**: the daemon as it runs in production, ``cti serve`` in its own
   process (``bench.harness.DaemonProcess``, an embedded or scratch PostgreSQL),
   with ``bench/acd-bench.toml`` (one queue, the five agents, no wrap-up: the
   same work as app_queue does). ``--baseline-source DIR`` runs a second daemon
   from another checkout (e.g. ``git archive <commit>``) right after, on the
   same callers and sandbox: a before/after in one run. ``--in-process`` runs
   the daemon inside this process instead, sharing its event loop and its
   console logging (how this bench ran until the figures of issue 26: kept to
   show what that cost).
3. **pair** (``--routers ours,pair``): the same daemon as a leader with a standby
   (``ha_cluster``, docs/ha.md), on one database: the leader sends every routing
   Redirect through the dialplan's gate (``[cti-acd-gate]``: an Originate of two Local
   channels that checks the epoch, then ``ChannelRedirect``), a lone daemon a plain
   Redirect. Beside ``ours`` in one run, that is the gate's cost per offer.

Every time is taken from Asterisk's own event timestamps (``timestampevents``):
queue entry is ``QueueCallerJoin`` (app_queue) or ``UserEvent CtiAcdWait``
(ours); ringing is the caller's ``DialBegin`` towards the agent; an agent is
free when its Local leg's ``Hangup`` arrives. A caller counts as finding an
agent free when, at its entry, fewer than five agent legs were up (Asterisk's
view): with talk 1 s and callers 0.3 s apart some find all five busy and wait
for one, which is another measure (the burst's).

Scenarios per router:
- *agents free*: N callers arriving ``--gap`` s apart, talk 1 s.
- *agents busy*: a burst of 40 callers at once onto 5 agents talking 1 s.

``--timeline``: the daemon logs at debug; for each offer made at a caller's
arrival it gives the steps (ms after the ``CtiAcdWait`` timestamp): this
process's own AMI session receiving the UserEvent (the delivery), the ACD
receiving ``call.queued``, Setvar + Redirect written, the Redirect's reply,
``DialBegin``; and for each agent freed in the burst while callers waited, the
same steps after the agent leg's ``Hangup`` (the ACD told the agent left instead
of the arrival).

    scripts/run-isolated lat .venv/bin/python bench/acd_latency.py [--calls 200] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from acd.ami_actions import heartbeat_in_force  # noqa: E402
from bench.harness import DaemonProcess, HarnessError, free_port, scratch_database  # noqa: E402
from bench.load_daemon import load_daemon_env, wait_agents  # noqa: E402
from cti.ami import AmiClient  # noqa: E402
from cti.demo import DEMO_USER, demo_secret, place_call, set_demo_times  # noqa: E402

BENCH_ACD = ROOT / "bench" / "acd-bench.toml"
AGENTS = 5


class Recorder:
    """Collects the events that time a call, keyed by the caller's Uniqueid."""

    def __init__(self) -> None:
        self.entry: dict[str, float] = {}
        self.entry_free: dict[str, bool] = {}         # an agent leg was down at entry
        self.received: dict[str, float] = {}          # our clock when the entry event reached us
        self.ring: dict[str, float] = {}
        self.redirected: dict[str, float] = {}        # the caller's music stopped: our Redirect taken
        self.rings: list[tuple[float, str, str]] = []     # (t, agent, caller)
        self.freed: list[tuple[float, str]] = []          # (t, agent)
        self.freed_received: list[float] = []             # our clock when each of those reached us
        self.busy: dict[str, int] = {}                    # agent -> legs up

    def __call__(self, frame) -> None:
        h = frame.headers
        name = h.get("Event")
        ts = h.get("Timestamp")
        if ts is None:
            return
        t = float(ts)
        if name == "QueueCallerJoin" or (name == "UserEvent" and h.get("UserEvent") == "CtiAcdWait"):
            uid = h["Uniqueid"]
            if uid not in self.entry:
                self.entry[uid] = t
                self.received[uid] = time.time()
                self.entry_free[uid] = sum(1 for n in self.busy.values() if n) < AGENTS
        elif name == "DialBegin" and "Uniqueid" in h and h.get("DestChannel", "").startswith("Local/agent"):
            caller, agent = h["Uniqueid"], _agent(h["DestChannel"])
            self.busy[agent] = self.busy.get(agent, 0) + 1
            self.ring.setdefault(caller, t)
            self.rings.append((t, agent, caller))
        elif name == "MusicOnHoldStop" and h.get("Uniqueid") in self.entry and h["Uniqueid"] not in self.ring:
            self.redirected.setdefault(h["Uniqueid"], t)
        elif name == "Hangup" and h.get("Channel", "").startswith("Local/agent") and h["Channel"].endswith(";1"):
            agent = _agent(h["Channel"])
            self.busy[agent] = max(0, self.busy.get(agent, 0) - 1)
            self.freed.append((t, agent))
            self.freed_received.append(time.time())

    def entry_to_ring(self, ids: list[str], *, free_only: bool = False) -> list[float]:
        return [self.ring[i] - self.entry[i] for i in ids if i in self.ring and i in self.entry
                and (not free_only or self.entry_free.get(i))]

    def entry_to_redirect(self, ids: list[str]) -> list[float]:
        """Callers who found an agent free: entry to the moment Asterisk took our Redirect
        (the wait's music stopped: ``MusicOnHoldStop``), on Asterisk's clock."""
        return [self.redirected[i] - self.entry[i] for i in ids
                if i in self.redirected and i in self.entry and self.entry_free.get(i)]

    def free_to_ring(self, ids: set[str]) -> list[float]:
        """For each agent freed while callers of ``ids`` waited: time to its next ring."""
        return [ring - t_free for t_free, _, ring, _ in self.freed_next(ids)]

    def freed_next(self, ids: set[str]) -> list[tuple[float, float, float, str]]:
        """For each agent freed while callers of ``ids`` waited: (freed at, that Hangup
        received by us, the agent's next ring, the caller it rang for)."""
        out = []
        for (t_free, agent), received in zip(self.freed, self.freed_received):
            waiting = [c for c in ids if c in self.entry and self.entry[c] < t_free
                       and self.ring.get(c, float("inf")) > t_free]
            if not waiting:
                continue
            nxt = [(t, c) for t, a, c in self.rings if a == agent and t >= t_free and c in ids]
            if nxt:
                ring, caller = min(nxt)
                out.append((t_free, received, ring, caller))
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


@contextlib.asynccontextmanager
async def daemon_process(source: Path, log_level: str):
    """``cti serve`` from ``source`` on a scratch database; yields its log file once ready."""
    async with scratch_database(prefix="cti_load") as scratch:
        with tempfile.TemporaryDirectory(prefix="cti-acd-latency-") as tmp:
            env = load_daemon_env(Path(tmp), scratch.dsn, AGENTS, acd_config=BENCH_ACD, log_level=log_level)
            daemon = DaemonProcess(env, Path(tmp) / "daemon.log", source=source)
            try:
                await daemon.start()
                async with aiohttp.ClientSession() as http:
                    await wait_agents(daemon, http, AGENTS)
                yield daemon.log_path
            finally:
                await daemon.stop()


@contextlib.asynccontextmanager
async def daemon_pair(source: Path, log_level: str):
    """A leader and a standby (``ha_cluster``) from ``source`` on one scratch database; yields
    the leader's log file once it leads with its agents available and the standby is ready.
    Asterisk's ``CTI_ACD_EPOCH`` is cleared before and after (a lone daemon started later
    would be fenced by the pair's epoch, docs/ha.md)."""
    ami = AmiClient("127.0.0.1", 5038, DEMO_USER, demo_secret())
    await ami.start()
    await ami.wait_connected(15)
    await ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    nodes: list[DaemonProcess] = []
    try:
        async with scratch_database(prefix="cti_load") as scratch:
            with tempfile.TemporaryDirectory(prefix="cti-acd-latency-pair-") as tmp:
                for name in ("n1", "n2"):
                    work = Path(tmp) / name
                    work.mkdir()
                    env = load_daemon_env(work, scratch.dsn, AGENTS, acd_config=BENCH_ACD, log_level=log_level,
                                          ha_cluster="latency", ha_node=name, agi_port=free_port())
                    nodes.append(DaemonProcess(env, Path(tmp) / f"{name}.log", source=source))
                try:
                    leader, standby = nodes
                    await leader.start()
                    async with aiohttp.ClientSession() as http:
                        for _ in range(300):
                            got = await leader.health()
                            if got and (got[1].get("ha") or {}).get("role") == "leader":
                                break
                            await asyncio.sleep(0.1)
                        else:
                            raise HarnessError("n1 did not lead within 30 s")
                        await standby.start()
                        got = await standby.health()
                        if not got or (got[1].get("ha") or {}).get("role") != "standby":
                            raise HarnessError(f"n2 is not a standby: {got}")
                        await wait_agents(leader, http, AGENTS)
                    yield leader.log_path
                finally:
                    for d in reversed(nodes):
                        await d.stop()
    finally:
        await ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
        await ami.stop()


@contextlib.asynccontextmanager
async def daemon_in_process():
    """The daemon in this process and loop, logging as this bench always did (structlog's
    default console output, every level): the way the first figures were taken."""
    from aiohttp import web

    from server.root import build
    from cti.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        from cti import sandbox

        settings = load_settings(acd_config=BENCH_ACD, http_port=0, state_dir=Path(tmp), hooks=False,
                                 ami_secret=sandbox.secret(sandbox.DAEMON),
                                 log_level="warning", log_format="json")
        runner = web.AppRunner(build(settings), handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await asyncio.sleep(3)  # heartbeat set, agents logged in
            yield None
        finally:
            await runner.cleanup()


async def run_router(router: str, calls: int, burst: int, gap: float, *, source: Path = ROOT,
                     in_process: bool = False, timeline: bool = False, pair: bool = False) -> dict[str, Any]:
    ami = AmiClient("127.0.0.1", 5038, DEMO_USER, demo_secret())
    rec = Recorder()
    ami.add_listener(rec)
    await ami.start()
    await ami.wait_connected(15)
    log_file = None
    try:
        await set_demo_times(ami, ring=(0, 0), talk=(1, 1))
        if router == "app_queue":
            await ami.send("Setvar", {"Variable": await heartbeat_in_force(ami), "Value": "0"}, shape="single")
            free_ids = await scenario(ami, rec, calls=calls, gap=gap, tag="free")
            busy_ids = await scenario(ami, rec, calls=burst, gap=0.0, tag="busy")
        else:
            level = "debug" if timeline else "info"
            daemon = (daemon_in_process() if in_process else daemon_pair(source, level) if pair
                      else daemon_process(source, level))
            async with daemon as log_file:
                free_ids = await scenario(ami, rec, calls=calls, gap=gap, tag="free")
                busy_ids = await scenario(ami, rec, calls=burst, gap=0.0, tag="busy")
                text = log_file.read_text() if timeline and log_file else ""
                steps = offer_steps(rec, free_ids, text) if text else []
                freed = freed_steps(rec, busy_ids, text) if text else []
        out: dict[str, Any] = {
            "free": rec.entry_to_ring(free_ids, free_only=True),
            "redirect": rec.entry_to_redirect(free_ids) if router != "app_queue" else [],
            "free_all": rec.entry_to_ring(free_ids),
            "busy_entry": rec.entry_to_ring(busy_ids), "busy_free": rec.free_to_ring(set(busy_ids))}
        if router != "app_queue" and timeline:
            out["timeline"], out["timeline_freed"] = steps, freed
        return out
    finally:
        await ami.send("Setvar", {"Variable": await heartbeat_in_force(ami), "Value": "0"}, shape="single")
        await set_demo_times(ami)
        await ami.stop()


STEPS = ("delivered", "acd", "written", "replied", "redirected", "dialbegin")


def daemon_marks(log_text: str) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """From the daemon's debug lines (epoch times on this host's clock): per caller its first
    ``acd call entered``, ``acd offer written`` and ``acd offer replied``; per agent the
    times of its ``acd agent freed``."""
    seen: dict[str, dict[str, float]] = {}
    freed: dict[str, list[float]] = {}
    for line in log_text.splitlines():
        if '"acd ' not in line:
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        cid, event = d.get("call_id"), d.get("event")
        if cid is None:
            continue
        mine = seen.setdefault(cid, {})
        if event == "acd call entered":
            mine.setdefault("acd", d["entered_at"])
        elif event == "acd offer written":
            mine.setdefault("written", d["written_at"])
        elif event == "acd offer replied":
            mine.setdefault("replied", d["replied_at"])
        elif event == "acd agent freed":
            freed.setdefault(d["agent"], []).append(d["freed_at"])
    return seen, freed


def offer_steps(rec: Recorder, ids: list[str], log_text: str) -> list[dict[str, float]]:
    """Per caller who found an agent free: each step in ms after the CtiAcdWait timestamp,
    from the daemon's debug lines and Asterisk's timestamps."""
    seen, _ = daemon_marks(log_text)
    out = []
    for cid in ids:
        mine, t0 = seen.get(cid, {}), rec.entry.get(cid)
        if t0 is None or cid not in rec.ring or not rec.entry_free.get(cid) or "written" not in mine:
            continue
        row = {"delivered": rec.received[cid], **mine, "dialbegin": rec.ring[cid]}
        if cid in rec.redirected:
            row["redirected"] = rec.redirected[cid]
        out.append({k: round((row[k] - t0) * 1000, 3) for k in STEPS if k in row})
    return out


def freed_steps(rec: Recorder, ids: list[str], log_text: str) -> list[dict[str, float]]:
    """Per agent freed while callers waited (the burst): each step in ms after the agent
    leg's ``Hangup`` timestamp up to the next caller ringing that agent: the Hangup read by
    our own AMI session, the ACD told the agent left (``acd agent freed``), that caller's
    Setvar + Redirect written, the reply, the caller's music stopped, ``DialBegin``."""
    seen, freed = daemon_marks(log_text)
    out = []
    for t_free, received, ring, caller in rec.freed_next(set(ids)):
        agent = next((a for t, a, c in rec.rings if t == ring and c == caller), None)
        row: dict[str, float] = {"delivered": received, "dialbegin": ring}
        acd = [t for t in freed.get(agent or "", []) if t >= t_free]
        if acd:
            row["acd"] = min(acd)
        mine = seen.get(caller, {})
        for k in ("written", "replied"):
            if k in mine and mine[k] >= t_free:
                row[k] = mine[k]
        if caller in rec.redirected and rec.redirected[caller] >= t_free:
            row["redirected"] = rec.redirected[caller]
        out.append({k: round((row[k] - t_free) * 1000, 3) for k in STEPS if k in row})
    return out


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - |"
    ms = [v * 1000 for v in values]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.1f} ms | {pct(ms, 0.99):.1f} ms "
            f"| {max(ms):.1f} ms |")


def timeline_table(steps: list[dict[str, float]], freed: bool = False) -> str:
    title = (f"Agent-freed path, {len(steps)} agents freed while callers waited: ms after the agent leg's Hangup"
             if freed else f"Arrival path, {len(steps)} offers to a free agent: ms after the caller's CtiAcdWait timestamp")
    lines = [title, "", "| step | p50 | p90 | p99 | max |", "|---|---:|---:|---:|---:|"]
    names = {"delivered": ("Hangup" if freed else "UserEvent") + " read by a second AMI session (delivery)",
             "acd": "ACD told the agent left" if freed else "ACD receives call.queued",
             "written": "Setvar + Redirect written",
             "replied": "Redirect's reply read", "redirected": "the wait's music stops: Redirect taken (Asterisk)",
             "dialbegin": "DialBegin to the agent (Asterisk)"}
    for k in STEPS:
        v = sorted(s[k] for s in steps if k in s)
        if v:
            lines.append(f"| {names[k]} | {statistics.median(v):.2f} | {pct(v, 0.9):.2f} | {pct(v, 0.99):.2f} "
                         f"| {v[-1]:.2f} |")
    return "\n".join(lines)


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """p50/p99 in ms per router and measure (the JSON that bench-quick reads)."""
    def figures(ms: list[float]) -> dict[str, Any]:
        return ({"n": len(ms), "p50": round(statistics.median(ms), 2), "p99": round(pct(ms, 0.99), 2),
                 "max": round(max(ms), 2)} if ms else {"n": 0})

    out: dict[str, Any] = {}
    for router, res in results.items():
        for key in ("free", "redirect", "free_all", "busy_entry", "busy_free"):
            ms = [v * 1000 for v in res[key]]
            out[f"{router}.{key}"] = figures(ms)
            # The same figures over every other caller, twice: their spread is this run's noise.
            if len(ms) >= 4:
                out[f"{router}.{key}.halves"] = [figures(ms[0::2]), figures(ms[1::2])]
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--burst", type=int, default=40)
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between callers of the free scenario")
    ap.add_argument("--routers", default="app_queue,ours",
                    help="which to run, in order: app_queue, ours, baseline (--baseline-source), in-process, "
                         "pair (a leader and a standby: the gate in force)")
    ap.add_argument("--baseline-source", type=Path, help="a checkout whose daemon is the baseline ('baseline')")
    ap.add_argument("--in-process", action="store_true", help="shorthand: also run 'in-process' after 'ours'")
    ap.add_argument("--timeline", action="store_true", help="the steps of each offer (our daemon at debug)")
    ap.add_argument("--json", type=Path, help="write the summary (ms) here")
    args = ap.parse_args()
    routers = [r.strip() for r in args.routers.split(",") if r.strip()]
    if args.in_process and "in-process" not in routers:
        routers.append("in-process")
    if "baseline" in routers and args.baseline_source is None:
        ap.error("router 'baseline' needs --baseline-source")
    results: dict[str, dict[str, Any]] = {}
    labels = []
    for n, router in enumerate(routers):
        label = router if router not in routers[:n] else f"{router} ({routers[:n + 1].count(router)})"
        labels.append(label)
        if router == "app_queue":
            results[label] = await run_router("app_queue", args.calls, args.burst, args.gap)
        elif router == "ours":
            results[label] = await run_router("ours", args.calls, args.burst, args.gap, timeline=args.timeline)
        elif router == "baseline":
            results[label] = await run_router("ours", args.calls, args.burst, args.gap,
                                              source=args.baseline_source.resolve())
        elif router == "pair":
            results[label] = await run_router("ours", args.calls, args.burst, args.gap, pair=True,
                                              timeline=args.timeline)
        elif router == "in-process":
            results[label] = await run_router("ours", args.calls, args.burst, args.gap, in_process=True)
        else:
            ap.error(f"unknown router {router!r}")
    print(f"{args.calls} callers {args.gap:g} s apart, then a burst of {args.burst}; 5 agents, ring 0 s, "
          f"talk 1 s; run order: {', '.join(routers)}\n")
    print("| measure | n | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for label, key in (("queue entry -> Redirect taken by Asterisk, an agent free at entry", "redirect"),
                       ("queue entry -> agent ringing, an agent free at entry", "free"),
                       ("queue entry -> agent ringing, every caller of the free scenario", "free_all"),
                       ("queue entry -> agent ringing, burst (includes waiting)", "busy_entry"),
                       ("agent free -> next caller ringing, callers waiting", "busy_free")):
        for router in labels:
            if router.startswith("app_queue") and key == "redirect":
                continue
            print(row(f"{label}: {router}", results[router][key]))
    for label in labels:
        if args.timeline and results[label].get("timeline"):
            print(f"\n{label}:")
            print(timeline_table(results[label]["timeline"]))
        if args.timeline and results[label].get("timeline_freed"):
            print(f"\n{label}:")
            print(timeline_table(results[label]["timeline_freed"], freed=True))
    if args.json:
        out = summary(results)
        out["conditions"] = {"calls": args.calls, "burst": args.burst, "gap": args.gap, "routers": routers,
                             "loadavg": list(map(float, Path("/proc/loadavg").read_text().split()[:3]))}
        if args.timeline and results.get("ours", {}).get("timeline"):
            out["timeline"] = results["ours"]["timeline"]
            out["timeline_freed"] = results["ours"].get("timeline_freed", [])
        if args.timeline and results.get("pair", {}).get("timeline"):
            out["timeline_pair"] = results["pair"]["timeline"]
            out["timeline_freed_pair"] = results["pair"].get("timeline_freed", [])
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
