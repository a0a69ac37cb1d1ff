"""``/metrics``: the daemon's figures in Prometheus text format.

Read-only, at each scrape (a ``prometheus_client`` collector on the app's own
registry, ``REGISTRY``): the call model (calls by state), the ACD when it runs
(waiting and ringing calls per queue, the router's per-queue counts, agents by
state), the AMI client (connected, age of the last event, and a histogram of
call-event lag), the store writer (buffer depth and capacity, rows written,
dropped, rejected), recording (starts, and its rows waiting in the store writer)
and the WebSocket hub.

Who may read it (``metrics_access``): ``loopback`` (default: clients on
127.0.0.0/8 or ::1 only; note that behind a reverse proxy on the same host
every client looks local), ``auth`` (a supervisor or admin session, or an API
key with one of those roles: Prometheus sends it with ``authorization`` in
its scrape config), or ``open``.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any, Callable

from aiohttp import web
from prometheus_client.core import Metric

from acd.routing_shell import ACD
from api import prometheus as m
from api.auth import STAFF, admits
from api.errors import ApiError, forbidden, unauthenticated
from api.registry import API
from api.session_routes import principal_of
from cti.calls import ENDED, HELD, IVR, OFFERED, QUEUED, RINGING, TALKING, TRANSFERRED
from cti.daemon import CORE
from cti.events import CallEvent
from cti.ha import HA

CALL_STATES = (RINGING, IVR, QUEUED, OFFERED, TALKING, HELD, TRANSFERRED, ENDED)
AGENT_STATES = ("logged_out", "available", "reserved", "on_call", "wrapup", "not_ready")

LAG = web.AppKey("metrics_lag", m.LagHistogram)
REGISTRY = web.AppKey("metrics_registry", m.CollectorRegistry)
#: The event broker's publisher figures (api.broker), set only when broker_url is.
BROKER_STATS: web.AppKey[Callable[[], dict[str, int]]] = web.AppKey("broker_stats")


def collect(app: web.Application, now: float) -> list[Metric]:
    core = app[CORE]
    fams: list[Metric] = []
    by_state = dict.fromkeys(CALL_STATES, 0)
    for call in core.model.calls.values():
        by_state[call.state] = by_state.get(call.state, 0) + 1
    fams.append(m.gauge("cti_calls", "Live calls by state", {(("state", s),): n for s, n in by_state.items()}))
    fams.append(m.counter("cti_ami_frames_total", "AMI frames fed to the call model", core.frames_in))
    fams.append(m.counter("cti_bus_events_total", "Call events published on the bus", core.bus.published))
    fams.append(m.counter("cti_bus_subscriber_errors_total", "Bus subscribers that raised", core.bus.errors))
    ami = core.ami.health if core.ami is not None else None
    fams.append(m.gauge("cti_ami_connected", "1 when logged in to Asterisk", int(bool(ami and ami.logged_in))))
    if ami is not None and ami.last_event_at is not None:
        fams.append(m.gauge("cti_ami_last_event_age_seconds", "Seconds since the last AMI event arrived",
                            max(0.0, now - ami.last_event_at)))
    if ami is not None:
        fams.append(m.counter("cti_ami_reconnects_total", "AMI reconnections", ami.reconnects))
    if getattr(core, "multi", False):
        # Several Asterisk nodes (docs/scale-out.md): each node's link, and whether it is dead.
        states = core.watch.states() if core.watch is not None else {}
        node = ("node",)
        fams.append(m.gauge("cti_ami_node_connected", "1 when logged in to that Asterisk node",
                            {(("node", n),): int(c.health.logged_in) for n, c in core.nodes.items()}, node))
        fams.append(m.gauge("cti_ami_node_dead", "1 while that Asterisk node is dead (lost longer than "
                            "ami_node_dead_after)", {(("node", n),): int(states.get(n) == "dead")
                                                     for n in core.nodes}, node))
    fams.append(app[LAG].family("cti_event_lag_seconds",
                                "Call event delay from Asterisk's event timestamp to the bus"))
    w = core.writer.stats if core.writer is not None else None
    if w is not None:
        fams.append(m.gauge("cti_store_buffered_rows", "Rows waiting in the store writer's buffer", w.buffered))
        fams.append(m.gauge("cti_store_buffer_capacity_rows", "Rows the store writer's buffer holds before it drops "
                            "(db_buffer_max)", core.writer.buffer_max))
        fams.append(m.gauge("cti_store_connected", "1 when the writer's last attempt reached PostgreSQL",
                            int(w.connected)))
        fams.append(m.counter("cti_store_rows_written_total", "Rows written", w.written))
        fams.append(m.counter("cti_store_rows_dropped_total", "Rows dropped: buffer full", w.dropped))
        fams.append(m.counter("cti_store_rows_rejected_total", "Rows PostgreSQL refused for good", w.rejected))
        fams.append(m.counter("cti_store_write_failures_total", "Write attempts that failed", w.failures))
    shares = sorted(core.shares.items())     # each feature's share of the pool (cti.pg.FeaturePool)
    fams.append(m.gauge("cti_db_connections_in_use", "Connections of the shared pool a feature holds",
                        {(("feature", f),): s.in_use for f, s in shares}, ("feature",)))
    fams.append(m.gauge("cti_db_connections_max", "Connections of the shared pool a feature may hold at once "
                        "(db_feature_max)", {(("feature", f),): s.limit for f, s in shares}, ("feature",)))
    fams.append(m.gauge("cti_db_waiting", "Queries waiting for their feature's share of the pool",
                        {(("feature", f),): s.waiting for f, s in shares}, ("feature",)))
    broker = app.get(BROKER_STATS)
    if broker is not None:
        b = broker()
        fams.append(m.gauge("cti_broker_connected", "1 while connected to the broker (the last connect or publish succeeded)", b["connected"]))
        fams.append(m.gauge("cti_broker_buffered_messages", "Events waiting for the broker", b["buffered"]))
        fams.append(m.gauge("cti_broker_buffer_capacity_messages", "Events held while the broker is away before "
                            "new ones are dropped (broker_buffer_max)", b["capacity"]))
        fams.append(m.counter("cti_broker_published_total", "Events the broker acknowledged", b["published"]))
        fams.append(m.counter("cti_broker_dropped_total", "Events dropped: buffer full", b["dropped"]))
        fams.append(m.counter("cti_broker_publish_failures_total", "Publish or connect attempts that failed",
                              b["failures"]))
    acd = app.get(ACD)
    if acd is not None:
        stats = [acd.router.queue_stats(q.id, now) for q in acd.config.queues]

        def per_queue(field: str) -> dict[m.Labels, float]:
            return {(("queue", st.queue_id),): getattr(st, field) for st in stats}

        q = ("queue",)
        fams.append(m.gauge("cti_queue_waiting_calls", "Calls waiting in an ACD queue", per_queue("waiting"), q))
        fams.append(m.gauge("cti_queue_ringing_calls", "Calls of an ACD queue ringing an agent",
                            per_queue("ringing"), q))
        fams.append(m.gauge("cti_queue_longest_wait_seconds", "Longest wait among a queue's calls",
                            per_queue("longest_wait_s"), q))
        # The router's counts since the daemon started; a service level over any window is
        # increase(answered_within) / increase(left) (docs/api.md, "Metrics").
        fams.append(m.counter("cti_queue_calls_left_total", "Calls that left an ACD queue: answered, abandoned "
                              "or timed out", per_queue("offered"), q))
        fams.append(m.counter("cti_queue_calls_answered_total", "Calls of an ACD queue answered by an agent",
                              per_queue("answered"), q))
        fams.append(m.counter("cti_queue_calls_answered_within_sl_total", "Calls of an ACD queue answered "
                              "within the queue's sl_seconds", per_queue("answered_within_sl"), q))
        fams.append(m.counter("cti_queue_calls_abandoned_total", "Callers who hung up waiting in an ACD queue",
                              per_queue("abandoned"), q))
        fams.append(m.counter("cti_queue_calls_timed_out_total", "Calls that left an ACD queue at its max wait",
                              per_queue("timed_out"), q))
        fams.append(m.gauge("cti_queue_service_level_target_percent", "A queue's service-level target (sl_percent)",
                            per_queue("sl_target"), q))
        agents = dict.fromkeys(AGENT_STATES, 0)
        for a in acd.config.agents:
            s = acd.router.agent_state(a.id).state
            agents[s] = agents.get(s, 0) + 1
        fams.append(m.gauge("cti_agents", "ACD agents by state", {(("state", s),): n for s, n in agents.items()}))
    from api.ws import WS, WS_SERVED  # optional: the hub may not be mounted

    if WS in app:
        service = app.get(WS_SERVED) or app[WS]
        hub = service.hub
        fams.append(m.gauge("cti_ws_connections", "Open WebSocket connections", hub.connections))
        fams.append(m.gauge("cti_ws_streams", "WebSocket streams (one per agent user, one shared by staff; kept for "
                                              "resume)", len(hub.streams)))
        fams.append(m.counter("cti_ws_direct_writes_total", "Socket writes by the flush (a burst of messages each)",
                              service.direct_writes))
        fams.append(service.flush_seconds.family("cti_ws_flush_seconds", "A WebSocket flush round, from its first "
                                                 "socket write to its last (what the last client waits)"))
        fams.append(m.counter("cti_ws_writer_wakes_total", "Connections handed to their writer task (socket backed "
                                                          "up, closing or dropped)", service.writer_wakes))
        fams.append(m.counter("cti_ws_events_total", "Events published to WebSocket streams", hub.published))
        fams.append(m.counter("cti_ws_deliveries_total", "Event copies queued to connections", hub.delivered))
        fams.append(m.counter("cti_ws_slow_drops_total", "Connections dropped for a full send queue",
                              hub.dropped_slow))
        fams.append(m.counter("cti_ws_resyncs_total", "Reconnections told to resync", hub.resyncs))
        queued, deepest = hub.queue_depths()
        fams.append(m.gauge("cti_ws_queued_messages", "Messages waiting in WebSocket send queues", queued))
        fams.append(m.gauge("cti_ws_queue_depth_max", "The deepest WebSocket send queue", deepest))
        fams.append(m.gauge("cti_ws_replay_events", "Events kept in the streams' replay rings for resume (each "
                                                    "ring at most cti_ws_replay_max)", hub.replay_events))
        fams.append(m.gauge("cti_ws_replay_bytes", "The encoded size of the events kept for resume",
                            hub.replay_bytes))
        fams.append(m.gauge("cti_ws_replay_max", "Events a stream keeps for resume (ws_replay_max)",
                            hub.replay_max))
        fams.append(m.gauge("cti_ws_replay_max_age_seconds", "The oldest event a stream keeps for resume, in "
                                                            "seconds (ws_replay_max_age_s; 0: no age bound)",
                            hub.replay_max_age))
    from recording.recorder import RECORDING  # optional: recording may not be mounted

    if RECORDING in app:
        rec = app[RECORDING]
        fams.append(m.counter("cti_recordings_started_total", "Recordings started", rec.started))
        fams.append(m.counter("cti_recordings_start_failures_total", "Recording starts (and control commands) "
                              "Asterisk refused or did not answer", rec.failures))
        fams.append(m.counter("cti_recording_rows_deferred_total", "Recording rows the database did not take at "
                              "the start: left to the store writer, which retries them", rec.deferred))
        fams.append(m.gauge("cti_recording_rows_pending", "Recording rows waiting in the store writer's buffer "
                            "(part of cti_store_buffered_rows)", rec.rows_pending()))
    from api.desktop_state import DESKTOP  # optional: the desktop may not be mounted

    if DESKTOP in app:
        desk = app[DESKTOP]
        fams.append(m.counter("cti_screenpops_sent_total", "Screen-pop messages published", desk.pops_sent))
        fams.append(m.counter("cti_screenpops_dropped_total", "Screen-pops dropped: too many waiting for "
                              "their look-up", desk.pops_dropped))
        fams.append(m.counter("cti_screenpop_lookups_late_total", "Customer look-ups that timed out",
                              desk.lookups_late))
    limits = core.http_limits
    if limits is not None:
        fams.append(m.gauge("cti_http_connections", "Open HTTP connections (WebSockets included)", limits.cap.count))
        fams.append(m.counter("cti_http_connections_refused_total", "Connections answered 503 at once: over the "
                              "per-address or the total cap", sum(limits.cap.refused.values())))
        fams.append(m.counter("cti_http_heads_timed_out_total", "Connections closed because a request head did not "
                              "arrive within the head deadline", limits.heads_timed_out))
    ha = app.get(HA)
    if ha is not None:
        h = ha.health()
        fams.append(m.gauge("cti_leader", "1 while this node leads its HA cluster, 0 on a standby (docs/ha.md)",
                            int(h["role"] == "leader")))
        fams.append(m.counter("cti_ha_takeovers_total", "Times this node took over the leadership", h["takeovers"]))
        if h["epoch"] is not None:
            fams.append(m.gauge("cti_ha_epoch", "The epoch this node leads (or led) with", h["epoch"]))
        if h["leaderless_s"] is not None:
            fams.append(m.gauge("cti_ha_leaderless_seconds", "Seconds the cluster has had no leader (at least), as this "
                                "node sees it (the lease row's age past ha_renew_within; 0 while it leads)",
                                h["leaderless_s"]))
        if h["heartbeat_age_s"] is not None:
            fams.append(m.gauge("cti_ha_lease_age_seconds", "Seconds since this node saw the lease row renewed "
                                "(a standby takes over past ha_ttl)", h["heartbeat_age_s"]))
    # Leaks show here first (the soak run samples it: docs/architecture.md, "Load and soak").
    fams.append(m.gauge("cti_asyncio_tasks", "asyncio tasks alive in the daemon's loop", len(asyncio.all_tasks())))
    return fams


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


async def metrics_view(request: web.Request) -> web.Response:
    app = request.app
    access = app[CORE].settings.metrics_access
    try:
        if access == "loopback" and not _loopback(request):
            raise ApiError(403, "forbidden", "metrics answer loopback clients only (metrics_access=loopback)")
        if access == "auth":
            decision = admits(await principal_of(app, request.headers), STAFF)
            if decision == "unauthenticated":
                raise unauthenticated()
            if decision == "forbidden":
                raise forbidden(STAFF)
    except ApiError as exc:
        return exc.response()
    return web.Response(body=m.render(app[REGISTRY]), headers={"Content-Type": m.CONTENT_TYPE})


def setup_metrics(app: web.Application) -> None:
    """``/metrics`` and the event-lag histogram (a bus subscriber). After ``setup_auth``."""
    lag = app[LAG] = m.LagHistogram()
    app[REGISTRY] = m.registry(m.FamiliesCollector(lambda: collect(app, time.time())))

    def observe(ev: CallEvent) -> None:
        # acd.* annotations are stamped by the daemon, not by Asterisk: not AMI lag.
        if ev.kind.startswith("call."):
            lag.observe(time.time() - ev.at)

    async def ctx(app: web.Application) -> Any:
        unsubscribe = app[CORE].bus.subscribe(observe)
        try:
            yield
        finally:
            unsubscribe()

    app.cleanup_ctx.append(ctx)
    app.router.add_get("/metrics", metrics_view)
    app[API].document("GET", "/metrics", summary="Prometheus metrics (access: metrics_access setting)",
                      roles=None, operation_id="metrics", content_type=m.CONTENT_TYPE, tags=("meta",),
                      description="loopback clients only by default; 'auth' needs a supervisor or admin "
                                  "credential; 'open' serves anyone.")
