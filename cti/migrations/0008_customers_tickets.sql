-- Customers grown to the full record (addresses with region, tags, notes, merges, links to
-- calls), and tickets (work orders) with their audit trail and links.
-- The allowed ticket transitions live in crm/tickets.py (TRANSITIONS), not here: the
-- database only refuses states and sources that do not exist.

CREATE TABLE customer_addresses (
    address_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    label       text,                                  -- 'home', 'site', ...
    line1       text,                              -- may be unknown while the region is known
    line2       text,
    postcode    text,
    city        text,
    country     text,                                  -- ISO 3166 alpha-2, e.g. 'DE'
    region      text,                                  -- the dispatch region (engineers work by region)
    is_primary  boolean NOT NULL DEFAULT false
);

CREATE INDEX customer_addresses_customer_idx ON customer_addresses (customer_id);
CREATE INDEX customer_addresses_region_idx ON customer_addresses (region) WHERE region IS NOT NULL;
-- At most one primary address per customer.
CREATE UNIQUE INDEX customer_addresses_primary_idx ON customer_addresses (customer_id) WHERE is_primary;

-- Free tags, lower case: 'vip', 'lang:fr', 'reseller'. (customers.vip and .language stay:
-- the dialplan hooks and the IVR read them.)
CREATE TABLE customer_tags (
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    tag         text NOT NULL CHECK (tag ~ '^[a-z0-9][a-z0-9_.:+-]{0,39}$'),
    PRIMARY KEY (customer_id, tag)
);

CREATE INDEX customer_tags_tag_idx ON customer_tags (tag);

CREATE TABLE customer_notes (
    note_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    author      text NOT NULL,
    body        text NOT NULL
);

CREATE INDEX customer_notes_customer_idx ON customer_notes (customer_id, at);

-- Calls known to concern a customer (screen-pop, IVR lookup, ticket). No foreign key to
-- calls, like call_events: the link may be written before the call's row.
CREATE TABLE customer_calls (
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, call_id)
);

CREATE INDEX customer_calls_call_idx ON customer_calls (call_id);

-- One row per merge: the duplicate's id is gone from customers, the row says where it went
-- and what moved (the plan, as crm.customer_model.MergePlan.as_dict gives it).
CREATE TABLE customer_merges (
    merge_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    into_customer_id text NOT NULL,
    from_customer_id text NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    actor            text NOT NULL,
    moved            jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX customer_merges_from_idx ON customer_merges (from_customer_id);

CREATE TABLE tickets (
    ticket_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type              text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]{0,31}$'),   -- configured types
    customer_id       text NOT NULL REFERENCES customers (customer_id),       -- merges move tickets
    source            text NOT NULL CHECK (source IN ('call', 'ivr', 'import', 'manual')),
    state             text NOT NULL CHECK (state IN ('open', 'with_lead', 'dispatched', 'to_redispatch',
                                                      'awaiting_callback', 'closed', 'cancelled')),
    title             text NOT NULL,
    region            text,
    engineer          text,
    lead              text,
    visits            integer NOT NULL DEFAULT 0 CHECK (visits >= 0),
    callback_attempts integer NOT NULL DEFAULT 0 CHECK (callback_attempts >= 0),
    resolution        text,
    created_at        timestamptz NOT NULL,
    due_at            timestamptz NOT NULL,
    callback_due_at   timestamptz,
    closed_at         timestamptz,
    revision          integer NOT NULL CHECK (revision >= 1),     -- = the number of audit rows
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tickets_customer_idx ON tickets (customer_id, created_at);
-- The work lists look at live tickets only (closed ones pile up, live ones stay few).
CREATE INDEX tickets_live_due_idx ON tickets (due_at) WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX tickets_callback_idx ON tickets (callback_due_at) WHERE state = 'awaiting_callback';
CREATE INDEX tickets_live_customer_type_idx ON tickets (customer_id, type)
    WHERE state NOT IN ('closed', 'cancelled');

-- Every change, creation included: seq is the ticket's revision after the change.
CREATE TABLE ticket_audit (
    ticket_id  bigint NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    seq        integer NOT NULL CHECK (seq >= 1),
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    command    text NOT NULL,                  -- 'create' or a command kind, e.g. 'visit_failed:customer'
    from_state text,                           -- NULL for the creation
    to_state   text NOT NULL,
    note       text,
    data       jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (ticket_id, seq)
);

CREATE INDEX ticket_audit_command_idx ON ticket_audit (command, at);

CREATE TABLE ticket_calls (
    ticket_id bigint NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    call_id   text NOT NULL,                   -- no foreign key to calls (see customer_calls)
    linked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, call_id)
);

CREATE INDEX ticket_calls_call_idx ON ticket_calls (call_id);

-- Recordings come with the recording work; the link is kept by id alone.
CREATE TABLE ticket_recordings (
    ticket_id    bigint NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    recording_id text NOT NULL,
    linked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, recording_id)
);
