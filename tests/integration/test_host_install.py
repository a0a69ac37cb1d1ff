"""docs/deploy.md's host install on a clean Debian, then the check and the start as systemd would
run them, against the sandbox's Asterisk and a real PostgreSQL.

``scripts/check-host-install`` (network: debootstrap, apt, PyPI; minutes) leaves a Debian root
in which the doc's install block ran as written. This test takes that root, puts this checkout's
wheel and unit in it (offline: the dependencies are already there), and goes on as the doc
does: systemd of the root verifies and enables the unit, Debian's Caddy validates the
Caddyfile, Asterisk gets an AMI user with the secret the doc's command made, the database URL
joins the secrets file, `cti check --production` runs as the doc's `systemd-run` line asks
(dynamic user, environment file) and passes, and the unit's ExecStart runs as the unit asks
(``tests/integration/hostinstall.py``: its user, environment, umask, no new privileges, no
capabilities, read-only root, private /tmp): READY=1 arrives on the notify socket, /healthz
answers 200 with AMI logged in, jemalloc is loaded, and SIGTERM stops it with STOPPING=1.

systemd itself cannot run here (it is not PID 1, and the cgroups are v1 "hybrid", on which the
root's systemd 257 refuses to boot), so the system call filter, the other sandboxing and the memory limits
of the unit are not exercised: docs/deploy.md says so.

Skips, saying why, without root or without that root, or when the doc's install block or the
dependencies changed since the root was made (run the script again). CI runs the script in the
background (`--if-stale`: only when the root is missing or stale) and this test waits for it."""
from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cti.version import version
from tests.integration.conftest import ROOT, SANDBOX, free_port
from tests.integration.hostinstall import (
    DYNAMIC_UID,
    SYSTEMCTL_STANDIN,
    Service,
    command_starting,
    commands,
    dependencies_digest,
    digest,
    drop_privileges,
    install_block,
    namespace_script,
    parse_environment_file,
    parse_unit,
    section,
    service_environment,
    shell_blocks,
    start_block,
    state_directory_path,
    systemd_run_service,
    unit_service,
)

SUITE = os.environ.get("CTI_HOST_SUITE", "trixie")
HOST = Path(os.environ.get("CTI_HOST_ROOT") or f"/var/cache/cti/host-install-{SUITE}")
STAMP = HOST / "root" / "cti-host-install.stamp"
DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
UNIT = "/etc/systemd/system/cti.service"
SECRETS = "/etc/cti/secrets.env"
CONFIG = "/etc/cti/cti.toml"
ROOT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _stamp() -> dict[str, str]:
    return dict(line.split("=", 1) for line in STAMP.read_text().splitlines() if "=" in line)


def _stale_reason() -> str | None:
    """Why the root cannot serve this checkout, or None."""
    if not STAMP.exists():
        return (f"no installed Debian root at {HOST}: run scripts/check-host-install first "
                "(debootstrap, apt and pip: network, minutes; docs/deploy.md)")
    stamp = _stamp()
    if stamp.get("install_block") != digest(install_block(DOC)):
        return f"docs/deploy.md's install block changed since {HOST} was made: run scripts/check-host-install again"
    if stamp.get("dependencies") != dependencies_digest((ROOT / "pyproject.toml").read_text()):
        return f"the dependencies changed since {HOST} was made: run scripts/check-host-install again"
    return None


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot and mounts)")


def _wait_for_ci_build() -> None:
    """.ci/run starts `scripts/check-host-install --if-stale` beside the other tests
    (CTI_HOST_INSTALL_BUILD names its log): wait for it, and fail if it failed."""
    started = os.environ.get("CTI_HOST_INSTALL_BUILD")
    if not started:
        return
    log, rc = Path(started), Path(started + ".rc")
    deadline = time.monotonic() + 1800
    while not rc.exists() and time.monotonic() < deadline:
        time.sleep(2)
    assert rc.exists(), f"scripts/check-host-install of .ci/run did not end within 30 minutes: {log}"
    assert rc.read_text().strip() == "0", log.read_text(errors="replace")[-5000:]


def in_root(*command: str, service: Service | None = None, timeout: float = 120,
            binds: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``command`` in the root, in a mount namespace of its own (/proc, /dev, its own /run;
    with ``service``, the mounts systemd would give that service)."""
    script = namespace_script(str(HOST), service or Service(argv=()), binds)
    return subprocess.run(["unshare", "-m", "/bin/sh", "-c", script, "sh", *command],
                          capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@functools.cache
def _standins() -> str:
    """A directory with the systemctl stand-in (hostinstall.SYSTEMCTL_STANDIN: daemon-reload
    needs a running systemd), put first on PATH in the root."""
    d = Path(tempfile.mkdtemp(prefix="cti-host-install-bin-"))
    (d / "systemctl").write_text(SYSTEMCTL_STANDIN)
    (d / "systemctl").chmod(0o755)
    d.chmod(0o755)
    return str(d)


def as_root_in_root(*command: str, env: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess[str]:
    """``command`` as root in the root, as an operator's shell would run it."""
    return in_root("/usr/bin/env", "-i", "PATH=/run/cti-check-bin:" + ROOT_PATH.removeprefix("PATH="),
                   "HOME=/root", "LANG=C.UTF-8", *env, *command, binds={_standins(): "cti-check-bin"}, **kw)


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Path:
    """The root with this checkout's wheel and unit (the doc's `pip install` and `cp`)."""
    _wait_for_ci_build()
    reason = _stale_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next(out.glob("open_cti-*.whl"))
    dist = HOST / "root" / "open-cti" / "dist"
    for old in dist.glob("*.whl"):
        old.unlink()
    shutil.copy(wheel, dist / wheel.name)
    pip = as_root_in_root("/opt/cti/venv/bin/pip", "install", "--no-index", "--no-deps", "--force-reinstall",
                          "--disable-pip-version-check", f"/root/open-cti/dist/{wheel.name}", timeout=300)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    check = as_root_in_root("/opt/cti/venv/bin/pip", "check", "--disable-pip-version-check")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    for rel in ("deploy/systemd/cti.service", "deploy/Caddyfile"):
        shutil.copy(ROOT / rel, HOST / "root" / "open-cti" / rel)
    shutil.copy(ROOT / "deploy" / "systemd" / "cti.service", HOST / UNIT.lstrip("/"))
    return HOST


def test_the_install_block_left_the_daemon_its_settings_and_root_only_secrets(host):
    out = as_root_in_root("/opt/cti/venv/bin/cti", "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cti {version()}", out.stdout + out.stderr
    env_file = host / SECRETS.lstrip("/")
    st = env_file.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    values = dict(parse_environment_file(env_file.read_text()))
    for name in ("CTI_AMI_SECRET", "CTI_HOOK_SECRET"):
        value = values.get(name, "")
        assert len(value) == 48 and set(value) <= set("0123456789abcdef"), f"{name} is not 24 random bytes in hex"
    assert stat.S_IMODE((host / CONFIG.lstrip("/")).stat().st_mode) == 0o644
    # The allocator the unit preloads is where Debian's libjemalloc2 put it.
    preload = dict(unit_service((host / UNIT.lstrip("/")).read_text()).environment)["LD_PRELOAD"]
    assert (host / preload.lstrip("/")).exists(), f"{preload} is not in the root: the unit's LD_PRELOAD is wrong"


def test_systemd_of_the_clean_root_verifies_and_enables_the_unit(host):
    out = as_root_in_root("/usr/bin/systemd-analyze", "verify", UNIT, env=("SYSTEMD_LOG_LEVEL=warning",))
    ours = [line for line in (out.stdout + out.stderr).splitlines() if "cti.service" in line]
    assert out.returncode == 0 and ours == [], out.stdout + out.stderr
    enable = [c for c in commands(start_block(DOC)) if c.startswith("systemctl enable")]
    assert len(enable) == 1, "the doc's start block enables the unit once"
    out = as_root_in_root("/bin/sh", "-c", enable[0])     # in a chroot systemctl enables and skips --now
    assert out.returncode == 0, out.stdout + out.stderr
    assert (host / "etc/systemd/system/multi-user.target.wants/cti.service").is_symlink()


def test_the_tls_block_installs_the_caddyfile_and_debians_caddy_accepts_it_with_the_drop_ins_site(host):
    """docs/deploy.md's TLS block as written (apt finds Caddy already installed: no network;
    systemctl in a chroot reloads and restarts nothing), then Caddy validates the file with the
    environment the drop-in gives its service, and serves the site name the doc set."""
    block = shell_blocks(section(DOC, "## TLS"))[0]
    out = as_root_in_root("/bin/bash", "-e", "-c", "cd /root/open-cti\n" + block)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (host / "etc/caddy/Caddyfile").read_text() == (ROOT / "deploy" / "Caddyfile").read_text()
    drop_in = parse_unit((host / "etc/systemd/system/caddy.service.d/cti.conf").read_text())
    env = tuple(f"{k}={v}" for k, v in unit_service("[Service]\nExecStart=/x\n" + "\n".join(
        f"Environment={v}" for v in drop_in["Service"]["Environment"])).environment)
    assert "CTI_SITE=cti.example.com" in env
    caddy_env = (*env, "HOME=/var/lib/caddy", "XDG_DATA_HOME=/tmp/caddy", "XDG_CONFIG_HOME=/tmp/caddy")
    out = as_root_in_root("/usr/bin/caddy", "validate", "--adapter", "caddyfile", "--config", "/etc/caddy/Caddyfile",
                          env=caddy_env)
    assert out.returncode == 0 and "Valid configuration" in out.stdout + out.stderr, out.stdout + out.stderr
    out = as_root_in_root("/usr/bin/caddy", "adapt", "--adapter", "caddyfile", "--config", "/etc/caddy/Caddyfile",
                          env=caddy_env)
    assert out.returncode == 0 and '"cti.example.com"' in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


class TcpToUnix:
    """127.0.0.1:PORT to a unix socket: the daemon in the root, as its dynamic user, reaches the
    embedded PostgreSQL of a private network namespace (socket only, in a directory others may
    not enter) over TCP, as it reaches a host's PostgreSQL."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self.path)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def tcp_database_url(dsn: str, password: str) -> tuple[str, TcpToUnix | None]:
    """The test database as a TCP URL with a password, as the doc's CTI_DATABASE_URL line has
    it (the test servers trust local connections: the password is there for the check's sake)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    user = parts.username or "postgres"
    if "host" in query:           # the embedded server of scripts/test-isolated
        port = (query.get("port") or ["5432"])[0]
        forward = TcpToUnix(f"{query['host'][0]}/.s.PGSQL.{port}")
        return f"postgresql://{user}:{password}@127.0.0.1:{forward.port}{parts.path}", forward
    return f"postgresql://{user}:{password}@{parts.hostname or '127.0.0.1'}:{parts.port or 5432}{parts.path}", None


def sandbox_manager_user(secret: str) -> str:
    """An AMI user with the rights asterisk-config/manager.conf gives the daemon's [cti], under
    another name (the sandbox's [cti] keeps its own secret for the other tests)."""
    lines, inside = [], False
    for raw in (ROOT / "asterisk-config" / "manager.conf").read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == "[cti]"
            continue
        if inside and line and not line.startswith((";", "#")):
            lines.append(line)
    assert any(line.startswith("write") for line in lines), "no [cti] section in asterisk-config/manager.conf"
    return "[cti-host]\n" + "\n".join(lines) + f"\nsecret = {secret}\n"


def prepare_state_directory(service: Service) -> None:
    """What systemd does before the start: the state directory, owned by the service's user."""
    real, link = state_directory_path(service)
    path = HOST / real
    if service.dynamic_user:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.parent.chmod(0o700)
    path.mkdir(exist_ok=True)
    for p in [path, *path.rglob("*")]:
        os.lchown(p, DYNAMIC_UID if service.dynamic_user else 0, DYNAMIC_UID if service.dynamic_user else 0)
    path.chmod(service.state_directory_mode)
    if link:
        target = HOST / "var" / "lib" / (service.state_directory or "")
        if not target.is_symlink():
            if target.exists():
                shutil.rmtree(target)
            target.symlink_to(link)


async def test_the_check_passes_and_the_unit_starts_the_daemon_ready_and_healthy(host, asterisk, database, tmp_path):
    env_path = host / SECRETS.lstrip("/")
    doc_secrets = dict(parse_environment_file(env_path.read_text()))
    # Asterisk's side: an AMI user with the secret the doc's command made.
    manager_file = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root")) / \
        "etc" / "asterisk" / "manager.d" / "zz-host-install.conf"
    old = os.umask(0o077)
    try:
        manager_file.write_text(sandbox_manager_user(doc_secrets["CTI_AMI_SECRET"]))
    finally:
        os.umask(old)
    subprocess.run([str(SANDBOX), "cli", "manager reload"], capture_output=True, timeout=30, check=True)
    # The database: the doc's `echo CTI_DATABASE_URL=... >> /etc/cti/secrets.env`.
    url, forward = tcp_database_url(database, secrets.token_hex(24))
    kept = [line for line in env_path.read_text().splitlines() if not line.startswith("CTI_DATABASE_URL=")]
    env_path.write_text("\n".join(kept + [f"CTI_DATABASE_URL={url}"]) + "\n")
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    # Settings without secrets (README, Configuration): this sandbox's user and free ports.
    http_port = free_port()
    (host / CONFIG.lstrip("/")).write_text(
        f'ami_user = "cti-host"\nhttp_port = {http_port}\nagi_port = {free_port()}\n')
    files = {SECRETS: env_path.read_text()}
    proc = None
    log = None
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        # 1. The doc's check, as its systemd-run line asks.
        check = systemd_run_service(command_starting(start_block(DOC), "systemd-run"))
        prepare_state_directory(check)
        cmd = drop_privileges(check, service_environment(check, files))
        out = in_root(*cmd, service=check, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "asterisk: ok" in out.stdout and "database: ok" in out.stdout, out.stdout
        assert "production: ok (0 refused" in out.stdout, out.stdout

        # 2. The unit's ExecStart, as the unit asks, with a notify socket as systemd gives it.
        unit = unit_service((host / UNIT.lstrip("/")).read_text())
        assert unit.notify and unit.dynamic_user
        name = f"cti-host-install-{secrets.token_hex(6)}"
        notify.bind("\0" + name)
        notify.settimeout(1)
        prepare_state_directory(unit)
        cmd = drop_privileges(unit, service_environment(unit, files, notify_socket="@" + name))
        log = (tmp_path / "daemon.log").open("w")
        proc = subprocess.Popen(["unshare", "-m", "/bin/sh", "-c", namespace_script(str(host), unit), "sh", *cmd],
                                stdout=log, stderr=subprocess.STDOUT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

        def wait_for(message: str, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if message in notify.recv(4096).decode().split("\n"):
                        return
                except socket.timeout:
                    if proc.poll() is not None and message == "READY=1":
                        pytest.fail("the daemon exited: " + (tmp_path / "daemon.log").read_text()[-3000:])
            pytest.fail(f"no {message} on the notify socket within {timeout:.0f} s: "
                        + (tmp_path / "daemon.log").read_text()[-3000:])

        wait_for("READY=1", 120)          # TimeoutStartSec
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5) as r:
            body = json.loads(r.read())
            assert r.status == 200 and body["ok"] and body["ami"]["logged_in"], body
        status = Path(f"/proc/{proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(DYNAMIC_UID)] * 4, uid_line
        assert "NoNewPrivs:\t1" in status and "CapBnd:\t0000000000000000" in status
        assert "libjemalloc.so.2" in Path(f"/proc/{proc.pid}/maps").read_text()
        proc.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1", unit.stop_timeout)
        assert proc.wait(timeout=unit.stop_timeout) == 0, (tmp_path / "daemon.log").read_text()[-3000:]
        proc = None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        if log is not None:
            log.close()
        if forward is not None:
            forward.close()
        manager_file.unlink(missing_ok=True)
        subprocess.run([str(SANDBOX), "cli", "manager reload"], capture_output=True, timeout=30)
        # The next run starts from the doc's state again: no URL, the empty settings file.
        env_path.write_text("\n".join(kept) + "\n")
        (host / CONFIG.lstrip("/")).write_text("")
