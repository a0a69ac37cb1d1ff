-- A campaign's reserve for inbound when its agents also serve inbound queues (docs/dialer.md,
-- "Blending"): JSON read by dialer/blending.py ({"agents", "service_level", "arrivals_min"}),
-- NULL meaning none beyond "no call while an inbound caller waits". The API checks every field.
ALTER TABLE dialer_campaigns
    ADD COLUMN reserve jsonb CHECK (reserve IS NULL OR jsonb_typeof(reserve) = 'object');

-- An agent's result of a campaign attempt written back to the customer record (docs/dialer.md,
-- "Results on the customer record", dialer/writeback.py): the note it left.
ALTER TABLE dialer_attempts
    ADD COLUMN customer_note_id bigint REFERENCES customer_notes (note_id) ON DELETE SET NULL;
