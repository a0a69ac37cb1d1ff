"""Webhooks cannot reach into the daemon's own network, scan ports, or flood its memory.

The delivery client (``api.webhook_service.deliver``) against real sockets: every
address is checked when it is connected to (a name that resolves to loopback is
refused just like the literal), failures read the same whatever was listening, a
huge answer is cut after a few KiB. Then the daemon: a literal private target is
refused at subscription, an unknown kind too, and a name that resolves to loopback
is refused at delivery with ``refused_address`` in the admin's log."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver

from api.webhook_service import RESPONSE_MAX, WEBHOOKS, deliver, make_session
from api.webhooks import parse_allow
from tests.integration.conftest import daemon_settings, eventually, free_port, http_receiver, start_daemon
from tests.integration.test_api import add_user, bearer, login, url

LOOPBACK = parse_allow("127.0.0.0/8")
BODY = b'{"id":"c1:1","type":"call.ended"}'
HEADERS = {"Content-Type": "application/json"}


class Pinned(AbstractResolver):
    """A resolver that answers from a table: what a hostile DNS server would say."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, "no such name")
        return [{"hostname": host, "host": self.answers[host], "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


class Receiver:
    """A raw TCP listener on loopback that counts connections and runs ``answer``."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.done = asyncio.Event()

    async def __aenter__(self) -> "Receiver":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.answer(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.done.set()


async def read_request(r: Receiver, reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    r.requests.append(head + await reader.readexactly(length))


async def no_content(r: Receiver, reader, writer) -> None:
    await read_request(r, reader)
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await writer.drain()


async def test_a_literal_or_resolved_loopback_or_metadata_address_is_refused_when_connecting():
    async with Receiver(no_content) as r:
        resolver = Pinned({"hook.test": "127.0.0.1", "meta.test": "169.254.169.254"})
        async with make_session((), resolver=resolver) as session:
            for target in (f"http://127.0.0.1:{r.port}/h", f"http://hook.test:{r.port}/h",
                           "http://meta.test/latest/meta-data/", "http://169.254.169.254/latest/meta-data/",
                           f"http://[::ffff:127.0.0.1]:{r.port}/h"):
                status, code, _ = await deliver(session, target, BODY, HEADERS)
                assert (status, code) == (None, "refused_address"), target
            assert resolver.asked == ["hook.test", "meta.test"]      # names are resolved, then refused
        assert r.connections == 0

        # The operating system's own resolver: localhost is loopback too.
        async with make_session(()) as session:
            assert (await deliver(session, f"http://localhost:{r.port}/h", BODY, HEADERS))[:2] == (
                None, "refused_address")
        assert r.connections == 0

        # An admin's allowlist lets the same name through.
        async with make_session(LOOPBACK, resolver=Pinned({"hook.test": "127.0.0.1"})) as session:
            assert (await deliver(session, f"http://hook.test:{r.port}/h", BODY, HEADERS))[:2] == (204, None)
        assert r.connections == 1 and r.requests[0].endswith(BODY)


async def test_a_closed_port_and_an_open_port_that_is_not_http_read_the_same():
    async def ssh(r: Receiver, reader, writer) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)

    async def silent_close(r: Receiver, reader, writer) -> None:
        await reader.read(100)

    async with make_session(LOOPBACK) as session:
        closed = await deliver(session, f"http://127.0.0.1:{free_port()}/h", BODY, HEADERS)
        codes = {"closed": closed[:2]}
        for name, answer in (("ssh", ssh), ("silent_close", silent_close)):
            async with Receiver(answer) as r:
                codes[name] = (await deliver(session, f"http://127.0.0.1:{r.port}/h", BODY, HEADERS))[:2]
                assert r.connections == 1
    assert codes == {"closed": (None, "connect_failed"), "ssh": (None, "connect_failed"),
                     "silent_close": (None, "connect_failed")}


async def test_a_huge_compressed_answer_is_not_read_past_a_few_kib_nor_inflated():
    size = 50 * 1024 * 1024
    sent = 0

    async def huge(r: Receiver, reader, writer) -> None:
        nonlocal sent
        await read_request(r, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        chunk = b"\0" * 65536
        while sent < size:
            writer.write(chunk)
            await writer.drain()       # raises once the daemon has dropped the connection
            sent += len(chunk)

    async with Receiver(huge) as r:
        async with make_session(LOOPBACK) as session:
            status, code, _ = await deliver(session, f"http://127.0.0.1:{r.port}/h", BODY, HEADERS)
            assert (status, code) == (200, None)
        await asyncio.wait_for(r.done.wait(), 30)
    head = r.requests[0].split(b"\r\n\r\n", 1)[0].lower()
    assert b"accept-encoding: identity" in head
    # What the receiver could write before it saw the connection closed: the daemon
    # read RESPONSE_MAX bytes; the rest sat in the two kernels' socket buffers.
    assert sent < size // 2, (sent, RESPONSE_MAX)


async def test_the_daemon_refuses_private_targets_and_unknown_kinds_and_logs_codes_only(asterisk, database,
                                                                                        tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path))
    service = d.runner.app[WEBHOOKS]
    service.backoff = lambda attempt: 0.01
    await add_user(database, "root", "admin")
    hits = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=204)

    runner, port = await http_receiver("/hook", receive)
    try:
        async with aiohttp.ClientSession() as http:
            root = bearer(await login(http, d, "root"))
            for target in (f"http://127.0.0.1:{port}/hook", "http://169.254.169.254/latest/meta-data/",
                           "http://[fd00::1]/hook", "http://10.0.0.1/hook", "http://2130706433/hook"):
                async with http.post(url(d, "/api/webhooks"), headers=root,
                                     json={"url": target, "events": ["ticket.dispatched"]}) as r:
                    assert r.status == 422, target
                    assert (await r.json())["details"][0]["field"] == "body.url"
            async with http.post(url(d, "/api/webhooks"), headers=root,
                                 json={"url": f"http://localhost:{port}/hook", "events": ["call.endedd"]}) as r:
                assert r.status == 422 and "call.endedd" in await r.text()
            # A name is taken, and refused when the delivery connects.
            async with http.post(url(d, "/api/webhooks"), headers=root,
                                 json={"url": f"http://localhost:{port}/hook", "events": ["ticket.dispatched"]}) as r:
                assert r.status == 201, await r.text()
                sid = (await r.json())["subscription_id"]
            assert service.publish("ticket.dispatched", {"id": "t1:1", "type": "ticket.dispatched"}) == 1

            async def log():
                async with http.get(url(d, f"/api/webhooks/{sid}/deliveries"), headers=root) as r:
                    rows = (await r.json())["deliveries"]
                return rows if any(x["outcome"] == "gave_up" for x in rows) else None

            rows = await eventually(log, 30, what="the delivery given up")
            assert {(x["outcome"] in ("failed", "gave_up"), x["error"], x["http_status"]) for x in rows} == {
                (True, "refused_address", None)}
            assert hits == 0
    finally:
        await d.stop()
        await runner.cleanup()


async def test_an_allowlisted_loopback_receiver_gets_deliveries(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, webhook_allow="127.0.0.0/8"))
    await add_user(database, "root", "admin")
    got: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(request.headers.get("Accept-Encoding", ""))
        return web.Response(status=204)

    runner, port = await http_receiver("/hook", receive)
    try:
        async with aiohttp.ClientSession() as http:
            root = bearer(await login(http, d, "root"))
            async with http.post(url(d, "/api/webhooks"), headers=root,
                                 json={"url": f"http://127.0.0.1:{port}/hook", "events": ["ticket.*"]}) as r:
                assert r.status == 201, await r.text()
            assert d.runner.app[WEBHOOKS].publish("ticket.dispatched", {"id": "t1:1", "type": "ticket.dispatched"})
            await eventually(lambda: got, 15, what="a delivery")
            assert got == ["identity"]
    finally:
        await d.stop()
        await runner.cleanup()
