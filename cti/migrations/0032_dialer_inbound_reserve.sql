-- A campaign's reserve for inbound when its agents also serve inbound queues (docs/dialer.md,
-- "Blending"): JSON read by dialer/blending.py ({"agents", "service_level", "arrivals_min"}),
-- NULL meaning none beyond "no call while an inbound caller waits". The API checks every field.
ALTER TABLE dialer_campaigns
    ADD COLUMN reserve jsonb CHECK (reserve IS NULL OR jsonb_typeof(reserve) = 'object');
