"""A lean WebSocket client for fan-out runs: thousands of sockets in one process.

``bench/load.py --fanout`` holds 2,000 clients in two processes on the same
machine as the daemon. With a full client library each arrival costs tens
of microseconds of Python on the receiving side, enough to dominate what is
measured (the time for an event to reach the last client). This client is
an ``asyncio.Protocol``: the handshake, client frames masked (RFC 6455 5.3),
pings answered, and each text frame's arrival recorded as ``(time, head,
size)``, the first ``HEAD`` bytes of the message, parsed only after the run.

``FrameReader`` is the pure part: bytes in, ``(opcode, payload)`` out.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from typing import Any, Callable

HEAD = 200      # bytes of each message kept: the hub puts type, call_id, call_seq and at first


class FrameError(ValueError):
    pass


class FrameReader:
    """Unmasked server frames out of a byte stream (FIN frames only: the hub
    never fragments)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out = []
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                raise FrameError("a server frame must not be masked")
            if not b0 & 0x80:
                raise FrameError("fragmented frames are not expected")
            n, off = b1 & 0x7F, 2
            if n == 126:
                if n_buf - pos < 4:
                    break
                n, off = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if n_buf - pos < 10:
                    break
                n, off = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if n_buf - pos < off + n:
                break
            out.append((b0 & 0x0F, bytes(buf[pos + off:pos + off + n])))
            pos += off + n
        if pos:
            del buf[:pos]
        return out


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """A masked client frame (the mask is random unless given)."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + body


class FanClient(asyncio.Protocol):
    """One authenticated connection to ``/ws``; ``hello`` resolves with the hello
    message, then every text frame is appended to ``arrivals`` while
    ``recording()`` says so."""

    def __init__(self, host: str, port: int, token: str, arrivals: list[tuple[float, bytes, int]],
                 recording: Callable[[], bool]) -> None:
        self.host, self.port, self.token = host, port, token
        self.arrivals, self.recording = arrivals, recording
        self.reader = FrameReader()
        self.upgraded = False
        self.head = bytearray()
        self.hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                        .encode())

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status, rest = bytes(self.head[:end]), bytes(self.head[end + 4:])
            self.head.clear()
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(f"no upgrade: {status[:80]!r}")
                return
            self.upgraded = True
            self.send_text(json.dumps({"type": "auth", "token": self.token}))
            data = rest
        for op, payload in self.reader.feed(data):
            if op == 0x1:
                if not self.hello.done():
                    msg = json.loads(payload)
                    if msg.get("type") == "hello":
                        self.hello.set_result(msg)
                    else:
                        self._fail(f"not accepted: {payload[:200]!r}")
                elif self.recording():
                    self.arrivals.append((now, payload[:HEAD], len(payload)))
            elif op == 0x9:                     # ping: the server's heartbeat wants a pong
                self._send(0xA, payload)
            elif op == 0x8:
                self._send(0x8, payload[:2])
                if self.transport is not None:
                    self.transport.close()

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, op: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(op, payload))

    def _fail(self, why: str) -> None:
        if not self.hello.done():
            self.hello.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(f"closed before hello: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(host: str, port: int, token: str, arrivals: list[tuple[float, bytes, int]],
                  recording: Callable[[], bool]) -> FanClient:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: FanClient(host, port, token, arrivals, recording), host, port)
    await asyncio.wait_for(proto.hello, 30)
    return proto
