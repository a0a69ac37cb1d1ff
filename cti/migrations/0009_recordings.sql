-- Call recordings (docs/recording.md): one row per recording, its pauses,
-- every access to its audio, and the quality reviews sampled from them.
-- No foreign key to calls: a recording row may be written before its call's
-- snapshot (see call_events).

CREATE TABLE recordings (
    recording_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id       text NOT NULL,
    segment       integer NOT NULL DEFAULT 1 CHECK (segment >= 1),  -- n-th recording of the call
    agent         text,                                  -- the agent who answered (ACD id)
    agents        text[] NOT NULL DEFAULT '{}',          -- every agent on the call while recorded
    queue         text,
    caller_num    text,
    sides         text NOT NULL CHECK (sides IN ('mixed', 'agent', 'caller')),
    reason        text NOT NULL CHECK (reason IN ('policy', 'on_demand')),
    started_by    text,                                   -- 'policy' or the API user
    -- A bare name inside the recording directory: never a path.
    file_name     text NOT NULL UNIQUE CHECK (file_name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.wav$'
                                              AND file_name !~ '\.\.'),
    state         text NOT NULL CHECK (state IN ('recording', 'paused', 'stopped', 'saved', 'failed',
                                                 'deleted')),
    started_at    timestamptz NOT NULL,
    stopped_at    timestamptz,
    duration_s    numeric,                                -- from the WAV header
    -- From the start of the recording to its first audio: MixMonitor writes only
    -- when frames flow (a phone that answers may wait for media first). Taken as
    -- stop - start - duration; pause offsets are in file time, after it.
    audio_lead_s  numeric,
    size_bytes    bigint,
    sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    error         text,                                   -- why it failed, or what the sweep found
    deleted_at    timestamptz,
    qa_considered boolean NOT NULL DEFAULT false,         -- looked at by a QA sampling run
    UNIQUE (call_id, segment)
);

CREATE INDEX recordings_started_at_idx ON recordings (started_at);
CREATE INDEX recordings_agent_started_at_idx ON recordings (agent, started_at);
CREATE INDEX recordings_queue_started_at_idx ON recordings (queue, started_at);
CREATE INDEX recordings_caller_idx ON recordings (caller_num);
CREATE INDEX recordings_call_idx ON recordings (call_id);
-- What the retention sweep and the QA sampler read (small, so partial).
CREATE INDEX recordings_kept_idx ON recordings (started_at) WHERE deleted_at IS NULL;
CREATE INDEX recordings_unsampled_idx ON recordings (agent) WHERE NOT qa_considered AND state = 'saved';

CREATE TABLE recording_pauses (
    recording_id bigint NOT NULL REFERENCES recordings (recording_id) ON DELETE CASCADE,
    n            integer NOT NULL CHECK (n >= 1),
    paused_at    timestamptz NOT NULL,
    resumed_at   timestamptz CHECK (resumed_at >= paused_at),
    start_s      numeric NOT NULL,                        -- offsets in the file
    end_s        numeric,
    paused_by    text,
    resumed_by   text,
    PRIMARY KEY (recording_id, n)
);

-- Every fetch of a recording's audio or details, allowed or not.
CREATE TABLE recording_access (
    access_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recording_id bigint NOT NULL,                         -- kept after the recording row is gone
    at           timestamptz NOT NULL DEFAULT now(),
    principal    text NOT NULL,                           -- 'session:ada', 'api_key:crm'
    role         text NOT NULL,
    action       text NOT NULL CHECK (action IN ('stream', 'download', 'details')),
    byte_range   text,                                    -- the Range header asked for
    outcome      text NOT NULL,                           -- 'served', 'refused', 'gone'
    remote       text
);

CREATE INDEX recording_access_recording_idx ON recording_access (recording_id, at);

CREATE TABLE qa_reviews (
    review_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recording_id bigint NOT NULL UNIQUE REFERENCES recordings (recording_id),
    agent        text NOT NULL,
    sampled_at   timestamptz NOT NULL DEFAULT now(),
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'scored')),
    reviewer     text,
    scored_at    timestamptz,
    form         jsonb,                                   -- the criteria the score was given on
    points       jsonb,                                   -- criterion id -> points
    total        numeric CHECK (total BETWEEN 0 AND 100),
    comment      text
);

CREATE INDEX qa_reviews_agent_idx ON qa_reviews (agent, state);
