"""The AMI boundary: the daemon's login (and the demo and load users') cannot run a shell command,
rewrite Asterisk's configuration or run CLI commands; no shipped secret works; recordings and
phone provisioning still work without those rights (docs/security.md, "AMI")."""
from __future__ import annotations

import asyncio
import os
import stat
import uuid
from pathlib import Path

import asyncpg
import pytest

from cti import sandbox as sandbox_secrets
from cti.ami import AmiClient
from cti.demo import place_call, set_demo_times
from cti.errors import AmiActionFailed, AmiError
from phone.gateway import PHONES
from recording.recorder import RECORDING
from tests.integration.conftest import ROOT, daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_softphone import PJSIP_D, cli

CHROOT = Path(os.environ.get("CTI_SANDBOX_ROOT") or "/var/cache/cti/asterisk-root")
USERS = (("cti", sandbox_secrets.DAEMON), ("cti-demo", sandbox_secrets.DEMO), ("cti-load", sandbox_secrets.LOAD))


async def login(user: str, secret: str) -> AmiClient:
    client = AmiClient("127.0.0.1", 5038, user, secret, reconnect_max=1.0)
    await client.start()
    await client.wait_connected(timeout=20)
    return client


async def refused(client: AmiClient, action: str, headers: dict[str, str]) -> str:
    with pytest.raises(AmiActionFailed) as exc:
        await client.send(action, headers, shape="single", timeout=10)
    return exc.value.message


@pytest.mark.parametrize("user,secret_name", USERS)
async def test_no_ami_user_can_run_a_shell_command_rewrite_config_or_reload(asterisk, user, secret_name):
    marker = f"/tmp/cti-ami-{uuid.uuid4().hex[:8]}"
    client = await login(user, sandbox_secrets.secret(secret_name))
    try:
        # Originate with Application System needs the "system" write right.
        message = await refused(client, "Originate", {"Channel": "Local/s@cti-demo-hold/n", "Application": "System",
                                                      "Data": f"id > {marker}", "Async": "false"})
        assert "Forbidden" in message
        # UpdateConfig ("config"): would rewrite extensions.conf, and a reload would run it.
        assert "Permission denied" in await refused(client, "UpdateConfig", {
            "SrcFilename": "extensions.conf", "DstFilename": "extensions.conf", "Reload": "yes",
            "Action-000000": "Append", "Cat-000000": "cti-inbound", "Var-000000": "exten",
            "Value-000000": f"_X.,1,System(id > {marker})"})
        assert "Permission denied" in await refused(client, "Command", {"Command": "core show version"})
        assert "Permission denied" in await refused(client, "Reload", {"Module": "res_pjsip.so"})
        assert "Permission denied" in await refused(client, "MixMonitor", {
            "Channel": "Local/s@cti-demo-hold-00000000;1", "File": "/tmp/x.wav", "Command": f"id > {marker}"})
        assert "Permission denied" in await refused(client, "ModuleLoad", {"Module": "res_pjsip.so",
                                                                           "LoadType": "reload"})
    finally:
        await client.stop()
    await asyncio.sleep(1)
    assert not (CHROOT / marker.lstrip("/")).exists() and not Path(marker).exists()
    conf = (CHROOT / "etc/asterisk/extensions.conf").read_text()
    assert marker not in conf


async def test_the_old_shipped_secrets_do_not_log_in_and_the_generated_ones_are_private(asterisk):
    for user, old in (("cti", "cti-secret"), ("cti-demo", "cti-demo-secret"), ("cti-load", "cti-load-secret")):
        client = AmiClient("127.0.0.1", 5038, user, old, reconnect_max=1.0)
        await client.start()
        try:
            with pytest.raises((AmiError, asyncio.TimeoutError)):
                await client.wait_connected(timeout=3)
        finally:
            await client.stop()
    import re

    for shipped in ("asterisk-config/manager.conf", "asterisk-config/demo/manager-demo.conf"):
        assert not re.search(r"(?m)^\s*secret\s*=", (ROOT / shipped).read_text()), shipped
    for path in (sandbox_secrets.path(), CHROOT / "etc/asterisk/manager.d/secrets.conf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not stat.S_IMODE((CHROOT / "etc/asterisk/manager.conf").stat().st_mode) & 0o004


@pytest.fixture
async def recording_daemon(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    inside = f"/var/spool/asterisk/monitor/cti-rights-{uuid.uuid4().hex[:8]}"
    outside = CHROOT / inside.lstrip("/")
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ROOT / "tests/integration/recording-acd.toml",
                                           recording_dir=inside, recording_read_dir=outside))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="ACD up")
    try:
        yield d, outside
    finally:
        await d.stop()
        await set_demo_times(demo_ami)
        import shutil
        shutil.rmtree(outside, ignore_errors=True)


async def test_recording_on_demand_starts_stops_and_starts_again_without_the_system_right(
        recording_daemon, demo_ami, database):
    d, outside = recording_daemon
    service = d.runner.app[RECORDING]
    await set_demo_times(demo_ami, ring=(0, 0), talk=(8, 8))
    p = await place_call(demo_ami, caller_num="+442000000009", caller_name="Rec Nine", context="cti-demo-direct",
                         variables={"CTI_QUEUE": "sales"}, caller_context="cti-demo-talker")
    await eventually(lambda: (c := d.core.model.calls.get(p.channel_id)) is not None and c.agent == "t1",
                     timeout=20, what="the agent answered")
    live = await service.control(p.channel_id, "start", "session:ada")        # no policy: on demand
    assert live.active is not None and live.active.rec.file_name == f"{p.channel_id}.wav"
    await asyncio.sleep(1.0)
    await service.control(p.channel_id, "stop", "session:ada")
    live = await service.control(p.channel_id, "start", "session:ada")
    assert live.active.rec.file_name == f"{p.channel_id}.2.wav"

    async def both_saved():
        conn = await asyncpg.connect(database)
        try:
            rows = await conn.fetch("SELECT file_name, state, reason, duration_s FROM recordings "
                                    "WHERE call_id = $1 ORDER BY segment", p.channel_id)
        finally:
            await conn.close()
        return rows if len(rows) == 2 and all(r["state"] == "saved" for r in rows) else None

    rows = await eventually(both_saved, timeout=40, interval=0.3, what="both recordings saved")
    assert [r["file_name"] for r in rows] == [f"{p.channel_id}.wav", f"{p.channel_id}.2.wav"]
    assert all(r["reason"] == "on_demand" and float(r["duration_s"]) > 0.5 for r in rows)
    assert (outside / rows[1]["file_name"]).stat().st_size > 44


async def test_a_new_phone_is_known_to_asterisk_through_the_dialplan_reload(asterisk, database, tmp_path):
    conf = PJSIP_D / "cti-phones.conf"
    d = await start_daemon(daemon_settings(database, tmp_path, phone_pjsip_conf=conf))
    try:
        s = d.runner.app[PHONES]
        device = f"rights-{uuid.uuid4().hex[:6]}"
        before = s.reloads
        await s.add_device(device, "sip", label="rights test")
        assert s.reloads > before
        assert f"Endpoint:  {device}" in cli(f"pjsip show endpoint {device}")
        # The reload's Local channel is no call: nothing in the model, nothing in the database.
        await asyncio.sleep(2)
        assert d.core.model.calls == {}
        conn = await asyncpg.connect(database)
        try:
            assert await conn.fetchval("SELECT count(*) FROM calls") == 0
        finally:
            await conn.close()
    finally:
        await d.stop()
        conf.unlink(missing_ok=True)
        cli("module reload res_pjsip.so")
