"""Integration fixtures: the real Asterisk sandbox, a real PostgreSQL, the daemon in-process.

The sandbox is started by ``scripts/test`` (``scripts/asterisk-sandbox up``);
these fixtures make sure it is up (a fault test may have killed it) and never
leave it down. Each test gets its own database on the PostgreSQL at
127.0.0.1:5432 when it answers, else on an embedded server.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import socket
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
from aiohttp import web

from acd.routing_shell import ACD, AcdService
from cti import sandbox as sandbox_secrets
from cti.ami import AmiClient
from cti.config import Settings, load_settings
from cti.daemon import CORE, Core
from cti.demo import DEMO_USER, demo_secret
from cti.httpserver import start_http
from server.root import build as build_app

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "scripts" / "asterisk-sandbox"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# One lock per sandbox root (CTI_SANDBOX_ROOT selects another root, e.g. a private
# sandbox in its own network namespace: scripts/run-isolated, scripts/test-isolated).
_ROOT_DIR = os.environ.get("CTI_SANDBOX_ROOT")
LOCK = Path(f"{_ROOT_DIR}.lock" if _ROOT_DIR else "/var/cache/cti/sandbox.lock")



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def sandbox(*args: str) -> None:
    subprocess.run([str(SANDBOX), *args], check=True, timeout=300)


def hangup_all() -> None:
    """End every channel left in the sandbox (by a failed test), so the next test starts clean."""
    subprocess.run([str(SANDBOX), "cli", "channel request hangup all"], capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run([str(SANDBOX), "cli", "core show channels count"], capture_output=True,
                             text=True, timeout=30).stdout
        # Not startswith: asterisk -rx may print a warning first (no ethernet interface for
        # its EID in a private network namespace), and the wait would run to its end.
        if "\n0 active channels" in "\n" + out:
            return
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def http_receiver(path: str, handler: Any) -> tuple[web.AppRunner, int]:
    """A plain HTTP server on 127.0.0.1 answering POST ``path`` with ``handler`` (webhook
    receivers): its runner, which the test cleans up, and its port."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture(scope="session")
def asterisk() -> Iterator[None]:
    """The sandbox, held for the whole session: one Asterisk serves one test
    session at a time (tests change its globals and kill it), so concurrent
    sessions on the same machine queue up on a lock."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as fh:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the sandbox stayed locked by another test session ({LOCK})")
                time.sleep(1)
        sandbox("up")
        hangup_all()  # nothing left over from a demo or an earlier run
        yield


@pytest.fixture(autouse=True)
def _asterisk_stays_up(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "asterisk" in request.fixturenames:
        sandbox("up")
        hangup_all()


async def _admin_reachable() -> bool:
    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """A DSN with the right to create databases: the PostgreSQL on 127.0.0.1:5432,
    else an embedded one. Its data lives outside pytest's temporary directory:
    pytest resets that to mode 0700 whenever another session starts, and the
    embedded server (run as an unprivileged user when we are root) would lose it."""
    if asyncio.run(_admin_reachable()):
        yield PG_ADMIN
        return
    import shutil
    import tempfile

    from cti.embedded_pg import EmbeddedPostgres

    Path("/var/tmp").mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="cti-test-pg-", dir="/var/tmp"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "data")
    dsn = asyncio.run(server.start())
    try:
        yield dsn
    finally:
        asyncio.run(server.stop())
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def database(pg_admin: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"cti_it_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    # Swap the database name, keeping any query (the embedded server's socket dir and port).
    parts = urllib.parse.urlsplit(pg_admin)
    try:
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(pg_admin)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@functools.cache
def sandbox_hook_secret() -> str:
    """The hook secret the sandbox's dialplan sends (``CTI_HOOK_SECRET`` global)."""
    return sandbox_secrets.secret(sandbox_secrets.HOOKS)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test database, migrated (the stores take a pool or a connection)."""
    from cti.migrate import migrate

    await migrate(database)
    p = await asyncpg.create_pool(database, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


def daemon_settings(dsn: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(database_url=dsn, http_port=free_port(), state_dir=tmp_path,
                                  ami_reconnect_max=1.0, ami_ping_interval=2.0, log_format="json",
                                  hook_secret=sandbox_hook_secret(),
                                  ami_secret=sandbox_secrets.secret(sandbox_secrets.DAEMON))
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Daemon:
    core: Core
    runner: web.AppRunner
    settings: Settings

    @property
    def acd(self) -> AcdService | None:
        """The ACD the composition root built (None when it does not run)."""
        return self.runner.app.get(ACD)

    async def stop(self, timeout: float = 60.0) -> None:
        """Stop the daemon; one that does not stop in time fails the test with every task's stack."""
        try:
            await asyncio.wait_for(self.runner.cleanup(), timeout)
        except asyncio.TimeoutError:
            import io
            out = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(file=out)
            pytest.fail(f"the daemon did not stop within {timeout}s; tasks:\n{out.getvalue()}")


async def start_daemon(settings: Settings, app: web.Application | None = None) -> Daemon:
    """Serve ``app`` (default: the whole daemon for ``settings``) and wait until it follows Asterisk."""
    app = build_app(settings) if app is None else app
    runner, _ = await start_http(app, settings)    # the daemon's listener: its deadlines and caps
    core = app[CORE]
    assert core.ami is not None
    await core.ami.wait_connected(timeout=20)
    await eventually(lambda: core.ami.health.resyncs >= 1, timeout=20)
    return Daemon(core, runner, settings)


@pytest.fixture
async def daemon(asterisk: None, database: str, tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await start_daemon(daemon_settings(database, tmp_path))
    try:
        yield d
    finally:
        await d.stop()


@pytest.fixture
async def demo_ami(asterisk: None) -> AsyncIterator[AmiClient]:
    """An AMI connection as the demo user: places simulated calls, reads CDRs."""
    client = AmiClient("127.0.0.1", 5038, DEMO_USER, demo_secret(), reconnect_max=1.0)
    await client.start()
    await client.wait_connected(timeout=20)
    try:
        yield client
    finally:
        await client.stop()


async def eventually(check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float,
                     interval: float = 0.1, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        with contextlib.suppress(Exception):
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout}s: {what or getattr(check, '__name__', check)} (last: {last!r})")
        await asyncio.sleep(interval)


@pytest.fixture
async def fenced_daemon(asterisk: None, database: str, tmp_path: Path,
                        demo_ami: AmiClient) -> AsyncIterator[Callable[..., Awaitable[tuple[Daemon, list[dict[str, Any]]]]]]:
    """``await fenced_daemon(acd_config, **settings)``: a daemon with that ACD configuration,
    once it has raised epoch 1 in Asterisk and beaten, with every agent logged in not ready, the demo
    agents' ring and talk times short, and every AMI event the demo user sees recorded:
    returns ``(daemon, events)``. Afterwards the daemon stops, the demo times and the epoch
    Asterisk holds are put back (the epoch by a plain Setvar, as an operator would: later
    tests' daemons lead with epoch 1)."""
    from acd.epoch import EPOCH_GLOBAL
    from cti.demo import set_demo_times
    started: list[Daemon] = []

    async def start(acd_config: Path, **settings: Any) -> tuple[Daemon, list[dict[str, Any]]]:
        hangup_all()
        d = await start_daemon(daemon_settings(database, tmp_path, acd_config=acd_config, **settings))
        started.append(d)
        acd = d.acd
        await eventually(lambda: acd is not None and acd.epoch_in_force == 1 and acd.heartbeats > 0, timeout=10,
                         what="the ACD raised epoch 1 and beat")
        assert acd is not None
        for agent in acd.config.agents:      # those logged in; a logged-out one stays out
            if acd.router.agent_state(agent.id).state != "logged_out":
                acd.agent_request(agent.id, "set_not_ready", "test")
        await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
        events: list[dict[str, Any]] = []
        demo_ami.add_listener(lambda frame: events.append(dict(frame.headers)))
        return d, events

    try:
        yield start
    finally:
        for d in started:
            await d.stop()
        if started:
            await set_demo_times(demo_ami)
            await demo_ami.send("Setvar", {"Variable": EPOCH_GLOBAL, "Value": ""}, shape="single")


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (async API). Fake
    camera and microphone, and media permission granted, for WebRTC pages."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        try:
            yield b
        finally:
            await b.close()
