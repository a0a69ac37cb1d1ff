"""``cti phones`` and ``cti pjsip`` against a real PostgreSQL (no Asterisk needed)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from phone.model import ha1

ACD_PHONES = Path(__file__).with_name("acd-phones.toml")


def cti(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, input=stdin,
                          timeout=120, env={**clean, **env})


def test_phones_add_prints_the_password_once_and_pjsip_renders_only_its_digest(database, tmp_path):
    added = cti("phones", "add", "desk-1", "--label", "hall", stdin="a-long-desk-secret\n",
                CTI_DATABASE_URL=database)
    assert added.returncode == 0, added.stderr
    assert "password: a-long-desk-secret" in added.stdout
    web = cti("phones", "add", "web-x", "--webrtc", CTI_DATABASE_URL=database)
    assert web.returncode == 0 and "password: " in web.stdout

    printed = cti("pjsip", CTI_DATABASE_URL=database, CTI_ACD_CONFIG=str(ACD_PHONES))
    assert printed.returncode == 0, printed.stderr
    assert "[desk-1](agent-phone)" in printed.stdout and "[web-x](agent-webrtc)" in printed.stdout
    assert f"md5_cred = {ha1('desk-1', 'cti', 'a-long-desk-secret')}" in printed.stdout
    assert "a-long-desk-secret" not in printed.stdout + printed.stderr

    target = tmp_path / "cti-phones.conf"
    written = cti("pjsip", "--write", str(target), CTI_DATABASE_URL=database)
    assert written.returncode == 0 and target.read_text() == printed.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    listed = cti("phones", "list", CTI_DATABASE_URL=database)
    assert "desk-1\tsip\t-\thall" in listed.stdout
    assert "a-long-desk-secret" not in listed.stdout


def test_bad_device_ids_and_short_passwords_are_refused(database):
    bad = cti("phones", "add", "desk 1\r\n[x]", CTI_DATABASE_URL=database)
    assert bad.returncode == 2 and "device id" in bad.stderr
    short = cti("phones", "add", "desk-2", stdin="short\n", CTI_DATABASE_URL=database)
    assert short.returncode == 2 and "12 characters" in short.stderr
    gone = cti("phones", "remove", "desk-3", CTI_DATABASE_URL=database)
    assert gone.returncode == 1 and "no device" in gone.stderr
