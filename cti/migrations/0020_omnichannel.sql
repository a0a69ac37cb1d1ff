-- Omnichannel tasks (docs/omnichannel.md): every work item of a chat, e-mail or
-- message channel that went through the ACD, and the messages of web chats.

CREATE TABLE tasks (
    task_id       text PRIMARY KEY,
    channel       text NOT NULL CHECK (channel IN ('chat', 'email', 'message')),
    queue_id      text NOT NULL,
    customer_ref  text NOT NULL,
    subject       text NOT NULL DEFAULT '',
    ref           text NOT NULL,                     -- the channel's own id of the conversation
    status        text NOT NULL DEFAULT 'waiting'
                  CHECK (status IN ('waiting', 'assigned', 'closed', 'abandoned')),
    agent_id      text,
    created_at    timestamptz NOT NULL,
    assigned_at   timestamptz,
    closed_at     timestamptz,
    disposition   text,
    UNIQUE (channel, ref)
);
CREATE INDEX tasks_open_idx ON tasks (agent_id) WHERE status IN ('waiting', 'assigned');
CREATE INDEX tasks_created_idx ON tasks (created_at);

-- One row per chat message, numbered per task (seq from 1): the transcript, and
-- what a reconnecting widget or desktop asks for after the last seq it has.
CREATE TABLE chat_messages (
    task_id   text NOT NULL REFERENCES tasks (task_id),
    seq       integer NOT NULL CHECK (seq > 0),
    sender    text NOT NULL CHECK (sender IN ('customer', 'agent', 'system')),
    agent_id  text,
    body      text NOT NULL CHECK (length(body) <= 4000),
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);
