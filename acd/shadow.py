"""Shadow mode: a standby's ACD follows the leader's, and takes over from memory
(docs/ha.md, "Warm standby").

On a standby (``ha_cluster`` set, not leading) the same ``AcdService`` runs with
its router following (``Router(following=True)``, acd/follow.py): fed by the
standby's own call model (callers queueing, ringing, answered, abandoned,
finished), deciding no offer, and told the leader's decisions:

- from its own model at once: a caller of ours ringing a device is an offer of the
  leader's (the agent is the one whose device the channel belongs to);
- from PostgreSQL every ``ha_poll_every``: the leader's agent state log
  (``agent_states``: breaks, logouts, logins) and its timeline's decisions
  (``call_events``: ``acd.offer``, ``acd.withdrawn``, ``acd.escalated``, ``acd.maxwait``,
  ``acd.moved``, ``acd.dequeued``), from the latest seen, with an overlap for rows flushed late.

``may_act`` is false all along, so every decision the router takes is dropped
(no AMI action, no row, nothing on the bus); neither the heartbeat, the epoch
raise, announcements, callbacks nor adoption run. Only the router's timers run
(wrap-up ends, escalation steps: the router's own clock).

``take_over`` (the node starts leading, ``may_act`` true): one ``CoreShowChannels``
to reconcile (a call held here that Asterisk no longer has is dropped; a caller or
a talking agent Asterisk has and the shadow lacks is adopted the old way,
``Adoption.adopt``), then ``Router.lead``: the router decides from here on and its
first offers go out; then what a leader runs beside routing (heartbeat, callbacks,
saving, refusals; the heartbeat starts first). Agents keep their states, wrap-up
timers and places in the queue order from memory.

Mixed into ``AcdService`` (acd/routing_shell.py).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import structlog

from acd import callback_db
from acd import config as acd_config
from acd import core as acd_core
from acd import follow
from acd.callbacks import Callback
from acd.follow import agent_of_channel, reconcile_nodes
from acd.held_calls import Waiting
from acd.rows import AgentRow
from cti.errors import CtiError
from cti.nodes import qualify

if TYPE_CHECKING:
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

_STATES = """
SELECT agent_id, at, state, reason FROM agent_states WHERE at >= $1 ORDER BY at LIMIT 5000
"""
_VERSIONS = """
SELECT version, source, document::text AS document FROM acd_config_versions
WHERE version > $1 AND starts_with(source, 'api:') ORDER BY version DESC LIMIT 1
"""
_DECISIONS = """
SELECT call_id, seq, at, kind, data FROM call_events
WHERE at >= $1 AND kind IN ('acd.offer', 'acd.withdrawn', 'acd.escalated', 'acd.maxwait', 'acd.moved',
                            'acd.dequeued')
ORDER BY at, seq LIMIT 5000
"""
# Rows are read again this far back: the leader's writer flushes in batches, so a
# row may reach the database after one with a later time.
OVERLAP_S = 5.0
_READ_TIMEOUT_S = 2.0


@dataclass(kw_only=True)
class Shadow:
    """What the shadow keeps beside the service's state."""

    shadowing: bool = False
    followed: int = 0                   # observations fed to the router (from the database)
    latest_row_age_s: float | None = None   # at the last read: how old the newest row read was
    takeover: dict[str, Any] | None = None  # the last takeover's (or start's) figures (health)
    _seen: dict[tuple[Any, ...], float] = field(default_factory=dict)  # row key -> its time
    _cursor: float = 0.0
    _offer_ends: dict[str, float] = field(default_factory=dict)   # call -> when its last offer ended here
    _shadow_tasks: list[asyncio.Task[None]] = field(default_factory=list)

    if TYPE_CHECKING:  # what AcdService provides
        core: CoreServices
        router: acd_core.Router
        calls: dict[str, Waiting]
        config: Any
        devices: dict[str, str]
        adopted: int
        _tasks: list[asyncio.Task[None]]
        _inputs: list[Callable[[], None]]
        _pool: Any
        _stopped: bool
        _apply: Callable[[list[Any]], None]
        _wake: asyncio.Event
        _start_states: Callable[[float], Any]
        _run_timers: Callable[[], Any]
        _run_heartbeat: Callable[[], Any]
        _start_saving: Callable[[], None]
        _restore_callbacks: Callable[[], Any]
        _enter_callback: Callable[[Callback, float], None]
        retries: dict[str, Callback]
        _queues: dict[str, Any]
        config_version: int | None
        reconfigure: Callable[..., Any]
        legs: dict[str, str]
        _leg_ended: Callable[[str], None]
        _leg_originated: Callable[[str, bool, str], None]
        _adopt_now: Callable[..., Any]
        _nodes_to_adopt: Callable[[], list[tuple[str | None, Any]]]
        adopt: Callable[..., Any]
        subscribe_inputs: Callable[[], list[Callable[[], None]]]
        on_call_event: Callable[[Any], None]
        on_offer_refused: Callable[[Any], None]
        on_action_refused: Callable[[Any], None]
        _listen_as_leader: Callable[[], None]

    # -- shadow ---------------------------------------------------------------------

    async def start_shadow(self, poll_every: float) -> None:
        """Follow the leader (see the module docstring) until ``take_over`` or ``stop``."""
        now = time.time()
        self.shadowing = True
        self.router.following = True
        self._cursor = now - OVERLAP_S
        # Agents as the leader's state log has them (a wrap-up goes on: the leader's is real);
        # the decisions are dropped: only the router's state counts.
        self._apply(await self._start_states(now, keep_wrapup=True))
        self.core.bus.subscribe(self.on_shadow_event)
        self._tasks.append(asyncio.create_task(self._run_timers(), name="acd-timers"))
        if self.core.pool is not None:
            self._shadow_tasks.append(asyncio.create_task(self._follow_rows(poll_every), name="acd-follow"))
        log.info("acd shadowing the leader", agents=len(self.config.agents), poll_every=poll_every)

    def on_shadow_event(self, ev: Any) -> None:
        """Bus subscriber of the service (``on_call_event`` after naming the agent: a
        standby's model names an offer's agent by the channel, having had no
        ``expect_agent``). While shadowing, a caller of ours ringing a device is the
        leader's offer to that device's agent."""
        data = ev.data
        agent = agent_of_channel(data.get("agent"), self._agent_devices()) if data.get("agent") else None
        if agent is not None and agent != data.get("agent"):
            ev = _Named(ev.kind, ev.call_id, ev.at, {**data, "agent": agent})
            if ev.kind == "call.offered" and data.get("uniqueid"):
                # The call's row names the agent who answers, as the leader's does.
                self.core.model.name_offer(ev.call_id, str(data["uniqueid"]), agent)
        waiting = self.calls.get(ev.call_id)
        if self.shadowing and waiting is not None and waiting.callback is None and not waiting.answered:
            if ev.kind == "call.offered" and agent is not None:
                waiting.agent = agent
                # The leader's decision, carried out by the leader: nothing to do but hold it.
                self.router.offer_observed(ev.call_id, agent, ev.at)
                self._wake.set()
                return
            if ev.kind == "call.offer_ended" and waiting.agent is not None:
                self._offer_ends[ev.call_id] = ev.at
        self.on_call_event(ev)
        if ev.kind in ("call.ended", "call.abandoned"):
            self._offer_ends.pop(ev.call_id, None)

    def _agent_devices(self) -> dict[str, str]:
        return {a.id: self.devices.get(a.id, a.device) for a in self.config.agents}

    async def _follow_rows(self, poll_every: float) -> None:
        while True:
            try:
                await self.follow_once()
            except Exception as exc:   # a slow or absent database: the shadow lags, takeover reconciles
                log.warning("acd shadow could not read the leader's decisions", error=type(exc).__name__)
            await asyncio.sleep(poll_every)

    async def follow_once(self) -> int:
        """Read the leader's rows since the cursor and feed the new ones to the router.
        Returns how many observations were fed."""
        since = _utc(self._cursor)
        async with asyncio.timeout(_READ_TIMEOUT_S):
            states = await self.core.pool.fetch(_STATES, since)
            decisions = await self.core.pool.fetch(_DECISIONS, since)
            callbacks = await self.core.pool.fetch(callback_db.CHANGED_SINCE, since)
        rows: list[tuple[float, tuple[Any, ...], Any]] = []
        for r in states:
            at = r["at"].timestamp()
            rows.append((at, ("s", r["agent_id"], at, r["state"]),
                         follow.from_state_row(r["agent_id"], r["state"], r["reason"], at)))
        for r in decisions:
            at = r["at"].timestamp()
            data = r["data"] if isinstance(r["data"], dict) else _json(r["data"])
            rows.append((at, ("e", r["call_id"], r["seq"], r["kind"]),
                         follow.from_annotation(r["call_id"], r["kind"], data, at)))
        for r in callbacks:
            at = r["updated_at"].timestamp()
            rows.append((at, ("c", r["callback_id"], at), callback_db.callback_of(r)))
        fed = self.feed_rows(rows, time.time())
        await self.follow_config()
        return fed

    async def follow_config(self) -> bool:
        """A configuration version the leader put in force since (saved through its API):
        put in force here too, as the leader did (``reconfigure``). Returns whether one was."""
        async with asyncio.timeout(_READ_TIMEOUT_S):
            found = await self.core.pool.fetch(_VERSIONS, self.config_version or 0)
        version = follow.config_to_follow(self.config_version, [(r["version"], r["source"]) for r in found])
        if version is None:
            return False
        document = next(r["document"] for r in found if r["version"] == version)
        try:
            config = acd_config.parse_config(document if isinstance(document, dict) else _json(document),
                                             f"stored version {version}")
        except CtiError as exc:     # the leader refused it too (the API validates): not followed
            log.error("acd shadow: the leader's configuration version does not validate", version=version,
                      error=str(exc))
            self.config_version = version
            return False
        self.reconfigure(config, version)
        log.info("acd shadow follows the leader's configuration", version=version)
        return True

    def feed_rows(self, rows: list[tuple[float, tuple[Any, ...], Any]], now: float) -> int:
        """Feed the observations of ``rows`` (time, key, observation or None) not fed
        before, in time order; keep the keys of the overlap window."""
        fresh = sorted((r for r in rows if r[1] not in self._seen), key=lambda r: r[0])
        top = max((r[0] for r in rows), default=None)
        for at, key, _ in fresh:
            self._seen[key] = at
        observations = [o for _, _, o in fresh if o is not None and not isinstance(o, Callback)
                        and self._still_news(o)]
        if observations:
            # The leader's decisions, carried out by the leader (its rows, its AMI actions):
            # only held here, even while taking over.
            follow.feed(self.router, observations)
            self._wake.set()
            for o in observations:
                self._follow_shell(o)
        requests = [(at, o) for at, _, o in fresh if isinstance(o, Callback)]
        for at, cb in requests:
            self.follow_callback(cb, at, now)
        if top is not None:
            self._cursor = max(self._cursor, top - OVERLAP_S)
            self.latest_row_age_s = round(max(0.0, now - top), 3)
        cut = self._cursor
        self._seen = {k: at for k, at in self._seen.items() if at >= cut}
        self.followed += len(observations) + len(requests)
        return len(observations) + len(requests)

    def follow_callback(self, cb: Callback, at: float, now: float) -> None:
        """The leader's row of a callback request (its latest state, changed at ``at``):
        the shadow holds it as the leader does (``follow.callback_steps``), so that a
        takeover offers it in its place with the callers held here (its ``not_before``
        kept), and an agent it rings is reserved here too. The router's decisions are
        the leader's, carried out by the leader: only held here."""
        cid = cb.callback_id
        if cb.queue not in self._queues:
            cb = replace(cb, queue=self.core.settings.acd_default_queue)
        waiting = self.calls.get(cid)
        for step in follow.callback_steps(cb, _held(waiting), now):
            waiting = self.calls.get(cid)
            try:
                if step.kind in ("enter", "later"):
                    if waiting is None:
                        waiting = self.calls[cid] = Waiting(channel=None)
                    waiting.callback, waiting.agent, waiting.answered = cb, None, False
                    if step.kind == "later":
                        self.retries[cid] = cb
                    else:
                        self._enter_callback(cb, now)
                elif waiting is None:
                    continue
                elif step.kind == "convert":
                    view = next((w for w in self.router.waiting_calls() if w.call_id == cid), None)
                    if view is not None:
                        cb = replace(cb, since=view.arrived_at, queue=view.queue_id)
                        if waiting.entry is not None:
                            waiting.entry = replace(waiting.entry, since=view.arrived_at, callback=True)
                        self.router.to_callback(cid, now)
                    waiting.callback = cb
                elif step.kind == "update":
                    waiting.callback = cb
                    if cid in self.retries:
                        self.retries[cid] = cb
                elif step.kind == "offered" and step.agent is not None:
                    self._forget_leg(waiting)
                    if self.retries.pop(cid, None) is not None:   # its time came at the leader first
                        self._enter_callback(cb, now)
                    waiting.callback, waiting.agent = cb, step.agent
                    if cb.last_leg:     # the agent's leg: the takeover finds it (``_callback_legs``)
                        waiting.leg, self.legs[cb.last_leg] = cb.last_leg, cid
                    self.router.offer_observed(cid, step.agent, at)
                elif step.kind == "missed" and step.agent is not None:
                    self._forget_leg(waiting)
                    waiting.callback, waiting.agent = cb, None
                    self.router.offer_ended(cid, step.agent, "noanswer", at)
                elif step.kind == "answered" and step.agent is not None:
                    self._forget_leg(waiting)
                    waiting.callback, waiting.agent = cb, None
                    self.router.offer_ended(cid, step.agent, "answered", at)
                elif step.kind == "leave":
                    self._forget_leg(waiting)
                    if any(w.call_id == cid for w in self.router.waiting_calls()):
                        self.router.divert(cid, "callback cancelled", at)
                    self.retries.pop(cid, None)
                    del self.calls[cid]
            except ValueError:      # AcdInputError: an agent or queue not in this configuration
                continue
        self._wake.set()

    def _forget_leg(self, waiting: Waiting) -> None:
        if waiting.leg is not None:
            self.legs.pop(waiting.leg, None)
            waiting.leg = None

    def _callback_legs(self, listings: dict[str | None, list[Any]]) -> None:
        """At the takeover: a callback the leader offered (ringing here, its agent leg
        known from its row) is settled from its node's listing, as the leader would on
        the leg's events: answered (the leg is in ``cti-acd-callback``: the agent is on
        it, the customer being dialled), still ringing (its ``OriginateResponse`` comes
        to this node now), or gone unanswered (missed: it waits again)."""
        for cid, waiting in list(self.calls.items()):
            leg = waiting.leg
            node = self._node_of(cid)
            if waiting.callback is None or leg is None or waiting.answered or node not in listings:
                continue
            item = next((i for i in listings[node] if i.get("Uniqueid") == leg), None)
            if item is None:
                self._leg_ended(leg)
            elif item.get("Context") == "cti-acd-callback":
                self._leg_originated(leg, True, "")

    def _still_news(self, o: Any) -> bool:
        """An offer row whose end this node's model has already seen is history."""
        if isinstance(o, follow.OfferSeen):
            ended = self._offer_ends.get(o.call_id)
            return ended is None or o.at > ended
        return True

    def _follow_shell(self, o: Any) -> None:
        """What the shell keeps of a call follows the observation too."""
        waiting = self.calls.get(getattr(o, "call_id", ""))
        if waiting is None:
            return
        if isinstance(o, follow.OfferSeen) and not waiting.answered:
            if self.router.agent_state(o.agent_id).call_id == o.call_id:
                waiting.agent = o.agent_id
        elif isinstance(o, follow.OfferGone) and waiting.agent == o.agent_id:
            waiting.agent = None
        elif isinstance(o, follow.MovedSeen) and waiting.entry is not None:
            waiting.entry = replace(waiting.entry, queue=o.queue_id,
                                    priority=o.priority if o.own_priority else waiting.entry.priority)
        elif isinstance(o, follow.DivertedSeen) and not waiting.answered:
            del self.calls[o.call_id]

    # -- takeover -------------------------------------------------------------------

    async def take_over(self) -> None:
        """Lead from the shadow's memory (the module docstring). ``may_act`` must be
        true already (the node leads)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for task in self._shadow_tasks:
            task.cancel()
        await asyncio.gather(*self._shadow_tasks, return_exceptions=True)
        self._shadow_tasks = []
        # The heartbeat (and the epoch raise) first: callers in the wait read it to stay.
        self._tasks.append(asyncio.create_task(self._run_heartbeat(), name="acd-heartbeat"))
        writer = self.core.writer
        now = time.time()
        for agent in self.config.agents:
            if writer is not None:
                writer.submit(AgentRow(agent_id=agent.id, name=agent.name, device=agent.device,
                                       updated_at=_utc(now)))
        if self._pool is None and self.core.pool is not None:
            self._pool = self.core.pool
        try:   # the leader's last rows (its writer's last flush) before deciding anything
            await self.follow_once()
        except Exception as exc:
            log.warning("acd takeover: the leader's last rows not read", error=type(exc).__name__)
        listed = t0
        dropped = 0
        adopted_before = self.adopted
        try:
            await self.core.ami.wait_connected(timeout=10)
            # Every connected Asterisk node, listed at once (several nodes: ids qualified
            # as the model's); the primary first.
            nodes = self._nodes_to_adopt()
            listings = await asyncio.gather(*(self._list_node(name, ami) for name, ami in nodes))
            listed = loop.time()
            amis = {name: ami for name, ami in nodes}
            held = {cid: (self._node_of(cid), None if w.callback is not None else w.channel)
                    for cid, w in self.calls.items()}
            listed_nodes = {name: items for (name, _), items in zip(nodes, listings) if items is not None}
            self._callback_legs(listed_nodes)
            for rec in reconcile_nodes(held, listed_nodes):
                dropped += self._drop_gone(rec.gone, time.time())
                # What the shadow lacks, the old way (no offer yet: the router still follows);
                # what it holds is not asked about again (no Getvar for it).
                ami = amis[rec.node]
                await self.adopt(list(rec.adopt), ami=ami, primary=ami is self.core.ami)
        except CtiError as exc:
            log.warning("acd takeover: Asterisk's channels not listed", error=str(exc))
        self.shadowing = False
        self._apply(self.router.lead(time.time()))
        # Refusals, callbacks, every resync (several nodes: each node's, and their deaths).
        self._listen_as_leader()
        if self._pool is not None:
            self._start_saving()
            self._tasks.append(asyncio.create_task(self._restore_callbacks(), name="acd-callbacks"))
        self.takeover = {"cold": False, "list_s": round(listed - t0, 3), "total_s": round(loop.time() - t0, 3),
                         "dropped": dropped, "adopted": self.adopted - adopted_before,
                         "waiting": sum(1 for w in self.calls.values() if not w.answered)}
        log.warning("acd took over from the shadow", **self.takeover)

    async def _list_node(self, node: str | None, ami: Any) -> list[Any] | None:
        """One node's ``CoreShowChannels``, ids qualified (None: not listed; that node's
        calls are left to its resync)."""
        try:
            listing = await ami.send("CoreShowChannels", shape="list", timeout=10)
        except CtiError as exc:
            log.warning("acd takeover: a node's channels not listed", node=node, error=str(exc))
            return None
        return [qualify(node, f.headers) for f in listing.events if f.headers.get("Event") == "CoreShowChannel"]

    def _node_of(self, call_id: str) -> str | None:
        """The Asterisk node of a call held here (None with one node)."""
        node_of = getattr(self.core, "ami_node_of", None)
        return node_of(call_id) if node_of is not None else None

    def _drop_gone(self, gone: tuple[str, ...], now: float) -> int:
        """Calls the shadow holds that their node no longer has: ended, as the model
        would have said (the caller abandoned, the agent's call finished)."""
        for cid in gone:
            waiting = self.calls.pop(cid, None)
            if waiting is None:
                continue
            out: list[Any] = []
            if not waiting.answered:
                out += self.router.call_abandoned(cid, now)
            elif waiting.agent is not None:
                out += self.router.call_finished(cid, waiting.agent, now)
            for other in sorted(waiting.others):
                out += self.router.call_finished(cid, other, now)
            self._apply(out)
        if gone:
            log.info("acd takeover: calls Asterisk no longer has dropped", calls=len(gone))
        return len(gone)

    def shadow_health(self) -> dict[str, Any]:
        """For ``/healthz``'s ``acd``: how many agents the router holds in each state,
        whether it shadows the leader, how many of the leader's rows it followed and
        how old the newest was when read, and the last takeover's figures."""
        states: dict[str, int] = {}
        for a in self.config.agents:
            state = self.router.state_of(a.id)
            states[state] = states.get(state, 0) + 1
        return {"agents": states, "shadowing": self.shadowing, "followed": self.followed,
                "latest_row_age_s": self.latest_row_age_s, "takeover": self.takeover}

    async def _cold_start(self, started: float, restore: bool) -> None:
        """A start from scratch (a restart, a cold takeover): adoption from Asterisk's
        listing, then the callbacks; its figures in ``takeover`` as a warm one's are."""
        adopted = self.adopted
        await self._adopt_now(restore=False)
        loop = asyncio.get_running_loop()
        self.takeover = {"cold": True, "total_s": round(loop.time() - started, 3), "adopted": self.adopted - adopted,
                         "waiting": sum(1 for w in self.calls.values() if not w.answered)}
        log.info("acd started from scratch", **self.takeover)
        if restore:
            await self._restore_callbacks()

    async def stop_shadow(self) -> None:
        """The app stops while still shadowing: the follower and the timers end."""
        for task in self._shadow_tasks + (self._tasks if self.shadowing else []):
            task.cancel()
        await asyncio.gather(*self._shadow_tasks, *(self._tasks if self.shadowing else []), return_exceptions=True)
        self._shadow_tasks = []
        if self.shadowing:
            self._tasks = []


def _held(waiting: Waiting | None) -> follow.HeldCallback | None:
    """What the shadow holds of a call a callback row names (``follow.callback_steps``)."""
    if waiting is None:
        return None
    cb = waiting.callback
    attempts = cb.attempts if cb is not None else 0
    if cb is None:
        return follow.HeldCallback("answered" if waiting.answered else "caller")
    if waiting.answered:
        return follow.HeldCallback("answered", waiting.agent, attempts)
    if waiting.agent is not None:
        return follow.HeldCallback("ringing", waiting.agent, attempts)
    return follow.HeldCallback("waiting", None, attempts)


@dataclass(frozen=True, slots=True)
class _Named:
    """A call event with its agent named (what ``on_call_event`` reads of it)."""

    kind: str
    call_id: str
    at: float
    data: dict[str, Any]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
