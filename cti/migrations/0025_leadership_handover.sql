-- Planned handover (docs/ha.md, "Planned handover"): `cti handover` sets
-- handover_requested; the leader sees it in its next renewal, stops acting, and marks
-- the row released (holder and epoch unchanged), so a standby takes over at once
-- instead of waiting a ttl. A takeover clears both.
ALTER TABLE leadership
    ADD COLUMN released boolean NOT NULL DEFAULT false,
    ADD COLUMN handover_requested boolean NOT NULL DEFAULT false;
