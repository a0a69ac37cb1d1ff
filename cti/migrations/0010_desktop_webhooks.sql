-- The agent desktop's wrap-up (a disposition and notes per call and user) and
-- webhooks (subscriptions of external URLs to call events, and their delivery log).

CREATE TABLE call_dispositions (
    call_id      text NOT NULL,                       -- no foreign key: the call's row may land later
    user_id      bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    agent_id     text,
    disposition  text NOT NULL CHECK (disposition ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    notes        text NOT NULL DEFAULT '' CHECK (length(notes) <= 4000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, user_id)                    -- one wrap-up per call and user; a second one replaces it
);

CREATE INDEX call_dispositions_agent_idx ON call_dispositions (agent_id, created_at DESC);

CREATE TABLE webhook_subscriptions (
    subscription_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    secret          text NOT NULL,                    -- signs the payloads (HMAC-SHA256); shown once
    events          text[] NOT NULL,                  -- kinds ('call.ended') or prefixes ('call.*')
    description     text NOT NULL DEFAULT '',
    active          boolean NOT NULL DEFAULT true,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (subscription_id) ON DELETE CASCADE,
    event_id        text NOT NULL,                    -- call_id:call_seq, the same for every attempt
    kind            text NOT NULL,
    call_id         text,
    attempt         integer NOT NULL CHECK (attempt >= 1),
    at              timestamptz NOT NULL DEFAULT now(),
    outcome         text NOT NULL CHECK (outcome IN ('delivered', 'failed', 'gave_up', 'dropped')),
    http_status     integer,
    error           text,
    duration_ms     integer
);

CREATE INDEX webhook_deliveries_sub_idx ON webhook_deliveries (subscription_id, delivery_id DESC);
