"""Emergency mode's HTTP side: the switches' API (supervisors and admins switch,
confirmed and audited; everyone reads what is in force, for the banner), the
report, the dialplan's hook for new calls, and the banner's script
(docs/emergency.md)."""
from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Literal

import asyncpg
import structlog
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from acd.routing_shell import ACD
from api import audit
from api.auth import EVERYONE, STAFF
from api.db import db, query
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from cti.daemon import CORE
from emergency import store
from emergency.prompts import WAV_MAX, PromptError, speak, store_wav
from emergency.service import EmergencyService, public
from emergency.switches import ACTIONS, SCOPES, SwitchError, hook_line

log = structlog.get_logger(__name__)

EMERGENCY = web.AppKey("emergency", EmergencyService)
STATIC = Path(__file__).with_name("static")
_TEXT = r"^[^\x00-\x1f\x7f]*$"
ID_MAX = 2**63 - 1
# Times a switch may name: a bound the database and every clock hold.
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)


def _in_range(v: datetime | None) -> datetime | None:
    if v is not None and not (_EARLIEST <= v < _LATEST):
        raise ValueError("must be between 2000 and 2100, with a time zone")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SwitchBody(Strict):
    scope: Literal[SCOPES]  # type: ignore[valid-type]
    value: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.:@+*#-]*$",
                       description="node name, queue id, DID, number prefix or IVR branch; '' for scope all")
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    target: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.:@+-]*$",
                        description="queue id (action queue), number (number), mailbox (voicemail)")
    prompt: str = Field("", max_length=300, pattern=r"^[A-Za-z0-9_./-]*$",
                        description="a sound Asterisk has (name or absolute path without extension)")
    announcement: str = Field("", max_length=400, pattern=_TEXT, description="text spoken by espeak-ng")
    reason: str = Field(min_length=1, max_length=200, pattern=_TEXT)
    starts_at: AwareDatetime | None = Field(None, description="default: now")
    ends_at: AwareDatetime | None = None
    preset: str | None = Field(None, max_length=32, pattern=r"^[0-9]{1,8}$",
                               description="digits the phone feature code names it by")
    confirm: Literal[True] = Field(description="must be true: the page asked 'are you sure'")

    _times = field_validator("starts_at", "ends_at")(_in_range)


class EndBody(Strict):
    reason: str = Field(min_length=1, max_length=200, pattern=_TEXT)
    confirm: Literal[True]


class SwitchItem(BaseModel):
    id: int
    scope: str
    value: str
    action: str
    target: str
    prompt: str
    announcement: str
    reason: str
    preset: str | None
    starts_at: datetime
    ends_at: datetime | None
    declared_at: datetime
    declared_by: str
    ended_at: datetime | None
    ended_by: str | None
    ended_reason: str | None


class SwitchList(BaseModel):
    switches: list[SwitchItem]


class ActiveItem(BaseModel):
    id: int
    scope: str
    value: str
    action: str
    target: str
    reason: str
    starts_at: float
    ends_at: float | None


class ActiveList(BaseModel):
    active: list[ActiveItem]
    version: int = Field(description="rises whenever the set changes; give it back as since= to wait")


class ActiveQuery(Strict):
    since: int | None = Field(None, ge=0, le=2**53, description="the version last seen")
    wait: float = Field(0, ge=0, le=10, description="seconds to wait for a change from since (long poll)")


class ListQuery(Strict):
    include_ended: bool = False
    limit: int = Field(100, ge=1, le=1000)


class ReportQuery(Strict):
    since: AwareDatetime
    until: AwareDatetime

    _times = field_validator("since", "until")(_in_range)


class ReportItem(SwitchItem):
    calls: int
    outcomes: dict[str, int]


class Report(BaseModel):
    switches: list[ReportItem]


class WavBody(Strict):
    wav_base64: str = Field(min_length=8, max_length=(WAV_MAX * 4) // 3 + 8, pattern=r"^[A-Za-z0-9+/=\s]+$",
                            description="a WAV file, base64: PCM 16-bit mono 8000 Hz, 0.2 to 130 s, at most 2 MiB")


class WavReply(BaseModel):
    prompt: str


def _service(req: ApiRequest[Any, Any]) -> EmergencyService:
    return req.app[EMERGENCY]


async def get_active(req: ApiRequest[None, ActiveQuery]) -> ActiveList:
    service = _service(req)
    if req.query.since is not None:
        await service.changed_since(req.query.since, req.query.wait)
    return ActiveList(active=[ActiveItem(**public(s)) for s in service.in_force], version=service.version)


async def list_switches(req: ApiRequest[None, ListQuery]) -> SwitchList:
    rows = await query(store.listing(db(req.app), include_ended=req.query.include_ended, limit=req.query.limit))
    return SwitchList(switches=[SwitchItem(**store.as_dict(r)) for r in rows])


async def switch_on(req: ApiRequest[SwitchBody, None]) -> SwitchItem:
    b = req.body
    p = req.principal
    assert p is not None
    details = b.model_dump(mode="json", exclude={"confirm"})
    prompt = b.prompt
    if b.announcement:
        try:
            prompt = await speak(b.announcement, req.app[CORE].settings.emergency_prompt_dir)
        except PromptError as exc:
            await audit.record(req.app, p, "emergency_on", details=details, result="failed", error=str(exc))
            raise ApiError(422, "announcement_failed", str(exc)) from None
    try:
        row = await query(store.declare(
            db(req.app), scope=b.scope, value=b.value, action=b.action, target=b.target, prompt=prompt,
            reason=b.reason, by=p.name, announcement=b.announcement, preset=b.preset,
            starts_at=b.starts_at.timestamp() if b.starts_at else None,
            ends_at=b.ends_at.timestamp() if b.ends_at else None))
    except (SwitchError, asyncpg.CheckViolationError) as exc:   # the database's clock: an end already past
        await audit.record(req.app, p, "emergency_on", details=details, result="refused", error=str(exc))
        raise ApiError(422, "invalid_switch", str(exc)) from None
    service = _service(req)
    try:
        await service.refresh()       # in force now, not at the next poll
    except Exception as exc:
        log.warning("emergency refresh after a switch failed", error=str(exc))
        service.wake()
    await audit.record(req.app, p, "emergency_on", details={**details, "switch": row["id"], "prompt": prompt})
    return SwitchItem(**store.as_dict(row))


async def switch_off(req: ApiRequest[EndBody, None]) -> SwitchItem:
    p = req.principal
    assert p is not None
    switch_id = int(req.match_info["id"])
    if switch_id > ID_MAX:
        raise ApiError(404, "not_found", f"no switch {switch_id} is on")
    row = await query(store.end(db(req.app), switch_id, by=p.name, reason=req.body.reason))
    if row is None:
        await audit.record(req.app, p, "emergency_off", details={"switch": switch_id}, result="refused",
                           error="no such switch on")
        raise ApiError(404, "not_found", f"no switch {switch_id} is on")
    try:
        await _service(req).refresh()
    except Exception:
        _service(req).wake()
    await audit.record(req.app, p, "emergency_off", details={"switch": switch_id, "reason": req.body.reason})
    return SwitchItem(**store.as_dict(row))


async def upload_wav(req: ApiRequest[WavBody, None]) -> WavReply:
    """A recorded announcement: checked (``check_wav``) and kept by its digest; the
    prompt it answers goes in a switch's ``prompt``."""
    p = req.principal
    assert p is not None
    try:
        data = base64.b64decode(req.body.wav_base64, validate=False)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_wav", "wav_base64: not base64") from None
    try:
        prompt = store_wav(data, req.app[CORE].settings.emergency_prompt_dir)
    except PromptError as exc:
        raise ApiError(422, "invalid_wav", str(exc)) from None
    await audit.record(req.app, p, "emergency_announcement", details={"prompt": prompt, "bytes": len(data)})
    return WavReply(prompt=prompt)


async def get_report(req: ApiRequest[None, ReportQuery]) -> Report:
    rows = await query(store.report(db(req.app), since=req.query.since.timestamp(),
                                    until=req.query.until.timestamp()))
    return Report(switches=[ReportItem(**r) for r in rows])


async def hook(request: web.Request) -> web.Response:
    """``GET /hooks/emergency?call=<linkedid>&queue=<queue>&number=<caller>&did=<did>[&step=ivr|route]``:
    ``ok,id,action,target,prompt`` for a new call an emergency switch takes at the IVR's entry
    (``step=ivr``, before the menu) or at the route step (the default), else ``none``."""
    from api.dialplan_hooks import HookError, _authorise, _error

    try:
        _authorise(request)
        call_id = request.query.get("call", "")
        queue = request.query.get("queue", "")
        number = request.query.get("number", "")
        did = request.query.get("did", "")
        step = request.query.get("step", "route")
        if not (0 < len(call_id) <= 100) or max(len(queue), len(number), len(did)) > 64:
            raise HookError(400, "invalid_call", "call: the call's id (1 to 100 characters); "
                                                 "queue, number, did: at most 64")
        if step not in ("ivr", "route"):
            raise HookError(400, "invalid_step", "step: ivr or route")
    except HookError as exc:
        return _error(request, exc)
    service = request.app[EMERGENCY]
    s = service.ivr_entry(call_id, number, did) if step == "ivr" else service.route_step(call_id, queue, number, did)
    return web.Response(text=hook_line(s) + "\n", content_type="text/plain")


async def feature_code(request: web.Request) -> web.Response:
    """``POST /hooks/emergency/toggle`` (form: ``preset``, ``pin``, ``from``): the phone's
    feature code. ``ok,on|off,<switch>`` or ``error,<wrong_pin|locked|disabled|no_preset|
    invalid>,<message>``. The PIN travels in the body, never in a URL (access logs)."""
    from api.dialplan_hooks import HookError, _authorise, _error, _line

    try:
        _authorise(request)
        if (request.content_length or 0) > 1024:
            raise HookError(413, "too_large", "at most 1 KiB")
        form = await request.post()
        preset, pin, caller = (str(form.get(k, "")) for k in ("preset", "pin", "from"))
        if not re.fullmatch(r"[0-9]{1,8}", preset) or not re.fullmatch(r"[0-9]{1,16}", pin) \
                or not re.fullmatch(r"\+?[0-9*#]{0,32}", caller):
            raise HookError(400, "invalid", "preset: 1 to 8 digits; pin: 1 to 16 digits; from: a number")
        result, state, switch_id = await request.app[EMERGENCY].toggle_preset(preset, pin, caller)
    except HookError as exc:
        return _error(request, exc)
    except Exception as exc:       # the database away or slow: the phone hears a refusal
        log.warning("emergency feature code failed", error=type(exc).__name__)
        return web.Response(text=_line("error", "unavailable", "try again"), status=503, content_type="text/plain")
    if result != "ok":
        return web.Response(text=_line("error", result, result.replace("_", " ")), status=403,
                            content_type="text/plain")
    return web.Response(text=_line("ok", state, switch_id), content_type="text/plain")


def setup_emergency(app: web.Application) -> EmergencyService:
    """The service and its routes. After ``setup_acd`` and ``setup_ws``."""
    from api.desktop_state import DESKTOP
    from api.ws import WS

    core = app[CORE]
    acd = app.get(ACD)
    service = EmergencyService(core, acd)
    app[EMERGENCY] = service
    core.health_parts["emergency"] = service.health

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hub = app.get(WS)
        if hub is not None:
            def push(body: dict[str, Any]) -> None:
                agents = frozenset(a.id for a in acd.config.agents) if acd is not None else frozenset()
                hub.push(body, agents)
            service.push = push
        desktop = app.get(DESKTOP)
        if desktop is not None:          # screen-pops name the incident that covers their call
            desktop.incident_of = service.incident
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)

    async def on_shutdown(app: web.Application) -> None:
        service.release_waiters()

    app.on_shutdown.append(on_shutdown)
    api = setup_registry(app)
    tags = ("emergency",)
    api.add("GET", "/api/emergency/active", get_active, summary="The emergency switches in force (the banner)",
            description="With since= (the version last seen) and wait= (at most 10 s) the answer waits for a "
                        "change: the banner's long poll. Also pushed on /ws as 'emergency' messages.",
            roles=EVERYONE, query=ActiveQuery, response=ActiveList, tags=tags)
    api.add("GET", "/api/emergency/switches", list_switches, summary="Emergency switches, newest first",
            roles=STAFF, query=ListQuery, response=SwitchList, tags=tags)
    api.add("POST", "/api/emergency/switches", switch_on, summary="Declare an emergency switch (confirm: true)",
            description="In force at starts_at (default now): waiting callers in scope are moved per the action, "
                        "new calls take the emergency path. Audited (who, when, reason).",
            roles=STAFF, body=SwitchBody, response=SwitchItem, status=201, tags=tags)
    api.add("POST", "/api/emergency/switches/{id:[0-9]+}/end", switch_off, summary="Switch an emergency off",
            roles=STAFF, body=EndBody, response=SwitchItem, tags=tags)
    api.add("POST", "/api/emergency/announcements", upload_wav, summary="Upload a recorded announcement (WAV)",
            description="PCM 16-bit mono 8000 Hz, 0.2 to 130 s, at most 2 MiB, base64 in JSON. Answers the prompt "
                        "to name in a switch. Audited.",
            roles=STAFF, body=WavBody, response=WavReply, status=201, tags=tags, body_max=3 * 1024 * 1024)
    api.add("GET", "/api/emergency/report", get_report,
            summary="Switches on in a period, with the calls they reached and what happened to them",
            roles=STAFF, query=ReportQuery, response=Report, tags=tags)
    if core.settings.hooks:
        app.router.add_get("/hooks/emergency", hook)
        app.router.add_post("/hooks/emergency/toggle", feature_code)

    async def banner(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "banner.js", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/emergency/banner.js", banner)
    return service
