-- Customers for caller lookups (IVR and dialplan hooks), and the IVR path of each call.
-- The customers-and-tickets issue grows customers into the full record.

CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    name        text NOT NULL,
    language    text,                                  -- e.g. 'en', 'fr' (Asterisk language code)
    vip         boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per number, stored in E.164 ('+' and 2 to 15 digits): a caller ID
-- normalised the same way matches exactly, through the primary key's index.
-- A number belongs to one customer.
CREATE TABLE customer_phones (
    phone       text PRIMARY KEY CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    label       text
);

CREATE INDEX customer_phones_customer_idx ON customer_phones (customer_id);

-- The IVR path: every menu entered, key pressed, value typed, with the time it took.
-- No foreign key to calls, like call_events: steps may land before the call's row.
CREATE TABLE call_ivr_steps (
    call_id  text NOT NULL,
    seq      integer NOT NULL,                          -- per call, from 1
    at       timestamptz NOT NULL,
    menu     text NOT NULL,
    action   text NOT NULL,                             -- enter, option, invalid, timeout, collected, ...
    input    text,                                      -- the key pressed, or what was collected
    value    text,                                      -- the value typed, the customer found, the queue
    duration numeric NOT NULL DEFAULT 0,                -- seconds since the menu began
    PRIMARY KEY (call_id, seq)
);

CREATE INDEX call_ivr_steps_at_idx ON call_ivr_steps (at);
