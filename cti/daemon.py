"""The daemon: one process, one event loop; the aiohttp app owns every long-lived task.

Start order (``cleanup_ctx``, stopped in reverse): database (embedded server
when no URL is set; migrations; the pool every feature shares), the batching writer, the call model and its
bus, the AMI client (its connect hook resyncs the model and closes in the
database the calls that ended while we were away).

Several Asterisk nodes (``ami_nodes``, docs/scale-out.md): one AMI client per node,
each with its own resync; frames are fed with their node, ids qualified
(``cti.nodes``); a node lost longer than ``ami_node_dead_after`` is dead (its calls
end by estimate, ``NodeDead`` on the bus for the features), and is adopted again by
its resync when it returns. ``Core.ami`` is the first node's client: the features
act there unless they ask for a call's node (``Core.ami_for``).

The thin loop is: AMI frame -> ``CallModel.feed`` -> domain events -> bus ->
subscribers: the writer and the log here, then those of the features ``server.root``
mounts on this app (the ACD, recording, the wallboard, the event-lag metric, the
WebSocket hub, the desktop, webhooks; docs/architecture.md lists them in order).
The few other AMI events features act on follow on the same bus, typed
(``cti.ami_inputs``): no feature listens to AMI frames itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import asyncpg
import structlog
from aiohttp import web

from cti import ami_inputs
from cti.ami import AmiClient
from cti.call_db import CallRow, close_calls, open_calls
from cti.calls import CallModel
from cti.config import Settings
from cti.events import Bus, CallEvent, CallStateChanged
from cti.migrate import migrate
from cti.nodes import NodeBack, NodeChange, NodeDead, NodeWatch, node_of_id, node_specs, qualified, qualify
from cti.pg import FeaturePool, close_pool, feature_limits, open_pool
from cti.version import version
from cti.writer import Writer

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Core:
    """What the daemon's parts share; one per process (``app[CORE]``)."""

    settings: Settings
    model: CallModel = field(default_factory=CallModel)
    bus: Bus = field(default_factory=Bus)
    dsn: str | None = None
    writer: Writer | None = None
    # The one pool every feature queries through (cti.pg.open_pool); the writer and
    # the leadership lease keep connections of their own (docs/architecture.md).
    pool: asyncpg.Pool | None = None
    # Each feature's share of it (``db``), made on first use.
    shares: dict[str, FeaturePool] = field(default_factory=dict)
    ami: AmiClient | None = None          # the first (primary) node's client
    # Every node's client by name (one: {ami_node_name: ami}); several: docs/scale-out.md.
    nodes: dict[str, AmiClient] = field(default_factory=dict)
    multi: bool = False                   # several nodes: ids qualified, deaths watched
    watch: NodeWatch | None = None
    watch_timer: asyncio.TimerHandle | None = None
    systemnames: dict[str, str] = field(default_factory=dict)   # each node's, as it said
    embedded: Any = None
    reconcile_task: asyncio.Task[None] | None = None      # the last one started
    reconcile_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)   # per node
    frames_in: int = 0
    model_errors: int = 0
    db_reconciled: int = 0
    http_limits: Any = None          # cti.httpserver.Limits of the HTTP listener (its counters)
    # async fn(CoreShowChannel items) run after every resync, in the connect hook
    resync_hooks: list[Callable[[list[Any]], Awaitable[None]]] = field(default_factory=list)
    # async fn(node name, its AmiClient, its CoreShowChannel items, ids qualified) run after
    # every resync of a node other than the primary (the ACD adopts its callers, the
    # phones list its contacts)
    node_hooks: list[Callable[[str, AmiClient, list[Any]], Awaitable[None]]] = field(default_factory=list)
    # /healthz sections a feature adds (the ACD's "acd"), set by the composition root
    health_parts: dict[str, Callable[[], Any]] = field(default_factory=dict)
    # Whether this process writes the calls' timelines (``call_events``): always, except
    # on an HA standby (cti.ha), which upserts the call rows only (docs/ha.md).
    timeline: bool = True
    # Ends the process with an exit status (set by ``serve``; cti.ha after a step-down).
    shutdown: Callable[[int], None] | None = None
    exit_code: int = 0

    def ami_for(self, call_id: str) -> AmiClient | None:
        """The AMI client of the node a call is on (its origin's), else the primary's."""
        node = self.model.node_of(call_id) if self.multi else None
        if node is None and self.multi:
            node = node_of_id(call_id, self.nodes)
        return self.nodes.get(node, self.ami) if node is not None else self.ami

    def ami_node_of(self, call_id: str) -> str | None:
        """The node name of a call (several nodes), else None."""
        if not self.multi:
            return None
        return self.model.node_of(call_id) or node_of_id(call_id, self.nodes)

    def primary_id(self, uid: str) -> str:
        """An id we choose for a channel originated on the primary node (``ChannelId``),
        as its events will carry it: with several nodes, prefixed with the primary's name."""
        return qualified(next(iter(self.nodes)), uid) if self.multi and self.nodes else uid

    def model_node(self, name: str) -> str | None:
        """The node name the model is fed with: None with one node (ids as Asterisk gives them)."""
        return name if self.multi else None

    def annotate(self, call_id: str, kind: str, at: float, /, **data: Any) -> CallEvent | None:
        """The one way a feature puts an event on a live call's timeline (the ACD's
        decisions, a recording started, an IVR step): numbered in the call's sequence
        by the model and published on the bus together, so no other event of the call
        can come between (delivered in turn after the current one when the bus is
        delivering). Returns the event, or None (nothing published) if the call is gone."""
        ev = self.model.annotate(call_id, kind, at, **data)
        if ev is not None:
            self.bus.publish(ev)
        return ev

    def db(self, feature: str) -> FeaturePool | None:
        """``feature``'s share of the pool (one of ``cti.pg.FEATURE_MAX``'s names): the
        pool's methods, with at most ``db_feature_max`` of its connections held at once;
        None while there is no pool."""
        if self.pool is None:
            return None
        share = self.shares.get(feature)
        if share is None or share.pool is not self.pool:
            limit = feature_limits(self.settings.db_feature_max)[feature]
            share = self.shares[feature] = FeaturePool(feature, self.pool, limit)
        return share


CORE = web.AppKey("core", Core)


class CoreServices(Protocol):
    """What a feature may use of the core (``Core`` is the one implementation; unit
    tests pass smaller ones). ``pool``, ``writer`` and ``ami`` are set once the
    core has started (``cleanup_ctx``), before any feature starts."""

    settings: Settings
    model: CallModel
    bus: Bus
    pool: asyncpg.Pool | None
    writer: Writer | None
    ami: AmiClient | None
    resync_hooks: list[Callable[[list[Any]], Awaitable[None]]]
    # Several Asterisk nodes (docs/scale-out.md); features read them with getattr, so the
    # smaller stand-ins of unit tests need not have them.
    nodes: dict[str, AmiClient]
    node_hooks: list[Callable[[str, AmiClient, list[Any]], Awaitable[None]]]

    def annotate(self, call_id: str, kind: str, at: float, /, **data: Any) -> CallEvent | None: ...

    def db(self, feature: str) -> FeaturePool | None: ...

    def ami_for(self, call_id: str) -> AmiClient | None: ...

    def ami_node_of(self, call_id: str) -> str | None: ...


# -- wiring: frames in, events out ---------------------------------------------

def on_frame(core: Core, frame: Any, node: str | None = None) -> None:
    """AMI listener: feed the model, publish what it says, then the frame's typed
    input for features if it is one (``cti.ami_inputs``). ``node``: the node it came
    from, with several (its ids are qualified first). Never raises."""
    core.frames_in += 1
    headers = frame.headers if node is None else qualify(node, frame.headers)
    try:
        events = core.model.feed(headers, time.time(), node)
    except Exception:
        core.model_errors += 1
        log.exception("call model rejected an event", event=headers.get("Event"))
    else:
        # All at once: a subscriber's reaction to the first queues behind the last (seq order).
        core.bus.publish(*events)
    # After the call events and their effects: a feature acting on it finds the call as
    # this frame left it (e.g. a callback leg's Hangup, after the call's agent_left).
    try:
        typed = ami_inputs.parse(headers)
    except Exception:
        log.exception("AMI input not understood", event=headers.get("Event"))
        return
    if typed is not None:
        if node is not None and hasattr(typed, "node"):
            typed = replace(typed, node=node)
        core.bus.publish(typed)


# The call events logged at info: a call's start and its end (with what the call came to);
# every other event at debug. The whole timeline is in PostgreSQL (call_events) and on the
# WebSocket; a line per event at info cost the leader a tenth of its CPU under load
# (BENCHMARKS.md, "Where the leader's CPU goes").
INFO_KINDS = frozenset({"call.started", "call.ended"})


def log_fields(ev: CallEvent) -> dict[str, Any]:
    """The fields of ``ev``'s log line (pure): its own that are set, the call's state, and
    for its end what the call came to (queue, agent, answered, abandoned, seconds)."""
    out: dict[str, Any] = {"state": ev.call.state, **{k: v for k, v in ev.data.items() if v is not None}}
    if ev.kind == "call.ended":
        c = ev.call
        out.update({k: v for k, v in (("direction", c.direction), ("queue", c.queue), ("agent", c.agent),
                                       ("answered", c.answered_at is not None), ("abandoned", c.abandoned or None))
                    if v is not None})
        if c.ended_at is not None:
            out["duration_s"] = round(c.ended_at - c.started_at, 1)
        if c.queue_joined_at is not None and c.queue_left_at is not None:
            out["waited_s"] = round(c.queue_left_at - c.queue_joined_at, 1)
    return out


def log_subscriber(ev: CallEvent) -> None:
    """A line per event, named by its kind: at info for a call's start and end, at debug
    for the rest; state changes are left out (the state is on every line)."""
    if isinstance(ev, CallStateChanged):
        return
    if ev.kind in INFO_KINDS:
        log.info(ev.kind, **log_fields(ev))
    elif logging.getLogger().isEnabledFor(logging.DEBUG):   # cti.logs.configure sets both levels
        log.debug(ev.kind, **log_fields(ev))


# -- resync --------------------------------------------------------------------

async def resync(core: Core, name: str | None = None) -> None:
    """On every (re)connect of node ``name`` (None: the primary): rebuild its part of
    the model from its Asterisk, then the database."""
    ami = core.nodes.get(name) if name is not None else core.ami
    ami = ami if ami is not None else core.ami
    assert ami is not None
    node = core.model_node(name) if name is not None else None
    now = time.time()
    channels = await ami.send("CoreShowChannels", shape="list", timeout=30)
    queues = await ami.send("QueueStatus", shape="list", timeout=30)
    items = [qualify(node, f.headers) for f in channels.events if f.headers.get("Event") == "CoreShowChannel"]
    entries = [qualify(node, f.headers) for f in queues.events if f.headers.get("Event") == "QueueEntry"]
    # Calls that vanished while we were away ended at the latest when we lost
    # Asterisk (a restart kills them then); the model marks them estimated.
    lost_at = ami.health.lost_at
    ended_at = lost_at if lost_at is not None and lost_at <= now else now
    events = core.model.resync(items, entries, ended_at, node)
    core.bus.publish(*events)
    log.info("resynced", node=name, channels=len(items), queue_entries=len(entries), calls=len(core.model.calls),
             changes=len(events))
    if core.watch is not None and name is not None:
        await _check_systemname(core, ami, name)
        _node_changes(core, core.watch.connected(name, time.time()))
    if ami is not core.ami:
        # The features act on the primary node: their hooks read its listing. Only
        # this node's calls may be closed in the database.
        for node_hook in list(core.node_hooks):
            try:
                async with asyncio.timeout(30):
                    await node_hook(name, ami, items)
            except Exception:
                log.exception("node resync hook failed", node=name)
        _start_reconcile(core, node, ended_at)
        return
    # Features rebuild what they hold from the same listing (the ACD adopts waiting callers).
    for hook in list(core.resync_hooks):
        try:
            async with asyncio.timeout(30):
                await hook(items)
        except Exception:
            log.exception("resync hook failed", hook=getattr(hook, "__qualname__", repr(hook)))
    _start_reconcile(core, node, ended_at)


async def _check_systemname(core: Core, ami: AmiClient, name: str) -> None:
    """Several nodes: each Asterisk should have ``systemname = <node name>``, so that its
    own ids (seen by the IVR's FastAGI, the dialplan hooks, its CDRs and recordings) are
    the ones the model uses. The daemon prefixes ids itself either way; a mismatch is
    logged and shown in /healthz (``nodes.<name>.systemname``)."""
    try:
        reply = await ami.send("Getvar", {"Variable": "SYSTEMNAME"}, shape="single", timeout=5)
        found = reply.response.headers.get("Value") or ""
    except Exception:
        return
    core.systemnames[name] = found
    if found != name:
        log.warning("asterisk node's systemname is not its name: set systemname in its asterisk.conf",
                    node=name, systemname=found or None)


def _start_reconcile(core: Core, node: str | None, ended_at: float) -> None:
    if core.writer is None or core.pool is None:
        return                  # no database (a shell test): nothing to reconcile
    key = node or ""
    task = core.reconcile_tasks.pop(key, None)
    if task is not None:
        task.cancel()
    live = set(core.model.calls)
    task = asyncio.create_task(reconcile_db(core, live, ended_at, node))
    core.reconcile_tasks[key] = task
    core.reconcile_task = task


def _node_changes(core: Core, changes: list[NodeChange]) -> None:
    """A node dead (its calls end by estimate; the features are told) or back."""
    for change in changes:
        if isinstance(change, NodeDead):
            events = core.model.node_down(change.node, change.since)
            log.error("asterisk node dead: its calls closed by estimate", node=change.node,
                      lost_at=change.since, calls_closed=sum(1 for e in events if e.kind == "call.ended"))
            core.bus.publish(*events)
            core.bus.publish(change)
        elif isinstance(change, NodeBack):
            log.warning("asterisk node back", node=change.node)
            core.bus.publish(change)
    _arm_watch(core)


def _arm_watch(core: Core) -> None:
    """Wake when the next node away is due to be declared dead (the watch's deadline)."""
    if core.watch_timer is not None:
        core.watch_timer.cancel()
        core.watch_timer = None
    watch = core.watch
    due = watch.next_deadline() if watch is not None else None
    if due is None:
        return
    loop = asyncio.get_running_loop()
    core.watch_timer = loop.call_later(max(0.0, due - time.time()) + 0.01,
                                       lambda: _node_changes(core, watch.tick(time.time())))


async def reconcile_db(core: Core, live: set[str], ended_at: float, node: str | None = None) -> None:
    """Close in the database the calls it holds open that Asterisk no longer has
    (with several nodes, only ``node``'s: the others answer for their own).

    Covers a daemon restart (the model starts empty) as well as a reconnect.
    Retries while the database is away; every wait bounded.
    """
    assert core.writer is not None and core.pool is not None
    delay = 0.5
    when = datetime.fromtimestamp(ended_at, timezone.utc)
    while True:
        try:
            # Rows still waiting in the writer must land first, or we would
            # read a call as open that the writer is about to close.
            if not await core.writer.drain(timeout=10):
                raise TimeoutError("the writer has not caught up")
            async with asyncio.timeout(30), core.pool.acquire(timeout=10) as conn:
                stale = [c for c in await open_calls(conn) if c not in live
                         and (node is None or node_of_id(c, core.nodes) == node)]
                closed = await close_calls(conn, stale, when, "ended while the daemon was disconnected")
            core.db_reconciled += len(closed)
            if closed:
                log.warning("closed calls that ended while away", count=len(closed))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("database reconcile postponed", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


# -- lifecycle -----------------------------------------------------------------

async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE]
    s = core.settings
    if s.database_url is None:
        from cti import embedded_pg
        core.embedded = await embedded_pg.start_embedded(s)
        core.dsn = core.embedded.dsn
        log.info("embedded PostgreSQL started", data_dir=str(s.state_dir / "pg"))
    else:
        core.dsn = s.database_url.get_secret_value()
    applied = await migrate(core.dsn)
    if applied:
        log.info("migrations applied", versions=applied)
    core.pool = await open_pool(core.dsn)
    core.writer = Writer(core.dsn, buffer_max=s.db_buffer_max, batch_max=s.db_batch_max)
    await core.writer.start()
    writer = core.writer

    def store(ev: CallEvent) -> None:
        # A call row is an idempotent upsert (every node of a pair may write it);
        # the timeline only from the node that leads (docs/ha.md, "Who writes").
        if core.timeline:
            writer.on_call_event(ev)
        else:
            writer.submit(CallRow.from_view(ev.call))

    core.bus.subscribe(store)
    if s.log_level in ("debug", "info"):   # one line per call event: not even built when not written
        core.bus.subscribe(log_subscriber)
    try:
        yield
    finally:
        await core.writer.stop(flush_timeout=10)
        pool, core.pool = core.pool, None
        await close_pool(pool)
        if core.embedded is not None:
            await core.embedded.stop()


def _node_client(core: Core, spec: Any) -> AmiClient:
    """One node's AMI client: frames to the model with the node, resync on connect,
    the watch told when it is lost."""
    s = core.settings
    client = AmiClient(spec.host, spec.port, spec.user, spec.secret.get_secret_value(),
                       action_timeout=s.ami_action_timeout, ping_interval=s.ami_ping_interval,
                       reconnect_max=s.ami_reconnect_max)
    name = spec.name
    node = core.model_node(name)
    client.add_listener(lambda frame: on_frame(core, frame, node))

    async def on_connected() -> None:
        await resync(core, name)

    def on_lost(at: float) -> None:
        if core.watch is not None:
            core.watch.lost(name, at)
            _arm_watch(core)

    client.set_on_connected(on_connected)
    client.set_on_lost(on_lost)
    return client


async def ami_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE]
    s = core.settings
    specs = node_specs(s)
    core.multi = len(specs) > 1
    if core.multi:
        core.model.trunk_prefix = s.ami_trunk_prefix or None
        core.watch = NodeWatch([n.name for n in specs], s.ami_node_dead_after, time.time())
    core.nodes = {spec.name: _node_client(core, spec) for spec in specs}
    core.ami = core.nodes[specs[0].name]
    for client in core.nodes.values():
        await client.start()
    _arm_watch(core)
    try:
        yield
    finally:
        core.watch = None       # stopping loses every connection: no death follows
        if core.watch_timer is not None:
            core.watch_timer.cancel()
            core.watch_timer = None
        await asyncio.gather(*(c.stop() for c in core.nodes.values()))
        tasks = list(core.reconcile_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# async fn(request) -> whether the caller may see versions in /healthz (set by
# the API, which knows credentials); unset: nobody.
HEALTH_DETAIL = web.AppKey("health_detail", object)


def health(core: Core, *, versions: bool = False) -> dict[str, Any]:
    """The health document. ``versions``: include Asterisk's version and ours (for
    staff only: a version tells an attacker which flaws to try)."""
    ami = core.ami.health if core.ami is not None else None
    writer = core.writer.stats if core.writer is not None else None
    ami_view = _plain(ami)
    if isinstance(ami_view, dict) and not versions:
        ami_view.pop("asterisk_version", None)
    body: dict[str, Any] = {
        # The writer connects lazily: it is healthy unless its last attempt failed.
        "ok": bool(ami and ami.logged_in and writer and (writer.connected or writer.last_error is None)),
        "ami": ami_view,
        **({"nodes": node_health(core, versions)} if core.multi else {}),
        "database": _plain(writer),
        "model": {"calls": len(core.model.calls), "legs": len(core.model.legs),
                  "frames_in": core.frames_in, "errors": core.model_errors,
                  "ignored": core.model.ignored, "reconciled": core.db_reconciled},
        "bus": {"published": core.bus.published, "errors": core.bus.errors},
        **{name: part() for name, part in core.health_parts.items()},
    }
    if versions:
        body["version"] = version()
    return body


def node_health(core: Core, versions: bool) -> dict[str, Any]:
    """Each node's AMI health and state (``up``, ``down``, ``dead``, ``starting``); the
    document's ``ok`` is the primary's (a dead other node is reported, not fatal:
    the daemon serves the others)."""
    states = core.watch.states() if core.watch is not None else {}
    out: dict[str, Any] = {}
    for name, client in core.nodes.items():
        view = _plain(client.health)
        if isinstance(view, dict) and not versions:
            view.pop("asterisk_version", None)
        out[name] = {"state": states.get(name), "systemname": core.systemnames.get(name), "ami": view}
    return out


def _plain(record: Any) -> Any:
    if record is None:
        return None
    fields = getattr(record, "__dataclass_fields__", None)
    if fields is None:
        return str(record)
    return {name: getattr(record, name) for name in fields}


async def healthz(request: web.Request) -> web.Response:
    detail = request.app.get(HEALTH_DETAIL)
    body = health(request.app[CORE], versions=detail is not None and await detail(request))  # type: ignore[operator]
    return web.json_response(body, status=200 if body["ok"] else 503)


def run_with_app(app: web.Application, service: Any) -> None:
    """Start ``service`` (``await start()``) with the app and stop it (``await stop()``)
    when the app stops, as one of its cleanup contexts."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)


def build_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[CORE] = Core(settings)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(ami_ctx)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(settings: Settings, stop: asyncio.Event | None = None,
                build: Callable[[Settings], web.Application] = build_app) -> int:
    """Run the daemon built by ``build`` until ``stop`` is set (or the task is cancelled),
    or a part asks to end it (``Core.shutdown``). Returns the exit status asked for (0)."""
    from cti.httpserver import start_http
    app = build(settings)
    stop = stop if stop is not None else asyncio.Event()
    core = app[CORE]

    def shutdown(code: int) -> None:
        core.exit_code = code
        stop.set()

    core.shutdown = shutdown
    runner, _ = await start_http(app, settings)
    log.info("serving", http=f"http://{settings.http_host}:{settings.http_port}",
             ami=[f"{n.name}={n.host}:{n.port}" for n in node_specs(settings)])
    _notify("READY=1")       # systemd Type=notify: started once the listener serves (docs/deploy.md)
    try:
        await stop.wait()
    finally:
        _notify("STOPPING=1")
        await runner.cleanup()
    return core.exit_code


def _notify(message: str) -> None:
    from cti.sdnotify import notify

    try:
        notify(message)
    except OSError as exc:
        log.warning("systemd notification failed", message=message, error=str(exc))
