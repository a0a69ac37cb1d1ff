-- Knowledge base (docs/knowledge.md, "Ranking"): articles may be linked to the products they
-- are about, a customer holds products, and KB admins keep a list of synonyms the
-- suggestions widen the call's words with. Emergency mode (docs/emergency.md): a switch may
-- take a call at the IVR's entry, before the menu.

ALTER TABLE kb_article_links DROP CONSTRAINT kb_article_links_kind_check;
ALTER TABLE kb_article_links ADD CONSTRAINT kb_article_links_kind_check
    CHECK (kind IN ('queue', 'skill', 'ivr', 'ticket_type', 'product'));

-- The products (or services, plans) a customer holds, by the names articles are linked to.
CREATE TABLE customer_products (
    customer_id text NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    product     text NOT NULL CHECK (length(product) BETWEEN 1 AND 64),
    since       date,
    PRIMARY KEY (customer_id, product)
);

-- Synonyms: one row per phrase; the phrases of one group (same language and name) mean the
-- same thing to a caller. ``lexemes``: the phrase as the language's text search parses it,
-- which is what the suggestions compare with the call's words.
CREATE TABLE kb_synonyms (
    language    text NOT NULL CHECK (language ~ '^[a-z]{2}$'),
    grp         text NOT NULL CHECK (length(grp) BETWEEN 1 AND 40),
    phrase      text NOT NULL CHECK (length(phrase) BETWEEN 1 AND 60),
    lexemes     text[] GENERATED ALWAYS AS (tsvector_to_array(to_tsvector(kb_ts_config(language), phrase))) STORED,
    updated_by  text NOT NULL DEFAULT 'seed',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (language, grp, phrase)
);

-- A seed of everyday contact-center synonyms, written from general usage (not from the test
-- set's calls); admins edit the list with PUT /api/kb/synonyms.
INSERT INTO kb_synonyms (language, grp, phrase)
SELECT l, g, p FROM (VALUES
    ('en', 'bill', ARRAY['bill', 'invoice', 'statement']),
    ('en', 'refund', ARRAY['refund', 'money back', 'reimburse', 'repayment']),
    ('en', 'cancel', ARRAY['cancel', 'terminate', 'termination', 'end the contract']),
    ('en', 'internet', ARRAY['internet', 'broadband', 'connection']),
    ('en', 'mobile', ARRAY['mobile', 'cell phone', 'cellphone', 'smartphone']),
    ('en', 'login', ARRAY['log in', 'login', 'sign in', 'logon']),
    ('en', 'password', ARRAY['password', 'passcode', 'passphrase']),
    ('en', 'parcel', ARRAY['parcel', 'package', 'shipment']),
    ('en', 'courier', ARRAY['courier', 'carrier', 'delivery driver']),
    ('en', 'faulty', ARRAY['faulty', 'defective', 'broken', 'damaged']),
    ('en', 'price', ARRAY['price', 'tariff', 'rate', 'cost']),
    ('en', 'discount', ARRAY['discount', 'promotion', 'promo', 'offer']),
    ('en', 'move', ARRAY['move house', 'moving', 'relocate', 'new address']),
    ('en', 'complaint', ARRAY['complaint', 'complain', 'dissatisfied']),
    ('en', 'signal', ARRAY['signal', 'coverage', 'reception']),
    ('en', 'late', ARRAY['late', 'delayed', 'overdue']),
    ('en', 'tv', ARRAY['tv', 'television', 'telly']),
    ('en', 'contract', ARRAY['contract', 'agreement', 'subscription']),
    ('en', 'email', ARRAY['email', 'e-mail', 'mail']),
    ('en', 'hacked', ARRAY['hacked', 'compromised', 'breached']),
    ('en', 'abroad', ARRAY['abroad', 'overseas', 'travelling']),
    ('en', 'router', ARRAY['router', 'modem', 'hub']),
    ('en', 'outage', ARRAY['outage', 'offline', 'no service']),
    ('en', 'compensation', ARRAY['compensation', 'goodwill credit']),
    ('en', 'cheaper', ARRAY['cheaper', 'lower price', 'reduce the bill']),
    ('fr', 'facture', ARRAY['facture', 'relevé']),
    ('fr', 'remboursement', ARRAY['remboursement', 'rembourser', 'avoir']),
    ('fr', 'resilier', ARRAY['résilier', 'résiliation', 'annuler']),
    ('fr', 'colis', ARRAY['colis', 'paquet', 'envoi']),
    ('fr', 'livreur', ARRAY['livreur', 'transporteur', 'coursier']),
    ('fr', 'panne', ARRAY['panne', 'coupure', 'hors service']),
    ('fr', 'prix', ARRAY['prix', 'tarif', 'coût']),
    ('fr', 'mobile', ARRAY['mobile', 'portable', 'smartphone']),
    ('fr', 'internet', ARRAY['internet', 'connexion', 'box']),
    ('fr', 'retard', ARRAY['retard', 'en retard', 'pas arrivé']),
    ('fr', 'identifiant', ARRAY['identifiant', 'login', 'nom d''utilisateur']),
    ('fr', 'abime', ARRAY['abîmé', 'endommagé', 'cassé', 'défectueux'])
) AS s(l, g, ps), unnest(s.ps) AS p;

-- The emergency step of the IVR's entry (docs/emergency.md, "Before the menu").
ALTER TABLE emergency_calls DROP CONSTRAINT emergency_calls_step_check;
ALTER TABLE emergency_calls ADD CONSTRAINT emergency_calls_step_check
    CHECK (step IN ('ivr', 'route', 'waiting'));
