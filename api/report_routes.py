"""The interval reports (queues, agents, an agent's day) as JSON or CSV, and the
staffing plan: ``add_report_routes`` (called by ``setup_wallboard``; docs/wallboard.md).

Figures per 15-minute interval come from the rollups, and from the calls for
intervals not rolled up yet (``acd.rollups``), under the wallboard's
configuration (``WallboardService.config``: thresholds per queue) and timezone.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date, datetime, timedelta
from typing import Any, AsyncIterator

from aiohttp import web

from acd import reports, rollups
from acd.figures import bucket_start, next_bucket, spans_from_changes
from acd.staffing import SlotCounts, StaffingError, forecast_slot, plan_interval, same_slot_history
from acd.wallboard import agent_report_rows, csv_text, report_rows
from api.auth import STAFF
from api.db import db, query
from api.errors import ApiError
from api.registry import Api, ApiRequest
from api.wallboard_models import (
    ChannelReportQuery, ChannelReportReply, ReportQuery, ReportReply, StaffingQuery, StaffingReply, TimelineQuery,
    TimelineReply,
)
from api.wallboard_service import REPORT_SLOT_WAIT, REPORT_TIMEOUT, REPORTS_AT_ONCE, WALLBOARD, WallboardService
from omni import store as task_store
from omni.channel_report import CHANNEL_COLUMNS, channel_rows, from_task, voice_contacts


def _day_range(wb: WallboardService, first: date, last: date) -> tuple[float, float]:
    lo = datetime(first.year, first.month, first.day, tzinfo=wb.tz).timestamp()
    hi_day = last + timedelta(days=1)
    hi = datetime(hi_day.year, hi_day.month, hi_day.day, tzinfo=wb.tz).timestamp()
    return bucket_start(lo, "day", wb.tz), bucket_start(hi, "day", wb.tz)


@contextlib.asynccontextmanager
async def _report_slot(wb: WallboardService) -> AsyncIterator[Any]:
    """One of the REPORTS_AT_ONCE report slots, and REPORT_TIMEOUT for the work inside;
    yields the reports' pool. Raises ``ApiError`` 503 (no database, no slot, too long)."""
    if wb.pool is None:     # the reports' share of the shared pool (Core.db("reports"))
        raise ApiError(503, "unavailable", "the database is unavailable")
    try:   # at most REPORTS_AT_ONCE run at once, each holding a connection of the reports' share
        async with asyncio.timeout(REPORT_SLOT_WAIT):
            await wb.report_slots.acquire()
    except TimeoutError:
        raise ApiError(503, "unavailable", f"{REPORTS_AT_ONCE} reports are being computed; try again shortly") from None
    try:
        async with asyncio.timeout(REPORT_TIMEOUT):
            yield wb.pool
    except TimeoutError:
        raise ApiError(503, "unavailable", f"the report took longer than {REPORT_TIMEOUT:g}s; ask for fewer days") from None
    finally:
        wb.report_slots.release()


async def _counts(req: ApiRequest[Any, Any], lo: float, hi: float, queues: list[str], agents: str | None = None):
    wb = req.app[WALLBOARD]
    async with _report_slot(wb) as pool:
        return await rollups.interval_counts(pool, lo, hi, wb.config, queues, now=time.time(), agents=agents)


def _answer(req: ApiRequest[ReportQuery, Any], rows: list[dict[str, Any]], columns: list[str], sources: dict[str, int],
            name: str) -> Any:
    q = req.query
    if q.format == "csv":
        filename = f"{name}-{q.start}-{q.end}-{q.granularity}.csv"
        return web.Response(text=csv_text(rows, columns), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return ReportReply(granularity=q.granularity, timezone=str(req.app[WALLBOARD].tz), intervals=sources, rows=rows)


QUEUE_COLUMNS = ["queue", "local_start", "offered", "answered", "abandoned", "timed_out", "short_abandoned",
                 "answered_within", "service_level", "asa_s", "aht_s", "abandon_rate", "longest_wait_s"]
AGENT_COLUMNS = ["agent", "local_start", "answered", "aht_s", "logged_in_s", "ready_s", "busy_s", "occupancy",
                 "utilization", "seconds", "not_ready_by_reason"]


async def queue_report(req: ApiRequest[None, ReportQuery]) -> Any:
    wb = req.app[WALLBOARD]
    q = req.query
    queues = [q.queue] if q.queue else wb.queues()
    lo, hi = _day_range(wb, q.start, q.end)
    counts, _, _, sources = await _counts(req, lo, hi, queues)
    rows = report_rows(counts, wb.config, q.granularity, wb.tz)
    return _answer(req, rows, QUEUE_COLUMNS, sources, "queues")


async def agent_report(req: ApiRequest[None, ReportQuery]) -> Any:
    wb = req.app[WALLBOARD]
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
    wb = req.app[WALLBOARD]
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
    wb = req.app[WALLBOARD]
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


async def channel_report(req: ApiRequest[None, ChannelReportQuery]) -> Any:
    """Every channel's contacts of the days (calls by their first queue entry, tasks by
    when they were filed): offered, answered, abandoned, the answer wait's p50 and p90,
    handle time (omni.channel_report); per interval with a granularity."""
    wb = req.app[WALLBOARD]
    q = req.query
    lo, hi = _day_range(wb, q.start, q.end)
    now = time.time()
    async with _report_slot(wb) as pool:
        calls = await reports.queue_calls(pool, datetime.fromtimestamp(lo, wb.tz), datetime.fromtimestamp(hi, wb.tz),
                                          now=datetime.fromtimestamp(now, wb.tz))
        tasks = await task_store.tasks_between(pool, lo, hi)
    g = q.granularity
    contacts = [*voice_contacts(calls), *map(from_task, tasks)]
    rows = channel_rows(contacts, bucket=None if g is None else lambda t: bucket_start(t, g, wb.tz))
    columns = CHANNEL_COLUMNS
    if g is not None:
        for r in rows:
            r["local_start"] = datetime.fromtimestamp(r["start"], wb.tz).isoformat()
        columns = ["local_start", *CHANNEL_COLUMNS]
    if q.format == "csv":
        name = f"channels-{q.start}-{q.end}" + (f"-{g}" if g else "")
        return web.Response(text=csv_text(rows, columns), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return ChannelReportReply(timezone=str(wb.tz), start=q.start, end=q.end, granularity=g, rows=rows)


def _slots(lo: float, hi: float, granularity: str, tz: Any) -> list[tuple[float, float]]:
    out, b = [], bucket_start(lo, granularity, tz)
    while b < hi:
        n = next_bucket(b, granularity, tz)
        out.append((b, n))
        b = n
    return out


def add_report_routes(api: Api) -> None:
    """The report and staffing routes (they read ``app[WALLBOARD]``: after ``setup_wallboard``
    has set it)."""
    rtags = ("reports",)
    api.add("GET", "/api/reports/queues", queue_report, summary="Queue figures per interval (JSON or CSV)",
            roles=STAFF, query=ReportQuery, response=ReportReply, tags=rtags, also=("text/csv",))
    api.add("GET", "/api/reports/agents", agent_report, summary="Agent figures per interval (JSON or CSV)",
            roles=STAFF, query=ReportQuery, response=ReportReply, tags=rtags, also=("text/csv",))
    api.add("GET", "/api/reports/agents/{agent_id}/timeline", agent_timeline, summary="An agent's states over a day",
            roles=STAFF, query=TimelineQuery, response=TimelineReply, tags=rtags)
    api.add("GET", "/api/reports/channels", channel_report, summary="Figures per channel (voice, chat, e-mail, "
            "message) over days (JSON or CSV)", roles=STAFF, query=ChannelReportQuery, response=ChannelReportReply,
            tags=rtags, also=("text/csv",))
    api.add("GET", "/api/reports/staffing", staffing, summary="Forecast and required agents per interval",
            roles=STAFF, query=StaffingQuery, response=StaffingReply, tags=rtags)

