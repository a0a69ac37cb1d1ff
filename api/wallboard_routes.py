"""The wallboard's routes: the board now, and supervisors' live actions on agents
and calls (spy, force a state, move, call back). ``setup_wallboard`` starts the
service (``api.wallboard_service``) and mounts these, the report routes
(``api.report_routes``) and the pages (docs/wallboard.md).

Live actions (STAFF routes) are audited in ``supervisor_actions``, done or not.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from acd import callbacks as cbs
from acd.core import AcdInputError, AgentStateError
from acd.routing_shell import ACD, AcdService
from api import audit
from api.auth import STAFF
from api.db import db, query
from api.errors import ApiError
from api.static_files import StaticFiles
from api.registry import ApiRequest, setup_registry
from api.report_routes import add_report_routes
from api.wallboard_models import (
    ActionItem, ActionList, ActionReply, ActionsQuery, AgentActionBody, CallbackBody, MoveBody, Snapshot, SpyBody,
)
from api.wallboard_service import WALLBOARD, WallboardService
from cti.daemon import CoreServices, run_with_app
from cti.errors import AmiError

STATIC = Path(__file__).with_name("static") / "wallboard"
_DEVICE = re.compile(r"^(PJSIP|SIP|IAX2|Local|DAHDI)/[A-Za-z0-9_.@+-]{1,80}(/n)?$")
SPY_OPTIONS = {"listen": "qE", "whisper": "qEw", "barge": "qEB"}


def _wb(req: ApiRequest[Any, Any]) -> WallboardService:
    return req.app[WALLBOARD]


def _acd(req: ApiRequest[Any, Any]) -> AcdService:
    service = req.app.get(ACD)
    if service is None:
        raise ApiError(404, "acd_disabled", "the ACD is not running (no acd_config)")
    return service


async def _audit(req: ApiRequest[Any, Any], action: str, *, agent_id: str | None = None, call_id: str | None = None,
                 details: dict[str, Any] | None = None, result: str = "done", error: str | None = None) -> int | None:
    assert req.principal is not None
    return await audit.record(req.app, req.principal, action, agent_id=agent_id, call_id=call_id, details=details,
                              result=result, error=error)


async def _refuse(req: ApiRequest[Any, Any], status: int, error_id: str, message: str, action: str,
                  **kw: Any) -> ApiError:
    await _audit(req, action, result="refused", error=message, **kw)
    return ApiError(status, error_id, message)


async def get_wallboard(req: ApiRequest[None, None]) -> Snapshot:
    wb = _wb(req)
    snap = wb.snapshot if wb.snapshot is not None else wb.build(time.time())
    return Snapshot(**snap)


def _own_device(req: ApiRequest[Any, Any], acd: AcdService) -> str | None:
    """The device the asking supervisor's own phone rings at: the seat, else the
    configured device, of the agent id on their user. None when they have none."""
    p = req.principal
    assert p is not None
    if p.agent_id is None or p.agent_id not in {a.id for a in acd.config.agents}:
        return None
    device = acd.device_of(p.agent_id)
    return device if _DEVICE.match(device) else None


def _state_label(acd: AcdService, agent_id: str) -> str:
    v = acd.router.agent_state(agent_id)
    return v.state + (f" ({v.reason})" if v.reason else "") + (f" (pending: {v.pending})" if v.pending else "")


async def spy(req: ApiRequest[SpyBody, None]) -> ActionReply:
    """Originate the supervisor's own device into ``cti-supervise``, which runs ChanSpy
    on the agent's channel with q (quiet), E (end with the agent's call) and w
    (whisper) or B (barge). Who may: the route's agent scope (a supervisor of the
    agent's team, an admin: the recordings' rule). What rings: only the phone of the
    supervisor's own agent id (``_own_device``), never a device named in the request."""
    acd = _acd(req)
    wb = _wb(req)
    agent_id = req.match_info["agent_id"]
    body = req.body
    device = _own_device(req, acd)
    details: dict[str, Any] = {"device": device}
    if agent_id not in {a.id for a in acd.config.agents}:
        raise await _refuse(req, 404, "unknown_agent", f"no agent {agent_id!r}", body.mode, agent_id=agent_id,
                            details=details)
    if device is None:
        raise await _refuse(req, 409, "no_device", "you have no phone to ring: your user needs an agent id whose "
                            "seat or configured device is your phone", body.mode, agent_id=agent_id, details=details)
    v = acd.router.agent_state(agent_id)
    leg = wb.agent_legs.get(agent_id)
    call = wb.core.model.legs.get(leg) if leg else None
    channel = call.legs[leg].channel if call is not None and leg in call.legs else None
    if v.state != "on_call" or channel is None:
        raise await _refuse(req, 409, "not_on_call", f"agent {agent_id!r} is not on a call ({v.state})", body.mode,
                            agent_id=agent_id, details=details)
    # Spy on exactly this channel: ChanSpy matches a prefix, so the name is given whole.
    target = channel
    if any(ch in target for ch in "\r\n,|()\"'"):
        raise await _refuse(req, 409, "not_on_call", "the agent's channel name cannot be spied on safely",
                            body.mode, agent_id=agent_id, details=details)
    details.update(channel=target, call_id=v.call_id)
    try:
        await wb.core.ami.send("Originate", {
            "Channel": device, "Context": "cti-supervise", "Exten": "s", "Priority": "1",
            "Timeout": "30000", "Async": "true", "CallerID": f'"{body.mode.title()} {agent_id}" <{agent_id}>',
            "Variable": [f"CTI_SPY_CHANNEL={target}", f"CTI_SPY_OPTIONS={SPY_OPTIONS[body.mode]}"],
        }, shape="single")
    except AmiError as exc:
        await _audit(req, body.mode, agent_id=agent_id, call_id=v.call_id, details=details, result="failed",
                     error=str(exc))
        raise ApiError(502, "asterisk_refused", f"Asterisk did not place the call: {exc}") from None
    audit_id = await _audit(req, body.mode, agent_id=agent_id, call_id=v.call_id, details=details)
    return ActionReply(id=audit_id, action=body.mode, result="done", detail=f"ringing {device}")


async def agent_action(req: ApiRequest[AgentActionBody, None]) -> ActionReply:
    acd = _acd(req)
    agent_id = req.match_info["agent_id"]
    body = req.body
    details = {"reason": body.reason}
    if agent_id not in {a.id for a in acd.config.agents}:
        raise await _refuse(req, 404, "unknown_agent", f"no agent {agent_id!r}", body.action, agent_id=agent_id)
    details["from"] = _state_label(acd, agent_id)
    try:
        acd.agent_request(agent_id, "set_not_ready" if body.action == "not_ready" else "logout", body.reason)
    except AgentStateError as exc:
        raise await _refuse(req, 409, "agent_state", str(exc), body.action, agent_id=agent_id, details=details)
    v = acd.router.agent_state(agent_id)
    detail = f"{v.state}" + (f" (pending: {v.pending})" if v.pending else "")
    details["to"] = _state_label(acd, agent_id)
    audit_id = await _audit(req, body.action, agent_id=agent_id, details={**details, "now": detail})
    return ActionReply(id=audit_id, action=body.action, result="done", detail=detail)


async def move_call(req: ApiRequest[MoveBody, None]) -> ActionReply:
    acd = _acd(req)
    call_id = req.match_info["call_id"]
    body = req.body
    action = "move" if body.queue is not None else "priority"
    details = {"queue": body.queue, "priority": body.priority}
    try:
        moved = acd.move_call(call_id, body.queue, body.priority)
    except AcdInputError as exc:
        raise await _refuse(req, 422, "invalid_body", str(exc), action, call_id=call_id, details=details)
    if not moved:
        raise await _refuse(req, 409, "not_waiting", f"call {call_id!r} is not waiting (gone, or an agent rings)",
                            action, call_id=call_id, details=details)
    audit_id = await _audit(req, action, call_id=call_id, details=details)
    return ActionReply(id=audit_id, action=action, result="done")


async def file_callback(req: ApiRequest[CallbackBody, None]) -> ActionReply:
    """A call-back for an abandoned caller: number and queue from the call as stored."""
    acd = _acd(req)
    wb = _wb(req)
    body = req.body
    row = wb.ledger.rows.get(body.call_id)
    if row is None:                       # settled a while ago: folded out of the ledger
        found = await query(db(req.app).fetchrow("SELECT * FROM calls WHERE call_id = $1", body.call_id))
        row = dict(found) if found is not None else None
    if row is None or not row.get("abandoned"):
        raise await _refuse(req, 404, "not_abandoned", f"no abandoned call {body.call_id!r}", "callback",
                            call_id=body.call_id)
    number = body.number or (row.get("caller_num") or "")
    joined = row.get("queue_joined_at")
    since = joined.timestamp() if isinstance(joined, datetime) else joined
    try:
        cb = acd.request_callback(body.call_id, number, row.get("queue") or "", since)
    except (cbs.CallbackError, AcdInputError) as exc:
        raise await _refuse(req, 409, "callback_refused", str(exc), "callback", call_id=body.call_id,
                            details={"number": number})
    wb.callback_filed(body.call_id, cb.status)
    audit_id = await _audit(req, "callback", call_id=body.call_id, details={"number": number, "queue": cb.queue})
    return ActionReply(id=audit_id, action="callback", result="done", detail=f"queued in {cb.queue}")


async def list_actions(req: ApiRequest[None, ActionsQuery]) -> ActionList:
    rows = await query(db(req.app).fetch(
        "SELECT id, at, actor_name, action, agent_id, call_id, details, result, error FROM supervisor_actions "
        "ORDER BY id DESC LIMIT $1", req.query.limit))
    return ActionList(actions=[ActionItem(id=r["id"], at=r["at"], actor=r["actor_name"], action=r["action"],
                                          agent_id=r["agent_id"], call_id=r["call_id"],
                                          details=json.loads(r["details"]), result=r["result"], error=r["error"])
                               for r in rows])


# -- wiring -------------------------------------------------------------------------------------


def setup_wallboard(app: web.Application, core: CoreServices, acd: AcdService | None) -> WallboardService:
    """The wallboard service, its routes and pages. After ``setup_acd`` and ``setup_auth``;
    ``setup_ws`` may come before or after (the board is pushed through its hub)."""
    service = WallboardService(app, core, acd)
    app[WALLBOARD] = service

    run_with_app(app, service)
    api = setup_registry(app)
    tags = ("wallboard",)
    api.add("GET", "/api/wallboard", get_wallboard, summary="The wallboard now (also pushed on /ws as 'wallboard')",
            roles=STAFF, response=Snapshot, tags=tags)
    api.add("POST", "/api/supervisor/agents/{agent_id}/spy", spy, summary="Listen, whisper or barge on an agent's call",
            description="Rings the supervisor's own phone (the seat or configured device of the agent id on their "
                        "user; 409 no_device without one); answered, it runs ChanSpy on the agent's channel. "
                        "Supervisors of the agent's team and admins. Audited.",
            roles=STAFF, body=SpyBody, response=ActionReply, tags=tags, agent_scope="team")
    api.add("POST", "/api/supervisor/agents/{agent_id}/state", agent_action,
            summary="Force an agent not ready or logged out (after their call, when on one)",
            description="Supervisors of the agent's team and admins. Audited with the state before and after.",
            roles=STAFF, body=AgentActionBody, response=ActionReply, tags=tags, agent_scope="team")
    api.add("POST", "/api/supervisor/calls/{call_id}/move", move_call,
            summary="Move a waiting call to another queue and/or set its priority", roles=STAFF, body=MoveBody,
            response=ActionReply, tags=tags)
    api.add("POST", "/api/supervisor/callbacks", file_callback, summary="Call an abandoned caller back",
            description="Files a callback request (docs/acd.md, 'Callbacks') keeping the caller's first arrival.",
            roles=STAFF, body=CallbackBody, response=ActionReply, status=201, tags=tags)
    api.add("GET", "/api/supervisor/actions", list_actions, summary="The audit of supervisors' live actions",
            roles=STAFF, query=ActionsQuery, response=ActionList, tags=tags)
    add_report_routes(api)

    files = StaticFiles(STATIC)   # compressed, ETag and Cache-Control (api/static_files.py)
    app.router.add_get("/wallboard", files.handler("index.html"))
    app.router.add_get("/wallboard/", files.handler("index.html"))
    app.router.add_get("/wallboard/{path:.+}", files.handler(key="path"))
    api.document("GET", "/wallboard/", summary="The wallboard, reports and staffing pages (static; log in there)",
                 roles=None, operation_id="wallboard_pages", content_type="text/html", tags=tags)
    return service
