"""An API node's shell (docs/scale-out.md): the broker's events to WebSockets; the rest to the leader.

``NodeService`` reads the cluster's stream (``api.broker.BrokerFeed``) from
``node_ring_max`` messages back, then live, and publishes each message in the
node's hub (``api.node_core.NodeHub``) under its stream sequence; it reads the
wallboard the leader builds from its own stream (the last one, then each new
one) and broadcasts it to supervisors. ``NodeHubService`` is the leader's
``/ws`` shell (``api.ws.HubService``: authentication, flushes, slow clients,
credentials re-checked) fed by that instead of the bus.

Every other request is forwarded to the leader (``forward``) as the client sent
it, credential included: the leader authenticates and authorizes it as if the
client had come straight to it (docs/security.md, "API nodes").
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

import aiohttp
import nats
import structlog
from aiohttp import web
from nats.js import api as js_api

from api.auth import Principal
from api.errors import ApiError
from api.broker import BrokerFeed, ensure_board
from api.broker_core import board_stream, board_subject
from api.hub import Resume, Scope
from api.node_core import NodeHub, NodeState, plan_resume
from api.node_reads import NodeReads
from api.ws import WS, AuthMessage, HubService

log = structlog.get_logger(__name__)

CATCH_UP_S = 1.0            # a resume ahead of this node waits this long for the node to read that far
ASK_TIMEOUT_S = 2.0         # the broker's answer to "what is the stream's last sequence"
FORWARD_TIMEOUT_S = 15.0    # the leader's answer may pause this long (its head, or between chunks)
# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp sets itself: not forwarded.
_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                  "transfer-encoding", "upgrade", "host", "content-length"})


def stream_epoch(stream: str, created: Any) -> str:
    """The stream id clients see: the same on every node, new when the broker stream is made anew."""
    return "b" + hashlib.sha256(f"{stream}\0{created}".encode()).hexdigest()[:15]


class NodeHubService(HubService):
    """``/ws`` served from the node's hub (no bus, no ACD, no call model)."""

    def __init__(self, app: web.Application, hub: NodeHub, state: NodeState) -> None:
        super().__init__(app, hub, None, None)   # type: ignore[arg-type]
        self.hub: NodeHub = hub
        self.state = state
        self.catch_up_s = CATCH_UP_S
        # The broker stream's last sequence, asked (None: no answer); set by ``NodeService``.
        self.ask_stream_last: Callable[[], Awaitable[int | None]] | None = None

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run_expire(), name="ws-expire"))
        self._tasks.append(asyncio.create_task(self._run_revalidate(), name="ws-revalidate"))

    def _snapshot(self, p: Principal, scope: Scope) -> dict[str, Any]:
        return self.state.snapshot(scope)

    async def _run(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, p: Principal,
                   first: AuthMessage) -> None:
        # A client coming from another node may be ahead of this one (the messages in flight,
        # or a node that restarted a moment ago, or a slow one): wait, bounded, until this node
        # has read as far (then an ordinary replay, with a current snapshot); past the bound
        # the hub resumes it with a floor (api.node_core.plan_resume), after checking with the
        # broker that its position is in the stream.
        stream_last: int | None | Literal["known"] = "known"
        if first.stream == self.hub.epoch and first.last_seq is not None and first.last_seq > self.hub.head:
            resume = Resume(first.stream, first.last_seq)
            loop = asyncio.get_running_loop()
            began = loop.time()
            while True:
                hub = self.hub
                plan = plan_resume(resume, epoch=hub.epoch, head=hub.head, start=hub.start, oldest=hub.oldest,
                                   stream_last=None, waited_s=loop.time() - began, wait_s=self.catch_up_s)
                if plan.kind != "wait":
                    break
                await asyncio.sleep(0.02)
            if first.last_seq > self.hub.stream_last and self.ask_stream_last is not None:
                stream_last = await self.ask_stream_last()
                if stream_last is not None:
                    self.hub.stream_last = max(self.hub.stream_last, stream_last)
                    stream_last = "known"
        await super()._run(ws, transport, p, first, stream_last=stream_last)


class NodeService:
    """The broker's messages into the node's hub, and the leader's wallboard to supervisors."""

    def __init__(self, hubs: NodeHubService, url: str, *, cluster: str, stream: str, ring_max: int,
                 make_stream: Any = None) -> None:
        self.hubs = hubs
        # How the stream is found: read (an API node: ``cti api-node`` made it at start), or
        # made when missing (an HA standby may start before any leader published).
        self.make_stream = make_stream
        self.url = url
        self.cluster = cluster
        self.stream = stream
        self.ring_max = ring_max
        self.nc: Any = None
        self.feed: BrokerFeed | None = None
        self.board: dict[str, Any] | None = None
        self.reads = NodeReads()
        self.ready = asyncio.Event()
        self.gaps = 0
        self.boards = 0
        self.resubscribed = 0
        # Set on each reconnect of the client: the consumers are made again from where they
        # were (not left to the client's own re-creation, which has open reports after a
        # server restart; docs/broker.md).
        self._reconnected = asyncio.Event()
        self._board_reconnected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        hubs.ask_stream_last = self.stream_last

    async def stream_last(self) -> int | None:
        """The broker stream's last sequence now (None: not connected, or no answer in time)."""
        if self.nc is None or not self.nc.is_connected:
            return None
        try:
            info = await asyncio.wait_for(self.nc.jetstream().stream_info(self.stream), ASK_TIMEOUT_S)
            return int(info.state.last_seq)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("node: the stream's last sequence not known", error=type(exc).__name__)
            return None

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="node-feed"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.feed is not None:
            await self.feed.close()
        if self.nc is not None:
            try:
                await self.nc.close()
            except Exception:
                pass

    async def _run(self) -> None:
        delay = 0.2
        while self.nc is None:
            try:
                self.nc = await nats.connect(self.url, connect_timeout=2.0, allow_reconnect=True,
                                             max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                             name="cti-api-node", reconnected_cb=self._on_reconnected)
            except Exception as exc:
                log.warning("node: broker unreachable", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
        js = self.nc.jetstream()
        make = self.make_stream
        info = await _retry(lambda: make(js) if make is not None else js.stream_info(self.stream))
        hub = self.hubs.hub
        # From ring_max back, or from the stream's first message if it holds fewer (the rest aged out).
        after = max(0, info.state.last_seq - self.ring_max, info.state.first_seq - 1)
        if not hub.epoch:       # learnt here (an HA node): no client attaches before ``ready``
            hub.epoch = stream_epoch(self.stream, info.created)
        elif hub.epoch != stream_epoch(self.stream, info.created):
            log.error("node: the stream's id changed since start; restart the node")
        hub.begin(after)
        self.feed = BrokerFeed(self.nc, cluster=self.cluster, stream=self.stream, after=after)
        await self.feed.open()
        self._tasks.append(asyncio.create_task(self._run_board(js), name="node-board"))
        # Ready once what the stream held at start is read: a resume before that would be refused.
        target = info.state.last_seq
        if target <= after:
            self.ready.set()
        log.info("node: reading the stream", stream=self.stream, after=after, head=target)
        while True:
            if self._reconnected.is_set():
                self._reconnected.clear()
                await self._resubscribe()
            try:
                d, verdict = await self.feed.next(timeout=1.0)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:     # the subscription broke: make it again, never stop reading
                log.warning("node: reading the stream failed; consumer made again", error=type(exc).__name__)
                self._reconnected.set()
                await asyncio.sleep(0.5)
                continue
            if verdict.kind != "ok":
                self.gaps += 1
                log.warning("node: gap in the broker's messages", kind=verdict.kind, missing=verdict.missing,
                            at=d.stream_seq)
                if verdict.kind == "stream_gap":
                    hub.lost_before(d.stream_seq)    # resumes from before it: resync
                # A bus_gap (the leader dropped events before publishing) is in every node's
                # stream alike: the numbers stay contiguous, the content has the hole.
            self.hubs.state.feed(d.body)
            self.hubs._deliver(hub.publish_at(d.stream_seq, d.body_json, d.agents))
            hub.stream_last = max(hub.stream_last, self.feed.stream_last)
            if d.stream_seq >= target:
                self.ready.set()

    async def _on_reconnected(self) -> None:
        self._reconnected.set()
        self._board_reconnected.set()

    async def _resubscribe(self) -> None:
        """A new ordered consumer from the last stream sequence read, the follower kept."""
        old = self.feed
        assert old is not None
        feed = BrokerFeed(self.nc, cluster=self.cluster, stream=self.stream, after=old.follower.last_stream_seq)
        feed.follower = old.follower
        await old.close()
        await _retry(feed.open)
        self.feed = feed
        self.resubscribed += 1
        log.info("node: consumer made again after a reconnect", after=feed.follower.last_stream_seq)

    async def _run_board(self, js: Any) -> None:
        """Each wallboard the leader built, to this node's supervisors (no seq: a snapshot)."""
        name = board_stream(self.stream)
        await _retry(lambda: ensure_board(js, name, self.cluster))

        async def subscribe() -> Any:
            return await js.subscribe(board_subject(self.cluster), stream=name, ordered_consumer=True,
                                      config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.LAST))

        sub = await _retry(subscribe)
        while True:
            if self._board_reconnected.is_set():
                self._board_reconnected.clear()
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
                sub = await _retry(subscribe)      # the last board again, then each new one
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node: reading the wallboards failed; consumer made again", error=type(exc).__name__)
                self._board_reconnected.set()
                await asyncio.sleep(0.5)
                continue
            try:
                board = json.loads(msg.data)
            except ValueError:
                log.warning("node: a wallboard that is not JSON, skipped")
                continue
            if not isinstance(board, dict) or board.get("type") != "wallboard":
                continue
            board = self.reads.take(board)      # the routing picture kept apart (api.node_reads)
            self.board = board
            self.boards += 1
            self.hubs._deliver(self.hubs.hub.broadcast(board))

    def health(self) -> dict[str, Any]:
        hub = self.hubs.hub
        return {"connected": bool(self.nc is not None and self.nc.is_connected), "ready": self.ready.is_set(),
                "stream": self.stream, "stream_id": hub.epoch, "head": hub.head, "oldest": hub.oldest,
                "stream_last": hub.stream_last, "resumed_ahead": hub.resumed_ahead,
                "gaps": self.gaps, "boards": self.boards, "resubscribed": self.resubscribed,
                "connections": hub.connections,
                "reads": {"served": self.reads.served, "forwarded": self.reads.forwarded,
                          "board_at": self.reads.at, "pictures_refused": self.reads.refused}}


async def _retry(fn: Any) -> Any:
    delay = 0.2
    while True:
        try:
            return await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("node: broker call failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


# -- forwarding to the leader ---------------------------------------------------

LEADER = web.AppKey("node_leader", str)
SESSION = web.AppKey("node_session", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    """The request, as the client sent it, to the leader; its answer, as the leader gave it.
    502 ``leader_unreachable`` when the leader does not answer in time."""
    return await forward_to(request, request.app[LEADER], request.app[SESSION])


async def forward_to(request: web.Request, leader: str, session: aiohttp.ClientSession,
                     extra: dict[str, str] | None = None) -> web.StreamResponse:
    """``forward`` to the base URL ``leader`` through ``session``, with ``extra`` headers
    added (an HA standby names itself: ``api.follow``)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers.update(extra or {})
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    body = await request.read() if request.can_read_body else None
    resp: web.StreamResponse | None = None
    try:
        # Bounded waits for the connection and for each read, not for the whole answer: a
        # recording or a CSV report streams through, chunk by chunk, never held whole here.
        async with session.request(request.method, leader + request.rel_url.path_qs, headers=headers,
                                   data=body, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(sock_connect=5.0, sock_read=FORWARD_TIMEOUT_S)) as r:
            # The body is passed on as the leader encoded it (no decompression), with its headers.
            out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP or k.lower() == "content-length"}
            resp = web.StreamResponse(status=r.status, reason=r.reason, headers=out)
            await resp.prepare(request)
            async for chunk in r.content.iter_chunked(64 * 1024):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("node: forwarding failed", path=request.path, error=type(exc).__name__)
        if resp is not None:
            raise       # the answer had begun: the client's connection is cut, as the leader's was
        return ApiError(502, "leader_unreachable", "the leader did not answer; retry",
                        headers={"Retry-After": "1"}).response()


def setup_forward(app: web.Application, leader_url: str) -> None:
    """Every route not served here goes to ``leader_url`` (add it after the node's own routes)."""
    app[LEADER] = leader_url.rstrip("/")

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # No cookie jar (a client's cookies must not leak to another), no automatic decompression.
        app[SESSION] = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        try:
            yield
        finally:
            await app[SESSION].close()

    app.cleanup_ctx.append(ctx)
    app.router.add_route("*", "/{tail:.*}", forward)


NODE = web.AppKey("node", NodeService)


def setup_node(app: web.Application, url: str, *, cluster: str, stream: str, epoch: str, ring_max: int,
               queue_max: int) -> NodeService:
    """``/ws`` and ``/healthz`` on this node, fed by the broker."""
    hub = NodeHub(epoch=epoch, ring_max=ring_max, queue_max=queue_max)
    hubs = app[WS] = NodeHubService(app, hub, NodeState())
    node = app[NODE] = NodeService(hubs, url, cluster=cluster, stream=stream, ring_max=ring_max)
    run_with_app(app, hubs, node)

    async def healthz(request: web.Request) -> web.Response:
        body = {"ok": node.ready.is_set() and node.health()["connected"], "role": "api-node",
                "node": node.health(), "at": time.time()}
        return web.json_response(body, status=200 if body["ok"] else 503)

    app.router.add_get("/ws", hubs.serve)
    app.router.add_get("/healthz", healthz)
    return node


def run_with_app(app: web.Application, hubs: NodeHubService, node: NodeService) -> None:
    """The hubs and the stream's reader start and stop with ``app``; at shutdown every
    client's socket is closed with 1001 (an API node's, and a pair node's /ws: api.follow)."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await hubs.start()
        await node.start()
        try:
            yield
        finally:
            await node.stop()
            await hubs.stop()

    async def on_shutdown(app: web.Application) -> None:
        await asyncio.gather(*(ws.close(code=1001, message=b"server shutting down") for ws in list(hubs.sockets)),
                             return_exceptions=True)

    app.cleanup_ctx.append(ctx)
    app.on_shutdown.append(on_shutdown)
