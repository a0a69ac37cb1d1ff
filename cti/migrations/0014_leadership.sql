-- Leadership (docs/ha.md): one row per cluster of `cti serve` processes sharing this
-- database. The holder renews heartbeat_at (the database's clock) while it leads;
-- a takeover is one compare-and-set UPDATE that raises the epoch, the fencing token
-- every routing action carries.

CREATE TABLE leadership (
    cluster      text PRIMARY KEY CHECK (length(cluster) BETWEEN 1 AND 100),
    holder       text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    epoch        bigint NOT NULL CHECK (epoch > 0),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    taken_at     timestamptz NOT NULL DEFAULT now()
);

-- Epochs only rise, whatever writes the row.
CREATE FUNCTION leadership_epoch_rises() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch < OLD.epoch THEN
        RAISE EXCEPTION 'leadership epoch may not go back (% -> %)', OLD.epoch, NEW.epoch;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER leadership_epoch_rises BEFORE UPDATE ON leadership
    FOR EACH ROW EXECUTE FUNCTION leadership_epoch_rises();
