"""The mail channel over the API (docs/mail.md, "API"; docs/api.md).

Routes::

    GET  /api/mail/threads                       threads by state (waiting first), or mine
    GET  /api/mail/threads/{id}                  one thread: its messages, HTML sanitised
    POST /api/mail/threads/{id}/take             assign it to me
    POST /api/mail/threads/{id}/reply            answer it by e-mail (In-Reply-To/References kept)
    POST /api/mail/threads/{id}/close            close it (a new mail from the customer reopens it)
    GET  /api/mail/attachments/{id}              an attachment's bytes, always as a download
    GET  /api/customers/{id}/emails              a customer's e-mail addresses (threads find them by From)
    POST /api/customers/{id}/emails              give a customer an address (moves it from another)

Agents, supervisors and admins. An agent cannot take or answer a thread another agent
holds (409 ``taken``); supervisors and admins can (a reassignment).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import STAFF
from api.crm_common import CRM_ROLES, StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from crm.customer_model import InvalidCustomer
from crm.customer_store import add_email, customer_emails
from mail import store
from mail.service import MailService, SendFailed

log = structlog.get_logger(__name__)

MAIL = web.AppKey("mail", MailService)
TAGS = ("mail",)
_STATUS = {"not_found": 404, "taken": 409, "closed": 409, "no_address": 409, "not_configured": 503}


class ThreadQuery(StrictBody):
    state: Literal["new", "waiting", "assigned", "closed", "open"] = Field(
        "open", description="open: new, waiting and assigned")
    mine: bool = Field(False, description="only threads assigned to me")
    limit: int = Field(100, ge=1, le=500)


class ThreadSummary(BaseModel):
    thread_id: int
    subject: str = Field(description="as the customer wrote it (show it as text)")
    customer_id: str | None
    ticket_id: int | None
    address: str
    queue: str
    state: str
    assigned_to: str | None
    created_at: datetime
    updated_at: datetime
    last_inbound_at: datetime | None
    messages: int


class ThreadList(BaseModel):
    threads: list[ThreadSummary]


class AttachmentInfo(BaseModel):
    attachment_id: int
    filename: str | None = Field(description="as the sender named it (show it as text)")
    content_type: str
    size: int


class MessageView(BaseModel):
    message_pk: int
    direction: Literal["in", "out"]
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    from_addr: str
    from_name: str | None
    to_addrs: list[str]
    subject: str
    sent_at: datetime | None
    received_at: datetime
    text: str | None = Field(description="the text/plain body: show it as text; preferred when present")
    html: str | None = Field(description="the text/html body after sanitising: no scripts, no remote content")
    show: Literal["text", "html", "none"] = Field(description="which body to show: text when there is one")
    malformed: bool = Field(description="the MIME had defects: parts taken as far as they parse, raw kept")
    defects: list[str]
    status: str = Field(description="stored (inbound), sent or failed (outbound)")
    error: str | None
    author: str | None
    attachments: list[AttachmentInfo]


class ThreadView(ThreadSummary):
    items: list[MessageView]


class ReplyBody(StrictBody):
    text: str = Field(min_length=1, max_length=100_000, description="plain text")


class ReplyResult(BaseModel):
    thread_id: int
    message_pk: int
    message_id: str
    in_reply_to: str | None
    references: list[str]
    to: str


class EmailBody(StrictBody):
    email: str = Field(min_length=3, max_length=320, description="stored lower case; an address belongs to one customer")
    label: str | None = Field(None, max_length=40)


class EmailItem(BaseModel):
    email: str
    label: str | None


class EmailList(BaseModel):
    customer_id: str
    emails: list[EmailItem]


def _id(req: ApiRequest, name: str) -> int:
    value = int(req.match_info[name])
    if value > 2**62:
        raise ApiError(404, "not_found", f"no such {name}")
    return value


def _known(exc: store.MailError) -> ApiError:
    return ApiError(_STATUS.get(exc.code, 400), exc.code, str(exc))


def _me(req: ApiRequest) -> str:
    assert req.principal is not None
    return req.principal.agent_id or req.principal.name


def _message(m: dict) -> MessageView:
    text, html = m["text_body"], m["html_safe"]
    return MessageView(message_pk=m["message_pk"], direction=m["direction"], message_id=m["message_id"],
                       in_reply_to=m["in_reply_to"], references=m["refs"], from_addr=m["from_addr"],
                       from_name=m["from_name"], to_addrs=m["to_addrs"], subject=m["subject"], sent_at=m["sent_at"],
                       received_at=m["received_at"], text=text, html=html,
                       show="text" if text else "html" if html else "none", malformed=m["malformed"],
                       defects=m["defects"], status=m["status"], error=m["error"], author=m["author"],
                       attachments=[AttachmentInfo(**{k: a[k] for k in AttachmentInfo.model_fields})
                                    for a in m["attachments"]])


async def list_threads(req: ApiRequest[None, ThreadQuery]) -> ThreadList:
    q = req.query
    states = ("new", "waiting", "assigned") if q.state == "open" else (q.state,)
    rows = await query(store.list_threads(db(req.app), states=states, assigned_to=_me(req) if q.mine else None,
                                          limit=q.limit))
    return ThreadList(threads=[ThreadSummary(**r) for r in rows])


async def get_thread(req: ApiRequest[None, None]) -> ThreadView:
    try:
        t = await query(store.get_thread(db(req.app), _id(req, "thread_id")))
    except store.MailError as exc:
        raise _known(exc) from None
    items = [_message(m) for m in t.pop("items")]
    return ThreadView(**t, items=items)


async def take_thread(req: ApiRequest[None, None]) -> ThreadView:
    thread_id = _id(req, "thread_id")
    assert req.principal is not None
    try:
        await query(store.take(db(req.app), thread_id, _me(req), force=req.principal.role in STAFF))
    except store.MailError as exc:
        raise _known(exc) from None
    req.app[MAIL].tasks.taken(thread_id, _me(req))     # its task is mine too
    log.info("mail.taken", thread_id=thread_id, actor=actor_of(req))
    return await get_thread(req)


async def close_thread(req: ApiRequest[None, None]) -> None:
    thread_id = _id(req, "thread_id")
    try:
        await query(store.close(db(req.app), thread_id))
    except store.MailError as exc:
        raise _known(exc) from None
    req.app[MAIL].tasks.closed(thread_id)              # and its task
    log.info("mail.closed", thread_id=thread_id, actor=actor_of(req))


async def reply(req: ApiRequest[ReplyBody, None]) -> ReplyResult:
    thread_id = _id(req, "thread_id")
    assert req.principal is not None
    pool = db(req.app)
    me = _me(req)
    try:
        t = await query(store.get_thread(pool, thread_id))
        if t["state"] == "assigned" and t["assigned_to"] not in (None, me) and req.principal.role not in STAFF:
            raise store.MailError("taken", f"mail thread {thread_id} is assigned to {t['assigned_to']}")
        sent = await req.app[MAIL].reply(pool, thread_id, req.body.text, author=actor_of(req), assign_to=me)
        if t["state"] in ("new", "waiting"):     # answering a waiting thread takes it, and its task
            req.app[MAIL].tasks.taken(thread_id, me, steal=False)
    except store.MailError as exc:
        raise _known(exc) from None
    except SendFailed as exc:
        raise ApiError(502, "send_failed", f"the mail relay did not take the reply (kept as failed): {exc}") from None
    return ReplyResult(thread_id=thread_id, **sent)


async def get_attachment(req: ApiRequest[None, None]) -> web.Response:
    try:
        a = await query(store.attachment(db(req.app), _id(req, "attachment_id")))
    except store.MailError as exc:
        raise _known(exc) from None
    # Always a download of opaque bytes: a sender's "text/html" never renders in our origin.
    name = "".join(c for c in (a["filename"] or "") if c.isalnum() or c in "._- ")[:100].strip() or \
        f"attachment-{a['attachment_id']}"
    return web.Response(body=a["data"], headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    })


async def _customer(req: ApiRequest) -> str:
    cid = req.match_info["customer_id"]
    if not await query(db(req.app).fetchval("SELECT true FROM customers WHERE customer_id = $1", cid)):
        raise ApiError(404, "unknown_customer", f"no customer {cid[:64]!r}")
    return cid


async def list_emails(req: ApiRequest[None, None]) -> EmailList:
    cid = await _customer(req)
    return EmailList(customer_id=cid, emails=[EmailItem(**e) for e in await query(customer_emails(db(req.app), cid))])


async def add_customer_email(req: ApiRequest[EmailBody, None]) -> EmailList:
    cid = await _customer(req)
    try:
        await query(add_email(db(req.app), cid, req.body.email, label=req.body.label))
    except InvalidCustomer as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    log.info("customer.email_added", customer_id=cid, actor=actor_of(req))
    return await list_emails(req)


# Declared once, for the leader and for an API node, which answers it too (api.node_routes).
LIST_THREADS: dict[str, Any] = dict(summary="Mail threads by state", roles=CRM_ROLES, query=ThreadQuery,
                                    response=ThreadList, tags=TAGS)


def setup_mail_routes(app: web.Application, service: MailService) -> None:
    """The mail routes over ``service``. After ``setup_auth`` (its pool)."""
    api = setup_registry(app)
    app[MAIL] = service
    one = "/api/mail/threads/{thread_id:[0-9]+}"
    api.add("GET", "/api/mail/threads", list_threads, **LIST_THREADS)
    api.add("GET", one, get_thread, summary="A mail thread with its messages (HTML sanitised)", roles=CRM_ROLES,
            response=ThreadView, tags=TAGS)
    api.add("POST", one + "/take", take_thread, summary="Take a mail thread", roles=CRM_ROLES,
            response=ThreadView, tags=TAGS)
    api.add("POST", one + "/reply", reply, summary="Answer a mail thread by e-mail", roles=CRM_ROLES,
            body=ReplyBody, response=ReplyResult, tags=TAGS,
            description="Sent through mail_smtp from mail_from, with In-Reply-To and References set to the "
                        "thread's newest inbound mail; kept as an outbound message (status failed and 502 "
                        "when the relay refuses it; 503 when no relay is configured).")
    api.add("POST", one + "/close", close_thread, summary="Close a mail thread", roles=CRM_ROLES, status=204,
            tags=TAGS)
    api.add("GET", "/api/mail/attachments/{attachment_id:[0-9]+}", get_attachment,
            summary="An attachment of a mail (a download)", roles=CRM_ROLES, content_type="application/octet-stream",
            tags=TAGS)
    emails = "/api/customers/{customer_id}/emails"
    api.add("GET", emails, list_emails, summary="A customer's e-mail addresses", roles=CRM_ROLES,
            response=EmailList, tags=("customers",))
    api.add("POST", emails, add_customer_email, summary="Give a customer an e-mail address", roles=CRM_ROLES,
            body=EmailBody, response=EmailList, tags=("customers",),
            description="Mail from this address is threaded onto the customer (docs/mail.md). An address held "
                        "by another customer moves to this one.")
