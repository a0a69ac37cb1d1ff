-- The knowledge base (docs/knowledge.md): articles with their versions and links, the
-- proposals agents make from a call's wrap-up, and feedback on suggestions.
-- The ranking itself lives in kb/ranking.py; the database finds candidates by full-text
-- search, one configuration per article language.

-- The text search configuration of an article language (ISO 639-1). IMMUTABLE so that
-- the generated column below may use it; a language without its own configuration
-- falls back to 'simple' (no stemming, no stop words).
CREATE FUNCTION kb_ts_config(lang text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lang
        WHEN 'en' THEN 'english'::regconfig
        WHEN 'fr' THEN 'french'::regconfig
        WHEN 'de' THEN 'german'::regconfig
        WHEN 'es' THEN 'spanish'::regconfig
        WHEN 'it' THEN 'italian'::regconfig
        WHEN 'nl' THEN 'dutch'::regconfig
        WHEN 'pt' THEN 'portuguese'::regconfig
        ELSE 'simple'::regconfig
    END
$$;

-- The tags as one text (array_to_string is only STABLE for any array; for text[] it is immutable).
CREATE FUNCTION kb_tags_text(tags text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT array_to_string(tags, ' ') $$;

CREATE TABLE kb_articles (
    article_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    body        text NOT NULL CHECK (length(body) <= 100000),          -- Markdown
    tags        text[] NOT NULL DEFAULT '{}',
    language    text NOT NULL DEFAULT 'en' CHECK (language ~ '^[a-z]{2}$'),
    owner       text NOT NULL,
    review_at   date,                                                  -- when it is due a review
    archived    boolean NOT NULL DEFAULT false,
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),       -- = its latest kb_article_versions row
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Weights: title A, tags B, body C (ts_rank's defaults weigh A 1.0, B 0.4, C 0.2).
    search      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector(kb_ts_config(language), title), 'A') ||
        setweight(to_tsvector(kb_ts_config(language), kb_tags_text(tags)), 'B') ||
        setweight(to_tsvector(kb_ts_config(language), body), 'C')
    ) STORED
);

CREATE INDEX kb_articles_search_idx ON kb_articles USING gin (search);
CREATE INDEX kb_articles_language_idx ON kb_articles (language) WHERE NOT archived;
CREATE INDEX kb_articles_review_idx ON kb_articles (review_at) WHERE NOT archived;

-- What an article is for: a queue, a skill, an IVR branch (a menu node id) or a ticket type.
CREATE TABLE kb_article_links (
    article_id  bigint NOT NULL REFERENCES kb_articles (article_id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('queue', 'skill', 'ivr', 'ticket_type')),
    target      text NOT NULL CHECK (length(target) BETWEEN 1 AND 64),
    PRIMARY KEY (article_id, kind, target)
);

CREATE INDEX kb_article_links_target_idx ON kb_article_links (kind, target);

-- Every version as it was saved (version 1 is the creation).
CREATE TABLE kb_article_versions (
    article_id  bigint NOT NULL REFERENCES kb_articles (article_id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version >= 1),
    title       text NOT NULL,
    body        text NOT NULL,
    tags        text[] NOT NULL,
    links       jsonb NOT NULL DEFAULT '[]'::jsonb,                      -- [{kind, target}]
    author      text NOT NULL,
    note        text,                                                  -- why it changed
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, version)
);

-- A new article or an edit proposed by an agent (from a call's wrap-up), decided by a
-- supervisor: approving a 'new' creates the article, approving an 'edit' saves a version.
CREATE TABLE kb_proposals (
    proposal_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('new', 'edit')),
    article_id  bigint REFERENCES kb_articles (article_id) ON DELETE CASCADE,  -- a 'new' one's, once approved
    base_version integer,                                              -- the version an edit started from
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    body        text NOT NULL CHECK (length(body) <= 100000),
    tags        text[] NOT NULL DEFAULT '{}',
    language    text NOT NULL DEFAULT 'en' CHECK (language ~ '^[a-z]{2}$'),
    call_id     text,                                                  -- the call it came from
    proposer    text NOT NULL,
    agent_id    text,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_by  text,
    decided_at  timestamptz,
    decision_note text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'new' OR article_id IS NOT NULL)
);

CREATE INDEX kb_proposals_pending_idx ON kb_proposals (created_at) WHERE state = 'pending';

-- "Helped" / "not relevant" on a suggested or opened article, once per call, agent and article
-- (a second mark replaces the first).
CREATE TABLE kb_feedback (
    article_id  bigint NOT NULL REFERENCES kb_articles (article_id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    agent       text NOT NULL,                                         -- the agent id, else the user name
    helped      boolean NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, call_id, agent)
);

-- Counts the ranking reads (kb/ranking.py smooths them), kept by the store with each mark.
CREATE TABLE kb_feedback_totals (
    article_id   bigint PRIMARY KEY REFERENCES kb_articles (article_id) ON DELETE CASCADE,
    helped       integer NOT NULL DEFAULT 0 CHECK (helped >= 0),
    not_relevant integer NOT NULL DEFAULT 0 CHECK (not_relevant >= 0)
);
