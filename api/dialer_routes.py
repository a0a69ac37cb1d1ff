"""Outbound campaigns over the API: campaigns, lead lists (CSV), the do-not-call list.

Routes (docs/dialer.md, "API")::

    GET    /api/campaigns                      campaigns with their leads counted by state
    POST   /api/campaigns                      create a campaign (supervisors, admins)
    POST   /api/campaigns/{id}/leads           import a CSV list: a line-numbered report
    POST   /api/campaigns/{id}/sync            bring a live list's leads in step with the tickets now
    GET    /api/dnc/{phone}                    is this number on the do-not-call list?
    PUT    /api/dnc/{phone}                    put it on (agents too: a person asked)
    DELETE /api/dnc/{phone}                    take it off (supervisors, admins)
    POST   /api/campaigns/{id}/state           start (running), pause or stop a campaign
    GET    /api/campaigns/{id}/attempts        every attempt: outcome, call id, AMD's word
    POST   /api/campaigns/emergency-stop       pause every running campaign at once
    GET    /api/preview/campaigns              running preview campaigns (agents)
    POST   /api/preview/next                   the next lead of one, held for the agent
    POST   /api/preview/leads/{id}/dial        the agent dials it (DNC checked again): an attempt
    POST   /api/preview/leads/{id}/skip        the agent passes, with a reason
    POST   /api/preview/attempts/{id}/result   the outcome, disposition, survey answers (a preview
                                               dial, or a campaign call connected to the agent)

A campaign call the runner connects to an agent is pushed to that agent's desktop as a
``campaign.lead`` message (the lead card, script and survey, the attempt and the call).

A campaign's own window and rules, the board, the results export and the agent's pending
result are in ``api.campaign_routes`` (set up from here); the preview routes dial by the
campaign's own window and rules (``api.campaign_routes.policy``).
"""
from __future__ import annotations

import asyncio
import functools
import time
from datetime import datetime, timezone

import asyncpg
import structlog
from aiohttp import web
from typing import Annotated

from pydantic import BaseModel, Field

from api.auth import ADMIN
from api.campaign_routes import ReserveBody, RetryBody, WindowsBody, checked_reserve, checked_rules, policy, \
    setup_campaign_routes
from api.crm_common import CRM_ROLES, StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from api.survey_routes import Question, checked_survey, setup_survey_routes
from api.ws import WS
from cti.daemon import CORE
from cti.ha import HaNode, run_while_leading
from dialer import live_store, store
from dialer.live_lists import is_live
from dialer.live_sync import LiveListSync
from dialer.leads import InvalidRule, TransitionRefused
from dialer.runner import CampaignRunner
from dialer.windows import CallingWindow, WindowChecker
from dialer.lead_import import BadLeadFile, parse_leads

log = structlog.get_logger(__name__)

MANAGERS = frozenset({"supervisor"}) | ADMIN
RUNNER = web.AppKey("dialer_runner", CampaignRunner)
#: The calling window preview leads are checked against when no runner runs (the default one).
PREVIEW_WINDOWS = web.AppKey("dialer_preview_windows", WindowChecker)
PROMPT = r"^/?[A-Za-z0-9_][A-Za-z0-9_-]{0,63}(\.?[A-Za-z0-9_-]{1,63})*(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,12}$"
E164 = r"^\+[1-9][0-9]{1,14}$"
CSV_MAX = 4 * 1024 * 1024


class CampaignBody(StrictBody):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    mode: str = Field("preview", pattern=r"^(preview|progressive|predictive)$")
    caller_id: str | None = Field(None, pattern=E164)
    queue: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
    abandon_cap: float = Field(0.03, ge=0.001, le=0.03, description="the abandonment rate neither window may pass")
    machine_action: str = Field("retry", pattern=r"^(retry|voicemail)$",
                                description="an answering machine: retried later, or a voicemail drop")
    ring_s: int = Field(25, ge=15, le=120, description="ring this long before no answer (the law: 15 s at least)")
    abandon_prompt: str | None = Field(None, max_length=200, pattern=PROMPT,
                                       description="played to a person no agent took within 2 s: names the caller"
                                                   " and a number to opt out")
    voicemail_prompt: str | None = Field(None, max_length=200, pattern=PROMPT)
    skills: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z0-9_:, -]*$",
                               description="skills the agents need, as the ACD reads them (name:level,...)")
    script: str = Field("", max_length=20000, description="what the agent says, shown as text")
    survey: list[Question] = Field(default_factory=list, max_length=50, description="questions the agent asks")
    windows: WindowsBody | None = Field(None, description="its calling window (null: Monday to Saturday, 09:00 to"
                                                          " 20:00 local); PUT /api/campaigns/{id}/rules changes it")
    retry: RetryBody | None = Field(None, description="its retry rules (null: the defaults)")
    reserve: ReserveBody | None = Field(None, description="its reserve for inbound when its agents also serve inbound"
                                                          " queues (null: none beyond no call while a caller waits)")
    source: str = Field("csv", pattern=r"^(csv|tickets_callback|tickets_visit)$",
                        description="where its leads come from: csv (imported lists), or a live list kept in step"
                                    " with the tickets: tickets_callback (awaiting the confirmation callback),"
                                    " tickets_visit (a visit to arrange again)")


class CampaignView(BaseModel):
    campaign_id: int
    name: str
    mode: str
    state: str
    caller_id: str | None
    queue: str | None
    abandon_cap: float
    source: str = "csv"
    leads: dict[str, int] = Field(default_factory=dict, description="leads by state")


class StateBody(StrictBody):
    state: str = Field(pattern=r"^(running|paused|stopped)$")


class StateView(BaseModel):
    campaign_id: int
    state: str


class StopView(BaseModel):
    paused: list[int] = Field(description="the campaigns paused")
    at: float = Field(description="when the dialer stopped placing calls (epoch seconds)")


class AttemptView(BaseModel):
    attempt_id: int
    lead_id: int
    phone: str
    started_at: str
    ended_at: str | None
    outcome: str | None
    call_id: str | None
    amd_status: str | None
    amd_cause: str | None
    rang_ms: int | None
    agent_id: str | None


class AttemptList(BaseModel):
    attempts: list[AttemptView]


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
    windows, retry = checked_rules(b.windows and b.windows.model_dump(mode="json", exclude_none=True),
                                   b.retry and b.retry.model_dump(mode="json", exclude_none=True),
                                   ring_s=b.ring_s, machine_action=b.machine_action)
    reserve = checked_reserve(b.reserve and b.reserve.model_dump(mode="json"))
    survey = checked_survey(b.survey)
    try:
        cid = await query(store.create_campaign(db(req.app), b.name, mode=b.mode, caller_id=b.caller_id,
                                                queue=b.queue, abandon_cap=b.abandon_cap,
                                                machine_action=b.machine_action, ring_s=b.ring_s,
                                                abandon_prompt=b.abandon_prompt, voicemail_prompt=b.voicemail_prompt,
                                                skills=b.skills, script=b.script,
                                                survey=survey, windows=windows,
                                                retry=retry, reserve=reserve, source=b.source))
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "name_taken", f"a campaign is already called {b.name!r}") from None
    log.info("campaign created", campaign_id=cid, mode=b.mode, source=b.source, actor=actor_of(req))
    leads: dict[str, int] = {}
    if is_live(b.source):       # its list's tickets are its leads from the start
        report = await query(live_store.sync_campaign(db(req.app), cid, _now()))
        leads = {"new": len(report.added)} if report.added else {}
    return CampaignView(campaign_id=cid, name=b.name, mode=b.mode, state="stopped", caller_id=b.caller_id,
                        queue=b.queue, abandon_cap=b.abandon_cap, source=b.source, leads=leads)


class SyncView(BaseModel):
    campaign_id: int
    source: str
    on_list: int = Field(description="tickets on the list now")
    added: list[int] = Field(description="leads created (tickets that entered the list)")
    withdrawn: list[int] = Field(description="leads withdrawn before they were dialed (tickets that left it)")
    no_phone: list[int] = Field(description="tickets on the list whose customer has no number: no lead")
    no_zone: list[int] = Field(description="tickets whose customer's number maps to no time zone: no lead")


async def sync_campaign(req: ApiRequest[None, None]) -> SyncView:
    cid = int(req.match_info["campaign_id"])
    try:
        report = await query(live_store.sync_campaign(db(req.app), cid, _now()))
    except live_store.NotLive as exc:
        if str(exc).startswith("no campaign"):
            raise ApiError(404, "no_campaign", str(exc)) from None
        raise ApiError(409, "not_live", str(exc)) from None
    log.info("live list synced on request", campaign_id=cid, added=len(report.added),
             withdrawn=len(report.withdrawn), actor=actor_of(req))
    return SyncView(campaign_id=cid, source=report.source, on_list=report.on_list, added=report.added,
                    withdrawn=report.withdrawn, no_phone=report.no_phone, no_zone=report.no_zone)


async def import_leads(req: ApiRequest[LeadsBody, None]) -> ImportView:
    cid = int(req.match_info["campaign_id"])
    try:
        # A parse per number (tens of microseconds): a long list is read off the event loop.
        valid, rejected = await asyncio.to_thread(parse_leads, req.body.csv, country_code=req.body.country_code)
    except BadLeadFile as exc:
        raise ApiError(400, "bad_lead_file", str(exc)) from None
    try:
        report = await query(store.import_leads(db(req.app), cid, valid, rejected))
    except store.LiveSource as exc:
        raise ApiError(409, "live_source", str(exc)) from None
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


async def set_state(req: ApiRequest[StateBody, None]) -> StateView:
    cid = int(req.match_info["campaign_id"])
    if not await query(store.set_campaign_state(db(req.app), cid, req.body.state)):
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    log.info("campaign state", campaign_id=cid, state=req.body.state, actor=actor_of(req))
    if req.body.state == "running":
        sync = req.app.get(LIVE_SYNC)
        if sync is not None:
            sync.kick()         # a live list is brought in step before its first calls
    runner = req.app.get(RUNNER)
    if runner is not None and req.body.state == "running":
        runner.wake()
    return StateView(campaign_id=cid, state=req.body.state)


async def emergency_stop(req: ApiRequest[None, None]) -> StopView:
    runner = req.app.get(RUNNER)
    if runner is not None:
        paused = await query(runner.pause_all())
        at = runner.stopped_at or time.time()
    else:
        at = time.time()
        paused = await query(store.pause_all(db(req.app)))
    log.warning("campaigns emergency stop", paused=paused, actor=actor_of(req))
    return StopView(paused=paused, at=at)


async def list_attempts(req: ApiRequest[None, None]) -> AttemptList:
    cid = int(req.match_info["campaign_id"])
    rows = await query(store.attempts(db(req.app), cid))
    return AttemptList(attempts=[AttemptView(**{**r, "started_at": r["started_at"].isoformat(),
                                                "ended_at": r["ended_at"].isoformat() if r["ended_at"] else None})
                                 for r in rows])


# -- preview (agents) ------------------------------------------------------------------------

AGENTS = frozenset({"agent"})


class PreviewCampaign(BaseModel):
    campaign_id: int
    name: str


class PreviewCampaigns(BaseModel):
    campaigns: list[PreviewCampaign]


class NextBody(StrictBody):
    campaign_id: int = Field(ge=1, le=2 ** 63 - 1)


class TicketBrief(BaseModel):
    ticket_id: int
    type: str
    title: str
    state: str
    visits: int
    callback_attempts: int
    engineer: str | None


class LeadCard(BaseModel):
    lead_id: int
    phone: str
    name: str | None
    customer_id: str | None
    attempts: int
    last_outcome: str | None
    campaign_id: int
    campaign: str
    script: str
    survey: list[dict]
    ticket: TicketBrief | None = Field(None, description="a live list's lead: the ticket it calls about")


class PreviewDial(BaseModel):
    attempt_id: int
    phone: str


class SkipBody(StrictBody):
    reason: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")


class ResultBody(StrictBody):
    outcome: str = Field(pattern=r"^(answered|busy|no_answer|machine|failed)$")
    disposition: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    answers: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")],
                  Annotated[str, Field(max_length=500)]] = Field(default_factory=dict, max_length=50)
    callback_at: datetime | None = Field(None, description="the person asked to be called back then (with a zone)")
    opt_out: bool = Field(False, description="the person asked not to be called again: on the DNC list")
    call_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="the call the agent made")
    new_phone: str | None = Field(None, min_length=3, max_length=32,
                                  description="a new number the person gave: added to their customer record")


class LeadView(BaseModel):
    lead_id: int
    state: str
    retry_at: str | None


def _preview_error(exc: store.DialerStoreError) -> ApiError:
    if isinstance(exc, store.NotYourCall):
        return ApiError(403, "not_your_call", str(exc))
    if isinstance(exc, store.ResultRecorded):
        return ApiError(409, "result_recorded", str(exc))
    if isinstance(exc, store.OnDncList):
        return ApiError(409, "on_dnc_list", str(exc))
    if isinstance(exc, store.TicketLeftList):
        return ApiError(409, "ticket_left_list", str(exc))
    if isinstance(exc, store.PreviewRefused):
        return ApiError(409, "not_yours", str(exc))
    return ApiError(404, "not_found", str(exc))


def _view(lead) -> LeadView:
    return LeadView(lead_id=lead.lead_id, state=lead.state.value,
                    retry_at=lead.retry_at.isoformat() if lead.retry_at else None)


async def preview_campaigns(req: ApiRequest[None, None]) -> PreviewCampaigns:
    rows = await query(store.preview_campaigns(db(req.app)))
    return PreviewCampaigns(campaigns=[PreviewCampaign(**r) for r in rows])


async def preview_next(req: ApiRequest[NextBody, None]) -> LeadCard:
    windows, rules = await policy(req.app, campaign_id=req.body.campaign_id)
    try:
        card = await query(store.take_preview(db(req.app), req.body.campaign_id, actor_of(req), _now(),
                                              rules=rules, windows=windows))
    except store.DialerStoreError as exc:
        raise _preview_error(exc) from None
    if card is None:
        raise ApiError(404, "no_lead", "no lead may be called now in this campaign")
    return LeadCard(**card)


async def preview_dial(req: ApiRequest[None, None]) -> PreviewDial:
    lead_id = int(req.match_info["lead_id"])
    _, rules = await policy(req.app, lead_id=lead_id)
    try:
        attempt, phone = await query(store.preview_dial(db(req.app), lead_id, actor_of(req), _now(), rules=rules))
    except store.DialerStoreError as exc:
        raise _preview_error(exc) from None
    log.info("preview lead dialed", attempt=attempt, actor=actor_of(req))
    return PreviewDial(attempt_id=attempt, phone=phone)


async def preview_skip(req: ApiRequest[SkipBody, None]) -> LeadView:
    lead_id = int(req.match_info["lead_id"])
    _, rules = await policy(req.app, lead_id=lead_id)
    try:
        lead = await query(store.preview_skip(db(req.app), lead_id, actor_of(req), req.body.reason, _now(),
                                              rules=rules))
    except store.DialerStoreError as exc:
        raise _preview_error(exc) from None
    return _view(lead)


async def preview_result(req: ApiRequest[ResultBody, None]) -> LeadView:
    b = req.body
    if b.callback_at is not None and b.callback_at.tzinfo is None:
        raise ApiError(400, "invalid_callback", "callback_at needs a time zone")
    attempt_id = int(req.match_info["attempt_id"])
    try:
        new_phone = None if b.new_phone is None else store.normalised(b.new_phone)
    except store.DialerStoreError as exc:
        raise ApiError(400, "invalid_phone", f"new_phone: {exc}") from None
    _, rules = await policy(req.app, attempt_id=attempt_id)
    try:
        lead = await query(store.preview_result(
            db(req.app), attempt_id, actor_of(req), _now(), rules=rules,
            outcome=b.outcome, disposition=b.disposition, answers=b.answers, callback_at=b.callback_at,
            opt_out=b.opt_out, call_id=b.call_id, agent_id=req.principal.agent_id if req.principal else None,
            new_phone=new_phone))
    except store.DialerStoreError as exc:
        raise _preview_error(exc) from None
    except (InvalidRule, TransitionRefused) as exc:
        raise ApiError(400, "invalid_result", str(exc)) from None
    log.info("preview result", outcome=b.outcome, lead_state=lead.state.value, actor=actor_of(req))
    sync = req.app.get(LIVE_SYNC)
    if sync is not None:
        sync.kick()             # a result may move a ticket onto another live list
    return _view(lead)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def campaign_lead_message(attempt_id: int, call_id: str, agent: str, card: dict) -> dict:
    """The ``campaign.lead`` hub message: a campaign call connected to ``agent``."""
    return {"type": "campaign.lead", "agent_id": agent, "attempt_id": attempt_id, "call_id": call_id,
            "card": card}


async def push_campaign_card(app: web.Application, attempt_id: int, call_id: str, agent: str) -> bool:
    """The screen-pop of a campaign call connected to ``agent``: the lead card, script and
    survey on the hub (``campaign.lead``). False when there is no hub, database or attempt."""
    hub = app.get(WS)
    pool = app[CORE].pool
    if hub is None or pool is None:
        return False
    card = await store.attempt_card(pool, attempt_id)
    if card is None:
        return False
    hub.push(campaign_lead_message(attempt_id, call_id, agent, card), frozenset({agent}))
    return True


def setup_dialer_runner(app: web.Application, acd: object | None, *, enabled: bool,
                        ha: HaNode | None = None) -> CampaignRunner | None:
    """The campaign runner (``dialer.runner``), when ``dialer_enabled`` and the ACD runs: it
    places calls, so it is off unless asked. After the ACD and emergency mode (it hooks in).

    In a high-availability pair (``ha``) it runs only while this node leads: started on
    each takeover after the ACD (its ledgers and figures rebuilt from the database), stopped
    on step-down, and it places nothing while ``ha.may_act()`` is false."""
    if not enabled:
        return None
    if acd is None:
        log.warning("dialer disabled: it needs the ACD (acd_config)")
        return None
    core = app[CORE]
    runner = CampaignRunner(core, acd, windows=app[PREVIEW_WINDOWS]) if PREVIEW_WINDOWS in app \
        else CampaignRunner(core, acd)
    app[RUNNER] = runner

    runner.on_connected.append(functools.partial(push_campaign_card, app))
    core.health_parts["dialer"] = runner.health
    from emergency.routes import EMERGENCY
    emergency = app.get(EMERGENCY)
    if emergency is not None:
        emergency.campaign_pause_hooks.append(runner.pause_all)

    if ha is not None:
        runner.may_act = ha.may_act

        async def lead(epoch: int) -> None:
            await runner.start()
            log.info("dialer started: leading", epoch=epoch)

        # Registered after the ACD's: on a takeover the ACD runs before calls are placed.
        run_while_leading(app, ha, lead, runner.stop)
        return runner

    async def ctx(app: web.Application):
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app.cleanup_ctx.append(ctx)
    return runner


LIVE_SYNC = web.AppKey("dialer_live_sync", LiveListSync)


def setup_live_sync(app: web.Application, ha: HaNode | None) -> LiveListSync:
    """The live lists' background sync (``dialer.live_sync``): with the app, or in an HA pair
    while this node leads; kicked by every ticket transition made through the API."""
    from api.ticket_routes import TICKET_CHANGED
    core = app[CORE]
    sync = LiveListSync(lambda: core.pool)
    if TICKET_CHANGED in app:
        app[TICKET_CHANGED].append(sync.kick)
    core.health_parts["live_lists"] = sync.health
    if ha is not None:
        run_while_leading(app, ha, sync.start, sync.stop)
    else:
        async def ctx(app: web.Application):
            await sync.start()
            try:
                yield
            finally:
                await sync.stop()

        app.cleanup_ctx.append(ctx)
    return sync


def setup_dialer_routes(app: web.Application, *, ha: HaNode | None = None) -> None:
    """The campaign and do-not-call routes, and the live lists kept in step with the tickets
    (``dialer.live_sync``: in an HA pair on the leader only). After ``setup_auth`` (its pool)
    and ``setup_ticket_routes`` (a ticket's change kicks the sync)."""
    api = setup_registry(app)
    app[LIVE_SYNC] = setup_live_sync(app, ha)
    app[PREVIEW_WINDOWS] = WindowChecker(CallingWindow())
    setup_campaign_routes(app, app[PREVIEW_WINDOWS])
    setup_survey_routes(app)
    tags = ("campaigns",)
    api.add("GET", "/api/campaigns", list_campaigns, summary="Campaigns, with their leads by state",
            roles=MANAGERS, response=CampaignList, tags=tags)
    api.add("POST", "/api/campaigns", create_campaign, summary="Create a campaign", roles=MANAGERS,
            body=CampaignBody, response=CampaignView, status=201, tags=tags)
    api.add("POST", "/api/campaigns/{campaign_id:[0-9]+}/leads", import_leads,
            summary="Import a lead list (CSV): a line-numbered report", roles=MANAGERS, body=LeadsBody,
            response=ImportView, tags=tags, body_max=CSV_MAX + 4096)
    api.add("POST", "/api/campaigns/{campaign_id:[0-9]+}/sync", sync_campaign,
            summary="Bring a live list's leads in step with the tickets now (idempotent)", roles=MANAGERS,
            response=SyncView, tags=tags)
    api.add("GET", "/api/dnc/{phone}", dnc_status, summary="Is a number on the do-not-call list?",
            roles=CRM_ROLES, response=DncView, tags=tags)
    api.add("PUT", "/api/dnc/{phone}", dnc_add, summary="Put a number on the do-not-call list",
            roles=CRM_ROLES, body=DncBody, response=DncView, tags=tags)
    api.add("DELETE", "/api/dnc/{phone}", dnc_remove, summary="Take a number off the do-not-call list",
            roles=MANAGERS, response=DncView, tags=tags)
    api.add("POST", "/api/campaigns/{campaign_id:[0-9]+}/state", set_state,
            summary="Start (running), pause or stop a campaign", roles=MANAGERS, body=StateBody,
            response=StateView, tags=tags)
    api.add("GET", "/api/campaigns/{campaign_id:[0-9]+}/attempts", list_attempts,
            summary="A campaign's attempts: outcome, call id, AMD's word", roles=MANAGERS,
            response=AttemptList, tags=tags)
    api.add("POST", "/api/campaigns/emergency-stop", emergency_stop,
            summary="Pause every running campaign at once", roles=MANAGERS, response=StopView, tags=tags)
    api.add("GET", "/api/preview/campaigns", preview_campaigns, summary="Running preview campaigns",
            roles=AGENTS, response=PreviewCampaigns, tags=tags)
    api.add("POST", "/api/preview/next", preview_next, summary="The next lead of a preview campaign, held for me",
            roles=AGENTS, body=NextBody, response=LeadCard, tags=tags)
    api.add("POST", "/api/preview/leads/{lead_id:[0-9]+}/dial", preview_dial,
            summary="Dial the lead I hold (the DNC list checked again): an attempt", roles=AGENTS,
            response=PreviewDial, tags=tags)
    api.add("POST", "/api/preview/leads/{lead_id:[0-9]+}/skip", preview_skip, summary="Pass on the lead I hold",
            roles=AGENTS, body=SkipBody, response=LeadView, tags=tags)
    api.add("POST", "/api/preview/attempts/{attempt_id:[0-9]+}/result", preview_result,
            summary="My attempt's outcome, disposition and survey answers (a preview dial, or a campaign call"
                    " connected to me; once)", roles=AGENTS, body=ResultBody,
            response=LeadView, tags=tags)
