"""Messaging's shell: the inbound webhook, agents' replies and their delivery, the web
callback form (docs/messaging.md).

- ``POST /api/messaging/inbound`` (public, signed): ``messaging.core`` checks the
  signature and the body; ``messaging.store`` stores the message once (by the
  provider's message id) in the conversation of its numbers, matched to the
  customer. A new conversation is handed to the ``NewConversation`` callable the
  composition root passes in (filing it as an ACD task); without one it waits
  (state 'waiting').
- ``POST /api/messaging/conversations/{id}/messages``: an agent's reply, stored
  'pending'; the sender (one task, while this node leads) POSTs it to
  ``messaging_outbound_url`` signed the same way, retrying until
  ``messaging_attempts`` tries failed; every try's outcome is stored.
- ``POST /api/callback-requests`` (public): the web form's request, checked by
  ``messaging.callback_form``, filed as an ACD callback (``AcdService.request_callback``).

Public routes are rate-limited per client address (``messaging.core.RateLimit``).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Protocol

import aiohttp
import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from acd import callbacks as cbs
from acd.core import AcdInputError
from acd.routing_shell import ACD
from api.auth import EVERYONE
from api.client_address import client_address, networks
from api.db import db, query
from api.errors import ApiError, ErrorDetail
from api.registry import ApiRequest, setup_registry
from api.static_files import StaticFiles
from api.webhook_service import deliver
from crm.customer_lookup import find_by_phone
from cti.config import Settings
from cti.daemon import CORE, run_with_app
from cti.ha import HA, run_while_leading
from messaging import callback_form as form
from messaging import core
from messaging import store

log = structlog.get_logger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "api" / "static" / "callback"
SEND_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class ConversationOpened:
    """A customer's first message of a new conversation."""

    conversation_id: int
    number: str               # the customer's, E.164
    our_number: str
    customer_id: str | None   # the customer owning the number, if any
    text: str
    queue: str                # where it should wait (messaging_queue)


class NewConversation(Protocol):
    """What becomes of a new conversation: returns a reference to the task it was
    filed as (the conversation is then 'queued'), or None (it stays 'waiting')."""

    def __call__(self, opened: ConversationOpened) -> Awaitable[str | None]: ...


async def keep_waiting(opened: ConversationOpened) -> str | None:
    """The default: no task is filed; the conversation waits for an agent to pick it."""
    return None


def file_as_task(file_task: Callable[[str, str, str, str, str], Awaitable[str]]) -> NewConversation:
    """A new conversation filed as a ``message`` task of its queue through ``file_task``
    (``omni.service.OmniService.file_task``): the customer (or the number when unknown),
    the first words as the subject, the conversation as the reference. A queue that is no
    message queue of the ACD raises there, and the conversation stays 'waiting'."""
    async def filer(opened: ConversationOpened) -> str | None:
        return await file_task("message", opened.queue, opened.customer_id or opened.number,
                               " ".join(opened.text.split())[:80], f"conversation-{opened.conversation_id}")
    return filer


class ConversationTasks(Protocol):
    """A conversation and its ACD task kept in step (``omni.links.MessageTasks``): taking
    (answering a waiting one) takes the task, closing closes it; ``mine``: the
    conversations of an agent's open tasks."""

    def taken(self, conversation_id: int, who: str, *, steal: bool = True) -> None: ...

    def closed(self, conversation_id: int) -> None: ...

    def mine(self, agent_id: str) -> list[int]: ...


class NoTasks:
    """No ACD tasks: conversations alone (nobody has any of their own)."""

    def taken(self, conversation_id: int, who: str, *, steal: bool = True) -> None:
        return None

    def closed(self, conversation_id: int) -> None:
        return None

    def mine(self, agent_id: str) -> list[int]:
        return []


# -- the API's models ------------------------------------------------------------------------


class InboundReply(BaseModel):
    conversation_id: int
    message_id: int | None = Field(description="null: this message id was stored before (a replay)")
    stored: bool
    new_conversation: bool


class ReplyBody(BaseModel):
    text: str = Field(min_length=1, max_length=core.TEXT_MAX)


class ReplyQueued(BaseModel):
    message_id: int
    delivery: str


class MessageView(BaseModel):
    message_id: int
    direction: Literal["in", "out"]
    text: str
    sent_at: datetime
    author: str | None
    delivery: str | None
    attempts: int
    last_error: str | None


class ConversationView(BaseModel):
    conversation_id: int
    number: str
    our_number: str
    customer_id: str | None
    state: str
    task_ref: str | None
    opened_at: datetime
    last_at: datetime


class ConversationDetail(ConversationView):
    messages: list[MessageView]


class ConversationList(BaseModel):
    conversations: list[ConversationView]


class ConversationsQuery(BaseModel):
    state: Literal["waiting", "queued", "open", "closed"] | None = None
    mine: bool = Field(False, description="only the conversations of my open message tasks")
    limit: int = Field(50, ge=1, le=500)


class CallbackFiled(BaseModel):
    reference: str
    queue: str
    number: str = Field(description="the number we will call, E.164")
    not_before: datetime | None = Field(description="not called before this time (the preferred time)")


# -- the service -------------------------------------------------------------------------------


class MessagingService:
    """The inbound handler's settings and hook, the public routes' rate limits, and the
    reply sender (``start``/``stop``: one task)."""

    def __init__(self, app: web.Application, settings: Settings, on_new: NewConversation = keep_waiting) -> None:
        self.app = app
        self.settings = settings
        self.on_new = on_new
        self.tasks: ConversationTasks = NoTasks()     # their ACD tasks (omni.links.MessageTasks in the daemon)
        self.inbound_limit = core.RateLimit(rate=20.0, burst=200)
        self.form_limit = core.RateLimit(rate=1 / 120, burst=3)     # per address: 3, then one per 2 min
        self.form_total = core.RateLimit(rate=1.0, burst=60)        # all addresses together
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.replays = 0

    @property
    def queue(self) -> str:
        return self.settings.messaging_queue or self.settings.acd_default_queue

    def client(self, request: web.Request) -> str:
        return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                              networks(self.settings.http_trusted_proxies))

    def throttle(self, limit: core.RateLimit, key: str) -> None:
        wait = limit.take(key, time.monotonic())
        if wait > 0:
            raise ApiError(429, "too_many_requests", f"too many requests: try again in {wait:.0f} s",
                           headers={"Retry-After": str(max(1, round(wait)))})

    # -- inbound ---------------------------------------------------------------------------

    async def inbound(self, request: web.Request) -> InboundReply:
        self.throttle(self.inbound_limit, self.client(request))
        secret = self.settings.messaging_secret
        if secret is None:
            raise ApiError(404, "not_enabled", "messaging is not enabled here (messaging_secret)")
        if request.content_type != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json",
                           headers={"Accept": "application/json"})
        if request.content_length is not None and request.content_length > core.BODY_MAX:
            raise ApiError(413, "payload_too_large", f"the body may hold at most {core.BODY_MAX} bytes")
        raw = await request.read()
        if len(raw) > core.BODY_MAX:
            raise ApiError(413, "payload_too_large", f"the body may hold at most {core.BODY_MAX} bytes")
        try:
            core.verify(secret.get_secret_value(), request.headers, raw, time.time())
            msg = core.parse_inbound(raw, self.settings.messaging_region)
        except core.Refused as exc:
            log.warning("inbound message refused", reason=exc.error_id, client=self.client(request))
            raise ApiError(exc.status, exc.error_id, exc.message) from None
        pool = db(self.app)
        stored = await query(store.store_inbound(pool, msg))
        if stored.message_id is None:
            self.replays += 1
            log.info("inbound message already stored", conversation=stored.conversation_id)
        elif stored.new_conversation:
            await self._opened(pool, ConversationOpened(stored.conversation_id, msg.number, msg.our_number,
                                                        stored.customer_id, msg.text, self.queue))
        return InboundReply(conversation_id=stored.conversation_id, message_id=stored.message_id,
                            stored=stored.message_id is not None, new_conversation=stored.new_conversation)

    async def _opened(self, pool: Any, opened: ConversationOpened) -> None:
        try:
            ref = await self.on_new(opened)
        except Exception:   # the message is stored: the conversation waits rather than being lost
            log.exception("new conversation not filed: it waits", conversation=opened.conversation_id)
            ref = None
        if ref is not None:
            await query(store.set_state(pool, opened.conversation_id, "queued", ref))
        log.info("conversation opened", conversation=opened.conversation_id, customer=opened.customer_id,
                 task=ref)

    # -- outbound --------------------------------------------------------------------------

    async def reply(self, conversation_id: int, text: str, author: str) -> ReplyQueued:
        if not self.settings.messaging_outbound_url or self.settings.messaging_secret is None:
            raise ApiError(404, "not_enabled", "replies are not enabled here (messaging_outbound_url, "
                                               "messaging_secret)")
        pool = db(self.app)
        conv = await query(store.conversation(pool, conversation_id))
        if conv is None:
            raise ApiError(404, "not_found", f"no conversation {conversation_id}")
        if conv["state"] == "closed":
            raise ApiError(409, "conversation_closed", f"conversation {conversation_id} is closed")
        message_id = await query(store.add_reply(pool, conversation_id, text, author, time.time()))
        self._wake.set()
        return ReplyQueued(message_id=message_id, delivery=core.PENDING)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10), trust_env=False, auto_decompress=False,
            headers={"User-Agent": "open-cti-messaging", "Accept-Encoding": "identity"})
        self._task = asyncio.create_task(self._run(), name="messaging-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due(time.time())
            except (ApiError, OSError, asyncio.TimeoutError) as exc:
                log.warning("replies not sent yet", error=str(exc))
            except Exception:
                log.exception("reply sender failed; trying again")
            self._wake.clear()
            try:
                async with asyncio.timeout(SEND_EVERY_S):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def send_due(self, now: float) -> int:
        """Try every pending reply whose time has come; returns how many were tried."""
        url, secret = self.settings.messaging_outbound_url, self.settings.messaging_secret
        if not url or secret is None or self._session is None:
            return 0
        pool = db(self.app)
        tried = 0
        for row in await query(store.pending(pool)):
            due = row["next_attempt_at"]
            if due is not None and due.timestamp() > now:
                continue
            raw = core.outbound_body(row["message_id"], row["conversation_id"], row["number"], row["our_number"],
                                     row["body"], row["sent_at"].timestamp())
            headers = core.signed_headers(secret.get_secret_value(), int(time.time()), raw)
            status, failure, _ = await deliver(self._session, url, raw, headers)
            d = core.after_attempt(row["attempts"], status, failure, time.time(),
                                   max_attempts=self.settings.messaging_attempts,
                                   retry_s=self.settings.messaging_retry_s)
            await query(store.save_delivery(pool, row["message_id"], d))
            tried += 1
            if d.state == core.SENT:
                self.sent += 1
            elif d.state == core.FAILED:
                self.failed += 1
                log.warning("reply not delivered: gave up", message=row["message_id"], error=d.error,
                            attempts=d.attempts)
        return tried

    # -- the web callback form ----------------------------------------------------------------

    async def callback_request(self, request: web.Request, body: form.CallbackFormBody) -> CallbackFiled:
        queue = self.settings.callback_form_queue
        if queue is None:
            raise ApiError(404, "not_enabled", "the web callback form is not enabled here (callback_form_queue)")
        address = self.client(request)
        self.throttle(self.form_limit, address)
        self.throttle(self.form_total, "*")
        try:
            wanted = form.plan(body, time.time(), region=self.settings.messaging_region,
                               countries=self.settings.callback_form_countries)
        except form.FormError as exc:
            raise ApiError(422, "invalid_body", str(exc), [ErrorDetail(field=f"body.{exc.field}",
                                                                       message=exc.message, type="invalid")])
        if wanted.bot:   # answered like any other, so the bot learns nothing; nothing filed
            log.info("web callback request dropped: honeypot filled", client=address)
            return CallbackFiled(reference=wanted.callback_id, queue=queue, number=body.number[:32],
                                 not_before=None)
        acd = self.app.get(ACD)
        if acd is None:
            raise ApiError(503, "unavailable", "callbacks are not taken here now (no ACD)")
        if any(w.callback is not None and w.callback.number == wanted.number and w.callback.status in cbs.OPEN
               for w in acd.calls.values()):
            raise ApiError(409, "already_requested", "a callback to this number is already waiting")
        customer_id = None
        try:   # for the agent's screen-pop; a database that is away does not stop the request
            found = await query(find_by_phone(db(self.app), wanted.number))
            customer_id = found.customer_id if found is not None else None
        except (ApiError, OSError, asyncpg.PostgresError) as exc:
            log.warning("web callback request: customer not looked up", error=str(exc))
        try:
            try:
                cb = acd.request_callback(wanted.callback_id, wanted.number, queue, not_before=wanted.not_before,
                                          customer_id=customer_id)
            except cbs.CallbackError:
                if customer_id is None:
                    raise
                # A customer id the callback table cannot carry: file it without, rather than not at all.
                cb = acd.request_callback(wanted.callback_id, wanted.number, queue, not_before=wanted.not_before)
        except (cbs.CallbackError, AcdInputError) as exc:
            log.error("web callback request not filed", error=str(exc))
            raise ApiError(503, "unavailable", "the callback could not be filed; please call us") from None
        try:   # the ACD has it (and saves it); the name is a courtesy: a failure here loses no callback
            await query(store.save_web_callback(db(self.app), cb.callback_id, wanted.name, cb.number,
                                                cb.customer_id, cb.not_before))
        except (ApiError, OSError, asyncpg.PostgresError) as exc:
            log.warning("web callback request: name not stored", callback=cb.callback_id, error=str(exc))
        log.info("web callback requested", callback=cb.callback_id, queue=cb.queue)
        return CallbackFiled(reference=cb.callback_id, queue=cb.queue, number=cb.number,
                             not_before=None if cb.not_before is None else datetime.fromtimestamp(cb.not_before)
                             .astimezone())


MESSAGING = web.AppKey("messaging", MessagingService)


def _service(req: ApiRequest[Any, Any]) -> MessagingService:
    return req.app[MESSAGING]


async def inbound_message(req: ApiRequest[None, None]) -> InboundReply:
    return await _service(req).inbound(req.request)


async def list_conversations(req: ApiRequest[None, ConversationsQuery]) -> ConversationList:
    q = req.query
    if q.mine:
        agent = req.principal.agent_id if req.principal is not None else None
        ids = _service(req).tasks.mine(agent) if agent else []
        rows = await query(store.conversations_of(db(req.app), ids, q.limit)) if ids else []
        rows = [r for r in rows if q.state is None or r["state"] == q.state]
    else:
        rows = await query(store.conversations(db(req.app), q.state, q.limit))
    return ConversationList(conversations=[ConversationView(**dict(r)) for r in rows])


def _conversation_id(req: ApiRequest[Any, Any]) -> int:
    value = int(req.match_info["conversation_id"])
    if value > 2 ** 63 - 1:
        raise ApiError(404, "not_found", "no such conversation")
    return value


async def get_conversation(req: ApiRequest[None, None]) -> ConversationDetail:
    cid = _conversation_id(req)
    pool = db(req.app)
    conv = await query(store.conversation(pool, cid))
    if conv is None:
        raise ApiError(404, "not_found", f"no conversation {cid}")
    msgs = await query(store.messages(pool, cid))
    return ConversationDetail(**dict(conv), messages=[
        MessageView(text=m["body"], **{k: m[k] for k in ("message_id", "direction", "sent_at", "author", "delivery",
                                                         "attempts", "last_error")}) for m in msgs])


async def post_reply(req: ApiRequest[ReplyBody, None]) -> ReplyQueued:
    assert req.principal is not None
    cid = _conversation_id(req)
    queued = await _service(req).reply(cid, req.body.text, req.principal.name)
    # Answering a conversation takes its task while it waits (never one another agent holds).
    _service(req).tasks.taken(cid, req.principal.agent_id or req.principal.name, steal=False)
    return queued


async def close_conversation(req: ApiRequest[None, None]) -> None:
    cid = _conversation_id(req)
    pool = db(req.app)
    if await query(store.conversation(pool, cid)) is None:
        raise ApiError(404, "not_found", f"no conversation {cid}")
    await query(store.set_state(pool, cid, "closed"))
    _service(req).tasks.closed(cid)

async def callback_request(req: ApiRequest[form.CallbackFormBody, None]) -> CallbackFiled:
    return await _service(req).callback_request(req.request, req.body)


def setup_messaging(app: web.Application, on_new: NewConversation = keep_waiting) -> MessagingService:
    """The messaging routes, the callback form and the reply sender. After ``setup_auth``
    (its pool) and ``setup_acd`` (the callback form files into the ACD)."""
    settings = app[CORE].settings
    service = app[MESSAGING] = MessagingService(app, settings, on_new)
    ha = app.get(HA)
    if ha is None:
        run_with_app(app, service)
    else:   # in an HA pair only the leader sends replies: one delivery per reply
        async def lead(epoch: int) -> None:
            await service.start()

        run_while_leading(app, ha, lead, service.stop)
    api = setup_registry(app)
    tags = ("messaging",)
    route = api.add("POST", "/api/messaging/inbound", inbound_message, summary="A message from a customer "
                    "(the provider's webhook)", roles=None, response=InboundReply, tags=tags,
                    body_max=core.BODY_MAX,
                    description="Signed: X-CTI-Timestamp: <epoch seconds> and X-CTI-Signature: sha256=<hex "
                                "HMAC-SHA256(messaging_secret, timestamp + '.' + body)>; refused (401) more than "
                                "5 minutes off. A message id stored before stores nothing (200, stored false). "
                                "docs/messaging.md.")
    # The handler reads the raw body itself (the signature covers its bytes, checked before
    # it is parsed); the record documents the shape it takes.
    api.routes[api.routes.index(route)] = replace(route, body=core.InboundBody)
    api.add("GET", "/api/messaging/conversations", list_conversations, summary="Messaging conversations, latest "
            "first", roles=EVERYONE, query=ConversationsQuery, response=ConversationList, tags=tags)
    api.add("GET", "/api/messaging/conversations/{conversation_id:[0-9]+}", get_conversation,
            summary="A conversation and its messages", roles=EVERYONE, response=ConversationDetail, tags=tags)
    api.add("POST", "/api/messaging/conversations/{conversation_id:[0-9]+}/messages", post_reply,
            summary="Reply to the customer", description="Stored, then POSTed to messaging_outbound_url signed "
            "like the inbound webhook, tried again until messaging_attempts tries failed; the message's "
            "delivery says where it is.", roles=EVERYONE, body=ReplyBody, response=ReplyQueued, status=202,
            tags=tags)
    api.add("POST", "/api/messaging/conversations/{conversation_id:[0-9]+}/close", close_conversation,
            summary="Close a conversation (the customer's next message opens a new one)", roles=EVERYONE,
            status=204, tags=tags)
    api.add("POST", "/api/callback-requests", callback_request, summary="The web callback form: call me back",
            description="Public, rate-limited. Files an ACD callback in callback_form_queue (docs/messaging.md).",
            roles=None, body=form.CallbackFormBody, body_max=form.BODY_MAX, response=CallbackFiled, status=202,
            tags=("callback",))
    files = StaticFiles(STATIC)
    app.router.add_get("/callback/", files.handler("index.html"))
    app.router.add_get("/callback/{path:.+}", files.handler(key="path"))
    api.document("GET", "/callback/", summary="The web callback form (static)", roles=None,
                 operation_id="callback_page", content_type="text/html", tags=("callback",))
    return service
