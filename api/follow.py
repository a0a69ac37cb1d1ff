"""Clients follow the leader in an HA pair: the shell (docs/ha.md, "Clients follow the leader").

``setup_follow`` (instead of the plain standby guard, with ``ha_cluster`` set) puts two
middlewares on the app: CORS for the pair's own origins (a desktop loaded from one
node calls another when its own goes away) and the guard that applies
``api.follow_core.verdict``: serve, forward to the leader (``api.node.forward_to``,
the client's credential as it sent it), or 503 ``standby`` naming the leader.

``setup_follow_ws`` (with a broker) serves ``/ws`` on every node of the pair, the
leader included, from the broker's stream, as an API node does (``api.node``): a
client's ``seq`` is the stream sequence, the same on each node and across a
takeover, when the new leader's publisher continues the stream this node keeps
reading. The daemon's own hub still runs (pushes and the wallboard go through it to
the publisher); its clients are these.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from api.errors import ApiError
from api.follow_core import FORWARDED_BY, LEADER_URL, Peers, cors, hello_part, verdict
from api.standby import standby_error
from cti.config import Settings
from cti.ha import HaNode

READY_WAIT_S = 5.0      # a /ws client waits this long for the node to have read the stream

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION = web.AppKey("follow_session", aiohttp.ClientSession)
FOLLOW_NODE = web.AppKey("follow_node", object)     # the api.node.NodeService serving /ws here


def cluster_of(settings: Settings) -> str:
    return settings.broker_cluster or settings.ha_cluster or "main"


def holder_of(ha: HaNode) -> str | None:
    """The lease row's holder as this node last read it (None before the first read)."""
    row = ha.lease.lease.row if ha.lease is not None else None
    return row.holder if row is not None else None


def peers_of(settings: Settings, ha: HaNode) -> Peers:
    return Peers(me=ha.node, urls=dict(settings.ha_peers))


def _refusal(ha: HaNode, peers: Peers) -> web.Response:
    err = standby_error(ha)
    url = peers.leader_url(holder_of(ha))
    if url is not None:
        err.headers[LEADER_URL] = url
        err.message += f" at {url}"
    return err.response()


def setup_follow(app: web.Application, settings: Settings, ha: HaNode) -> None:
    """The pair's middlewares (first on the app: outermost). Without ``ha_peers`` and a
    broker this is the read-only standby of before: reads served, commands 503."""
    peers = peers_of(settings, ha)
    broker = settings.broker_url is not None
    origins = peers.origins()

    @web.middleware
    async def cross_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        headers = cors(request.headers.get("Origin"), origins, preflight)
        if headers is None:
            return await handler(request)
        if preflight:
            return web.Response(status=204, headers=headers)
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        if not resp.prepared:       # a forwarded answer already streaming has the leader's
            resp.headers.update(headers)
        return resp

    @web.middleware
    async def follow(request: web.Request, handler: Handler) -> web.StreamResponse:
        leading = ha.may_act()
        url = None if leading else peers.leader_url(holder_of(ha))
        v = verdict(request.method, request.path, leading=leading, broker=broker,
                    leader_known=url is not None, forwarded=FORWARDED_BY in request.headers)
        if v == "local":
            return await handler(request)
        if v == "refuse":
            return _refusal(ha, peers)
        from api.node import forward_to
        assert url is not None
        return await forward_to(request, url, request.app[SESSION], {FORWARDED_BY: ha.node})

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        # No cookie jar (one client's cookies must not reach another), no decompression.
        app[SESSION] = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        try:
            yield
        finally:
            await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.middlewares.append(cross_origin)
    app.middlewares.append(follow)


def tell_desktops(app: web.Application, settings: Settings, ha: HaNode) -> None:
    """Every hello of this node's ``/ws`` (the hub's, or the stream's) says where the
    leader and the other nodes are (``hello.ha``); after ``setup_ws``/``setup_follow_ws``."""
    from api.ws import WS
    peers = peers_of(settings, ha)
    broker = settings.broker_url is not None

    def part() -> dict[str, Any]:
        leading = ha.may_act()
        return hello_part(peers, leading=leading, holder=ha.node if leading else holder_of(ha), broker=broker)

    app[WS].hello_parts["ha"] = part
    node: Any = app.get(FOLLOW_NODE)
    if node is not None:
        node.hubs.hello_parts["ha"] = part


def setup_follow_ws(app: web.Application, settings: Settings) -> Any:
    """``/ws`` from the broker's stream on this node of the pair (with a broker; call
    ``setup_ws`` with ``route=False`` before). Returns the ``api.node.NodeService``."""
    from api.broker import ensure_stream
    from api.node import NodeHubService, NodeService, run_with_app
    from api.node_core import NodeHub, NodeState
    from api.ws import STREAM_STATE, WS_SERVED
    from cti.daemon import CORE
    assert settings.broker_url is not None
    hub = NodeHub(epoch="", ring_max=settings.node_ring_max, queue_max=settings.ws_queue_max)
    hubs = NodeHubService(app, hub, NodeState())
    cluster = cluster_of(settings)

    async def make_stream(js: Any) -> Any:
        return await ensure_stream(js, settings.broker_stream, cluster, max_age_s=settings.broker_max_age_s,
                                   max_bytes=settings.broker_max_bytes)

    node = NodeService(hubs, settings.broker_url.get_secret_value(), cluster=cluster,
                       stream=settings.broker_stream, ring_max=settings.node_ring_max, make_stream=make_stream)
    app[FOLLOW_NODE] = node
    app[WS_SERVED] = hubs                               # /metrics counts this node's clients
    app[STREAM_STATE] = lambda: hubs.state              # a new leader's publisher starts from it
    app[CORE].health_parts["stream"] = node.health     # what this node's /ws has read
    run_with_app(app, hubs, node)

    async def serve(request: web.Request) -> web.StreamResponse:
        # Not before the node has read what the stream held: a resume would be refused.
        if not node.ready.is_set():
            try:
                await asyncio.wait_for(node.ready.wait(), READY_WAIT_S)
            except asyncio.TimeoutError:
                return ApiError(503, "unavailable", "this node has not read the event stream yet; retry",
                                headers={"Retry-After": "1"}).response()
        return await hubs.serve(request)

    app.router.add_get("/ws", serve)
    return node

