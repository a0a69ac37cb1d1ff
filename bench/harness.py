"""A small harness for runs against the sandbox: the daemon as a real process, traffic, faults.

- ``DaemonProcess``: ``cti serve`` as a subprocess, configured by ``CTI_*`` environment
  variables (``daemon_env``), so it can be SIGKILLed like a real crash and started again on
  the same database; optionally from another checkout or under a wrapper (a profiler).
  ``wait_ready`` polls ``/healthz``; ``metrics`` reads ``/metrics``; ``fd_count`` and
  ``rss_kb`` read ``/proc``.
- ``free_port``: a TCP port free on loopback right now.
- ``Traffic``: simulated callers (``cti.demo.place_call``) at a steady rate, each with a
  known id prefix; it remembers every call it placed and, from its own AMI connection,
  which of them Asterisk actually created (``Newchannel``). An Originate acknowledged just
  before Asterisk dies may never become a channel: such a call was never placed.
- ``sandbox(...)``: ``scripts/asterisk-sandbox`` (``kill``, ``up``, ``cli ...``).
- ``Database``: an embedded PostgreSQL of the run's own, which a scenario can stop and start.
- ``scratch_database(...)``: a fresh database for one run, on a server that answers (dropped
  afterwards) or else on an embedded one (removed afterwards).
- ``integrity(...)``: ``bench.integrity.fetch_and_check`` over the run's placed calls.

Used by every benchmark that runs the daemon or needs a database (bench/faults.py,
bench/load.py, bench/acd_latency.py, bench/hooks.py, bench/customer_lookup.py,
bench/reports.py) and by tests/integration/test_fault_suite.py. The sandbox parts need
root and the demo AMI user (asterisk-config/demo).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from bench.integrity import IntegrityReport, fetch_and_check
from cti.ami import AmiClient
from cti.demo import DEMO_USER, demo_secret, PlacedCall, place_call, set_demo_times

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "scripts" / "asterisk-sandbox"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class HarnessError(Exception):
    """The harness could not set up or observe a run (not a finding about the daemon)."""


def sandbox(*args: str, timeout: float = 300) -> str:
    """Run ``scripts/asterisk-sandbox`` (honours ``CTI_SANDBOX_ROOT``); returns its output."""
    done = subprocess.run([str(SANDBOX), *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise HarnessError(f"asterisk-sandbox {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def asterisk_channels() -> int:
    out = sandbox("cli", "core show channels count", timeout=30)
    for line in out.splitlines():
        if line.endswith("active channels") or line.endswith("active channel"):
            return int(line.split()[0])
    return -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the database ------------------------------------------------------------------

class Database:
    """An embedded PostgreSQL in ``directory``; ``stop()`` and ``start()`` it at will
    (same socket, same DSN)."""

    def __init__(self, directory: Path) -> None:
        from cti.embedded_pg import EmbeddedPostgres

        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        # A minute to become ready: the fault suite starts it again under load, and 30 s was
        # once too short on a busy two-core machine.
        self.server = EmbeddedPostgres(directory / "pg", start_timeout=60.0)
        self.dsn = ""

    async def start(self) -> str:
        self.dsn = await self.server.start()
        return self.dsn

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def postmaster(self) -> int:
        """The server's pid (its CPU is part of a run's figures)."""
        return int((self.server.pgdata / "postmaster.pid").read_text().split()[0])

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@dataclass(frozen=True, slots=True)
class Scratch:
    """A database made for one run. ``postmaster``: the pid of its server when the
    server is the run's own (embedded), None on a shared server."""

    dsn: str
    postmaster: int | None


@contextlib.asynccontextmanager
async def scratch_database(url: str | None = None, *, prefix: str = "cti_bench",
                           keep: bool = False) -> AsyncIterator[Scratch]:
    """A fresh, empty database: on ``url``'s server (default ``PG_ADMIN``) when it answers,
    dropped at the end unless ``keep``; else on an embedded server in a directory of
    /var/tmp, stopped and removed at the end (``keep`` does not apply)."""
    admin = url or PG_ADMIN
    try:
        conn = await asyncpg.connect(admin, timeout=3)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        conn = None
    if conn is not None:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        # Swap the database name, keeping any query (an embedded server's socket dir and port).
        try:
            yield Scratch(urlunsplit(urlsplit(admin)._replace(path=f"/{name}")), None)
        finally:
            if not keep:
                conn = await asyncpg.connect(admin, timeout=10)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                finally:
                    await conn.close()
        return
    Path("/var/tmp").mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="cti-bench-pg-", dir="/var/tmp"))
    db = Database(base)
    try:
        yield Scratch(await db.start(), db.postmaster)
    finally:
        with contextlib.suppress(Exception):
            await db.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- the daemon --------------------------------------------------------------------

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


@dataclass
class DaemonProcess:
    """``cti serve`` in a process of its own. ``env`` holds ``CTI_*`` settings (``daemon_env``).

    ``source``: the checkout whose code runs (default: this one; another commit's for a
    before/after in one run: ``bench/acd_latency.py --baseline-source``). ``wrapper``: a
    script and its arguments the daemon runs under (``bench/cpuprofile.py``,
    ``bench/memtrace.py``), as ``python WRAPPER... -m server.cli serve``."""

    env: dict[str, str]
    log_path: Path
    source: Path = ROOT
    wrapper: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def port(self) -> int:
        return int(self.env["CTI_HTTP_PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise HarnessError("the daemon is not running")
        return self.proc.pid

    async def start(self, timeout: float = 90) -> dict[str, Any]:
        """Start the process and wait until it is ready; returns its first healthy ``/healthz``."""
        if self.proc is not None and self.proc.returncode is None:
            raise HarnessError("the daemon is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_") or k == "CTI_SANDBOX_ROOT"}
        env.update(self.env)
        env["PYTHONPATH"] = str(self.source)
        log = open(self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, *self.wrapper, "-m", "server.cli", "serve", cwd=str(self.source), env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        self.starts += 1
        return await self.wait_ready(timeout)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon (``SIGUSR1``: a profile window, bench/cpuprofile.py)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def metrics(self, http: aiohttp.ClientSession | None = None) -> dict[str, float]:
        """``/metrics`` as ``parse_metrics`` reads it; through ``http`` when given (a run's
        session), else a session of its own with a 5 s timeout. Raises ``aiohttp.ClientError``
        or ``OSError`` when the daemon does not answer."""
        if http is not None:
            async with http.get(self.url + "/metrics") as r:
                return parse_metrics(await r.text())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            async with s.get(self.url + "/metrics") as r:
                return parse_metrics(await r.text())

    async def health(self) -> tuple[int, dict[str, Any]] | None:
        """``(status, body)`` of ``/healthz``, or None when it does not answer within 10 s."""
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
                async with s.get(self.url + "/healthz") as r:
                    return r.status, await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    async def wait_ready(self, timeout: float = 90) -> dict[str, Any]:
        """Until ``/healthz`` says ok, the model resynced and (with an ACD) it beat once;
        an HA standby (``ha.role``) is ready once resynced (its ACD waits to lead)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise HarnessError(f"the daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            got = await self.health()
            if got is not None:
                status, body = got
                acd = body.get("acd")
                standby = (body.get("ha") or {}).get("role") == "standby"
                if status == 200 and body["ami"]["resyncs"] >= 1 and (acd is None or standby
                                                                       or acd["heartbeats"] > 0):
                    return body
            await asyncio.sleep(0.2)
        raise HarnessError(f"the daemon was not ready within {timeout}s:\n{self.log_tail()}")

    async def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, like a crash."""
        if self.proc is None or self.proc.returncode is not None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            return None

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_kinds(self) -> dict[str, int]:
        """The daemon's open fds by kind: ``unix`` (its PostgreSQL connections: the embedded
        server has only a socket), ``http`` (connections to its HTTP port), ``tcp`` (other
        sockets: AMI, listeners), ``pipe``, ``file``, ``other``."""
        inodes: dict[str, str] = {}
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                local_port = int(f[1].rsplit(":", 1)[1], 16)
                inodes[f[9]] = "http" if local_port == self.port and f[3] != "0A" else "tcp"
        kinds: dict[str, int] = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                kind = inodes.get(target[8:-1], "unix")
            elif target.startswith("pipe:"):
                kind = "pipe"
            elif target.startswith("/"):
                kind = "file"
            else:
                kind = "other"
            kinds[kind] = kinds.get(kind, 0) + 1
        return dict(sorted(kinds.items()))

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def daemon_env(dsn: str, state_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment for ``cti serve``: ``CTI_<NAME>`` for each setting, with a free HTTP
    port and fast AMI reconnects unless given. The keepalive keeps its production interval: a
    crash of Asterisk closes the socket at once, and a 2 s keepalive would drop the connection
    whenever the machine is briefly overloaded (a fault of its own). A setting given as
    None is left out (the daemon's default)."""
    from cti import sandbox as sandbox_secrets

    values: dict[str, Any] = {"database_url": dsn, "http_port": free_port(), "state_dir": state_dir,
                              "ami_reconnect_max": 1.0, "log_format": "json",
                              # the hooks do not start without one; nothing here calls them
                              "hook_secret": secrets.token_hex(16),
                              "ami_secret": sandbox_secrets.secret(sandbox_secrets.DAEMON)}
    values.update(settings)
    return {f"CTI_{k.upper()}": str(v) for k, v in values.items() if v is not None}


# -- traffic -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Placed:
    call: PlacedCall
    at: float              # wall clock when Asterisk acknowledged the Originate
    queue: str
    patience: int

    @property
    def id(self) -> str:
        return self.call.channel_id


@dataclass
class Traffic:
    """Simulated callers into ACD queues at ``rate`` calls per second (Poisson arrivals).

    ``prefix`` starts every call id of the run. ``queues`` are chosen at random;
    ``patience`` (s) is how long a caller waits before hanging up.
    """

    rate: float
    prefix: str
    queues: tuple[str, ...] = ("sales", "support")
    patience: tuple[int, int] = (20, 60)
    seed: int | None = None
    placed: list[Placed] = field(default_factory=list)
    started: set[str] = field(default_factory=set)      # Newchannel seen for these ids
    refused: int = 0                                     # Originates Asterisk did not take
    ami: AmiClient | None = None
    _task: asyncio.Task[None] | None = None

    async def connect(self) -> AmiClient:
        if self.ami is None:
            self.ami = AmiClient("127.0.0.1", 5038, DEMO_USER, demo_secret(), reconnect_max=1.0)
            self.ami.add_listener(self._on_frame)
            await self.ami.start()
        await self.ami.wait_connected(timeout=60)
        return self.ami

    def _on_frame(self, frame: Any) -> None:
        h = frame.headers
        if h.get("Event") == "Newchannel" and h.get("Uniqueid", "").startswith(self.prefix):
            self.started.add(h["Uniqueid"])

    async def place(self, queue: str, patience: int, *, name: str = "", priority: int | None = None) -> Placed:
        """Place one caller now; raises when Asterisk does not take it."""
        ami = await self.connect()
        n = random.randrange(1_000_000, 9_999_999)
        variables = {"CTI_QUEUE": queue}
        if priority is not None:
            variables["CTI_PRIORITY"] = str(priority)
        call = await place_call(ami, caller_num=f"+4930{n}", caller_name=name or f"{queue} {n}", patience=patience,
                                context="cti-demo-direct", variables=variables, id_prefix=self.prefix)
        p = Placed(call, time.time(), queue, patience)
        self.placed.append(p)
        return p

    async def _run(self) -> None:
        rng = random.Random(self.seed)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        await self.connect()
        while True:
            try:
                if self.ami is None or not self.ami.connected:
                    raise HarnessError("Asterisk is away")
                await self.place(rng.choice(self.queues), rng.randint(*self.patience))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.refused += 1       # Asterisk is away: that caller never called
            # Arrivals keep their pace; time lost in a stalled Originate is not made up in a burst.
            next_at = max(next_at + rng.expovariate(self.rate), loop.time() - 1.0)
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="traffic")

    async def stop(self) -> None:
        """Stop placing calls (calls already placed carry on)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        await self.stop()
        if self.ami is not None:
            await self.ami.stop()
            self.ami = None

    def real_ids(self) -> list[str]:
        """The ids of the calls Asterisk created (what the database must hold)."""
        return [p.id for p in self.placed if p.id in self.started]

    def ghosts(self) -> list[str]:
        """Acknowledged, but no channel ever appeared (Asterisk died in between)."""
        return [p.id for p in self.placed if p.id not in self.started]


async def wait_quiet(timeout: float) -> int:
    """Until Asterisk has no channel left (every placed call over); returns what is left."""
    deadline = time.monotonic() + timeout
    left = -1
    while time.monotonic() < deadline:
        left = await asyncio.to_thread(asterisk_channels)
        if left == 0:
            return 0
        await asyncio.sleep(1)
    return left


async def demo_times(traffic: Traffic, *, ring: tuple[int, int], talk: tuple[int, int]) -> None:
    """How long simulated agents ring and talk (restored by ``sandbox up`` after a kill: set again)."""
    await set_demo_times(await traffic.connect(), ring=ring, talk=talk)


async def integrity(dsn: str, traffic: Traffic, since: float, until: float) -> IntegrityReport:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await fetch_and_check(conn, traffic.real_ids(), since=datetime.fromtimestamp(since, timezone.utc),
                                     until=datetime.fromtimestamp(until, timezone.utc), id_prefix=traffic.prefix)
    finally:
        await conn.close()
