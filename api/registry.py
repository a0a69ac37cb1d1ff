"""The route registry: every API route declared once, with its models, roles and summary.

    api = app[API]
    api.add("POST", "/api/login", login, summary="Log in", roles=None,
            body=LoginBody, response=LoginReply, tags=("auth",))

``add`` registers the aiohttp route with a wrapper that, in order:
authenticates (``roles=None`` is public; otherwise a credential is required
and the principal's role must be one of ``roles``: 401 / 403), parses the
query into the ``query`` model and the JSON body into the ``body`` model
(400 ``invalid_json``, 413, 422 ``invalid_body`` naming each bad field, text
with NUL included, which PostgreSQL cannot store; a
public route's body only as ``application/json``, else 415), calls
the handler with an ``ApiRequest``, and serialises what it returns (a pydantic
model as JSON with ``status``; None as 204; a ``web.StreamResponse`` as it is).
Any ``ApiError`` becomes its JSON answer; any other exception a logged 500.

The same records make ``/openapi.json`` (``api.openapi``) and ``/docs``.
Routes served by other means (``/healthz``, ``/metrics``, ``/ws``) are added
with ``document`` so the document still lists them.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, Generic, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ValidationError

from api import openapi
from api.static_files import StaticFiles
from api.auth import AgentScope, Principal, admits, needs_agent_team, over_agent
from api.errors import ApiError, ErrorDetail, forbidden, unauthenticated, validation_details
from cti.version import version as package_version

DOCS_STATIC = Path(__file__).parent / "static" / "docs"

log = structlog.get_logger(__name__)

B = TypeVar("B")
Q = TypeVar("Q")
BODY_MAX = 64 * 1024

Authenticator = Callable[[web.Request], Awaitable[Principal | None]]
TeamOf = Callable[[web.Application, str], Awaitable[str | None]]


def _is_number(text: str) -> bool:
    # Whatever Python reads as a number ("1.4e-47", " 12 ", "inf" too), pydantic reads as one.
    try:
        float(text)
    except ValueError:
        return False
    return True


def _iso_not_number(value: Any) -> Any:
    # pydantic reads "0" as 1970-01-01 (seconds since the epoch); the document says ISO 8601.
    if isinstance(value, (int, float)) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("an ISO 8601 date or time (2026-05-01, 2026-05-01T08:00:00Z), not a number")
    return value


Day = Annotated[date, BeforeValidator(_iso_not_number)]
"""A day in a query or body: ``2026-05-01`` only."""
Instant = Annotated[datetime, BeforeValidator(_iso_not_number)]
"""A time in a query or body: ISO 8601 only."""


@dataclass(slots=True)
class ApiRequest(Generic[B, Q]):
    """What a handler gets: the raw request, who asks, and the parsed inputs."""

    request: web.Request
    principal: Principal | None
    body: B
    query: Q
    over_agent: str | None = None     # a route with an agent scope: "self" or "other" (audit it)

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def match_info(self) -> Any:
        return self.request.match_info


Handler = Callable[[ApiRequest[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    summary: str
    roles: frozenset[str] | None
    operation_id: str
    description: str = ""
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    tags: tuple[str, ...] = ()
    content_type: str | None = None      # a non-JSON answer (documented routes)
    body_max: int = BODY_MAX
    also: tuple[str, ...] = ()           # other media types the success answer may have (text/csv)
    agent_scope: AgentScope | None = None   # acts on the agent of its {agent_id} (api.auth.over_agent)


async def _no_authenticator(request: web.Request) -> Principal | None:
    raise ApiError(503, "unavailable", "authentication is not set up")


async def _no_teams(app: web.Application, agent_id: str) -> str | None:
    raise ApiError(503, "unavailable", "authentication is not set up")


@dataclass
class Api:
    """The registry (``app[API]``). ``authenticate`` is set by ``api.session_routes.setup_auth``:
    it returns the principal of the request's credential, None when there is
    none, and raises ``ApiError`` (401) for a bad one. ``team_of`` (set there too)
    returns an agent's team, for routes with an ``agent_scope``."""

    title: str = "open-cti API"
    version: str = field(default_factory=package_version)
    description: str = ""
    authenticate: Authenticator = _no_authenticator
    team_of: TeamOf = _no_teams
    routes: list[Route] = field(default_factory=list)
    app: web.Application | None = None

    def add(self, method: str, path: str, handler: Handler, *, summary: str, roles: frozenset[str] | None,
            body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
            response: type[BaseModel] | None = None, status: int = 200, tags: tuple[str, ...] = (),
            description: str = "", operation_id: str | None = None, body_max: int = BODY_MAX,
            also: tuple[str, ...] = (), content_type: str | None = None,
            agent_scope: AgentScope | None = None) -> Route:
        """Declare a route and serve it. Returns its record. Raises ``ValueError``
        when the method and path are taken or the operation id repeats, or when
        ``agent_scope`` is given to a public route or a path without ``{agent_id}``. ``content_type``
        documents a route that answers with something else than a JSON model (audio).
        ``agent_scope``: the route acts on the agent its path names; who may is
        decided before its body is read (403 ``not_your_agent``)."""
        if agent_scope is not None and ("{agent_id}" not in path or roles is None):
            raise ValueError(f"{method} {path}: an agent scope needs {{agent_id}} in the path and roles")
        route = self._record(method, path, summary=summary, roles=roles, body=body, query=query,
                             response=response, status=status, tags=tags, description=description,
                             operation_id=operation_id or handler.__name__, body_max=body_max, also=also,
                             content_type=None if response else content_type, agent_scope=agent_scope)
        assert self.app is not None, "Api.app is set by setup_registry"
        self.app.router.add_route(route.method, path, self._wrap(route, handler))
        return route

    def document(self, method: str, path: str, *, summary: str, roles: frozenset[str] | None,
                 operation_id: str, content_type: str | None = "application/json", status: int = 200,
                 tags: tuple[str, ...] = (), description: str = "",
                 response: type[BaseModel] | None = None) -> Route:
        """List a route served by other means in the document (no wrapper)."""
        return self._record(method, path, summary=summary, roles=roles, body=None, query=None,
                            response=response, status=status, tags=tags, description=description,
                            operation_id=operation_id, content_type=None if response else content_type)

    def _record(self, method: str, path: str, **kw: Any) -> Route:
        method = method.upper()
        route = Route(method=method, path=path, **kw)
        for r in self.routes:
            if (r.method, openapi.openapi_path(r.path)) == (method, openapi.openapi_path(path)):
                raise ValueError(f"{method} {path} is already registered")
            if r.operation_id == route.operation_id:
                raise ValueError(f"operation id {route.operation_id!r} is already used by {r.method} {r.path}")
        self.routes.append(route)
        return route

    def openapi(self) -> dict[str, Any]:
        return openapi.document(self.routes, title=self.title, version=self.version, description=self.description)

    # -- the wrapper -------------------------------------------------------------

    def _wrap(self, route: Route, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                principal = None
                if route.roles is not None:
                    principal = await self.authenticate(request)
                    decision = admits(principal, route.roles)
                    if decision == "unauthenticated":
                        raise unauthenticated()
                    if decision == "forbidden":
                        raise forbidden(route.roles)
                over = await self._over_agent(route, request, principal) if route.agent_scope else None
                _refuse_unstorable(dict(request.match_info), "path")
                query = _parse_query(route.query, request) if route.query is not None else None
                body = await _parse_body(route, request) if route.body is not None else None
                if body is not None:
                    _refuse_unstorable(body.model_dump(), "body")
                result = await handler(ApiRequest(request, principal, body, query, over))
            except ApiError as exc:
                return exc.response()
            except (web.HTTPException, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("api handler failed", route=f"{route.method} {route.path}")
                return ApiError(500, "internal", "internal error (logged)").response()
            if isinstance(result, web.StreamResponse):
                return result
            if result is None:
                return web.Response(status=204 if route.status == 200 else route.status)
            return web.json_response(text=result.model_dump_json(), status=route.status)

        serve.__name__ = handler.__name__
        return serve

    async def _over_agent(self, route: Route, request: web.Request, principal: Principal | None) -> str:
        assert route.agent_scope is not None and principal is not None
        agent_id = request.match_info["agent_id"]
        team = None
        if needs_agent_team(principal, agent_id, route.agent_scope):
            team = await self.team_of(request.app, agent_id)
        over = over_agent(principal, agent_id, route.agent_scope, team)
        if over is None:
            log.warning("agent action refused", route=f"{route.method} {route.path}", actor=principal.name,
                        role=principal.role, agent=agent_id)
            who = ("the agent themselves" if route.agent_scope == "self"
                   else "the agent themselves, a supervisor of their team or an admin")
            raise ApiError(403, "not_your_agent", f"only {who} may do this")
        return over


# PostgreSQL's text cannot hold NUL (a JSON body may spell it "\u0000", a query or
# path "%00"): such text is refused at the door, naming its field, not left to fail
# in the database as a 500. (Unpaired surrogates never get this far: the JSON parser
# refuses them, 400.)
_UNSTORABLE = re.compile("\x00")


def unstorable_text(value: Any, where: str) -> list[ErrorDetail]:
    """One detail per string inside ``value`` (nested dicts and lists too) that holds
    NUL; ``where`` names ``value`` (``body``, ``query``, ``path``)."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return []
        return [ErrorDetail(field=where, message="text may not hold NUL characters",
                            type="unstorable_text")]
    if isinstance(value, dict):
        return [d for k, v in value.items() for d in unstorable_text(k, where) + unstorable_text(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [d for i, v in enumerate(value) for d in unstorable_text(v, f"{where}.{i}")]
    return []


def _refuse_unstorable(value: Any, where: str) -> None:
    details = unstorable_text(value, where)
    if details:
        raise ApiError(422, "invalid_body", f"{details[0].field}: {details[0].message}", details)


def _parse_query(model: type[BaseModel], request: web.Request) -> Any:
    repeated = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
    if repeated:
        # No query field is a list: a second value would be silently dropped.
        raise ApiError(422, "invalid_body", "the query string is invalid", [
            ErrorDetail(field=f"query.{k}", message="given more than once", type="repeated") for k in repeated])
    _refuse_unstorable(dict(request.query), "query")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ApiError(422, "invalid_body", "the query string is invalid",
                       validation_details(exc, "query")) from None


async def _parse_body(route: Route, request: web.Request) -> Any:
    assert route.body is not None
    if route.roles is None and request.content_type != "application/json":
        # A public route is the one another site's page can reach with the visitor's
        # browser: a form or a "simple" fetch sends text/plain or form data without a
        # preflight; application/json needs a CORS preflight, which is never granted.
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json",
                       headers={"Accept": "application/json"})
    if request.content_length is not None and request.content_length > route.body_max:
        raise ApiError(413, "payload_too_large", f"the body may hold at most {route.body_max} bytes")
    # aiohttp bounds any body by the app's client_max_size (1 MiB) before this.
    raw = await request.read()
    if len(raw) > route.body_max:
        raise ApiError(413, "payload_too_large", f"the body may hold at most {route.body_max} bytes")
    if not raw.strip():
        raise ApiError(422, "invalid_body", "a JSON body is required",
                       [ErrorDetail(field="body", message="a JSON body is required", type="missing")])
    try:
        return route.body.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise ApiError(400, "invalid_json", f"the body is not JSON: {errors[0]['msg']}") from None
        raise ApiError(422, "invalid_body", "the body is invalid: " + "; ".join(
            f"{d.field}: {d.message}" for d in validation_details(exc, "body")),
            validation_details(exc, "body")) from None


_API_PATH = re.compile(r"^/api(/|$)")


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """404 and 405 under ``/api/`` answer JSON like every other API error."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if _API_PATH.match(request.path):
            return ApiError(404, "not_found", f"no route {request.path}").response()
        raise
    except web.HTTPMethodNotAllowed as exc:
        if _API_PATH.match(request.path):
            err = ApiError(405, "method_not_allowed", f"{request.method} is not served here; use "
                           f"{', '.join(sorted(exc.allowed_methods))}", headers={"Allow": ",".join(sorted(exc.allowed_methods))})
            return err.response()
        raise


API = web.AppKey("api", Api)


def setup_registry(app: web.Application) -> Api:
    """The registry on ``app``, with ``/openapi.json`` and ``/docs`` (public)."""
    if API in app:
        return app[API]
    api = app[API] = Api(description="The CTI server's REST API. Authentication: POST /api/login gives a "
                                     "session token; machine clients use API keys. See docs/api.md.")
    api.app = app
    app.middlewares.append(json_errors)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(api.openapi())

    async def reference(request: web.Request) -> web.Response:
        return web.Response(text=openapi.render_docs(api.openapi()), content_type="text/html",
                            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    # /docs: Swagger UI, vendored (scripts/vendor-swagger-ui), over /openapi.json. Its own
    # scripts only; it styles elements inline (style-src 'unsafe-inline') and draws icons as data: URLs.
    files = StaticFiles(DOCS_STATIC)
    page = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"}
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", files.handler("index.html", headers=lambda request: page))
    app.router.add_get("/docs/reference", reference)
    app.router.add_get("/docs/{path:(vendor/)?[A-Za-z0-9_.-]+}", files.handler(key="path"))
    api.document("GET", "/openapi.json", summary="This API as an OpenAPI 3.1 document", roles=None,
                 operation_id="openapi", tags=("meta",))
    api.document("GET", "/docs", summary="This API in Swagger UI (search, try it out)", roles=None,
                 operation_id="docs", content_type="text/html", tags=("meta",))
    api.document("GET", "/docs/reference", summary="This API as one plain page (no JavaScript)", roles=None,
                 operation_id="docs_reference", content_type="text/html", tags=("meta",))
    return api
