-- People and machines that use the API: users (agents, supervisors, QA, admins),
-- their login sessions, and API keys for machine clients. No secret is stored:
-- passwords as argon2id hashes (PHC strings), session tokens and API keys as
-- SHA-256 digests (they are 256-bit random values, so a fast digest is enough).

CREATE TABLE users (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- lower case: the API lower-cases what it is given, so names are case-insensitive
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{0,63}$'),
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 128),
    role          text NOT NULL CHECK (role IN ('agent', 'supervisor', 'qa', 'admin')),
    agent_id      text UNIQUE,                       -- the ACD agent this user is (acd config id)
    team          text,
    password_hash text,                              -- argon2id; NULL: no password login
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id      bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE api_keys (
    key_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role         text NOT NULL CHECK (role IN ('agent', 'supervisor', 'qa', 'admin')),
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
