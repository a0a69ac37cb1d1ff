"""The knowledge base over the API (docs/knowledge.md, "API").

Routes::

    GET    /api/kb/articles                     live articles (language, tag, due for review)
    POST   /api/kb/articles                     create one (supervisors, admins)
    GET    /api/kb/articles/{id}                one, with its Markdown rendered to safe HTML
    PUT    /api/kb/articles/{id}                save a new version (supervisors, admins)
    DELETE /api/kb/articles/{id}                archive it (supervisors, admins)
    GET    /api/kb/articles/{id}/versions       every version
    GET    /api/kb/search?q=                    full-text search in one language
    POST   /api/kb/suggestions                  the top 3 for a call (its context, the notes so far)
    POST   /api/kb/feedback                     "helped" / "not relevant" on a call
    POST   /api/kb/proposals                    propose a new article or an edit (from a wrap-up)
    GET    /api/kb/proposals                    proposals by state (supervisors, admins)
    POST   /api/kb/proposals/{id}/decision      approve or reject (supervisors, admins)
    GET    /api/kb/synonyms?language=           the synonym groups suggestions widen words with
    PUT    /api/kb/synonyms                     replace a language's groups (supervisors, admins)
    GET    /api/kb/synonyms/proposals, POST .../{id}/decision   synonyms learned (api/kb_learn_routes.py)

Agents, supervisors and admins read, search, get suggestions, give feedback and propose;
supervisors and admins write and decide.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from api.auth import STAFF
from api.crm_common import CRM_ROLES, StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError, ErrorDetail
from api.kb_learn_routes import after_approval, after_mark, setup_kb_learn_routes
from api.registry import ApiRequest, setup_registry
from kb import store
from kb.ranking import CallContext, OpenTicket
from kb.render import to_html, to_tree

log = structlog.get_logger(__name__)

READ = CRM_ROLES
TAGS = ("knowledge",)
#: The lexeme counts the suggestions weigh rare words by (kb.store.LexemeStats), one per app.
KB_STATS = web.AppKey("kb_stats", store.LexemeStats)

Language = Field("en", pattern=r"^[a-z]{2}$", description="ISO 639-1 code; picks the text search configuration")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
#: A queue, skill, IVR node or call id.
TargetId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_ID)]
#: A tag: letters (any script), digits, spaces and _.:+-, starting with a letter or digit.
TagText = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[^\W_][\w.:+ -]{0,39}$")]

# -- models ------------------------------------------------------------------------------------


class LinkModel(StrictBody):
    kind: Literal["queue", "skill", "ivr", "ticket_type", "product"]
    target: TargetId


class ArticleBody(StrictBody):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(max_length=100_000, description="Markdown (raw HTML is shown as text)")
    tags: list[TagText] = Field(default_factory=list, max_length=30)
    language: str = Language
    links: list[LinkModel] = Field(default_factory=list, max_length=50)
    owner: str | None = Field(None, min_length=1, max_length=100, description="default: who creates it")
    review_at: date | None = None
    note: str | None = Field(None, max_length=500, description="why (goes with the version)")


class ArticleChange(ArticleBody):
    base_version: int | None = Field(None, ge=1, le=1_000_000,
                                     description="the version the change started from: 409 when it moved on")


class ArticleView(BaseModel):
    article_id: int
    title: str
    body: str
    html: str = Field(description="the body rendered: raw HTML escaped, unsafe links dropped")
    doc: list[dict[str, Any]] = Field(description="the same as nodes, {tag, attrs, children} or {text}, "
                                                  "for pages that build it with DOM calls (kb.render.to_tree)")
    tags: list[str]
    language: str
    owner: str
    review_at: date | None
    version: int
    archived: bool
    links: list[LinkModel]
    created_at: datetime
    updated_at: datetime


class ArticleSummary(BaseModel):
    article_id: int
    title: str
    tags: list[str]
    language: str
    owner: str
    review_at: date | None
    version: int
    updated_at: datetime


class ArticleList(BaseModel):
    articles: list[ArticleSummary]


class ArticleQuery(StrictBody):
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    tag: str | None = Field(None, max_length=40)
    due_for_review: bool = False
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=100_000)


class VersionView(BaseModel):
    version: int
    title: str
    body: str
    tags: list[str]
    links: list[LinkModel]
    author: str
    note: str | None
    at: datetime


class VersionList(BaseModel):
    article_id: int
    versions: list[VersionView]


class SearchQuery(StrictBody):
    q: str = Field(min_length=1, max_length=500, description="words, \"a phrase\", or, -word")
    language: str = Language
    limit: int = Field(10, ge=1, le=50)


class HitView(BaseModel):
    article_id: int
    title: str
    tags: list[str]
    snippet: str = Field(description="plain text around the matches (show it as text)")
    score: float


class SearchReply(BaseModel):
    hits: list[HitView]


class TicketHint(StrictBody):
    type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    title: str = Field(max_length=300)


class SuggestBody(StrictBody):
    call_id: TargetId | None = Field(None, description="fills in the queue, IVR path, language and open tickets the database knows")
    notes: str = Field("", max_length=4000, description="the agent's notes so far")
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    queue: TargetId | None = None
    skills: list[TargetId] = Field(default_factory=list, max_length=20)
    ivr_path: list[TargetId] = Field(default_factory=list, max_length=30, description="IVR menu ids, root first")
    tickets: list[TicketHint] = Field(default_factory=list, max_length=10)
    products: list[TargetId] = Field(default_factory=list, max_length=50,
                                     description="the customer's products (default: customer_products of the call's customer)")
    limit: int = Field(3, ge=1, le=10)


class SuggestionView(BaseModel):
    article_id: int
    title: str
    tags: list[str]
    score: float
    why: dict[str, float] = Field(description="what each input and link added; feedback_factor multiplies")


class SuggestReply(BaseModel):
    call_id: str | None
    suggestions: list[SuggestionView]


class FeedbackBody(StrictBody):
    article_id: int = Field(ge=1, le=2**62)
    call_id: TargetId
    helped: bool = Field(description="true: it helped; false: not relevant")
    notes: str = Field("", max_length=4000, description="the agent's notes on the call: their words the article "
                                                        "lacks feed the synonyms proposed to KB admins")


class FeedbackReply(BaseModel):
    article_id: int
    helped: int
    not_relevant: int


class ProposalBody(StrictBody):
    kind: Literal["new", "edit"]
    article_id: int | None = Field(None, ge=1, le=2**62, description="the article an edit changes")
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(max_length=100_000)
    tags: list[TagText] = Field(default_factory=list, max_length=30)
    language: str = Language
    call_id: TargetId | None = None
    notes: str | None = Field(None, max_length=4000, description="the agent's notes on the call (for the "
                                                                 "synonyms proposed once it is approved)")


class ProposalView(BaseModel):
    proposal_id: int
    kind: str
    article_id: int | None
    base_version: int | None
    title: str
    body: str
    html: str
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
    notes: str | None = None


class ProposalList(BaseModel):
    proposals: list[ProposalView]


class ProposalQuery(StrictBody):
    state: Literal["pending", "approved", "rejected"] = "pending"
    limit: int = Field(100, ge=1, le=500)


class DecisionBody(StrictBody):
    approve: bool
    note: str | None = Field(None, max_length=500)
    links: list[LinkModel] | None = Field(None, max_length=50, description="the article's links (default: kept)")


#: A synonym: words (any script), spaces, apostrophes and hyphens.
Phrase = Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=r"^[^\W_][\w' -]{0,59}$")]


class SynonymGroupModel(StrictBody):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[^\W_][\w.-]{0,39}$")
    phrases: list[Phrase] = Field(min_length=2, max_length=20, description="words or phrases meaning the same")


class SynonymQuery(StrictBody):
    language: str = Language


class SynonymList(StrictBody):
    language: str = Language
    groups: list[SynonymGroupModel] = Field(max_length=500)


class DecisionReply(BaseModel):
    proposal: ProposalView
    article: ArticleView | None


# -- helpers -----------------------------------------------------------------------------------


def _tags(tags: list[str]) -> list[str]:
    """Tags lower case, each once."""
    return list(dict.fromkeys(t.lower() for t in tags))


def _article_view(a: store.Article) -> ArticleView:
    return ArticleView(article_id=a.article_id, title=a.title, body=a.body, html=to_html(a.body),
                       doc=to_tree(a.body), tags=a.tags,
                       language=a.language, owner=a.owner, review_at=a.review_at, version=a.version,
                       archived=a.archived, links=[LinkModel(kind=x.kind, target=x.target) for x in a.links],
                       created_at=a.created_at, updated_at=a.updated_at)


def _proposal_view(p: store.Proposal) -> ProposalView:
    return ProposalView(html=to_html(p.body), **{k: getattr(p, k) for k in store.Proposal.__slots__})


def _links(links: list[LinkModel] | None) -> list[store.Link]:
    return [store.Link(x.kind, x.target) for x in links or []]


def _known(exc: store.KbError) -> ApiError:
    if isinstance(exc, store.NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, store.Conflict):
        return ApiError(409, "kb_conflict", str(exc))
    assert isinstance(exc, store.Invalid)
    return ApiError(422, "invalid_body", str(exc), [ErrorDetail(field=f"body.{exc.field}", message=str(exc),
                                                                type="value_error")])


def _id(req: ApiRequest, name: str) -> int:
    value = int(req.match_info[name])
    if value > 2**62:
        raise ApiError(404, "not_found", f"no such {name}")
    return value


# -- handlers ----------------------------------------------------------------------------------


async def list_articles(req: ApiRequest[None, ArticleQuery]) -> ArticleList:
    q = req.query
    rows = await query(store.list_articles(db(req.app), language=q.language, tag=q.tag,
                                           due_for_review=q.due_for_review, limit=q.limit, offset=q.offset))
    return ArticleList(articles=[ArticleSummary(article_id=a.article_id, title=a.title, tags=a.tags,
                                                language=a.language, owner=a.owner, review_at=a.review_at,
                                                version=a.version, updated_at=a.updated_at) for a in rows])


async def create_article(req: ApiRequest[ArticleBody, None]) -> ArticleView:
    b = req.body
    try:
        a = await query(store.create_article(db(req.app), title=b.title, body=b.body, tags=_tags(b.tags),
                                             language=b.language, owner=b.owner or actor_of(req),
                                             links=_links(b.links), review_at=b.review_at, author=actor_of(req),
                                             note=b.note))
    except store.KbError as exc:
        raise _known(exc) from None
    log.info("kb article created", article_id=a.article_id, actor=actor_of(req))
    return _article_view(a)


async def get_article(req: ApiRequest[None, None]) -> ArticleView:
    try:
        return _article_view(await query(store.get_article(db(req.app), _id(req, "article_id"))))
    except store.KbError as exc:
        raise _known(exc) from None


async def change_article(req: ApiRequest[ArticleChange, None]) -> ArticleView:
    b = req.body
    try:
        a = await query(store.update_article(db(req.app), _id(req, "article_id"), base_version=b.base_version,
                                             title=b.title, body=b.body, tags=_tags(b.tags), links=_links(b.links),
                                             author=actor_of(req), note=b.note, owner=b.owner, review_at=b.review_at,
                                             language=b.language))
    except store.KbError as exc:
        raise _known(exc) from None
    log.info("kb article changed", article_id=a.article_id, version=a.version, actor=actor_of(req))
    return _article_view(a)


async def archive_article(req: ApiRequest[None, None]) -> None:
    try:
        await query(store.archive_article(db(req.app), _id(req, "article_id")))
    except store.KbError as exc:
        raise _known(exc) from None
    log.info("kb article archived", article_id=req.match_info["article_id"], actor=actor_of(req))


async def article_versions(req: ApiRequest[None, None]) -> VersionList:
    article_id = _id(req, "article_id")
    try:
        vs = await query(store.versions(db(req.app), article_id))
    except store.KbError as exc:
        raise _known(exc) from None
    return VersionList(article_id=article_id, versions=[
        VersionView(version=v.version, title=v.title, body=v.body, tags=v.tags, author=v.author, note=v.note,
                    at=v.at, links=[LinkModel(kind=x.kind, target=x.target) for x in v.links]) for v in vs])


async def search(req: ApiRequest[None, SearchQuery]) -> SearchReply:
    q = req.query
    hits = await query(store.search(db(req.app), q.q, language=q.language, limit=q.limit))
    return SearchReply(hits=[HitView(article_id=h.article_id, title=h.title, tags=h.tags, snippet=h.snippet,
                                     score=round(h.score, 4)) for h in hits])


async def suggestions(req: ApiRequest[SuggestBody, None]) -> SuggestReply:
    b = req.body
    pool = db(req.app)
    if b.call_id is not None:
        known = await query(store.call_context(pool, b.call_id, language=b.language))
    else:
        known = CallContext(language=b.language or "en")
    ctx = CallContext(language=b.language or known.language, queue=b.queue or known.queue,
                      skills=tuple(b.skills) or known.skills, ivr_path=tuple(b.ivr_path) or known.ivr_path,
                      tickets=tuple(OpenTicket(t.type, t.title) for t in b.tickets) or known.tickets,
                      notes=b.notes, products=tuple(b.products) or known.products)
    got = await query(store.suggest(pool, ctx, limit=b.limit, stats=req.app[KB_STATS]))
    return SuggestReply(call_id=b.call_id, suggestions=[
        SuggestionView(article_id=s.article_id, title=s.title, tags=s.tags, score=s.score, why=s.parts) for s in got])


async def feedback(req: ApiRequest[FeedbackBody, None]) -> FeedbackReply:
    b = req.body
    assert req.principal is not None
    who = req.principal.agent_id or req.principal.name
    try:
        helped, not_relevant = await query(store.feedback(db(req.app), article_id=b.article_id, call_id=b.call_id,
                                                          agent=who, helped=b.helped))
    except store.KbError as exc:
        raise _known(exc) from None
    await after_mark(req.app, req.app[KB_STATS], article_id=b.article_id, call_id=b.call_id, agent=who,
                     helped=b.helped, notes=b.notes)
    return FeedbackReply(article_id=b.article_id, helped=helped, not_relevant=not_relevant)


async def propose(req: ApiRequest[ProposalBody, None]) -> ProposalView:
    b = req.body
    assert req.principal is not None
    try:
        p = await query(store.propose(db(req.app), kind=b.kind, article_id=b.article_id, title=b.title, body=b.body,
                                      tags=_tags(b.tags), language=b.language, proposer=actor_of(req),
                                      agent_id=req.principal.agent_id, call_id=b.call_id, notes=b.notes))
    except store.KbError as exc:
        raise _known(exc) from None
    log.info("kb proposal made", proposal_id=p.proposal_id, kind=p.kind, article_id=p.article_id, actor=actor_of(req))
    return _proposal_view(p)


async def list_proposals(req: ApiRequest[None, ProposalQuery]) -> ProposalList:
    rows = await query(store.list_proposals(db(req.app), state=req.query.state, limit=req.query.limit))
    return ProposalList(proposals=[_proposal_view(p) for p in rows])


async def decide(req: ApiRequest[DecisionBody, None]) -> DecisionReply:
    b = req.body
    try:
        p, a = await query(store.decide(db(req.app), _id(req, "proposal_id"), approve=b.approve, by=actor_of(req),
                                        note=b.note, links=_links(b.links) if b.links is not None else None))
    except store.KbError as exc:
        raise _known(exc) from None
    log.info("kb proposal decided", proposal_id=p.proposal_id, state=p.state, article_id=p.article_id,
             actor=actor_of(req))
    if p.state == "approved":
        await after_approval(req.app, req.app[KB_STATS], p)
    return DecisionReply(proposal=_proposal_view(p), article=_article_view(a) if a is not None else None)


def _synonym_list(language: str, groups: list[store.SynonymGroup]) -> SynonymList:
    return SynonymList(language=language, groups=[SynonymGroupModel(name=g.name, phrases=g.phrases) for g in groups])


async def get_synonyms(req: ApiRequest[None, SynonymQuery]) -> SynonymList:
    language = req.query.language
    return _synonym_list(language, await query(store.synonyms(db(req.app), language)))


async def put_synonyms(req: ApiRequest[SynonymList, None]) -> SynonymList:
    b = req.body
    try:
        groups = await query(store.set_synonyms(db(req.app), b.language, [
            store.SynonymGroup(g.name, g.phrases) for g in b.groups], by=actor_of(req)))
    except store.KbError as exc:
        raise _known(exc) from None
    log.info("kb synonyms replaced", language=b.language, groups=len(groups), actor=actor_of(req))
    return _synonym_list(b.language, groups)


# -- wiring ------------------------------------------------------------------------------------


def setup_kb_routes(app: web.Application) -> None:
    """The knowledge-base routes. After ``setup_auth`` (its pool)."""
    api = setup_registry(app)
    app[KB_STATS] = store.LexemeStats()
    art = "/api/kb/articles/{article_id:[0-9]+}"
    api.add("GET", "/api/kb/articles", list_articles, summary="Knowledge base articles", roles=READ,
            query=ArticleQuery, response=ArticleList, tags=TAGS)
    api.add("POST", "/api/kb/articles", create_article, summary="Create an article", roles=STAFF, body=ArticleBody,
            response=ArticleView, status=201, tags=TAGS)
    api.add("GET", art, get_article, summary="An article, with its body rendered", roles=READ,
            response=ArticleView, tags=TAGS)
    api.add("PUT", art, change_article, summary="Save a new version of an article", roles=STAFF,
            body=ArticleChange, response=ArticleView, tags=TAGS)
    api.add("DELETE", art, archive_article, summary="Archive an article", roles=STAFF, status=204, tags=TAGS)
    api.add("GET", art + "/versions", article_versions, summary="Every version of an article", roles=READ,
            response=VersionList, tags=TAGS)
    api.add("GET", "/api/kb/search", search, summary="Search the knowledge base", roles=READ, query=SearchQuery,
            response=SearchReply, tags=TAGS)
    api.add("POST", "/api/kb/suggestions", suggestions, summary="The best articles for a call", roles=READ,
            body=SuggestBody, response=SuggestReply, tags=TAGS,
            description="Ranked from the call's IVR path, queue, the customer's open tickets and the agent's "
                        "notes so far, with links and feedback (docs/knowledge.md).")
    api.add("POST", "/api/kb/feedback", feedback, summary="Mark an article helpful or not relevant on a call",
            roles=READ, body=FeedbackBody, response=FeedbackReply, tags=TAGS)
    api.add("POST", "/api/kb/proposals", propose, summary="Propose a new article or an edit", roles=READ,
            body=ProposalBody, response=ProposalView, status=201, tags=TAGS)
    api.add("GET", "/api/kb/proposals", list_proposals, summary="Proposals by state", roles=STAFF,
            query=ProposalQuery, response=ProposalList, tags=TAGS)
    api.add("POST", "/api/kb/proposals/{proposal_id:[0-9]+}/decision", decide, summary="Approve or reject a proposal",
            roles=STAFF, body=DecisionBody, response=DecisionReply, tags=TAGS)
    api.add("GET", "/api/kb/synonyms", get_synonyms, summary="The synonym groups of a language", roles=READ,
            query=SynonymQuery, response=SynonymList, tags=TAGS)
    api.add("PUT", "/api/kb/synonyms", put_synonyms, summary="Replace a language's synonym groups", roles=STAFF,
            body=SynonymList, response=SynonymList, tags=TAGS,
            description="The suggestions widen the call's words with the other phrases of each group one of "
                        "whose phrases the call holds (docs/knowledge.md, \"Synonyms\").")
    setup_kb_learn_routes(app)
