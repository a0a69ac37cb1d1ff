-- Knowledge base (docs/knowledge.md, "What the center already knows" and "Synonyms learned from
-- agents"): where each of a customer's products came from, and the synonyms proposed from what
-- agents mark helpful, for KB admins to approve.

-- Where a customer's product was learned: 'crm' (written by whatever feeds the CRM, and every row
-- before this migration), 'import' (the customers CSV), 'tag' (a customer tag product:NAME),
-- 'ticket' (a ticket naming it), 'feedback' (an article about it marked helpful on the
-- customer's call). A weaker source never replaces a stronger one (kb.products.STRENGTH).
ALTER TABLE customer_products
    ADD COLUMN source text NOT NULL DEFAULT 'crm'
        CHECK (source IN ('crm', 'import', 'tag', 'ticket', 'feedback'));

-- The agent's notes when an article is proposed from a call (their words feed the synonyms'
-- proposals once the article is approved).
ALTER TABLE kb_proposals ADD COLUMN notes text CHECK (length(notes) <= 4000);

-- The words of a call that led to an article (a "Helped" mark, an approved proposal) and that the
-- article does not hold: the evidence synonyms are proposed from. One row per mark.
CREATE TABLE kb_call_words (
    article_id  bigint NOT NULL REFERENCES kb_articles (article_id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    agent       text NOT NULL,
    source      text NOT NULL CHECK (source IN ('helped', 'proposal')),
    language    text NOT NULL CHECK (language ~ '^[a-z]{2}$'),
    words       text[] NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, call_id, agent, source)
);
-- A mark's words find the other marks holding them (kb.learn_store.refresh_proposals).
CREATE INDEX kb_call_words_words_idx ON kb_call_words USING gin (words);

-- Synonyms proposed to KB admins: a caller's word the knowledge base lacks and the word of the
-- article it led to. Approving adds them to kb_synonyms (never done without a person's decision);
-- a decided proposal is not proposed again.
CREATE TABLE kb_synonym_proposals (
    proposal_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    language    text NOT NULL CHECK (language ~ '^[a-z]{2}$'),
    word        text NOT NULL CHECK (length(word) BETWEEN 1 AND 60),
    anchor      text NOT NULL CHECK (length(anchor) BETWEEN 1 AND 60),
    article_id  bigint NOT NULL REFERENCES kb_articles (article_id) ON DELETE CASCADE,
    calls       integer NOT NULL CHECK (calls >= 1),
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    grp         text,                                   -- the synonym group it joined, once approved
    decided_by  text,
    decided_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (language, word, anchor)
);
CREATE INDEX kb_synonym_proposals_pending_idx ON kb_synonym_proposals (calls DESC) WHERE state = 'pending';
