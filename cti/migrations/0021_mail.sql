-- E-mail as a channel (docs/mail.md): customers' e-mail addresses, mail threads (one work
-- item each), their messages in and out, and attachments. Attachments are kept here, in
-- bytea: the receiver refuses a mail over mail_max_bytes at SMTP time, so none is large.

-- One row per address, stored lower case: a From address matches exactly, through the key.
-- An address belongs to one customer (like customer_phones).
CREATE TABLE customer_emails (
    email       text PRIMARY KEY CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 320
                                        AND position('@' in email) > 1),
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    label       text
);

CREATE INDEX customer_emails_customer_idx ON customer_emails (customer_id);

-- A conversation: found again by the Message-IDs of its messages (In-Reply-To, References).
-- state: new (stored, not yet filed), waiting (filed: a work item nobody has taken),
-- assigned (an agent took it or answered it), closed.
CREATE TABLE mail_threads (
    thread_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject      text NOT NULL,
    customer_id  text REFERENCES customers (customer_id) ON DELETE SET NULL,
    ticket_id    bigint REFERENCES tickets (ticket_id) ON DELETE SET NULL,
    address      text NOT NULL,                          -- the customer's address (lower case)
    queue        text NOT NULL,
    state        text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'waiting', 'assigned', 'closed')),
    assigned_to  text,                                   -- the agent id (or user name) working it
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    last_inbound_at timestamptz
);

CREATE INDEX mail_threads_state_idx ON mail_threads (state, updated_at) WHERE state <> 'closed';
CREATE INDEX mail_threads_customer_idx ON mail_threads (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE mail_messages (
    message_pk   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thread_id    bigint NOT NULL REFERENCES mail_threads (thread_id) ON DELETE CASCADE,
    direction    text NOT NULL CHECK (direction IN ('in', 'out')),
    message_id   text,                                   -- '<id@host>' as sent; NULL when the mail had none
    in_reply_to  text,
    refs         text[] NOT NULL DEFAULT '{}',           -- the References header, oldest first
    from_addr    text NOT NULL,
    from_name    text,
    to_addrs     text[] NOT NULL DEFAULT '{}',
    subject      text NOT NULL,
    sent_at      timestamptz,                            -- the Date header, when it parsed
    text_body    text,                                   -- text/plain (preferred when present)
    html_safe    text,                                   -- text/html after sanitising (never the raw HTML)
    malformed    boolean NOT NULL DEFAULT false,         -- defects found: raw kept, parts best effort
    defects      text[] NOT NULL DEFAULT '{}',
    raw          bytea,                                  -- the whole message as received (inbound)
    status       text NOT NULL DEFAULT 'stored' CHECK (status IN ('stored', 'sent', 'failed')),
    error        text,                                   -- why sending failed
    author       text,                                   -- who wrote an outbound reply
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mail_messages_thread_idx ON mail_messages (thread_id, message_pk);
-- Threading looks messages up by Message-ID; a mail delivered twice is stored once.
CREATE INDEX mail_messages_message_id_idx ON mail_messages (message_id) WHERE message_id IS NOT NULL;
CREATE UNIQUE INDEX mail_messages_inbound_once_idx ON mail_messages (message_id)
    WHERE direction = 'in' AND message_id IS NOT NULL;

CREATE TABLE mail_attachments (
    attachment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_pk    bigint NOT NULL REFERENCES mail_messages (message_pk) ON DELETE CASCADE,
    filename      text,                                  -- as the sender named it (shown as text only)
    content_type  text NOT NULL,
    size          integer NOT NULL CHECK (size >= 0),
    data          bytea NOT NULL
);

CREATE INDEX mail_attachments_message_idx ON mail_attachments (message_pk);
