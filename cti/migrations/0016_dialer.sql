-- Outbound campaigns (docs/dialer.md): campaigns, their leads, every attempt, and the
-- do-not-call list checked when a lead is taken for dialing (dialer/store.py).

CREATE TABLE dialer_campaigns (
    campaign_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    mode        text NOT NULL DEFAULT 'preview' CHECK (mode IN ('preview', 'progressive', 'predictive')),
    state       text NOT NULL DEFAULT 'stopped' CHECK (state IN ('stopped', 'running', 'paused')),
    caller_id   text CHECK (caller_id ~ '^\+[1-9][0-9]{1,14}$'),
    queue       text CHECK (length(queue) BETWEEN 1 AND 64),
    abandon_cap numeric(5, 4) NOT NULL DEFAULT 0.03 CHECK (abandon_cap > 0 AND abandon_cap <= 0.03),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dialer_leads (
    lead_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES dialer_campaigns ON DELETE CASCADE,
    phone        text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    name         text CHECK (length(name) <= 200),
    customer_id  text CHECK (length(customer_id) <= 64),
    tz           text CHECK (length(tz) <= 64),
    -- The zones the lead is called in (dialer.windows), resolved once at import.
    zones        text[] NOT NULL CHECK (cardinality(zones) > 0),
    state        text NOT NULL DEFAULT 'new'
                 CHECK (state IN ('new', 'dialing', 'answered', 'retry', 'done', 'do_not_call', 'exhausted')),
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    outcomes     jsonb NOT NULL DEFAULT '{}',
    retry_at     timestamptz,
    last_outcome text,
    revision     integer NOT NULL DEFAULT 0,
    source_line  integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, phone),
    CHECK ((state = 'retry') = (retry_at IS NOT NULL))
);
CREATE INDEX dialer_leads_dialable ON dialer_leads (campaign_id, state, retry_at);

CREATE TABLE dialer_attempts (
    attempt_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id     bigint NOT NULL REFERENCES dialer_leads ON DELETE CASCADE,
    campaign_id bigint NOT NULL REFERENCES dialer_campaigns ON DELETE CASCADE,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    outcome     text CHECK (outcome IN ('answered', 'busy', 'no_answer', 'machine', 'failed', 'abandoned')),
    call_id     text,
    amd_status  text,
    agent_id    text
);
CREATE INDEX dialer_attempts_lead ON dialer_attempts (lead_id, started_at);

CREATE TABLE dialer_dnc (
    phone    text PRIMARY KEY CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    reason   text CHECK (length(reason) <= 200),
    source   text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'opt_out', 'import')),
    added_by text,
    added_at timestamptz NOT NULL DEFAULT now()
);
