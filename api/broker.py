"""The broker's shell (docs/broker.md): bus events to a NATS JetStream stream, and back.

``BrokerPublisher`` subscribes to the bus like the WebSocket hub does and turns
each call event (ACD decisions included) and each agent state change into the
hub's message body (``api.hub``), then an ``api.broker_core.Envelope`` held in
an ``Outbox``. One task publishes the outbox in order, one message at a time,
waiting for JetStream's acknowledgement before the next (so the stream holds the
bus's order even across a retry; ``Nats-Msg-Id`` makes a retried message stored
once). The bus never waits: the subscriber only encodes and appends.

``BrokerFeed`` reads the stream from a given sequence with an ordered consumer
(JetStream's own way to replay a stream in order: it re-creates itself from the
last sequence it delivered after a gap or a reconnect) and hands back
``Delivered`` messages checked by a ``Follower``.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
from collections import deque
from typing import Any, Awaitable, Callable, Container, Iterable

import nats
from aiohttp import web
from nats.errors import Error as NatsError
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from acd.events import AgentStateChanged
from acd.routing_shell import ACD
from api.acd_routes import acd_state
from api.broker_core import (
    H_ID,
    Delivered,
    Follower,
    Outbox,
    Verdict,
    agent_subject,
    board_stream,
    board_subject,
    call_subject,
    chained,
    decode,
    encode,
    push_subject,
    stream_subjects,
)
from api.hub import CallAudience, agent_update, call_message
from api.node_reads import ACD_AT_KEY, ACD_KEY
from api.observe import BROKER_STATS
from api.wallboard_service import WALLBOARD
from api.ws import STREAM_STATE, WS, _snapshot
from cti.daemon import CORE
from cti.events import Bus, CallEvent
from cti.ha import HaNode, run_while_leading

log = logging.getLogger("cti.broker")

RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
PUBLISH_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
DUPLICATE_WINDOW_S = 120.0

ENDED_KEPT = 1_000       # calls' ends a standby keeps for a takeover
BOARD_MAX = 900_000      # a board's bytes at most with the routing picture (NATS' max_payload: 1 MiB)

Connect = Callable[..., Awaitable[Any]]


def missed_ends(ended: Iterable[CallEvent], live: Container[str]) -> list[CallEvent]:
    """The calls' ends (``call.ended`` events of this node's model, oldest first) for calls the
    stream still shows as live (``live``): the old leader never published them. Pure."""
    return [ev for ev in ended if ev.call_id in live]


class BrokerPublisher:
    """Every bus event of interest, in bus order, to the stream ``stream``."""

    def __init__(self, bus: Bus, url: str, *, cluster: str, stream: str = "CTI", buffer_max: int = 10_000,
                 connect: Connect = nats.connect, window: int = 64, max_age_s: float = 86_400.0,
                 max_bytes: int = 1 << 30) -> None:
        self.bus = bus
        self._url = url
        self.cluster = cluster
        self.stream = stream
        self.outbox = Outbox(buffer_max)
        self.window = window            # publishes awaiting their acknowledgement at once
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._last_id: str | None = None    # the last message stored, in this run: the next one's predecessor
        self._board: bytes | None = None    # the latest wallboard not yet sent (a newer one replaces it)
        self.boards = 0
        self.board_failures = 0
        self.pictures_dropped = 0       # boards published without the routing picture (too big)
        self.origin = secrets.token_hex(6)      # this run; with bus_seq, each message's id
        self.bus_seq = 0
        self.audience = CallAudience()
        self.connected = False
        self.failures = 0
        self.last_stream_seq = 0
        self._connect = connect
        self._nc: Any = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        # An HA pair: whether this node's lease still holds (``setup_broker``). A deposed
        # leader (paused, then resumed) neither takes new events nor publishes what it held:
        # the new leader publishes the stream from the takeover on (docs/ha.md).
        self.may_publish: Callable[[], bool] = lambda: True
        self.fenced = 0
        self.ended_while_standby: deque[CallEvent] = deque(maxlen=ENDED_KEPT)

    # -- bus subscribers: encode and append, never wait ---------------------

    def note_ended(self, ev: CallEvent) -> None:
        """While not publishing (an HA standby): keep the last calls' ends this node's model
        saw, for a takeover (``missed_ends``)."""
        if self._task is None and ev.kind == "call.ended":
            self.ended_while_standby.append(ev)

    def on_call_event(self, ev: CallEvent) -> None:
        agents = self.audience.feed(ev.kind, ev.call_id, ev.data)
        body = call_message(ev.kind, ev.call_id, ev.seq, ev.at, ev.call, ev.data)
        self._offer(call_subject(self.cluster, ev.kind), body, agents)

    def agent_changed(self, ev: AgentStateChanged) -> None:
        message = agent_update(_snapshot(ev.view), None if ev.previous is None else _snapshot(ev.previous))
        if message is not None:
            self._offer(agent_subject(self.cluster, ev.agent_id), message, frozenset({ev.agent_id}))

    def on_push(self, body: dict[str, Any], agents: frozenset[str]) -> None:
        """A message another feature pushes to desktops (``HubService.push``: a screen-pop,
        an emergency banner): in the stream, numbered like the events around it."""
        kind = body.get("type")
        if isinstance(kind, str) and kind:
            self._offer(push_subject(self.cluster, kind), body, agents)

    def offer_board(self, board: dict[str, Any]) -> None:
        """The wallboard the leader just built, for every API node's supervisors. Only the
        latest is kept (a board is a snapshot): sent before the next events, never queued."""
        try:
            data = json.dumps(board, separators=(",", ":"), default=str, allow_nan=False).encode()
            if len(data) > BOARD_MAX and ACD_KEY in board:
                # Past the broker's message size: the board alone (the nodes forward the
                # routing picture's reads to the leader meanwhile).
                self.pictures_dropped += 1
                if self.pictures_dropped == 1:
                    log.warning("broker: the routing picture makes the board %d bytes; published without it",
                                len(data))
                data = json.dumps({k: v for k, v in board.items() if k not in (ACD_KEY, ACD_AT_KEY)}, separators=(",", ":"),
                                  default=str, allow_nan=False).encode()
        except ValueError:
            log.exception("broker: wallboard not encodable, skipped")
            return
        self._board = data
        self._wake.set()

    def _offer(self, subject: str, body: dict[str, Any], agents: frozenset[str]) -> None:
        if not self.may_publish():
            self.fenced += 1
            return
        self.bus_seq += 1
        try:
            env = encode(subject, body, agents, self.origin, self.bus_seq)
        except ValueError:
            log.exception("broker: event not encodable, dropped")
            self.outbox.dropped += 1
            return
        if self.outbox.offer(env):
            self._wake.set()

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        self._unsubscribe = [self.bus.subscribe(self.on_call_event),
                             self.bus.subscribe_to(AgentStateChanged, self.agent_changed)]
        self._task = asyncio.create_task(self._run(), name="broker-publish")

    async def stop(self, drain_s: float = 2.0) -> None:
        """Stop taking events; give what is held ``drain_s`` to reach the broker; close."""
        for u in self._unsubscribe:
            u()
        self._unsubscribe = []
        if self._task is not None:
            if len(self.outbox) and self.connected:
                loop = asyncio.get_running_loop()
                until = loop.time() + drain_s
                while len(self.outbox) and self.connected and loop.time() < until and self.may_publish():
                    await asyncio.sleep(0.02)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:   # closing a connection that is already gone
                pass
            self._nc = None
        self.connected = False

    # -- the publishing loop ------------------------------------------------

    async def _open(self) -> Any:
        # The client retries the first connection too, for ever (max_reconnect_attempts=-1),
        # and reconnects by itself; its errors are counted here and logged once per outage.
        nc = await self._connect(self._url, connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=True,
                                 max_reconnect_attempts=-1, reconnect_time_wait=RETRY_MIN_S,
                                 name=f"cti-publisher-{self.origin}", error_cb=self._client_error,
                                 disconnected_cb=self._client_disconnected,
                                 reconnected_cb=self._client_reconnected)
        js = nc.jetstream()
        try:
            await ensure_stream(js, self.stream, self.cluster, max_age_s=self.max_age_s, max_bytes=self.max_bytes)
            await ensure_board(js, board_stream(self.stream), self.cluster)
        except BaseException:
            await _close_quietly(nc)
            raise
        self._nc = nc
        return js

    async def _client_error(self, exc: Exception) -> None:
        self.failures += 1
        if self.connected or self.failures == 1:
            log.warning("broker: %s: %s; holding events", type(exc).__name__, exc)
        self.connected = False

    async def _client_disconnected(self) -> None:
        self.connected = False

    async def _client_reconnected(self) -> None:
        self.connected = True
        self._wake.set()

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        js = None
        while True:
            try:
                if js is None:
                    js = await self._open()
                    self.connected = True
                    delay = RETRY_MIN_S
                    log.info("broker: connected, stream %s", self.stream)
                if self._board is not None:
                    await self._publish_board(js)
                batch = self.outbox.window(self.window)
                if batch and not self.may_publish():
                    self.fenced += self.outbox.discard()
                    log.warning("broker: this node no longer leads; held events dropped")
                    batch = []
                if not batch:
                    self._wake.clear()
                    if self._board is None:
                        await self._wake.wait()
                    continue
                await self._publish_window(js, batch)
                self.connected = True
                delay = RETRY_MIN_S
            except asyncio.CancelledError:
                raise
            except (NatsError, OSError, asyncio.TimeoutError) as exc:
                self._last_id = None        # the next round's first message claims no predecessor
                self.failures += 1
                if self.connected:
                    log.warning("broker: cannot publish (%s: %s); holding events", type(exc).__name__, exc)
                self.connected = False
                if self._nc is not None and self._nc.is_closed:
                    js, self._nc = None, None       # closed for good: connect anew
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
            except Exception:
                self.failures += 1
                log.exception("broker: publishing failed")
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def _publish_board(self, js: Any) -> None:
        """The latest board; one that fails is let go (the next replaces it) and never holds
        up the events; the board stream is made again if it went missing."""
        board, self._board = self._board, None
        try:
            await js.publish(board_subject(self.cluster), board, timeout=PUBLISH_TIMEOUT_S,
                             stream=board_stream(self.stream))
            self.boards += 1
        except (NatsError, OSError, asyncio.TimeoutError) as exc:
            self.board_failures += 1
            if self.board_failures == 1 or self.connected:
                log.warning("broker: a wallboard not published (%s); the next replaces it", type(exc).__name__)
            try:
                await ensure_board(js, board_stream(self.stream), self.cluster)
            except (NatsError, OSError, asyncio.TimeoutError):
                pass

    async def _publish_window(self, js: Any, batch: list[Any]) -> None:
        """Publish ``batch`` (the outbox's head, in order) with all acknowledgements awaited
        at once; each message names its predecessor (``chained``), so none can be stored
        before it. The messages acknowledged in order leave the outbox; at the first
        failure the rest stay, and the exception goes to the caller (retry from there)."""
        tasks = []
        previous = self._last_id
        for env in batch:
            tasks.append(asyncio.ensure_future(js.publish(env.subject, env.payload, timeout=PUBLISH_TIMEOUT_S,
                                                          stream=self.stream, headers=chained(env, previous))))
            previous = env.headers[H_ID]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for env, res in zip(batch, results):
            if isinstance(res, BaseException):
                raise res
            self.outbox.done()
            self.last_stream_seq = res.seq
            self._last_id = env.headers[H_ID]

    def stats(self) -> dict[str, int]:
        return {"connected": int(self.connected), "buffered": len(self.outbox), "capacity": self.outbox.limit,
                "published": self.outbox.published, "dropped": self.outbox.dropped, "failures": self.failures,
                "last_stream_seq": self.last_stream_seq, "boards": self.boards, "fenced": self.fenced,
                "pictures_dropped": self.pictures_dropped}


async def _close_quietly(nc: Any) -> None:
    try:
        await nc.close()
    except Exception:
        pass


async def ensure_stream(js: Any, stream: str, cluster: str, *, max_age_s: float = 86_400.0,
                        max_bytes: int = 1 << 30) -> Any:
    """The stream exists and stores the cluster's subjects (made on first use: file storage,
    limits retention, the oldest messages discarded past ``max_age_s`` or ``max_bytes``
    (0: no such limit), ``Nats-Msg-Id`` de-duplication over ``DUPLICATE_WINDOW_S``).
    An existing stream gets the cluster's subjects and these limits. Returns its info."""
    age = max_age_s if max_age_s > 0 else None
    size = max_bytes if max_bytes > 0 else -1
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(js_api.StreamConfig(name=stream, subjects=stream_subjects(cluster),
                                                storage=js_api.StorageType.FILE,
                                                duplicate_window=DUPLICATE_WINDOW_S,
                                                max_age=age, max_bytes=size,
                                                discard=js_api.DiscardPolicy.OLD))
        return await js.stream_info(stream)
    cfg = info.config
    wanted = stream_subjects(cluster)[0]
    changed = False
    if wanted not in (cfg.subjects or []):
        cfg.subjects = [*(cfg.subjects or []), wanted]
        changed = True
    if (cfg.max_age or 0) != (age or 0) or (cfg.max_bytes if cfg.max_bytes is not None else -1) != size:
        cfg.max_age, cfg.max_bytes = age, size
        changed = True
    if changed:
        await js.update_stream(cfg)
        info = await js.stream_info(stream)
    return info


async def ensure_board(js: Any, name: str, cluster: str) -> None:
    """The wallboard stream exists: the last board only (a board is a snapshot); on file, so
    that a broker restart does not take the stream away from the nodes reading it."""
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(js_api.StreamConfig(name=name, subjects=[board_subject(cluster)],
                                                storage=js_api.StorageType.FILE, max_msgs_per_subject=1,
                                                discard=js_api.DiscardPolicy.OLD))


class BrokerFeed:
    """The cluster's messages from stream sequence ``after + 1`` on, in order."""

    def __init__(self, nc: Any, *, cluster: str, stream: str = "CTI", after: int = 0,
                 subject: str | None = None) -> None:
        self.nc = nc
        self.cluster = cluster
        self.stream = stream
        self.subject = subject or stream_subjects(cluster)[0]
        self.follower = Follower(after)
        self._after = after
        self._sub: Any = None
        self.rejected = 0
        # The highest stream sequence the broker said it holds when it sent the last message
        # read (its sequence plus its pending count): a lower bound of the stream's end.
        self.stream_last = after

    async def open(self) -> None:
        js = self.nc.jetstream()
        if self._after > 0:
            config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                                           opt_start_seq=self._after + 1)
        else:
            config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.ALL)
        self._sub = await js.subscribe(self.subject, stream=self.stream, ordered_consumer=True, config=config)

    async def next(self, timeout: float) -> tuple[Delivered, Verdict]:
        """The next message and what the follower made of it (a duplicate is skipped).
        Raises ``asyncio.TimeoutError`` (nats' ``TimeoutError`` is one) when none comes."""
        while True:
            msg = await self._sub.next_msg(timeout=timeout)
            try:
                meta = msg.metadata
                self.stream_last = max(self.stream_last, meta.sequence.stream + max(0, meta.num_pending or 0))
                d = decode(msg.subject, msg.headers, msg.data, meta.sequence.stream)
            except ValueError as exc:
                self.rejected += 1
                log.warning("broker: skipped a message that is not ours: %s", exc)
                continue
            verdict = self.follower.feed(d)
            if verdict.kind != "duplicate":
                return d, verdict

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None


BROKER = web.AppKey("broker", BrokerPublisher)


def with_acd_state(app: web.Application, board: dict[str, Any]) -> dict[str, Any]:
    """The board as published: with the routing picture of the same instant (``acd_state``,
    what ``GET /api/acd/state`` answers), which API nodes serve (``api.node_reads``)."""
    acd = app.get(ACD)
    if acd is None:
        return board
    return {**board, ACD_KEY: acd_state(acd, board["at"]).model_dump(mode="json")}


# The routing picture goes with the boards made at most this often (seconds of the boards' time).
PICTURE_EVERY_S = 2.0


class Pictures:
    """The boards as published, with a routing picture made at most every ``every_s``
    (of the boards' ``at``): a board sooner after the last picture carries that one,
    with the time it was made (``acd_state_at``: the nodes age it from then), and
    ``owed`` is called so that another board follows once a new picture is due: no
    picture stays behind its agents' and callers' changes by more than ``every_s`` and
    a push. ``make(at)``: the picture at ``at`` (None: none, as without an ACD).
    Pure (time is the board's)."""

    def __init__(self, make: Callable[[float], dict[str, Any] | None], owed: Callable[[], None],
                 every_s: float = PICTURE_EVERY_S) -> None:
        self.make = make
        self.owed = owed
        self.every_s = every_s
        self.at: float | None = None
        self.picture: dict[str, Any] | None = None
        self.made = 0

    def __call__(self, board: dict[str, Any]) -> dict[str, Any]:
        at = board["at"]
        if self.at is None or not 0 <= at - self.at < self.every_s:
            self.picture, self.at = self.make(at), at
            self.made += 1
        if self.picture is None:
            return board
        if self.at == at:
            return {**board, ACD_KEY: self.picture}
        self.owed()
        return {**board, ACD_KEY: self.picture, ACD_AT_KEY: self.at}


def setup_broker(app: web.Application, url: str, *, cluster: str, stream: str, buffer_max: int,
                 window: int = 64, max_age_s: float = 86_400.0, max_bytes: int = 1 << 30,
                 ha: HaNode | None = None) -> BrokerPublisher:
    """Publish the app's bus to the broker while the app runs, with what the hub pushes to
    desktops and the wallboards the leader builds (after ``setup_ws`` and ``setup_wallboard``).
    In an HA pair (``ha``) only while this node leads: a standby reads the stream
    (``api.follow``); a new leader's publisher continues the same stream, subscribed to the
    bus before the ACD's first decision of its term (docs/ha.md, "Clients follow the leader")."""
    pub = app[BROKER] = BrokerPublisher(app[CORE].bus, url, cluster=cluster, stream=stream, buffer_max=buffer_max,
                                        window=window, max_age_s=max_age_s, max_bytes=max_bytes)
    if WS in app:
        app[WS].push_listeners.append(pub.on_push)
    if WALLBOARD in app:
        wallboard = app[WALLBOARD]

        def picture(at: float) -> dict[str, Any] | None:
            acd = app.get(ACD)
            return None if acd is None else acd_state(acd, at).model_dump(mode="json")

        pictures = Pictures(picture, wallboard.mark_dirty)
        wallboard.listeners.append(lambda board: pub.offer_board(pictures(board)))
    app[BROKER_STATS] = pub.stats
    # On /healthz for operators; a broker away does not make the daemon unhealthy (it holds events).
    app[CORE].health_parts["broker"] = pub.stats

    if ha is not None:
        async def lead(epoch: int) -> None:
            # Who each live call concerns, as the stream told it (api.follow reads it): the
            # events of calls the old leader published (an adopted call's end) reach their
            # agents as they would have under it. Then the ends this node's model saw that the
            # stream never told (the old leader died first): first in the new term.
            source = app.get(STREAM_STATE)
            state = source() if source is not None else None
            if state is not None:
                pub.audience = copy.deepcopy(state.audience)
            await pub.start()
            if state is not None:
                missed = missed_ends(pub.ended_while_standby, state.live)
                for ev in missed:
                    pub.on_call_event(ev)
                if missed:
                    log.warning("broker: %d call ends the old leader did not publish, published", len(missed))
            pub.ended_while_standby.clear()

        async def watch(app: web.Application) -> Any:
            off = app[CORE].bus.subscribe(pub.note_ended)
            try:
                yield
            finally:
                off()

        app.cleanup_ctx.append(watch)

        pub.may_publish = lambda: ha.lease is not None and ha.lease.leading()
        run_while_leading(app, ha, lead, pub.stop, first=True)
        return pub

    async def ctx(app: web.Application) -> Any:
        await pub.start()
        try:
            yield
        finally:
            await pub.stop()

    app.cleanup_ctx.append(ctx)
    return pub
