"""The supervisors' wallboard (live, over the WebSocket), their live actions, and
the interval reports and staffing plan (docs/wallboard.md).

How the live figures are fed: **incrementally from the bus**, into a ledger of
today's queued calls (``acd.ledger.BoardLedger``, pure): for each call, the call
as the model last showed it (a ``CallView``: the same fields as its ``calls``
row) and its events of the kinds the reports read, and the agents' state
changes of today. A board is ``acd.reports.build_queue_calls`` over that ledger
(only the calls that changed are rebuilt), ``attach_wrapup`` with the agents'
state changes, and ``acd.wallboard.board``: the functions the interval reports
use on rows read from PostgreSQL, so the board and the report of the same calls
agree by construction. At start (and at local midnight) the ledger is seeded
from PostgreSQL. Reading the database on a short interval instead was measured
(BENCHMARKS.md, "Wallboard"): it costs a day's calls per refresh and trails the
store writer's batching.

The ledger stays small all day: a call settled (ended, out of the 30-minute
rolling windows, its wrap-up final) is folded into today's per-queue counts and
its row and events dropped; agent state changes no call held needs are folded
into today's seconds per state. Memory and the work per push follow the calls
of the last half hour, not the hour of the day (``acd.ledger``; BENCHMARKS.md,
"Wallboard over a long day").

Pushing is thin: any call event or agent state change marks the board dirty; a
task builds and broadcasts it at most every ``wallboard_push_s`` (and every
``REFRESH_S`` anyway, for the rolling windows), as a ``wallboard`` message to
supervisors and admins (``Hub.broadcast``: no seq, not replayed). When the
board is due as the hub flushes a burst of events, it is built then and goes
out in the same socket writes (``join_flush``): with thousands of supervisors
connected, a board sent on its own costs as many system calls as an event.
A board that takes long to build is pushed less often (``interval``): the
board never takes more than ``BUILD_SHARE`` of the daemon's time.

Live actions (STAFF routes) are audited in ``supervisor_actions``, done or not.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Mapping
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from acd import callbacks as cbs
from acd import reports, rollups
from acd.core import AcdInputError, AgentStateError
from acd.decisions import AgentView
from acd.ledger import EVENT_KINDS, BoardLedger
from acd.metrics import StateChange, bucket_start, next_bucket, spans_from_changes
from acd.service import ACD, AcdService
from acd.staffing import SlotCounts, StaffingError, forecast_slot, plan_interval, same_slot_history
from acd.wallboard import (
    AgentLive, BoardConfig, agent_report_rows, alerts, colours_of, csv_text, load_board_config, report_rows,
)
from api import audit
from api.auth import STAFF
from api.desk import db, query
from api.errors import ApiError
from api.registry import ApiRequest, Day, setup_registry
from cti.daemon import CORE, run_with_app
from cti.errors import AmiError
from cti.events import CallEvent
from cti.pg import keep_session

log = structlog.get_logger(__name__)

REFRESH_S = 5.0              # a board is pushed at least this often (rolling windows move)
BUILD_SHARE = 0.05           # at most this share of the daemon's time goes to building boards
ROLLUP_EVERY_S = 300.0       # settled intervals are rolled up this often
STATIC = Path(__file__).with_name("static") / "wallboard"
REPORT_TIMEOUT = 60.0        # a report may read the calls of intervals not rolled up yet
_DEVICE = re.compile(r"^(PJSIP|SIP|IAX2|Local|DAHDI)/[A-Za-z0-9_.@+-]{1,80}(/n)?$")
SPY_OPTIONS = {"listen": "qE", "whisper": "qEw", "barge": "qEB"}


def settle_filed(filed: dict[str, str], waiting: Mapping[str, Any], rows: Mapping[str, Any]) -> dict[str, str]:
    """The call-backs supervisors filed, as the board shows them: the router's status
    while it holds the call-back, "done" once it no longer does; a settled one is
    forgotten when its call has left the ledger (folded: no longer on the board),
    so a long day's call-backs do not pile up in every push."""
    out = {}
    for cid, status in filed.items():
        w = waiting.get(cid)
        if w is not None and w.callback is not None:
            out[cid] = w.callback.status
        elif status in cbs.OPEN:
            out[cid] = "done"
        elif cid in rows:
            out[cid] = status
    return out


class WallboardService:
    """The ledger, the push task and the rollup task (see the module doc)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.core = app[CORE]
        settings = self.core.settings
        self.tz = ZoneInfo(settings.timezone)
        self.push_s = settings.wallboard_push_s
        self.config: BoardConfig = load_board_config(settings.wallboard_config)
        self.ledger = BoardLedger(self.config)             # today's calls and agent state changes
        self.agent_legs: dict[str, str] = {}               # agent id -> Uniqueid of the leg answering
        self.filed: dict[str, str] = {}                    # call id -> status of a call-back filed for it
        self.snapshot: dict[str, Any] | None = None
        self.colours: dict[str, dict[str, str | None]] = {}
        self.recent_alerts: list[dict[str, Any]] = []
        self.pushes = 0
        self.last_push = 0.0                               # monotonic time of the last push
        self.build_s = 0.0
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Any = None
        self._pool: Any = None

    @property
    def day_start(self) -> float:
        return self.ledger.day_start

    @day_start.setter
    def day_start(self, value: float) -> None:
        self.ledger.day_start = value

    @property
    def acd(self) -> AcdService | None:
        return self.core.acd

    def routing_defaults(self) -> dict[str, tuple[float, float]]:
        acd = self.acd
        return {} if acd is None else {q.id: (q.sl_seconds, q.sl_percent / 100) for q in acd.config.queues}

    def queues(self) -> list[str]:
        acd = self.acd
        return sorted({q.id for q in acd.config.queues} if acd is not None else set(self.config.queues))

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.config = load_board_config(self.core.settings.wallboard_config, self.routing_defaults())
        self.ledger = BoardLedger(self.config)             # counted under this configuration from now on
        self._unsubscribe = self.core.bus.subscribe(self.on_call_event)
        if self.acd is not None:
            self.acd.agent_listeners.append(self.agent_changed)
        if self.core.dsn is not None:
            import asyncpg
            self._pool = await asyncpg.create_pool(self.core.dsn, min_size=0, max_size=3, timeout=10,
                                                   command_timeout=REPORT_TIMEOUT, reset=keep_session)
        from api.ws import WS
        if WS in self.app:
            self.app[WS].before_flush.append(self.join_flush)
        self._tasks = [asyncio.create_task(self._run_push(), name="wallboard-push"),
                       asyncio.create_task(self._run_rollups(), name="wallboard-rollups")]

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.acd is not None and self.agent_changed in self.acd.agent_listeners:
            self.acd.agent_listeners.remove(self.agent_changed)
        from api.ws import WS
        if WS in self.app and self.join_flush in self.app[WS].before_flush:
            self.app[WS].before_flush.remove(self.join_flush)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5)
            except asyncio.TimeoutError:
                self._pool.terminate()

    async def seed(self, now: float) -> None:
        """Today's queued calls and agent states from PostgreSQL (and calls still waiting)."""
        self.ledger.reset(bucket_start(now, "day", self.tz))
        if self._pool is None:
            return
        start = datetime.fromtimestamp(self.day_start, self.tz)
        rows = await self._pool.fetch(
            "SELECT * FROM calls WHERE queue IS NOT NULL AND (queue_joined_at >= $1 "
            "OR (queue_joined_at IS NOT NULL AND ended_at IS NULL))", start)
        ids = [r["call_id"] for r in rows]
        events = await self._pool.fetch(reports._EVENTS, ids, reports._EVENT_KINDS) if ids else []
        changes = await reports.state_changes(self._pool, start, datetime.fromtimestamp(now + 1, self.tz))
        # Live events may have come meanwhile: they are newer (the ledger keeps them).
        self.ledger.seed(rows, events, changes)

    # -- inputs --------------------------------------------------------------------

    def on_call_event(self, ev: CallEvent) -> None:
        cid = ev.call_id
        view = ev.call
        if ev.kind == "call.connected" and isinstance(ev.data.get("agent"), str) and ev.data.get("uniqueid"):
            self.agent_legs[ev.data["agent"]] = str(ev.data["uniqueid"])
        if view.queue_joined_at is None and cid not in self.ledger.rows:
            return
        event = {"call_id": cid, "seq": ev.seq, "at": ev.at, "kind": ev.kind, "data": dict(ev.data)} \
            if ev.kind in EVENT_KINDS else None
        if self.ledger.call(cid, view.as_dict(), event):
            self._dirty.set()

    def agent_changed(self, v: AgentView) -> None:
        """The ACD changed an agent's state (``v``, the state it changed to)."""
        self.ledger.agent_change(StateChange(v.agent_id, v.since, v.state, v.reason))
        self._dirty.set()

    # -- the board -------------------------------------------------------------------

    def build(self, now: float) -> dict[str, Any]:
        """The board at ``now`` from the ledger (rebuilding the calls that changed,
        folding those settled)."""
        t0 = time.perf_counter()
        acd = self.acd
        agents = []
        callbacks: dict[str, str] = {}
        if acd is not None:
            names = {a.id: a.name for a in acd.config.agents}
            for a in acd.config.agents:
                v = acd.router.agent_state(a.id)
                agents.append(AgentLive(a.id, names[a.id], v.state, v.reason, v.since, v.call_id, v.queue_id,
                                        v.pending))
            self.filed = settle_filed(self.filed, acd.calls, self.ledger.rows)
            callbacks = dict(self.filed)
        snap = self.ledger.board(now, agents, queues=self.queues(), callbacks=callbacks)
        # The router's own list, for the move and priority buttons (callbacks included).
        snap["waiting_calls"] = [] if acd is None else [
            {"call_id": w.call_id, "queue": w.queue_id, "status": w.status, "priority": w.priority,
             "arrived_at": w.arrived_at, "callback": w.callback,
             "number": (self.ledger.rows.get(w.call_id) or {}).get("caller_num")}
            for w in acd.router.waiting_calls()]
        snap["timezone"] = str(self.tz)
        self.build_s = time.perf_counter() - t0
        return snap

    async def _run_push(self) -> None:
        try:
            await self.seed(time.time())
        except Exception:
            log.exception("wallboard: today's calls not read; the board starts empty")
            self.ledger.day_start = bucket_start(time.time(), "day", self.tz)
        while True:
            try:   # not wait_for: on Python 3.11 it may swallow stop()'s cancel (acd/service.py)
                async with asyncio.timeout(REFRESH_S):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            await asyncio.sleep(max(0.0, self.interval() - (time.monotonic() - self.last_push)))
            if not self._dirty.is_set() and time.monotonic() - self.last_push < REFRESH_S:
                continue    # a flush of events took it along meanwhile
            self._push_now()

    def _push_now(self) -> None:
        self._dirty.clear()
        self.last_push = time.monotonic()
        try:
            now = time.time()
            if now >= next_bucket(self.day_start, "day", self.tz):
                self._new_day(now)
            self.push(self.build(now))
        except Exception:
            log.exception("wallboard push failed")

    def join_flush(self) -> None:
        """The hub is about to write a burst of events: when the board is due, build
        it now so it goes out in the same writes (one send per client, not two)."""
        if self._dirty.is_set() and time.monotonic() - self.last_push >= self.interval():
            self._push_now()

    def interval(self) -> float:
        """Seconds between pushes: ``push_s``, or longer when a build is slow, so that
        the board never takes more than ``BUILD_SHARE`` of the daemon's time."""
        return max(self.push_s, self.build_s / BUILD_SHARE)

    def _new_day(self, now: float) -> None:
        """At local midnight: forget yesterday's settled calls (those waiting stay)."""
        self.ledger.new_day(bucket_start(now, "day", self.tz))

    def push(self, snap: dict[str, Any]) -> None:
        fired = alerts(self.colours, snap)
        self.colours = colours_of(snap)
        if fired:
            for a in fired:
                log.warning("wallboard alert", **a)
            self.recent_alerts = (self.recent_alerts + [{**a, "at": snap["at"]} for a in fired])[-50:]
        snap["alerts"] = fired
        snap["recent_alerts"] = self.recent_alerts
        self.snapshot = snap
        self.pushes += 1
        from api.ws import WS
        if WS in self.app:
            hubs = self.app[WS]
            hubs._deliver(hubs.hub.broadcast(snap))

    async def _run_rollups(self) -> None:
        await asyncio.sleep(30)
        back = 400 * 86_400.0            # first: whatever is not rolled up yet (history, a threshold change)
        while True:
            try:
                if self._pool is not None:
                    now = time.time()
                    n = await rollups.roll_up(self._pool, now - back, now, self.config, self.queues(), now=now)
                    back = 2 * 86_400.0
                    if n:
                        log.info("report intervals rolled up", intervals=n)
            except Exception:
                log.exception("rollup failed")
            await asyncio.sleep(ROLLUP_EVERY_S)


WALLBOARD = web.AppKey("wallboard", WallboardService)


# -- models ------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpyBody(Strict):
    mode: Literal["listen", "whisper", "barge"]


class AgentActionBody(Strict):
    action: Literal["not_ready", "logout"]
    reason: str = Field("supervisor", max_length=64, pattern=r"^[A-Za-z0-9 _.-]*$")


class MoveBody(Strict):
    queue: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
    priority: int | None = Field(None, ge=-1000, le=1000)

    @model_validator(mode="after")
    def _something(self) -> "MoveBody":
        if self.queue is None and self.priority is None:
            raise ValueError("give queue, priority or both")
        return self


class CallbackBody(Strict):
    call_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@+-]+$")
    number: str | None = Field(None, pattern=r"^\+?[0-9]{3,20}$", description="default: the caller's number")


class ActionReply(BaseModel):
    id: int | None
    action: str
    result: str
    detail: str = ""


class ActionItem(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    agent_id: str | None
    call_id: str | None
    details: dict[str, Any]
    result: str
    error: str | None


class ActionList(BaseModel):
    actions: list[ActionItem]


class ActionsQuery(Strict):
    limit: int = Field(100, ge=1, le=1000)


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    at: float


class ReportQuery(Strict):
    start: Day = Field(description="first local day")
    end: Day = Field(description="last local day (included)")
    granularity: Literal["15min", "30min", "60min", "day", "week"] = "60min"
    queue: str | None = Field(None, max_length=64)
    agent: str | None = Field(None, max_length=64)
    format: Literal["json", "csv"] = "json"

    @model_validator(mode="after")
    def _range(self) -> "ReportQuery":
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days > 400:
            raise ValueError("at most 400 days at a time")
        return self


class ReportReply(BaseModel):
    granularity: str
    timezone: str
    intervals: dict[str, int] = Field(description="15-minute intervals read from rollups and from the calls")
    rows: list[dict[str, Any]]


class TimelineQuery(Strict):
    day: Day


class TimelineReply(BaseModel):
    agent_id: str
    day: date
    spans: list[dict[str, Any]]


class StaffingQuery(Strict):
    day: Day
    queue: str = Field(max_length=64)
    granularity: Literal["15min", "30min", "60min"] = "30min"
    weeks: int = Field(4, ge=1, le=12)
    shrinkage: float = Field(0.3, ge=0, lt=1)
    patience_s: float | None = Field(None, gt=0, le=3600)


class StaffingReply(BaseModel):
    queue: str
    day: date
    policy: str
    rows: list[dict[str, Any]]


# -- handlers ----------------------------------------------------------------------------------


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
    wb.filed[body.call_id] = cb.status
    wb._dirty.set()
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


def _day_range(wb: WallboardService, first: date, last: date) -> tuple[float, float]:
    lo = datetime(first.year, first.month, first.day, tzinfo=wb.tz).timestamp()
    hi_day = last + timedelta(days=1)
    hi = datetime(hi_day.year, hi_day.month, hi_day.day, tzinfo=wb.tz).timestamp()
    return bucket_start(lo, "day", wb.tz), bucket_start(hi, "day", wb.tz)


async def _counts(req: ApiRequest[Any, Any], lo: float, hi: float, queues: list[str], agents: str | None = None):
    wb = _wb(req)
    try:
        async with asyncio.timeout(REPORT_TIMEOUT):
            return await rollups.interval_counts(db(req.app), lo, hi, wb.config, queues, now=time.time(),
                                                 agents=agents)
    except TimeoutError:
        raise ApiError(503, "unavailable", f"the report took longer than {REPORT_TIMEOUT:g}s; ask for fewer days") from None


def _answer(req: ApiRequest[ReportQuery, Any], rows: list[dict[str, Any]], columns: list[str], sources: dict[str, int],
            name: str) -> Any:
    q = req.query
    if q.format == "csv":
        filename = f"{name}-{q.start}-{q.end}-{q.granularity}.csv"
        return web.Response(text=csv_text(rows, columns), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return ReportReply(granularity=q.granularity, timezone=str(_wb(req).tz), intervals=sources, rows=rows)


QUEUE_COLUMNS = ["queue", "local_start", "offered", "answered", "abandoned", "timed_out", "short_abandoned",
                 "answered_within", "service_level", "asa_s", "aht_s", "abandon_rate", "longest_wait_s"]
AGENT_COLUMNS = ["agent", "local_start", "answered", "aht_s", "logged_in_s", "ready_s", "busy_s", "occupancy",
                 "utilization", "seconds", "not_ready_by_reason"]


async def queue_report(req: ApiRequest[None, ReportQuery]) -> Any:
    wb = _wb(req)
    q = req.query
    queues = [q.queue] if q.queue else wb.queues()
    lo, hi = _day_range(wb, q.start, q.end)
    counts, _, _, sources = await _counts(req, lo, hi, queues)
    rows = report_rows(counts, wb.config, q.granularity, wb.tz)
    return _answer(req, rows, QUEUE_COLUMNS, sources, "queues")


async def agent_report(req: ApiRequest[None, ReportQuery]) -> Any:
    wb = _wb(req)
    q = req.query
    lo, hi = _day_range(wb, q.start, q.end)
    if not q.agent and (q.end - q.start).days > 62:
        raise ApiError(422, "invalid_body", "every agent's report covers at most 62 days; name one agent for more")
    if q.agent == rollups.TOTAL:
        raise ApiError(422, "invalid_body", "agent '*' is not an agent")
    _, seconds, handled, sources = await _counts(req, lo, hi, wb.queues(), q.agent or rollups.ALL)
    rows = agent_report_rows(seconds, handled, q.granularity, wb.tz)
    return _answer(req, rows, AGENT_COLUMNS, sources, "agents")


async def agent_timeline(req: ApiRequest[None, TimelineQuery]) -> TimelineReply:
    wb = _wb(req)
    agent_id = req.match_info["agent_id"]
    lo, hi = _day_range(wb, req.query.day, req.query.day)
    now = time.time()
    changes = await query(reports.state_changes(db(req.app), datetime.fromtimestamp(lo, wb.tz),
                                                datetime.fromtimestamp(hi, wb.tz)))
    spans = spans_from_changes([c for c in changes if c.agent_id == agent_id], until=min(hi, now))
    out = [{"state": s.state, "reason": s.reason, "start": max(s.start, lo), "end": s.end,
            "seconds": round((s.end or now) - max(s.start, lo), 1)} for s in spans if (s.end or now) > lo]
    return TimelineReply(agent_id=agent_id, day=req.query.day, spans=out)


async def staffing(req: ApiRequest[None, StaffingQuery]) -> StaffingReply:
    """Forecast (same interval of the last weeks) and required agents per interval,
    beside the agents logged in (average over the interval, from the agent log)."""
    wb = _wb(req)
    q = req.query
    if q.queue not in wb.queues():
        raise ApiError(404, "unknown_queue", f"no queue {q.queue!r}")
    policy = wb.config.of(q.queue).policy
    lo, hi = _day_range(wb, q.day, q.day)
    hist_lo = bucket_start(lo - q.weeks * 7 * 86_400 - 7200, "day", wb.tz)
    counts, seconds, _, _ = await _counts(req, hist_lo, hi, [q.queue], rollups.TOTAL)
    by_slot: dict[float, list[Any]] = {}
    for (queue, start), k in counts.items():
        by_slot.setdefault(bucket_start(start, q.granularity, wb.tz), []).append(k)
    slot_counts = {}
    for start, ks in by_slot.items():
        total = ks[0]
        for k in ks[1:]:
            total = total + k
        slot_counts[start] = SlotCounts(total.arrived - total.short_abandoned, total.handled,
                                        total.talk_s + total.hold_s + total.wrapup_s)
    logged: dict[float, float] = {}
    for (_, start), (by_state, _) in seconds.items():
        b = bucket_start(start, q.granularity, wb.tz)
        logged[b] = logged.get(b, 0.0) + sum(v for s, v in by_state.items() if s != "logged_out")
    rows = []
    for start, end in _slots(lo, hi, q.granularity, wb.tz):
        history = same_slot_history(slot_counts, start, q.weeks, wb.tz)
        # A week with no calls in a slot is a quiet slot, not missing data, when the day had rollups.
        history = [h if h is not None else SlotCounts(0, 0, 0.0) for h in history]
        fc = forecast_slot(history)
        try:
            plan = plan_interval(fc, end - start, sl_target=policy.target, sl_seconds=policy.threshold_s,
                                 shrinkage=q.shrinkage, patience_s=q.patience_s)
        except StaffingError as exc:
            raise ApiError(422, "invalid_body", str(exc)) from None
        actual = slot_counts.get(start)
        rows.append({"start": start, "local_start": datetime.fromtimestamp(start, wb.tz).isoformat(),
                     "forecast_calls": round(fc.volume, 2), "forecast_aht_s": None if fc.aht_s is None else round(fc.aht_s, 1),
                     "traffic_erlangs": round(plan.traffic, 3), "agents_erlang_c": plan.erlang_c.agents,
                     "scheduled_erlang_c": plan.erlang_c.scheduled,
                     "agents_erlang_a": plan.erlang_a.agents if plan.erlang_a else None,
                     "scheduled_erlang_a": plan.erlang_a.scheduled if plan.erlang_a else None,
                     "actual_calls": None if actual is None else actual.offered,
                     "agents_logged_in": round(logged.get(start, 0.0) / (end - start), 2) if start < time.time() else None})
    return StaffingReply(queue=q.queue, day=q.day, policy=policy.label, rows=rows)


def _slots(lo: float, hi: float, granularity: str, tz: Any) -> list[tuple[float, float]]:
    out, b = [], bucket_start(lo, granularity, tz)
    while b < hi:
        n = next_bucket(b, granularity, tz)
        out.append((b, n))
        b = n
    return out


# -- wiring -------------------------------------------------------------------------------------


def setup_wallboard(app: web.Application) -> None:
    """The wallboard service, its routes and pages. After ``setup_acd`` and ``setup_auth``;
    ``setup_ws`` may come before or after (the board is pushed through its hub)."""
    service = WallboardService(app)
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
    rtags = ("reports",)
    api.add("GET", "/api/reports/queues", queue_report, summary="Queue figures per interval (JSON or CSV)",
            roles=STAFF, query=ReportQuery, response=ReportReply, tags=rtags, also=("text/csv",))
    api.add("GET", "/api/reports/agents", agent_report, summary="Agent figures per interval (JSON or CSV)",
            roles=STAFF, query=ReportQuery, response=ReportReply, tags=rtags, also=("text/csv",))
    api.add("GET", "/api/reports/agents/{agent_id}/timeline", agent_timeline, summary="An agent's states over a day",
            roles=STAFF, query=TimelineQuery, response=TimelineReply, tags=rtags)
    api.add("GET", "/api/reports/staffing", staffing, summary="Forecast and required agents per interval",
            roles=STAFF, query=StaffingQuery, response=StaffingReply, tags=rtags)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_get("/wallboard", index)
    app.router.add_get("/wallboard/", index)
    app.router.add_static("/wallboard/", STATIC, show_index=False, append_version=False)
    api.document("GET", "/wallboard/", summary="The wallboard, reports and staffing pages (static; log in there)",
                 roles=None, operation_id="wallboard_pages", content_type="text/html", tags=tags)
