"""The images as built (scripts/build-images: a debootstrap base imported into podman, then
`podman build --isolation chroot` of the daemon's and Asterisk's images), and the daemon
started from its image's root against the sandbox's Asterisk and PostgreSQL: /healthz answers
and a demo call is routed to a simulated agent by that daemon's ACD.

Slow (a base, two builds: minutes, more the first time): runs only with CTI_TEST_IMAGES=1 and
podman installed, as root. Containers themselves cannot run on our machines (crun cannot set
rlimits or cgroups there), so the daemon runs by chroot into `podman image mount`'s root, in a
private mount namespace where the state directory and /run are scratch and the test
database's socket directory is bound in."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from cti import sandbox
from cti.demo import place_call, set_demo_times
from cti.version import version
from tests.integration.conftest import ROOT, eventually, free_port, hangup_all

pytestmark = pytest.mark.skipif(
    shutil.which("podman") is None or os.environ.get("CTI_TEST_IMAGES") != "1" or os.geteuid() != 0,
    reason="image builds take minutes: set CTI_TEST_IMAGES=1 (needs podman and root)")
TAG = "test"


def run(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def images() -> None:
    started = os.environ.get("CTI_IMAGES_BUILD")
    if started:   # .ci/run started `scripts/build-images test` beside the other tests: wait for it
        log, rc = Path(started), Path(started + ".rc")
        deadline = time.monotonic() + 3600
        while not rc.exists() and time.monotonic() < deadline:
            time.sleep(2)
        assert rc.exists(), f"the image build of .ci/run did not end within an hour: {log}"
        text = log.read_text(errors="replace")
        assert rc.read_text().strip() == "0", text[-5000:]
        assert f"ok: localhost/cti:{TAG} localhost/cti-asterisk:{TAG}" in text
        return
    out = run(str(ROOT / "scripts" / "build-images"), TAG, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert f"ok: localhost/cti:{TAG} localhost/cti-asterisk:{TAG}" in out.stderr


def in_image(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    root = run("podman", "image", "mount", image).stdout.strip()
    assert root, f"podman image mount {image} gave no root"
    try:
        return run("chroot", root, *command)
    finally:
        run("podman", "image", "unmount", image)


def test_the_daemons_image_has_the_program_its_packages_and_a_user_of_its_own(images):
    out = in_image(f"localhost/cti:{TAG}", "/opt/cti/venv/bin/cti", "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cti {version()}", out.stdout + out.stderr
    out = in_image(f"localhost/cti:{TAG}", "/usr/bin/id", "-u", "cti")
    assert out.stdout.strip() == "10001"
    # What podman records for the image: its user, the jemalloc preload, secrets from files.
    inspect = run("podman", "image", "inspect", "--format", "{{.Config.User}} {{.Config.Env}}", f"localhost/cti:{TAG}")
    assert inspect.stdout.startswith("cti ") and "CTI_SECRETS_DIR=/run/secrets" in inspect.stdout
    assert "LD_PRELOAD=/usr/local/lib/libjemalloc.so.2" in inspect.stdout


def test_the_asterisk_image_has_our_configuration_and_no_secret_or_demo(images):
    image = f"localhost/cti-asterisk:{TAG}"
    out = in_image(image, "/bin/sh", "-c", "asterisk -V; ls /etc/asterisk; cat /etc/asterisk/manager.conf")
    assert out.returncode == 0 and out.stdout.startswith("Asterisk 2"), out.stdout + out.stderr
    files = out.stdout.split()
    assert "extensions.conf" in files and "demo" not in files and "secrets.conf" not in files
    assert "\nsecret" not in out.stdout and "[cti]" in out.stdout


def test_asterisk_from_its_images_root_takes_what_the_entrypoint_writes(images, tmp_path):
    """The image's entrypoint (its dash, mawk and openssl) adapts the configuration in a private
    mount and network namespace, then the image's Asterisk starts on it: SIP on every address,
    the public address on the transport, the published RTP range, the DTLS certificate made."""
    image = f"localhost/cti-asterisk:{TAG}"
    root = run("podman", "image", "mount", image).stdout.strip()
    assert root, f"podman image mount {image} gave no root"
    scratch = " ".join(f"mount -t tmpfs tmpfs {root}{d};" for d in (
        "/tmp", "/run", "/var/log/asterisk", "/var/spool/asterisk", "/var/lib/asterisk"))
    inner = ("mkdir -p /run/asterisk; chown asterisk:asterisk /run/asterisk; "
             "/usr/local/sbin/cti-asterisk-entrypoint asterisk -U asterisk -G asterisk; "
             "for i in $(seq 1 100); do asterisk -rx 'core waitfullybooted' >/dev/null 2>&1 && break; sleep 0.2; done; "
             "asterisk -rx 'pjsip show transport transport-udp'; asterisk -rx 'rtp show settings'; "
             "ls /etc/asterisk/keys; asterisk -rx 'core stop now' >/dev/null 2>&1 || true")
    script = (f"set -e; mount --make-rprivate /; ip link set lo up; {scratch} "
              f"cp -a {root}/etc/asterisk {root}/tmp/etc; mount --bind {root}/tmp/etc {root}/etc/asterisk; "
              f"exec chroot {root} /usr/bin/env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin "
              f"CTI_PUBLIC_ADDRESS=203.0.113.7 /bin/sh -c {shlex.quote(inner)}")
    try:
        out = run("unshare", "-m", "-n", "/bin/sh", "-c", script, timeout=120)
    finally:
        run("podman", "image", "unmount", image)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert re.search(r"bind\s*:\s*0\.0\.0\.0:5060", text), text[-3000:]
    assert re.search(r"external_media_address\s*:\s*203\.0\.113\.7", text), text[-3000:]
    assert re.search(r"Port start:\s*10000", text) and re.search(r"Port end:\s*10199", text), text[-3000:]
    assert "cti-dtls.crt" in text and "cti-dtls.key" in text, text[-3000:]


async def test_the_daemon_from_its_images_root_answers_healthz_and_routes_a_demo_call(
        images, asterisk, database, demo_ami, tmp_path):
    hangup_all()
    # The demo's routing file as the image installed it (the simulated agents of the sandbox).
    found = in_image(f"localhost/cti:{TAG}", "/opt/cti/venv/bin/python", "-c",
                     "import acd, pathlib; print(pathlib.Path(acd.__file__).parent / 'examples' / 'demo.toml')")
    acd_config = found.stdout.strip()
    assert acd_config.endswith("demo.toml"), found.stderr
    # An embedded server (the isolated runner) is reached by its socket directory, bound into
    # the root; the machine's server (CI) over TCP, the same network inside the root.
    socket_dir = (parse_qs(urlsplit(database).query).get("host") or [None])[0]
    inner_dsn = database.replace(socket_dir, "/run/pg") if socket_dir else database
    bind_pg = f"mkdir {{root}}/run/pg; mount --bind {socket_dir} {{root}}/run/pg; " if socket_dir else ""
    port = free_port()
    env = {"CTI_AMI_SECRET": sandbox.secret(sandbox.DAEMON), "CTI_HOOK_SECRET": sandbox.secret(sandbox.HOOKS),
           "CTI_DATABASE_URL": inner_dsn, "CTI_HTTP_PORT": str(port), "CTI_AGI_PORT": str(free_port()),
           "CTI_STATE_DIR": "/var/lib/cti", "CTI_LOG_FORMAT": "json", "CTI_ACD_CONFIG": acd_config,
           "CTI_ACD_ANNOUNCE_EVERY": "0", "PATH": "/opt/cti/venv/bin:/usr/bin:/bin",
           "LD_PRELOAD": "/usr/local/lib/libjemalloc.so.2"}
    # The daemon's environment inside the image's root: what the image sets, and this test's.
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    root = run("podman", "image", "mount", f"localhost/cti:{TAG}").stdout.strip()
    script = (f"set -e; mount --make-rprivate /; "
              f"mount -t tmpfs tmpfs {root}/run; " + bind_pg.format(root=root) +
              f"mount -t tmpfs tmpfs {root}/var/lib/cti; mount -t tmpfs tmpfs {root}/tmp; "
              f"exec chroot {root} /usr/bin/env -i {assignments} /opt/cti/venv/bin/cti serve")
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(["unshare", "-m", "/bin/sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail("the daemon exited: " + (tmp_path / "daemon.log").read_text()[-3000:])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return r.status == 200
        await eventually(healthy, timeout=90, interval=0.5, what="/healthz 200 from the image's daemon")
        conn = await asyncpg.connect(database)
        await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
        try:
            placed = await place_call(demo_ami, caller_num="+442071234567", caller_name="Image Test", patience=60,
                                      context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})

            async def routed() -> str | None:
                return await conn.fetchval("SELECT agent FROM calls WHERE call_id = $1", placed.channel_id)
            agent = await eventually(routed, timeout=60, interval=0.5,
                                     what="the demo call routed to an agent, in the database, by the image's daemon")
            assert agent in ("agent1", "agent2"), agent      # the sales queue's agents in demo.toml
        finally:
            await set_demo_times(demo_ami)
            await conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        run("podman", "image", "unmount", f"localhost/cti:{TAG}")

