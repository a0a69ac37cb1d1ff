"""The simulated desktops of a load run: users and their sessions, a WebSocket client per
agent and supervisor (``WsClient``: reads every message, notes screen-pops, resumes
after a drop), and lean clients by the thousand in worker processes
(``ClientProcesses``, ``ExtraClients``: ``bench/wsclient.py``) for fan-out runs.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import resource
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from bench.load_figures import pct, raise_fd_limit

PASSWORD = "load-bench-password"


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


# -- lean clients in worker processes ------------------------------------------------

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
    """More sockets held by ``_fanout_worker`` processes: supervisors
    (everything) and idle agent desktops, so a load run has thousands of clients connected."""

    def __init__(self, procs: ClientProcesses, connected: int, supervisors: int) -> None:
        self.procs, self.connected, self.supervisors = procs, connected, supervisors

    @classmethod
    async def start(cls, dsn: str, base: str, clients: int, supervisors: int, workers: int = 2) -> "ExtraClients":
        """``clients`` sockets to the daemon at ``base`` (its http URL), ``supervisors`` of them
        supervisors, users and sessions made in the database at ``dsn``."""
        raise_fd_limit(clients + 2000)
        sups = min(supervisors, clients)
        tokens = await make_sessions(dsn, sups, prefix="xsup")
        tokens += await make_sessions(dsn, clients - sups, prefix="xdesk", role="agent", agents=True)
        procs = ClientProcesses(base.replace("http", "ws") + "/ws", tokens, workers)
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
