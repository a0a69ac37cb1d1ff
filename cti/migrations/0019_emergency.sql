-- Emergency mode (docs/emergency.md): switches and what happened to each call they reached.

-- One row per switch as declared: scope, action, announcement, schedule, and the
-- audit of who switched it on (declared_*) and off (ended_*), when and why.
CREATE TABLE emergency_switches (
    id            bigserial PRIMARY KEY,
    scope         text NOT NULL CHECK (scope IN ('all', 'node', 'queue', 'did', 'prefix', 'ivr')),
    value         text NOT NULL DEFAULT '',
    action        text NOT NULL CHECK (action IN ('continue', 'hangup', 'queue', 'number', 'voicemail')),
    target        text NOT NULL DEFAULT '',
    prompt        text NOT NULL DEFAULT '',                  -- the announcement Asterisk plays ('' none)
    announcement  text NOT NULL DEFAULT '',                  -- its text, when spoken by espeak-ng
    reason        text NOT NULL,
    preset        text,                                      -- a preset the phone feature code toggles
    starts_at     timestamptz NOT NULL DEFAULT now(),
    ends_at       timestamptz,                               -- scheduled end (NULL: until switched off)
    declared_at   timestamptz NOT NULL DEFAULT now(),
    declared_by   text NOT NULL,                             -- user name, 'cli:<os user>' or 'phone:<channel>'
    ended_at      timestamptz,
    ended_by      text,
    ended_reason  text,
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX emergency_switches_open_idx ON emergency_switches (id) WHERE ended_at IS NULL;

-- Every call a switch reached, and what happened to it: step 'route' (a new call
-- at the route step) or 'waiting' (moved out of the ACD's wait); outcome the
-- action carried out ('hangup', 'queue', ...) or 'failed' with detail.
CREATE TABLE emergency_calls (
    id          bigserial PRIMARY KEY,
    switch_id   bigint NOT NULL REFERENCES emergency_switches (id),
    call_id     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    step        text NOT NULL CHECK (step IN ('route', 'waiting')),
    outcome     text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX emergency_calls_switch_idx ON emergency_calls (switch_id, at);
