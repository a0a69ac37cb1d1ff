-- A standby's shadow follows the leader's callback requests by their last change
-- (acd/shadow.py, docs/ha.md "Warm standby"): every poll reads the rows changed
-- since a time, which needs this index once the table holds every request ever made.
CREATE INDEX callbacks_updated_idx ON callbacks (updated_at);
