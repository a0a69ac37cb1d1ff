"""A daemon's own path to PostgreSQL, which a bench can cut and restore: a TCP listener on
loopback that forwards each connection to the embedded server's Unix socket.

``cut()`` is a network partition as the daemon sees it: nothing more is read or written in
either direction (bytes already sent wait, as TCP retransmits them), new connections are
accepted but get no server until ``restore()``; the sockets stay open, so neither side learns
of the cut from a reset. Only the node whose DSN is this link is cut off: the other node of the
pair, and the bench, use their own.
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from bench.harness import free_port


def socket_path(dsn: str) -> Path:
    """The Unix socket a ``postgresql://user@/db?host=DIR&port=N`` DSN names. Raises
    ValueError for a DSN that names no socket directory."""
    q = parse_qs(urlsplit(dsn).query)
    if not q.get("host") or not q["host"][0].startswith("/"):
        raise ValueError("the DSN names no socket directory (host=/...)")
    return Path(q["host"][0]) / f".s.PGSQL.{q.get('port', ['5432'])[0]}"


def via(dsn: str, port: int) -> str:
    """``dsn`` through a loopback TCP port instead of the socket (the same user and database)."""
    u = urlsplit(dsn)
    user = u.netloc.split("@", 1)[0] if "@" in u.netloc else ""
    return urlunsplit((u.scheme, f"{user}@127.0.0.1:{port}", u.path, "", ""))


class Link:
    """The cuttable path (see the module doc)."""

    def __init__(self, dsn: str) -> None:
        self.socket = socket_path(dsn)
        self.port = free_port()
        self.dsn = via(dsn, self.port)
        self.open = asyncio.Event()
        self.open.set()
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def cut(self) -> None:
        self.cuts += 1
        self.open.clear()

    def restore(self) -> None:
        self.open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.open.wait()
        try:
            up_r, up_w = await asyncio.open_unix_connection(str(self.socket))
        except OSError:
            writer.close()
            return
        for src, dst in ((reader, up_w), (up_r, writer)):
            t = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.open.wait()
                data = await src.read(65536)
                await self.open.wait()            # cut while reading: hold what came
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    async def stop(self) -> None:
        self.open.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
