"""The HTTP listener (port 8765): aiohttp's server behind deadlines and a connection cap.

aiohttp bounds a request head's size (line and field lengths, header count) but
not the time it takes to arrive, and keeps an idle connection an hour by default.
Here each connection's protocol is aiohttp's own ``RequestHandler`` wrapped in
``GuardedProtocol``, which

- refuses a connection beyond ``ConnectionCap`` (per client address, in all) with
  an immediate ``503`` and closes it, before reading anything;
- gives the request head ``head_timeout`` seconds in all, from the connection's
  opening or the first byte of a later request's head, however slowly it trickles
  (a timer per connection, not per line); a head that is not complete by then
  closes the connection;
- hands aiohttp ``keepalive_timeout`` (``idle_timeout``): an idle keep-alive
  connection is closed that long after its last answer.

A WebSocket is a request whose handler is still running: neither deadline applies
to it (it has its own heartbeat, ``api.ws``). "Waiting for a head" is aiohttp's
``RequestHandler._waiter`` being pending, the same test aiohttp's own keep-alive
timer makes (aiohttp 3.12 to 3.14); tests/integration/test_slow_clients.py fails
if a later aiohttp changes that.
"""
from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any, Callable

import structlog
from aiohttp import web

from cti.connlimits import ConnectionCap, fd_plan

log = structlog.get_logger(__name__)

REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Retry-After: 5\r\nConnection: close\r\nContent-Length: 29\r\n\r\n"
           b"too many connections, retry\n")


@dataclass
class Limits:
    head_timeout: float
    cap: ConnectionCap
    heads_timed_out: int = 0


class GuardedProtocol(asyncio.Protocol):
    """One connection: the cap and the head deadline around aiohttp's handler."""

    def __init__(self, limits: Limits, make_inner: Callable[[], Any]) -> None:
        self.limits = limits
        self.make_inner = make_inner
        self.inner: Any = None
        self.address = ""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        if self.limits.cap.admit(self.address) is not None:
            transport.write(REFUSED)
            transport.close()
            return
        self.inner = self.make_inner()
        self.inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        self.inner.data_received(data)
        if self._waiting_for_head():
            if self.timer is None:       # the first bytes of a new head: its clock starts
                self._arm()
        else:                            # a head came out (or a WebSocket runs): no deadline
            self._disarm()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.inner is None:
            return
        self.limits.cap.release(self.address)
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)

    # -- the head deadline --------------------------------------------------------

    def _waiting_for_head(self) -> bool:
        waiter = getattr(self.inner, "_waiter", None)
        return waiter is not None and not waiter.done()

    def _arm(self) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(self.limits.head_timeout, self._expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.inner is not None and self._waiting_for_head():
            self.limits.heads_timed_out += 1
            self.inner.force_close()


class GuardedSite(web.TCPSite):
    """A ``TCPSite`` whose connections go through ``GuardedProtocol``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: Limits, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: GuardedProtocol(self.limits, server), self._host,
                                                self._port, ssl=self._ssl_context, backlog=self._backlog,
                                                reuse_address=self._reuse_address, reuse_port=self._reuse_port)


def raise_fd_limit(asked_total: int) -> int:
    """Raise the soft open-files limit as far as ``cti.connlimits.fd_plan`` says;
    returns the total HTTP connection cap that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, total = fd_plan(soft, hard, asked_total)
    if new_soft != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError):
            new_soft, total = fd_plan(soft, soft, asked_total)
    log.info("file descriptors", soft_limit=new_soft, hard_limit=hard, http_connections_max=total)
    return total


async def start_http(app: web.Application, settings: Any) -> tuple[web.AppRunner, GuardedSite]:
    """Set up ``app`` and listen on ``settings.http_host:http_port`` with the deadlines
    and caps of ``settings`` (``http_head_timeout``, ``http_idle_timeout``,
    ``http_client_max``, ``http_max_connections``). The site's ``limits`` holds the
    counters (open connections by address, refusals, heads timed out)."""
    total = raise_fd_limit(settings.http_max_connections)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=settings.http_idle_timeout)
    await runner.setup()
    limits = Limits(settings.http_head_timeout, ConnectionCap(settings.http_client_max, total))
    site = GuardedSite(runner, settings.http_host, settings.http_port, limits)
    await site.start()
    from cti.daemon import CORE
    if CORE in app:
        app[CORE].http_limits = limits
    return runner, site
