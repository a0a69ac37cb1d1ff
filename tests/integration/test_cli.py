"""The cti command as an admin runs it: clear verdicts, exit codes, no secrets."""
from __future__ import annotations

import os
import subprocess
import sys


def cti(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return subprocess.run([sys.executable, "-m", "cti.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**clean, **env})


def test_check_says_ok_for_a_working_setup_and_migrate_brings_the_schema(asterisk, database):
    before = cti("check", CTI_DATABASE_URL=database)
    assert before.returncode == 0, before.stdout + before.stderr
    from cti.store import migrations

    assert "asterisk: ok" in before.stdout and f"{len(migrations())} migrations pending" in before.stdout
    migrated = cti("migrate", CTI_DATABASE_URL=database)
    assert migrated.returncode == 0 and "0001" in migrated.stdout
    after = cti("check", CTI_DATABASE_URL=database)
    assert after.returncode == 0 and "0 migrations pending" in after.stdout
    again = cti("migrate", CTI_DATABASE_URL=database)
    assert "none (up to date)" in again.stdout


def test_check_names_what_fails_and_never_prints_secrets(asterisk):
    out = cti("check", CTI_AMI_SECRET="wrong-secret-123",
              CTI_DATABASE_URL="postgresql://cti:db-pass-456@127.0.0.1:1/cti")
    text = out.stdout + out.stderr
    assert out.returncode == 1
    assert "asterisk: FAILED" in text and "refused the login" in text
    assert "database: FAILED" in text
    assert "wrong-secret-123" not in text and "db-pass-456" not in text


async def test_calls_lists_recorded_calls(asterisk, database):
    from datetime import datetime, timezone

    from cti import store

    assert cti("migrate", CTI_DATABASE_URL=database).returncode == 0
    writer = store.Writer(database)
    await writer.start()
    t0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    writer.submit(store.CallRow(call_id="c1", state="ended", direction="inbound", caller_num="+331234",
                                caller_name="Chloé Dubois", started_at=t0, ended_at=t0.replace(second=42),
                                agent="Agent 3", hangup_cause_txt="Normal Clearing"))
    assert await writer.drain(10)
    await writer.stop()
    out = cti("calls", "--last", "5", CTI_DATABASE_URL=database)
    assert out.returncode == 0, out.stderr
    assert "Chloé Dubois <+331234>" in out.stdout and "Agent 3" in out.stdout and "42.0" in out.stdout
    assert "1 calls in the database" in out.stdout
