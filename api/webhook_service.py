"""Webhooks' shell: subscriptions in PostgreSQL, one delivery worker per subscription.

A bus subscriber puts each call event that an active subscription wants into
that subscription's bounded queue (``QUEUE_MAX``; when it is full the event is
logged as ``dropped`` rather than growing without end or slowing the bus). The
worker posts events in order, signed (``api.webhooks``), each attempt bounded
by ``POST_TIMEOUT``; a failure is retried after the backoff, up to
``MAX_ATTEMPTS``, then logged as ``gave_up`` and the next event goes. Every
attempt lands in ``webhook_deliveries`` with a short code for a failure
(``api.webhooks.failure_code``), never an exception's text.

The delivery client (``make_session``) checks every address it is about to
connect to with ``api.webhooks.address_allowed`` (its socket factory sees the
address after DNS, on every new connection, literal addresses included), asks
for ``Accept-Encoding: identity``, never decompresses, and reads at most
``RESPONSE_MAX`` bytes of an answer before it drops the connection.

Routes (admins): ``POST /api/webhooks`` (the secret is in the answer, once),
``GET /api/webhooks``, ``DELETE /api/webhooks/{id}``,
``GET /api/webhooks/{id}/deliveries``.
"""
from __future__ import annotations

import asyncio
import errno
import secrets
import socket
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import webhooks as core
from api.auth import ADMIN
from api.db import db, query
from api.errors import ApiError, ErrorDetail
from api.registry import ApiRequest, setup_registry
from cti.daemon import CoreServices, run_with_app
from cti.ha import HaNode, run_while_leading
from cti.events import CallEvent

log = structlog.get_logger(__name__)

QUEUE_MAX = 1000
POST_TIMEOUT = 5.0
LOG_TIMEOUT = 2.0
RESPONSE_MAX = 4096        # bytes of an answer read at most (the status is what counts)


@dataclass(eq=False)
class Subscription:
    id: int
    url: str
    secret: str
    events: tuple[str, ...]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    task: asyncio.Task[None] | None = None


class WebhookService:
    """Delivers the call events of ``daemon``'s bus to the subscriptions (``app[WEBHOOKS]``)."""

    def __init__(self, app: web.Application, daemon: CoreServices, *, backoff: Any = core.backoff,
                 max_attempts: int = core.MAX_ATTEMPTS, clock: Any = time.time) -> None:
        self.app = app
        self.daemon = daemon
        self.subs: dict[int, Subscription] = {}
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.clock = clock
        self.session: aiohttp.ClientSession | None = None
        self.delivered = self.failed = self.dropped = 0
        self._unsubscribe: Any = None

    def allow(self) -> Any:
        """Where deliveries may go (``webhook_allow``), as the settings say now."""
        return core.parse_allow(self.daemon.settings.webhook_allow)

    async def start(self) -> None:
        self.session = make_session(self.allow())
        self._unsubscribe = self.daemon.bus.subscribe(self.on_call_event)
        try:
            await self.reload()
        except Exception as exc:   # the database is away: no hooks until the next change or restart
            log.warning("webhooks not loaded", error=type(exc).__name__)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for s in list(self.subs.values()):
            self._stop_sub(s)
        await asyncio.gather(*(s.task for s in self.subs.values() if s.task), return_exceptions=True)
        self.subs.clear()
        if self.session is not None:
            await self.session.close()

    def _stop_sub(self, s: Subscription) -> None:
        if s.task is not None:
            s.task.cancel()

    async def reload(self) -> None:
        """Read the active subscriptions; start and stop workers to match."""
        async with asyncio.timeout(LOG_TIMEOUT):
            rows = await db(self.app).fetch("SELECT subscription_id, url, secret, events FROM webhook_subscriptions"
                                            " WHERE active")
        seen = set()
        for r in rows:
            sid = r["subscription_id"]
            seen.add(sid)
            if sid not in self.subs:
                s = Subscription(sid, r["url"], r["secret"], tuple(r["events"]))
                s.task = asyncio.create_task(self._worker(s), name=f"webhook-{sid}")
                self.subs[sid] = s
        for sid in [sid for sid in self.subs if sid not in seen]:
            self._stop_sub(self.subs.pop(sid))

    def on_call_event(self, ev: CallEvent) -> None:
        if ev.kind == "call.state":
            return
        body = None
        for s in self.subs.values():
            if not core.wants(s.events, ev.kind):
                continue
            body = body or core.payload(ev.kind, ev.call_id, ev.seq, ev.at, ev.call, ev.data)
            try:
                s.queue.put_nowait(body)
            except asyncio.QueueFull:
                self.dropped += 1
                asyncio.get_running_loop().create_task(self._log(s.id, body, 1, "dropped", None, "queue_full", None))

    def publish(self, kind: str, body: dict[str, Any]) -> int:
        """Queue an event that is not a call event (``ticket.dispatched``) for every
        active subscription that wants ``kind``. ``body`` needs ``id`` and ``type``.
        Returns how many subscriptions took it (a full queue counts as dropped and is logged)."""
        taken = 0
        for s in self.subs.values():
            if not core.wants(s.events, kind):
                continue
            try:
                s.queue.put_nowait(body)
                taken += 1
            except asyncio.QueueFull:
                self.dropped += 1
                asyncio.get_running_loop().create_task(self._log(s.id, body, 1, "dropped", None, "queue_full", None))
        return taken

    async def _worker(self, s: Subscription) -> None:
        while True:
            body = await s.queue.get()
            raw = core.encode(body)
            for attempt in range(1, self.max_attempts + 1):
                status, error, ms = await self._post(s, body, raw)
                result = core.outcome(status)
                last = attempt == self.max_attempts
                if result == "failed" and last:
                    result = "gave_up"
                await self._log(s.id, body, attempt, result, status, error, ms)
                if result == "delivered":
                    self.delivered += 1
                    break
                if result == "gave_up":
                    self.failed += 1
                    log.warning("webhook gave up", subscription=s.id, event=body["id"], attempts=attempt)
                    break
                await asyncio.sleep(self.backoff(attempt))

    async def _post(self, s: Subscription, body: dict[str, Any], raw: bytes) -> tuple[int | None, str | None, int]:
        assert self.session is not None
        headers = {"Content-Type": "application/json", "X-Cti-Event": body["type"], "X-Cti-Delivery": body["id"],
                   core.SIGNATURE_HEADER: core.sign(s.secret, int(self.clock()), raw)}
        return await deliver(self.session, s.url, raw, headers)

    async def _log(self, sid: int, body: dict[str, Any], attempt: int, outcome: str, status: int | None,
                   error: str | None, ms: int | None) -> None:
        try:
            async with asyncio.timeout(LOG_TIMEOUT):
                await db(self.app).execute(
                    """INSERT INTO webhook_deliveries (subscription_id, event_id, kind, call_id, attempt, outcome,
                                                       http_status, error, duration_ms)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                    sid, body["id"], body["type"], body.get("call_id"), attempt, outcome, status, error, ms)
        except Exception as exc:   # the log is best effort; the delivery itself happened or not
            log.warning("webhook delivery not logged", subscription=sid, error=type(exc).__name__)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# -- the delivery client ---------------------------------------------------------------

# The addresses the socket factory refused during the current delivery attempt: set
# by ``deliver`` in its task; connection attempts (happy eyeballs runs them in tasks
# of their own) inherit the same list.
_refused: ContextVar[list[str] | None] = ContextVar("webhook_refused", default=None)


class AddressRefused(OSError):
    """The delivery's policy refuses this address (``api.webhooks.address_allowed``)."""


def guarded_socket_factory(allow: Any) -> Any:
    """A socket factory for ``aiohttp.TCPConnector`` that refuses to create a socket
    for an address ``api.webhooks.address_allowed`` refuses. It is called with the
    address about to be connected to, after any DNS answer, for every connection."""
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not core.address_allowed(str(sockaddr[0]), allow):
            seen = _refused.get()
            if seen is not None:
                seen.append(str(sockaddr[0]))
            raise AddressRefused(errno.EACCES, "refused_address")
        return socket.socket(family, type_, proto)
    return factory


def make_session(allow: Any = (), *, resolver: Any = None) -> aiohttp.ClientSession:
    """The webhook client: every connection's address checked against ``allow``
    (``api.webhooks.address_allowed``), no decompression, ``Accept-Encoding: identity``,
    a short read buffer, no proxy from the environment. ``resolver``: an aiohttp
    resolver (tests give one that answers what they want)."""
    connector = aiohttp.TCPConnector(socket_factory=guarded_socket_factory(allow), resolver=resolver,
                                     limit=100, limit_per_host=10)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT),
                                 auto_decompress=False, read_bufsize=RESPONSE_MAX, trust_env=False,
                                 headers={"User-Agent": "open-cti-webhooks", "Accept-Encoding": "identity"})


async def deliver(session: aiohttp.ClientSession, url: str, raw: bytes,
                  headers: dict[str, str]) -> tuple[int | None, str | None, int]:
    """POST ``raw`` to ``url``. Returns (HTTP status or None, the failure code for the
    log or None, milliseconds). Reads at most ``RESPONSE_MAX`` bytes of the answer;
    never raises for anything the network or the receiver does."""
    started = time.monotonic()
    refused: list[str] = []
    token = _refused.set(refused)
    failure: core.Failure
    try:
        async with session.post(url, data=raw, headers=headers, allow_redirects=False) as r:
            status = r.status
            try:
                await _read_some(r)
            except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
                pass            # the status line came: that is the answer
            return status, core.failure_code(status, None), _ms(started)
    except asyncio.TimeoutError:
        failure = "timeout"
    except (aiohttp.ClientError, OSError, ValueError):
        failure = "refused_address" if refused else "connect_failed"
    finally:
        _refused.reset(token)
    return None, core.failure_code(None, failure), _ms(started)


async def _read_some(r: aiohttp.ClientResponse) -> None:
    """Read at most ``RESPONSE_MAX`` bytes of the body; if there is more, drop the
    connection rather than read on."""
    got = 0
    while got < RESPONSE_MAX:
        chunk = await r.content.read(RESPONSE_MAX - got)
        if not chunk:
            return
        got += len(chunk)
    if not r.content.at_eof():
        r.close()


WEBHOOKS = web.AppKey("webhooks", WebhookService)


# -- routes ------------------------------------------------------------------------

class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$",
                     description="http(s) URL; loopback, link-local, private and reserved addresses are refused "
                                 "(here when literal, at each connection after DNS) unless CTI_WEBHOOK_ALLOW holds them")
    events: list[str] = Field(min_length=1, max_length=50,
                              description="kinds (call.ended, ticket.dispatched), families (call.*) or *; "
                                          "a kind the daemon does not deliver is refused")
    description: str = Field("", max_length=200)

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not core.valid_pattern(e)]
        if bad:
            raise ValueError(f"not an event kind or pattern: {bad[0][:40]!r} (e.g. call.ended, call.*, *)")
        return v


class SubscriptionView(BaseModel):
    subscription_id: int
    url: str
    events: list[str]
    description: str
    active: bool
    created_by: str
    created_at: datetime


class SubscriptionCreated(SubscriptionView):
    secret: str = Field(description="signs every payload (X-Cti-Signature); shown only here")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionView]


class Delivery(BaseModel):
    delivery_id: int
    event_id: str
    kind: str
    call_id: str | None
    attempt: int
    at: datetime
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int | None


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(100, ge=1, le=1000)


_COLS = "subscription_id, url, events, description, active, created_by, created_at"


def _sid(req: ApiRequest[Any, Any]) -> int:
    text = req.match_info["subscription_id"]
    # ASCII digits that fit PostgreSQL's bigint (int() would take "٣" or 30 digits).
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(404, "not_found", "no such subscription")
    return int(text)


async def create_subscription(req: ApiRequest[SubscriptionBody, None]) -> SubscriptionCreated:
    secret = "whsec_" + secrets.token_urlsafe(32)
    b = req.body
    problem = core.target_problem(b.url, req.app[WEBHOOKS].allow())
    if problem is not None:
        raise ApiError(422, "invalid_body", f"url {problem}",
                       [ErrorDetail(field="body.url", message=f"url {problem}", type="value_error")])
    row = await query(db(req.app).fetchrow(
        f"""INSERT INTO webhook_subscriptions (url, secret, events, description, created_by)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_COLS}""",
        b.url, secret, b.events, b.description, req.principal.name if req.principal else "?"))
    await req.app[WEBHOOKS].reload()
    return SubscriptionCreated(**dict(row), secret=secret)


async def list_subscriptions(req: ApiRequest[None, None]) -> SubscriptionList:
    rows = await query(db(req.app).fetch(f"SELECT {_COLS} FROM webhook_subscriptions ORDER BY subscription_id"))
    return SubscriptionList(subscriptions=[SubscriptionView(**dict(r)) for r in rows])


async def delete_subscription(req: ApiRequest[None, None]) -> None:
    done = await query(db(req.app).execute("UPDATE webhook_subscriptions SET active = false"
                                           " WHERE subscription_id = $1 AND active", _sid(req)))
    if done.endswith(" 0"):
        raise ApiError(404, "not_found", "no such active subscription")
    await req.app[WEBHOOKS].reload()


async def list_deliveries(req: ApiRequest[None, DeliveryQuery]) -> DeliveryList:
    rows = await query(db(req.app).fetch(
        """SELECT delivery_id, event_id, kind, call_id, attempt, at, outcome, http_status, error, duration_ms
             FROM webhook_deliveries WHERE subscription_id = $1 ORDER BY delivery_id DESC LIMIT $2""",
        _sid(req), req.query.limit))
    return DeliveryList(deliveries=[Delivery(**dict(r)) for r in rows])


def setup_webhooks(app: web.Application, daemon: CoreServices, ha: HaNode | None = None, **options: Any) -> None:
    """Webhook routes and delivery workers for ``daemon``'s call events (after ``setup_auth``:
    they use its pool); with ``ha``, only while this node leads."""
    api = setup_registry(app)
    service = app[WEBHOOKS] = WebhookService(app, daemon, **options)

    if ha is None:
        run_with_app(app, service)
    else:   # in an HA pair only the leader delivers (docs/ha.md): one delivery per event
        async def lead(epoch: int) -> None:
            await service.start()

        run_while_leading(app, ha, lead, service.stop)
    tags = ("webhooks",)
    api.add("POST", "/api/webhooks", create_subscription, summary="Subscribe a URL to call events",
            description="Payloads are signed: X-Cti-Signature: t=<epoch>,v1=<HMAC-SHA256(secret, t + '.' + body)>. "
                        "The secret is in this answer only.",
            roles=ADMIN, body=SubscriptionBody, response=SubscriptionCreated, status=201, tags=tags)
    api.add("GET", "/api/webhooks", list_subscriptions, summary="Webhook subscriptions", roles=ADMIN,
            response=SubscriptionList, tags=tags)
    api.add("DELETE", "/api/webhooks/{subscription_id}", delete_subscription, summary="End a subscription",
            roles=ADMIN, status=204, tags=tags)
    api.add("GET", "/api/webhooks/{subscription_id}/deliveries", list_deliveries,
            summary="A subscription's delivery log, newest first", roles=ADMIN, query=DeliveryQuery,
            response=DeliveryList, tags=tags)
