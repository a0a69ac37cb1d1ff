-- The agent's result of a campaign call the runner connected (docs/dialer.md, "The agent's
-- result"): when the connected call hung up (the clock of the "no result" sweep) and when
-- its result was recorded (once: a second is refused).
ALTER TABLE dialer_attempts
    ADD COLUMN hung_up_at timestamptz,
    ADD COLUMN result_at  timestamptz;

-- The sweep looks for answered attempts with no result yet.
CREATE INDEX dialer_attempts_awaiting_result ON dialer_attempts (ended_at)
    WHERE outcome = 'answered' AND result_at IS NULL;
