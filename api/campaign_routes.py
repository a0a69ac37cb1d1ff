"""Campaign settings, the supervisors' board, the results export and the agent's pending
result over the API (docs/dialer.md, "API"). The campaigns' own routes (create, state,
leads, preview) are in ``api.dialer_routes``.

Routes::

    GET  /api/campaigns/{id}/rules          the campaign's calling window and retry rules
    PUT  /api/campaigns/{id}/rules          set them (null: the defaults); 422 names a bad field
    GET  /api/campaigns/{id}/reserve        the campaign's reserve of agents for inbound (blending)
    PUT  /api/campaigns/{id}/reserve        set it (null: none beyond "no call while a caller waits")
    GET  /api/campaigns/{id}/results.csv    every attempt with its lead and result, as CSV
    GET  /api/campaigns/board               each campaign today, its abandonment against its cap
    GET  /api/preview/pending               the attempt awaiting my result (a reloaded desktop)
"""
from __future__ import annotations

import json
import time
from contextlib import aclosing
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.crm_common import StrictBody, actor_of
from api.db import db, query
from api.errors import ApiError, ErrorDetail
from api.registry import ApiRequest, Day, setup_registry
from cti.daemon import CORE
from dialer import campaign_store
from dialer.blending import InvalidReserve, reserve_from_json, reserve_to_json
from dialer.board import board_row, result_lines
from dialer.campaign_rules import RulesCache, rebuild_ledger, rules_from_json, rules_to_json, window_from_json, \
    window_to_json
from dialer.leads import InvalidRule, RetryRules
from dialer.pacing import MONTH, PacingConfig
from dialer.windows import InvalidWindow, WindowChecker

log = structlog.get_logger(__name__)

MANAGERS = frozenset({"supervisor", "admin"})
AGENTS = frozenset({"agent"})
#: The campaigns' windows and rules as stored, built once each (the preview routes use it
#: when no runner runs on this node; the runner keeps its own).
RULES = web.AppKey("dialer_rules_cache", RulesCache)

Clock = Annotated[str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", description="local HH:MM")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class WindowsBody(StrictBody):
    hours: dict[Weekday, Annotated[list[Clock], Field(min_length=2, max_length=2)]] = Field(
        min_length=1, description='local hours by weekday, ["09:00", "20:00"] (start included, end excluded;'
                                  ' "24:00" ends at midnight); a weekday absent is closed')
    closed_dates: list[Day] = Field(default_factory=list, max_length=400, description="local dates closed all day")


class RuleBody(StrictBody):
    delay_min: int | None = Field(None, ge=1, le=43200, description="dial again this many minutes later")
    max_times: int | None = Field(None, ge=0, le=100, description="retry this outcome at most this many times")


class RetryBody(StrictBody):
    busy: RuleBody | None = None
    no_answer: RuleBody | None = None
    machine: RuleBody | None = None
    failed: RuleBody | None = None
    abandoned: RuleBody | None = None
    max_attempts: int | None = Field(None, ge=1, le=100, description="dials at most per lead")
    skip_delay_min: int | None = Field(None, ge=1, le=43200, description="a preview lead skipped waits this long")
    max_callback_ahead_days: int | None = Field(None, ge=1, le=365)


class RulesBody(StrictBody):
    windows: WindowsBody | None = Field(None, description="null: Monday to Saturday, 09:00 to 20:00 local")
    retry: RetryBody | None = Field(None, description="null: the default rules; an outcome left out keeps its default")


class ReserveBody(StrictBody):
    agents: int = Field(0, ge=0, le=500, strict=True, description="free agents always kept for the inbound queues")
    service_level: bool = Field(False, strict=True,
                                description="also keep what Erlang C says the inbound queues need for their"
                                            " service-level target at the arrival rate measured")
    arrivals_min: int = Field(15, ge=1, le=240, strict=True,
                              description="the arrival rate is measured over this many minutes")


class ReserveSet(StrictBody):
    reserve: ReserveBody | None = Field(description="null: no reserve beyond no call while an inbound caller waits")


class ReserveView(BaseModel):
    campaign_id: int
    reserve: dict[str, Any] = Field(description="the reserve in force (agents, service_level, arrivals_min)")
    own_reserve: bool = Field(description="the campaign has a reserve of its own")


class RulesView(BaseModel):
    campaign_id: int
    windows: dict[str, Any] = Field(description="the window in force (the default one when the campaign has none)")
    retry: dict[str, Any] = Field(description="the rules in force, every outcome")
    own_windows: bool = Field(description="the campaign has its own window")
    own_retry: bool = Field(description="the campaign has its own rules")


class BoardRow(BaseModel):
    campaign_id: int
    name: str
    mode: str
    state: str
    queue: str | None
    dialed: int = Field(description="attempts started today (local day)")
    connected: int = Field(description="of them, connected to an agent")
    abandoned: int = Field(description="of them, a person no agent took within 2 s")
    leads_left: int = Field(description="leads new, due for a retry or being dialed")
    abandon_cap: float
    abandon_24h: float = Field(description="abandoned (AMD false positives estimated included) per live answer, 24 h")
    abandon_30d: float
    live_24h: int
    live_30d: int
    over_cap: bool
    agents: int | None = Field(description="agents logged in to its queue (null: no ACD on this node)")
    in_flight: int | None = Field(description="its calls ringing or in AMD now (null: the runner is not on this node)")
    connect_rate: float | None = Field(description="today's connected per dialed (null: nothing dialed yet)")
    dial_level: float | None = Field(None, description="at the runner's last tick: its calls ringing or in AMD per "
                                                       "agent free for it (1 progressive, above predictive; null: no "
                                                       "agent free, or not paced on this node)")
    pacing_reason: str | None = Field(None, description="why the last tick started what it did: preview, progressive, "
                                                        "model, guard, lines, no_agents, inbound (its free agents "
                                                        "were inbound's)")
    free_for_campaign: int | None = Field(None, description="agents free for it at the last tick, after inbound's")
    measured_live_rate: float | None = Field(None, description="people answering per dial, as pacing measures it")
    measured_answer_delay_s: float | None = Field(None, description="seconds from dial to a person's answer, measured")
    measured_handle_s: float | None = Field(None, description="talk and wrap-up seconds per connected call, measured")
    paced_at: float | None = Field(None, description="when the runner last paced it (epoch seconds)")


class Board(BaseModel):
    at: float
    day_start: str = Field(description="the start of 'today' (the server's time zone)")
    campaigns: list[BoardRow]


class PendingCard(BaseModel):
    attempt_id: int
    call_id: str | None
    kind: str = Field(description="connected (a campaign call the dialer connected to me) or preview (my dial)")
    card: dict[str, Any] = Field(description="the lead card: the lead, the campaign's script and survey")


class Pending(BaseModel):
    pending: PendingCard | None = Field(description="null: no attempt awaits my result")


def _cid(req: ApiRequest) -> int:
    return int(req.match_info["campaign_id"])


def checked_rules(windows: dict | None, retry: dict | None, *, ring_s: int, machine_action: str,
                  where: str = "body") -> tuple[dict | None, dict | None]:
    """``windows`` and ``retry`` (bodies as dicts, None: the defaults) checked and made
    canonical for storing; 422 ``invalid_body`` naming the bad field."""
    try:
        w = None if windows is None else window_to_json(window_from_json(windows))
        r = None if retry is None else rules_to_json(
            rules_from_json(retry, ring_s=ring_s, machine_voicemail=machine_action == "voicemail"))
    except (InvalidWindow, InvalidRule) as exc:
        raise parser_error(where, exc, "invalid_rule") from None
    return w, r


def parser_error(where: str, exc: Exception, kind: str) -> ApiError:
    """422 ``invalid_body`` for a pure parser's error ``exc`` naming its ``field`` under ``where``."""
    field = f"{where}.{getattr(exc, 'field', '')}"
    message = str(exc).split(": ", 1)[-1]
    return ApiError(422, "invalid_body", f"{field}: {message}", [ErrorDetail(field=field, message=message, type=kind)])


def checked_reserve(reserve: dict | None, where: str = "body") -> dict | None:
    """A reserve body (None: none) checked and made canonical; 422 ``invalid_body`` naming the field."""
    try:
        return None if reserve is None else reserve_to_json(reserve_from_json(reserve))
    except InvalidReserve as exc:
        raise parser_error(where, exc, "invalid_reserve") from None


async def get_reserve(req: ApiRequest[None, None]) -> ReserveView:
    cid = _cid(req)
    found, stored = await query(campaign_store.get_reserve(db(req.app), cid))
    if not found:
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    try:
        return ReserveView(campaign_id=cid, reserve=reserve_to_json(reserve_from_json(stored)),
                           own_reserve=stored is not None)
    except InvalidReserve as exc:      # written around the API
        raise ApiError(409, "unusable_rules", f"the stored reserve cannot be used: {exc}; set it again") from None


async def put_reserve(req: ApiRequest[ReserveSet, None]) -> ReserveView:
    cid = _cid(req)
    r = checked_reserve(_dump(req.body.reserve))
    if not await query(campaign_store.set_reserve(db(req.app), cid, r)):
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    log.info("campaign reserve set", campaign_id=cid, own_reserve=r is not None, actor=actor_of(req))
    return ReserveView(campaign_id=cid, reserve=reserve_to_json(reserve_from_json(r)), own_reserve=r is not None)


def _dump(model: BaseModel | None) -> dict | None:
    return None if model is None else model.model_dump(mode="json", exclude_none=True)


def _view(cid: int, stored: dict) -> RulesView:
    w, r = stored["windows"], stored["retry"]
    return RulesView(campaign_id=cid, windows=window_to_json(window_from_json(w)),
                     retry=rules_to_json(rules_from_json(r, ring_s=stored["ring_s"])),
                     own_windows=w is not None, own_retry=r is not None)


async def get_rules(req: ApiRequest[None, None]) -> RulesView:
    cid = _cid(req)
    stored = await query(campaign_store.get_rules(db(req.app), cid))
    if stored is None:
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    try:
        return _view(cid, stored)
    except (InvalidWindow, InvalidRule) as exc:      # written around the API
        raise ApiError(409, "unusable_rules", f"the stored rules cannot be used: {exc}; set them again") from None


async def put_rules(req: ApiRequest[RulesBody, None]) -> RulesView:
    cid = _cid(req)
    stored = await query(campaign_store.get_rules(db(req.app), cid))
    if stored is None:
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    w, r = checked_rules(_dump(req.body.windows), _dump(req.body.retry), ring_s=stored["ring_s"],
                         machine_action=stored["machine_action"])
    if not await query(campaign_store.set_rules(db(req.app), cid, w, r)):
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    log.info("campaign rules set", campaign_id=cid, own_windows=w is not None, own_retry=r is not None,
             actor=actor_of(req))
    return _view(cid, dict(stored, windows=w, retry=r))


async def results_csv(req: ApiRequest[None, None]) -> web.StreamResponse:
    cid = _cid(req)
    pool = db(req.app)
    survey = await query(campaign_store.survey_ids(pool, cid))
    if survey is None:
        raise ApiError(404, "no_campaign", f"no campaign {cid}")
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                       "Content-Disposition": f'attachment; filename="campaign-{cid}-results.csv"',
                                       "Cache-Control": "no-store"})
    await resp.prepare(req.request)
    header = True
    # Closed at once if the client goes away mid-way: the cursor's connection back to the pool.
    async with aclosing(campaign_store.results(pool, cid)) as batches:
        async for batch in batches:
            await resp.write(result_lines(batch, survey, header=header).encode())
            header = False
    if header:
        await resp.write(result_lines([], survey, header=True).encode())
    await resp.write_eof()
    log.info("campaign results exported", campaign_id=cid, actor=actor_of(req))
    return resp


def _agents(app: web.Application, queue: str | None) -> int | None:
    from acd.routing_shell import ACD
    acd = app.get(ACD)
    if acd is None or queue is None:
        return None
    try:
        return acd.router.queue_stats(queue, time.time()).agents_eligible
    except Exception:        # an unknown queue, or the ACD not running on this node
        return None


def _in_flight(app: web.Application, campaign_id: int) -> int | None:
    from api.dialer_routes import RUNNER
    runner = app.get(RUNNER)
    return None if runner is None else runner.in_flight(campaign_id)


def _pacing(app: web.Application, campaign_id: int) -> dict[str, Any] | None:
    from api.dialer_routes import RUNNER
    runner = app.get(RUNNER)
    return None if runner is None else runner.pacing(campaign_id)


async def board(req: ApiRequest[None, None]) -> Board:
    pool = db(req.app)
    now = datetime.now(timezone.utc)
    tz = ZoneInfo(req.app[CORE].settings.timezone)
    local = now.astimezone(tz)
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await query(campaign_store.board(pool, today))
    out = []
    for c in rows:
        config = PacingConfig(cap=float(c["abandon_cap"]),
                              amd_false_positive_share=req.app[CORE].settings.dialer_amd_false_positive_share)
        history = await query(campaign_store.ledger_history(pool, c["campaign_id"], now - MONTH))
        rates = rebuild_ledger(config, history, now).rates(now)
        out.append(BoardRow(**board_row(c, rates, _agents(req.app, c["queue"]), _in_flight(req.app, c["campaign_id"]),
                                        _pacing(req.app, c["campaign_id"]))))
    return Board(at=now.timestamp(), day_start=today.isoformat(), campaigns=out)


async def pending(req: ApiRequest[None, None]) -> Pending:
    p = req.principal
    found = await query(campaign_store.pending_result(db(req.app), actor_of(req), p.agent_id if p else None))
    return Pending(pending=None if found is None else PendingCard(**found))


async def policy(app: web.Application, *, campaign_id: int | None = None, lead_id: int | None = None,
                 attempt_id: int | None = None) -> tuple[WindowChecker, RetryRules]:
    """The window checker and retry rules of a campaign (or of a lead's, an attempt's):
    the runner's cache when it runs here, else this module's. The defaults when the
    campaign is not found (the store then says so) or its stored rules are unusable."""
    from api.dialer_routes import RUNNER
    runner = app.get(RUNNER)
    cache = runner.cache if runner is not None and runner.cache is not None else app[RULES]
    pool = db(app)
    if campaign_id is not None:
        stored = await query(campaign_store.get_rules(pool, campaign_id))
    else:
        stored = await query(campaign_store.rules_of(pool, lead_id=lead_id, attempt_id=attempt_id))
    if stored is None:
        return cache.default, cache.base
    text = {k: None if stored[k] is None else _json_text(stored[k]) for k in ("windows", "retry")}
    try:
        return cache.of({**stored, **text})
    except (InvalidWindow, InvalidRule) as exc:
        log.warning("campaign rules unusable: the defaults used", campaign_id=stored["campaign_id"], error=str(exc))
        return cache.default, cache.rules(None, stored["ring_s"], stored["machine_action"])


def _json_text(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def setup_campaign_routes(app: web.Application, windows: WindowChecker) -> None:
    """The campaign settings, board, export and pending-result routes. After ``setup_auth``."""
    api = setup_registry(app)
    app[RULES] = RulesCache(windows)
    tags = ("campaigns",)
    api.add("GET", "/api/campaigns/{campaign_id:[0-9]+}/rules", get_rules,
            summary="A campaign's calling window and retry rules (those in force)", roles=MANAGERS,
            response=RulesView, tags=tags)
    api.add("PUT", "/api/campaigns/{campaign_id:[0-9]+}/rules", put_rules,
            summary="Set a campaign's calling window and retry rules (null: the defaults)", roles=MANAGERS,
            body=RulesBody, response=RulesView, tags=tags,
            description="Every field is checked; a bad one is refused with 422 invalid_body naming it "
                        "(body.windows.hours.mon, body.retry.busy.delay_min). The runner dials by them from its "
                        "next tick.")
    api.add("GET", "/api/campaigns/{campaign_id:[0-9]+}/reserve", get_reserve,
            summary="A campaign's reserve of agents for the inbound queues they also serve (blending)",
            roles=MANAGERS, response=ReserveView, tags=tags)
    api.add("PUT", "/api/campaigns/{campaign_id:[0-9]+}/reserve", put_reserve,
            summary="Set a campaign's reserve for inbound (null: none beyond no call while an inbound caller waits)",
            roles=MANAGERS, body=ReserveSet, response=ReserveView, tags=tags,
            description="A bad field is refused with 422 invalid_body naming it (body.reserve.agents). The runner "
                        "dials by it from its next tick.")
    api.add("GET", "/api/campaigns/{campaign_id:[0-9]+}/results.csv", results_csv,
            summary="A campaign's attempts with their lead and result, as CSV (one column per survey question)",
            roles=MANAGERS, tags=tags, content_type="text/csv",
            description="A cell a spreadsheet would run as a formula (= + - @) starts with an apostrophe.")
    api.add("GET", "/api/campaigns/board", board,
            summary="Each campaign today: dialed, connected, abandoned; abandonment 24 h and 30 days against its cap",
            roles=MANAGERS, response=Board, tags=tags)
    api.add("GET", "/api/preview/pending", pending,
            summary="The campaign attempt awaiting my result (a connected call or my preview dial), with its card",
            roles=AGENTS, response=Pending, tags=tags)
