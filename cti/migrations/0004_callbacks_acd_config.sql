-- Callback requests: a caller who asked to be called back (from the wait, the
-- IVR or at the queue's maximum wait). The request keeps the caller's place:
-- `since` is when their wait began. One request per call (the call's id).
CREATE TABLE callbacks (
    callback_id  text PRIMARY KEY,                     -- the id of the call that asked
    number       text NOT NULL CHECK (number ~ '^\+?[0-9]{3,20}$'),
    queue        text NOT NULL,
    skills       text NOT NULL DEFAULT '',
    priority     integer,
    customer_id  text,
    since        timestamptz NOT NULL,                 -- the wait began: the place kept
    requested_at timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'dialing', 'connected', 'failed', 'cancelled')),
    attempts     integer NOT NULL DEFAULT 0,           -- times the customer was dialled
    not_before   timestamptz,                          -- a retry waits until then
    agent_id     text,                                 -- the agent of the last attempt
    last_leg     text,                                 -- the call id of the last attempt
    last_result  text,                                 -- Dial status of the last attempt
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX callbacks_open_idx ON callbacks (since) WHERE status IN ('pending', 'dialing');

-- Routing configuration versions (acd.config.AcdConfig as JSON): the newest
-- is in force. Loaded from the file at start when it changed, or saved
-- through the API.
CREATE TABLE acd_config_versions (
    version    serial PRIMARY KEY,
    document   jsonb NOT NULL,
    source     text NOT NULL,                          -- 'file:<path>' or 'api:<user>'
    created_at timestamptz NOT NULL DEFAULT now()
);
