-- The campaign runner (docs/dialer.md, "The runner"): what a campaign does with machines,
-- how long it rings, the prompts its calls play; what AMD said of each attempt and how
-- long it rang.

ALTER TABLE dialer_campaigns
    ADD COLUMN machine_action   text NOT NULL DEFAULT 'retry' CHECK (machine_action IN ('retry', 'voicemail')),
    -- The law's minimum ring is 15 s before a call may count as "no answer".
    ADD COLUMN ring_s           integer NOT NULL DEFAULT 25 CHECK (ring_s BETWEEN 15 AND 120),
    -- Prompt references (a stock sound or an absolute path without extension), as the IVR's.
    ADD COLUMN abandon_prompt   text CHECK (abandon_prompt ~ '^/?[A-Za-z0-9_][A-Za-z0-9_./-]{0,200}$'
                                            AND abandon_prompt !~ '[.][.]'),
    ADD COLUMN voicemail_prompt text CHECK (voicemail_prompt ~ '^/?[A-Za-z0-9_][A-Za-z0-9_./-]{0,200}$'
                                            AND voicemail_prompt !~ '[.][.]'),
    ADD COLUMN skills           text CHECK (skills ~ '^[A-Za-z0-9_:, -]{0,200}$');

ALTER TABLE dialer_attempts
    ADD COLUMN amd_cause text CHECK (length(amd_cause) <= 100),
    ADD COLUMN rang_ms   integer CHECK (rang_ms >= 0);

-- Preview mode (the agent desktop): the campaign's script and survey shown to the agent,
-- a lead held for the agent who is looking at it, what the agent recorded.
ALTER TABLE dialer_campaigns
    ADD COLUMN script text NOT NULL DEFAULT '' CHECK (length(script) <= 20000),
    ADD COLUMN survey jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(survey) = 'array');

ALTER TABLE dialer_leads
    ADD COLUMN reserved_by    text CHECK (length(reserved_by) <= 64),
    ADD COLUMN reserved_until timestamptz;

ALTER TABLE dialer_attempts
    ADD COLUMN disposition text CHECK (length(disposition) <= 64),
    ADD COLUMN answers     jsonb;
