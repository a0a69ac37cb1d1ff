-- Field engineers (dispatch picks one of the ticket's region), the ticket fields edited
-- outside the state machine (priority, notes), and the log of dispatch notifications.

CREATE TABLE engineers (
    engineer_id text PRIMARY KEY CHECK (engineer_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region      text NOT NULL CHECK (region ~ '^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$'),
    contact     text NOT NULL DEFAULT '' CHECK (length(contact) <= 500),   -- where notifications go
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX engineers_region_idx ON engineers (region) WHERE active;

ALTER TABLE tickets
    ADD COLUMN priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    ADD COLUMN notes    text NOT NULL DEFAULT '' CHECK (length(notes) <= 4000);

-- One row per notification a change called for (seq: the audit row that caused it).
-- outcome 'sent': handed to the sender (a webhook: queued for its subscriptions, whose
-- attempts are in webhook_deliveries); 'failed': the sender refused or timed out.
CREATE TABLE ticket_notifications (
    notification_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id       bigint NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    event           text NOT NULL,
    engineer_id     text NOT NULL,
    sender          text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error           text,
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ticket_notifications_ticket_idx ON ticket_notifications (ticket_id, seq);
