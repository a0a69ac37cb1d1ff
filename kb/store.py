"""The knowledge base in PostgreSQL (asyncpg): articles with versions and links, proposals,
feedback, search, and the suggestions for a call (migration 0017, docs/knowledge.md).

Every function takes a pool (or a connection) and returns plain dataclasses. Errors::

    KbError
     ├── NotFound      the article or proposal does not exist (or is archived, for edits)
     ├── Conflict      an edit based on an older version; a proposal already decided
     └── Invalid       a value the database would refuse (language, link kind, ...)
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable, Sequence

from kb import queries as sql
from kb import ranking
from kb.ranking import CallContext, Candidate, OpenTicket, Scored, Weights

LINK_KINDS = ("queue", "skill", "ivr", "ticket_type", "product")
_LANGUAGE = re.compile(r"^[a-z]{2}$")


class KbError(Exception):
    """Base of the knowledge base's errors."""


class NotFound(KbError):
    pass


class Conflict(KbError):
    pass


class Invalid(KbError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True, slots=True)
class Link:
    kind: str
    target: str


@dataclass(slots=True)
class Article:
    article_id: int
    title: str
    body: str
    tags: list[str]
    language: str
    owner: str
    review_at: date | None
    archived: bool
    version: int
    created_at: datetime
    updated_at: datetime
    links: list[Link] = field(default_factory=list)


@dataclass(slots=True)
class Version:
    article_id: int
    version: int
    title: str
    body: str
    tags: list[str]
    links: list[Link]
    author: str
    note: str | None
    at: datetime


@dataclass(slots=True)
class Proposal:
    proposal_id: int
    kind: str
    article_id: int | None
    base_version: int | None
    title: str
    body: str
    tags: list[str]
    language: str
    call_id: str | None
    proposer: str
    agent_id: str | None
    state: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    created_at: datetime
    notes: str | None = None        # the agent's notes on the call it came from (for kb.learn)


@dataclass(slots=True)
class Hit:
    article_id: int
    title: str
    tags: list[str]
    language: str
    snippet: str
    score: float


@dataclass(slots=True)
class Suggestion:
    article_id: int
    title: str
    tags: list[str]
    score: float
    parts: dict[str, float]


def _check(language: str, links: Iterable[Link]) -> None:
    if not _LANGUAGE.match(language):
        raise Invalid("language", "the language is a two-letter ISO 639-1 code, lower case")
    for link in links:
        if link.kind not in LINK_KINDS:
            raise Invalid("links", f"a link's kind is one of {', '.join(LINK_KINDS)}")
        if not 1 <= len(link.target) <= 64:
            raise Invalid("links", "a link's target is 1 to 64 characters")


def _links_json(links: Iterable[Link]) -> str:
    return json.dumps([{"kind": x.kind, "target": x.target} for x in links])


async def _links_of(conn: Any, ids: Sequence[int]) -> dict[int, list[Link]]:
    rows = await conn.fetch("SELECT article_id, kind, target FROM kb_article_links WHERE article_id = ANY($1) "
                            "ORDER BY kind, target", list(ids))
    out: dict[int, list[Link]] = {i: [] for i in ids}
    for r in rows:
        out[r["article_id"]].append(Link(r["kind"], r["target"]))
    return out


_ARTICLE_COLS = ("article_id, title, body, tags, language, owner, review_at, archived, version, "
                 "created_at, updated_at")


def _article(row: Any, links: list[Link]) -> Article:
    return Article(**{k: row[k] for k in _ARTICLE_COLS.split(", ")}, links=links)


async def _set_links(conn: Any, article_id: int, links: list[Link]) -> None:
    await conn.execute("DELETE FROM kb_article_links WHERE article_id = $1", article_id)
    uniq = list(dict.fromkeys(links))
    if uniq:
        await conn.executemany("INSERT INTO kb_article_links (article_id, kind, target) VALUES ($1, $2, $3)",
                               [(article_id, x.kind, x.target) for x in uniq])


async def create_article(pool: Any, *, title: str, body: str, tags: list[str], language: str, owner: str,
                         links: list[Link], review_at: date | None = None, author: str | None = None,
                         note: str | None = None) -> Article:
    """A new article (version 1). Raises ``Invalid``."""
    _check(language, links)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO kb_articles (title, body, tags, language, owner, review_at) VALUES ($1, $2, $3, $4, $5, $6) "
            f"RETURNING {_ARTICLE_COLS}", title, body, tags, language, owner, review_at)
        await _set_links(conn, row["article_id"], links)
        await conn.execute(
            "INSERT INTO kb_article_versions (article_id, version, title, body, tags, links, author, note) "
            "VALUES ($1, 1, $2, $3, $4, $5::jsonb, $6, $7)",
            row["article_id"], title, body, tags, _links_json(links), author or owner, note)
        return _article(row, list(dict.fromkeys(links)))


async def update_article(pool: Any, article_id: int, *, base_version: int | None, title: str, body: str,
                         tags: list[str], links: list[Link], author: str, note: str | None = None,
                         owner: str | None = None, review_at: date | None = None,
                         language: str | None = None) -> Article:
    """Save a new version. ``base_version``: the version the change started from (None: any);
    raises ``Conflict`` when the article has moved on since, ``NotFound``, ``Invalid``."""
    async with pool.acquire() as conn, conn.transaction():
        cur = await conn.fetchrow("SELECT version, language, owner, review_at FROM kb_articles "
                                  "WHERE article_id = $1 AND NOT archived FOR UPDATE", article_id)
        if cur is None:
            raise NotFound(f"no article {article_id}")
        if base_version is not None and base_version != cur["version"]:
            raise Conflict(f"article {article_id} is at version {cur['version']}, not {base_version}")
        language = language or cur["language"]
        _check(language, links)
        version = cur["version"] + 1
        row = await conn.fetchrow(
            f"UPDATE kb_articles SET title = $2, body = $3, tags = $4, language = $5, owner = $6, review_at = $7, "
            f"version = $8, updated_at = now() WHERE article_id = $1 RETURNING {_ARTICLE_COLS}",
            article_id, title, body, tags, language, owner or cur["owner"],
            review_at if review_at is not None else cur["review_at"], version)
        await _set_links(conn, article_id, links)
        await conn.execute(
            "INSERT INTO kb_article_versions (article_id, version, title, body, tags, links, author, note) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
            article_id, version, title, body, tags, _links_json(links), author, note)
        return _article(row, list(dict.fromkeys(links)))


async def archive_article(pool: Any, article_id: int) -> None:
    """Take an article out of search and suggestions (its versions stay). Raises ``NotFound``."""
    done = await pool.execute("UPDATE kb_articles SET archived = true, updated_at = now() "
                              "WHERE article_id = $1 AND NOT archived", article_id)
    if done.endswith(" 0"):
        raise NotFound(f"no article {article_id}")


async def get_article(pool: Any, article_id: int) -> Article:
    """Raises ``NotFound``."""
    row = await pool.fetchrow(f"SELECT {_ARTICLE_COLS} FROM kb_articles WHERE article_id = $1", article_id)
    if row is None:
        raise NotFound(f"no article {article_id}")
    return _article(row, (await _links_of(pool, [article_id]))[article_id])


async def list_articles(pool: Any, *, language: str | None = None, tag: str | None = None,
                        due_for_review: bool = False, limit: int = 50, offset: int = 0) -> list[Article]:
    """Live articles, the latest changed first."""
    rows = await pool.fetch(
        f"SELECT {_ARTICLE_COLS} FROM kb_articles WHERE NOT archived AND ($1::text IS NULL OR language = $1) "
        f"AND ($2::text IS NULL OR $2 = ANY(tags)) AND (NOT $3 OR review_at <= current_date) "
        f"ORDER BY updated_at DESC, article_id DESC LIMIT $4 OFFSET $5",
        language, tag, due_for_review, limit, offset)
    links = await _links_of(pool, [r["article_id"] for r in rows])
    return [_article(r, links[r["article_id"]]) for r in rows]


async def versions(pool: Any, article_id: int) -> list[Version]:
    """Every version of an article, the latest first. Raises ``NotFound``."""
    rows = await pool.fetch("SELECT * FROM kb_article_versions WHERE article_id = $1 ORDER BY version DESC",
                            article_id)
    if not rows:
        raise NotFound(f"no article {article_id}")
    return [Version(r["article_id"], r["version"], r["title"], r["body"], list(r["tags"]),
                    [Link(x["kind"], x["target"]) for x in json.loads(r["links"])], r["author"], r["note"], r["at"])
            for r in rows]


# -- proposals ---------------------------------------------------------------------------------


def _proposal(row: Any) -> Proposal:
    return Proposal(**{k: (list(row[k]) if k == "tags" else row[k]) for k in Proposal.__slots__})


async def propose(pool: Any, *, kind: str, article_id: int | None, title: str, body: str, tags: list[str],
                  language: str, proposer: str, agent_id: str | None, call_id: str | None,
                  notes: str | None = None) -> Proposal:
    """A pending proposal: a new article (``article_id`` None) or an edit of one.
    Raises ``NotFound`` (the article of an edit), ``Invalid``."""
    _check(language, [])
    base = None
    if kind == "edit":
        if article_id is None:
            raise Invalid("article_id", "an edit names the article it changes")
        base = await pool.fetchval("SELECT version FROM kb_articles WHERE article_id = $1 AND NOT archived",
                                   article_id)
        if base is None:
            raise NotFound(f"no article {article_id}")
    elif kind != "new" or article_id is not None:
        raise Invalid("kind", "a proposal is 'new' (without article_id) or 'edit' (with it)")
    row = await pool.fetchrow(
        "INSERT INTO kb_proposals (kind, article_id, base_version, title, body, tags, language, call_id, proposer, "
        "agent_id, notes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
        kind, article_id, base, title, body, tags, language, call_id, proposer, agent_id, notes)
    return _proposal(row)


async def list_proposals(pool: Any, *, state: str | None = "pending", limit: int = 100) -> list[Proposal]:
    rows = await pool.fetch("SELECT * FROM kb_proposals WHERE ($1::text IS NULL OR state = $1) "
                            "ORDER BY created_at, proposal_id LIMIT $2", state, limit)
    return [_proposal(r) for r in rows]


async def decide(pool: Any, proposal_id: int, *, approve: bool, by: str, note: str | None = None,
                 links: list[Link] | None = None) -> tuple[Proposal, Article | None]:
    """Approve (a new article, or a new version of the edited one; an edit made on an older
    version than the article's is a ``Conflict``) or reject a pending proposal.
    Returns the proposal and the article it made or changed. Raises ``NotFound``, ``Conflict``."""
    async with pool.acquire() as conn, conn.transaction():
        p = await conn.fetchrow("SELECT * FROM kb_proposals WHERE proposal_id = $1 FOR UPDATE", proposal_id)
        if p is None:
            raise NotFound(f"no proposal {proposal_id}")
        if p["state"] != "pending":
            raise Conflict(f"proposal {proposal_id} was already {p['state']}")
        article: Article | None = None
        article_id = p["article_id"]
        if approve:
            text = f"proposal {proposal_id} by {p['proposer']}" + (f": {note}" if note else "")
            if p["kind"] == "new":
                article = await create_article(_Single(conn), title=p["title"], body=p["body"], tags=list(p["tags"]),
                                               language=p["language"], owner=by, links=links or [],
                                               author=p["proposer"], note=text)
                article_id = article.article_id
            else:
                current = await get_article(conn, article_id)
                article = await update_article(
                    _Single(conn), article_id, base_version=p["base_version"], title=p["title"], body=p["body"],
                    tags=list(p["tags"]), links=links if links is not None else current.links,
                    author=p["proposer"], note=text)
        row = await conn.fetchrow(
            "UPDATE kb_proposals SET state = $2, decided_by = $3, decided_at = now(), decision_note = $4, "
            "article_id = $5 WHERE proposal_id = $1 RETURNING *",
            proposal_id, "approved" if approve else "rejected", by, note, article_id)
        return _proposal(row), article


class _Single:
    """One connection (inside a transaction) passed where a pool is expected."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def acquire(self) -> "_Single":
        return self

    async def __aenter__(self) -> Any:
        return self.conn

    async def __aexit__(self, *exc: Any) -> None:
        return None


# -- feedback ----------------------------------------------------------------------------------


async def feedback(pool: Any, *, article_id: int, call_id: str, agent: str, helped: bool) -> tuple[int, int]:
    """Record "helped" (True) or "not relevant" for an article on a call; a second mark by the
    same agent on the same call replaces the first. Returns the article's (helped, not relevant)
    totals. Raises ``NotFound``."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM kb_articles WHERE article_id = $1", article_id) is None:
            raise NotFound(f"no article {article_id}")
        await conn.execute("INSERT INTO kb_feedback_totals (article_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           article_id)
        await conn.execute("SELECT 1 FROM kb_feedback_totals WHERE article_id = $1 FOR UPDATE", article_id)
        old = await conn.fetchval("SELECT helped FROM kb_feedback WHERE article_id = $1 AND call_id = $2 "
                                  "AND agent = $3", article_id, call_id, agent)
        await conn.execute(
            "INSERT INTO kb_feedback (article_id, call_id, agent, helped) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (article_id, call_id, agent) DO UPDATE SET helped = EXCLUDED.helped, at = now()",
            article_id, call_id, agent, helped)
        dh = (1 if helped else 0) - (1 if old is True else 0)
        dn = (0 if helped else 1) - (1 if old is False else 0)
        row = await conn.fetchrow(
            "UPDATE kb_feedback_totals SET helped = helped + $2, not_relevant = not_relevant + $3 "
            "WHERE article_id = $1 RETURNING helped, not_relevant", article_id, dh, dn)
        return row["helped"], row["not_relevant"]


# -- search and suggestions --------------------------------------------------------------------


async def search(pool: Any, text: str, *, language: str = "en", limit: int = 10) -> list[Hit]:
    """Articles matching ``text`` (web search syntax: words, "phrases", or, -word), best first;
    ranks divided by the article's length so long articles do not win on size alone."""
    _check(language, [])
    rows = await pool.fetch(
        "WITH q AS (SELECT websearch_to_tsquery(kb_ts_config($1), $2) AS q) "
        "SELECT a.article_id, a.title, a.tags, a.language, ts_rank(a.search, q.q, 1) AS score, "
        "ts_headline(kb_ts_config($1), a.body, q.q, 'StartSel=\"\", StopSel=\"\", MaxWords=30, MinWords=12') "
        "AS snippet FROM kb_articles a, q WHERE a.language = $1 AND NOT a.archived AND a.search @@ q.q "
        "ORDER BY score DESC, a.article_id LIMIT $3", language, text, limit)
    return [Hit(r["article_id"], r["title"], list(r["tags"]), r["language"], r["snippet"], float(r["score"]))
            for r in rows]


class _MarkedCache:
    """A value per language read from PostgreSQL again only when its mark (a count and a
    latest change, looked at every ``CHECK_EVERY`` seconds at most) has changed."""

    #: The mark is looked at most this often (seconds).
    CHECK_EVERY = 2.0

    def __init__(self) -> None:
        self._by_language: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self._checked: dict[str, float] = {}

    async def _get(self, pool: Any, language: str) -> Any:
        _check(language, [])
        known = self._by_language.get(language)
        now = time.monotonic()
        if known is not None and now - self._checked.get(language, -1e9) < self.CHECK_EVERY:
            return known[1]
        self._checked[language] = now
        row = await self._mark(pool, language)
        mark = (row[0], row[1])
        if known is not None and known[0] == mark:
            return known[1]
        value = await self._load(pool, language, row)
        self._by_language[language] = (mark, value)
        return value

    async def _mark(self, pool: Any, language: str) -> Any:
        raise NotImplementedError

    async def _load(self, pool: Any, language: str, mark_row: Any) -> Any:
        raise NotImplementedError


class LexemeStats(_MarkedCache):
    """How many live articles of each language hold each lexeme (``ts_stat``), for the ranking's
    rarity weights (``kb.ranking.idf_rank``). Read again when the articles of the language
    changed (their count or latest change, looked at every ``CHECK_EVERY`` seconds at most):
    the full count (about 0.1 s for 10,000 articles) only after a change."""

    async def counts(self, pool: Any, language: str) -> ranking.LexemeCounts:
        return await self._get(pool, language)

    async def _mark(self, pool: Any, language: str) -> Any:
        return await pool.fetchrow("SELECT count(*), max(updated_at), avg(length(search)) AS avg_length "
                                   "FROM kb_articles WHERE language = $1 AND NOT archived", language)

    async def _load(self, pool: Any, language: str, mark_row: Any) -> ranking.LexemeCounts:
        rows = await pool.fetch("SELECT word, ndoc FROM ts_stat(format("
                                "'SELECT search FROM kb_articles WHERE language = %L AND NOT archived', $1::text))",
                                language)
        return ranking.LexemeCounts(int(mark_row[0]), {r["word"]: r["ndoc"] for r in rows},
                                    float(mark_row["avg_length"] or 20.0))


class LearnedWords(_MarkedCache):
    """The words agents' "Helped" marks and approved proposals taught each live article of a
    language (``kb_call_words``, as lexemes: ``ranking.Evidence``), for the suggestions'
    ``learned`` input. Read again when the marks changed (their count or latest one, looked at
    every ``CHECK_EVERY`` seconds at most)."""

    async def evidence(self, pool: Any, language: str) -> ranking.Evidence:
        return await self._get(pool, language)

    async def _mark(self, pool: Any, language: str) -> Any:
        return await pool.fetchrow("SELECT count(*), max(at) FROM kb_call_words WHERE language = $1", language)

    async def _load(self, pool: Any, language: str, mark_row: Any) -> ranking.Evidence:
        rows = await pool.fetch(
            "SELECT w.article_id, tsvector_to_array(to_tsvector(kb_ts_config($1), array_to_string(w.words, ' '))) "
            "AS lx FROM kb_call_words w JOIN kb_articles a USING (article_id) "
            "WHERE w.language = $1 AND a.language = $1 AND NOT a.archived", language)
        return ranking.evidence_from((r["article_id"], r["lx"]) for r in rows)


def _matched(items: Sequence[str]) -> list[tuple[str, str, str]]:
    """``lexeme:weights:positions`` (as the candidates' query gives them) split in three."""
    return [tuple(x.rsplit(":", 2)) for x in items]      # type: ignore[misc]


def _letters(matched: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(m[0], m[1]) for m in matched]


def _positions(matched: Sequence[tuple[str, str, str]]) -> dict[str, list[tuple[int, str]]]:
    """Each lexeme's occurrences: (position, field letter); positions and letters come aligned."""
    return {lx: list(zip((int(p) for p in pos.split(",") if p), letters)) for lx, letters, pos in matched}


def _ordered(items: Sequence[str]) -> list[tuple[str, int]]:
    return [(x.rsplit(":", 1)[0], int(x.rsplit(":", 1)[1])) for x in items]


async def _without_tickets_elsewhere(pool: Any, ctx: CallContext) -> CallContext:
    """``ctx`` less the open tickets the links put elsewhere (``ranking.tickets_elsewhere``)."""
    route = [p for p in ranking.targets(ctx).pairs() if p[0] != "ticket_type"]
    types = list(dict.fromkeys(t.type for t in ctx.tickets))
    rows = await pool.fetch(
        "SELECT NULL::text AS src, l.kind, l.target FROM kb_article_links l "
        "JOIN unnest($1::text[], $2::text[]) AS t(kind, target) ON l.kind = t.kind AND l.target = t.target "
        "JOIN kb_articles a ON a.article_id = l.article_id AND a.language = $4 AND NOT a.archived "
        "UNION SELECT lt.target, lo.kind, lo.target FROM kb_article_links lt "
        "JOIN kb_article_links lo ON lo.article_id = lt.article_id AND lo.kind <> 'ticket_type' "
        "JOIN kb_articles a ON a.article_id = lt.article_id AND a.language = $4 AND NOT a.archived "
        "WHERE lt.kind = 'ticket_type' AND lt.target = ANY($3::text[])",
        [k for k, _ in route], [t for _, t in route], types, ctx.language)
    known = [(r["kind"], r["target"]) for r in rows if r["src"] is None]
    linked: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        if r["src"] is not None:
            linked.setdefault(r["src"], []).append((r["kind"], r["target"]))
    away = ranking.tickets_elsewhere(ctx.tickets, known, linked)
    if not away:
        return ctx
    return dataclasses.replace(ctx, tickets=tuple(t for t in ctx.tickets if t not in away))


async def suggest(pool: Any, ctx: CallContext, *, limit: int = 3, w: Weights = ranking.DEFAULT_WEIGHTS,
                  candidates: int = ranking.MAX_CANDIDATES, stats: LexemeStats | None = None,
                  synonyms: bool = True, idf_pick: bool = True,
                  learned: LearnedWords | None = None) -> list[Suggestion]:
    """The best ``limit`` articles for a call (kb.ranking), best first. With ``stats``, the
    notes and tickets rank by the rarity of the words matched (``kb.ranking.idf_rank``), and
    (``idf_pick``) the candidates are picked by it too; without, by ``ts_rank`` alone.
    ``synonyms``: the call's words are widened with those of ``kb_synonyms`` (each counts
    ``w.synonym`` of a word the call used). The customer's products (``ctx.products``) lower
    the articles about other products only (``ranking.product_factor``). With ``learned``, the
    words agents' marks taught the articles (``LearnedWords``) pick candidates and rank them
    (``ranking.learned_rank``, weighed ``w.learned``)."""
    _check(ctx.language, [])
    counts = await stats.counts(pool, ctx.language) if stats is not None else None
    if ctx.tickets and w.ticket_route:
        ctx = await _without_tickets_elsewhere(pool, ctx)
    queries = ranking.build_queries(ctx)
    tg = ranking.targets(ctx)
    pairs = tg.pairs()
    ln: list[str] = []
    lt: list[str] = []
    le: list[str] = []
    pn: list[tuple[str, str]] = []
    pt: list[tuple[str, str]] = []
    specific = bool(queries["notes"] or queries["tickets"])
    if specific:
        row = await pool.fetchrow(sql.LEXEMES, ctx.language, queries["notes"].replace(" or ", " "),
                                  queries["tickets"].replace(" or ", " "), synonyms)
        ln, lt, le = list(row["ln"]), list(row["lt"]), list(row["le"])
        if w.pairs:
            pn, pt = (ranking.query_pairs(_ordered(row["pn"])), ranking.query_pairs(_ordered(row["pt"])))
    weights = ranking.pick_weights(ln, lt, le, counts, w) if counts is not None else {}
    if counts is None:
        rare = list(dict.fromkeys(ln + lt + le))
        pick = "ts" if specific else "general"
    else:
        rare = [x for x in weights if not counts.is_common(x)]
        pick = ("idf" if idf_pick else "ts") if specific else "general"
    ev = (await learned.evidence(pool, ctx.language)
          if learned is not None and w.learned > 0 and counts is not None else None)
    taught = (ranking.learned_pick(ranking.learned_query(ln, lt, w), ev, counts, candidates // 2,
                                  w.learned_max_share)
              if ev is not None and counts is not None else [])
    fields = w.fields()
    rows = await pool.fetch(
        sql.candidates(pick, idf_pick and counts is not None, not rare), ctx.language, queries["notes"],
        queries["tickets"], queries["ivr"], queries["queue"],
        [k for k, _ in pairs], [t for _, t in pairs], w.notes, w.tickets, w.ivr, w.queue, candidates,
        candidates // 2, rare, list(weights.values()), ln, lt, le, list(tg.products), w.other_product,
        counts.avg_length if counts is not None else 20.0, w.bm25_b, list(weights),
        ranking.target_weights(tg, w), [fields["A"], fields["B"], fields["C"]], taught,
        [x for x in weights if counts.is_common(x)] if counts is not None and w.title_pick > 0 else [],
        int(w.title_pick * candidates))
    by_id = {r["article_id"]: r for r in rows}
    cands = []
    for r in rows:
        ranks = {"notes": r["rn"], "tickets": r["rt"], "ivr": r["ri"], "queue": r["rq"]}
        if counts is not None:
            mn, mt, me = _matched(r["mn"]), _matched(r["mt"]), _matched(r["me"])
            bm = {"k1": w.bm25_k1, "b": w.bm25_b, "fields": fields}
            ranks["notes"] = (ranking.idf_rank(_letters(mn), r["len"], counts, **bm)
                              + w.synonym * ranking.idf_rank(_letters(me), r["len"], counts, **bm))
            ranks["tickets"] = ranking.idf_rank(_letters(mt), r["len"], counts, **bm)
            if pn:
                ranks["notes"] += w.pairs * ranking.pair_rank(pn, _positions(mn), counts, fields)
            if pt:
                ranks["tickets"] += w.pairs * ranking.pair_rank(pt, _positions(mt), counts, fields)
            if w.coverage:
                ranks["notes"] *= ranking.coverage([m[0] for m in mn], ln, counts) ** w.coverage
                ranks["tickets"] *= ranking.coverage([m[0] for m in mt], lt, counts) ** w.coverage
        if ev is not None and counts is not None:
            ranks["notes"] += w.learned * ranking.learned_rank(r["article_id"], ln, ev, counts, w.bm25_k1,
                                                                  w.learned_max_share)
            ranks["tickets"] += w.learned * ranking.learned_rank(r["article_id"], lt, ev, counts, w.bm25_k1,
                                                                    w.learned_max_share)
        cands.append(Candidate(r["article_id"], ranks, frozenset(tuple(x.split(":", 1)) for x in r["links"]),
                               r["helped"], r["not_relevant"]))
    best: list[Scored] = ranking.rank(cands, tg, w, limit)
    return [Suggestion(s.article_id, by_id[s.article_id]["title"], list(by_id[s.article_id]["tags"]),
                       round(s.score, 4), {k: round(v, 4) for k, v in s.parts.items()}) for s in best]


async def call_context(pool: Any, call_id: str, *, notes: str = "", language: str | None = None) -> CallContext:
    """What the database knows of a call: its queue, the menus its IVR path entered, its
    customer's language, open tickets and products; with the agent's ``notes`` so far."""
    row = await pool.fetchrow(
        "SELECT c.queue, (SELECT array_agg(menu ORDER BY first) FROM (SELECT menu, min(seq) AS first "
        "  FROM call_ivr_steps WHERE call_id = $1 GROUP BY menu) m) AS menus, "
        " cc.customer_id, cu.language "
        "FROM (SELECT $1::text AS call_id) k LEFT JOIN calls c ON c.call_id = k.call_id "
        "LEFT JOIN LATERAL (SELECT customer_id FROM customer_calls WHERE call_id = $1 ORDER BY linked_at DESC "
        "  LIMIT 1) cc ON true LEFT JOIN customers cu ON cu.customer_id = cc.customer_id", call_id)
    tickets: list[OpenTicket] = []
    products: list[str] = []
    if row["customer_id"] is not None:
        trows = await pool.fetch("SELECT type, title FROM tickets WHERE customer_id = $1 "
                                 "AND state NOT IN ('closed', 'cancelled') ORDER BY created_at DESC LIMIT 5",
                                 row["customer_id"])
        tickets = [OpenTicket(r["type"], r["title"]) for r in trows]
        products = [r["product"] for r in await pool.fetch(
            "SELECT product FROM customer_products WHERE customer_id = $1 ORDER BY product LIMIT 50",
            row["customer_id"])]
    lang = language or row["language"] or "en"
    if not _LANGUAGE.match(lang):
        lang = "en"
    return CallContext(language=lang, queue=row["queue"], ivr_path=tuple(row["menus"] or ()),
                       tickets=tuple(tickets), notes=notes, products=tuple(products))


# -- synonyms ------------------------------------------------------------------------------------


@dataclass(slots=True)
class SynonymGroup:
    name: str
    phrases: list[str]


async def synonyms(pool: Any, language: str) -> list[SynonymGroup]:
    """The synonym groups of a language, by name."""
    _check(language, [])
    rows = await pool.fetch("SELECT grp, array_agg(phrase ORDER BY phrase) AS phrases FROM kb_synonyms "
                            "WHERE language = $1 GROUP BY grp ORDER BY grp", language)
    return [SynonymGroup(r["grp"], list(r["phrases"])) for r in rows]


async def set_synonyms(pool: Any, language: str, groups: list[SynonymGroup], *, by: str) -> list[SynonymGroup]:
    """Replace the language's synonym groups (a group of fewer than two distinct phrases
    says nothing and is dropped). Returns them as stored. Raises ``Invalid``."""
    _check(language, [])
    rows = {(g.name, p.strip().lower()) for g in groups for p in g.phrases if p.strip()}
    if any(len(p) > 60 for _, p in rows):      # lower case may be longer ("İ" is two characters)
        raise Invalid("groups", "a phrase is at most 60 characters, in lower case")
    sizes: dict[str, int] = {}
    for name, _ in rows:
        sizes[name] = sizes.get(name, 0) + 1
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM kb_synonyms WHERE language = $1", language)
        await conn.executemany("INSERT INTO kb_synonyms (language, grp, phrase, updated_by) VALUES ($1, $2, $3, $4)",
                               [(language, n, p, by) for n, p in sorted(rows) if sizes[n] >= 2])
    return await synonyms(pool, language)
