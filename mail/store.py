"""Mail threads, messages and attachments in PostgreSQL (migration 0021; docs/mail.md).

``store_inbound`` files one parsed mail in one transaction: stored once per Message-ID,
onto the thread its In-Reply-To/References name (``pick_thread``, pure), else a new thread
with the customer its From address belongs to (``crm.customer_store.customer_by_email``)
and the ticket its subject or References name, when that ticket exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

import asyncpg

from crm.customer_store import connection, customer_by_email
from cti.pg import Db
from mail.outbound import ReplyTo
from mail.parse import ParsedMail

STATES = ("new", "waiting", "assigned", "closed")


class MailError(Exception):
    """A mail request that cannot be done; ``code`` is the API's error id."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Stored:
    """Where an inbound mail went. ``new_work``: the thread is new or was closed and
    reopened, so it must be filed as a work item; ``duplicate``: already stored."""
    thread_id: int
    message_pk: int
    new_work: bool
    duplicate: bool
    customer_id: str | None
    ticket_id: int | None
    subject: str
    reopened: bool = False      # a closed thread the mail reopened (new_work too)


def pick_thread(keys: Iterable[str], found: Mapping[str, int]) -> int | None:
    """The thread of the first key (best first, ``ParsedMail.thread_keys``) a stored message has."""
    for key in keys:
        if key in found:
            return found[key]
    return None


async def _ticket_exists(conn: asyncpg.Connection, ticket_id: int | None) -> int | None:
    if ticket_id is None or ticket_id > 2**62:
        return None
    return await conn.fetchval("SELECT ticket_id FROM tickets WHERE ticket_id = $1", ticket_id)


async def store_inbound(db: Db, mail: ParsedMail, *, queue: str) -> Stored:
    """Store ``mail``; see the module docstring. Raises asyncpg errors only (the receiver
    answers those with a temporary failure, so the sender tries again)."""
    async with connection(db) as conn, conn.transaction():
        if mail.message_id is not None:
            # Delivered twice (a retry after a lost 250): the first copy stands.
            row = await conn.fetchrow("SELECT m.message_pk, m.thread_id, t.customer_id, t.ticket_id, t.subject "
                                      "FROM mail_messages m JOIN mail_threads t USING (thread_id) "
                                      "WHERE m.direction = 'in' AND m.message_id = $1", mail.message_id)
            if row is not None:
                return Stored(row["thread_id"], row["message_pk"], False, True, row["customer_id"],
                              row["ticket_id"], row["subject"])
        keys = mail.thread_keys()
        found: dict[str, int] = {}
        if keys:
            for r in await conn.fetch("SELECT message_id, max(thread_id) AS thread_id FROM mail_messages "
                                      "WHERE message_id = ANY($1::text[]) GROUP BY message_id", keys):
                found[r["message_id"]] = r["thread_id"]
        thread_id = pick_thread(keys, found)
        keys_were_new = thread_id is None
        new_work = False
        if thread_id is not None:
            t = await conn.fetchrow("SELECT state, customer_id, ticket_id, subject FROM mail_threads "
                                    "WHERE thread_id = $1 FOR UPDATE", thread_id)
            ticket_id = t["ticket_id"] or await _ticket_exists(conn, mail.ticket_id())
            new_work = t["state"] == "closed"
            await conn.execute("UPDATE mail_threads SET last_inbound_at = now(), updated_at = now(), ticket_id = $2, "
                               "state = CASE WHEN state = 'closed' THEN 'new' ELSE state END, "
                               "assigned_to = CASE WHEN state = 'closed' THEN NULL ELSE assigned_to END "
                               "WHERE thread_id = $1", thread_id, ticket_id)
            customer_id, subject = t["customer_id"], t["subject"]
        else:
            customer_id = await customer_by_email(conn, mail.from_addr) if mail.from_addr else None
            ticket_id = await _ticket_exists(conn, mail.ticket_id())
            subject = mail.subject
            thread_id = await conn.fetchval(
                "INSERT INTO mail_threads (subject, customer_id, ticket_id, address, queue, last_inbound_at) "
                "VALUES ($1, $2, $3, $4, $5, now()) RETURNING thread_id",
                subject, customer_id, ticket_id, mail.from_addr, queue)
            new_work = True
        message_pk = await conn.fetchval(
            "INSERT INTO mail_messages (thread_id, direction, message_id, in_reply_to, refs, from_addr, from_name, "
            "to_addrs, subject, sent_at, text_body, html_safe, malformed, defects, raw) "
            "VALUES ($1, 'in', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING message_pk",
            thread_id, mail.message_id, mail.in_reply_to, list(mail.references), mail.from_addr, mail.from_name,
            list(mail.to_addrs), mail.subject, mail.sent_at, mail.text, mail.html, mail.malformed,
            list(mail.defects), mail.raw)
        if mail.attachments:
            await conn.executemany(
                "INSERT INTO mail_attachments (message_pk, filename, content_type, size, data) VALUES ($1, $2, $3, $4, $5)",
                [(message_pk, a.filename, a.content_type, len(a.data), a.data) for a in mail.attachments])
        return Stored(thread_id, message_pk, new_work, False, customer_id, ticket_id, subject,
                      reopened=new_work and not keys_were_new)


async def mark_waiting(db: Db, thread_id: int) -> None:
    """A new (or reopened) thread becomes a waiting work item."""
    await db.execute("UPDATE mail_threads SET state = 'waiting', updated_at = now() "
                     "WHERE thread_id = $1 AND state = 'new'", thread_id)


_THREAD_COLS = ("thread_id, subject, customer_id, ticket_id, address, queue, state, assigned_to, created_at, "
                "updated_at, last_inbound_at, (SELECT count(*) FROM mail_messages m WHERE m.thread_id = t.thread_id) "
                "AS messages")


async def list_threads(db: Db, *, states: Iterable[str], assigned_to: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
    """Threads in ``states``, oldest waiting first (and only ``assigned_to``'s when given)."""
    rows = await db.fetch(f"SELECT {_THREAD_COLS} FROM mail_threads t WHERE state = ANY($1::text[]) "
                          "AND ($2::text IS NULL OR assigned_to = $2) "
                          "ORDER BY coalesce(last_inbound_at, created_at), thread_id LIMIT $3",
                          list(states), assigned_to, limit)
    return [dict(r) for r in rows]


async def get_thread(db: Db, thread_id: int) -> dict[str, Any]:
    """The thread with its messages (oldest first) and their attachments' metadata.
    Raises ``MailError('not_found')``."""
    t = await db.fetchrow(f"SELECT {_THREAD_COLS} FROM mail_threads t WHERE thread_id = $1", thread_id)
    if t is None:
        raise MailError("not_found", f"no mail thread {thread_id}")
    msgs = await db.fetch("SELECT message_pk, direction, message_id, in_reply_to, refs, from_addr, from_name, "
                          "to_addrs, subject, sent_at, text_body, html_safe, malformed, defects, status, error, "
                          "author, received_at, raw IS NOT NULL AS has_raw FROM mail_messages "
                          "WHERE thread_id = $1 ORDER BY message_pk", thread_id)
    atts = await db.fetch("SELECT a.attachment_id, a.message_pk, a.filename, a.content_type, a.size "
                          "FROM mail_attachments a JOIN mail_messages m USING (message_pk) "
                          "WHERE m.thread_id = $1 ORDER BY a.attachment_id", thread_id)
    by_msg: dict[int, list[dict[str, Any]]] = {}
    for a in atts:
        by_msg.setdefault(a["message_pk"], []).append(dict(a))
    out = dict(t)
    out["items"] = [dict(m, attachments=by_msg.get(m["message_pk"], [])) for m in msgs]
    return out


async def take(db: Db, thread_id: int, who: str, *, force: bool = False) -> None:
    """Assign a waiting thread to ``who``. Raises ``MailError`` not_found, or taken (another
    holds it, unless ``force``: a supervisor's reassignment) or closed."""
    async with connection(db) as conn, conn.transaction():
        t = await conn.fetchrow("SELECT state, assigned_to FROM mail_threads WHERE thread_id = $1 FOR UPDATE",
                                thread_id)
        if t is None:
            raise MailError("not_found", f"no mail thread {thread_id}")
        if t["state"] == "closed":
            raise MailError("closed", f"mail thread {thread_id} is closed")
        if t["state"] == "assigned" and t["assigned_to"] not in (None, who) and not force:
            raise MailError("taken", f"mail thread {thread_id} is assigned to {t['assigned_to']}")
        await conn.execute("UPDATE mail_threads SET state = 'assigned', assigned_to = $2, updated_at = now() "
                           "WHERE thread_id = $1", thread_id, who)


async def close(db: Db, thread_id: int) -> None:
    """Close a thread (a later inbound mail reopens it). Raises ``MailError('not_found')``."""
    done = await db.fetchval("UPDATE mail_threads SET state = 'closed', updated_at = now() WHERE thread_id = $1 "
                             "RETURNING thread_id", thread_id)
    if done is None:
        raise MailError("not_found", f"no mail thread {thread_id}")


async def follow_task(db: Db, thread_id: int, agent_id: str | None) -> None:
    """The thread's task went to ``agent_id`` (the ACD's offer: the thread is theirs), or
    back to its queue (None: waiting, nobody's). A closed thread stays closed."""
    await db.execute("UPDATE mail_threads SET state = CASE WHEN $2::text IS NULL THEN 'waiting' ELSE 'assigned' END, "
                     "assigned_to = $2, updated_at = now() WHERE thread_id = $1 AND state <> 'closed'",
                     thread_id, agent_id)


async def close_quiet(db: Db, thread_id: int) -> None:
    """Close the thread if it is not (its task was closed by the agent)."""
    await db.execute("UPDATE mail_threads SET state = 'closed', updated_at = now() "
                     "WHERE thread_id = $1 AND state <> 'closed'", thread_id)


async def reply_context(db: Db, thread_id: int) -> tuple[dict[str, Any], ReplyTo]:
    """The thread and the mail a reply answers (its newest inbound one). Raises
    ``MailError`` not_found, or no_address (the thread has no address to answer)."""
    t = await db.fetchrow("SELECT thread_id, subject, ticket_id, address, state, assigned_to FROM mail_threads "
                          "WHERE thread_id = $1", thread_id)
    if t is None:
        raise MailError("not_found", f"no mail thread {thread_id}")
    m = await db.fetchrow("SELECT message_id, refs, from_addr, subject FROM mail_messages WHERE thread_id = $1 "
                          "AND direction = 'in' ORDER BY message_pk DESC LIMIT 1", thread_id)
    address = (m["from_addr"] if m is not None else "") or t["address"]
    if not address:
        raise MailError("no_address", f"mail thread {thread_id} has no sender address to answer")
    answered = ReplyTo(message_id=m["message_id"] if m else None, references=tuple(m["refs"]) if m else (),
                       from_addr=address, subject=t["subject"])
    return dict(t), answered


async def store_outbound(db: Db, *, thread_id: int, message_id: str, in_reply_to: str | None,
                         refs: Iterable[str], from_addr: str, to_addr: str, subject: str, text: str,
                         author: str, status: str, error: str | None, sent_at: datetime,
                         assign_to: str | None) -> int:
    """Keep an outbound reply (sent or failed: the text is never lost); a sent reply
    assigns a waiting thread to ``assign_to``. Returns the message's key."""
    async with connection(db) as conn, conn.transaction():
        pk = await conn.fetchval(
            "INSERT INTO mail_messages (thread_id, direction, message_id, in_reply_to, refs, from_addr, to_addrs, "
            "subject, sent_at, text_body, status, error, author) "
            "VALUES ($1, 'out', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING message_pk",
            thread_id, message_id, in_reply_to, list(refs), from_addr, [to_addr], subject, sent_at, text,
            status, error, author)
        if status == "sent":
            await conn.execute("UPDATE mail_threads SET updated_at = now(), "
                               "assigned_to = CASE WHEN state IN ('new', 'waiting') THEN $2 ELSE assigned_to END, "
                               "state = CASE WHEN state IN ('new', 'waiting') THEN 'assigned' ELSE state END "
                               "WHERE thread_id = $1", thread_id, assign_to)
        return pk


async def attachment(db: Db, attachment_id: int) -> dict[str, Any]:
    """One attachment with its bytes. Raises ``MailError('not_found')``."""
    row = await db.fetchrow("SELECT attachment_id, filename, content_type, size, data FROM mail_attachments "
                            "WHERE attachment_id = $1", attachment_id)
    if row is None:
        raise MailError("not_found", f"no attachment {attachment_id}")
    return dict(row)
