-- Call history: one row per call (upserted snapshots), its events, and agents.
-- Timestamps are timestamptz (UTC from the daemon); durations are computed
-- here from them so every report agrees on what a duration is.

CREATE TABLE calls (
    call_id           text PRIMARY KEY,               -- Asterisk Linkedid
    state             text NOT NULL CHECK (state IN (
                          'ringing', 'ivr', 'queued', 'offered', 'talking',
                          'held', 'transferred', 'ended')),
    direction         text NOT NULL,
    caller_num        text,
    caller_name       text,
    exten             text,                           -- the dialled number
    started_at        timestamptz NOT NULL,
    answered_at       timestamptz,
    queue             text,
    queue_joined_at   timestamptz,
    queue_left_at     timestamptz,
    agent             text,
    agent_answered_at timestamptz,
    ended_at          timestamptz,
    hangup_cause      integer,
    hangup_cause_txt  text,
    abandoned         boolean NOT NULL DEFAULT false,  -- hung up while queued
    end_estimated     boolean NOT NULL DEFAULT false,  -- closed after vanishing while we were away
    legs              integer NOT NULL DEFAULT 1 CHECK (legs >= 0),
    -- NULL while the call is open; billsec is 0 for an ended call never answered.
    duration_s        numeric GENERATED ALWAYS AS
                          (EXTRACT(EPOCH FROM ended_at - started_at)) STORED,
    billsec_s         numeric GENERATED ALWAYS AS
                          (EXTRACT(EPOCH FROM ended_at - COALESCE(answered_at, ended_at))) STORED,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX calls_started_at_idx ON calls (started_at);
CREATE INDEX calls_ended_at_idx ON calls (ended_at);
-- Open calls: what the daemon reconciles at start-up (small, so partial).
CREATE INDEX calls_open_idx ON calls (started_at) WHERE ended_at IS NULL;
CREATE INDEX calls_agent_started_at_idx ON calls (agent, started_at) WHERE agent IS NOT NULL;
CREATE INDEX calls_queue_started_at_idx ON calls (queue, started_at) WHERE queue IS NOT NULL;

-- No foreign key to calls: events may reach the database before their call's
-- snapshot (or survive a snapshot the database refused); reports join.
CREATE TABLE call_events (
    call_id text NOT NULL,
    seq     integer NOT NULL,                          -- per call, from 1
    at      timestamptz NOT NULL,
    kind    text NOT NULL,                             -- e.g. 'call.started'
    data    jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (call_id, seq)
);

CREATE INDEX call_events_at_idx ON call_events (at);

CREATE TABLE agents (
    agent_id   text PRIMARY KEY,                       -- stable, apart from the device
    name       text NOT NULL,
    device     text,
    updated_at timestamptz NOT NULL
);
