-- Live lists (docs/dialer.md, "Live lists"): a campaign's leads come from a CSV import
-- (source 'csv', as before) or from a live query over the tickets, kept in step with them by
-- dialer/live_store.py: 'tickets_callback' (tickets awaiting the confirmation callback after a
-- visit) or 'tickets_visit' (tickets whose visit failed or whose customer was unsatisfied,
-- waiting for a call to arrange the next visit). The source is chosen at creation only.
ALTER TABLE dialer_campaigns
    ADD COLUMN source text NOT NULL DEFAULT 'csv'
        CHECK (source IN ('csv', 'tickets_callback', 'tickets_visit'));

-- A lead of a live list names its ticket and the ticket's stay on the list: the audit seq of
-- the transition that put the ticket in the list's state (crm.tickets; ticket_audit.seq). A
-- ticket that leaves the list and comes back is a new stay and gets a new lead.
ALTER TABLE dialer_leads
    ADD COLUMN ticket_id bigint REFERENCES tickets (ticket_id) ON DELETE SET NULL,
    ADD COLUMN ticket_entry integer CHECK (ticket_entry >= 1),
    -- (a ticket deleted leaves the entry: the lead stays out of the number's uniqueness below)
    ADD CONSTRAINT dialer_leads_ticket_entry_pair CHECK (ticket_id IS NULL OR ticket_entry IS NOT NULL);

-- One number once per campaign still holds for imported lists; a live list may call one
-- customer about two tickets, so there a lead is unique by its ticket's stay.
ALTER TABLE dialer_leads DROP CONSTRAINT dialer_leads_campaign_id_phone_key;
CREATE UNIQUE INDEX dialer_leads_campaign_phone ON dialer_leads (campaign_id, phone) WHERE ticket_entry IS NULL;
CREATE UNIQUE INDEX dialer_leads_ticket_stay ON dialer_leads (campaign_id, ticket_id, ticket_entry)
    WHERE ticket_id IS NOT NULL;
CREATE INDEX dialer_leads_ticket ON dialer_leads (ticket_id) WHERE ticket_id IS NOT NULL;

-- The visit list's query, as the callback list has tickets_callback_idx.
CREATE INDEX tickets_to_redispatch_idx ON tickets (ticket_id) WHERE state = 'to_redispatch';
