"""The reads an API node serves itself; the rest is forwarded.

From the leader's boards on the broker (``api.node_reads``): ``GET /api/wallboard``,
``GET /api/acd/state``; from the credential: ``GET /api/me``; from the shared
PostgreSQL, with the leader's own handlers and declarations: ``GET /api/agent/calls``
(every desktop after each call) and ``GET /api/mail/threads`` (every desktop every 15 s).

Declared through a route registry of the node's own (``app[API]``: the same wrapper,
so the same authentication, roles and JSON errors as on the leader, with the same
roles as the leader's routes of the same path). Not ``setup_registry``: the node's
``/openapi.json`` and ``/docs`` are the leader's, forwarded.
"""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import web
from pydantic import ValidationError

from api.acd_routes import AcdState
from api.auth import EVERYONE, STAFF, Principal
from api.node import NODE, NodeService
from api.desktop import HISTORY, history
from api.registry import API, Api, ApiRequest, Handler
from api.session_routes import MeReply, me
from api.wallboard_models import Snapshot
from mail.routes import LIST_THREADS, list_threads

log = structlog.get_logger(__name__)

Fallback = Callable[[web.Request], Awaitable[web.StreamResponse]]
Authenticate = Callable[[web.Request], Awaitable[Principal | None]]


def setup_node_reads(app: web.Application, authenticate: Authenticate, fallback: Fallback,
                     clock: Callable[[], float] = time.time) -> Api:
    """The reads of the module doc answered on this node (``app[NODE]``'s board; ``authenticate``
    the credential; the app's database), the board's handed to ``fallback`` (the leader) while
    the node has nothing to answer with. Before ``setup_forward``."""
    api = app[API] = Api(description="The reads an API node answers itself (docs/scale-out.md)")
    api.app = app
    api.authenticate = authenticate

    def node(req: ApiRequest[Any, Any]) -> NodeService:
        return req.app[NODE]

    async def get_wallboard(req: ApiRequest[None, None]) -> Any:
        reads = node(req).reads
        if reads.board is not None:
            try:
                board = Snapshot(**reads.board)
            except ValidationError:
                log.warning("node: the leader's wallboard does not validate; forwarded")
            else:
                reads.served += 1
                return board
        reads.forwarded += 1
        return await fallback(req.request)

    async def get_state(req: ApiRequest[None, None]) -> Any:
        reads = node(req).reads
        found = reads.acd_state(clock())
        if found is not None:
            picture, age = found
            try:
                text = AcdState.model_validate(picture).model_dump_json()
            except ValidationError:
                log.warning("node: the leader's routing picture does not validate; forwarded")
            else:
                reads.served += 1
                return web.json_response(text=text, headers={"Age": str(int(age))})
        reads.forwarded += 1
        return await fallback(req.request)

    async def get_me(req: ApiRequest[None, None]) -> MeReply:
        node(req).reads.served += 1
        return await me(req)

    api.add("GET", "/api/wallboard", get_wallboard, summary="The wallboard now: the leader's last, read from "
            "the broker", roles=STAFF, response=Snapshot, tags=("wallboard",))
    api.add("GET", "/api/acd/state", get_state, summary="Agents, waiting calls and queues: the leader's picture "
            "of its last wallboard, aged to now", roles=STAFF, response=AcdState, tags=("acd",))
    api.add("GET", "/api/me", get_me, summary="Who the credential stands for", roles=EVERYONE, response=MeReply,
            tags=("auth",), operation_id="me")

    # Reads of the shared database, the same query wherever it runs: the leader's handlers.
    def served(handler: Handler) -> Handler:
        async def serve(req: ApiRequest[Any, Any]) -> Any:
            node(req).reads.served += 1
            return await handler(req)

        serve.__name__ = handler.__name__
        return serve

    api.add("GET", "/api/agent/calls", served(history), **HISTORY)
    api.add("GET", "/api/mail/threads", served(list_threads), **LIST_THREADS)
    return api
