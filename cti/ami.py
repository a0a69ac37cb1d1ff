"""The asyncio AMI client: one connection to Asterisk, kept alive.

A thin shell around ``cti.amiproto``: read bytes, feed the parser, route the
frames, act. Everything it promises:

- ``start()`` runs a supervisor task that connects, logs in (``Events: on``),
  runs the ``on_connected`` hook, and on any loss reconnects with exponential
  backoff and jitter (``reconnect_min`` doubling up to ``reconnect_max``),
  until ``stop()``. A refused login is retried with the same backoff: a wrong
  password never spins.
- ``send(action, headers, shape=...)``: the caller states the reply's shape;
  nothing is guessed from the reply. "single" completes on the first
  Response; "list" on the event with ``EventList: Complete``. Every action has
  a timeout, and its entry is removed however it ends (reply, error, timeout,
  cancellation). An action whose connection drops fails with
  ``AmiDisconnected`` at once and is never sent again: it may or may not have
  run in Asterisk, and only the caller can decide whether running it twice is
  safe.
- Routing: a response goes to the action with its ActionID. An event goes to
  a pending *list* action with its ActionID; every other event goes to the
  listeners, in arrival order, including events that carry the ActionID of a
  single-shape action (an ``OriginateResponse`` must reach the call model
  whether it comes after the Response, as usual, or just before it).
- Listeners are plain functions, called synchronously from ``data_received``;
  one that raises is logged and counted, and the connection, the other
  listeners and the rest of the chunk go on.
- From connect until the ``on_connected`` hook has returned, events for the
  listeners are buffered in order (bounded: past ``max_buffered_events`` the
  connection is dropped and a resync follows), then delivered, then live
  delivery resumes. So the hook can ask Asterisk for its state
  (``CoreShowChannels`` ...) and the listeners still see every change that
  happened after that state, in order. A hook that raises or overruns
  ``on_connected_timeout`` drops the connection.
- Keepalive: a ``Ping`` every ``ping_interval``; no answer within
  ``min(action_timeout, ping_interval)`` and the connection is aborted
  (catches half-open TCP) and re-established.
- The secret is sent in the Login action and nowhere else: not in logs, repr,
  health or exception messages.

Errors raised (``cti.errors``): ``AmiNotConnected``, ``AmiDisconnected``,
``AmiTimeout``, ``AmiActionFailed``, ``AmiLoginFailed``, ``UnsafeValue``.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

import structlog

from cti.ami_types import AmiHealth, PendingAction, Reply
from cti.amiproto import DEFAULT_MAX_FRAME_SIZE, AmiParser, Frame, encode_action
from cti.errors import (
    AmiActionFailed,
    AmiDisconnected,
    AmiError,
    AmiLoginFailed,
    AmiNotConnected,
    AmiProtocolError,
    AmiTimeout,
)

__all__ = ["AmiClient", "Shape", "Listener", "OnConnected"]

log = structlog.get_logger(__name__)

Shape = Literal["single", "list"]
Listener = Callable[[Frame], None]
OnConnected = Callable[[], Awaitable[None]]
HeaderValues = Mapping[str, str | Sequence[str]]


class _LoginRefused(AmiError):
    """Internal: Asterisk answered our Login with an error."""


class _Dropped(AmiError):
    """Internal: we dropped the connection on purpose (hook failed, buffer full)."""


class _Connection(asyncio.Protocol):
    """One TCP connection: its parser, its pending actions, its event buffer."""

    def __init__(self, client: AmiClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = AmiParser(max_frame_size=client.max_frame_size, on_error=client._on_protocol_error)
        self.pending: dict[str, PendingAction] = {}
        self.lost: asyncio.Future[None] = loop.create_future()
        self.logged_in = False
        # Why we dropped it ourselves (keepalive, full buffer); None if Asterisk did.
        self.drop_reason: str | None = None
        # Events for the listeners are held here until the on_connected hook
        # has run (see AmiClient); None once live delivery has started.
        self.buffer: list[Frame] | None = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self.client._on_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_pending()
        self.client._on_lost(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # ours
    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing() or self.lost.done()

    def fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(AmiDisconnected(f"{p.action}: connection lost before the reply"))

    def abort(self, reason: str | None = None) -> None:
        if reason is not None and self.drop_reason is None:
            self.drop_reason = reason
        self.fail_pending()
        self.client._on_lost(self)
        if self.transport is not None:
            self.transport.abort()


class AmiClient:
    """A self-healing AMI connection. See the module docstring for the contract."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 5.0,
        ping_interval: float = 10.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 15.0,
        connect_timeout: float = 5.0,
        on_connected_timeout: float = 60.0,
        max_buffered_events: int = 100_000,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout
        self.on_connected_timeout = on_connected_timeout
        self.max_buffered_events = max_buffered_events
        self.max_frame_size = max_frame_size

        self._listeners: tuple[Listener, ...] = ()
        self._on_connected: OnConnected | None = None
        self._lost_hook: Callable[[float], None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None  # the current connection, logged in or not
        self._ready = False  # logged in and the hook done: live delivery
        self._changed: asyncio.Event | None = None
        self._ids = 0
        self._id_prefix = f"cti-{secrets.token_hex(3)}-"

        self._connected = False
        self._since: float | None = None
        self._last_event_at: float | None = None
        self._lost_at: float | None = None
        self._events_received = 0
        self._logins = 0
        self._resyncs = 0
        self._handler_errors = 0
        self._frames_rejected = 0
        self._last_error: str | None = None
        self._login_failed = False
        self._version: str | None = None

    def __repr__(self) -> str:
        state = "ready" if self._ready else "connected" if self._connected else "disconnected"
        return f"<AmiClient {self.username}@{self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------ API

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(frame)`` for every event frame not claimed by a list action.

        ``fn`` must be a plain function (raises ``TypeError`` for a coroutine
        function: an un-awaited task per event would lose order and errors).
        """
        if inspect.iscoroutinefunction(fn) or not callable(fn):
            raise TypeError("listeners are plain functions called with each event frame")
        self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``; no error if it was not registered."""
        self._listeners = tuple(f for f in self._listeners if f != fn)

    def set_on_connected(self, fn: OnConnected | None) -> None:
        """Run ``await fn()`` after each login, before live events reach the listeners.

        Events arriving meanwhile are buffered and delivered, in order, when
        it returns. ``fn`` may call ``send``. If it raises or runs longer than
        ``on_connected_timeout``, the connection is dropped and re-established.
        """
        if fn is not None and not inspect.iscoroutinefunction(fn):
            raise TypeError("on_connected must be an async function")
        self._on_connected = fn

    def set_on_lost(self, fn: Callable[[float], None] | None) -> None:
        """Call ``fn(lost_at)`` (a plain function, at once) when a logged-in connection
        is lost: the daemon's watch of its nodes starts counting (``cti.nodes``)."""
        self._lost_hook = fn

    async def start(self) -> None:
        """Start the supervisor task (connect, log in, stay connected). Returns at once."""
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._supervisor = asyncio.create_task(self._supervise(), name=f"ami-supervisor {self.host}:{self.port}")

    async def stop(self) -> None:
        """Stop reconnecting, close the connection, fail pending actions; awaits every task."""
        task, self._supervisor = self._supervisor, None
        conn = self._conn
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if conn is not None:
            conn.abort()
            # Let the transport finish closing before the loop may go away.
            await asyncio.wait([conn.lost], timeout=1.0)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until logged in and the on_connected hook has run.

        Raises ``AmiLoginFailed`` if the last attempt (or one made while
        waiting) was refused by Asterisk, ``AmiNotConnected`` after ``timeout``.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._ready:
                        return
                    if self._login_failed:
                        raise AmiLoginFailed(f"Asterisk refused the login of {self.username!r}")
                    if self._changed is None:
                        self._changed = asyncio.Event()
                    await self._changed.wait()
        except TimeoutError:
            raise AmiNotConnected(
                f"no AMI connection within {timeout}s (last error: {self._last_error or 'none'})"
            ) from None

    @property
    def connected(self) -> bool:
        """True when logged in and live (the on_connected hook has run)."""
        return self._ready

    @property
    def pending_actions(self) -> int:
        """Actions sent on the current connection and still waiting for their reply."""
        conn = self._conn
        return 0 if conn is None else len(conn.pending)

    @property
    def health(self) -> AmiHealth:
        """A snapshot of the connection state and counters."""
        conn = self._conn
        return AmiHealth(
            connected=self._connected,
            logged_in=conn is not None and conn.logged_in,
            since=self._since,
            last_event_at=self._last_event_at,
            events_received=self._events_received,
            reconnects=max(0, self._logins - 1),
            resyncs=self._resyncs,
            handler_errors=self._handler_errors,
            frames_rejected=self._frames_rejected,
            last_error=self._last_error,
            asterisk_version=self._version,
            lost_at=self._lost_at,
        )

    async def send(
        self,
        action: str,
        headers: HeaderValues | None = None,
        *,
        shape: Shape,
        timeout: float | None = None,
    ) -> Reply:
        """Send one action and wait for its reply, of the stated ``shape``.

        Returns a ``Reply``. Raises ``UnsafeValue`` (nothing sent) if a name or
        value holds CR/LF/NUL; ``AmiNotConnected`` at once without a logged-in
        connection; ``AmiActionFailed`` on ``Response: Error`` (or a list
        cancelled by Asterisk); ``AmiTimeout`` after ``timeout`` (default
        ``action_timeout``); ``AmiDisconnected`` if the connection drops first.
        The action is never re-sent.
        """
        return await self.submit(action, headers, shape=shape, timeout=timeout)

    def submit(
        self,
        action: str,
        headers: HeaderValues | None = None,
        *,
        shape: Shape,
        timeout: float | None = None,
    ) -> asyncio.Future[Reply]:
        """Write one action now, before returning, and return a future of its reply.

        ``send`` without the wait: actions submitted one after another leave in
        that order within the same turn of the event loop, and Asterisk runs a
        session's actions in the order they arrive. So a caller can put
        ``Setvar`` then ``Redirect`` on the wire at the moment it decides,
        without a task switch, and see to the replies later. The future fails
        as ``send`` raises (``AmiActionFailed``, ``AmiTimeout``,
        ``AmiDisconnected``); cancelling it forgets the action (it may still
        run). Raises at once, nothing written: ``UnsafeValue``,
        ``AmiNotConnected``, ``ValueError`` for a bad ``shape``.
        """
        if shape != "single" and shape != "list":
            raise ValueError(f"shape must be 'single' or 'list', not {shape!r}")
        conn = self._conn
        if conn is None or not conn.logged_in:
            raise AmiNotConnected(f"{action}: no logged-in AMI connection")
        return self._submit_on(conn, action, headers, shape == "list", timeout)

    # ------------------------------------------------------------ internals

    def _next_id(self) -> str:
        self._ids += 1
        return f"{self._id_prefix}{self._ids}"

    def _submit_on(
        self,
        conn: _Connection,
        action: str,
        headers: HeaderValues | None,
        is_list: bool,
        timeout: float | None,
    ) -> asyncio.Future[Reply]:
        """Write the action and return the future of its reply. The pending entry
        and the timer go however the future ends (reply, error, timeout, cancel)."""
        if timeout is None:
            timeout = self.action_timeout
        action_id = self._next_id()
        data = encode_action(action, headers, action_id)  # refuses before any I/O
        if conn.closing:
            raise AmiNotConnected(f"{action}: the AMI connection is closing")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        conn.pending[action_id] = PendingAction(action, is_list, fut)

        def expire() -> None:
            if not fut.done():
                fut.set_exception(AmiTimeout(f"{action}: no complete reply within {timeout}s"))

        timer = loop.call_later(timeout, expire)

        def settled(_: asyncio.Future[Reply]) -> None:
            timer.cancel()
            conn.pending.pop(action_id, None)

        fut.add_done_callback(settled)
        assert conn.transport is not None
        conn.transport.write(data)
        return fut

    def _on_protocol_error(self, exc: AmiProtocolError) -> None:
        self._frames_rejected += 1
        log.warning("ami frame rejected", reason=str(exc), host=self.host)

    def _on_data(self, conn: _Connection, data: bytes) -> None:
        """The hot path: parse, route each frame (see the module docstring)."""
        frames = conn.parser.feed(data)
        if not frames:
            return
        pending = conn.pending
        events = 0
        for frame in frames:
            h = frame.headers
            is_event = "Event" in h
            if pending:
                action_id = h.get("ActionID")
                if action_id is not None:
                    p = pending.get(action_id)
                    if p is not None and (p.is_list or not is_event):
                        if p.add(frame):
                            del pending[action_id]
                        events += is_event
                        continue
            if not is_event:
                if "Response" in h:
                    log.debug("ami response for no pending action", action_id=h.get("ActionID"))
                else:
                    self._frames_rejected += 1
                    log.debug("ami frame neither event nor response", keys=list(h)[:5])
                continue
            events += 1
            buffer = conn.buffer
            if buffer is None:
                self._deliver(frame)
            elif len(buffer) < self.max_buffered_events:
                buffer.append(frame)
            else:
                log.error(
                    "ami event buffer full during on_connected; dropping the connection to resync",
                    buffered=len(buffer),
                )
                conn.abort("event buffer full")
                break
        if events:
            self._events_received += events
            self._last_event_at = time.time()

    def _on_lost(self, conn: _Connection) -> None:
        # Not ready from this instant: callers woken by AmiDisconnected must
        # not see the dead connection as live while the supervisor catches up.
        was_in = conn.logged_in
        if was_in:
            self._lost_at = time.time()
        conn.logged_in = False
        if was_in and self._lost_hook is not None:
            try:
                self._lost_hook(self._lost_at or time.time())
            except Exception:
                log.exception("ami on_lost hook failed", host=self.host)
        if self._conn is conn and self._ready:
            self._ready = False
            self._notify()

    def _deliver(self, frame: Frame) -> None:
        for fn in self._listeners:
            try:
                fn(frame)
            except Exception:
                self._handler_errors += 1
                log.exception("ami listener failed", ami_event=frame.headers.get("Event"),
                              listener=getattr(fn, "__qualname__", repr(fn)))

    def _notify(self) -> None:
        ev, self._changed = self._changed, None
        if ev is not None:
            ev.set()

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            self._since = time.time()
        self._notify()

    def _backoff(self, failures: int) -> float:
        base = min(self.reconnect_max, self.reconnect_min * 2 ** min(failures - 1, 32))
        return base * (0.5 + random.random() / 2)

    async def _supervise(self) -> None:
        failures = 0
        while True:
            conn: _Connection | None = None
            try:
                conn = await self._connect()
                await self._login(conn)
                failures = 0
                await self._serve(conn)
                self._last_error = conn.drop_reason or "connection lost"
                log.warning("ami connection lost", host=self.host, port=self.port, reason=self._last_error)
            except _LoginRefused as exc:
                self._login_failed = True
                self._last_error = "login failed"
                log.error("ami login failed", host=self.host, port=self.port,
                          username=self.username, reason=str(exc))
            except _Dropped as exc:
                self._last_error = str(exc)
                log.warning("ami connection dropped", host=self.host, port=self.port, reason=str(exc))
            except (OSError, TimeoutError) as exc:
                self._last_error = f"connect failed: {exc.__class__.__name__}: {exc}"
                log.warning("ami connect failed", host=self.host, port=self.port, error=str(exc))
            except AmiError as exc:
                # Login timed out or the connection dropped during login.
                self._last_error = f"{exc.__class__.__name__}: {exc}"
                log.warning("ami session failed", host=self.host, port=self.port, error=str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: log it, keep the supervisor alive
                self._last_error = f"internal error: {exc.__class__.__name__}"
                log.exception("ami supervisor error", host=self.host, port=self.port)
            finally:
                if conn is not None:
                    conn.abort()
                    conn.logged_in = False
                if self._conn is conn:
                    self._conn = None
                self._ready = False
                self._set_connected(False)
            failures += 1
            delay = self._backoff(failures)
            log.info("ami reconnecting", host=self.host, port=self.port, delay=round(delay, 3), attempt=failures)
            await asyncio.sleep(delay)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, loop)
        async with asyncio.timeout(self.connect_timeout):
            await loop.create_connection(lambda: conn, self.host, self.port)
        self._conn = conn
        self._set_connected(True)
        log.debug("ami connected", host=self.host, port=self.port)
        return conn

    async def _login(self, conn: _Connection) -> None:
        headers = {"Username": self.username, "Secret": self._secret, "Events": "on"}
        try:
            await self._submit_on(conn, "Login", headers, False, self.action_timeout)
        except AmiActionFailed as exc:
            raise _LoginRefused(exc.message) from None
        conn.logged_in = True
        self._login_failed = False
        self._logins += 1
        if conn.parser.version is not None:
            self._version = conn.parser.version
        log.info("ami logged in", host=self.host, port=self.port, username=self.username,
                 ami_version=self._version, reconnects=max(0, self._logins - 1))

    async def _serve(self, conn: _Connection) -> None:
        """Keepalive, hook, flush the buffer, then live until the connection ends."""
        pinger = asyncio.create_task(self._keepalive(conn), name="ami-keepalive")
        try:
            if self._on_connected is not None:
                await self._run_hook(conn, self._on_connected)
                self._resyncs += 1
            buffered, conn.buffer = conn.buffer or [], None
            for frame in buffered:
                self._deliver(frame)
            self._ready = True
            self._notify()
            await conn.lost
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)

    async def _run_hook(self, conn: _Connection, hook: OnConnected) -> None:
        task = asyncio.ensure_future(hook())
        try:
            await asyncio.wait({task, conn.lost}, timeout=self.on_connected_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if conn.closing:
            raise _Dropped(conn.drop_reason or "connection lost during on_connected")
        if task.cancelled():
            log.error("ami on_connected hook timed out; dropping the connection",
                      timeout=self.on_connected_timeout)
            raise _Dropped("on_connected timed out")
        exc = task.exception()
        if exc is not None:
            log.error("ami on_connected hook failed; dropping the connection", exc_info=exc)
            raise _Dropped(f"on_connected failed: {exc.__class__.__name__}")

    async def _keepalive(self, conn: _Connection) -> None:
        timeout = min(self.action_timeout, self.ping_interval)
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._submit_on(conn, "Ping", None, False, timeout)
            except AmiTimeout:
                log.warning("ami ping unanswered; dropping the connection", host=self.host, timeout=timeout)
                conn.abort("keepalive timeout")
                return
            except AmiActionFailed:
                pass  # an answer all the same: the peer is alive
            except (AmiDisconnected, AmiNotConnected):
                return
