"""Outbound campaigns over the API: campaigns, lead lists (CSV), the do-not-call list.

Routes (docs/dialer.md, "API")::

    GET    /api/campaigns                      campaigns with their leads counted by state
    POST   /api/campaigns                      create a campaign (supervisors, admins)
    POST   /api/campaigns/{id}/leads           import a CSV list: a line-numbered report
    GET    /api/dnc/{phone}                    is this number on the do-not-call list?
    PUT    /api/dnc/{phone}                    put it on (agents too: a person asked)
    DELETE /api/dnc/{phone}                    take it off (supervisors, admins)
"""
from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import ADMIN
from api.crm_common import CRM_ROLES, StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from dialer import store
from dialer.lead_import import BadLeadFile, parse_leads

log = structlog.get_logger(__name__)

MANAGERS = frozenset({"supervisor"}) | ADMIN
E164 = r"^\+[1-9][0-9]{1,14}$"
CSV_MAX = 4 * 1024 * 1024


class CampaignBody(StrictBody):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    mode: str = Field("preview", pattern=r"^(preview|progressive|predictive)$")
    caller_id: str | None = Field(None, pattern=E164)
    queue: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
    abandon_cap: float = Field(0.03, ge=0.001, le=0.03, description="the abandonment rate neither window may pass")


class CampaignView(BaseModel):
    campaign_id: int
    name: str
    mode: str
    state: str
    caller_id: str | None
    queue: str | None
    abandon_cap: float
    leads: dict[str, int] = Field(default_factory=dict, description="leads by state")


class CampaignList(BaseModel):
    campaigns: list[CampaignView]


class LeadsBody(StrictBody):
    csv: str = Field(min_length=1, max_length=CSV_MAX, description="the list: phone[,name,customer_id,tz]")
    country_code: str | None = Field(None, pattern=r"^[1-9][0-9]{0,2}$",
                                     description="makes a number starting with one 0 national")


class RejectedRow(BaseModel):
    line: int
    reason: str


class ImportView(BaseModel):
    created: int
    rejected: list[RejectedRow]


class DncBody(StrictBody):
    reason: str | None = Field(None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")


class DncView(BaseModel):
    phone: str
    listed: bool


def _phone(req: ApiRequest) -> str:
    try:
        return store.normalised(req.match_info["phone"])
    except store.DialerStoreError as exc:
        raise ApiError(400, "invalid_phone", str(exc)) from None


async def list_campaigns(req: ApiRequest[None, None]) -> CampaignList:
    rows = await query(store.list_campaigns(db(req.app)))
    return CampaignList(campaigns=[CampaignView(**r) for r in rows])


async def create_campaign(req: ApiRequest[CampaignBody, None]) -> CampaignView:
    b = req.body
    try:
        cid = await query(store.create_campaign(db(req.app), b.name, mode=b.mode, caller_id=b.caller_id,
                                                queue=b.queue, abandon_cap=b.abandon_cap))
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "name_taken", f"a campaign is already called {b.name!r}") from None
    log.info("campaign created", campaign_id=cid, mode=b.mode, actor=actor_of(req))
    return CampaignView(campaign_id=cid, name=b.name, mode=b.mode, state="stopped", caller_id=b.caller_id,
                        queue=b.queue, abandon_cap=b.abandon_cap)


async def import_leads(req: ApiRequest[LeadsBody, None]) -> ImportView:
    cid = int(req.match_info["campaign_id"])
    try:
        # A parse per number (tens of microseconds): a long list is read off the event loop.
        valid, rejected = await asyncio.to_thread(parse_leads, req.body.csv, country_code=req.body.country_code)
    except BadLeadFile as exc:
        raise ApiError(400, "bad_lead_file", str(exc)) from None
    try:
        report = await query(store.import_leads(db(req.app), cid, valid, rejected))
    except store.DialerStoreError as exc:
        raise ApiError(404, "no_campaign", str(exc)) from None
    log.info("leads imported", campaign_id=cid, created=report.created, rejected=len(report.rejected),
             actor=actor_of(req))
    return ImportView(created=report.created,
                      rejected=[RejectedRow(line=r.line, reason=r.reason) for r in report.rejected])


async def dnc_status(req: ApiRequest[None, None]) -> DncView:
    phone = _phone(req)
    return DncView(phone=phone, listed=await query(store.is_dnc(db(req.app), phone)))


async def dnc_add(req: ApiRequest[DncBody, None]) -> DncView:
    phone = _phone(req)
    source = "opt_out" if req.principal is not None and req.principal.role == "agent" else "manual"
    await query(store.add_dnc(db(req.app), phone, reason=req.body.reason, source=source, added_by=actor_of(req)))
    log.info("dnc added", source=source, actor=actor_of(req))        # the number stays out of the logs
    return DncView(phone=phone, listed=True)


async def dnc_remove(req: ApiRequest[None, None]) -> DncView:
    phone = _phone(req)
    if not await query(store.remove_dnc(db(req.app), phone)):
        raise ApiError(404, "not_listed", "that number is not on the do-not-call list")
    log.info("dnc removed", actor=actor_of(req))
    return DncView(phone=phone, listed=False)


def setup_dialer_routes(app: web.Application) -> None:
    """The campaign and do-not-call routes. After ``setup_auth`` (its pool)."""
    api = setup_registry(app)
    tags = ("campaigns",)
    api.add("GET", "/api/campaigns", list_campaigns, summary="Campaigns, with their leads by state",
            roles=MANAGERS, response=CampaignList, tags=tags)
    api.add("POST", "/api/campaigns", create_campaign, summary="Create a campaign", roles=MANAGERS,
            body=CampaignBody, response=CampaignView, status=201, tags=tags)
    api.add("POST", "/api/campaigns/{campaign_id:[0-9]+}/leads", import_leads,
            summary="Import a lead list (CSV): a line-numbered report", roles=MANAGERS, body=LeadsBody,
            response=ImportView, tags=tags, body_max=CSV_MAX + 4096)
    api.add("GET", "/api/dnc/{phone}", dnc_status, summary="Is a number on the do-not-call list?",
            roles=CRM_ROLES, response=DncView, tags=tags)
    api.add("PUT", "/api/dnc/{phone}", dnc_add, summary="Put a number on the do-not-call list",
            roles=CRM_ROLES, body=DncBody, response=DncView, tags=tags)
    api.add("DELETE", "/api/dnc/{phone}", dnc_remove, summary="Take a number off the do-not-call list",
            roles=MANAGERS, response=DncView, tags=tags)
