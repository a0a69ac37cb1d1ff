"""The API's database pool: ``db(app)`` and ``query(coro)``, made by ``setup_db``.

The routes query the API's share of the daemon's one pool (``Core.db("api")``: at most
``db_feature_max["api"]`` connections at once; the pool is opened and closed by the core,
``setup_db`` hands the share to them while the app runs). Every call a route makes through it is
bounded by ``QUERY_TIMEOUT``; a database that is away or late is a 503
``unavailable``, never a hung request.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import asyncpg
import structlog
from aiohttp import web

from api.errors import ApiError
from cti.daemon import CoreServices
from cti.pg import FeaturePool

log = structlog.get_logger(__name__)

QUERY_TIMEOUT = 2.0


class ApiDb:
    """The API's pool (None until the app starts, or when the database was away then)."""

    def __init__(self) -> None:
        self.pool: FeaturePool | None = None


API_DB = web.AppKey("api_db", ApiDb)


def db(app: web.Application) -> FeaturePool:
    """The API's connection pool. Raises ``ApiError`` 503 when there is none."""
    pool = app[API_DB].pool
    if pool is None:
        raise ApiError(503, "unavailable", "the database is unavailable")
    return pool


async def query(coro: Any) -> Any:
    """Await a database call with the API's bound; 503 when it fails or is late."""
    try:
        async with asyncio.timeout(QUERY_TIMEOUT):
            return await coro
    except TimeoutError:
        raise ApiError(503, "unavailable", f"the database did not answer within {QUERY_TIMEOUT:g}s") from None
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
        log.warning("api.db_error", error=type(exc).__name__)
        raise ApiError(503, "unavailable", "the database is unavailable") from None


def setup_db(app: web.Application, core: CoreServices) -> ApiDb:
    """The API's pool: its share of ``core``'s, from when the app has started until it stops.
    Idempotent: returns the one already set up."""
    if API_DB in app:
        return app[API_DB]
    holder = ApiDb()
    app[API_DB] = holder

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        holder.pool = core.db("api")     # the API's share of the daemon's pool (opened and closed by the core)
        try:
            yield
        finally:
            holder.pool = None

    app.cleanup_ctx.append(ctx)
    return holder
