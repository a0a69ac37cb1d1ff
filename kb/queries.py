"""The suggestions' SQL (kb.store.suggest), put together from constant pieces (pure text).

``LEXEMES`` turns the call's notes and tickets into lexemes of its language and finds their
synonyms; ``candidates`` builds the query that picks the candidates and reads what the ranking
needs of each (docs/knowledge.md, "Ranking"). The placeholders (MATCHED, LINKED, TITLED, PICKQ, TSPICK,
PICK, TIE, OTHER, RANKW, NORM) are replaced by constants of this module, never by input; every
value travels as a parameter ($1 to $28).
"""
from __future__ import annotations

# The call's words as lexemes, in the call's language, and their synonyms (``kb_synonyms``):
# every lexeme of a group one of whose phrases the notes or tickets hold (all of the phrase's
# lexemes), less those the call already has. $4 false: no synonyms. ``pn`` and ``pt``: each
# lexeme of the notes and tickets with its position (for ``ranking.query_pairs``).
LEXEMES = """
WITH q AS (SELECT tsvector_to_array(to_tsvector(kb_ts_config($1), $2)) AS ln,
                  tsvector_to_array(to_tsvector(kb_ts_config($1), $3)) AS lt)
SELECT q.ln, q.lt,
       ARRAY(SELECT u.lexeme || ':' || x FROM unnest(to_tsvector(kb_ts_config($1), $2)) u, unnest(u.positions) x
             ORDER BY x) AS pn,
       ARRAY(SELECT u.lexeme || ':' || x FROM unnest(to_tsvector(kb_ts_config($1), $3)) u, unnest(u.positions) x
             ORDER BY x) AS pt,
       CASE WHEN $4 THEN ARRAY(
           SELECT DISTINCT x FROM kb_synonyms k, unnest(k.lexemes) x
           WHERE k.language = $1 AND x <> ALL (q.ln || q.lt)
             AND k.grp IN (SELECT m.grp FROM kb_synonyms m WHERE m.language = $1
                           AND cardinality(m.lexemes) > 0 AND m.lexemes <@ (q.ln || q.lt)))
       ELSE '{}'::text[] END AS le
FROM q
"""

# Candidates, in two steps. First the articles the call's specific words pick (PICKQ: the
# notes' and tickets' lexemes and their synonyms, without those too common to pick anything,
# $14; ordered by the rarity of every lexeme, $23 with its weight in $15, ``ranking.pick_weights``;
# or, when every word is too common, the whole notes and tickets queries; the IVR and queue
# words when there are none):
# the best text matches, and the best of the articles linked to the call's targets (which may
# match no word: those with the strongest links first, as ``ranking.link_boost`` weighs them,
# $24). Only then the rank of each input for those few: the IVR and queue words
# (billing, tech) match thousands of articles and are not worth ranking all of them
# (bench/kb_suggest.py). Then the articles the call's words were taught to by agents' marks
# ($26, ``ranking.learned_pick``: their text may hold none of them). An article about products none of which the customer holds ($19;
# empty: not known) counts $20 of its score in the pick, as in the ranking.
_CANDIDATES = """
WITH q AS (
    SELECT websearch_to_tsquery(kb_ts_config($1), $2) AS qn, websearch_to_tsquery(kb_ts_config($1), $3) AS qt,
           websearch_to_tsquery(kb_ts_config($1), $4) AS qi, websearch_to_tsquery(kb_ts_config($1), $5) AS qq,
           $8::float4 AS wn, $9::float4 AS wt, $10::float4 AS wi, $11::float4 AS wq,
           $16::text[] AS ln, $17::text[] AS lt, $18::text[] AS le,
           $15::float8[] AS pw, $21::float8 AS avg_len, $22::float8 AS b,   -- typed here: not every pick uses them
           $23::text[] AS px, $24::float8[] AS lw, $25::float8[] AS fw
), r AS (
    SELECT (SELECT string_agg(quote_literal(x), ' | ') FROM unnest($14::text[]) x)::tsquery AS qr,
           (SELECT string_agg(quote_literal(x) || ':A', ' | ') FROM unnest($27::text[]) x)::tsquery AS qa
), focus AS (
    MATCHED
    UNION
    LINKED
    UNION
    (SELECT a.article_id FROM kb_articles a
     WHERE a.article_id = ANY($26::bigint[]) AND a.language = $1 AND NOT a.archived)
    UNION
    TITLED
)
SELECT a.article_id, a.title, a.tags, length(a.search) AS len,
       ARRAY(SELECT u.lexeme || ':' || array_to_string(u.weights, '') || ':' || array_to_string(u.positions, ',')
             FROM unnest(a.search) u WHERE u.lexeme = ANY(q.ln)) AS mn,
       ARRAY(SELECT u.lexeme || ':' || array_to_string(u.weights, '') || ':' || array_to_string(u.positions, ',')
             FROM unnest(a.search) u WHERE u.lexeme = ANY(q.lt)) AS mt,
       ARRAY(SELECT u.lexeme || ':' || array_to_string(u.weights, '') || ':' || array_to_string(u.positions, ',')
             FROM unnest(a.search) u WHERE u.lexeme = ANY(q.le)) AS me,
       ts_rank(RANKW, a.search, q.qn, NORM) AS rn, ts_rank(RANKW, a.search, q.qt, NORM) AS rt,
       ts_rank(RANKW, a.search, q.qi, NORM) AS ri, ts_rank(RANKW, a.search, q.qq, NORM) AS rq,
       coalesce(f.helped, 0) AS helped, coalesce(f.not_relevant, 0) AS not_relevant,
       ARRAY(SELECT l.kind || ':' || l.target FROM kb_article_links l WHERE l.article_id = a.article_id) AS links
FROM focus JOIN kb_articles a USING (article_id) CROSS JOIN q LEFT JOIN kb_feedback_totals f USING (article_id)
"""
_TS_NOTES = "q.wn * ts_rank(RANKW, a.search, q.qn, NORM) + q.wt * ts_rank(RANKW, a.search, q.qt, NORM)"
# The rarity of the pick's lexemes an article holds, each by its best field (title, tags, body
# as ``Weights.fields``, $25), over the article's length against the mean ($21; BM25's b, $22).
_IDF_PICK = ("((SELECT coalesce(sum(p.w * CASE WHEN 'A' = ANY(u.weights) THEN q.fw[1] WHEN 'B' = ANY(u.weights) "
             "THEN q.fw[2] ELSE q.fw[3] END), 0) FROM unnest(a.search) u "
             "JOIN unnest(q.px, q.pw) AS p(lx, w) ON p.lx = u.lexeme) "
             "/ (1 - $22::float8 + $22::float8 * length(a.search) / $21::float8))")
_OTHER = ("(CASE WHEN cardinality($19::text[]) > 0 AND EXISTS (SELECT 1 FROM kb_article_links l "
          "WHERE l.article_id = a.article_id AND l.kind = 'product') AND NOT EXISTS (SELECT 1 FROM "
          "kb_article_links l WHERE l.article_id = a.article_id AND l.kind = 'product' AND l.target = ANY($19)) "
          "THEN $20::float8 ELSE 1 END)")
PICKS = {
    # (what picks, how the pick orders them)
    "idf": ("coalesce(r.qr, q.qn || q.qt)", _IDF_PICK),
    "ts": ("coalesce(r.qr, q.qn || q.qt)", _TS_NOTES),
    "general": ("(q.qi || q.qq)",
                "q.wi * ts_rank(RANKW, a.search, q.qi, NORM) + q.wq * ts_rank(RANKW, a.search, q.qq, NORM)"),
}

# The articles matching the call's words, by ``PICK``.
_MATCHED = """(SELECT a.article_id FROM kb_articles a, q, r
     WHERE a.language = $1 AND NOT a.archived AND a.search @@ PICKQ
     ORDER BY PICK * OTHER DESC, TIE LIMIT $12)"""
# The same when every word of the call is too common to pick (thousands of articles match):
# the best 480 by ``ts_rank`` (TSPICK, cheap), then those by their rarity (each weighing costs).
_MATCHED_COMMON = """(SELECT a.article_id
     FROM (SELECT a.article_id FROM kb_articles a, q, r
           WHERE a.language = $1 AND NOT a.archived AND a.search @@ PICKQ
           ORDER BY TSPICK * OTHER DESC, TIE LIMIT 8 * $12) m
     JOIN kb_articles a USING (article_id), q, r
     ORDER BY PICK * OTHER DESC, TIE LIMIT $12)"""

# The articles whose title holds one of the call's words too common to pick by themselves ($27:
# "late" is in hundreds of bodies, in few titles; "Late payment fee"): the best 8 times $28
# by ``ts_rank`` of the title matches (cheap), then the $28 best of those by ``PICK``. None when
# $27 is empty (qa is NULL).
_TITLED = """(SELECT a.article_id
     FROM (SELECT a.article_id FROM kb_articles a, q, r
           WHERE r.qa IS NOT NULL AND a.language = $1 AND NOT a.archived AND a.search @@ r.qa
           ORDER BY ts_rank(RANKW, a.search, r.qa, NORM) * OTHER DESC, TIE LIMIT 8 * $28) m
     JOIN kb_articles a USING (article_id), q, r
     ORDER BY PICK * OTHER DESC, TIE LIMIT $28)"""

# Equal scores at a LIMIT (generated near-duplicates, articles with the same links) are cut
# in an order that depends on neither the plan nor the age of the articles: a hash of the id.
_TIE = "hashint8(a.article_id)"

# ts_rank's weights for D, C, B, A (body C, tags B, title A) and its normalisation (1: divide
# by 1 + the log of the article's length in words).
RANK_WEIGHTS = "{0.1, 0.4, 0.6, 1.0}"
RANK_NORMALISATION = 1


# The articles linked to the call's targets, by ``PICK``, ``ts_rank``'s pick.
_LINKED_TS = """(SELECT a.article_id FROM kb_articles a, q, r
     WHERE a.article_id IN (SELECT l.article_id FROM kb_article_links l
                            JOIN unnest($6::text[], $7::text[]) AS t(kind, target)
                              ON l.kind = t.kind AND l.target = t.target)
       AND a.language = $1 AND NOT a.archived
     ORDER BY PICK * OTHER DESC, TIE LIMIT $13)"""
# The same by the worth of the links ($24, ``ranking.target_weights``: the IVR leaf more than the
# queue), then ``PICK``: the strongest linked first, ties (thousands of articles share a queue
# link) by ``ts_rank`` (TSPICK), cheap enough for all of them; then the few kept (four times as
# many as asked) weighed by their text's rarity (each weighing costs).
_LINKED_STRONGEST = """(SELECT a.article_id
     FROM (SELECT a.article_id, k.lw
           FROM (SELECT l.article_id, sum(t.w) AS lw FROM kb_article_links l
                 JOIN unnest($6::text[], $7::text[], $24::float8[]) AS t(kind, target, w)
                   ON l.kind = t.kind AND l.target = t.target
                 GROUP BY l.article_id) k
           JOIN kb_articles a USING (article_id), q
           WHERE a.language = $1 AND NOT a.archived
           ORDER BY k.lw * OTHER DESC, TSPICK * OTHER DESC, TIE LIMIT 4 * $13) k
     JOIN kb_articles a USING (article_id), q, r
     ORDER BY k.lw * OTHER DESC, PICK * OTHER DESC, TIE LIMIT $13)"""


def candidates(pick: str, links_first: bool, common: bool = False) -> str:
    """The candidates' query: ``pick`` one of ``PICKS``; ``links_first``: the linked ones by
    the worth of their links; ``common``: every word of the call is too common to pick."""
    match, order = PICKS[pick]
    cheap = PICKS["general" if pick == "general" else "ts"][1]
    return (_CANDIDATES.replace("MATCHED", _MATCHED_COMMON if common and pick == "idf" else _MATCHED)
            .replace("TITLED", _TITLED).replace("PICKQ", match).replace("LINKED", _LINKED_STRONGEST if links_first else _LINKED_TS)
            .replace("TSPICK", cheap).replace("PICK", order).replace("TIE", _TIE).replace("OTHER", _OTHER)
            .replace("RANKW", f"'{RANK_WEIGHTS}'::float4[]").replace("NORM", str(int(RANK_NORMALISATION))))
