"""systemd readiness: `notify` speaks sd_notify's datagram protocol, and `serve` says READY=1 once
its listener serves and STOPPING=1 when it stops (deploy/systemd/cti.service, Type=notify)."""
from __future__ import annotations

import asyncio
import os
import socket
import urllib.request

import pytest
from aiohttp import web

from cti.config import load_settings
from cti.daemon import serve
from cti.sdnotify import notify


@pytest.fixture
def listener(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    s.bind(str(path))
    s.settimeout(5)
    try:
        yield s, str(path)
    finally:
        s.close()


def test_notify_sends_the_message_to_the_socket_systemd_names(listener):
    s, path = listener
    assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
    assert s.recv(100) == b"READY=1"


def test_notify_reaches_an_abstract_socket_and_does_nothing_outside_systemd():
    name = f"cti-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert s.recv(100) == b"STOPPING=1"
    assert notify("READY=1", {}) is False
    with pytest.raises(OSError):
        notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})


async def test_serve_is_ready_only_once_it_answers_and_says_when_it_stops(listener, monkeypatch, tmp_path):
    s, path = listener
    s.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    for name in [n for n in os.environ if n.startswith("CTI_")]:
        monkeypatch.delenv(name)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = load_settings(http_port=port, state_dir=tmp_path, ami_secret="k3P9-unit-test-secret")

    async def healthz(_request):
        return web.json_response({"ok": True})

    def build(_settings):
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        return app

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, build))
    loop = asyncio.get_running_loop()
    ready = await asyncio.wait_for(loop.sock_recv(s, 100), 10)
    assert ready == b"READY=1"
    # Ready means serving: the listener answers at once.
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
    assert body == b'{"ok": true}'
    stop.set()
    assert await asyncio.wait_for(loop.sock_recv(s, 100), 10) == b"STOPPING=1"
    await asyncio.wait_for(task, 10)
