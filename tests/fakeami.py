"""A scripted AMI peer on a real loopback socket (a fake Asterisk for tests)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

SECRET = "s3cr3t-Pa55-do-not-leak"
GREETING = b"Asterisk Call Manager/11.0.0\r\n"


def frame(*pairs: tuple[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n"


class Peer:
    """One accepted connection, seen from the fake Asterisk."""

    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.writer = writer

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[Peer, dict[str, str]], Awaitable[None]]


class FakeAmi:
    """A scripted AMI server: answers Login and Ping, records every action.

    ``handlers[action]`` overrides the answer to an action; ``on_login`` runs
    after a successful Login is answered; ``on_accept`` runs before the
    greeting (return False to close at once).
    """

    def __init__(self) -> None:
        self.secret = SECRET
        self.received: list[tuple[int, dict[str, str]]] = []
        self.accepted_at: list[float] = []
        self.handlers: dict[str, Handler] = {}
        self.on_login: Callable[[Peer], None] | None = None
        self.on_accept: Callable[[Peer], bool] | None = None
        self.answer_pings: Callable[[Peer], bool] = lambda peer: True
        self.peers: list[Peer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> None:
        """Listen on ``port`` (0: any free one; a port again: an Asterisk restarted)."""
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        for peer in self.peers:
            peer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1)
        await self.server.wait_closed()

    def actions(self, name: str) -> list[tuple[int, dict[str, str]]]:
        return [(n, a) for n, a in self.received if a["Action"] == name]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        peer = Peer(len(self.peers) + 1, writer)
        self.peers.append(peer)
        self.accepted_at.append(time.monotonic())
        try:
            if self.on_accept is not None and not self.on_accept(peer):
                return
            writer.write(GREETING)
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                action: dict[str, str] = {}
                for line in raw.decode().split("\r\n"):
                    if line:
                        key, _, value = line.partition(": ")
                        action.setdefault(key, value)
                self.received.append((peer.number, action))
                await self._answer(peer, action)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, peer: Peer, action: dict[str, str]) -> None:
        name, aid = action["Action"], action["ActionID"]
        handler = self.handlers.get(name)
        if handler is not None:
            await handler(peer, action)
        elif name == "Login":
            if action.get("Secret") == self.secret:
                peer.send(frame(("Response", "Success"), ("ActionID", aid),
                                ("Message", "Authentication accepted")))
                if self.on_login is not None:
                    self.on_login(peer)
            else:
                peer.send(frame(("Response", "Error"), ("ActionID", aid),
                                ("Message", "Authentication failed")))
        elif name == "Ping":
            if self.answer_pings(peer):
                peer.send(frame(("Response", "Success"), ("ActionID", aid), ("Ping", "Pong"),
                                ("Timestamp", "1795335475.000000")))
        else:
            peer.send(frame(("Response", "Success"), ("ActionID", aid)))


def event(name: str, **headers: str) -> bytes:
    return frame(("Event", name), *headers.items())
