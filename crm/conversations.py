"""A customer's conversations of every channel but voice, newest first (docs/omnichannel.md,
"One customer view"): web chats (their task, by the e-mail address the customer gave the
widget), mail threads (the customer's, or from one of their addresses) and messaging
conversations (the customer's, or from one of their numbers). Addresses and numbers are
the customer store's (``customer_emails``, ``customer_phones``)."""
from __future__ import annotations

from typing import Any

from cti.pg import Db

_QUERY = """
WITH e AS (SELECT email FROM customer_emails WHERE customer_id = $1),
     p AS (SELECT phone FROM customer_phones WHERE customer_id = $1)
SELECT * FROM (
    SELECT 'chat' AS channel, t.task_id AS conversation, t.subject, t.status AS state, t.agent_id AS agent,
           t.created_at AS started_at, coalesce(t.closed_at, t.assigned_at, t.created_at) AS last_at
      FROM tasks t
     WHERE t.channel = 'chat' AND lower(t.customer_ref) IN (SELECT email FROM e)
    UNION ALL
    SELECT 'email', m.thread_id::text, m.subject, m.state, m.assigned_to, m.created_at, m.updated_at
      FROM mail_threads m
     WHERE m.customer_id = $1 OR lower(m.address) IN (SELECT email FROM e)
    UNION ALL
    SELECT 'message', c.conversation_id::text,
           coalesce((SELECT left(body, 200) FROM messages x WHERE x.conversation_id = c.conversation_id
                      AND x.direction = 'in' ORDER BY x.message_id LIMIT 1), ''),
           c.state, (SELECT k.agent_id FROM tasks k WHERE k.channel = 'message'
                      AND k.ref = 'conversation-' || c.conversation_id),
           c.opened_at, c.last_at
      FROM message_conversations c
     WHERE c.customer_id = $1 OR c.number IN (SELECT phone FROM p)
) AS every
ORDER BY last_at DESC, channel, conversation
LIMIT $2
"""


async def customer_conversations(db: Db, customer_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """The customer's ``limit`` latest conversations: channel (chat, email, message), the
    conversation's id in its channel (a chat's task id, a thread id, a conversation id),
    subject (a chat's question, a thread's subject, a conversation's first words), state,
    agent, started_at and last_at."""
    return [dict(r) for r in await db.fetch(_QUERY, customer_id, limit)]
