"""Web chat under load: a customer's message to the agent's desktop (issue 22).

The daemon runs as a process of its own (``bench.harness.DaemonProcess``) on a scratch
database, with an ACD of ``--agents`` agents who each hold up to ``chats / agents`` chats
of one chat queue. ``--chats`` customers connect to ``/chat/ws`` (each from its own
address, given as ``X-Forwarded-For`` by a trusted proxy: the widget's per-address limits
are the real ones) and start a chat; every agent's desktop is a ``/ws`` client. Once every
chat has its agent, each customer sends a message every ``--interval`` seconds (spread at
random) for ``--duration`` seconds. Measured, in this one process with one clock: from the
customer's send on its socket to the ``chat.message`` frame on the agent's desktop socket.

Printed: chats, agents, messages sent and received (a lost one is a failure), the latency's
p50, p90, p99 and max, the time to get every chat to an agent, and the daemon's CPU.

Every step is bounded (``within``): a step that does not finish fails the run naming the
step, with the daemon's last log lines. Two limits of the machinery, not of the chat, once
stalled it silently: aiohttp's client pool holds at most 100 connections by default and a
WebSocket keeps its connection, so the 101st socket (50 desktops, then the 51st customer)
waited for a free one forever (``client_session``: no cap); and every socket comes from
loopback, over the daemon's 128 connections per address (``daemon_settings``: no cap, the
chat's own per-address limits still apply to the customers' forwarded addresses).

    scripts/run-isolated omni .venv/bin/python bench/chat_latency.py [--chats 500] [--agents 50] \
        [--duration 60] [--interval 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, TypeVar

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import DaemonProcess, daemon_env, scratch_database  # noqa: E402
from bench.load_desktops import make_sessions  # noqa: E402
from bench.load_figures import pct, raise_fd_limit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


CHAT_CAPACITY_MAX = 50        # acd.config.Capacity.chat


class BenchError(Exception):
    """The run could not be set up or a step did not finish (not a latency figure)."""


def chats_per_agent(chats: int, agents: int) -> int:
    """Each agent's chat capacity: every chat fits at once. Raises ``BenchError``."""
    if chats < 1 or agents < 1:
        raise BenchError("--chats and --agents are at least 1")
    per_agent = -(-chats // agents)
    if per_agent > CHAT_CAPACITY_MAX:
        raise BenchError(f"{chats} chats need {per_agent} per agent; an agent holds at most "
                         f"{CHAT_CAPACITY_MAX}: give more --agents")
    return per_agent


def acd_config(agents: int, per_agent: int) -> str:
    lines = ['skills = []', '', '[[queues]]', 'id = "sales"', '', '[[queues]]', 'id = "webchat"',
             'channel = "chat"', 'sl_seconds = 30', '']
    for i in range(agents):
        lines += ['[[agents]]', f'id = "chat-{i}"', f'name = "Agent {i}"', 'device = "Local/stay1@cti-demo-agents/n"',
                  'queues = { sales = {}, webchat = {} }', 'auto_login = true',
                  f'capacity = {{ chat = {per_agent} }}', '']
    return "\n".join(lines)


def customer_address(n: int) -> str:
    """Customer ``n``'s own address (sent as X-Forwarded-For): distinct for n < 15,625,000."""
    return f"10.{n // 250 % 250}.{n % 250}.{1 + n // 62500}"


def daemon_settings() -> dict[str, object]:
    """The daemon's settings beside the database's and the ACD's."""
    return {"acd_announce_every": 0, "log_level": "warning",
            # the customers' addresses are believed from loopback's X-Forwarded-For
            "http_trusted_proxies": "127.0.0.1/32",
            # every socket of the run comes from loopback: no cap per address
            "http_client_max": 0}


def client_session() -> aiohttp.ClientSession:
    """The run's HTTP client: no cap on connections (a WebSocket holds one for its life;
    aiohttp's default pool of 100 made the 101st socket wait forever), no overall timeout
    (the steps are bounded by ``within``)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))


async def within(seconds: float, step: str, aw: Awaitable[T]) -> T:
    """Await ``aw``; raises ``BenchError`` naming ``step`` when it takes over ``seconds``."""
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise BenchError(f"{step}: not done within {seconds:g} s") from None


def summary(sent: dict[str, float], arrivals: dict[str, float]) -> dict[str, object]:
    """Latencies (ms) of the messages sent (body -> send time) that arrived (body -> arrival
    time, same clock): counts and percentiles; one sent and never arrived is lost."""
    lat = [(arrivals[b] - s) * 1000 for b, s in sent.items() if b in arrivals]
    return {"sent": len(sent), "received": len(lat), "lost": len(sent) - len(lat),
            "p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9), "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat, default=None)}


class Desk:
    """An agent's desktop: notes the arrival of each customer message marked by the bench."""

    def __init__(self, token: str, arrivals: dict[str, float]) -> None:
        self.token = token
        self.arrivals = arrivals
        self.ready = asyncio.Event()
        self.offers = 0

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
            await ws.send_json({"type": "auth", "token": self.token})
            async for msg in ws:
                now = time.perf_counter()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                d = json.loads(msg.data)
                kind = d.get("type")
                if kind == "hello":
                    self.ready.set()
                elif kind == "task.offered":
                    self.offers += 1
                elif kind == "chat.message" and d.get("sender") == "customer" and d["body"].startswith("lat:"):
                    self.arrivals.setdefault(d["body"], now)


class Customer:
    def __init__(self, n: int) -> None:
        self.n = n
        self.address = customer_address(n)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.with_agent = asyncio.Event()
        self.errors: list[str] = []
        self.reader: asyncio.Task[None] | None = None

    async def start(self, http: aiohttp.ClientSession, url: str) -> None:
        self.ws = await http.ws_connect(url, headers={"X-Forwarded-For": self.address}, heartbeat=None)
        await self.ws.send_json({"type": "start", "name": f"Customer {self.n}", "email": f"c{self.n}@example.org",
                                 "question": f"Question {self.n}"})
        self.reader = asyncio.create_task(self.read())     # kept: a task only weakly held may be collected

    async def read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            d = json.loads(msg.data)
            if d["type"] == "agent" or (d["type"] == "started" and d["status"] == "active"):
                self.with_agent.set()
            elif d["type"] == "error":
                self.errors.append(d["reason"])

    async def close(self) -> None:
        if self.ws is not None:
            await asyncio.wait_for(self.ws.close(), 15)
        if self.reader is not None:
            self.reader.cancel()

    async def talk(self, sent: dict[str, float], until: float, interval: float, rng: random.Random) -> None:
        assert self.ws is not None
        await asyncio.sleep(rng.uniform(0, interval))
        k = 0
        while time.perf_counter() < until:
            k += 1
            body = f"lat:{self.n}:{k}"
            sent[body] = time.perf_counter()
            await self.ws.send_json({"type": "message", "body": body})
            await asyncio.sleep(interval * rng.uniform(0.8, 1.2))


def cpu_seconds(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace) -> dict:
    per_agent = chats_per_agent(args.chats, args.agents)
    raise_fd_limit(max(20000, 4 * (args.chats + args.agents)))
    tmp = Path(tempfile.mkdtemp(prefix="cti-chat-bench-"))
    cfg = tmp / "acd.toml"
    cfg.write_text(acd_config(args.agents, per_agent))
    rng = random.Random(args.seed)
    try:
        async with scratch_database(prefix="cti_chat_bench") as db:
            daemon = DaemonProcess(daemon_env(db.dsn, tmp, acd_config=cfg, **daemon_settings()), tmp / "daemon.log")
            await daemon.start()
            try:
                return await measure(args, daemon, db.dsn, per_agent, rng)
            except BaseException:
                print(f"the daemon's last lines:\n{daemon.log_tail(40)}", file=sys.stderr)
                raise
            finally:
                await daemon.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def measure(args: argparse.Namespace, daemon: DaemonProcess, dsn: str, per_agent: int,
                  rng: random.Random) -> dict:
    # Sessions made in the store: no password round trips (nor the login throttle).
    tokens = await within(60, "agents' sessions", make_sessions(dsn, args.agents, prefix="chat", role="agent",
                                                                agents=True))
    arrivals: dict[str, float] = {}
    sent: dict[str, float] = {}
    customers = [Customer(n) for n in range(args.chats)]
    desks = [Desk(t, arrivals) for t in tokens]
    async with client_session() as http:
        ws_url = daemon.url.replace("http", "ws") + "/ws"
        desk_tasks = [asyncio.create_task(d.run(http, ws_url)) for d in desks]
        try:
            await within(60, "desktops' hello", asyncio.gather(*(d.ready.wait() for d in desks)))
            chat_url = daemon.url.replace("http", "ws") + "/chat/ws"
            t0 = time.perf_counter()
            gate = asyncio.Semaphore(50)

            async def begin(c: Customer) -> None:
                async with gate:
                    await c.start(http, chat_url)

            await within(120, "customers' connections", asyncio.gather(*(begin(c) for c in customers)))
            waiting = [c for c in customers if not c.with_agent.is_set()]
            try:
                await within(120, "every chat with an agent", asyncio.gather(*(c.with_agent.wait() for c in waiting)))
            except BenchError as exc:
                left = sum(not c.with_agent.is_set() for c in customers)
                errors = sorted({e for c in customers for e in c.errors})[:5]
                raise BenchError(f"{exc} ({left} still waiting; customers' errors: {errors})") from None
            assigned_s = time.perf_counter() - t0
            cpu0, w0 = cpu_seconds(daemon.pid), time.perf_counter()
            until = time.perf_counter() + args.duration
            await within(args.duration + 2 * args.interval + 60, "the conversation",
                         asyncio.gather(*(c.talk(sent, until, args.interval, rng) for c in customers)))
            await asyncio.sleep(5)          # the last ones arrive
            cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.perf_counter() - w0)
        finally:
            await asyncio.gather(*(c.close() for c in customers), return_exceptions=True)
            for t in desk_tasks:
                t.cancel()
            await asyncio.gather(*desk_tasks, return_exceptions=True)
    errors = sorted({e for c in customers for e in c.errors})
    return {"chats": args.chats, "agents": args.agents, "per_agent": per_agent,
            "duration_s": args.duration, "interval_s": args.interval, **summary(sent, arrivals),
            "rate_per_s": round(len(sent) / args.duration, 1), "all_assigned_s": round(assigned_s, 2),
            "offers": sum(d.offers for d in desks), "daemon_cpu": round(cpu, 2),
            "customer_errors": errors[:5]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chats", type=int, default=500)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=3.0, help="seconds between a customer's messages")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    try:
        out = asyncio.run(run(args))
    except BenchError as exc:
        print(f"chat_latency: {exc}", file=sys.stderr)
        sys.exit(2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    out.update(commit=commit, python=platform.python_version(), load=os.getloadavg()[0])
    for k, v in out.items():
        print(f"{k:>16}: {round(v, 2) if isinstance(v, float) else v}")
    print(json.dumps(out))
    sys.exit(0 if out["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
