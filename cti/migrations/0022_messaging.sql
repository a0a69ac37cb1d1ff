-- Messaging (docs/messaging.md): conversations with customers over an SMS/messaging
-- provider, and every message in and out of them.

-- One conversation per customer number and our number it wrote to: a new inbound
-- message joins the open one. state: 'waiting' (nobody has it yet), 'queued' (filed
-- as an ACD task: task_ref), 'open' (an agent replied), 'closed'.
CREATE TABLE message_conversations (
    conversation_id bigserial PRIMARY KEY,
    number          text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{1,14}$'),   -- the customer's, E.164
    our_number      text NOT NULL,                                          -- the one they wrote to
    customer_id     text REFERENCES customers (customer_id) ON DELETE SET NULL,
    state           text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'queued', 'open', 'closed')),
    task_ref        text,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    last_at         timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
-- At most one conversation not closed per pair of numbers.
CREATE UNIQUE INDEX message_conversations_live_idx ON message_conversations (number, our_number)
    WHERE state <> 'closed';
CREATE INDEX message_conversations_customer_idx ON message_conversations (customer_id, last_at DESC);

-- direction 'in': provider_id is the provider's message id (unique: a replayed webhook
-- stores nothing new). direction 'out': an agent's reply and its delivery to the
-- provider: delivery 'pending' -> 'sent' (2xx) or, after every attempt failed, 'failed'.
CREATE TABLE messages (
    message_id      bigserial PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES message_conversations (conversation_id) ON DELETE CASCADE,
    direction       text NOT NULL CHECK (direction IN ('in', 'out')),
    provider_id     text,
    body            text NOT NULL,
    sent_at         timestamptz NOT NULL,            -- the provider's timestamp (in), the reply's (out)
    stored_at       timestamptz NOT NULL DEFAULT now(),
    author          text,                            -- the user who replied (out)
    delivery        text CHECK (delivery IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    CHECK ((direction = 'in') = (delivery IS NULL))
);
CREATE UNIQUE INDEX messages_provider_idx ON messages (provider_id) WHERE direction = 'in';
CREATE INDEX messages_conversation_idx ON messages (conversation_id, message_id);
CREATE INDEX messages_pending_idx ON messages (message_id) WHERE delivery = 'pending';

-- What the customer left on the web callback form, beside the ACD's callback row
-- (callbacks.callback_id = 'web-...'): the name to greet them by, the preferred time.
CREATE TABLE web_callback_requests (
    callback_id  text PRIMARY KEY,
    name         text NOT NULL,
    number       text NOT NULL,
    customer_id  text REFERENCES customers (customer_id) ON DELETE SET NULL,
    not_before   timestamptz,
    requested_at timestamptz NOT NULL DEFAULT now()
);
