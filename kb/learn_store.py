"""What the knowledge base learns from the center's own data, in PostgreSQL (migration 0034):
the customers' products (``kb.products``) and the synonyms proposed from agents' "Helped" marks
and approved proposals (``kb.learn``). The decisions are pure; this module reads and writes.

Errors are ``kb.store``'s: ``NotFound`` (no such proposal), ``Conflict`` (already decided).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable, Sequence

from kb import learn, products
from kb.store import Conflict, LexemeStats, NotFound

# -- the customers' products --------------------------------------------------------------------


async def known_products(conn: Any) -> list[str]:
    """The product names articles are linked to."""
    return [r["target"] for r in await conn.fetch(
        "SELECT DISTINCT target FROM kb_article_links WHERE kind = 'product' ORDER BY target")]


async def write_products(conn: Any, customer_id: str, found: Iterable[products.Found]) -> list[products.Found]:
    """Add what ``found`` says the customer holds (``kb.products.plan``: a weaker source never
    replaces a stronger one). Returns what was written."""
    found = list(found)
    if not found:
        return []
    existing = {r["product"]: r["source"] for r in await conn.fetch(
        "SELECT product, source FROM customer_products WHERE customer_id = $1", customer_id)}
    todo = products.plan(existing, found)
    if todo:
        await conn.executemany(
            "INSERT INTO customer_products (customer_id, product, since, source) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (customer_id, product) DO UPDATE SET source = EXCLUDED.source, "
            "since = coalesce(customer_products.since, EXCLUDED.since)",
            [(customer_id, f.product, f.since, f.source) for f in todo])
    return todo


async def fill_products(pool: Any, customer_ids: Sequence[str] | None = None) -> dict[str, int]:
    """Fill ``customer_products`` from the tickets (type and title naming a known product) and
    the ``product:NAME`` tags of the customers (all of them when ``customer_ids`` is None).
    Returns the rows written by source."""
    async with pool.acquire() as conn, conn.transaction():
        known = await known_products(conn)
        tickets: dict[str, list[products.TicketFacts]] = {}
        for r in await conn.fetch(
                "SELECT customer_id, type, title, state, created_at::date AS created FROM tickets "
                "WHERE ($1::text[] IS NULL OR customer_id = ANY($1)) ORDER BY customer_id, ticket_id",
                customer_ids):
            tickets.setdefault(r["customer_id"], []).append(
                products.TicketFacts(r["type"], r["title"], r["state"], r["created"]))
        tags: dict[str, list[str]] = {}
        for r in await conn.fetch(
                "SELECT customer_id, tag FROM customer_tags WHERE tag LIKE 'product:%' "
                "AND ($1::text[] IS NULL OR customer_id = ANY($1))", customer_ids):
            tags.setdefault(r["customer_id"], []).append(r["tag"])
        written: dict[str, int] = {}
        for cid in sorted(set(tickets) | set(tags)):
            found = products.from_tickets(tickets.get(cid, []), known) + products.from_tags(tags.get(cid, []))
            for f in await write_products(conn, cid, found):
                written[f.source] = written.get(f.source, 0) + 1
        return written


async def _call_customer(conn: Any, call_id: str) -> str | None:
    return await conn.fetchval("SELECT customer_id FROM customer_calls WHERE call_id = $1 "
                               "ORDER BY linked_at DESC LIMIT 1", call_id)


async def products_from_helped(pool: Any, *, article_id: int, call_id: str, on: date | None = None) -> list[str]:
    """The call's customer holds what the article marked helpful is about (one or two products,
    ``kb.products.from_helped``). Returns the products written."""
    async with pool.acquire() as conn, conn.transaction():
        cid = await _call_customer(conn, call_id)
        if cid is None:
            return []
        about = [r["target"] for r in await conn.fetch(
            "SELECT target FROM kb_article_links WHERE article_id = $1 AND kind = 'product'", article_id)]
        return [f.product for f in await write_products(conn, cid, products.from_helped(about, on))]


# -- synonyms learned from agents ---------------------------------------------------------------


async def _lexemes(conn: Any, language: str, words: Sequence[str]) -> dict[str, list[str]]:
    rows = await conn.fetch("SELECT u.w, tsvector_to_array(to_tsvector(kb_ts_config($1), u.w)) AS lx "
                            "FROM unnest($2::text[]) WITH ORDINALITY AS u(w, i) ORDER BY u.i", language, list(words))
    return {r["w"]: list(r["lx"]) for r in rows}


async def record_words(pool: Any, *, article_id: int, call_id: str, agent: str, source: str, notes: str,
                       ticket_titles: Iterable[str] = (), stats: LexemeStats | None = None) -> list[str]:
    """Keep the call's words the article does not hold as evidence (``kb_call_words``; one row
    per mark, replaced by a second), then propose again (``refresh_proposals``). Returns the
    words kept. Raises ``NotFound`` (no such live article)."""
    async with pool.acquire() as conn:
        art = await conn.fetchrow("SELECT language, tsvector_to_array(search) AS lx FROM kb_articles "
                                  "WHERE article_id = $1 AND NOT archived", article_id)
        if art is None:
            raise NotFound(f"no article {article_id}")
        language = art["language"]
        words = learn.call_words(language, notes, ticket_titles)
        missing = learn.missing_words(await _lexemes(conn, language, words), art["lx"])
        before = await conn.fetchval("SELECT words FROM kb_call_words WHERE article_id = $1 AND call_id = $2 "
                                     "AND agent = $3 AND source = $4", article_id, call_id, agent, source)
        if missing:
            await conn.execute(
                "INSERT INTO kb_call_words (article_id, call_id, agent, source, language, words) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (article_id, call_id, agent, source) "
                "DO UPDATE SET words = EXCLUDED.words, at = now()", article_id, call_id, agent, source, language, missing)
        else:
            await conn.execute("DELETE FROM kb_call_words WHERE article_id = $1 AND call_id = $2 AND agent = $3 "
                               "AND source = $4", article_id, call_id, agent, source)
    # The pairs of this mark's words, and of those a replaced mark of it had.
    await refresh_proposals(pool, language, stats or LexemeStats(), words=sorted({*missing, *(before or [])}))
    return missing


async def forget_words(pool: Any, *, article_id: int, call_id: str, agent: str,
                       stats: LexemeStats | None = None) -> None:
    """A "Helped" mark changed to "not relevant": its evidence goes, and the proposals follow."""
    row = await pool.fetchrow(
        "DELETE FROM kb_call_words WHERE article_id = $1 AND call_id = $2 AND agent = $3 AND source = 'helped' "
        "RETURNING language, words", article_id, call_id, agent)
    if row is not None:
        await refresh_proposals(pool, row["language"], stats or LexemeStats(), words=list(row["words"]))


async def refresh_proposals(pool: Any, language: str, stats: LexemeStats, *,
                            words: Sequence[str] | None = None) -> int:
    """Propose again from the evidence of a language (``kb.learn.proposals``): new pairs become
    pending proposals, pending ones get their counts, pending ones no longer supported go;
    decided ones stay as they are. ``words``: only the pairs of these words (those of the mark
    that changed; the evidence holding them, read through its index), else every pair.
    Returns the number of pairs found pending."""
    if words is not None and not words:
        return 0
    counts = await stats.counts(pool, language)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kb_synonym_proposals:' || $1::text))", language)
        rows = await conn.fetch("SELECT w.call_id, w.article_id, w.words, a.title FROM kb_call_words w "
                                "JOIN kb_articles a USING (article_id) WHERE w.language = $1 AND NOT a.archived "
                                "AND ($2::text[] IS NULL OR w.words && $2)", language, words)
        only = set(words) if words is not None else None
        evidence = [learn.Evidence(r["call_id"], r["article_id"],
                                   tuple(w for w in r["words"] if only is None or w in only)) for r in rows]
        titles = {r["article_id"]: r["title"] for r in rows}
        title_words = {i: learn.call_words(language, t) for i, t in titles.items()}
        every = sorted({w for e in evidence for w in e.words} | {w for ws in title_words.values() for w in ws})
        lexemes = await _lexemes(conn, language, every)
        anchors = {i: a for i, ws in title_words.items()
                   if (a := learn.anchor({w: lexemes.get(w, []) for w in ws}, counts.ndoc)) is not None}
        word_articles = {w: max((counts.ndoc.get(x, 0) for x in lx), default=0) for w, lx in lexemes.items()}
        decided = {(r["word"], r["anchor"]) for r in await conn.fetch(
            "SELECT word, anchor FROM kb_synonym_proposals WHERE language = $1 AND state <> 'pending'", language)}
        groups = [set(r["phrases"]) for r in await conn.fetch(
            "SELECT array_agg(phrase) AS phrases FROM kb_synonyms WHERE language = $1 GROUP BY grp", language)]
        found = learn.proposals(evidence, anchors, word_articles, decided=decided, groups=groups)
        await conn.execute("DELETE FROM kb_synonym_proposals WHERE language = $1 AND state = 'pending' "
                           "AND ($4::text[] IS NULL OR word = ANY($4)) "
                           "AND (word, anchor) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))",
                           language, [p.word for p in found], [p.anchor for p in found], words)
        await conn.executemany(
            "INSERT INTO kb_synonym_proposals (language, word, anchor, article_id, calls) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (language, word, anchor) DO UPDATE SET article_id = EXCLUDED.article_id, "
            "calls = EXCLUDED.calls, updated_at = now() WHERE kb_synonym_proposals.state = 'pending'",
            [(language, p.word, p.anchor, p.article_id, p.calls) for p in found])
        return len(found)


@dataclass(slots=True)
class SynonymProposal:
    proposal_id: int
    language: str
    word: str
    anchor: str
    article_id: int
    article_title: str
    calls: int
    state: str
    grp: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    examples: list[dict[str, Any]] = field(default_factory=list)   # the latest calls behind it


#: At most this many of the calls behind a proposal come with it (``examples``).
EXAMPLES = 3

_PROPOSAL = ("SELECT p.proposal_id, p.language, p.word, p.anchor, p.article_id, a.title AS article_title, p.calls, "
             "p.state, p.grp, p.decided_by, p.decided_at, p.created_at, "
             "ARRAY(SELECT json_build_object('call_id', w.call_id, 'agent', w.agent, 'source', w.source, "
             "  'words', w.words, 'at', w.at)::text FROM kb_call_words w WHERE w.article_id = p.article_id "
             f"  AND w.language = p.language AND p.word = ANY(w.words) ORDER BY w.at DESC, w.call_id LIMIT {EXAMPLES}"
             ") AS examples "
             "FROM kb_synonym_proposals p JOIN kb_articles a USING (article_id) ")


def _proposal(r: Any) -> SynonymProposal:
    return SynonymProposal(**{k: r[k] for k in SynonymProposal.__slots__ if k != "examples"},
                           examples=[json.loads(x) for x in r["examples"]])


async def synonym_proposals(pool: Any, *, state: str = "pending", language: str | None = None,
                            limit: int = 100) -> list[SynonymProposal]:
    """The proposals in ``state`` (of one language, or all), the most supported first."""
    rows = await pool.fetch(_PROPOSAL + "WHERE p.state = $1 AND ($2::text IS NULL OR p.language = $2) "
                            "ORDER BY p.calls DESC, p.proposal_id LIMIT $3", state, language, limit)
    return [_proposal(r) for r in rows]


async def decide_synonym(pool: Any, proposal_id: int, *, approve: bool, by: str) -> SynonymProposal:
    """Approve (the word joins the group holding the anchor, or a new group, in
    ``kb_synonyms``, by ``by``: ``kb.learn.join_group``) or reject a pending proposal.
    Raises ``NotFound``, ``Conflict`` (already decided)."""
    async with pool.acquire() as conn, conn.transaction():
        p = await conn.fetchrow("SELECT * FROM kb_synonym_proposals WHERE proposal_id = $1 FOR UPDATE", proposal_id)
        if p is None:
            raise NotFound(f"no synonym proposal {proposal_id}")
        if p["state"] != "pending":
            raise Conflict(f"synonym proposal {proposal_id} was already {p['state']}")
        name = None
        if approve:
            # One writer of a language's groups at a time (PUT /api/kb/synonyms replaces them all).
            await conn.execute("SELECT 1 FROM kb_synonyms WHERE language = $1 FOR UPDATE", p["language"])
            groups: dict[str, list[str]] = {}
            for r in await conn.fetch("SELECT grp, phrase FROM kb_synonyms WHERE language = $1", p["language"]):
                groups.setdefault(r["grp"], []).append(r["phrase"])
            name, phrases = learn.join_group(groups, p["word"], p["anchor"])
            await conn.executemany(
                "INSERT INTO kb_synonyms (language, grp, phrase, updated_by) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING", [(p["language"], name, x, by) for x in phrases])
        await conn.execute("UPDATE kb_synonym_proposals SET state = $2, grp = $3, decided_by = $4, "
                           "decided_at = now(), updated_at = now() WHERE proposal_id = $1",
                           proposal_id, "approved" if approve else "rejected", name, by)
        return _proposal(await conn.fetchrow(_PROPOSAL + "WHERE p.proposal_id = $1", proposal_id))


async def withdraw_synonym(pool: Any, proposal_id: int, *, by: str) -> SynonymProposal:
    """Take an approved proposal back: its word leaves the synonym group it joined (a group
    left with one phrase says nothing and goes), and the proposal becomes rejected, by ``by``,
    so it is not proposed again. Raises ``NotFound``, ``Conflict`` (not approved)."""
    async with pool.acquire() as conn, conn.transaction():
        p = await conn.fetchrow("SELECT * FROM kb_synonym_proposals WHERE proposal_id = $1 FOR UPDATE", proposal_id)
        if p is None:
            raise NotFound(f"no synonym proposal {proposal_id}")
        if p["state"] != "approved":
            raise Conflict(f"synonym proposal {proposal_id} is {p['state']}, not approved")
        await conn.execute("SELECT 1 FROM kb_synonyms WHERE language = $1 FOR UPDATE", p["language"])
        if p["grp"] is not None:
            await conn.execute("DELETE FROM kb_synonyms WHERE language = $1 AND grp = $2 AND phrase = $3",
                               p["language"], p["grp"], p["word"])
            await conn.execute("DELETE FROM kb_synonyms WHERE language = $1 AND grp = $2 "
                               "AND (SELECT count(*) FROM kb_synonyms k WHERE k.language = $1 AND k.grp = $2) < 2",
                               p["language"], p["grp"])
        await conn.execute("UPDATE kb_synonym_proposals SET state = 'rejected', decided_by = $2, decided_at = now(), "
                           "updated_at = now() WHERE proposal_id = $1", proposal_id, by)
        return _proposal(await conn.fetchrow(_PROPOSAL + "WHERE p.proposal_id = $1", proposal_id))
