"""Canned replies (docs/omnichannel.md, "Canned replies"): short texts an agent inserts
into a chat or message reply, kept per task queue (or for every queue) by supervisors.
Stored in ``canned_replies`` (migration 0030).

Routes::

    GET    /api/canned-replies?queue=     those of the queue and those of every queue (agents, staff)
    POST   /api/canned-replies            add one (supervisors, admins)
    DELETE /api/canned-replies/{id}       remove one (supervisors, admins)
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import STAFF
from api.crm_common import StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError, ErrorDetail
from api.registry import ApiRequest, setup_registry

log = structlog.get_logger(__name__)

TITLE_MAX = 80
BODY_MAX = 2000
_QUEUE = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
# Text a person typed: no control characters but newlines and tabs in the body.
_TITLE = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
_BODY = r"^[^\x00-\x08\x0b-\x1f\x7f]*\S[^\x00-\x08\x0b-\x1f\x7f]*$"
READERS = frozenset({"agent", "supervisor", "admin"})

TaskQueues = Callable[[], list[str]]
CANNED_QUEUES = web.AppKey("canned_queues", TaskQueues)


class CannedQuery(StrictBody):
    queue: str | None = Field(None, pattern=_QUEUE, description="those of this queue and those of every queue")


class CannedBody(StrictBody):
    queue: str | None = Field(None, pattern=_QUEUE, description="a task queue of the ACD configuration; "
                              "null: every queue")
    title: str = Field(min_length=1, max_length=TITLE_MAX, pattern=_TITLE)
    body: str = Field(min_length=1, max_length=BODY_MAX, pattern=_BODY, description="plain text")


class CannedReply(BaseModel):
    reply_id: int
    queue: str | None
    title: str
    body: str
    created_by: str
    created_at: datetime


class CannedList(BaseModel):
    replies: list[CannedReply]


def _item(r: Any) -> CannedReply:
    return CannedReply(reply_id=r["reply_id"], queue=r["queue_id"], title=r["title"], body=r["body"],
                       created_by=r["created_by"], created_at=r["created_at"])


async def list_replies(req: ApiRequest[None, CannedQuery]) -> CannedList:
    rows = await query(db(req.app).fetch(
        "SELECT * FROM canned_replies WHERE $1::text IS NULL OR queue_id IS NULL OR queue_id = $1 "
        "ORDER BY queue_id NULLS LAST, lower(title) LIMIT 500", req.query.queue))
    return CannedList(replies=[_item(r) for r in rows])


async def add_reply(req: ApiRequest[CannedBody, None]) -> CannedReply:
    b = req.body
    if b.queue is not None and b.queue not in req.app[CANNED_QUEUES]():
        raise ApiError(422, "invalid_body", f"queue {b.queue!r} is no task queue of the ACD configuration",
                       [ErrorDetail(field="body.queue", message="not a chat, e-mail or message queue", type="value_error")])
    try:
        row = await query(db(req.app).fetchrow(
            "INSERT INTO canned_replies (queue_id, title, body, created_by) VALUES ($1, $2, $3, $4) RETURNING *",
            b.queue, b.title.strip(), b.body.strip(), actor_of(req)))
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "duplicate_title", f"the queue has a canned reply titled {b.title.strip()!r}") from None
    log.info("canned reply added", reply_id=row["reply_id"], queue=b.queue, actor=actor_of(req))
    return _item(row)


async def delete_reply(req: ApiRequest[None, None]) -> None:
    reply_id = int(req.match_info["reply_id"])
    done = reply_id <= 2**62 and await query(db(req.app).fetchval(
        "DELETE FROM canned_replies WHERE reply_id = $1 RETURNING reply_id", reply_id))
    if not done:
        raise ApiError(404, "not_found", f"no canned reply {reply_id}")
    log.info("canned reply deleted", reply_id=reply_id, actor=actor_of(req))


def setup_canned(app: web.Application, task_queues: TaskQueues) -> None:
    """The canned-reply routes; ``task_queues``: the task queues of the configuration in force."""
    app[CANNED_QUEUES] = task_queues
    api = setup_registry(app)
    tags = ("tasks",)
    api.add("GET", "/api/canned-replies", list_replies, summary="Canned replies (of a queue and of every queue)",
            roles=READERS, query=CannedQuery, response=CannedList, tags=tags)
    api.add("POST", "/api/canned-replies", add_reply, summary="Add a canned reply", roles=STAFF,
            body=CannedBody, response=CannedReply, status=201, tags=tags,
            description="409 duplicate_title when the queue (or every queue) has one with this title.")
    api.add("DELETE", "/api/canned-replies/{reply_id:[0-9]+}", delete_reply, summary="Remove a canned reply",
            roles=STAFF, status=204, tags=tags)
