"""deploy/systemd/cti.service: hardened, restarting, secrets from a file, jemalloc; and systemd
itself accepts it (`systemd-analyze verify`, where systemd is installed)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "cti.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with every value it was given (keys repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting before any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def test_the_service_runs_unprivileged_and_hardened(service):
    expected = {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "SystemCallFilter": "@system-service",
                "StateDirectory": "cti", "UMask": "0077"}
    assert {k: service.get(k, [None])[-1] for k in expected} == expected
    assert "User" not in service       # DynamicUser: no fixed account, never root


def test_the_service_restarts_always_reads_secrets_from_a_file_and_bounds_memory(service):
    assert service["Restart"] == ["always"] and service["ExecStart"] == ["/opt/cti/venv/bin/cti serve"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]   # cti.sdnotify
    assert service["EnvironmentFile"] == ["/etc/cti/secrets.env"]
    env = dict(v.split("=", 1) for v in service["Environment"])
    assert not [k for k in env if "SECRET" in k or "DATABASE_URL" in k or "PASSWORD" in k]
    assert env["CTI_STATE_DIR"] == "/var/lib/cti" and env["CTI_CONFIG"] == "/etc/cti/cti.toml"
    high, top = (int(service[k][0].rstrip("M")) for k in ("MemoryHigh", "MemoryMax"))
    assert 67 < high < top     # above the base daemon's 67 MB (docs/sizing.md), throttled before killed


def test_jemalloc_is_preloaded_and_the_library_named_loads_into_python(service):
    env = dict(v.split("=", 1) for v in service["Environment"])
    lib = env["LD_PRELOAD"]
    assert lib.endswith("/libjemalloc.so.2")
    if not Path(lib).exists():
        pytest.skip(f"{lib} is not installed here (apt install libjemalloc2)")
    out = subprocess.run([sys.executable, "-c", "print(open('/proc/self/maps').read())"],
                         env={**os.environ, "LD_PRELOAD": lib}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "libjemalloc.so.2" in out.stdout


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the parse tests above still ran)")
    # verify wants the program to exist: point ExecStart at this checkout's cti.
    cti = Path(sys.executable).with_name("cti")
    if not cti.exists():
        pytest.skip(f"{cti} does not exist")
    unit = tmp_path / "cti.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/cti/venv/bin/cti", str(cti)), encoding="utf-8")
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    # Warnings about other units on this machine are not ours: only lines naming this unit count.
    ours = [line for line in (out.stdout + out.stderr).splitlines() if "cti.service" in line]
    assert out.returncode == 0 and ours == [], out.stdout + out.stderr


def test_the_parser_sees_a_broken_line():
    with pytest.raises(AssertionError):
        parse_unit("[Service]\nRestart always\n")
    assert parse_unit("[Service]\nEnvironment=A=1\nEnvironment=B=2\n")["Service"]["Environment"] == ["A=1", "B=2"]
