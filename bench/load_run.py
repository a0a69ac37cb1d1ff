"""One load run: the bed (scratch database, the daemon as its own process, users and
desktops, the generator's AMI watch), steps of traffic at a rate, and each step's figures
and checks; ``--ramp`` steps up, ``--soak`` samples growth.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import memtrace
from bench.harness import DaemonProcess, scratch_database
from bench.load_callers import Mix, traffic
from bench.load_checks import Watch, screenpops, step_integrity
from bench.load_day import Day, day_settings
from bench.load_daemon import daemon_wrapper, load_daemon_env, wait_agents
from bench.load_desktops import ExtraClients, WsClient, login, make_users
from bench.load_figures import (Cpu, asterisk_pid, diff, hist_quantile, lag_buckets, open_fds, pct, raise_fd_limit,
                                rss_kb, slope_per_hour, soak_verdict)
from bench.load_nodes import ApiNodes, Broker
from cti import sandbox
from cti.ami import AmiClient
from cti.demo import set_demo_times

LOAD_USER = "cti-load"


@dataclass
class Options:
    rate: float = 1.0
    duration: float = 60.0
    agents: int | None = None
    supervisors: int = 2
    ring: tuple[int, int] = (0, 1)
    talk: tuple[int, int] = (2, 6)
    mix: Mix = field(default_factory=Mix)
    seed: int = 7
    database_url: str | None = None
    sample_every: float = 10.0
    soak_csv: Path | None = None
    profile: Path | None = None       # run the daemon under cProfile, stats written here at exit
    memtrace: Path | None = None      # run the daemon under tracemalloc, heap snapshots written here
    log_level: str = "info"           # the daemon's (its default: what an installation runs)
    idle_s: float = 10.0              # CPU measured with clients connected and no calls, first
    # The daemon rolls up report history 30 s after it starts (a one-off catch-up: 400 days on a
    # fresh database); measuring starts after it, so a run does not pay the start-up.
    settle_s: float = 45.0
    ws_replay_max: int = 1000         # the daemon's ws_replay_max (events kept per stream for resume)
    # More WebSocket clients beside the agents' desktops, held by lean clients in worker processes:
    # ``extra_supervisors`` of them see everything, the rest are idle agent desktops.
    extra_clients: int = 0
    extra_supervisors: int = 0
    # More environment for the daemon's process (not CTI_ settings): MALLOC_ARENA_MAX, LD_PRELOAD...
    daemon_env: dict[str, str] = field(default_factory=dict)
    warmup_s: float | None = None     # a soak's slopes are of the samples after this (default: the second half)
    mallocstats: Path | None = None   # glibc's malloc figures every minute (bench/mallocstats.py), here
    malloc_trim: bool = False         # and malloc_trim(0) after each
    daemon_log: Path | None = None    # keep the daemon's log here (it is written in the run's scratch directory)
    # A center's day beside the calls (bench/load_day.py): recordings, callbacks, tickets, webhooks.
    day: bool = False
    # The leader publishes to a broker of the run's own and this many API nodes serve the
    # WebSockets (bench/load_nodes.py); 0: the daemon serves them itself.
    api_nodes: int = 0

    def agent_count(self, rate: float | None = None) -> int:
        if self.agents:
            return self.agents
        hold = (sum(self.ring) + sum(self.talk)) / 2 + 1
        return max(4, math.ceil((rate or self.rate) * hold * 1.5) + 2)


def _keep(log: Path, to: Path) -> None:
    if log.exists():
        shutil.copyfile(log, to)


class Bed:
    """Everything a run needs: database, daemon, users, clients, AMI watch."""

    def __init__(self, opts: Options, agents: int) -> None:
        self.opts, self.agents = opts, agents

    async def __aenter__(self) -> "Bed":
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        scratch = await self._stack.enter_async_context(scratch_database(self.opts.database_url, prefix="cti_load"))
        self.dsn = scratch.dsn
        self.workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="cti-load-")))
        if self.opts.daemon_log is not None:   # copied before the scratch directory goes
            self._stack.callback(_keep, self.workdir / "daemon.log", self.opts.daemon_log)
        # No pool limit: every WebSocket client holds a connection for the whole run.
        self.http = await self._stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        self.started = time.monotonic()
        env = load_daemon_env(self.workdir, self.dsn, self.agents, ws_replay_max=self.opts.ws_replay_max,
                              log_level=self.opts.log_level, profile_window=self.opts.profile is not None,
                              **(day_settings(self.workdir) if self.opts.day else {}))
        self.nodes: ApiNodes | None = None
        if self.opts.api_nodes:
            broker = Broker(self.workdir)
            broker.start()
            self._stack.callback(broker.stop)
            env.update(broker.leader_env())
        env.update(self.opts.daemon_env)
        self.daemon = DaemonProcess(env, self.workdir / "daemon.log",
                                    wrapper=daemon_wrapper(self.opts.profile, self.opts.memtrace,
                                                           self.opts.mallocstats, self.opts.malloc_trim))
        self._stack.push_async_callback(self.daemon.stop)
        await self.daemon.start()
        await wait_agents(self.daemon, self.http, self.agents)
        if self.opts.api_nodes:
            self.nodes = ApiNodes(self.opts.api_nodes, broker, self.daemon.url, self.dsn, self.workdir)
            self._stack.callback(self.nodes.stop)
            await self.nodes.start(self.http)
        self.cpu = Cpu(self.daemon.pid, asterisk_pid(), scratch.postmaster,
                       more=self.nodes.cpu if self.nodes is not None else None)
        self.watch = Watch(self.agents)
        # The generator's own AMI user reads only what Watch counts (asterisk-config/demo/manager-demo.conf).
        self.ami = AmiClient("127.0.0.1", 5038, LOAD_USER, sandbox.secret(sandbox.LOAD))
        self.ami.add_listener(self.watch)
        await self.ami.start()
        self._stack.push_async_callback(self.ami.stop)
        await self.ami.wait_connected(15)
        await set_demo_times(self.ami, ring=self.opts.ring, talk=self.opts.talk)
        self._stack.push_async_callback(self._restore_demo_times)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)

    async def _restore_demo_times(self) -> None:
        try:
            await set_demo_times(self.ami)
        except Exception as e:   # a saturated Asterisk: the next run sets its own times anyway
            print(f"# demo times not restored: {e}", file=sys.stderr)

    async def connect_clients(self) -> tuple[list[WsClient], list[WsClient]]:
        await make_users(self.dsn, self.agents, self.opts.supervisors)
        sem = asyncio.Semaphore(4)

        async def one(username: str, agent: str | None) -> WsClient:
            async with sem:
                token = await login(self.http, self.daemon.url, username)
            return WsClient(username, agent, token)

        agents = await asyncio.gather(*(one(f"load-agent{i}", f"agent{i}") for i in range(1, self.agents + 1)))
        sups = await asyncio.gather(*(one(f"load-sup{j}", None) for j in range(1, self.opts.supervisors + 1)))
        url = self.daemon.url.replace("http", "ws") + "/ws"
        self.client_tasks = [asyncio.create_task(c.run(self.http, self.nodes.ws_url(i) if self.nodes else url))
                             for i, c in enumerate([*agents, *sups])]
        self._stack.push_async_callback(self._stop_clients)
        for c in [*agents, *sups]:
            await asyncio.wait_for(c.connected.wait(), 30)
        return list(agents), list(sups)

    def profile_window(self) -> None:
        """Start or stop the daemon's profile (``--profile``: only the measured steps count)."""
        if self.opts.profile is not None:
            self.daemon.send_signal(signal.SIGUSR1)

    async def _stop_clients(self) -> None:
        for t in self.client_tasks:
            t.cancel()
        await asyncio.gather(*self.client_tasks, return_exceptions=True)

    async def drain(self, ids_before: int, timeout: float) -> None:
        """Wait until every caller placed so far is gone and the store has written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.watch.live:
            await asyncio.sleep(0.5)
        while time.monotonic() < deadline:
            m = await self.daemon.metrics(self.http)
            live = sum(v for k, v in m.items() if k.startswith("cti_calls{") and 'state="ended"' not in k)
            if m.get("cti_store_buffered_rows", 0) == 0 and live == 0:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)   # the writer's last batch lands


class Sampler:
    """Daemon RSS, fds, tasks, WebSocket queues every ``every`` s (CSV rows for a soak)."""

    def __init__(self, bed: Bed, every: float, csv: Path | None = None) -> None:
        self.bed, self.every, self.csv = bed, every, csv
        self.rows: list[dict[str, float]] = []
        self.rss_peak = 0
        self.t0 = time.monotonic()
        self.asterisk = asterisk_pid()

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.every)

    async def sample(self) -> None:
        await self._sample()
        if self.csv is not None:   # as it goes: a long run can be read (and plotted) before it ends
            write_csv(self.csv, self.rows)

    async def _sample(self) -> None:
        pid = self.bed.daemon.pid
        rss, _ = rss_kb(pid)
        self.rss_peak = max(self.rss_peak, rss)
        try:
            m = await self.bed.daemon.metrics(self.bed.http)
        except (aiohttp.ClientError, OSError):
            m = {}
        self.rows.append({
            "t": round(time.monotonic() - self.t0, 1), "rss_kb": rss, "fds": open_fds(pid),
            "tasks": m.get("cti_asyncio_tasks", -1), "ws_queued": m.get("cti_ws_queued_messages", -1),
            "ws_queue_max": m.get("cti_ws_queue_depth_max", -1), "ws_connections": m.get("cti_ws_connections", -1),
            "live_calls": sum(v for k, v in m.items() if k.startswith("cti_calls{") and 'state="ended"' not in k),
            "store_buffered": m.get("cti_store_buffered_rows", -1),
            "ws_replay_bytes": m.get("cti_ws_replay_bytes", -1),
            "asterisk_live_callers": len(self.bed.watch.live),
            "asterisk_rss_kb": rss_kb(self.asterisk)[0] if self.asterisk else -1,
            # A connection each sample: only for a soak (a load run samples every second, and its
            # PostgreSQL CPU is a figure of the run).
            "pg_connections": await self.pg_connections() if self.csv is not None else -1,
            "calls_total": len(self.bed.watch.accepted),
        })

    async def pg_connections(self) -> int:
        """Client backends connected to the run's database, less this one."""
        try:
            conn = await asyncpg.connect(self.bed.dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            return -1
        try:
            return await conn.fetchval("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
                                       " AND backend_type = 'client backend'")
        finally:
            await conn.close()


async def measure_step(bed: Bed, agents: list[WsClient], sups: list[WsClient], rate: float, duration: float,
                       rng: random.Random, counter: list[int], sampler: Sampler) -> dict[str, Any]:
    """Traffic at ``rate`` for ``duration``, drained; every figure of the step."""
    opts = bed.opts
    first = len(bed.watch.accepted)
    failed0 = bed.watch.originate_failed - counter[1]
    pops0 = {c.name: len(c.pops) for c in [*agents, *sups]}
    lags0 = len(sups[0].lags) if sups else 0
    m0 = await bed.daemon.metrics(bed.http)
    since = datetime.now(timezone.utc)
    cpu0, t0 = bed.cpu.read(), time.monotonic()
    bed.profile_window()
    bed.watch.peak = len(bed.watch.live)
    placed = await traffic(bed.ami, rng, opts.mix, rate, duration, counter)
    placing_s = time.monotonic() - t0
    await bed.drain(first, timeout=max(opts.mix.patience) + 60)
    cpu1, window = bed.cpu.read(), time.monotonic() - t0
    bed.profile_window()
    m1 = await bed.daemon.metrics(bed.http)
    until = datetime.now(timezone.utc)
    ids = bed.watch.accepted[first:]
    integrity = await step_integrity(bed.dsn, bed.watch.accepted, first, since, until)
    await asyncio.sleep(1)   # late screen-pops (ended phase) land
    pops = screenpops(bed.watch, ids, agents, sups, pops0)
    free, every = bed.watch.routing(ids)
    # Call events at a supervisor's client, Asterisk's timestamp to arrival, by kind: where lag comes from.
    by_kind: dict[str, list[float]] = {}
    if sups:
        for kind, lag in sups[0].lags[lags0:]:
            by_kind.setdefault(kind, []).append(lag)
    cpu = diff(cpu0, cpu1)
    answered = sum(1 for cid in ids if cid in bed.watch.ring)
    return {
        "rate_asked": rate, "agents": bed.agents, "placing_s": round(placing_s, 1), "window_s": round(window, 1),
        "placed": placed, "accepted": len(ids),
        "originate_failed": bed.watch.originate_failed + counter[1] - failed0,
        "calls_per_s": round(len(ids) / placing_s, 2), "peak_concurrent_calls": bed.watch.peak,
        "offered_to_agents": answered,
        "screenpop": pops,
        "routing": {"agent_free_n": len(free), "agent_free_p50_s": pct(free, 0.5),
                    "agent_free_p99_s": pct(free, 0.99), "all_n": len(every), "all_p50_s": pct(every, 0.5),
                    "all_p99_s": pct(every, 0.99)},
        "event_lag": {"p50_le_s": hist_quantile(lag_buckets(m0), lag_buckets(m1), 0.5),
                      "p99_le_s": hist_quantile(lag_buckets(m0), lag_buckets(m1), 0.99),
                      "at_supervisor_by_kind": {k: {"n": len(v), "p50_s": pct(v, 0.5), "p99_s": pct(v, 0.99),
                                                    "max_s": max(v)} for k, v in sorted(by_kind.items())}},
        "cpu_s": cpu,
        "cpu_ms_per_call": {k: round(v / max(1, len(ids)) * 1000, 2) for k, v in cpu.items()},
        "daemon_rss_peak_mb": round(sampler.rss_peak / 1024, 1),
        "ws": {"slow_drops": m1.get("cti_ws_slow_drops_total", 0) - m0.get("cti_ws_slow_drops_total", 0),
               "client_reconnects": sum(c.reconnects for c in [*agents, *sups]),
               "screenpops_dropped": m1.get("cti_screenpops_dropped_total", 0)
               - m0.get("cti_screenpops_dropped_total", 0),
               "lookups_late": m1.get("cti_screenpop_lookups_late_total", 0)
               - m0.get("cti_screenpop_lookups_late_total", 0)},
        "integrity": {**integrity.summary(), "ok": integrity.ok, "explain": "" if integrity.ok else integrity.explain()},
    }


def step_ok(s: dict[str, Any]) -> bool:
    lag = s["event_lag"]["p99_le_s"]
    return (s["originate_failed"] == 0 and s["integrity"]["ok"] and s["screenpop"]["missing"] == 0
            and s["screenpop"]["wrong_agent"] == 0 and (lag is None or lag <= 1.0)
            and s["calls_per_s"] >= 0.9 * s["rate_asked"])


async def run_load(opts: Options, *, ramp: list[float] | None = None, soak: bool = False,
                   partial: Path | None = None) -> dict[str, Any]:
    rates = ramp or [opts.rate]
    agents_n = opts.agent_count(max(rates))
    raise_fd_limit()
    async with Bed(opts, agents_n) as bed:
        agents, sups = await bed.connect_clients()
        extra = (await ExtraClients.start(bed.dsn, bed.daemon.url, opts.extra_clients, opts.extra_supervisors)
                 if opts.extra_clients else None)
        day = Day(bed.dsn, bed.daemon.url, bed.http) if opts.day else None
        if day is not None:
            await day.start(agents)
        sampler = Sampler(bed, opts.sample_every if soak else 1.0, opts.soak_csv if soak else None)
        sampling = asyncio.create_task(sampler.run())
        await asyncio.sleep(max(0.0, bed.started + opts.settle_s - time.monotonic()))
        idle0 = bed.cpu.read()
        await asyncio.sleep(opts.idle_s)
        idle = {k: round(v / opts.idle_s, 3) for k, v in diff(idle0, bed.cpu.read()).items()} if opts.idle_s else {}
        rng = random.Random(opts.seed)
        counter = [0, 0]
        steps = []
        try:
            for rate in rates:
                s = await measure_step(bed, agents, sups, rate, opts.duration, rng, counter, sampler)
                steps.append(s)
                if partial is not None:   # what was measured survives a run that ends badly
                    partial.write_text(json.dumps({"conditions": conditions(opts), "agents": agents_n,
                                                   "steps": steps}, indent=1, default=str))
                print(f"# step {rate}/s: {json.dumps(_short(s))}", file=sys.stderr, flush=True)
                if ramp and not step_ok(s):
                    break
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        await sampler.sample()
        extra_out = await extra.stop() if extra is not None else None
        day_out = await day.stop() if day is not None else None
    out: dict[str, Any] = {"mode": "ramp" if ramp else ("soak" if soak else "load"), "conditions": conditions(opts),
                           "agents": agents_n, "supervisors": opts.supervisors,
                           "idle_cpu_s_per_s": idle, "steps": steps}
    if extra_out is not None:
        out["extra_clients"] = extra_out
    if day_out is not None:
        out["day"] = day_out
    if soak:
        out["soak"] = soak_verdict(sampler.rows, warmup_s=opts.warmup_s)
        if opts.soak_csv is not None:
            out["soak"]["csv"] = str(opts.soak_csv)
    if opts.memtrace is not None:
        out["memtrace"] = memtrace_summary(opts.memtrace)
    if ramp:
        ok = [s for s in steps if step_ok(s)]
        out["highest_sustained_rate"] = ok[-1]["rate_asked"] if ok else None
    return out


def memtrace_summary(folder: Path) -> dict[str, Any]:
    """The traced Python heap's slope over the second half, and where it grew (bench/memtrace.py)."""
    rows = []
    with contextlib.suppress(OSError):
        for line in (folder / "traced.csv").read_text().splitlines()[1:]:
            t, traced, _ = line.split(",")
            rows.append((float(t), int(traced) / 2**20))
    half = rows[len(rows) // 2:]
    t0 = half[0][0] if half else 0.0
    return {"traced_mb": [round(v, 1) for _, v in rows],
            "traced_mb_per_h": round(slope_per_hour([(t - t0, v) for t, v in half]), 2),
            **memtrace.compare(folder)}


def _short(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("calls_per_s", "accepted", "originate_failed", "peak_concurrent_calls", "cpu_s")} | {
        "pops_missing": s["screenpop"]["missing"], "integrity_ok": s["integrity"]["ok"],
        "lag_p99_le": s["event_lag"]["p99_le_s"]}


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    with open(path, "w") as fh:
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(str(r[k]) for k in keys) + "\n")


def conditions(opts: Options) -> dict[str, Any]:
    load = os.getloadavg()
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in load], "python": sys.version.split()[0],
            "duration_s": opts.duration, "ring_s": list(opts.ring), "talk_s": list(opts.talk),
            "ivr_share": opts.mix.ivr_share, "abandon_share": opts.mix.abandon_share,
            "patience_s": list(opts.mix.patience), "abandon_patience_s": list(opts.mix.abandon_patience),
            "seed": opts.seed, "daemon_log_level": opts.log_level, "daemon_env": opts.daemon_env}
