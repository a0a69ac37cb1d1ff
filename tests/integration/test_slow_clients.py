"""Port 8765 against slow and greedy clients, on the real daemon (``cti.httpserver``):
a request head trickled a line at a time is cut at the head deadline, an idle
keep-alive connection at the idle timeout, one address's connections beyond the
cap get 503 at once, and a WebSocket outlives both deadlines.

The bounds below are generous (the deadlines are 2-3 s, the tests give up after
30 s): they tell "closed by the deadline" from "never closed", not how fast."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import add_user, login, url

GIVE_UP_S = 30.0


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the daemon closes the connection (EOF or reset) within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
        return True
    except TimeoutError:       # before OSError: TimeoutError is one
        return False
    except (ConnectionError, OSError):
        return True


async def test_a_request_head_trickled_line_by_line_is_cut_at_the_head_deadline(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, http_head_timeout=2, http_idle_timeout=60))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", d.settings.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        lines = 0
        try:
            while time.monotonic() - started < GIVE_UP_S:
                await asyncio.sleep(1.0)
                writer.write(b"X-Slow-%d: y\r\n" % lines)
                await writer.drain()
                lines += 1
                if reader.at_eof():
                    break
            cut = await closed_within(reader, 1.0)
        except (ConnectionError, OSError):
            cut = True
        writer.close()
        assert cut and lines < GIVE_UP_S - 2, f"still open after {lines} header lines"

        # A connection that opens and sends nothing gets the same deadline.
        reader, writer = await asyncio.open_connection("127.0.0.1", d.settings.http_port)
        assert await closed_within(reader, GIVE_UP_S)
        writer.close()

        # An honest request on a fresh connection is answered as before.
        async with aiohttp.ClientSession() as http:
            async with http.get(url(d, "/healthz")) as r:
                assert r.status in (200, 503) and "ami" in await r.json()
    finally:
        await d.stop()


async def test_an_idle_keep_alive_connection_is_closed(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, http_head_timeout=60, http_idle_timeout=2))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", d.settings.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 ") and b"connection: close" not in head.lower()
        assert await closed_within(reader, GIVE_UP_S)
        writer.close()
    finally:
        await d.stop()


async def test_connections_from_one_address_beyond_the_cap_get_503_at_once(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, http_head_timeout=60, http_idle_timeout=60,
                                           http_client_max=4))
    held = []
    try:
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", d.settings.http_port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 ")
            held.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", d.settings.http_port)
        answer = await asyncio.wait_for(reader.read(), GIVE_UP_S)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in answer

        # One of the four goes: a new one is taken again.
        held.pop()[1].close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http:
            async with http.get(url(d, "/healthz")) as r:
                assert r.status in (200, 503) and "ami" in await r.json()
    finally:
        for _, writer in held:
            writer.close()
        await d.stop()


async def test_a_websocket_stays_open_past_the_idle_and_head_deadlines(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, http_head_timeout=1, http_idle_timeout=1))
    await add_user(database, "sam", "supervisor")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            token = await login(http, d, "sam")
            ws = await http.ws_connect(url(d, "/ws"), timeout=aiohttp.ClientWSTimeout(ws_close=5))
            await ws.send_json({"type": "auth", "token": token})
            await asyncio.sleep(4)        # both deadlines, four times over
            await ws.send_json({"type": "ping"})
            async with asyncio.timeout(10):
                while True:
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    if json.loads(msg.data)["type"] == "pong":
                        break
            assert not ws.closed
            await ws.close()
    finally:
        await d.stop()
