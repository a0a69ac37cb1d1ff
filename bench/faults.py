"""The fault suite: faults under continuous traffic, and what was kept and what was lost.

    python -m bench.faults                     every scenario, full length
    python -m bench.faults --short             every scenario, short (what CI runs)
    python -m bench.faults asterisk pg         some scenarios (asterisk, daemon, pg, storm)

Each scenario runs the daemon as a real process (``cti serve``, bench/harness.py) on an
embedded PostgreSQL of its own, with the routing of bench/faults-acd.toml (sixteen
simulated agents), and places callers at a steady rate into its queues (more than the
agents can take at once, so some wait). Then:

- asterisk: Asterisk is SIGKILLed mid-load and started again;
- daemon: the daemon is SIGKILLed mid-load and started again, while callers wait in a
  queue nobody may answer for their first 20 s (they must still reach an agent) and
  agents talk (they must be found on call);
- pg: PostgreSQL is stopped for 60 s (short: 15 s) mid-load; ``/healthz`` must say so;
- storm: hundreds of WebSocket clients connect and go (valid and forged credentials,
  bad first messages, clients that never read, sockets cut) while a probe client must
  receive every event in order, and the daemon's fds and tasks return to where they were.

Traffic goes on after the fault; then it stops, every call is left to end, and
``bench.integrity`` checks every call Asterisk created: in the database once, closed,
timestamps in order. Each scenario prints a verdict (exit status 1 if any fails).
Run as root with the sandbox up (``scripts/asterisk-sandbox up``, or inside
``scripts/test-isolated NAME`` for a private one). Never against a production Asterisk:
it kills it.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

from bench.harness import (Database, DaemonProcess, HarnessError, Traffic, daemon_env, demo_times, integrity,
                           sandbox, wait_quiet)
from acd.config import load_config
from bench.integrity import IntegrityReport

ACD_CONFIG = Path(__file__).with_name("faults-acd.toml")


@dataclass(frozen=True)
class Plan:
    """How long and how hard: ``before_s`` of traffic, the fault, ``after_s`` of traffic."""

    rate: float = 3.0              # callers per second
    before_s: float = 60.0
    outage_s: float = 60.0         # PostgreSQL stopped this long
    after_s: float = 60.0
    storm_clients: int = 2000      # WebSocket clients over the storm
    storm_wave: int = 100          # at once
    talk: tuple[int, int] = (3, 8)
    ring: tuple[int, int] = (0, 1)
    patience: tuple[int, int] = (20, 60)


FULL = Plan()
# The talk time of calls answered in the seconds before the daemon is killed (seconds).
LONG_TALK = (25, 30)
SHORT = Plan(rate=2.0, before_s=12, outage_s=15, after_s=10, storm_clients=300, storm_wave=50,
             talk=(3, 6), patience=(20, 40))


@dataclass
class Outcome:
    """What one scenario kept and lost, and its checks (name -> (passed, detail))."""

    scenario: str
    report: IntegrityReport | None = None
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: Any = "") -> None:
        self.checks[name] = (bool(ok), str(detail))

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok and all(ok for ok, _ in self.checks.values())

    def failures(self) -> list[str]:
        out = [] if self.report is None or self.report.ok else [f"integrity: {self.report.explain()}"]
        if self.report is None:
            out.append("integrity: not checked")
        return out + [f"{name}: {detail}" for name, (ok, detail) in self.checks.items() if not ok]

    def render(self) -> str:
        lines = [f"== {self.scenario}: {'PASS' if self.ok else 'FAIL'}"]
        if self.report is not None:
            s = self.report.summary()
            lines.append(f"   kept: {s['placed'] - s['missing']} of {s['placed']} calls in the database, "
                         f"{s['placed'] - s['missing'] - s['open']} closed ({s['end_estimated']} closed by estimate)")
            lines.append(f"   lost: missing={s['missing']} open={s['open']} extra={s['extra']} "
                         f"inconsistent={s['inconsistent']}")
        for name, (ok, detail) in self.checks.items():
            lines.append(f"   [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
        for k, v in self.figures.items():
            lines.append(f"   {k}: {v}")
        return "\n".join(lines)


class Run:
    """One scenario's world: a database, the daemon process, traffic. ``finish`` stops the
    traffic, lets every call end and checks integrity; ``close`` leaves the sandbox up."""

    def __init__(self, name: str, plan: Plan, workdir: Path, **settings: Any) -> None:
        self.name, self.plan = name, plan
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.dir)
        self.settings = settings
        self.daemon: DaemonProcess | None = None
        self.traffic = Traffic(rate=plan.rate, prefix=f"ft{name[:3]}{uuid.uuid4().hex[:6]}",
                               patience=plan.patience)
        self.outcome = Outcome(name)
        self.t0 = time.time()

    async def open(self) -> None:
        await asyncio.to_thread(sandbox, "up")
        await asyncio.to_thread(sandbox, "cli", "channel request hangup all")
        await wait_quiet(30)
        dsn = await self.db.start()
        env = daemon_env(dsn, self.dir / "state", acd_config=ACD_CONFIG, **self.settings)
        self.daemon = DaemonProcess(env, self.dir / "daemon.log")
        await self.daemon.start()
        await demo_times(self.traffic, ring=self.plan.ring, talk=self.plan.talk)
        self.t0 = time.time()

    async def load(self, seconds: float) -> None:
        self.traffic.start()
        await asyncio.sleep(seconds)

    async def health(self) -> dict[str, Any] | None:
        assert self.daemon is not None
        got = await self.daemon.health()
        return None if got is None else got[1]

    async def until(self, check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                got = await check()
                if got:
                    return got
            await asyncio.sleep(0.3)
        raise HarnessError(f"{self.name}: not within {timeout}s: {what}")

    async def finish(self) -> None:
        """Stop placing calls, wait for every call to end and the writer to flush; check."""
        await self.traffic.stop()
        longest = self.plan.patience[1] + self.plan.talk[1] + 30
        left = await wait_quiet(longest)
        self.outcome.check("every call over in Asterisk", left == 0, f"{left} channels left" if left else "")

        async def flushed() -> bool:
            h = await self.health()
            return bool(h and h["database"]["buffered"] == 0 and h["model"]["calls"] == 0)

        with contextlib.suppress(HarnessError):
            await self.until(flushed, 60, "the daemon's model empty and its writer flushed")
        await asyncio.sleep(2)  # the reconcile after a resync runs in the background
        report = await integrity(self.db.dsn, self.traffic, self.t0, time.time())
        self.outcome.report = report
        ghosts = self.traffic.ghosts()
        self.outcome.figures.update({
            "calls placed": len(self.traffic.placed), "calls Asterisk created": len(self.traffic.real_ids()),
            "acknowledged but never created (Asterisk died first)": len(ghosts),
            "refused while Asterisk was away": self.traffic.refused,
        })
        double = await self.double_booked()
        self.outcome.check("no agent on two calls at once", not double, double[:3])
        if self.daemon is not None and (h := await self.health()) is not None:
            self.outcome.figures["writer"] = {k: h["database"][k] for k in ("written", "dropped", "rejected",
                                                                            "failures")}
            self.outcome.check("no row dropped by the writer", h["database"]["dropped"] == 0,
                               h["database"]["dropped"])

    async def double_booked(self) -> list[str]:
        """Calls an agent answered while still on an earlier one (the router offered a
        busy agent: simulated agents answer any number of calls, real ones would not)."""
        # The ACD's agents only: app_queue's fallback members (callers sent there while the
        # ACD's heartbeat was stale) ring whoever Asterisk likes.
        agents = [a.id for a in load_config(ACD_CONFIG).agents]
        rows = await self.db.fetch(
            "SELECT call_id, agent, agent_answered_at, ended_at FROM calls WHERE call_id LIKE $1"
            " AND agent = ANY($2) AND agent_answered_at IS NOT NULL ORDER BY agent, agent_answered_at",
            self.traffic.prefix + "%", agents)
        out = []
        for prev, nxt in zip(rows, rows[1:]):
            if prev["agent"] == nxt["agent"] and prev["ended_at"] is not None \
                    and nxt["agent_answered_at"] < prev["ended_at"]:
                out.append(f"{nxt['agent']}: {nxt['call_id']} during {prev['call_id']}")
        return out

    async def close(self) -> None:
        await self.traffic.close()
        if self.daemon is not None:
            await self.daemon.stop()
        await self.db.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(sandbox, "up")
            await asyncio.to_thread(sandbox, "cli", "channel request hangup all")


# Facts about a call a restart must not lose or change once stored.
_KNOWN = ("started_at", "caller_num", "caller_name", "answered_at", "queue", "queue_joined_at", "agent",
          "agent_answered_at")


async def _rows(run: Run, ids: list[str]) -> dict[str, Any]:
    return {r["call_id"]: r for r in await run.db.fetch("SELECT * FROM calls WHERE call_id = ANY($1)", ids)}


# -- 1. Asterisk killed and restarted -----------------------------------------------

async def asterisk_killed(run: Run) -> None:
    await run.load(run.plan.before_s)
    h = await run.health()
    if h is None:
        raise HarnessError("the daemon's /healthz does not answer")
    resyncs = h["ami"]["resyncs"]
    live_before = h["model"]["calls"]
    killed_at = time.time()
    await asyncio.to_thread(sandbox, "kill")
    dead_at = time.time()   # the kill has landed by now (the command may take a while to send it)

    async def noticed() -> bool:
        h = await run.health()
        return bool(h and not h["ami"]["logged_in"])

    await run.until(noticed, 20, "the daemon noticed Asterisk died")
    await asyncio.to_thread(sandbox, "up")
    back_at = time.time()
    await demo_times(run.traffic, ring=run.plan.ring, talk=run.plan.talk)  # a restart resets the globals

    async def resynced() -> dict[str, Any] | None:
        h = await run.health()
        return h if h and h["ami"]["logged_in"] and h["ami"]["resyncs"] > resyncs else None

    h = await run.until(resynced, 60, "the daemon reconnected and resynced by itself")
    recovered_at = time.time()
    run.outcome.check("the daemon reconnected and resynced by itself", True,
                      f"{recovered_at - back_at:.1f}s after Asterisk was back")
    await asyncio.sleep(run.plan.after_s)
    await run.finish()
    placed = run.traffic.placed
    rows = await _rows(run, run.traffic.real_ids())
    cut = [p.id for p in placed if p.at < killed_at and p.id in rows and rows[p.id]["end_estimated"]]
    after = [p.id for p in placed if p.at > recovered_at and p.id in rows]
    after_estimated = [c for c in after if rows[c]["end_estimated"]]
    late_estimates = [c for c, r in rows.items() if r["end_estimated"] and r["started_at"].timestamp() > killed_at + 1
                      and c not in after]
    # Every channel died with Asterisk: a call that began before the crash and was not
    # estimated must have ended before the kill landed (by dead_at; 0.5 s for timestamps).
    survived = [c for c, r in rows.items() if r["started_at"].timestamp() < killed_at and not r["end_estimated"]
                and r["ended_at"] is not None and r["ended_at"].timestamp() > dead_at + 0.5]
    run.outcome.figures.update({"live calls when Asterisk was killed": live_before,
                                "calls cut by the crash (closed, end_estimated)": len(cut),
                                "calls placed after recovery": len(after)})
    run.outcome.check("calls cut by the crash closed with end_estimated", (cut or not live_before) and not survived,
                      f"{len(cut)} cut; {len(survived)} said to end after the crash without an estimate")
    run.outcome.check("calls after the restart recorded normally", after and not after_estimated,
                      f"{len(after)} after, {len(after_estimated)} estimated")
    run.outcome.check("no estimate on a call that began after the crash", not late_estimates, late_estimates[:3])


# -- 2. the daemon killed and restarted ----------------------------------------------

async def daemon_killed(run: Run) -> None:
    assert run.daemon is not None
    await run.load(max(1.0, run.plan.before_s - 8))
    # Callers nobody may answer before they have waited 20 s (queue "late"): certain to be
    # waiting when the daemon dies, and due to an agent only after it is back.
    held = [await run.traffic.place("late", 240, name=f"Held {n}") for n in range(3)]
    # Calls answered from now on talk well past the outage (the plan's talk times end most
    # calls within a few seconds, and a slow restart could outlast them all): some agents are
    # certain to be on call at the crash and still on it at the return, to be found and adopted.
    await demo_times(run.traffic, ring=run.plan.ring, talk=LONG_TALK)
    await asyncio.sleep(8)
    held_ids = [p.id for p in held]
    states = {c: r["state"] for c, r in (await _rows(run, held_ids)).items()}
    before = {r["call_id"]: r for r in await run.db.fetch(
        "SELECT * FROM calls WHERE call_id LIKE $1", run.traffic.prefix + "%")}
    talking = [c for c, r in before.items() if r["state"] == "talking"]
    run.outcome.check("the held callers were waiting in the queue when the daemon died",
                      all(states.get(c) == "queued" for c in held_ids), states)
    killed_at = time.time()
    await run.daemon.kill()
    await asyncio.sleep(2)  # down for a moment; calls go on ending in Asterisk meanwhile
    restart = time.time()
    await run.daemon.start()
    await demo_times(run.traffic, ring=run.plan.ring, talk=run.plan.talk)
    run.outcome.figures["down for"] = f"{time.time() - killed_at:.1f}s (restart took {time.time() - restart:.1f}s)"
    await asyncio.sleep(run.plan.after_s)
    await run.finish()
    rows = await _rows(run, held_ids)
    answered = [c for c in held_ids if c in rows and rows[c]["agent_answered_at"] is not None
                and not rows[c]["abandoned"]]
    run.outcome.check("callers waiting while the daemon was down answered by an agent afterwards",
                      len(answered) == len(held_ids), f"{len(answered)} of {len(held_ids)}")
    adopted = await run.db.fetch(
        "SELECT agent_id, reason FROM agent_states WHERE reason LIKE 'found on call %' AND at > to_timestamp($1)",
        killed_at)
    after = await _rows(run, run.traffic.real_ids())
    # Seen ending live by the new process: they were still up when it came back.
    still_up = [c for c in talking if c in after and not after[c]["end_estimated"]]
    forgotten = {c: f for c, r in before.items() if c in after for f in _KNOWN
                 if r[f] is not None and after[c][f] != r[f]}
    run.outcome.check("nothing the database knew before the crash was lost or changed", not forgotten,
                      f"{len(forgotten)} calls, e.g. {list(forgotten.items())[:3]}")
    unnamed = [c for c, r in after.items() if r["agent_answered_at"] is not None and not r["agent"]]
    run.outcome.check("every call answered by an agent names the agent", not unnamed, unnamed[:3])
    run.outcome.figures.update({"calls talking when the daemon died": len(talking),
                                "of them still talking at its return": len(still_up),
                                "agents found on call": len(adopted)})
    run.outcome.check("talking agents adopted", len(adopted) >= len(still_up) > 0,
                      f"{len(adopted)} found on call; {len(still_up)} calls talking at the crash outlived it")
    ended_away = [c for c, r in after.items() if r["end_estimated"]]
    run.outcome.figures["calls that ended while it was down (closed by estimate)"] = len(ended_away)


# -- 3. PostgreSQL away ----------------------------------------------------------------

async def postgres_stopped(run: Run) -> None:
    await run.load(run.plan.before_s)
    samples: list[tuple[float, int | None, bool | None]] = []

    async def sample() -> tuple[int | None, bool | None]:
        assert run.daemon is not None
        got = await run.daemon.health()
        if got is None:
            samples.append((time.time(), None, None))
            return None, None
        status, body = got
        samples.append((time.time(), status, body["database"]["connected"]))
        return status, body["database"]["connected"]

    await run.db.stop()
    stopped = time.time()
    while time.time() - stopped < run.plan.outage_s:
        await sample()
        await asyncio.sleep(0.5)
    during = list(samples)
    buffered = (await run.health() or {}).get("database", {}).get("buffered")
    await run.db.start()

    async def up() -> bool:
        status, connected = await sample()
        return status == 200 and bool(connected)

    back = time.time()
    await run.until(up, 60, "/healthz says the database is back")
    back_s = time.time() - back
    run.outcome.figures["outage"] = f"{run.plan.outage_s:.0f}s, rows buffered at its end: {buffered}"
    down = [s for s in during if s[1] == 503 and s[2] is False]
    unanswered = [s for s in during if s[1] is None]
    run.outcome.check("/healthz reported the database down during the outage", down,
                      f"{len(down)} of {len(during)} samples said down, {len(unanswered)} unanswered")
    run.outcome.check("/healthz answered throughout the outage", not unanswered, f"{len(unanswered)} unanswered")
    run.outcome.check("/healthz reports the database up after", True, f"{back_s:.1f}s after it returned")
    await asyncio.sleep(run.plan.after_s)
    await run.finish()
    timelines = await run.db.fetch(
        "SELECT call_id, count(*) AS n, max(seq) AS last FROM call_events WHERE call_id = ANY($1) GROUP BY call_id",
        run.traffic.real_ids())
    broken = [t["call_id"] for t in timelines if t["n"] != t["last"]]
    run.outcome.check("every call's event timeline complete (each event once, no gap)",
                      len(timelines) == len(run.traffic.real_ids()) and not broken,
                      f"{len(timelines)} timelines, {len(broken)} with gaps")


# -- 4. WebSocket storm ------------------------------------------------------------------

class Probe:
    """A supervisor's WebSocket client that reads everything and checks the numbering."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.seqs: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.ended: set[str] = set()
        self.closed_with: int | None = None
        self.pongs = 0
        self.rtt_max = 0.0          # the slowest ping -> pong round trip
        self._pinged: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(self.url + "/ws", heartbeat=None) as ws:
                await ws.send_json({"type": "auth", "token": self.key})
                pinger = asyncio.create_task(self._ping(ws))
                try:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        body = json.loads(msg.data)
                        kind = body.get("type")
                        if kind == "hello":
                            self.ready.set()
                            continue
                        if kind == "pong":
                            self.pongs += 1
                            if self._pinged is not None:
                                self.rtt_max = max(self.rtt_max, time.monotonic() - self._pinged)
                                self._pinged = None
                        if kind in ("hello", "resync", "pong", "error", "wallboard"):
                            continue
                        seq = body["seq"]
                        if self.seqs and seq != self.seqs[-1] + 1:
                            self.gaps.append((self.seqs[-1], seq))
                        self.seqs.append(seq)
                        if kind == "call.ended":
                            self.ended.add(body["call_id"])
                finally:
                    pinger.cancel()
                self.closed_with = ws.close_code

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(1)
            if self._pinged is not None:  # no pong for the last ping yet: count it as still waiting
                self.rtt_max = max(self.rtt_max, time.monotonic() - self._pinged)
                continue
            self._pinged = time.monotonic()
            await ws.send_json({"type": "ping"})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ws-probe")
        await asyncio.wait_for(self.ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _raw_upgrade(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand, so a client can stop reading for real."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise HarnessError(f"no upgrade: {head[:80]!r}")
    return reader, writer


def _frame(text: str) -> bytes:
    data = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(data)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def _storm_client(kind: str, url: str, port: int, key: str, rng: random.Random) -> str:
    """One short-lived client; returns what happened (for the tally)."""
    try:
        if kind in ("mute", "cut"):
            reader, writer = await _raw_upgrade(port)
            writer.write(_frame(json.dumps({"type": "auth", "token": key})))
            await writer.drain()
            # mute: authenticated, then never reads a byte; cut: reset without a close frame.
            await asyncio.sleep(rng.uniform(0.5, 3.0) if kind == "mute" else rng.uniform(0, 0.3))
            writer.transport.abort()
            return kind
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async with s.ws_connect(url + "/ws", heartbeat=None) as ws:
                if kind == "good":
                    await ws.send_json({"type": "auth", "token": key})
                    end = time.monotonic() + rng.uniform(0.05, 1.0)
                    while time.monotonic() < end:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await ws.receive(timeout=max(0.01, end - time.monotonic()))
                elif kind == "forged":
                    await ws.send_json({"type": "auth", "token": "ctk_" + uuid.uuid4().hex * 2})
                    await ws.receive(timeout=10)
                elif kind == "garbage":
                    await ws.send_str("{not json" * rng.randint(1, 50))
                    await ws.receive(timeout=10)
                elif kind == "silent":  # never authenticates; leaves before or after the server gives up
                    await asyncio.sleep(rng.uniform(0, 6))
        return kind
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, HarnessError) as exc:
        return f"{kind}:{type(exc).__name__}"


async def websocket_storm(run: Run) -> None:
    from api import accounts
    from api.auth import digest, new_api_key
    import asyncpg

    assert run.daemon is not None
    key = new_api_key()
    conn = await asyncpg.connect(run.db.dsn)
    try:
        await accounts.create_api_key(conn, "fault-probe", "supervisor", digest(key))
    finally:
        await conn.close()
    url, port = run.daemon.url, run.daemon.port
    probe = Probe(url, key)
    await probe.start()
    await run.load(min(run.plan.before_s, 15))
    rng = random.Random(7)
    # One wave of good clients first: the API's database pool grows to its working size
    # (up to 10 connections), which is not a leak.
    await asyncio.gather(*(_storm_client("good", url, port, key, rng) for _ in range(run.plan.storm_wave)))
    await asyncio.sleep(1)
    fds_before, kinds_before, rss_before = run.daemon.fd_count(), run.daemon.fd_kinds(), run.daemon.rss_kb()
    m_before = await run.daemon.metrics()
    kinds = ["good"] * 4 + ["forged"] * 2 + ["garbage", "silent", "mute", "cut"]
    tally: dict[str, int] = {}
    health_slowest = 0.0

    async def timed_health() -> Any:
        nonlocal health_slowest
        t = time.monotonic()
        got = await run.daemon.health()
        health_slowest = max(health_slowest, time.monotonic() - t)
        return got
    started = time.time()
    done = 0
    while done < run.plan.storm_clients:
        n = min(run.plan.storm_wave, run.plan.storm_clients - done)
        results = await asyncio.gather(
            *(_storm_client(rng.choice(kinds), url, port, key, rng) for _ in range(n)), timed_health())
        for r in results[:-1]:
            tally[r] = tally.get(r, 0) + 1
        if results[-1] is None:
            tally["healthz unanswered"] = tally.get("healthz unanswered", 0) + 1
        done += n
    storm_s = time.time() - started
    await asyncio.sleep(min(run.plan.after_s, 10))   # traffic flows on; unauthenticated sockets time out (5 s)
    await run.finish()
    await asyncio.sleep(2)
    fds_after, kinds_after, rss_after = run.daemon.fd_count(), run.daemon.fd_kinds(), run.daemon.rss_kb()
    m_after = await run.daemon.metrics()
    await probe.stop()
    ended_rows = [r["call_id"] for r in await run.db.fetch(
        "SELECT call_id FROM calls WHERE call_id LIKE $1 AND ended_at IS NOT NULL", run.traffic.prefix + "%")]
    missed = [c for c in ended_rows if c not in probe.ended]
    run.outcome.figures.update({
        "storm": f"{done} clients in {storm_s:.1f}s ({run.plan.storm_wave} at once): {dict(sorted(tally.items()))}",
        "probe": f"{len(probe.seqs)} events, seq {probe.seqs[0] if probe.seqs else '-'}..{probe.seqs[-1] if probe.seqs else '-'}, "
                 f"{probe.pongs} pongs, call.ended for {len(probe.ended)} calls",
        "daemon fds": f"{fds_before} {kinds_before} before, {fds_after} {kinds_after} after",
        "daemon RSS": f"{rss_before // 1024} MB before, {rss_after // 1024} MB after",
        "tasks": f"{m_before.get('cti_asyncio_tasks')} before, {m_after.get('cti_asyncio_tasks')} after",
        "WebSocket connections": f"{m_before.get('cti_ws_connections')} before, {m_after.get('cti_ws_connections')} after",
        "slowest /healthz during a wave": f"{health_slowest:.2f}s",
        "slowest probe ping -> pong": f"{probe.rtt_max:.2f}s",
    })
    run.outcome.check("the probe's events arrived in order, none missing", probe.seqs and not probe.gaps,
                      probe.gaps[:3])
    run.outcome.check("the probe was never dropped", probe.closed_with is None, probe.closed_with)
    run.outcome.check("the probe saw every call end", not missed, f"{len(missed)} missed of {len(ended_rows)}")
    run.outcome.check("/healthz answered during the storm", "healthz unanswered" not in tally)
    run.outcome.check("no fd leak", fds_after <= fds_before + 3, f"{fds_before} -> {fds_after}")
    run.outcome.check("no task leak", m_after.get("cti_asyncio_tasks", 1e9) <= m_before.get("cti_asyncio_tasks", 0) + 3,
                      f"{m_before.get('cti_asyncio_tasks')} -> {m_after.get('cti_asyncio_tasks')}")
    run.outcome.check("only the probe connected afterwards", m_after.get("cti_ws_connections") == 1.0,
                      m_after.get("cti_ws_connections"))
    run.outcome.check("memory near its baseline", rss_after <= rss_before * 1.25 + 30 * 1024,
                      f"{rss_before // 1024} -> {rss_after // 1024} MB")


SCENARIOS: dict[str, tuple[Callable[[Run], Awaitable[None]], dict[str, Any]]] = {
    "asterisk": (asterisk_killed, {}),
    "daemon": (daemon_killed, {"acd_announce_every": 0}),
    "pg": (postgres_stopped, {}),
    "storm": (websocket_storm, {}),
}


async def run_scenario(name: str, plan: Plan, workdir: Path) -> Outcome:
    """Run one scenario; its ``Outcome`` (a harness failure is a failed check, not an exception)."""
    fn, settings = SCENARIOS[name]
    run = Run(name, plan, workdir, **settings)
    try:
        await run.open()
        await fn(run)
    except HarnessError as exc:
        run.outcome.check("the scenario ran to its end", False, exc)
    finally:
        await run.close()
    return run.outcome


async def main_async(names: list[str], plan: Plan, workdir: Path) -> int:
    failed = 0
    for name in names:
        outcome = await run_scenario(name, plan, workdir)
        print(outcome.render(), flush=True)
        failed += not outcome.ok
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="*", help=f"some of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--short", action="store_true", help="the short version (CI)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = p.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    Path("/var/tmp").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cti-faults-", dir="/var/tmp"))
    workdir.chmod(0o755)
    from cti import logs
    logs.configure("console", "warning")
    print(f"work directory: {workdir}", flush=True)
    try:
        return asyncio.run(main_async(names, SHORT if args.short else FULL, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
