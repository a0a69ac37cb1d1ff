"""The package as an operator installs it: the wheel and the sdist built from this tree, the
wheel installed into a fresh virtualenv (its dependencies from the package index), and
``cti serve`` started from there, outside the source tree, against a scratch database with
Asterisk unreachable: /healthz answers, the web pages come from the installed package, the
migrations are applied (docs/packaging.md).

Needs the package index: skipped where there is no route out (the network namespaces of
scripts/test-isolated). About a minute, most of it pip.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import asyncpg
import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted(p.name for p in (ROOT / "cti" / "migrations").glob("*.sql"))
# What the daemon reads from its own packages at run time, and the licences.
IN_THE_WHEEL = [
    *(f"cti/migrations/{name}" for name in MIGRATIONS),
    "api/static/favicon.ico",
    "api/static/agent/index.html",
    "api/static/agent/app.js",
    "api/static/wallboard/index.html",
    "api/static/wallboard/reports.html",
    "api/static/phone/index.html",
    "api/static/phone/vendor/LICENSES.txt",
    "api/static/agent/softphone.js",
    "api/static/docs/index.html",
    "api/static/docs/vendor/LICENSE.txt",
    "ivr/examples/demo.toml",
    "acd/examples/demo.toml",
]


def _has_default_route() -> bool:
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return True
    return any(line.split()[1] == "00000000" for line in lines if len(line.split()) > 1)


def _run(args: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _has_default_route():
        pytest.skip("no route to the package index here (a network namespace): the wheel test needs it")
    out = tmp_path_factory.mktemp("dist")
    # The sdist first, then the wheel built from the sdist: what the sdist lacks, the wheel lacks.
    # --no-isolation: this environment's setuptools (the test extra asks for [build-system]'s).
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], timeout=300)
    return out


def test_the_wheel_and_the_sdist_carry_the_pages_the_migrations_and_the_licences(dist: Path) -> None:
    wheel = next(dist.glob("open_cti-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in IN_THE_WHEEL if n not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    assert any(n.startswith("api/static/phone/vendor/jssip-") for n in names)
    licences = {n.split("/licenses/", 1)[1] for n in names if "/licenses/" in n}
    assert licences == {"LICENSE", "api/static/phone/vendor/LICENSES.txt", "api/static/docs/vendor/LICENSE.txt"}
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert b"License-Expression: Apache-2.0" in metadata

    sdist = next(dist.glob("open_cti-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    for name in ["LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", *IN_THE_WHEEL]:
        assert name in members, f"{name} not in {sdist.name}"


async def test_the_installed_wheel_serves_health_pages_and_migrates(dist: Path, database: str,
                                                                    tmp_path: Path) -> None:
    wheel = next(dist.glob("open_cti-*.whl"))
    venv = tmp_path / "venv"
    # No pip of its own (ensurepip alone can take a minute): this pip installs into it.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
          "--disable-pip-version-check", str(wheel)], timeout=300)
    version = _run([str(venv / "bin" / "cti"), "--version"], timeout=30, cwd=tmp_path).stdout.split()
    assert version == ["cti", wheel.name.split("-")[1]]

    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "CTI_DATABASE_URL": database, "CTI_STATE_DIR": str(tmp_path / "state"),
        "CTI_HTTP_PORT": str(port), "CTI_AGI_PORT": "0",
        "CTI_AMI_PORT": str(free_port()), "CTI_AMI_SECRET": "wheel-test-secret-8f3a",  # nothing listens
        "CTI_HOOKS": "false", "CTI_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        # cwd outside the source tree: every import and every file comes from the venv.
        proc = subprocess.Popen([str(venv / "bin" / "cti"), "serve"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.3)
        assert status == 503, f"/healthz: {status}\n{log.read_text()[-3000:]}"  # up, AMI unreachable
        assert b'"database"' in body

        for path in ["/agent/", "/wallboard/", "/wallboard/reports.html", "/phone/"]:
            status, page = _get(base + path)
            assert status == 200 and b"<html" in page.lower(), path
        status, icon = _get(f"{base}/favicon.ico")
        assert status == 200 and icon

        conn = await asyncpg.connect(database)
        try:
            applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        finally:
            await conn.close()
        assert applied == {name.split("_", 1)[0] for name in MIGRATIONS}
        where = _run([str(venv / "bin" / "python"), "-c", "import api; print(api.__file__)"],
                     timeout=30, cwd=tmp_path).stdout
        assert where.startswith(str(venv)), where
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
