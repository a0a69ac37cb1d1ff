"""deploy/Caddyfile, unchanged, in front of a real daemon and the sandbox's Asterisk: https for the
API with HSTS, http redirected, wss for the daemon's WebSocket (an agent's hello) and for browser
phones' SIP (Asterisk answers an OPTIONS over wss), /metrics and the hooks kept off the proxy.

The certificate is made locally: for ``localhost`` Caddy issues one from its own CA (kept in
this test's directory, not installed anywhere), and the client trusts that CA alone."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest

from tests.integration.conftest import ROOT, daemon_settings, eventually, free_port, hangup_all, start_daemon
from tests.integration.test_api import PASSWORD, add_user
from tests.integration.test_softphone import ACD_PHONES, PJSIP_D, add_agent_user, cli

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy is not installed (apt install caddy)")
CADDYFILE = ROOT / "deploy" / "Caddyfile"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"caddy exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"caddy did not listen on {port} within {timeout}s")


@contextlib.contextmanager
def caddy(tmp_path: Path, https_port: int, http_port: int, daemon_port: int) -> Iterator[ssl.SSLContext]:
    """deploy/Caddyfile, unchanged, run by Caddy on free ports in front of the daemon's port and
    the sandbox Asterisk's HTTP server; yields an SSL context trusting only Caddy's local CA."""
    home = tmp_path / "caddy"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
           "CTI_SITE": f"localhost:{https_port}", "CTI_HTTP": f"127.0.0.1:{daemon_port}",
           "ASTERISK_HTTP": "127.0.0.1:8088", "CADDY_HTTPS_PORT": str(https_port),
           "CADDY_HTTP_PORT": str(http_port), "CADDY_ADMIN": "off"}
    log = (tmp_path / "caddy.log").open("wb")
    proc = subprocess.Popen([CADDY, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(https_port, proc)
        root = home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 10
        while not root.exists():
            assert time.monotonic() < deadline, "Caddy made no local CA"
            time.sleep(0.1)
        yield ssl.create_default_context(cafile=str(root))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
async def proxied(asterisk, database, tmp_path):
    """A daemon on loopback, Caddy in front of it on free ports; yields (daemon, https port,
    http port, an SSL context trusting only Caddy's local CA)."""
    d = await start_daemon(daemon_settings(database, tmp_path / "state"))
    await add_user(database, "ada", "agent", "a1")
    https_port, http_port = free_port(), free_port()
    try:
        with caddy(tmp_path, https_port, http_port, d.settings.http_port) as context:
            yield d, https_port, http_port, context
    finally:
        await d.stop()


async def get_with_retry(http: aiohttp.ClientSession, url: str, **kw) -> aiohttp.ClientResponse:
    """The first request may come while Caddy is still issuing the certificate."""
    for attempt in range(50):
        try:
            r = await http.get(url, **kw)
            await r.read()
            return r
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def test_https_and_wss_through_the_caddyfile_reach_the_daemon_and_asterisk(proxied, tmp_path):
    d, port, http_port, context = proxied
    base = f"https://localhost:{port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        r = await get_with_retry(http, f"{base}/healthz")
        assert r.status == 200, await r.text()
        assert (await r.json())["ok"] is True
        assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert "Server" not in r.headers

        # Plain http on the proxy only redirects to https.
        r = await http.get(f"http://localhost:{http_port}/healthz", allow_redirects=False)
        assert r.status in (301, 308) and r.headers["Location"].startswith("https://")

        # Every request through the proxy reaches the daemon from 127.0.0.1: the proxy keeps these off.
        for path in ("/metrics", "/metrics?x=1", "/%6Detrics", "//metrics", "/hooks/route", "/hooks/lookup?n=1"):
            r = await http.get(f"{base}{path}")
            assert r.status == 404, path
        direct = f"http://127.0.0.1:{d.settings.http_port}/metrics"
        async with aiohttp.ClientSession() as plain:
            async with plain.get(direct) as r:
                assert r.status == 200        # and Prometheus on this host still scrapes the daemon

        # The daemon's WebSocket over wss: an agent logs in over https and gets the hello.
        async with http.post(f"{base}/api/login", json={"username": "ada", "password": PASSWORD}) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["token"]
        async with http.ws_connect(f"wss://localhost:{port}/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            await ws.send_json({"type": "auth", "token": token})
            msg = await asyncio.wait_for(ws.receive(), 10)
            hello = json.loads(msg.data)
            assert hello["type"] == "hello" and hello["user"]["name"] == "ada"

        # Browser phones: SIP over wss to Asterisk, which answers an OPTIONS.
        call_id = uuid.uuid4().hex
        options = (f"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
                   f"Via: SIP/2.0/WSS tls-test.invalid;branch=z9hG4bK{call_id[:10]}\r\n"
                   f"Max-Forwards: 70\r\nTo: <sip:127.0.0.1>\r\n"
                   f"From: <sip:tls-test@127.0.0.1>;tag={call_id[:8]}\r\n"
                   f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        async with http.ws_connect(f"wss://localhost:{port}/sip", protocols=("sip",),
                                   timeout=aiohttp.ClientWSTimeout(ws_close=5)) as sip:
            assert sip.protocol == "sip"
            await sip.send_str(options)
            reply = await asyncio.wait_for(sip.receive(), 10)
            assert reply.data.startswith("SIP/2.0 ") and call_id in reply.data, reply.data

    # The certificate is real TLS: a client that does not trust the local CA is refused.
    async with aiohttp.ClientSession() as untrusting:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await untrusting.get(f"{base}/healthz")


async def test_the_browser_phone_registers_over_wss_and_the_desktop_works_over_https(
        asterisk, database, tmp_path, browser):
    """The pages as an agent uses them through the proxy: the browser phone (served over https,
    told CTI_PHONE_WS_URL=wss://SITE/sip) registers with Asterisk through Caddy, and the agent
    desktop logs in and goes online over https and wss. Chromium does not know the local CA:
    its context ignores certificate errors (the strict client above proves the TLS itself)."""
    hangup_all()
    https_port, http_port = free_port(), free_port()
    conf = PJSIP_D / "cti-phones.conf"
    d = await start_daemon(daemon_settings(database, tmp_path / "state", acd_config=ACD_PHONES,
                                           phone_pjsip_conf=conf, phone_ws_url=f"wss://localhost:{https_port}/sip"))
    try:
        await add_agent_user(database, "pia", "p1", PASSWORD)
        with caddy(tmp_path, https_port, http_port, d.settings.http_port):
            context = await browser.new_context(ignore_https_errors=True)
            phone = await context.new_page()
            errors: list[str] = []
            phone.on("pageerror", lambda e: errors.append(str(e)))
            await phone.goto(f"https://localhost:{https_port}/phone/")
            await phone.fill("input[name=username]", "pia")
            await phone.fill("input[name=password]", PASSWORD)
            await phone.click("button[type=submit]")
            await phone.wait_for_selector("#registration:text-is('registered')", timeout=30_000)
            assert await phone.inner_text("#error") == "", errors
            # Asterisk has the browser's contact, reached from the proxy (127.0.0.1) over its WebSocket
            # transport (the column is cut after "transport="), and it answers Asterisk's OPTIONS.
            contacts = await eventually(lambda: "web-p1" in (out := cli("pjsip show contacts")) and out,
                                        timeout=10, what="the browser phone's contact in Asterisk")
            assert re.search(r"web-p1/sip:\S+@127\.0\.0\.1:\d+;transport=\S*\s+\S+\s+Avail", contacts), contacts
            assert d.acd.router.agent_state("p1").device == "PJSIP/web-p1"

            desk = await context.new_page()
            await desk.goto(f"https://localhost:{https_port}/agent/")
            await desk.get_by_label("Username").fill("pia")
            await desk.get_by_label("Password").fill(PASSWORD)
            await desk.get_by_role("button", name="Log in").click()
            await desk.wait_for_selector("#link:has-text('online')", timeout=20_000)
            assert errors == []
            await context.close()
    finally:
        await d.stop()
        conf.unlink(missing_ok=True)
        cli("module reload res_pjsip.so")
