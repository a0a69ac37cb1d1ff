-- A campaign's own calling window and retry rules (docs/dialer.md, "Per campaign"): JSON
-- read by dialer/campaign_rules.py, NULL meaning the defaults (Monday to Saturday 09:00 to
-- 20:00 local; the default RetryRules). The API checks every field before writing.
ALTER TABLE dialer_campaigns
    ADD COLUMN windows jsonb CHECK (windows IS NULL OR jsonb_typeof(windows) = 'object'),
    ADD COLUMN retry   jsonb CHECK (retry IS NULL OR jsonb_typeof(retry) = 'object');

-- The abandonment ledger and the measured pacing inputs are rebuilt from a campaign's
-- attempts of the last 30 days when the runner starts (or a node takes the lead).
CREATE INDEX dialer_attempts_campaign_ended ON dialer_attempts (campaign_id, ended_at);
