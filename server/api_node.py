"""The composition root of an API node (``cti api-node``, docs/scale-out.md).

No AMI connection, no ACD, no call model, no writer: the node reads the leader's
events from the broker (``api.node``) and serves ``/ws`` from them; it opens the
shared PostgreSQL to authenticate clients (and re-check their credentials) and for
two reads; it answers the reads desktops and wallboards ask most itself
(``api.node_routes``); every other request goes to the leader (``node_leader_url``).
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from aiohttp import web

from api.broker import ensure_stream
from api.db import setup_db
from api.node import forward, setup_forward, setup_node, stream_epoch
from api.node_routes import setup_node_reads
from api.session_routes import principal_of
from cti.config import Settings
from cti.daemon import CORE, Core
from cti.pg import close_pool, open_pool


class NodeConfigError(ValueError):
    """What an API node needs and was not given."""


def cluster_of(settings: Settings) -> str:
    return settings.broker_cluster or settings.ha_cluster or "main"


def check(settings: Settings) -> None:
    """Raises ``NodeConfigError`` naming each setting an API node needs and lacks."""
    missing = [name for name, value in (("broker_url (CTI_BROKER_URL)", settings.broker_url),
                                        ("node_leader_url (CTI_NODE_LEADER_URL)", settings.node_leader_url),
                                        ("database_url (CTI_DATABASE_URL)", settings.database_url))
               if value is None]
    if missing:
        raise NodeConfigError("an API node needs " + ", ".join(missing))


async def stream_id(settings: Settings) -> str:
    """The stream id every node gives its clients: made from the broker stream (made here
    if the leader has not yet made it, with the same limits)."""
    import nats
    assert settings.broker_url is not None
    nc = await nats.connect(settings.broker_url.get_secret_value(), connect_timeout=2.0,
                            max_reconnect_attempts=5, name="cti-api-node-setup")
    try:
        info = await ensure_stream(nc.jetstream(), settings.broker_stream, cluster_of(settings),
                                   max_age_s=settings.broker_max_age_s, max_bytes=settings.broker_max_bytes)
    finally:
        await nc.close()
    return stream_epoch(settings.broker_stream, info.created)


def build(settings: Settings, epoch: str) -> web.Application:
    check(settings)
    assert settings.broker_url is not None and settings.node_leader_url is not None
    assert settings.database_url is not None
    app = web.Application()
    core = app[CORE] = Core(settings)

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        core.pool = await open_pool(settings.database_url.get_secret_value())   # type: ignore[union-attr]
        try:
            yield
        finally:
            pool, core.pool = core.pool, None
            await close_pool(pool)

    app.cleanup_ctx.append(pool_ctx)
    setup_db(app, core)
    setup_node(app, settings.broker_url.get_secret_value(), cluster=cluster_of(settings),
               stream=settings.broker_stream, epoch=epoch, ring_max=settings.node_ring_max,
               queue_max=settings.ws_queue_max)
    # The reads served here (api.node_reads), the leader's answer while there is no board yet.
    setup_node_reads(app, lambda request: principal_of(request.app, request.headers), forward)
    setup_forward(app, settings.node_leader_url)      # last: it takes every other path
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> int:
    from cti.httpserver import start_http
    check(settings)
    epoch = await stream_id(settings)
    app = build(settings, epoch)
    runner, _ = await start_http(app, settings)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0
