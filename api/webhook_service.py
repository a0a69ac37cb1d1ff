"""Webhooks' shell: subscriptions in PostgreSQL, one delivery worker per subscription.

A bus subscriber puts each call event that an active subscription wants into
that subscription's bounded queue (``QUEUE_MAX``; when it is full the event is
logged as ``dropped`` rather than growing without end or slowing the bus). The
worker posts events in order, signed (``api.webhooks``), each attempt bounded
by ``POST_TIMEOUT``; a failure is retried after the backoff, up to
``MAX_ATTEMPTS``, then logged as ``gave_up`` and the next event goes. Every
attempt lands in ``webhook_deliveries``.

Routes (admins): ``POST /api/webhooks`` (the secret is in the answer, once),
``GET /api/webhooks``, ``DELETE /api/webhooks/{id}``,
``GET /api/webhooks/{id}/deliveries``.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import webhooks as core
from api.auth import ADMIN
from api.desk import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from cti.daemon import CORE, run_with_app
from cti.events import CallEvent

log = structlog.get_logger(__name__)

QUEUE_MAX = 1000
POST_TIMEOUT = 5.0
LOG_TIMEOUT = 2.0


@dataclass(eq=False)
class Subscription:
    id: int
    url: str
    secret: str
    events: tuple[str, ...]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    task: asyncio.Task[None] | None = None


class WebhookService:
    def __init__(self, app: web.Application, *, backoff: Any = core.backoff, max_attempts: int = core.MAX_ATTEMPTS,
                 clock: Any = time.time) -> None:
        self.app = app
        self.subs: dict[int, Subscription] = {}
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.clock = clock
        self.session: aiohttp.ClientSession | None = None
        self.delivered = self.failed = self.dropped = 0
        self._unsubscribe: Any = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT),
                                             headers={"User-Agent": "open-cti-webhooks"})
        self._unsubscribe = self.app[CORE].bus.subscribe(self.on_call_event)
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
                asyncio.get_running_loop().create_task(
                    self._log(s.id, body, 0 + 1, "dropped", None, "the subscription's queue is full", None))

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
                asyncio.get_running_loop().create_task(
                    self._log(s.id, body, 1, "dropped", None, "the subscription's queue is full", None))
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
        started = time.monotonic()
        headers = {"Content-Type": "application/json", "X-Cti-Event": body["type"], "X-Cti-Delivery": body["id"],
                   core.SIGNATURE_HEADER: core.sign(s.secret, int(self.clock()), raw)}
        try:
            async with self.session.post(s.url, data=raw, headers=headers, allow_redirects=False) as r:
                await r.read()
                return r.status, None if r.status < 300 else f"HTTP {r.status}", _ms(started)
        except asyncio.TimeoutError:
            return None, f"no answer within {POST_TIMEOUT:g}s", _ms(started)
        except aiohttp.ClientError as exc:
            return None, type(exc).__name__, _ms(started)

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


WEBHOOKS = web.AppKey("webhooks", WebhookService)


# -- routes ------------------------------------------------------------------------

class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$")
    events: list[str] = Field(min_length=1, max_length=50,
                              description="kinds (call.ended, ticket.dispatched), families (call.*) or *")
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


def setup_webhooks(app: web.Application, **options: Any) -> None:
    """Webhook routes and delivery workers (after ``setup_auth``: they use its pool)."""
    api = setup_registry(app)
    service = app[WEBHOOKS] = WebhookService(app, **options)

    run_with_app(app, service)
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
