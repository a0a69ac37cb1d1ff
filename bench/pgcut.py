"""A daemon's own path to PostgreSQL, which a bench or a test can cut and restore: a TCP
listener on loopback that forwards each connection to the server (an embedded server's Unix
socket, or a TCP address).

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
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from bench.harness import free_port


def upstream(dsn: str) -> tuple[str, int] | Path:
    """Where the server listens, as the DSN says: the Unix socket of ``host=/DIR&port=N``
    (an embedded server), or ``(host, port)`` of a TCP address. Raises ValueError for a DSN
    that names neither."""
    u = urlsplit(dsn)
    q = parse_qs(u.query)
    port = q.get("port", [str(u.port or 5432)])[0]
    if q.get("host") and q["host"][0].startswith("/"):
        return Path(q["host"][0]) / f".s.PGSQL.{port}"
    if u.hostname:
        return (u.hostname, int(port))
    raise ValueError("the DSN names no server (host=/socket-dir or host:port)")


def via(dsn: str, port: int) -> str:
    """``dsn`` through a loopback TCP port instead (the same credentials, database and other
    parameters)."""
    u = urlsplit(dsn)
    user = u.netloc.rsplit("@", 1)[0] + "@" if "@" in u.netloc else ""
    query = urlencode([(k, v) for k, vs in parse_qs(u.query).items() if k not in ("host", "port") for v in vs])
    return urlunsplit((u.scheme, f"{user}127.0.0.1:{port}", u.path, query, ""))


class Link:
    """The cuttable path (see the module doc)."""

    def __init__(self, dsn: str) -> None:
        self.upstream = upstream(dsn)
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
            if isinstance(self.upstream, Path):
                up_r, up_w = await asyncio.open_unix_connection(str(self.upstream))
            else:
                up_r, up_w = await asyncio.open_connection(*self.upstream)
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
