"""Load harness: real calls through the sandbox's IVR, ACD and simulated agents.

One command drives Poisson arrivals of simulated callers (``cti.demo``: Originate
of Local channels) into the sandbox, a share of them through the IVR pressing
keys (``cti-demo-dtmf``), a share with a short patience (they abandon), onto N
simulated agents of an ACD configuration written for the run. Every agent has a WebSocket
client logged in through the API as that agent, beside a few supervisors. The
daemon runs as its own process (``cti serve``), so its CPU and memory are read
from /proc apart from this generator's, next to Asterisk's (the sandbox's pid).

    scripts/run-isolated load .venv/bin/python bench/load.py --rate 2 --duration 120
    scripts/run-isolated load .venv/bin/python bench/load.py --ramp 1,2,4,8 --duration 60
    scripts/run-isolated load .venv/bin/python bench/load.py --soak --duration 1800 --rate 1
    scripts/run-isolated load .venv/bin/python bench/load.py --fanout 2000 --duration 60

(``scripts/run-isolated`` gives the run a private sandbox and network namespace;
against an already running sandbox, run ``bench/load.py`` directly.)

What is measured, and from where:

- **screen-pop latency**: from the Asterisk event that offers the call to the
  agent (``DialBegin``: its ``Timestamp`` header, ``timestampevents = yes``;
  the card's ``offered_at`` carries it) to the ``screenpop`` message's arrival
  at that agent's WebSocket client in this process (same host clock). It
  includes the daemon's customer look-up in PostgreSQL, which the card waits
  for, and this process's own scheduling.
- **routing latency**: the caller's queue entry (``UserEvent CtiAcdWait``) to
  the caller's ``DialBegin`` towards an agent, both Asterisk timestamps; shown
  for callers who found an agent free (no agent leg up for all N agents at
  entry) and for all.
- **event lag**: the daemon's own ``cti_event_lag_seconds`` histogram over the
  run (Asterisk timestamp to its bus); quantiles are bucket bounds.
- **CPU**: utime + stime of the daemon's process, of Asterisk's, of
  PostgreSQL's processes, over the same window (first call placed to the last
  call gone); per call placed.
- **integrity** (``bench/integrity.py``): every call Asterisk accepted is in the
  database exactly once, closed, its timestamps in order; every offer
  (``DialBegin`` to an agent) gave a screen-pop at that agent's client, and
  none reached another agent.

``--ramp`` steps the rate up on one daemon and reports each step; it stops
after the first step the sandbox does not sustain (Originates refused, calls
lost, event lag p99 over 1 s, or arrivals below 90% of the rate asked).
``--soak`` samples the daemon's RSS, asyncio tasks, open fds and WebSocket
send-queue depths every ``--sample-every`` seconds into a CSV and gives a
verdict from the growth slopes; with ``--memtrace DIR`` the daemon runs under
``tracemalloc`` (``bench/memtrace.py``) and the JSON also says where its heap grew over
the second half. ``--fanout N`` connects N supervisor clients
(sessions made in the store) and measures delivery of the call events to all.

Each mode prints JSON (``--json FILE`` writes it) and a markdown table.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import secrets
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD_USER = "cti-load"

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from bench import memtrace  # noqa: E402
from bench.integrity import check, fetch_and_check  # noqa: E402
from cti import sandbox  # noqa: E402
from cti.ami import AmiClient  # noqa: E402
from cti.demo import place_call, set_demo_times  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "load-bench-password"
QUEUES = ("sales", "support", "billing")
IVR_DID = "7001"
CALL_ID = re.compile(r"^l[dv]-[0-9a-f]{16}$")       # the callers this harness places
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The IVR the callers walk: one menu, a beep, a key per queue.
IVR_TOML = f"""
[ivr]
default_queue = "support"

[entries."{IVR_DID}"]
menu = "main"

[menus.main]
prompts = ["beep"]
timeout = 3
retries = 1
invalid_prompt = "beep"

[menus.main.options]
"1" = {{ action = "queue", queue = "sales", skills = {{ sales = 1 }} }}
"2" = {{ action = "queue", queue = "support", skills = {{ support = 1 }} }}
"3" = {{ action = "queue", queue = "billing", skills = {{ billing = 1 }} }}
"""


# -- pure functions ------------------------------------------------------------------

def acd_toml(agents: int, ring_timeout_s: int = 15) -> str:
    """N agents (``agent1``..), each in the three queues with every skill, no wrap-up."""
    out = [f"skills = {json.dumps(list(QUEUES))}", ""]
    for i in range(1, agents + 1):
        out += ["[[agents]]", f'id = "agent{i}"', f'name = "Agent {i}"',
                f'device = "Local/agent{i}@cti-demo-agents/n"',
                "skills = { " + ", ".join(f"{q} = 5" for q in QUEUES) + " }",
                "queues = { " + ", ".join(f"{q} = {{}}" for q in QUEUES) + " }",
                "auto_login = true", ""]
    for q in QUEUES:
        out += ["[[queues]]", f'id = "{q}"', f'requirements = [{{ skill = "{q}", min_level = 1 }}]',
                f"ring_timeout_s = {ring_timeout_s}", "wrapup_s = 0", "preferred_agent_s = 0", ""]
    return "\n".join(out)


def pct(values: Iterable[float], q: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to ``{'name{labels}': value}`` (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


def lag_buckets(metrics: dict[str, float], name: str = "cti_event_lag_seconds") -> list[tuple[float, float]]:
    """A histogram's (by default the event lag's) ``(upper bound, cumulative count)``, in order."""
    rows = []
    for k, v in metrics.items():
        m = re.fullmatch(name + r'_bucket\{le="([^"]+)"\}', k)
        if m:
            rows.append((math.inf if m.group(1) == "+Inf" else float(m.group(1)), v))
    return sorted(rows)


def hist_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of what was counted between two reads."""
    prev = dict(before)
    rows = [(le, n - prev.get(le, 0.0)) for le, n in after]
    if not rows or rows[-1][1] <= 0:
        return None
    want = q * rows[-1][1]
    for le, n in rows:
        if n >= want:
            return le
    return math.inf


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den * 3600


def soak_verdict(rows: list[dict[str, float]], *, rss_mb_per_h: float = 8.0, tasks_per_h: float = 30.0,
                 fds_per_h: float = 30.0) -> dict[str, Any]:
    """Growth over the second half of the samples (the first half warms up): a
    leak is a steady climb, so a slope above the bound is flagged."""
    half = rows[len(rows) // 2:]
    t0 = half[0]["t"] if half else 0.0
    slopes = {
        "rss_mb_per_h": slope_per_hour([(r["t"] - t0, r["rss_kb"] / 1024) for r in half]),
        "tasks_per_h": slope_per_hour([(r["t"] - t0, r["tasks"]) for r in half]),
        "fds_per_h": slope_per_hour([(r["t"] - t0, r["fds"]) for r in half]),
    }
    bounds = {"rss_mb_per_h": rss_mb_per_h, "tasks_per_h": tasks_per_h, "fds_per_h": fds_per_h}
    growing = [k for k, v in slopes.items() if v > bounds[k]]
    return {"samples": len(rows), "slopes": {k: round(v, 2) for k, v in slopes.items()}, "bounds": bounds,
            "verdict": "growing: " + ", ".join(growing) if growing else "stable"}


def ms(v: float | None) -> str:
    return "-" if v is None else ("> 5 s" if math.isinf(v) else f"{v * 1000:.1f} ms")


# -- /proc -----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def open_fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


def children_of(ppid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{d}/stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == ppid:
                    out.append(int(d))
    return out


def asterisk_pid() -> int | None:
    root = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root"))
    with contextlib.suppress(OSError, ValueError):
        pid = int((root / "run/asterisk/sandbox.pid").read_text().split()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() == "asterisk":
            return pid
        for c in children_of(pid):
            if Path(f"/proc/{c}/comm").read_text().strip() == "asterisk":
                return c
    return None


class Cpu:
    """CPU seconds of the daemon, Asterisk, PostgreSQL (server and backends) and this process."""

    def __init__(self, daemon: int, asterisk: int | None, postmaster: int | None) -> None:
        self.daemon, self.asterisk, self.postmaster = daemon, asterisk, postmaster
        # Backends come and go: count each backend's CPU at its last sight.
        self._pg_seen: dict[int, float] = {}

    def pg(self) -> float:
        if self.postmaster is None:
            return 0.0
        for pid in [self.postmaster, *children_of(self.postmaster)]:
            c = cpu_seconds(pid)
            if c:
                self._pg_seen[pid] = max(self._pg_seen.get(pid, 0.0), c)
        return sum(self._pg_seen.values())

    def read(self) -> dict[str, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return {"daemon": cpu_seconds(self.daemon),
                "asterisk": cpu_seconds(self.asterisk) if self.asterisk else 0.0,
                "postgres": self.pg(), "generator": me.ru_utime + me.ru_stime}


def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a[k], 2) for k in a}


def raise_fd_limit(want: int = 20000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY else max(soft, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL and the daemon ---------------------------------------------------------

@contextlib.asynccontextmanager
async def scratch_database(url: str | None) -> AsyncIterator[tuple[str, int | None]]:
    """A fresh database: on ``url``'s server (or 127.0.0.1:5432) when it answers,
    else on an embedded server in a temporary directory. Yields (dsn, postmaster pid)."""
    admin = url or PG_ADMIN
    try:
        conn = await asyncpg.connect(admin, timeout=3)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        conn = None
    if conn is not None:
        name = f"cti_load_{os.getpid()}_{int(time.time())}"
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        from urllib.parse import urlsplit, urlunsplit
        dsn = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
        try:
            yield dsn, None
        finally:
            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
        return
    from cti.embedded_pg import EmbeddedPostgres

    Path("/var/tmp").mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="cti-load-pg-", dir="/var/tmp"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "data")
    dsn = await server.start()
    try:
        pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
        yield dsn, pid
    finally:
        await server.stop()
        shutil.rmtree(base, ignore_errors=True)


class DaemonProcess:
    """``cti serve`` as a child process, configured by environment variables.

    ``acd_config``: a routing file of its own (default: ``acd_toml(agents)``);
    ``source``: the checkout whose code runs (default: this one; another commit's,
    for a before/after in one run: ``bench/acd_latency.py --baseline-source``)."""

    def __init__(self, workdir: Path, dsn: str, *, agents: int, ws_queue_max: int = 500,
                 ws_replay_max: int = 1000, profile: Path | None = None,
                 heap_dir: Path | None = None, log_level: str = "info", acd_config: Path | None = None,
                 source: Path = ROOT) -> None:
        self.workdir = workdir
        self.port = free_port()
        if acd_config is None:
            acd_config = workdir / "acd.toml"
            acd_config.write_text(acd_toml(agents))
        (workdir / "ivr.toml").write_text(IVR_TOML)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_") or k == "CTI_SANDBOX_ROOT"}
        env.update({
            "CTI_HOOK_SECRET": secrets.token_hex(16),    # the hooks need one; the load does not call them
            "CTI_DATABASE_URL": dsn, "CTI_HTTP_PORT": str(self.port), "CTI_STATE_DIR": str(workdir / "state"),
            "CTI_ACD_CONFIG": str(acd_config), "CTI_IVR_MENUS": str(workdir / "ivr.toml"),
            "CTI_ACD_ANNOUNCE_EVERY": "0", "CTI_LOG_LEVEL": log_level, "CTI_LOG_FORMAT": "json",
            "CTI_WS_QUEUE_MAX": str(ws_queue_max), "CTI_WS_REPLAY_MAX": str(ws_replay_max),
            "CTI_AMI_SECRET": sandbox.secret(sandbox.DAEMON),
            # Every simulated client connects from loopback: no per-address cap.
            "CTI_HTTP_CLIENT_MAX": "0",
            "PYTHONPATH": str(source),
        })
        self.log = open(workdir / "daemon.log", "wb")
        self.profile = profile
        if profile is not None:
            env["CTI_PROFILE_WINDOW"] = "1"
        prof = [str(ROOT / "bench" / "cpuprofile.py"), str(profile)] if profile is not None else []
        if heap_dir is not None:   # heap snapshots every 5 minutes, 8 frames deep (bench/memtrace.py)
            if profile is not None:
                raise ValueError("--profile and --memtrace are one run each")
            prof = [str(ROOT / "bench" / "memtrace.py"), str(heap_dir), "300", "8"]
        self.proc = subprocess.Popen([sys.executable, *prof, "-m", "server.cli", "serve"], cwd=source, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def profile_window(self) -> None:
        """Start or stop the daemon's profile (``--profile``: only the measured steps count)."""
        if self.profile is not None:
            self.proc.send_signal(signal.SIGUSR1)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        async with http.get(self.base + "/metrics") as r:
            return parse_metrics(await r.text())

    async def wait_ready(self, http: aiohttp.ClientSession, agents: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.proc.returncode}); see {self.workdir / 'daemon.log'}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                m = await self.metrics(http)
                if m.get('cti_agents{state="available"}') == agents and m.get("cti_ami_connected") == 1:
                    await asyncio.sleep(3)   # the ACD's heartbeat reaches the dialplan
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the daemon was not ready within {timeout}s; see {self.workdir / 'daemon.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def make_users(dsn: str, agents: int, supervisors: int) -> None:
    """Agent users (agent1..) and supervisors, all with the same password (hashed once)."""
    from api import accounts
    from api.auth import Passwords

    hashed = await asyncio.to_thread(lambda: Passwords().hash(PASSWORD))
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(1, agents + 1):
            await accounts.create_user(conn, username=f"load-agent{i}", display_name=f"Agent {i}", role="agent",
                                       password_hash=hashed, agent_id=f"agent{i}")
        for j in range(1, supervisors + 1):
            await accounts.create_user(conn, username=f"load-sup{j}", display_name=f"Supervisor {j}",
                                       role="supervisor", password_hash=hashed)
    finally:
        await conn.close()


async def login(http: aiohttp.ClientSession, base: str, username: str, tries: int = 10) -> str:
    """A session token; a login told to come back (429, 503 busy) waits its Retry-After."""
    for _ in range(tries):
        async with http.post(base + "/api/login", json={"username": username, "password": PASSWORD}) as r:
            if r.status in (429, 503) and "Retry-After" in r.headers:
                wait = float(r.headers["Retry-After"])
            elif r.status != 200:
                raise RuntimeError(f"login {username}: {r.status} {await r.text()}")
            else:
                return (await r.json())["token"]
        await asyncio.sleep(wait)
    raise RuntimeError(f"login {username}: still refused after {tries} tries")


# -- WebSocket clients ---------------------------------------------------------------

@dataclass
class Pop:
    call_id: str
    agent_id: str
    phase: str
    offered_at: float | None
    arrived: float


@dataclass
class WsClient:
    """One desktop: authenticates, reads every message, resumes after a drop."""

    name: str
    agent_id: str | None
    token: str
    pops: list[Pop] = field(default_factory=list)
    messages: int = 0
    reconnects: int = 0
    resyncs: int = 0
    lags: list[tuple[str, float]] = field(default_factory=list)   # (kind, arrival - at) of call events
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        stream, last = None, 0
        while True:
            try:
                async with http.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
                    auth: dict[str, Any] = {"type": "auth", "token": self.token}
                    if stream is not None:
                        auth.update(stream=stream, last_seq=last)
                    await ws.send_json(auth)
                    async for msg in ws:
                        now = time.time()
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        d = json.loads(msg.data)
                        kind = d.get("type")
                        if kind == "hello":
                            stream = d["stream"]
                            self.connected.set()
                        elif kind == "resync":
                            self.resyncs += 1
                        elif kind == "screenpop":
                            self.pops.append(Pop(d["call_id"], d["agent_id"], d["phase"],
                                                 d["card"].get("offered_at"), now))
                        elif self.agent_id is None and "at" in d and kind.startswith("call."):
                            self.lags.append((kind, now - d["at"]))
                        if kind not in ("hello", "resync", "pong", "error"):
                            self.messages += 1
                        last = d.get("seq", last)
            except (aiohttp.ClientError, OSError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.5)


# -- Asterisk's side: what was placed, offered, and when ---------------------------------

def _agent_of(channel: str) -> str:
    return channel.split("/", 1)[1].split("@", 1)[0]


class Watch:
    """An AMI listener (the demo user): live callers, queue entries, offers, agent legs."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.live: set[str] = set()
        self.accepted: list[str] = []          # callers Asterisk created, in order
        self.gone: set[str] = set()
        self.peak = 0
        self.originate_failed = 0
        self.entry: dict[str, float] = {}
        self.entry_free: dict[str, bool] = {}  # an agent leg was free at entry
        self.ring: dict[str, float] = {}
        self.offers: set[tuple[str, str]] = set()   # (call id, agent)
        self.offer_at: dict[tuple[str, str], float] = {}
        self.busy: dict[str, int] = {}               # agent -> legs up

    def __call__(self, frame: Any) -> None:
        h = frame.headers
        name = h.get("Event")
        if name == "Newchannel":
            uid = h.get("Uniqueid", "")
            if CALL_ID.match(uid):
                self.live.add(uid)
                self.accepted.append(uid)
                self.peak = max(self.peak, len(self.live))
        elif name == "Hangup":
            uid = h.get("Uniqueid", "")
            if uid in self.live:
                self.live.discard(uid)
                self.gone.add(uid)
            ch = h.get("Channel", "")
            if ch.startswith("Local/agent") and ch.endswith(";1"):
                a = _agent_of(ch)
                self.busy[a] = max(0, self.busy.get(a, 0) - 1)
        elif name == "OriginateResponse":
            if h.get("Response") == "Failure":
                self.originate_failed += 1
        elif name == "UserEvent" and h.get("UserEvent") == "CtiAcdWait":
            cid = h.get("Linkedid", "")
            if CALL_ID.match(cid) and cid not in self.entry and "Timestamp" in h:
                self.entry[cid] = float(h["Timestamp"])
                self.entry_free[cid] = sum(1 for n in self.busy.values() if n) < self.agents
        elif name == "DialBegin":
            dest = h.get("DestChannel", "")
            if dest.startswith("Local/agent"):
                a = _agent_of(dest)
                self.busy[a] = self.busy.get(a, 0) + 1
                cid = h.get("Linkedid", "")
                if CALL_ID.match(cid) and "Timestamp" in h:
                    t = float(h["Timestamp"])
                    self.ring.setdefault(cid, t)
                    self.offers.add((cid, a))
                    self.offer_at.setdefault((cid, a), t)

    def routing(self, ids: Iterable[str]) -> tuple[list[float], list[float]]:
        """Queue entry to first ring: (callers who found an agent free, all)."""
        free, every = [], []
        for cid in ids:
            if cid in self.entry and cid in self.ring:
                d = self.ring[cid] - self.entry[cid]
                every.append(d)
                if self.entry_free.get(cid):
                    free.append(d)
        return free, every


# -- traffic -------------------------------------------------------------------------

@dataclass
class Mix:
    ivr_share: float = 0.3
    abandon_share: float = 0.1
    patience: tuple[int, int] = (120, 180)     # callers who wait for an agent
    abandon_patience: tuple[int, int] = (2, 6)  # callers who give up


async def place_one(ami: AmiClient, rng: random.Random, mix: Mix, n: int) -> None:
    abandon = rng.random() < mix.abandon_share
    patience = rng.randint(*(mix.abandon_patience if abandon else mix.patience))
    number = f"+4930{rng.randrange(1_000_000, 9_999_999)}"
    name = f"Load {n}"
    if rng.random() < mix.ivr_share:
        key = rng.choice("123")
        await place_call(ami, caller_num=number, caller_name=name, did=IVR_DID, patience=patience,
                         variables={"__DIGITS": "W" + key}, caller_context="cti-demo-dtmf", id_prefix="lv")
    else:
        await place_call(ami, caller_num=number, caller_name=name, patience=patience, context="cti-demo-direct",
                         variables={"CTI_QUEUE": rng.choice(QUEUES)}, id_prefix="ld")


async def _placed(ami: AmiClient, rng: random.Random, mix: Mix, counter: list[int]) -> None:
    """Place one call; an Originate Asterisk refuses or does not answer in time is counted
    (``counter[1]``): a sign the sandbox is saturated, never a reason to stop."""
    try:
        await place_one(ami, rng, mix, counter[0])
    except Exception:
        counter[1] += 1


async def traffic(ami: AmiClient, rng: random.Random, mix: Mix, rate: float, duration: float,
                  counter: list[int]) -> int:
    """Poisson arrivals at ``rate`` for ``duration`` seconds (scheduled on the clock,
    so a slow Originate does not lower the rate). Returns the calls placed."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    due = start
    placed = 0
    pending: set[asyncio.Task[None]] = set()
    while True:
        due += rng.expovariate(rate)
        if due - start >= duration:
            break
        await asyncio.sleep(max(0.0, due - loop.time()))
        counter[0] += 1
        t = asyncio.create_task(_placed(ami, rng, mix, counter))
        pending.add(t)
        t.add_done_callback(pending.discard)
        placed += 1
    await asyncio.gather(*pending, return_exceptions=True)
    return placed


# -- one run ----------------------------------------------------------------------

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

    def agent_count(self, rate: float | None = None) -> int:
        if self.agents:
            return self.agents
        hold = (sum(self.ring) + sum(self.talk)) / 2 + 1
        return max(4, math.ceil((rate or self.rate) * hold * 1.5) + 2)


class Bed:
    """Everything a run needs: database, daemon, users, clients, AMI watch."""

    def __init__(self, opts: Options, agents: int) -> None:
        self.opts, self.agents = opts, agents

    async def __aenter__(self) -> "Bed":
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self.dsn, postmaster = await self._stack.enter_async_context(scratch_database(self.opts.database_url))
        self.workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="cti-load-")))
        # No pool limit: every WebSocket client holds a connection for the whole run.
        self.http = await self._stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        self.started = time.monotonic()
        self.daemon = DaemonProcess(self.workdir, self.dsn, agents=self.agents, profile=self.opts.profile,
                                    ws_replay_max=self.opts.ws_replay_max, heap_dir=self.opts.memtrace,
                                    log_level=self.opts.log_level)
        self._stack.callback(self.daemon.stop)
        await self.daemon.wait_ready(self.http, self.agents)
        self.cpu = Cpu(self.daemon.pid, asterisk_pid(), postmaster)
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
                token = await login(self.http, self.daemon.base, username)
            return WsClient(username, agent, token)

        agents = await asyncio.gather(*(one(f"load-agent{i}", f"agent{i}") for i in range(1, self.agents + 1)))
        sups = await asyncio.gather(*(one(f"load-sup{j}", None) for j in range(1, self.opts.supervisors + 1)))
        url = self.daemon.base.replace("http", "ws") + "/ws"
        self.client_tasks = [asyncio.create_task(c.run(self.http, url)) for c in [*agents, *sups]]
        self._stack.push_async_callback(self._stop_clients)
        for c in [*agents, *sups]:
            await asyncio.wait_for(c.connected.wait(), 30)
        return list(agents), list(sups)

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

    def __init__(self, bed: Bed, every: float) -> None:
        self.bed, self.every = bed, every
        self.rows: list[dict[str, float]] = []
        self.rss_peak = 0
        self.t0 = time.monotonic()

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.every)

    async def sample(self) -> None:
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
            "asterisk_live_callers": len(self.bed.watch.live),
        })


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
    bed.daemon.profile_window()
    bed.watch.peak = len(bed.watch.live)
    placed = await traffic(bed.ami, rng, opts.mix, rate, duration, counter)
    placing_s = time.monotonic() - t0
    await bed.drain(first, timeout=max(opts.mix.patience) + 60)
    cpu1, window = bed.cpu.read(), time.monotonic() - t0
    bed.daemon.profile_window()
    m1 = await bed.daemon.metrics(bed.http)
    until = datetime.now(timezone.utc)
    ids = bed.watch.accepted[first:]
    conn = await asyncpg.connect(bed.dsn)
    try:
        if first == 0:
            integrity = await fetch_and_check(conn, ids, since=since, until=until)
        else:
            # A later step of a ramp: the same window check, less the earlier steps' calls.
            earlier = set(bed.watch.accepted[:first])
            rows = await conn.fetch("SELECT * FROM calls WHERE started_at BETWEEN $1 AND $2 OR call_id = ANY($3)",
                                    since - timedelta(minutes=1), until + timedelta(minutes=1), ids)
            integrity = check(ids, [dict(r) for r in rows if r["call_id"] not in earlier])
    finally:
        await conn.close()
    await asyncio.sleep(1)   # late screen-pops (ended phase) land
    # Screen-pops: every offer (DialBegin to an agent) seen at that agent's client.
    idset = set(ids)
    offers = {o for o in bed.watch.offers if o[0] in idset}
    got: dict[tuple[str, str], Pop] = {}
    wrong = 0
    for c in agents:
        for p in c.pops[pops0[c.name]:]:
            if p.agent_id != c.agent_id:
                wrong += 1
            elif p.phase == "offered":
                got.setdefault((p.call_id, p.agent_id), p)
    missing = sorted(offers - set(got))
    latencies = [p.arrived - p.offered_at for k, p in got.items() if k in offers and p.offered_at is not None]
    sup_missing = 0
    for c in sups:
        seen = {(p.call_id, p.agent_id) for p in c.pops[pops0[c.name]:] if p.phase == "offered"}
        sup_missing += len(offers - seen)
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
        "screenpop": {"offers": len(offers), "popped": len(offers) - len(missing), "missing": len(missing),
                      "wrong_agent": wrong, "supervisor_missing": sup_missing,
                      "p50_s": pct(latencies, 0.5), "p99_s": pct(latencies, 0.99),
                      "max_s": max(latencies) if latencies else None, "missing_sample": missing[:5]},
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
        extra = await ExtraClients.start(bed, opts) if opts.extra_clients else None
        sampler = Sampler(bed, opts.sample_every if soak else 1.0)
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
    out: dict[str, Any] = {"mode": "ramp" if ramp else ("soak" if soak else "load"), "conditions": conditions(opts),
                           "agents": agents_n, "supervisors": opts.supervisors,
                           "idle_cpu_s_per_s": idle, "steps": steps}
    if extra_out is not None:
        out["extra_clients"] = extra_out
    if soak:
        out["soak"] = soak_verdict(sampler.rows)
        if opts.soak_csv is not None:
            write_csv(opts.soak_csv, sampler.rows)
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
            "seed": opts.seed, "daemon_log_level": opts.log_level}


# -- fan-out -------------------------------------------------------------------------

_TYPE = re.compile(rb'"type":"([a-z_.]+)"')
_CALL_HEAD = re.compile(rb'"type":"(call\.[a-z_]+)","call_id":"((?:[^"\\]|\\.)*)","call_seq":(\d+),"at":([0-9.eE+-]+)')


def _fanout_worker(url: str, tokens: list[str], pipe: Any) -> None:
    """A process holding ``tokens`` WebSocket clients (``bench.wsclient``: lean, so the
    receiving side costs little next to what is measured); each text message's
    arrival is recorded raw and parsed after the run."""
    from urllib.parse import urlsplit

    from bench.wsclient import connect

    raise_fd_limit()
    u = urlsplit(url)

    async def main() -> None:
        arrivals: list[tuple[float, bytes, int]] = []
        recording = [False]
        sem = asyncio.Semaphore(50)

        async def client(token: str) -> Any:
            async with sem:
                return await connect(u.hostname or "127.0.0.1", u.port or 80, token, arrivals, lambda: recording[0])

        clients = await asyncio.wait_for(asyncio.gather(*(client(t) for t in tokens)), 300)
        pipe.send(("ready", len(clients)))
        done = asyncio.Event()
        asyncio.get_running_loop().add_reader(pipe.fileno(), done.set)
        recording[0] = True
        await done.wait()
        recording[0] = False
        pipe.recv()
        me = resource.getrusage(resource.RUSAGE_SELF)
        first: dict[tuple[str, int], float] = {}
        last: dict[tuple[str, int], float] = {}
        count: dict[tuple[str, int], int] = {}
        at: dict[tuple[str, int], float] = {}
        kinds: dict[tuple[str, int], str] = {}
        lat = array("d")
        sizes = 0
        others: dict[str, list[int]] = {}     # other messages (the wallboard...): type -> [count, bytes]
        for now, head, size in arrivals:
            m = _CALL_HEAD.search(head)
            if m is None:
                t = _TYPE.search(head)
                tally = others.setdefault(t.group(1).decode() if t else "?", [0, 0])
                tally[0] += 1
                tally[1] += size
                continue
            sizes += size
            key = (json.loads(b'"' + m.group(2) + b'"'), int(m.group(3)))
            sent = float(m.group(4))
            if key not in at:
                at[key], first[key], last[key], count[key] = sent, now, now, 0
                kinds[key] = m.group(1).decode()
            last[key] = max(last[key], now)
            count[key] += 1
            lat.append(now - sent)
        pipe.send(("result", {"at": at, "first": first, "last": last, "count": count, "lat": lat.tobytes(),
                              "cpu": me.ru_utime + me.ru_stime, "call_bytes": sizes,
                              "kinds": kinds, "others": others}))
        for c in clients:
            if c.transport is not None:
                c.transport.close()

    asyncio.run(main())


async def make_sessions(dsn: str, n: int, *, prefix: str = "fan", role: str = "supervisor",
                        agents: bool = False) -> list[str]:
    """N users (supervisors by default), each with a session made in the store (no
    password round trips). ``agents``: each an agent user of an agent id of its own
    that takes no calls (an idle desktop: it receives its hello and nothing else)."""
    from api import accounts
    from api.auth import digest, new_session_token

    conn = await asyncpg.connect(dsn)
    tokens = []
    try:
        for i in range(n):
            user = await accounts.create_user(conn, username=f"{prefix}-{i}", display_name=f"{prefix} {i}", role=role,
                                              password_hash=None, agent_id=f"{prefix}-{i}" if agents else None)
            token = new_session_token()
            await accounts.create_session(conn, user.user_id, digest(token), 3600 * 4)
            tokens.append(token)
    finally:
        await conn.close()
    return tokens


class ClientProcesses:
    """``_fanout_worker`` processes holding lean clients for ``tokens``, split between them."""

    def __init__(self, url: str, tokens: list[str], workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs, self.pipes = [], []
        for w in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_fanout_worker, args=(url, tokens[w::workers], child), daemon=True)
            p.start()
            self.procs.append(p)
            self.pipes.append(parent)

    async def connected(self) -> int:
        """Once every client is past its hello: how many there are."""
        n = 0
        for p in self.pipes:
            _, k = await asyncio.to_thread(p.recv)
            n += k
        return n

    async def results(self) -> list[dict[str, Any]]:
        """Stop recording; each process's arrivals, parsed."""
        for p in self.pipes:
            p.send("stop")
        results = []
        for p in self.pipes:
            _, r = await asyncio.to_thread(p.recv)
            results.append(r)
        for p in self.procs:
            p.join(10)
        return results


class ExtraClients:
    """``opts.extra_clients`` more sockets held by ``_fanout_worker`` processes: supervisors
    (everything) and idle agent desktops, so a load run has thousands of clients connected."""

    def __init__(self, procs: ClientProcesses, connected: int, supervisors: int) -> None:
        self.procs, self.connected, self.supervisors = procs, connected, supervisors

    @classmethod
    async def start(cls, bed: "Bed", opts: Options, workers: int = 2) -> "ExtraClients":
        raise_fd_limit(opts.extra_clients + 2000)
        sups = min(opts.extra_supervisors, opts.extra_clients)
        tokens = await make_sessions(bed.dsn, sups, prefix="xsup")
        tokens += await make_sessions(bed.dsn, opts.extra_clients - sups, prefix="xdesk", role="agent", agents=True)
        procs = ClientProcesses(bed.daemon.base.replace("http", "ws") + "/ws", tokens, workers)
        connected = await procs.connected()
        print(f"# {connected} extra clients connected ({sups} supervisors)", file=sys.stderr, flush=True)
        return cls(procs, connected, sups)

    async def stop(self) -> dict[str, Any]:
        """Delivery of call events to the extra supervisors over the whole run."""
        results = await self.procs.results()
        at: dict[Any, float] = {}
        last: dict[Any, float] = {}
        count: dict[Any, int] = {}
        lat = array("d")
        for r in results:
            for k, v in r["at"].items():
                at[k] = v
                last[k] = max(last.get(k, 0.0), r["last"][k])
                count[k] = count.get(k, 0) + r["count"][k]
            part = array("d")
            part.frombytes(r["lat"])
            lat.extend(part)
        complete = [k for k in at if count[k] == self.supervisors]
        to_last = [last[k] - at[k] for k in complete]
        return {"connected": self.connected, "supervisors": self.supervisors,
                "idle_desktops": self.connected - self.supervisors,
                "call_events": len(at), "reached_every_supervisor": len(complete),
                "delivery_p50_s": pct(lat, 0.5), "delivery_p99_s": pct(lat, 0.99),
                "to_last_supervisor_p50_s": pct(to_last, 0.5), "to_last_supervisor_p99_s": pct(to_last, 0.99),
                "client_processes_cpu_s": round(sum(r["cpu"] for r in results), 2)}


async def run_fanout(opts: Options, clients: int, workers: int) -> dict[str, Any]:
    raise_fd_limit(clients + 2000)
    agents_n = opts.agent_count()
    async with Bed(opts, agents_n) as bed:
        tokens = await make_sessions(bed.dsn, clients)
        await asyncio.sleep(max(0.0, bed.started + opts.settle_s - time.monotonic()))
        rss_before = rss_kb(bed.daemon.pid)[0]
        procs = ClientProcesses(bed.daemon.base.replace("http", "ws") + "/ws", tokens, workers)
        t_conn = time.monotonic()
        connected = await procs.connected()
        connect_s = time.monotonic() - t_conn
        await asyncio.sleep(2)
        rss_connected = rss_kb(bed.daemon.pid)[0]
        sampler = Sampler(bed, 1.0)
        sampling = asyncio.create_task(sampler.run())
        m0 = await bed.daemon.metrics(bed.http)
        cpu0, t0 = bed.cpu.read(), time.monotonic()
        bed.daemon.profile_window()
        rng = random.Random(opts.seed)
        placed = await traffic(bed.ami, rng, opts.mix, opts.rate, opts.duration, [0, 0])
        await bed.drain(0, timeout=max(opts.mix.patience) + 60)
        await asyncio.sleep(2)
        cpu1, window = bed.cpu.read(), time.monotonic() - t0
        bed.daemon.profile_window()
        m1 = await bed.daemon.metrics(bed.http)
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        results = await procs.results()
    # Merge: for each call event, its arrival at the last client of all.
    at: dict[Any, float] = {}
    last: dict[Any, float] = {}
    count: dict[Any, int] = {}
    lat = array("d")
    client_cpu = 0.0
    call_bytes = 0
    first: dict[Any, float] = {}
    kinds: dict[Any, str] = {}
    others: dict[str, list[int]] = {}
    for r in results:
        client_cpu += r["cpu"]
        call_bytes += r["call_bytes"]
        kinds.update(r["kinds"])
        for t, (n, size) in r["others"].items():
            tally = others.setdefault(t, [0, 0])
            tally[0] += n
            tally[1] += size
        for k, v in r["at"].items():
            at[k] = v
            last[k] = max(last.get(k, 0.0), r["last"][k])
            first[k] = min(first.get(k, math.inf), r["first"][k])
            count[k] = count.get(k, 0) + r["count"][k]
        part = array("d")
        part.frombytes(r["lat"])
        lat.extend(part)
    complete = [k for k in at if count[k] == connected]
    to_last = [last[k] - at[k] for k in complete]
    to_first = [first[k] - at[k] for k in complete]
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for k in complete:
        by_kind.setdefault(kinds[k], []).append((first[k] - at[k], last[k] - at[k]))
    kind_figures = {kind: {"events": len(v), "to_first_p50_s": pct([a for a, _ in v], 0.5),
                           "to_last_p50_s": pct([b for _, b in v], 0.5), "to_last_max_s": max(b for _, b in v)}
                    for kind, v in sorted(by_kind.items())}
    events = m1.get("cti_ws_events_total", 0) - m0.get("cti_ws_events_total", 0)
    deliveries = m1.get("cti_ws_deliveries_total", 0) - m0.get("cti_ws_deliveries_total", 0)
    cpu = diff(cpu0, cpu1)
    # The baseline: one ready-made frame of the same mean size written to as many
    # sockets, read by the same client code in as many processes (bench/fanout_floor.py).
    from bench.fanout_floor import run_floor
    mean_size = int(call_bytes / max(1, len(lat)))
    floor = await asyncio.to_thread(run_floor, connected, max(100, mean_size), 40, workers)
    return {
        "mode": "fanout", "floor": floor, "call_event_mean_bytes": mean_size, "conditions": conditions(opts), "rate_asked": opts.rate, "clients": clients,
        "connected": connected,
        "client_processes": workers, "connect_s": round(connect_s, 1), "calls_placed": placed,
        "call_events_seen": len(at), "events_reaching_every_client": len(complete),
        "events_published": events, "deliveries": deliveries, "window_s": round(window, 1),
        "delivery_p50_s": pct(lat, 0.5), "delivery_p99_s": pct(lat, 0.99),
        "to_last_client_p50_s": pct(to_last, 0.5), "to_last_client_p99_s": pct(to_last, 0.99),
        "to_last_client_max_s": max(to_last) if to_last else None,
        "to_first_client_p50_s": pct(to_first, 0.5), "to_first_client_p99_s": pct(to_first, 0.99),
        "by_kind": kind_figures,
        # What else each client received, per client: the wallboard snapshots above all.
        "call_event_bytes_per_client": int(call_bytes / max(1, connected)),
        "other_messages_per_client": {t: {"messages": round(n / max(1, connected), 1),
                                          "bytes": int(size / max(1, connected))}
                                      for t, (n, size) in sorted(others.items())},
        "flush_rounds": m1.get("cti_ws_flush_seconds_count", 0) - m0.get("cti_ws_flush_seconds_count", 0),
        "flush_p50_le_s": hist_quantile(lag_buckets(m0, "cti_ws_flush_seconds"),
                                        lag_buckets(m1, "cti_ws_flush_seconds"), 0.5),
        "flush_p99_le_s": hist_quantile(lag_buckets(m0, "cti_ws_flush_seconds"),
                                        lag_buckets(m1, "cti_ws_flush_seconds"), 0.99),
        "direct_writes": m1.get("cti_ws_direct_writes_total", 0) - m0.get("cti_ws_direct_writes_total", 0),
        "cpu_s": cpu, "client_processes_cpu_s": round(client_cpu, 2),
        "daemon_cpu_us_per_event": round(cpu["daemon"] / max(1, events) * 1e6, 1),
        "daemon_cpu_us_per_delivery": round(cpu["daemon"] / max(1, deliveries) * 1e6, 2),
        "daemon_rss_mb": {"before_clients": round(rss_before / 1024, 1),
                          "connected": round(rss_connected / 1024, 1),
                          "peak": round(sampler.rss_peak / 1024, 1)},
        "daemon_kb_per_connection": round((rss_connected - rss_before) / max(1, connected), 1),
        "slow_drops": m1.get("cti_ws_slow_drops_total", 0) - m0.get("cti_ws_slow_drops_total", 0),
    }


# -- output ----------------------------------------------------------------------

def load_table(out: dict[str, Any]) -> str:
    c = out["conditions"]
    head = (f"{c['date']}, {c['cpus']} CPUs, load average at start {c['loadavg_at_start'][0]}; "
            f"{out['agents']} agents (ring {c['ring_s'][0]}-{c['ring_s'][1]} s, talk {c['talk_s'][0]}-"
            f"{c['talk_s'][1]} s, no wrap-up), {out['supervisors']} supervisors; {int(c['ivr_share'] * 100)}% "
            f"through the IVR, {int(c['abandon_share'] * 100)}% abandoning after {c['abandon_patience_s'][0]}-"
            f"{c['abandon_patience_s'][1]} s; {c['duration_s']:g} s per rate; the daemon logging at "
            f"{c.get('daemon_log_level', 'warning')}\n")
    lines = [head,
             "| rate asked | calls/s placed | calls | peak concurrent | Originates refused | screen-pop p50 / p99 "
             "| pops missing | routing, agent free: p50 / p99 | event lag p50 / p99 (bucket) | daemon CPU | "
             "Asterisk CPU | PostgreSQL CPU | daemon / Asterisk CPU per call | daemon RSS peak | integrity |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in out["steps"]:
        sp, r, lag, cpu, per = s["screenpop"], s["routing"], s["event_lag"], s["cpu_s"], s["cpu_ms_per_call"]
        integ = "clean" if s["integrity"]["ok"] else s["integrity"]["explain"][:80]
        lines.append(
            f"| {s['rate_asked']:g}/s | {s['calls_per_s']:.2f} | {s['accepted']} | {s['peak_concurrent_calls']} "
            f"| {s['originate_failed']} | {ms(sp['p50_s'])} / {ms(sp['p99_s'])} | {sp['missing']} of {sp['offers']} "
            f"| {ms(r['agent_free_p50_s'])} / {ms(r['agent_free_p99_s'])} | <= {ms(lag['p50_le_s'])} / "
            f"<= {ms(lag['p99_le_s'])} | {cpu['daemon']:.1f} s | {cpu['asterisk']:.1f} s | {cpu['postgres']:.1f} s "
            f"| {per['daemon']:.1f} / {per['asterisk']:.1f} ms | {s['daemon_rss_peak_mb']:.0f} MB | {integ} |")
    idle = out["idle_cpu_s_per_s"]
    if idle:
        lines.append(f"\nIdle (clients connected, no calls), CPU seconds per second: daemon {idle['daemon']}, "
                     f"Asterisk {idle['asterisk']}, PostgreSQL {idle['postgres']}")
    if "highest_sustained_rate" in out:
        lines.append(f"\nHighest rate sustained: {out['highest_sustained_rate']}/s")
    if "extra_clients" in out:
        x = out["extra_clients"]
        lines.append(f"\nAlso connected through the run: {x['connected']} more clients in 2 processes, "
                     f"{x['supervisors']} supervisors and {x['idle_desktops']} idle agent desktops; call events "
                     f"reaching every one of those supervisors: {x['reached_every_supervisor']} of {x['call_events']}, "
                     f"delivery p50 {ms(x['delivery_p50_s'])} / p99 {ms(x['delivery_p99_s'])}, to the last of them "
                     f"p50 {ms(x['to_last_supervisor_p50_s'])} / p99 {ms(x['to_last_supervisor_p99_s'])}")
    if "soak" in out:
        v = out["soak"]
        lines.append(f"\nSoak: {v['samples']} samples; growth over the second half: RSS "
                     f"{v['slopes']['rss_mb_per_h']} MB/h, tasks {v['slopes']['tasks_per_h']}/h, fds "
                     f"{v['slopes']['fds_per_h']}/h; verdict: {v['verdict']}")
    return "\n".join(lines)


def fanout_table(o: dict[str, Any]) -> str:
    c = o["conditions"]
    head = (f"{c['date']}, {c['cpus']} CPUs, load average at start {c['loadavg_at_start'][0]}; {o['connected']} "
            f"supervisor clients in {o['client_processes']} processes (connected in {o['connect_s']} s), "
            f"{o['calls_placed']} calls in {c['duration_s']:g} s (asked: {o['rate_asked']:g}/s), "
            f"each call event published to every client (supervisors and admins share one stream)\n")
    cpu, rss = o["cpu_s"], o["daemon_rss_mb"]
    return "\n".join([
        head,
        "| call events | reached all clients | deliveries | delivery p50 / p99 | to the first client p50 / p99 "
        "| to the last client p50 / p99 / max "
        "| daemon CPU | per event / per delivery | client processes CPU | daemon RSS before / connected / peak "
        "| per connection | slow drops |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {int(o['events_published'])} | {o['events_reaching_every_client']} of {o['call_events_seen']} "
        f"| {int(o['deliveries']):,} | {ms(o['delivery_p50_s'])} / {ms(o['delivery_p99_s'])} "
        f"| {ms(o['to_first_client_p50_s'])} / {ms(o['to_first_client_p99_s'])} "
        f"| {ms(o['to_last_client_p50_s'])} / {ms(o['to_last_client_p99_s'])} / {ms(o['to_last_client_max_s'])} "
        f"| {cpu['daemon']:.1f} s | {o['daemon_cpu_us_per_event']:.0f} µs / {o['daemon_cpu_us_per_delivery']:.1f} µs "
        f"| {o['client_processes_cpu_s']:.1f} s | {rss['before_clients']:.0f} / {rss['connected']:.0f} / "
        f"{rss['peak']:.0f} MB | {o['daemon_kb_per_connection']:.0f} KB | {int(o['slow_drops'])} |",
        "",
        fanout_bytes_line(o),
        "",
        fanout_floor_line(o),
    ])


def fanout_bytes_line(o: dict[str, Any]) -> str:
    others = o.get("other_messages_per_client") or {}
    parts = [f"{t}: {v['messages']:g} messages, {v['bytes']:,} bytes" for t, v in others.items()]
    return (f"Each client received {o.get('call_event_bytes_per_client', 0):,} bytes of call events"
            + (f"; besides them, {'; '.join(parts)}." if parts else "."))


def fanout_floor_line(o: dict[str, Any]) -> str:
    f = o.get("floor")
    if not f:
        return ""
    return (f"Baseline in the same run (bench/fanout_floor.py): one ready-made {f['size']}-byte frame (the mean call "
            f"event here) written to {f['clients']} sockets in a tight loop, read by the same client code in "
            f"{f['processes']} processes, {f['rounds_complete']} of {f['rounds']} rounds complete: to the last client "
            f"p50 {ms(f['to_last_client_p50_s'])} / p99 {ms(f['to_last_client_p99_s'])} (the send loop "
            f"{ms(f['send_loop_p50_s'])}, {f['sender_cpu_us_per_send']} µs of CPU per send; the readers "
            f"{f['readers_cpu_us_per_message']} µs per message).")


def pair(text: str) -> tuple[int, int]:
    a, _, b = text.partition(",")
    return int(a), int(b or a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, help="calls per second (Poisson; default 1, with --fanout 0.2)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (per ramp step)")
    ap.add_argument("--agents", type=int, help="simulated agents (default: enough for the rate)")
    ap.add_argument("--supervisors", type=int, default=2)
    ap.add_argument("--ring", type=pair, default=(0, 1), help="agents ring MIN,MAX seconds")
    ap.add_argument("--talk", type=pair, default=(2, 6), help="agents talk MIN,MAX seconds")
    ap.add_argument("--ivr-share", type=float, default=0.3)
    ap.add_argument("--abandon-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--database-url", help="a server to make a scratch database on (default: 127.0.0.1:5432, "
                                           "else an embedded one)")
    ap.add_argument("--ramp", type=lambda s: [float(x) for x in s.split(",")], help="rates to step through")
    ap.add_argument("--soak", action="store_true")
    ap.add_argument("--sample-every", type=float, default=10.0)
    ap.add_argument("--csv", type=Path, default=Path("soak.csv"))
    ap.add_argument("--fanout", type=int, help="connect this many supervisor clients and measure delivery")
    ap.add_argument("--fanout-processes", type=int, default=2)
    ap.add_argument("--extra-clients", type=int, default=0,
                    help="load runs: connect this many more WebSocket clients (lean, in 2 processes)")
    ap.add_argument("--extra-supervisors", type=int, default=0,
                    help="of the extra clients, how many are supervisors (the rest: idle agent desktops)")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument("--ws-replay-max", type=int, default=1000,
                    help="the daemon's ws_replay_max: a soak with a small one tells the replay rings' growth apart")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                    help="the daemon's log level (default: info, the daemon's own default)")
    ap.add_argument("--memtrace", type=Path, help="run the daemon under tracemalloc (bench/memtrace.py), "
                                              "snapshots in this folder; the JSON says where the heap grew")
    ap.add_argument("--profile", type=Path, help="run the daemon under cProfile timed by CPU (bench/cpuprofile.py); its stats are written here")
    a = ap.parse_args()
    if a.rate is None:
        a.rate = 0.2 if a.fanout else 1.0
    if not (0 <= a.ivr_share <= 1 and 0 <= a.abandon_share <= 1) or a.rate <= 0 or a.duration <= 0:
        ap.error("shares are between 0 and 1; rate and duration are positive")
    opts = Options(rate=a.rate, duration=a.duration, agents=a.agents, supervisors=a.supervisors, ring=a.ring,
                   talk=a.talk, mix=Mix(ivr_share=a.ivr_share, abandon_share=a.abandon_share), seed=a.seed,
                   database_url=a.database_url, sample_every=a.sample_every,
                   soak_csv=a.csv if a.soak else None, profile=a.profile, memtrace=a.memtrace,
                   log_level=a.log_level, ws_replay_max=a.ws_replay_max,
                   extra_clients=a.extra_clients, extra_supervisors=a.extra_supervisors)
    if a.fanout:
        out = asyncio.run(run_fanout(opts, a.fanout, a.fanout_processes))
        table = fanout_table(out)
    else:
        out = asyncio.run(run_load(opts, ramp=a.ramp, soak=a.soak,
                                   partial=a.json.with_suffix(".partial.json") if a.json else None))
        table = load_table(out)
    text = json.dumps(out, indent=1, default=str)
    if a.json:
        a.json.write_text(text)
    print(text)
    print()
    print(table)
    if out.get("mode") in ("load", "soak"):
        return 0 if all(s["integrity"]["ok"] and s["screenpop"]["missing"] == 0 for s in out["steps"]) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
