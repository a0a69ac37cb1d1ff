"""On an HA standby the API is read-only (docs/ha.md, "The API on a standby").

Every node answers reads (``GET``/``HEAD``: calls, agents, the wallboard, reports,
``/healthz``, ``/metrics``) from its own warm call model and the shared database.
A command (any other method under ``/api/``) on a node that does not lead gets
503 ``standby`` with the leader's node id, so a client retries on the leader;
logging in and out stay open (sessions live in the shared database), and so do
the dialplan's hooks (read-only look-ups).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web

from api.errors import ApiError

OPEN_ON_STANDBY = frozenset({"/api/login", "/api/logout"})


def refuses(method: str, path: str, leading: bool) -> bool:
    """Whether a request is refused on a node that is ``leading`` or not. Pure."""
    if leading or method in ("GET", "HEAD", "OPTIONS"):
        return False
    return path.startswith("/api/") and path not in OPEN_ON_STANDBY


def standby_error(ha: Any) -> ApiError:
    """The answer of a node that does not lead: 503 ``standby`` naming the leader."""
    holder = ha.health().get("holder")
    return ApiError(503, "standby", f"this node does not lead; send commands to the leader ({holder})",
                    headers={"Retry-After": "1"})


def standby_guard(ha: Any) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if refuses(request.method, request.path, ha.may_act()):
            return standby_error(ha).response()
        return await handler(request)

    return guard
