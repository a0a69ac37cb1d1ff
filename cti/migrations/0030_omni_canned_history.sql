-- Omnichannel (docs/omnichannel.md). Canned replies: short texts agents insert into a chat or message
-- reply, per task queue (queue_id) or for every queue (NULL); kept by supervisors.

CREATE TABLE canned_replies (
    reply_id    bigserial PRIMARY KEY,
    queue_id    text,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 80),
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX canned_replies_title_idx ON canned_replies (coalesce(queue_id, ''), lower(title));

-- The customer view and the screen-pop find a customer's chats by the address the
-- widget was given (tasks.customer_ref, lower case) and mail threads by their address.
CREATE INDEX tasks_customer_ref_idx ON tasks (lower(customer_ref)) WHERE channel = 'chat';
CREATE INDEX mail_threads_address_idx ON mail_threads (lower(address));
CREATE INDEX message_conversations_number_idx ON message_conversations (number, last_at DESC);

-- The task queues' day figures read back at a start (omni.store.day_counts).
CREATE INDEX tasks_assigned_idx ON tasks (assigned_at) WHERE assigned_at IS NOT NULL;
CREATE INDEX tasks_abandoned_idx ON tasks (closed_at) WHERE status = 'abandoned';
