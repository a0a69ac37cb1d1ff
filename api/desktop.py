"""The agent desktop's shell: screen-pops, call control, wrap-up, call history, the web client.

- **Screen-pops**: sent from the bus by ``Desktop`` (api/desktop_state.py),
  which also keeps what the routes below share; mounted here (``setup_desktop``).
- **Call control** (``/api/calls/{call_id}/...``): ``cti.control`` finds the
  parties, refuses what the asker may not do (an agent controls only their own
  calls) and lists the AMI actions; they go out in order on the daemon's AMI
  connection.
- **Wrap-up**: ``PUT /api/calls/{call_id}/disposition``; **history**:
  ``GET /api/agent/calls``; **what a reloaded page rebuilds**: ``GET /api/agent/current``.
- **The web client**: ``/agent/`` (plain files in ``api/static/agent``).
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, AsyncIterator, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from acd.routing_shell import ACD
from api import screenpop
from api.auth import Principal
from api.db import db, query
from api.desktop_state import DESKTOP, Desktop
from api.errors import ApiError
from api.follow_core import connect_sources
from api.static_files import StaticFiles
from api.registry import ApiRequest, setup_registry
from crm import ticket_store
from cti import control
from cti.daemon import CoreServices
from cti.errors import AmiActionFailed, AmiError, AmiNotConnected
from cti.nodes import qualified
from phone.gateway import PHONES
from phone.model import device_of_dial

log = structlog.get_logger(__name__)

CONTROL_ROLES = frozenset({"agent", "supervisor", "admin"})
STATIC = Path(__file__).parent / "static" / "agent"
FAVICON = Path(__file__).parent / "static" / "favicon.ico"
_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css",
          "softphone.js": "text/javascript", "kb.js": "text/javascript", "chats.js": "text/javascript",
          "preview.js": "text/javascript", "mail.js": "text/javascript", "messages.js": "text/javascript",
          "taskkit.js": "text/javascript"}
# connect-src: this origin, the browser phone's WebSocket (phone_ws_url), an HA pair's nodes.
_CSP = ("default-src 'self'; connect-src 'self'{ws}; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _desktop(req: ApiRequest[Any, Any]) -> Desktop:
    return req.app[DESKTOP]


async def _run(req: ApiRequest[Any, Any], cmd: control.Command, *, each: bool = False,
               call_id: str | None = None) -> int:
    """Send ``cmd``'s actions in order (on the node of ``call_id``, with several Asterisk
    nodes); 503 without Asterisk, 409 when it refuses.
    ``each``: the actions stand alone (hang-ups of several legs): one refused
    (a leg that just went) does not stop the others; 409 only if all are."""
    try:
        acts = control.actions(cmd)
    except control.ControlError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    core = _desktop(req).core
    ami = core.ami_for(call_id) if call_id is not None else core.ami
    if ami is None:
        raise ApiError(503, "ami_unavailable", "not connected to Asterisk")
    refused = 0
    for name, headers in acts:
        try:
            await ami.send(name, headers, shape="single")
        except AmiNotConnected:
            raise ApiError(503, "ami_unavailable", "not connected to Asterisk") from None
        except AmiActionFailed as exc:
            refused += 1
            if not each or refused == len(acts):
                raise ApiError(409, "asterisk_refused", f"Asterisk refused {name}: {exc}") from None
            log.info("call control: one action refused", action=name, error=str(exc))
        except AmiError as exc:
            raise ApiError(503, "ami_unavailable", f"{name}: {type(exc).__name__}") from None
    log.info("call control", action=type(cmd).__name__, by=req.principal.name if req.principal else None)
    return len(acts)


def _allowed(req: ApiRequest[Any, Any], verb: control.Verb) -> control.Parties:
    p = _desktop(req).parties(req.match_info["call_id"])
    who: Principal | None = req.principal
    refused = control.refuse(verb, p, agent_id=who.agent_id if who else None,
                             any_call=who is not None and who.role in ("supervisor", "admin"))
    if refused is not None:
        raise ApiError(*refused)
    return p


class Done(BaseModel):
    call_id: str
    actions: int = Field(description="AMI actions sent")


class TargetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["agent", "queue", "number"]
    value: str = Field(min_length=1, max_length=64, description="agent id, queue id, or phone number")


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["blind", "attended"] = "blind"
    target: TargetBody


class DtmfBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digits: str = Field(pattern=r"^[0-9*#A-D]{1,32}$")


class DialBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str = Field(pattern=r"^\+?[0-9]{2,20}$", description="the customer's number")
    ticket_id: int | None = Field(None, ge=1, description="the ticket the call is about (a callback): linked to it")


class DispositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="e.g. resolved, callback, sale")
    notes: str = Field("", max_length=4000)


class DispositionReply(BaseModel):
    call_id: str
    disposition: str
    notes: str
    agent_id: str | None
    updated_at: datetime


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=200)


class HistoryItem(BaseModel):
    call_id: str
    started_at: datetime
    ended_at: datetime | None
    caller_num: str | None
    caller_name: str | None
    queue: str | None
    state: str
    duration_s: float | None
    disposition: str | None
    notes: str | None


class History(BaseModel):
    calls: list[HistoryItem]


class AgentNow(BaseModel):
    state: str
    reason: str
    since: float
    call_id: str | None
    pending: str | None = Field(description="a state asked for during a call: not ready's reason, or logout")
    wrapup_ends_at: float | None = Field(description="in wrap-up: when the ACD ends it (epoch seconds)")
    wrapup_max_at: float | None = Field(None, description="the latest an extension can reach (None: the queue "
                                        "allows none)")
    disposition_due: str | None = Field(None, description="the call whose disposition the queue requires before "
                                        "the agent is available again")


class WrapupNow(BaseModel):
    call_id: str
    queue: str | None
    caller_num: str | None
    caller_name: str | None


class DeskNow(BaseModel):
    agent_state: AgentNow | None = None
    call: dict[str, Any] | None = Field(None, description="the current call's screen-pop message")
    transfer_pending: bool = Field(False, description="my attended transfer of the current call is under way")
    wrapup: WrapupNow | None = Field(None, description="the last call I answered, while it has no wrap-up of mine")


async def hangup(req: ApiRequest[None, None]) -> Done:
    p = _allowed(req, "hangup")
    return Done(call_id=p.call_id, actions=await _run(req, control.Hangup(p.legs), each=True, call_id=p.call_id))


async def hold(req: ApiRequest[None, None]) -> Done:
    p = _allowed(req, "hold")
    assert p.caller and p.agent_leg
    return Done(call_id=p.call_id, actions=await _run(req, control.Hold(p.call_id, p.caller, p.agent_leg), call_id=p.call_id))


async def resume(req: ApiRequest[None, None]) -> Done:
    p = _allowed(req, "resume")
    assert p.caller and p.agent_leg
    return Done(call_id=p.call_id, actions=await _run(req, control.Resume(p.caller, p.agent_leg), call_id=p.call_id))


def _target(req: ApiRequest[Any, Any], body: TargetBody) -> control.Target:
    acd = req.app.get(ACD)
    if body.kind == "agent":
        if acd is None or body.value not in {a.id for a in acd.config.agents}:
            raise ApiError(404, "unknown_agent", f"no agent {body.value!r}")
        return control.Target("agent", body.value, acd.config.agent(body.value).device)
    if body.kind == "queue" and (acd is None or body.value not in {q.id for q in acd.config.queues}):
        raise ApiError(404, "unknown_queue", f"no queue {body.value!r}")
    return control.Target(body.kind, body.value)


async def transfer(req: ApiRequest[TransferBody, None]) -> Done:
    p = _allowed(req, "transfer")
    assert p.caller and p.agent_leg
    target = _target(req, req.body.target)
    if target.kind == "agent" and target.device:
        _desktop(req).core.model.expect_agent(p.call_id, target.value, target.device)
    if req.body.mode == "blind":
        return Done(call_id=p.call_id, actions=await _run(req, control.BlindTransfer(p.caller, p.agent_leg, target), call_id=p.call_id))
    n = await _run(req, control.AttendedTransfer(p.agent_leg, target), call_id=p.call_id)
    # Once the target answers the model names them the call's agent: the transfer stays the asker's.
    _desktop(req).consults[p.call_id] = (p.agent, p.agent_leg)
    return Done(call_id=p.call_id, actions=n)


def _consult(req: ApiRequest[Any, Any]) -> tuple[str, str]:
    """The attended transfer under way on this call, if the asker started it (or is staff)."""
    call_id = req.match_info["call_id"]
    found = _desktop(req).consults.get(call_id)
    who = req.principal
    if found is None or call_id not in _desktop(req).core.model.calls:
        raise ApiError(409, "no_transfer", "no attended transfer under way on this call")
    staff = who is not None and who.role in ("supervisor", "admin")
    if not staff and (who is None or who.agent_id != found[0]):
        raise ApiError(403, "not_your_call", "an agent may control only their own calls")
    return call_id, found[1]


async def complete_transfer(req: ApiRequest[None, None]) -> Done:
    call_id, leg = _consult(req)
    n = await _run(req, control.Hangup((leg,)), call_id=call_id)   # the transferer leaving completes it
    _desktop(req).consults.pop(call_id, None)
    return Done(call_id=call_id, actions=n)


async def cancel_transfer(req: ApiRequest[None, None]) -> Done:
    call_id, leg = _consult(req)
    n = await _run(req, control.CancelTransfer(leg), call_id=call_id)
    _desktop(req).consults.pop(call_id, None)
    return Done(call_id=call_id, actions=n)


async def dtmf(req: ApiRequest[DtmfBody, None]) -> Done:
    p = _allowed(req, "dtmf")
    assert p.caller
    return Done(call_id=p.call_id, actions=await _run(req, control.Dtmf(p.caller, req.body.digits), call_id=p.call_id))


def _dial_id(req: ApiRequest[Any, Any], device: str, raw: str) -> str:
    """The click-to-dial call's id, which also says where it is placed: with several
    Asterisk nodes, on the node where the agent's phone is registered (the primary when
    it is not known to be on one), named with that node's prefix as its events will be."""
    core = _desktop(req).core
    phones = req.app.get(PHONES)
    aor = device_of_dial(device)
    there = sorted(n for n in phones.reach.nodes_of(aor) if n in core.nodes) \
        if core.multi and phones is not None and aor else []
    return qualified(there[0], raw) if there else core.primary_id(raw)


async def dial(req: ApiRequest[DialBody, None]) -> Done:
    who = req.principal
    acd = req.app.get(ACD)
    if who is None or not who.agent_id:
        raise ApiError(403, "not_an_agent", "click-to-dial rings your own device: only agents with an agent id")
    if acd is None or who.agent_id not in {a.id for a in acd.config.agents}:
        raise ApiError(404, "unknown_agent", f"no agent {who.agent_id!r} in the ACD configuration")
    state = acd.router.agent_state(who.agent_id).state
    if state not in ("not_ready", "logged_out"):
        raise ApiError(409, "agent_state", f"go not ready first (you are {state}): the ACD could offer you a call")
    s = _desktop(req).core.settings
    ticket_id = req.body.ticket_id
    if ticket_id is not None and await query(ticket_store.get_ticket(db(req.app), ticket_id)) is None:
        raise ApiError(404, "unknown_ticket", f"no ticket {ticket_id}")
    call_id = _dial_id(req, acd.config.agent(who.agent_id).device, f"dial-{uuid.uuid4().hex[:16]}")
    try:
        dial_to = control.dial_string(s.acd_callback_dial, req.body.number)
    except control.ControlError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    desk = _desktop(req)
    desk.outbound[call_id] = who.agent_id
    desk._remember(who.agent_id, call_id)
    cmd = control.ClickToDial(who.agent_id, acd.config.agent(who.agent_id).device, req.body.number, dial_to,
                              s.acd_callback_caller_id, s.acd_callback_ring_s, call_id)
    try:
        n = await _run(req, cmd, call_id=call_id)
    except ApiError:
        desk.outbound.pop(call_id, None)
        raise
    if ticket_id is not None:
        try:
            await query(ticket_store.link_call(db(req.app), ticket_id, call_id))
        except ApiError:   # the call is under way: the link is the lesser loss
            log.warning("click-to-dial not linked to its ticket", call_id=call_id, ticket_id=ticket_id)
    return Done(call_id=call_id, actions=n)


async def save_disposition(req: ApiRequest[DispositionBody, None]) -> DispositionReply:
    who = req.principal
    assert who is not None
    call_id = req.match_info["call_id"]
    if len(call_id) > 128:
        raise ApiError(404, "unknown_call", "no such call")
    pool = db(req.app)
    if who.kind != "session":
        raise ApiError(403, "forbidden", "a wrap-up is stored by a user, not an API key")
    if who.role == "agent":
        mine = who.agent_id is not None and _desktop(req).handled_by(who.agent_id, call_id)
        if not mine and who.agent_id is not None:
            mine = await query(pool.fetchval("SELECT agent = $2 FROM calls WHERE call_id = $1", call_id,
                                             who.agent_id)) is True
        if not mine:
            raise ApiError(403, "not_your_call", "an agent wraps up only their own calls")
    row = await query(pool.fetchrow(
        """INSERT INTO call_dispositions (call_id, user_id, agent_id, disposition, notes)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (call_id, user_id) DO UPDATE SET disposition = EXCLUDED.disposition,
               notes = EXCLUDED.notes, updated_at = now()
           RETURNING call_id, disposition, notes, agent_id, updated_at""",
        call_id, who.id, who.agent_id, req.body.disposition, req.body.notes))
    acd = req.app.get(ACD)
    if acd is not None and who.agent_id:
        acd.disposition_saved(who.agent_id, call_id)   # a queue may hold the agent until now
    return DispositionReply(**dict(row))


async def history(req: ApiRequest[None, HistoryQuery]) -> History:
    who = req.principal
    assert who is not None
    if not who.agent_id:
        return History(calls=[])
    rows = await query(db(req.app).fetch(
        """SELECT c.call_id, c.started_at, c.ended_at, c.caller_num, c.caller_name, c.queue, c.state,
                  c.duration_s::float8 AS duration_s, d.disposition, d.notes
             FROM calls c LEFT JOIN call_dispositions d ON d.call_id = c.call_id AND d.user_id = $2
            WHERE c.agent = $1 ORDER BY c.started_at DESC LIMIT $3""", who.agent_id, who.id, req.query.limit))
    return History(calls=[HistoryItem(**dict(r)) for r in rows])


async def current(req: ApiRequest[None, None]) -> DeskNow:
    """What a reloaded page rebuilds: my state (with what is pending and when wrap-up
    ends), the call I am on or offered (its screen-pop), and the wrap-up still to do."""
    who = req.principal
    assert who is not None
    agent = who.agent_id
    if not agent:
        return DeskNow()
    desk = _desktop(req)
    core = desk.core
    acd = req.app.get(ACD)
    last = desk.answered.get(agent)
    state = None
    if acd is not None and agent in {a.id for a in acd.config.agents}:
        v = acd.router.agent_state(agent)
        state = AgentNow(state=v.state, reason=v.reason, since=v.since, call_id=v.call_id, pending=v.pending,
                         wrapup_ends_at=v.wrapup_ends_at, wrapup_max_at=v.wrapup_max_at,
                         disposition_due=v.disposition_due)
    calls = core.model.calls
    ids = [state.call_id] if state is not None and state.call_id else []
    ids += [c for c, a in desk.outbound.items() if a == agent]
    ids += [c for c, live in calls.items() if live.agent == agent]
    cid = next((c for c in ids if c in calls), None)
    reply = DeskNow(agent_state=state)
    if cid is not None:
        view = calls[cid].view()
        ctx = desk.tracker.calls.get(cid) or screenpop.Context(cid)
        found = ctx.lookup or await desk.bounded_lookup(ctx, view)
        consult = desk.consults.get(cid)
        reply.transfer_pending = consult is not None and consult[0] == agent
        answered = (view.agent == agent and view.agent_answered_at is not None) or reply.transfer_pending
        phase = ("held" if view.state == "held" else "answered") if answered else "offered"
        ivr = found.get("ivr_steps") if not ctx.ivr else None
        reply.call = screenpop.card(screenpop.Pop(cid, agent, phase), ctx, view, time.time(), lookup=found,
                                    ivr_steps=ivr or None)
    if last is not None and last[0] != cid:
        saved = await query(db(req.app).fetchval(
            "SELECT 1 FROM call_dispositions WHERE call_id = $1 AND user_id = $2", last[0], who.id))
        if saved is None:
            reply.wrapup = WrapupNow(call_id=last[0], queue=last[1], caller_num=last[2], caller_name=last[3])
    return reply


# -- the web client ----------------------------------------------------------------

_STATIC_FILES = StaticFiles(STATIC, allowed=frozenset(_FILES))   # compressed, ETag, Cache-Control


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    return await _STATIC_FILES.response(request, name, {
        "Content-Security-Policy": _csp(request), "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"})


def _csp(request: web.Request) -> str:
    settings = request.app[DESKTOP].core.settings
    u = urlsplit(settings.phone_ws_url)
    # An HA pair's nodes too: the desktop moves to another node when its own goes away (api.follow).
    peers = connect_sources([url for _, url in settings.ha_peers])
    return _CSP.format(ws=(f" {u.scheme}://{u.netloc}" if u.scheme in ("ws", "wss") and u.netloc else "") + peers)


async def favicon(request: web.Request) -> web.StreamResponse:
    """One icon for every page (the desktop, the wallboard, the phone, the docs)."""
    return web.FileResponse(FAVICON, headers={"Content-Type": "image/x-icon", "Cache-Control": "max-age=86400"})


async def agent_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/agent/")


# Declared once, for the leader and for an API node, which answers it too (api.node_routes).
HISTORY: dict[str, Any] = dict(summary="My recent calls with their wrap-up", roles=frozenset({"agent"}),
                               query=HistoryQuery, response=History, tags=("calls",))


def setup_desktop(app: web.Application, core: CoreServices) -> None:
    """Screen-pops, call control, wrap-up and history routes, and the web client, on ``core``
    (its bus, model and AMI client). After ``setup_ws`` (screen-pops go out on its hub,
    after the event they follow)."""
    api = setup_registry(app)
    desk = app[DESKTOP] = Desktop(app, core)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await desk.start()
        try:
            yield
        finally:
            await desk.stop()

    app.cleanup_ctx.append(ctx)
    tags = ("calls",)
    roles = CONTROL_ROLES
    for path, handler, summary in (
            ("hangup", hangup, "Hang up the call (every leg)"),
            ("hold", hold, "Put the caller on hold (music) and the agent in silence"),
            ("resume", resume, "Take the caller off hold"),
            ("transfer/complete", complete_transfer, "Complete an attended transfer (my leg leaves)"),
            ("transfer/cancel", cancel_transfer, "Cancel an attended transfer: back to the caller")):
        api.add("POST", f"/api/calls/{{call_id}}/{path}", handler, summary=summary, roles=roles, response=Done,
                tags=tags, description="Agents act on their own calls; supervisors and admins on any.")
    api.add("POST", "/api/calls/{call_id}/transfer", transfer, summary="Transfer the caller (blind or attended)",
            description="blind: the caller goes to the agent, queue or number at once. attended: the agent's "
                        "line calls the agent or number while the caller hears music; POST .../transfer/complete "
                        "(or hang up the phone) to complete, .../transfer/cancel to return to the caller.",
            roles=roles, body=TransferBody, response=Done, tags=tags)
    api.add("POST", "/api/calls/{call_id}/dtmf", dtmf, summary="Send DTMF digits to the caller's side",
            roles=roles, body=DtmfBody, response=Done, tags=tags)
    api.add("POST", "/api/calls/dial", dial, summary="Click-to-dial: ring my device, then the customer",
            description="The agent must be not ready (the ACD must not offer a call meanwhile). The answer's "
                        "call_id names the new call; with ticket_id (a callback) the call is linked to the ticket.",
            roles=frozenset({"agent"}), body=DialBody, response=Done, status=201, tags=tags)
    api.add("PUT", "/api/calls/{call_id}/disposition", save_disposition, summary="Store the wrap-up of a call",
            description="One disposition and notes per call and user; a second PUT replaces it.",
            roles=roles, body=DispositionBody, response=DispositionReply, tags=tags)
    api.add("GET", "/api/agent/calls", history, **HISTORY)
    api.add("GET", "/api/agent/current", current, summary="My current call, wrap-up and pending state",
            description="What the desktop rebuilds after a reload: the agent's state (with a pending not ready "
                        "or logout, and when wrap-up ends), the call they are on or offered (its screen-pop "
                        "message), and the last call they answered while it has no wrap-up of theirs.",
            roles=frozenset({"agent"}), response=DeskNow, tags=tags)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/agent", agent_root)
    app.router.add_get("/agent/", static_file)
    app.router.add_get("/agent/{name}", static_file)
    api.document("GET", "/agent/", summary="The agent desktop (web client)", roles=None, operation_id="agent_client",
                 content_type="text/html", tags=("web",))
