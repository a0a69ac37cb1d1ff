"""The supervisors' live wallboard: ``WallboardService`` (docs/wallboard.md).

Its routes (the board now, supervisors' live actions) are in
``api.wallboard_routes``, the interval reports and staffing plan in
``api.report_routes``, their models in ``api.wallboard_models``.

How the live figures are fed: **incrementally from the bus**, into a ledger of
today's queued calls (``acd.ledger.BoardLedger``, pure): for each call, the call
as the model last showed it (a ``CallView``: the same fields as its ``calls``
row) and its events of the kinds the reports read, and the agents' state
changes of today. A board is ``acd.reports.build_queue_calls`` over that ledger
(only the calls that changed are rebuilt), ``attach_wrapup`` with the agents'
state changes, and the counts of ``acd.figures`` kept per queue and block of
arrival as calls change (``acd.board_sums``), put together as
``acd.wallboard.board`` does: the functions the interval reports use on rows
read from PostgreSQL, so the board and the report of the same calls agree by
construction, and a board costs what changed since the last one, not the calls
of the last half hour. At start (and at local midnight) the ledger is seeded
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
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from acd import callbacks as cbs
from acd import reports, rollups
from acd.events import AgentStateChanged
from acd.ledger import EVENT_KINDS, BoardLedger
from acd.figures import StateChange, bucket_start, next_bucket
from acd.routing_shell import AcdService
from acd.decisions import TaskQueueStats
from acd.wallboard import (
    AgentLive, BoardConfig, TaskCounts, alerts, colours_of, load_board_config, task_counts, task_queue_rows,
)
from cti.daemon import CoreServices
from cti.events import CallEvent

log = structlog.get_logger(__name__)

REFRESH_S = 5.0              # a board is pushed at least this often (rolling windows move)
BUILD_SHARE = 0.05           # at most this share of the daemon's time goes to building boards
ROLLUP_EVERY_S = 300.0       # settled intervals are rolled up this often
REPORT_TIMEOUT = 60.0        # a report may read the calls of intervals not rolled up yet
# Reports, which may hold a connection for a minute, query through their own share of the
# daemon's pool (``Core.db("reports")``: these and the rollup), and only so many at once.
REPORTS_AT_ONCE = 4
REPORT_SLOT_WAIT = 5.0       # a report that finds every slot taken waits this long, then 503


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

    def __init__(self, app: web.Application, core: CoreServices, acd: AcdService | None) -> None:
        self.app = app
        self.core = core
        self.acd = acd          # routing figures, agent states (None when the ACD does not run)
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
        # Called with each board built (the event broker sends it to the API nodes).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.last_push = 0.0                               # monotonic time of the last push
        self.build_s = 0.0
        self._dirty = asyncio.Event()
        self.report_slots = asyncio.Semaphore(REPORTS_AT_ONCE)
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self.pool: Any = None                              # for seeding and rollups (None without a database)
        # The task queues' figures now (omni.service.OmniService.queue_stats, set by
        # setup_omni) and their counters at local midnight, the base of "today".
        self.task_stats: Callable[[float], list[TaskQueueStats]] = lambda now: []
        self.task_base: dict[str, TaskCounts] = {}

    @property
    def day_start(self) -> float:
        return self.ledger.day_start

    @day_start.setter
    def day_start(self, value: float) -> None:
        self.ledger.day_start = value

    def routing_defaults(self) -> dict[str, tuple[float, float]]:
        acd = self.acd
        return {} if acd is None else {q.id: (q.sl_seconds, q.sl_percent / 100) for q in acd.config.queues}

    def queues(self) -> list[str]:
        acd = self.acd
        return sorted({q.id for q in acd.config.queues} if acd is not None else set(self.config.queues))

    def voice_queues(self) -> list[str]:
        """The queues of calls on the board: task queues (chat, e-mail, message) are its
        ``task_queues``, from the task router."""
        acd = self.acd
        return self.queues() if acd is None else sorted(q.id for q in acd.config.queues if q.channel == "voice")

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.config = load_board_config(self.core.settings.wallboard_config, self.routing_defaults())
        self.ledger = BoardLedger(self.config)             # counted under this configuration from now on
        bus = self.core.bus
        self._unsubscribe = [bus.subscribe(self.on_call_event), bus.subscribe_to(AgentStateChanged, self.agent_changed)]
        self.pool = self.core.db("reports")   # its share of the daemon's pool (none in unit tests)
        from api.ws import WS
        if WS in self.app:
            self.app[WS].before_flush.append(self.join_flush)
        self._tasks = [asyncio.create_task(self._run_push(), name="wallboard-push"),
                       asyncio.create_task(self._run_rollups(), name="wallboard-rollups")]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        from api.ws import WS
        if WS in self.app and self.join_flush in self.app[WS].before_flush:
            self.app[WS].before_flush.remove(self.join_flush)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def seed(self, now: float) -> None:
        """Today's queued calls and agent states from PostgreSQL (and calls still waiting)."""
        self.ledger.reset(bucket_start(now, "day", self.tz))
        if self.pool is None:
            return
        start = datetime.fromtimestamp(self.day_start, self.tz)
        rows = await self.pool.fetch(
            "SELECT * FROM calls WHERE queue IS NOT NULL AND (queue_joined_at >= $1 "
            "OR (queue_joined_at IS NOT NULL AND ended_at IS NULL))", start)
        ids = [r["call_id"] for r in rows]
        events = await reports.call_events(self.pool, ids)
        changes = await reports.state_changes(self.pool, start, datetime.fromtimestamp(now + 1, self.tz))
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

    def mark_dirty(self) -> None:
        """Another board is wanted (within ``interval``), as after a change."""
        self._dirty.set()

    def callback_filed(self, call_id: str, status: str) -> None:
        """A supervisor filed a call-back for ``call_id``: shown on the next board."""
        self.filed[call_id] = status
        self._dirty.set()

    def agent_changed(self, ev: AgentStateChanged) -> None:
        """The ACD's new view of an agent (a state change, or only what is pending:
        the ledger keeps a change once, the board shows both)."""
        v = ev.view
        self.ledger.agent_change(StateChange(v.agent_id, v.since, v.state, v.reason))
        self._dirty.set()

    # -- the board -------------------------------------------------------------------

    def build(self, now: float) -> dict[str, Any]:
        """The board at ``now`` from the ledger (rebuilding the calls that changed,
        folding those settled)."""
        t0 = time.thread_time()
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
        snap = self.ledger.board(now, agents, queues=self.voice_queues(), callbacks=callbacks)
        # The router's own list, for the move and priority buttons (callbacks included).
        snap["waiting_calls"] = [] if acd is None else [
            {"call_id": w.call_id, "queue": w.queue_id, "status": w.status, "priority": w.priority,
             "arrived_at": w.arrived_at, "callback": w.callback, **self.caller(w.call_id)}
            for w in acd.router.waiting_calls()]
        # Names for the page: the queues' (their id when unnamed), the caller of each agent's call.
        names = {} if acd is None else {q.id: q.name for q in acd.config.queues}
        snap["queue_names"] = {q["queue"]: names.get(q["queue"]) or q["queue"] for q in snap["queues"]}
        # Chat, e-mail and message queues, from the task router, beside the voice ones.
        snap["task_queues"] = task_queue_rows(self.task_stats(now), self.task_base, names)
        for a in snap["agents"]:
            a.update(self.caller(a["call_id"]) if a["call_id"] else {"number": None, "caller_name": None})
        snap["timezone"] = str(self.tz)
        # CPU time, not wall time: a build preempted by a busy machine (or paused by the
        # collector) would otherwise stretch the next pushes by twenty times the pause.
        self.build_s = time.thread_time() - t0
        return snap

    def caller(self, call_id: str) -> dict[str, str | None]:
        """The caller's number and name of a call of the ledger (None when unknown)."""
        row = self.ledger.rows.get(call_id) or {}
        return {"number": row.get("caller_num"), "caller_name": row.get("caller_name")}

    async def _run_push(self) -> None:
        try:
            await self.seed(time.time())
        except Exception:
            log.exception("wallboard: today's calls not read; the board starts empty")
            self.ledger.day_start = bucket_start(time.time(), "day", self.tz)
        while True:
            try:   # not wait_for: on Python 3.11 it may swallow stop()'s cancel (acd/routing_shell.py)
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
        the board never takes more than ``BUILD_SHARE`` of the daemon's CPU time; never
        longer than ``REFRESH_S``."""
        return min(REFRESH_S, max(self.push_s, self.build_s / BUILD_SHARE))

    def _new_day(self, now: float) -> None:
        """At local midnight: forget yesterday's settled calls (those waiting stay)."""
        self.ledger.new_day(bucket_start(now, "day", self.tz))
        self.task_base = task_counts(self.task_stats(now))

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
        for listener in self.listeners:
            listener(snap)      # the event broker: built once here, fanned out by the API nodes
        from api.ws import WS
        if WS in self.app:
            hubs = self.app[WS]
            hubs._deliver(hubs.hub.broadcast(snap))

    async def _run_rollups(self) -> None:
        await asyncio.sleep(30)
        back = 400 * 86_400.0            # first: whatever is not rolled up yet (history, a threshold change)
        while True:
            try:
                if self.pool is not None:
                    now = time.time()
                    n = await rollups.roll_up(self.pool, now - back, now, self.config, self.queues(), now=now)
                    back = 2 * 86_400.0
                    if n:
                        log.info("report intervals rolled up", intervals=n)
            except Exception:
                log.exception("rollup failed")
            await asyncio.sleep(ROLLUP_EVERY_S)


WALLBOARD = web.AppKey("wallboard", WallboardService)
