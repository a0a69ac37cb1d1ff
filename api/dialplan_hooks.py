"""HTTP hooks for the dialplan's ``CURL()``: caller lookup and a routing hint.

Answers are one line of comma-separated fields, so the dialplan reads them
with ``CUT`` (``CURL()`` returns the body whatever the HTTP status, and ""
when the request failed), and the first field says whether it worked::

    GET /hooks/lookup?number=+4930123456      (or ?account=<account number>)
        ok,<customer id>,<vip 0|1>,<language>      (found)
        ok,,0,                                     (not found)
    GET /hooks/route?number=+4930123456[&queue=support]   (or ?account=)
        ok,<queue>,<priority>,<customer id>,<language>
        (VIP customers go to the "vip" queue with priority 10; otherwise the
        given queue, default "support", with priority 0)
    any error (4xx, 5xx):
        error,<error id>,<message>

``?format=json`` (or ``Accept: application/json``) gives the same as JSON,
with the customer's name and, for errors, ``{"error_id", "message"}``.

Who may ask (docs/security.md, "FastAGI and dialplan hooks"): the hooks answer
who is calling (name, VIP flag, language), so they are an oracle for anyone
who reaches the port. Every request must carry the ``hook_secret`` setting in
``X-CTI-Hook-Secret`` (``Set(CURLOPT(httpheader)=X-CTI-Hook-Secret: ...)``); the
daemon does not start the hooks without one (``hooks = false`` turns them
off). The ``Host`` header must name this server as the dialplan knows it
(127.0.0.1, ::1, localhost, ``http_host``, or one of ``hook_hosts``): a web page
that rebinds its own name to 127.0.0.1 sends its own name and is refused.
Bounded: the number is at most
32 characters and must be a phone number; an account number is letters, digits,
``_ . -`` (at most 64); the database gets ``QUERY_TIMEOUT`` seconds, after which
the answer is ``error,db_timeout`` (503).

Error ids: ``forbidden`` (403: no secret or a wrong one), ``wrong_host`` (403), ``missing_number``,
``invalid_number``, ``invalid_account``, ``invalid_queue`` (400), ``db_unavailable``,
``db_timeout`` (503).
"""
from __future__ import annotations

import asyncio
import hmac
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator

import asyncpg
import structlog
from aiohttp import web

from crm.customer_lookup import ACCOUNT, CustomerRecord, find_by_account, find_by_phone
from crm.phones import normalise_e164
from cti.errors import ConfigError

if TYPE_CHECKING:
    from cti.config import Settings
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

QUERY_TIMEOUT = 1.0
NUMBER_MAX = 32
SECRET_HEADER = "X-CTI-Hook-Secret"
VIP_QUEUE = "vip"
VIP_PRIORITY = 10
_QUEUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
LOCAL_NAMES = frozenset({"127.0.0.1", "::1", "localhost"})

@dataclass(slots=True)
class HookState:
    """What the handlers read (``app[HOOKS]``): the core's settings (as they are at each
    request), and the hooks' share of its pool while the app runs (None before and after,
    and with no database)."""

    core: "CoreServices"
    pool: Any = None

    @property
    def settings(self) -> "Settings":
        return self.core.settings


HOOKS = web.AppKey("hooks", HookState)


class HookError(Exception):
    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def _wants_json(request: web.Request) -> bool:
    return request.query.get("format") == "json" or "application/json" in request.headers.get("Accept", "")


def _line(*fields: Any) -> str:
    # Fields never hold commas or line breaks: ids, digits, codes; strip to be sure.
    return ",".join(re.sub(r"[,\r\n]", " ", "" if f is None else str(f)) for f in fields) + "\n"


def _error(request: web.Request, exc: HookError) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error_id": exc.error_id, "message": exc.message}, status=exc.status)
    return web.Response(text=_line("error", exc.error_id, exc.message), status=exc.status,
                        content_type="text/plain")


def host_name(header: str | None) -> str | None:
    """The name in a ``Host`` header, lower case, without port or brackets:
    ``"LocalHost:8765"`` -> ``"localhost"``, ``"[::1]:8765"`` -> ``"::1"``;
    None when there is no header or it is not ``name[:port]``."""
    if not header:
        return None
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::[0-9]{1,5})?", header.strip())
    if m is None:
        return None
    return (m.group(1) or m.group(2)).lower().rstrip(".") or None   # "." or ".." names nothing


def allowed_hosts(settings: Any) -> frozenset[str]:
    """The names the dialplan may reach the hooks by."""
    return LOCAL_NAMES | {settings.http_host.lower().strip("[]")} | set(settings.hook_hosts)


def _authorise(request: web.Request) -> None:
    settings = request.app[HOOKS].settings
    if host_name(request.headers.get("Host")) not in allowed_hosts(settings):
        # Not the dialplan: a browser whose page rebound its own name to us.
        raise HookError(403, "wrong_host", "the Host header does not name this server")
    secret = settings.hook_secret
    given = request.headers.get(SECRET_HEADER, "")
    # Header bytes that are not UTF-8 arrive as surrogates: compared as the bytes they were.
    if secret is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                 secret.get_secret_value().encode()):
        raise HookError(403, "forbidden", f"missing or wrong {SECRET_HEADER} header")


def _who(request: web.Request) -> tuple[str, str]:
    """``("account", <account number>)`` for ``?account=``, else ``("number", <E.164>)``."""
    account = request.query.get("account")
    if account is None or account == "":
        return "number", _number(request)
    if not ACCOUNT.fullmatch(account):
        raise HookError(400, "invalid_account", "account: letters, digits, _ . - (at most 64)")
    return "account", account


def _number(request: web.Request) -> str:
    raw = request.query.get("number")
    if raw is None or raw == "":
        raise HookError(400, "missing_number", "give ?number= (or ?account=)")
    if len(raw) > NUMBER_MAX:
        raise HookError(400, "invalid_number", f"number longer than {NUMBER_MAX} characters")
    phone = normalise_e164(raw)
    if phone is None:
        raise HookError(400, "invalid_number", "not a phone number (E.164, +CC... or 00CC...)")
    return phone


async def _find(request: web.Request, by: str, key: str) -> CustomerRecord | None:
    pool = request.app[HOOKS].pool
    if pool is None:
        raise HookError(503, "db_unavailable", "no database")
    try:
        async with asyncio.timeout(QUERY_TIMEOUT):
            if by == "account":
                return await find_by_account(pool, key)
            return await find_by_phone(pool, key)
    except TimeoutError:
        raise HookError(503, "db_timeout", f"the database did not answer within {QUERY_TIMEOUT:g}s") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("hooks.db_error", error=f"{type(exc).__name__}: {exc}")
        raise HookError(503, "db_unavailable", "the database is unavailable") from None


async def lookup(request: web.Request) -> web.Response:
    """``GET /hooks/lookup?number=`` (or ``?account=``): who is calling."""
    try:
        _authorise(request)
        by, key = _who(request)
        c = await _find(request, by, key)
    except HookError as exc:
        return _error(request, exc)
    if _wants_json(request):
        return web.json_response({by: key, "found": c is not None,
                                  "customer_id": c and c.customer_id, "name": c and c.name,
                                  "vip": bool(c and c.vip), "language": c and c.language})
    if c is None:
        return web.Response(text=_line("ok", "", 0, ""), content_type="text/plain")
    return web.Response(text=_line("ok", c.customer_id, int(c.vip), c.language), content_type="text/plain")


async def route(request: web.Request) -> web.Response:
    """``GET /hooks/route?number=[&queue=]`` (or ``?account=``): where this caller should go."""
    try:
        _authorise(request)
        by, key = _who(request)
        queue = request.query.get("queue", "support")
        if not _QUEUE.fullmatch(queue):
            raise HookError(400, "invalid_queue", "queue: letters, digits, _ . - (at most 64)")
        c = await _find(request, by, key)
    except HookError as exc:
        return _error(request, exc)
    priority = 0
    if c is not None and c.vip:
        queue, priority = VIP_QUEUE, VIP_PRIORITY
    language = c.language if c is not None else None
    if _wants_json(request):
        return web.json_response({"queue": queue, "priority": priority,
                                  "customer_id": c and c.customer_id, "language": language})
    return web.Response(text=_line("ok", queue, priority, c and c.customer_id, language),
                        content_type="text/plain")


def setup_hooks(app: web.Application, core: "CoreServices") -> None:
    """Register ``/hooks/lookup`` and ``/hooks/route`` and their share of ``core``'s pool
    (a ``cleanup_ctx`` after the core's database). Nothing when the ``hooks``
    setting is false. Raises ``ConfigError`` when ``hook_secret`` is unset."""
    settings = core.settings
    if not settings.hooks:
        log.info("hooks.disabled")
        return
    if settings.hook_secret is None or not settings.hook_secret.get_secret_value():
        raise ConfigError("hook_secret (CTI_HOOK_SECRET) is unset: the dialplan hooks do not run without it "
                          "(give the dialplan the same value in its CTI_HOOK_SECRET global), "
                          "or set hooks = false (CTI_HOOKS=false)")
    state = app[HOOKS] = HookState(core)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Its share of the daemon's pool (which keeps connections ready: a hook is on a
        # caller's time; no other feature can take the share); a database that is away
        # makes the queries answer 503.
        state.pool = core.db("hooks")
        try:
            yield
        finally:
            state.pool = None

    app.cleanup_ctx.append(ctx)
    app.router.add_get("/hooks/lookup", lookup)
    app.router.add_get("/hooks/route", route)
