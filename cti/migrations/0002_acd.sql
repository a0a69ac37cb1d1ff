-- The agent state log: every change of every agent's state, for reports
-- (occupancy, not-ready time by reason, login time).
CREATE TABLE agent_states (
    agent_id text NOT NULL,
    at       timestamptz NOT NULL,
    state    text NOT NULL CHECK (state IN (
                 'logged_out', 'available', 'reserved', 'on_call', 'wrapup', 'not_ready')),
    previous text,
    reason   text,
    PRIMARY KEY (agent_id, at, state)
);

CREATE INDEX agent_states_at_idx ON agent_states (at);
