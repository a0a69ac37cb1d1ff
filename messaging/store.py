"""Conversations and messages in PostgreSQL (migration 0022): the queries, nothing else."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
import asyncpg

from crm.customer_lookup import find_by_phone
from messaging.core import PENDING, Delivery, Inbound


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


@dataclass(frozen=True, slots=True)
class Stored:
    """What an inbound message became."""

    conversation_id: int
    message_id: int | None     # None: a replay, stored before
    new_conversation: bool
    customer_id: str | None


async def store_inbound(pool: asyncpg.Pool, msg: Inbound) -> Stored:
    """Store ``msg`` in the open conversation of its numbers (a new one, matched to
    the customer owning the number, when there is none). A message id stored
    before stores nothing."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            seen = await conn.fetchrow(
                "SELECT m.conversation_id, c.customer_id FROM messages m JOIN message_conversations c "
                "USING (conversation_id) WHERE m.provider_id = $1 AND m.direction = 'in'", msg.provider_id)
            if seen is not None:
                return Stored(seen["conversation_id"], None, False, seen["customer_id"])
            conv = await conn.fetchrow(
                "SELECT conversation_id, customer_id FROM message_conversations "
                "WHERE number = $1 AND our_number = $2 AND state <> 'closed' FOR UPDATE", msg.number, msg.our_number)
            new = conv is None
            if new:
                customer = await find_by_phone(conn, msg.number)
                customer_id = customer.customer_id if customer is not None else None
                conv = await conn.fetchrow(
                    "INSERT INTO message_conversations (number, our_number, customer_id) VALUES ($1, $2, $3) "
                    "ON CONFLICT (number, our_number) WHERE state <> 'closed' DO UPDATE SET last_at = now() "
                    # xmax = 0: this statement inserted the row (another inbound did not win the race)
                    "RETURNING conversation_id, customer_id, (xmax = 0) AS inserted",
                    msg.number, msg.our_number, customer_id)
                new = conv["inserted"]
            message_id = await conn.fetchval(
                "INSERT INTO messages (conversation_id, direction, provider_id, body, sent_at) "
                "VALUES ($1, 'in', $2, $3, $4) ON CONFLICT (provider_id) WHERE direction = 'in' DO NOTHING "
                "RETURNING message_id", conv["conversation_id"], msg.provider_id, msg.text, _utc(msg.sent_at))
            if message_id is None:
                return Stored(conv["conversation_id"], None, False, conv["customer_id"])
            await conn.execute("UPDATE message_conversations SET last_at = now() WHERE conversation_id = $1",
                               conv["conversation_id"])
    return Stored(conv["conversation_id"], message_id, bool(new), conv["customer_id"])


async def set_state(pool: asyncpg.Pool, conversation_id: int, state: str, task_ref: str | None = None) -> None:
    await pool.execute("UPDATE message_conversations SET state = $2, task_ref = COALESCE($3, task_ref), "
                       "closed_at = CASE WHEN $2 = 'closed' THEN now() END WHERE conversation_id = $1",
                       conversation_id, state, task_ref)


async def close_quiet(pool: asyncpg.Pool, conversation_id: int) -> None:
    """Close the conversation if it is not (its task was closed by the agent)."""
    await pool.execute("UPDATE message_conversations SET state = 'closed', closed_at = now() "
                       "WHERE conversation_id = $1 AND state <> 'closed'", conversation_id)


async def conversations_of(pool: asyncpg.Pool, ids: list[int], limit: int) -> list[asyncpg.Record]:
    """The conversations ``ids`` (an agent's), latest first."""
    return await pool.fetch("SELECT * FROM message_conversations WHERE conversation_id = ANY($1::bigint[]) "
                            "ORDER BY last_at DESC LIMIT $2", ids, limit)


async def conversation(pool: asyncpg.Pool, conversation_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM message_conversations WHERE conversation_id = $1", conversation_id)


async def conversations(pool: asyncpg.Pool, state: str | None, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM message_conversations WHERE ($1::text IS NULL OR state = $1) "
                            "ORDER BY last_at DESC LIMIT $2", state, limit)


async def messages(pool: asyncpg.Pool, conversation_id: int, limit: int = 500) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM messages WHERE conversation_id = $1 ORDER BY message_id LIMIT $2",
                            conversation_id, limit)


async def add_reply(pool: asyncpg.Pool, conversation_id: int, text: str, author: str, at: float) -> int:
    """Store an agent's reply, to be delivered; the conversation is 'open' (unless closed)."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            message_id = await conn.fetchval(
                "INSERT INTO messages (conversation_id, direction, body, sent_at, author, delivery) "
                "VALUES ($1, 'out', $2, $3, $4, $5) RETURNING message_id",
                conversation_id, text, _utc(at), author, PENDING)
            await conn.execute("UPDATE message_conversations SET last_at = now(), state = 'open' "
                               "WHERE conversation_id = $1 AND state <> 'closed'", conversation_id)
    return message_id


async def pending(pool: asyncpg.Pool, limit: int = 1000) -> list[asyncpg.Record]:
    """Replies not delivered yet, oldest first, with their numbers."""
    return await pool.fetch(
        "SELECT m.message_id, m.conversation_id, m.body, m.sent_at, m.attempts, m.next_attempt_at, c.number, "
        "c.our_number FROM messages m JOIN message_conversations c USING (conversation_id) "
        "WHERE m.delivery = 'pending' ORDER BY m.message_id LIMIT $1", limit)


async def save_delivery(pool: asyncpg.Pool, message_id: int, d: Delivery) -> None:
    await pool.execute("UPDATE messages SET delivery = $2, attempts = $3, next_attempt_at = $4, last_error = $5 "
                       "WHERE message_id = $1", message_id, d.state, d.attempts, _utc(d.next_at), d.error)


async def save_web_callback(pool: asyncpg.Pool, callback_id: str, name: str, number: str,
                            customer_id: str | None, not_before: float | None) -> None:
    await pool.execute("INSERT INTO web_callback_requests (callback_id, name, number, customer_id, not_before) "
                       "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (callback_id) DO NOTHING",
                       callback_id, name, number, customer_id, _utc(not_before))
