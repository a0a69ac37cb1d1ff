"""deploy/asterisk/entrypoint, run by /bin/sh on a copy of asterisk-config/ (CTI_ASTERISK_ETC):
what the site sets lands in Asterisk's configuration, an earlier start's lines are replaced and
not repeated, bad values are refused before anything is written, and the command runs last."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "asterisk" / "entrypoint"


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    shutil.copytree(ROOT / "asterisk-config", d)
    (d / "manager.d").mkdir(exist_ok=True)
    return d


def start(etc: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ["PATH"], "CTI_ASTERISK_ETC": str(etc), **env}
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *(command or ("true",))], env=environ,
                          capture_output=True, text=True, timeout=30)


def sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Asterisk's config file as (option, value) lines per section, in order."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            current = line[1:line.index("]")]
            out.setdefault(current, [])
        elif "=" in line and current is not None:
            key, value = (p.strip() for p in line.split("=", 1))
            out[current].append((key, value))
    return out


def test_defaults_bind_sip_to_every_address_and_set_the_published_rtp_range(etc):
    done = start(etc, "sh", "-c", "echo ran")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"                          # the command runs last, as itself
    pjsip = sections(etc / "pjsip.conf")
    assert ("bind", "0.0.0.0:5060") in pjsip["transport-udp"]
    assert ("bind", "127.0.0.1") in pjsip["transport-ws"]  # the WebSocket's address is http.conf's
    assert not any(k.startswith("external") for k, _ in pjsip["transport-udp"] + pjsip["transport-ws"])
    assert sections(etc / "rtp.conf")["general"] == [("rtpstart", "10000"), ("rtpend", "10199")]
    # Everything else in the file is as the repository has it.
    before = sections(ROOT / "asterisk-config" / "pjsip.conf")
    assert {k: v for k, v in pjsip.items() if k != "transport-udp"} == {k: v for k, v in before.items()
                                                                         if k != "transport-udp"}


def test_a_public_address_goes_on_both_transports_once_however_often_it_starts(etc):
    for _ in range(3):
        done = start(etc, CTI_PUBLIC_ADDRESS="203.0.113.7", CTI_LOCAL_NETS="10.0.0.0/8,192.168.1.0/24",
                     CTI_SIP_BIND="0.0.0.0:5070", CTI_RTP_PORTS="20000-20099")
        assert done.returncode == 0, done.stderr
    pjsip = sections(etc / "pjsip.conf")
    for transport in ("transport-udp", "transport-ws"):
        lines = pjsip[transport]
        assert lines.count(("external_media_address", "203.0.113.7")) == 1
        assert lines.count(("external_signaling_address", "203.0.113.7")) == 1
        assert [v for k, v in lines if k == "local_net"] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert [v for k, v in pjsip["transport-udp"] if k == "bind"] == ["0.0.0.0:5070"]
    assert sections(etc / "rtp.conf")["general"] == [("rtpstart", "20000"), ("rtpend", "20099")]


def test_secrets_are_written_only_from_files_and_never_printed(etc, tmp_path):
    done = start(etc)
    assert done.returncode == 0 and not (etc / "manager.d" / "secrets.conf").exists()
    assert "secret" not in done.stdout + done.stderr


@pytest.mark.parametrize("env", [
    {"CTI_SIP_BIND": "0.0.0.0:5060; rm -rf /"}, {"CTI_SIP_BIND": "[::]:5060"},
    {"CTI_RTP_PORTS": "5-9"}, {"CTI_RTP_PORTS": "20000"}, {"CTI_RTP_PORTS": "30000-20000"},
    {"CTI_RTP_PORTS": "10000-70000"}, {"CTI_PUBLIC_ADDRESS": "203.0.113.7\nbind = 0.0.0.0"},
    {"CTI_PUBLIC_ADDRESS": "a b"}, {"CTI_LOCAL_NETS": "10.0.0.0/8;x"},
])
def test_bad_values_are_refused_before_anything_is_written_and_asterisk_does_not_start(etc, env):
    before = (etc / "pjsip.conf").read_text()
    done = start(etc, "sh", "-c", "echo ran", **env)
    assert done.returncode == 2 and done.stdout == ""
    name = next(iter(env))
    assert name in done.stderr and "cti-asterisk-entrypoint" in done.stderr
    assert (etc / "pjsip.conf").read_text() == before and not (etc / "rtp.conf").exists()
