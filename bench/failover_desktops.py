"""The desktops of bench/failover.py: a broker of the run's own, an agent desktop per simulated
agent and a few supervisors, connected to the pair's nodes across every kill, and the check of
what each received against the broker's stream (``bench.failover_checks``).

Each client records the ``seq`` of every event message it receives, in order. When its
connection drops (its node was killed) it moves as the agent desktop does
(``api/static/agent/app.js``): the same node once, then the other, with its ``stream`` and
``last_seq``; the node resumes it (``resumed``, the missed messages replayed) or answers
``resync``. After the run the stream is read back (``BrokerFeed``) and each client's numbers are
compared with the messages meant for it from its first hello on.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.failover_checks import SeqCheck, expected_seqs, gaps, seq_check
from bench.harness import HarnessError, free_port

STREAM, CLUSTER = "CTI_FAILOVER", "bench"
CONTROL = {"hello", "resync", "pong", "error", "wallboard"}


class Broker:
    """``nats-server -js`` on a free loopback port, its store in the run's folder."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = workdir / "nats"
        self.proc: subprocess.Popen | None = None

    async def start(self, timeout: float = 15) -> None:
        exe = shutil.which("nats-server")
        if exe is None:
            raise HarnessError("desktops need nats-server on PATH (Debian: apt install nats-server); "
                               "or run with --no-desktops")
        self.proc = subprocess.Popen([exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise HarnessError(f"nats-server not listening on {self.port} within {timeout}s")

    def settings(self) -> dict[str, str]:
        """The daemons' settings (``daemon_env``) for this broker."""
        return {"broker_url": self.url, "broker_stream": STREAM, "broker_cluster": CLUSTER}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def make_sessions(dsn: str, agent_ids: list[str], supervisors: int) -> list[tuple[str, str | None, str]]:
    """A user and a session (made in the store, no password round trip) per agent id and per
    supervisor: ``(name, agent_id or None, token)``."""
    from api import accounts
    from api.auth import digest, new_session_token

    out: list[tuple[str, str | None, str]] = []
    conn = await asyncpg.connect(dsn)
    try:
        people = [(f"fo-{a}", a, "agent") for a in agent_ids] + [(f"fo-sup{j}", None, "supervisor")
                                                                   for j in range(1, supervisors + 1)]
        for name, agent_id, role in people:
            user = await accounts.create_user(conn, username=name, display_name=name, role=role,
                                              password_hash=None, agent_id=agent_id)
            token = new_session_token()
            await accounts.create_session(conn, user.user_id, digest(token), 3600 * 4)
            out.append((name, agent_id, token))
    finally:
        await conn.close()
    return out


@dataclass
class Desktop:
    """One connected client of the pair (see the module doc)."""

    name: str
    agent_id: str | None                 # None: a supervisor (every message)
    token: str
    urls: list[str]                      # the nodes' ws://.../ws
    at: int = 0                          # the node it uses
    first: int | None = None             # the seq of its first hello
    received: list[int] = field(default_factory=list)
    hellos: list[tuple[int, bool, int]] = field(default_factory=list)    # (node, resumed, seq)
    resyncs: list[str] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)     # call ids of the call.ended it received
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def last(self) -> int | None:
        return self.received[-1] if self.received else self.first

    async def run(self, http: aiohttp.ClientSession) -> None:
        stream: str | None = None
        last: int | None = None
        failed_here = 0
        while True:
            try:
                async with http.ws_connect(self.urls[self.at], heartbeat=None, max_msg_size=0) as ws:
                    auth: dict[str, Any] = {"type": "auth", "token": self.token}
                    if stream is not None and last is not None:
                        auth.update(stream=stream, last_seq=last)
                    await ws.send_json(auth)
                    failed_here = 0
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        d = json.loads(msg.data)
                        kind = d.get("type")
                        if kind == "hello":
                            stream, last = d["stream"], d["seq"]
                            if self.first is None:
                                self.first = d["seq"]
                            self.hellos.append((self.at, bool(d.get("resumed")), d["seq"]))
                            self.connected.set()
                        elif kind == "resync":
                            self.resyncs.append(str(d.get("reason")))
                        elif kind not in CONTROL and "seq" in d:
                            self.received.append(d["seq"])
                            last = d["seq"]
                            if kind == "call.ended":
                                self.ended.add(d.get("call_id"))
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
                pass
            # Lost (or refused): the same node once more (a restart), then the other.
            failed_here += 1
            if failed_here >= 2:
                self.at = (self.at + 1) % len(self.urls)
                failed_here = 0
            await asyncio.sleep(0.2)

    def start(self, http: aiohttp.ClientSession) -> None:
        self.task = asyncio.create_task(self.run(http), name=f"desktop {self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def connect_all(desktops: list[Desktop], http: aiohttp.ClientSession, timeout: float = 60) -> None:
    for d in desktops:
        d.start(http)
    try:
        await asyncio.wait_for(asyncio.gather(*(d.connected.wait() for d in desktops)), timeout)
    except asyncio.TimeoutError:
        late = [d.name for d in desktops if not d.connected.is_set()]
        raise HarnessError(f"desktops not connected within {timeout}s: {late[:5]}") from None


async def read_stream(url: str) -> list[tuple[int, frozenset[str]]]:
    """Every message of the run's stream: ``(sequence, agents)``."""
    import nats

    from api.broker import BrokerFeed

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        head = (await js.stream_info(STREAM)).state.last_seq
        feed = BrokerFeed(nc, cluster=CLUSTER, stream=STREAM)
        await feed.open()
        out: list[tuple[int, frozenset[str]]] = []
        try:
            while not out or out[-1][0] < head:
                d, _ = await feed.next(timeout=10)
                out.append((d.stream_seq, d.agents))
        finally:
            await feed.close()
        return out
    finally:
        await nc.close()


async def caught_up(desktops: list[Desktop], stream: list[tuple[int, frozenset[str]]], timeout: float) -> None:
    """Until each client has received the last message meant for it (or ``timeout``)."""
    head = stream[-1][0] if stream else 0
    last_meant = {}
    for d in desktops:
        want = expected_seqs(stream, d.agent_id, d.first or 0, head)
        if want:
            last_meant[d.name] = want[-1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((d.last or 0) >= last_meant[d.name] for d in desktops if d.name in last_meant):
            return
        await asyncio.sleep(0.5)


def report(desktops: list[Desktop], stream: list[tuple[int, frozenset[str]]],
           call_ids: list[str]) -> dict[str, Any]:
    """Each client's check, summed up: contiguous or not, the gaps, the moves."""
    head = stream[-1][0] if stream else 0
    checks: dict[str, SeqCheck] = {}
    for d in desktops:
        checks[d.name] = seq_check(d.received, expected_seqs(stream, d.agent_id, d.first or 0, head))
    broken = {n: c for n, c in checks.items() if not c.contiguous}
    by_name = {d.name: d for d in desktops}
    supervisors = [d for d in desktops if d.agent_id is None]
    unseen_ends = [c for c in call_ids if supervisors and not all(c in s.ended for s in supervisors)]
    return {
        "desktops": len(desktops), "supervisors": len(supervisors), "stream_messages": len(stream),
        "contiguous": len(checks) - len(broken), "not_contiguous": len(broken),
        "messages_expected": sum(c.expected for c in checks.values()),
        "messages_received": sum(c.received for c in checks.values()),
        "missing": sum(len(c.missing) for c in checks.values()),
        "repeated": sum(len(c.repeated) for c in checks.values()),
        "out_of_order": sum(len(c.out_of_order) for c in checks.values()),
        "unexpected": sum(len(c.unexpected) for c in checks.values()),
        "reconnects": sum(len(d.hellos) - 1 for d in desktops),
        "resumed": sum(1 for d in desktops for _, resumed, _ in d.hellos[1:] if resumed),
        "resyncs": sum(len(d.resyncs) for d in desktops),
        "resync_reasons": sorted({r for d in desktops for r in d.resyncs})[:5],
        "calls_whose_end_a_supervisor_missed": len(unseen_ends),
        "detail": {n: {"missing": gaps(c.missing)[:10], "repeated": c.repeated[:10],
                       "out_of_order": c.out_of_order[:10], "unexpected": c.unexpected[:10],
                       "missing_total": len(c.missing), "last_received": by_name[n].last,
                       "hellos": by_name[n].hellos[-12:], "resyncs": by_name[n].resyncs[-3:]}
                   for n, c in list(broken.items())[:10]},
    }
