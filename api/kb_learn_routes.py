"""What the knowledge base learns from agents, over the API (docs/knowledge.md, "Synonyms
learned from agents" and "What the center already knows").

Routes::

    GET    /api/kb/synonyms/proposals                  synonyms proposed from "Helped" marks (KB admins)
    POST   /api/kb/synonyms/proposals/{id}/decision    approve (joins the synonyms) or reject
    POST   /api/kb/synonyms/proposals/{id}/withdraw    take an approved one back (leaves the synonyms)

The page for KB admins is ``/wallboard/synonyms.html`` (api/static/wallboard/synonyms.js).

And the learning behind ``POST /api/kb/feedback`` and a proposal's approval (``after_mark``,
``after_approval``): the call's words the article lacks are kept as evidence, and the
customer's products learned from the article marked helpful. A mark is recorded first; the
learning that follows it never undoes it (a failure is logged).
"""
from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Literal

import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import STAFF
from api.crm_common import StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from kb import learn_store, store

log = structlog.get_logger(__name__)

TAGS = ("knowledge",)
#: The learning after a mark gives up after this long (seconds): the mark is already recorded.
LEARN_TIMEOUT = 5.0
_FAILURES = (store.KbError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class SynonymExample(BaseModel):
    call_id: str
    agent: str
    source: str = Field(description="helped: a mark; proposal: an approved article proposed from the call")
    words: list[str] = Field(description="the call's words the article did not hold")
    at: datetime


class SynonymProposalView(BaseModel):
    proposal_id: int
    language: str
    word: str = Field(description="what callers said, which no article holds")
    anchor: str = Field(description="the word of the article it led to (its title's rarest)")
    article_id: int
    article_title: str
    calls: int = Field(description="distinct calls whose helpful article it led to")
    state: str
    grp: str | None = Field(description="the synonym group it joined, once approved")
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    examples: list[SynonymExample] = Field(description="the latest calls behind it (at most 3)")


class SynonymProposalList(BaseModel):
    proposals: list[SynonymProposalView]


class SynonymProposalQuery(StrictBody):
    state: Literal["pending", "approved", "rejected"] = "pending"
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    limit: int = Field(100, ge=1, le=500)


class SynonymDecision(StrictBody):
    approve: bool


def _view(p: learn_store.SynonymProposal) -> SynonymProposalView:
    return SynonymProposalView(**{k: getattr(p, k) for k in learn_store.SynonymProposal.__slots__})


async def list_synonym_proposals(req: ApiRequest[None, SynonymProposalQuery]) -> SynonymProposalList:
    q = req.query
    rows = await query(learn_store.synonym_proposals(db(req.app), state=q.state, language=q.language, limit=q.limit))
    return SynonymProposalList(proposals=[_view(p) for p in rows])


def _proposal_id(req: web.Request) -> int:
    value = int(req.match_info["proposal_id"])
    if value > 2**62:
        raise ApiError(404, "not_found", "no such synonym proposal")
    return value


async def decide_synonym_proposal(req: ApiRequest[SynonymDecision, None]) -> SynonymProposalView:
    value = _proposal_id(req)
    try:
        p = await query(learn_store.decide_synonym(db(req.app), value, approve=req.body.approve, by=actor_of(req)))
    except store.NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except store.Conflict as exc:
        raise ApiError(409, "kb_conflict", str(exc)) from None
    log.info("kb synonym proposal decided", proposal_id=p.proposal_id, state=p.state, group=p.grp,
             actor=actor_of(req))
    return _view(p)


async def withdraw_synonym_proposal(req: ApiRequest[None, None]) -> SynonymProposalView:
    value = _proposal_id(req)
    try:
        p = await query(learn_store.withdraw_synonym(db(req.app), value, by=actor_of(req)))
    except store.NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except store.Conflict as exc:
        raise ApiError(409, "kb_conflict", str(exc)) from None
    log.info("kb synonym withdrawn", proposal_id=p.proposal_id, word=p.word, anchor=p.anchor, actor=actor_of(req))
    return _view(p)


async def _ticket_titles(pool: object, call_id: str) -> list[str]:
    ctx = await store.call_context(pool, call_id)
    return [t.title for t in ctx.tickets]


async def after_mark(app: web.Application, stats: store.LexemeStats, *, article_id: int, call_id: str, agent: str,
                     helped: bool, notes: str) -> None:
    """What a recorded "Helped" / "not relevant" mark teaches (a failure is logged, the mark stays)."""
    pool = db(app)
    try:
        async with asyncio.timeout(LEARN_TIMEOUT):
            await _learn_from_mark(pool, stats, article_id=article_id, call_id=call_id, agent=agent, helped=helped,
                                   notes=notes)
    except _FAILURES as exc:
        log.warning("kb learning from a mark failed", article_id=article_id, error=type(exc).__name__)


async def _learn_from_mark(pool: object, stats: store.LexemeStats, *, article_id: int, call_id: str, agent: str,
                           helped: bool, notes: str) -> None:
    if helped:
        await learn_store.record_words(pool, article_id=article_id, call_id=call_id, agent=agent, source="helped",
                                       notes=notes, ticket_titles=await _ticket_titles(pool, call_id), stats=stats)
        await learn_store.products_from_helped(pool, article_id=article_id, call_id=call_id, on=date.today())
    else:
        await learn_store.forget_words(pool, article_id=article_id, call_id=call_id, agent=agent, stats=stats)


async def after_approval(app: web.Application, stats: store.LexemeStats, p: store.Proposal) -> None:
    """An approved proposal from a call: the call's words its article lacks become evidence."""
    if p.call_id is None or p.article_id is None:
        return
    pool = db(app)
    try:
        async with asyncio.timeout(LEARN_TIMEOUT):
            await learn_store.record_words(pool, article_id=p.article_id, call_id=p.call_id, agent=p.proposer,
                                           source="proposal", notes=p.notes or "",
                                           ticket_titles=await _ticket_titles(pool, p.call_id), stats=stats)
    except _FAILURES as exc:
        log.warning("kb learning from a proposal failed", proposal_id=p.proposal_id, error=type(exc).__name__)


def setup_kb_learn_routes(app: web.Application) -> None:
    """The synonym proposals' routes (``setup_kb_routes`` calls it)."""
    api = setup_registry(app)
    api.add("GET", "/api/kb/synonyms/proposals", list_synonym_proposals, summary="Synonyms proposed from agents' marks",
            roles=STAFF, query=SynonymProposalQuery, response=SynonymProposalList, tags=TAGS,
            description="A caller's word no article holds, paired with the word of the article agents marked "
                        "helpful on those calls (docs/knowledge.md, \"Synonyms learned from agents\").")
    api.add("POST", "/api/kb/synonyms/proposals/{proposal_id:[0-9]+}/decision", decide_synonym_proposal,
            summary="Approve or reject a proposed synonym", roles=STAFF, body=SynonymDecision,
            response=SynonymProposalView, tags=TAGS,
            description="Approving adds the word to the synonym group holding the article's word (or a new "
                        "group), as PUT /api/kb/synonyms would; a decided proposal is not proposed again.")
    api.add("POST", "/api/kb/synonyms/proposals/{proposal_id:[0-9]+}/withdraw", withdraw_synonym_proposal,
            summary="Take an approved synonym back", roles=STAFF, response=SynonymProposalView, tags=TAGS,
            description="The word leaves the synonym group it joined (a group left with one phrase goes) and the "
                        "proposal becomes rejected, so it is not proposed again; 409 when it is not approved.")
