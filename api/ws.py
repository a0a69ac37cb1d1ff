"""``/ws``: the WebSocket hub's asyncio shell (the core is ``api.hub``).

One bus subscriber turns call events into messages for the agents concerned
(``CallAudience``); another turns the ACD's agent state changes
(``acd.events.AgentStateChanged``, which carry the new state and the one told
before) into ``agent.state`` messages. Both come in the bus's one order.

Sending is built for fan-out (thousands of supervisors): publishing only
queues (``api.hub``) and marks the connections touched; on the next loop
turn ``_flush`` writes each touched connection's queued messages as
ready-made WebSocket frames in one ``transport.write`` (a burst of events,
such as an offer and the agent state change it causes, is one system call),
with no task woken, ``FLUSH_CHUNK`` connections per turn so that the rest of
the daemon runs in between. A frame is built once per message and shared by every
connection of a stream. Only a connection whose socket buffer is backed up
(``DIRECT_MAX``) or closing is handed to its writer task, which sends
through aiohttp with a bounded wait (``SEND_TIMEOUT``) and drops the client
as slow when it does not drain. While the writer is sending, the flush
leaves that connection to it, so messages never overtake each other.
Supervisors and admins share one stream (they see the same events), so
each event is numbered, spliced and kept once, not once per user.

Each connection has a reader (the client's ``ping``) and that writer task; a
connection the core marks ``drop`` is closed. Every ``REVALIDATE_S`` one task
re-checks the credentials of all open sockets in two queries (logout,
expiry, revocation, a disabled user, a changed role end them), not a query
per socket.

The protocol is in docs/api.md ("WebSocket"). Close codes: 4401 not
authenticated (or no longer), 4400 bad first message, 4408 too slow (reconnect
with your last seq), 4409 replaced (your role or agent changed), 1001 shutdown.
"""
from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from acd.decisions import AgentView
from acd.events import AgentStateChanged
from acd.routing_shell import AcdService
from api import accounts
from api.auth import STAFF, BadCredential, Credential, Principal, credential_from_text
from api.db import db, query
from api.errors import ApiError
from api.hub import AgentSnapshot, CallAudience, Connection, Hub, Resume, Scope, agent_update, call_message
from api.prometheus import LagHistogram
from api.registry import API
from api.session_routes import principal_of
from cti.daemon import CoreServices, run_with_app
from cti.events import CallEvent

log = structlog.get_logger(__name__)

AUTH_TIMEOUT = 5.0          # the first message must come within this
HEARTBEAT_S = 20.0          # protocol ping every 20 s; no pong within 10 s closes
SEND_TIMEOUT = 5.0          # one send may take this long before the client is dropped
REVALIDATE_S = 30.0         # credentials re-checked this often on an open socket
EXPIRE_S = 60.0             # replay rings of streams nobody reads are dropped this often
MAX_CLIENT_MESSAGE = 4096
DIRECT_MAX = 64 * 1024      # a socket with more than this unsent goes through its writer task
FLUSH_CHUNK = 250           # connections written per loop turn
EVERYTHING_STREAM = "staff:everything"   # the one stream of all who see everything

CLOSE_UNAUTHENTICATED, CLOSE_BAD_REQUEST, CLOSE_SLOW, CLOSE_REPLACED = 4401, 4400, 4408, 4409


class AuthMessage(BaseModel):
    """The client's first message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["auth"]
    token: SecretStr | None = Field(None, description="session token or API key; omit when sent as a header")
    stream: str | None = Field(None, max_length=64, description="the stream id of the hello you had")
    last_seq: int | None = Field(None, ge=0, description="the last seq you processed on that stream")


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["ping"]


def text_frame(text: str) -> bytes:
    """``text`` as one unmasked, final WebSocket text frame (RFC 6455 5.2), as a
    server sends it (no extension: the hub's sockets are made without compression)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + data


@dataclass(eq=False, slots=True)
class Link:
    """The shell's side of a hub connection: its socket, transport and writer's wake-up."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    wake: asyncio.Event
    principal: Principal
    busy: bool = False          # the writer task is sending: the flush must not write around it
    revoked: bool = False       # the credential ended: the writer closes it (4401)



def _snapshot(v: AgentView) -> AgentSnapshot:
    return AgentSnapshot(v.agent_id, v.state, v.reason, v.since, v.call_id, v.pending, v.wrapup_ends_at,
                         v.wrapup_max_at, v.disposition_due)


def stream_key(p: Principal, scope: Scope) -> str:
    """Whose stream a principal reads: the shared one when it sees everything."""
    return EVERYTHING_STREAM if scope.everything else f"{p.kind}:{p.id}"


def scope_of(p: Principal) -> Scope:
    """Supervisors and admins see everything; an agent user their agent's events;
    anyone else (qa, keys with other roles, agents without an agent id) nothing yet."""
    if p.role in STAFF:
        return Scope(everything=True)
    if p.role == "agent" and p.agent_id:
        return Scope(agent_id=p.agent_id)
    return Scope()


class HubService:
    def __init__(self, app: web.Application, hub: Hub, core: CoreServices, acd: AcdService | None) -> None:
        self.app = app
        self.core = core
        self.acd = acd          # agent states (None when the ACD does not run)
        self.hub = hub
        self.audience = CallAudience()
        self.links: dict[Connection, Link] = {}
        self._pending: dict[Connection, None] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._round: list[Connection] | None = None     # the connections being flushed, in chunks
        self._round_at = 0
        self._round_started = 0.0
        self.flush_seconds = LagHistogram()   # a round, from its first write to its last
        self._frames: dict[str, bytes] = {}             # one frame per message, shared by every connection
        # Called at each flush before writing: a feature may queue a message to go in the
        # same writes (the wallboard joins its snapshot to a burst of events).
        self.before_flush: list[Callable[[], None]] = []
        # Called with each pushed message (the event broker publishes them for API nodes).
        self.push_listeners: list[Callable[[dict[str, Any], frozenset[str]], None]] = []
        # Parts a feature adds to every hello, computed when the client attaches (an HA pair
        # tells desktops where the leader and the other nodes are: ``api.follow``).
        self.hello_parts: dict[str, Callable[[], Any]] = {}
        self.revalidate_s = REVALIDATE_S
        self.direct_writes = 0      # writes made by the flush (each may carry several messages)
        self.writer_wakes = 0       # connections handed to their writer task
        self.sockets: set[web.WebSocketResponse] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []

    async def start(self) -> None:
        bus = self.core.bus
        self._unsubscribe = [bus.subscribe(self.on_call_event), bus.subscribe_to(AgentStateChanged, self.agent_changed)]
        self._tasks.append(asyncio.create_task(self._run_expire(), name="ws-expire"))
        self._tasks.append(asyncio.create_task(self._run_revalidate(), name="ws-revalidate"))

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close(code=1001, message=b"server shutting down") for ws in list(self.sockets)),
                             return_exceptions=True)

    # -- inputs --------------------------------------------------------------

    def on_call_event(self, ev: CallEvent) -> None:
        agents = self.audience.feed(ev.kind, ev.call_id, ev.data)
        self._deliver(self.hub.publish(call_message(ev.kind, ev.call_id, ev.seq, ev.at, ev.call, ev.data), agents))

    def agent_changed(self, ev: AgentStateChanged) -> None:
        """The ACD's new view of an agent (the event carries it and the one told
        before): an ``agent.state`` message when a client would see a change."""
        message = agent_update(_snapshot(ev.view), None if ev.previous is None else _snapshot(ev.previous))
        if message is not None:
            self._deliver(self.hub.publish(message, frozenset({ev.agent_id})))

    def push(self, body: dict[str, Any], agents: frozenset[str]) -> None:
        """Publish a message of another feature (e.g. a screen-pop) to the streams of
        ``agents`` (and to supervisors and admins), numbered like every event."""
        self._deliver(self.hub.publish(body, agents))
        for listener in self.push_listeners:
            listener(body, agents)

    def _deliver(self, conns: list[Connection]) -> None:
        """Mark ``conns`` for the next flush (once per loop turn)."""
        if not conns:
            return
        self._pending.update(dict.fromkeys(conns))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is queued for each marked connection, or hand it to its writer;
        ``FLUSH_CHUNK`` connections per loop turn, so that routing and AMI events are
        not held up behind thousands of writes."""
        loop = asyncio.get_running_loop()
        if self._round is None:
            for hook in self.before_flush:
                try:
                    hook()      # may queue more (this flush is still the scheduled one: no second)
                except Exception:
                    log.exception("ws before-flush hook failed")
            self._round, self._pending, self._round_at = list(self._pending), {}, 0
            self._round_started = loop.time()
        chunk = self._round[self._round_at:self._round_at + FLUSH_CHUNK]
        self._round_at += len(chunk)
        if self._round_at < len(self._round):
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._round = None
            self._flush_handle = loop.call_soon(self._flush) if self._pending else None
        frames = self._frames if self._round is not None else self._frames_done()
        links = self.links
        writes = 0
        for c in chunk:
            link = links.get(c)
            if link is None:
                continue
            t = link.transport
            if (c.drop is not None or link.busy or t is None or t.is_closing() or link.ws.closed
                    or t.get_write_buffer_size() > DIRECT_MAX):
                self.writer_wakes += 1
                link.wake.set()
                continue
            q = c.queue
            if not q:
                continue
            if len(q) == 1:
                text = q.popleft()
                frame = frames.get(text)
                if frame is None:
                    frame = frames[text] = text_frame(text)
            else:
                parts = []
                for text in q:
                    f = frames.get(text)
                    if f is None:
                        f = frames[text] = text_frame(text)
                    parts.append(f)
                q.clear()
                frame = b"".join(parts)
            t.write(frame)
            writes += 1
        self.direct_writes += writes
        if self._round is None:
            self.flush_seconds.observe(loop.time() - self._round_started)

    def _frames_done(self) -> dict[str, bytes]:
        """The frame cache for the last chunk of a round, emptied for the next round."""
        frames, self._frames = self._frames, {}
        return frames

    async def _run_expire(self) -> None:
        while True:
            try:
                self.hub.expire(time.time())
            except Exception:
                log.exception("ws replay expiry failed")
            await asyncio.sleep(EXPIRE_S)

    # -- one connection --------------------------------------------------------

    def _snapshot(self, p: Principal, scope: Scope) -> dict[str, Any]:
        snap: dict[str, Any] = {"agent_state": None, "calls": []}
        if scope.agent_id is None:
            return snap
        acd = self.acd
        if acd is not None:
            try:
                v = acd.router.agent_state(scope.agent_id)
                snap["agent_state"] = {"state": v.state, "reason": v.reason, "since": v.since,
                                       "call_id": v.call_id, "pending": v.pending,
                                       "wrapup_ends_at": v.wrapup_ends_at, "wrapup_max_at": v.wrapup_max_at,
                                       "disposition_due": v.disposition_due}
            except Exception:   # not an agent of the ACD configuration
                snap["agent_state"] = None
        model = self.core.model
        snap["calls"] = [model.calls[cid].view().as_dict() for cid in self.audience.calls_of(scope.agent_id)
                         if cid in model.calls]
        return snap

    async def serve(self, request: web.Request) -> web.StreamResponse:
        # No permessage-deflate: the messages are small JSON, and a compressor per
        # connection costs CPU on every send and memory on every socket.
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_CLIENT_MESSAGE, compress=False)
        if not ws.can_prepare(request).ok:
            # A plain HTTP request: say so in the API's error shape, not aiohttp's text.
            return ApiError(426, "upgrade_required", "/ws speaks WebSocket only: send an Upgrade request",
                            headers={"Upgrade": "websocket", "Connection": "Upgrade"}).response()
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            first = await self._first_message(ws)
            if first is None:
                return ws
            principal = await self._authenticate(ws, request, first)
            if principal is None:
                return ws
            # The socket under the WebSocket, for the flush (None: left to the writer).
            transport = request.transport if isinstance(request.transport, asyncio.Transport) else None
            await self._run(ws, transport, principal, first)
        finally:
            self.sockets.discard(ws)
        return ws

    async def _first_message(self, ws: web.WebSocketResponse) -> AuthMessage | None:
        try:
            msg = await ws.receive(timeout=AUTH_TIMEOUT)
        except asyncio.TimeoutError:
            await _refuse(ws, CLOSE_UNAUTHENTICATED, "unauthenticated", f"send an auth message within {AUTH_TIMEOUT:g}s")
            return None
        if msg.type != WSMsgType.TEXT:
            await _refuse(ws, CLOSE_BAD_REQUEST, "invalid_message", "the first message is a JSON auth message")
            return None
        try:
            return AuthMessage.model_validate_json(msg.data)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "message" for e in exc.errors())
            await _refuse(ws, CLOSE_BAD_REQUEST, "invalid_message", f"invalid auth message: {fields}")
            return None

    async def _authenticate(self, ws: web.WebSocketResponse, request: web.Request,
                            first: AuthMessage) -> Principal | None:
        try:
            if first.token is not None:
                cred = credential_from_text(first.token.get_secret_value())
                principal = await query(accounts.principal_for(db(self.app), cred))
            else:
                principal = await principal_of(self.app, request.headers)
        except BadCredential:
            principal = None
        except ApiError as exc:
            await _refuse(ws, CLOSE_UNAUTHENTICATED if exc.status == 401 else 1011, exc.error_id, exc.message)
            return None
        if principal is None:
            await _refuse(ws, CLOSE_UNAUTHENTICATED, "unauthenticated",
                          "a valid session token or API key is required (auth.token or a header)")
        return principal

    async def _run(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, p: Principal,
                   first: AuthMessage, **attach: Any) -> None:
        scope = scope_of(p)
        resume = Resume(first.stream, first.last_seq) if first.stream and first.last_seq is not None else None
        hello = {"user": {"kind": p.kind, "id": p.id, "name": p.name, "role": p.role, "agent_id": p.agent_id},
                 "scope": {"everything": scope.everything, "agent_id": scope.agent_id},
                 "snapshot": self._snapshot(p, scope), **{k: f() for k, f in self.hello_parts.items()}}
        attached = self.hub.attach(stream_key(p, scope), scope, resume, hello, time.time(), **attach)
        conn = attached.conn
        wake = asyncio.Event()
        link = self.links[conn] = Link(ws, transport, wake, p)
        self._deliver([conn])
        log.info("ws attached", user=p.name, resumed=attached.resumed, replayed=attached.replayed,
                 resync=attached.resync)
        writer = asyncio.create_task(self._write(link, conn, p), name=f"ws-writer-{conn.id}")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                try:
                    ClientMessage.model_validate_json(msg.data)
                    reply = {"type": "pong"}
                except ValidationError:
                    reply = {"type": "error", "error_id": "invalid_message",
                             "message": "clients send {\"type\": \"ping\"} only"}
                if self.hub.control(conn, reply):
                    break   # a flood of pings whose answers are not read: the writer closes it (4408)
                self._deliver([conn])
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self.links.pop(conn, None)
            self.hub.detach(conn, time.time())
            if not ws.closed:
                if conn.drop == "slow":
                    await ws.close(code=CLOSE_SLOW, message=b"slow: reconnect with your last seq")
                else:
                    await ws.close()

    async def _write(self, link: Link, conn: Connection, p: Principal) -> None:
        """The slow path (the flush writes while the socket keeps up) and the closes:
        slow, replaced, or the credential ended (``revalidate``)."""
        ws, wake = link.ws, link.wake
        while True:
            await wake.wait()
            wake.clear()
            if link.revoked:
                await _refuse(ws, CLOSE_UNAUTHENTICATED, "unauthenticated",
                              "the session ended or expired, or the API key was revoked")
                return
            if conn.drop is not None:
                code = CLOSE_SLOW if conn.drop == "slow" else CLOSE_REPLACED
                log.info("ws dropped", user=p.name, why=conn.drop)
                await ws.close(code=code, message=f"{conn.drop}: reconnect with your last seq".encode())
                return
            link.busy = True
            try:
                # A deadline moved on before each send (no task per message, as
                # wait_for would make one). aiohttp waits for the socket to drain.
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(None) as deadline:
                    while texts := self.hub.take(conn):
                        for text in texts:
                            deadline.reschedule(loop.time() + SEND_TIMEOUT)
                            await ws.send_str(text)
            except (asyncio.TimeoutError, ConnectionError):
                log.info("ws send failed or too slow", user=p.name)
                await ws.close(code=CLOSE_SLOW, message=b"send timed out: reconnect with your last seq")
                return
            finally:
                link.busy = False

    async def revalidate(self) -> int:
        """Check every open socket's credential (two queries for all of them): a
        logout, an expiry, a revoked key, a disabled user or a changed role or
        agent closes it (4401). Returns how many were closed. The database away:
        only expiries are checked, the rest waits for the next round."""
        links = [link for link in self.links.values() if not link.revoked]
        if not links:
            return 0
        now = time.time()
        creds = {(link.principal.kind, link.principal.credential) for link in links}
        valid: dict[tuple[str, bytes], tuple[str, str | None]] | None
        try:
            valid = await query(accounts.still_valid(db(self.app), [Credential(k, d) for k, d in creds]))
        except ApiError:
            valid = None
        closed = 0
        for link in links:
            p = link.principal
            gone = p.expires_at is not None and p.expires_at <= now
            if valid is not None and valid.get((p.kind, p.credential)) != (p.role, p.agent_id):
                gone = True
            if gone:
                link.revoked = True
                link.wake.set()
                closed += 1
        if closed:
            log.info("ws credentials ended", sockets=closed)
        return closed

    async def _run_revalidate(self) -> None:
        while True:
            await asyncio.sleep(self.revalidate_s)
            try:
                await self.revalidate()
            except Exception:
                log.exception("ws revalidation failed")


async def _refuse(ws: web.WebSocketResponse, code: int, error_id: str, message: str) -> None:
    try:
        await asyncio.wait_for(ws.send_json({"type": "error", "seq": 0, "error_id": error_id, "message": message}),
                               SEND_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    await ws.close(code=code, message=message[:120].encode())


WS = web.AppKey("ws_hub", HubService)
# The hub whose /ws this node serves, when not ``WS``'s (an HA pair with a broker: api.follow).
WS_SERVED = web.AppKey("ws_served", HubService)
# What the broker's stream told this node (an HA pair with a broker: ``api.node_core.NodeState``,
# the calls' audiences and which calls are live): a new leader's publisher starts from it
# (api.broker.setup_broker).
STREAM_STATE = web.AppKey("stream_state", Callable[[], Any])


def setup_ws(app: web.Application, core: CoreServices, acd: AcdService | None, *, route: bool = True) -> HubService:
    """``/ws`` and its hub. After ``setup_auth`` (it uses the API's pool) and
    after ``setup_acd`` (the hello's snapshot reads the ACD's agent state). Where
    it subscribes to the bus does not matter: every subscriber gets the same
    events in the same order (``cti.events.Bus``). ``route`` False: the hub runs
    (pushes, the wallboard, the broker's listeners) but ``/ws`` is another's (an HA
    pair with a broker serves it from the stream: ``api.follow``)."""
    settings = core.settings
    service = HubService(app, Hub(replay_max=settings.ws_replay_max, queue_max=settings.ws_queue_max,
                                  replay_max_age=settings.ws_replay_max_age_s), core, acd)
    app[WS] = service

    async def on_shutdown(app: web.Application) -> None:
        await asyncio.gather(*(ws.close(code=1001, message=b"server shutting down") for ws in list(service.sockets)),
                             return_exceptions=True)

    run_with_app(app, service)
    app.on_shutdown.append(on_shutdown)
    if route:
        app.router.add_get("/ws", service.serve)
    app[API].document("GET", "/ws", summary="WebSocket: live events (screen-pops, agent states); see docs/api.md",
                      roles=None, operation_id="websocket", status=101, content_type=None, tags=("events",),
                      description="Authenticated by the first message {\"type\": \"auth\", \"token\": ...}; "
                                  "agents get their own calls and state, supervisors and admins everything.")
    return service
