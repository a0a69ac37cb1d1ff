"""The ACD's asyncio shell: call events in, router decisions out to Asterisk.

The mechanism (docs/acd.md, "Why Redirect into Dial"): a caller waits with
music in the dialplan context ``cti-acd-wait`` and announces itself with
``UserEvent(CtiAcdWait)`` (the call model turns it into ``call.queued`` with
``acd=True``). When the router picks an agent, we set ``CTI_OFFER`` on the
caller's channel and ``Redirect`` it to ``cti-acd-offer``, which runs
``Dial(device, ring timeout, m)``. The caller keeps hearing music while the
agent rings; an unanswered Dial returns the caller to the wait, and the
router decides again. Asterisk does the ringing, cancelling and bridging; we
never hold a channel of our own, so there is nothing to clean up if we die.

Liveness and fencing (docs/ha.md): every offer carries our leadership
``epoch``; the heartbeat and raising the epoch in Asterisk are the
``Heartbeat`` mixin's (acd/heartbeat.py).

The thin loop: bus event -> ``Router`` input (pure) -> decisions -> AMI
actions written at once, in the order decided (``AmiClient.submit``: Asterisk
runs one session's actions in order, so none waits for an earlier one's
reply); replies are seen to by callbacks. Timers by ``Router.next_deadline``.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import structlog
from aiohttp import web

from acd import config as acd_config
from acd import core as acd_core
from acd.ami_actions import setvar
from acd.adoption import Adoption
from acd.callback_shell import CallbackShell
from acd.config_versions import Reconfiguring
from acd.decisions import AVAILABLE, LOGGED_OUT, NOT_READY, AgentView
from acd.epoch import heartbeat_variable
from acd.events import AgentStateChanged
from acd.heartbeat import Heartbeat
from acd.resume import Stored, start_states
from acd.sending import Sending
from acd.shadow import Shadow
from acd.held_calls import Entry, Waiting, parse_skills
from cti.ami_inputs import ActionRefused, OfferRefused
from cti.nodes import NodeDead
from cti.errors import CtiError
from cti.daemon import CoreServices
from cti.events import CallEvent
from acd.rows import AgentRow, AgentStateRow

log = structlog.get_logger(__name__)

# Each agent's last row of the state log (acd.resume), in one query: per agent, one
# backward probe of the primary key (agent_id, at, state) for its latest rows (at most
# six share an instant: one per state), never a sort of its whole history. Rows of one
# agent at the same instant (one input's chain, e.g. on_call -> wrapup -> available)
# have no order of their own: the resting state is taken (logged out, not ready, available).
_LAST_STATES = """
SELECT DISTINCT ON (s.agent_id) s.agent_id, s.at, s.state, s.reason
FROM unnest($1::text[]) AS a(agent_id)
CROSS JOIN LATERAL (
    SELECT agent_id, at, state, reason FROM agent_states
    WHERE agent_id = a.agent_id ORDER BY at DESC LIMIT 6
) s
ORDER BY s.agent_id, s.at DESC,
    CASE s.state WHEN 'logged_out' THEN 0 WHEN 'not_ready' THEN 1 WHEN 'available' THEN 2 ELSE 3 END
"""
_STATES_TIMEOUT_S = 5.0

# DialStatus of an unanswered offer -> the router's reason.
_FAILED = {"NOANSWER": "noanswer", "BUSY": "busy", "CHANUNAVAIL": "failed", "CONGESTION": "failed"}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


@dataclass
class AcdService(CallbackShell, Reconfiguring, Heartbeat, Adoption, Shadow, Sending):
    """The ACD in the daemon: the router fed from the bus, its decisions carried out
    on Asterisk. Callbacks (``CallbackShell``, acd/callback_shell.py), putting a
    new configuration in force (``Reconfiguring``, acd/config_versions.py), the
    epoch and heartbeat (``Heartbeat``, acd/heartbeat.py), taking over the calls
    found after a (re)connect (``Adoption``, acd/adoption.py) and following the
    leader on a standby (``Shadow``, acd/shadow.py) are its other jobs, each in its
    own module; they share this object's state."""

    core: CoreServices
    config: acd_config.AcdConfig
    router: acd_core.Router = field(init=False)
    calls: dict[str, Waiting] = field(default_factory=dict)
    offers_sent: int = 0
    offers_failed: int = 0
    # Hand waiting callers to app_queue on stop (False only to simulate a crash in tests).
    handover: bool = True
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: bool = False           # replies that come after stop() change nothing
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    carried: dict[str, str] = field(default_factory=dict)        # offers ringing at a reconfigure: call -> agent
    config_version: int | None = None
    _pool: Any = None
    # What was last told on the bus of each agent (``AgentStateChanged``, ``_tell``).
    told: dict[str, AgentView] = field(default_factory=dict)
    _inputs: list[Callable[[], None]] = field(default_factory=list)    # unsubscribes of the typed AMI inputs
    # Set by the phone gateway (docs/softphone.md): the device each agent sits
    # at, and the agents whose device cannot ring. Kept here so that a new
    # configuration's router gets them too.
    devices: dict[str, str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    # The gate before every routing action (cti.ha.HaNode.may_act in a pair: false on a
    # standby and on a leader whose lease ran out, e.g. resumed after a pause).
    may_act: Callable[[], bool] = lambda: True
    # In a pair, the routing Redirects go through the dialplan's epoch gate (``acd.epoch.gated``:
    # an Originate per Redirect), so that a deposed leader's late one moves nobody.
    gate_redirects: bool = False
    gate_seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))   # the gate's order
    # Omnichannel (omni/service.py): told of every agent state change the router decides
    # (agent id, when), and the agents whose tasks block calls (kept across configurations).
    agent_listeners: list[Callable[[str, float], None]] = field(default_factory=list)
    voice_blocked: set[str] = field(default_factory=set)
    # Told of every new configuration put in force (``reconfigure``): (config, when).
    config_listeners: list[Callable[[acd_config.AcdConfig, float], None]] = field(default_factory=list)
    # Several Asterisk nodes (docs/scale-out.md): the dial string that rings a device from
    # a call's node (set by the phone gateway: through the trunk when the phone is on
    # another node). None: the device as it is.
    route_device: Callable[[str, str], str] | None = None

    def __post_init__(self) -> None:
        heartbeat_variable(self.epoch)      # a bad epoch fails here, not in the heartbeat
        self.router = acd_core.Router(self.config)
        known = {a.id for a in self.config.agents}
        for agent_id in sorted(self.voice_blocked & known):
            self.router.set_voice_blocked(agent_id, True, time.time())
        self._queues = {q.id: q for q in self.config.queues}

    # -- lifecycle -----------------------------------------------------------

    def use_config(self, config: acd_config.AcdConfig, version: int | None) -> None:
        """Before ``start``: the configuration in force (a stored version may be newer
        than the file the service was built with)."""
        self.config, self.config_version = config, version
        self.__post_init__()

    async def start(self) -> None:
        started = asyncio.get_running_loop().time()
        now = time.time()
        writer = self.core.writer
        for agent in self.config.agents:
            if writer is not None:
                writer.submit(AgentRow(agent_id=agent.id, name=agent.name, device=agent.device,
                                       updated_at=_utc(now)))
        self._apply(await self._start_states(now))
        self.adopting = True        # arrivals wait for the first adoption (acd/adoption.py)
        self.core.bus.subscribe(self.on_call_event)
        self._listen_as_leader()
        if self.core.pool is not None:   # the daemon's shared pool (none in unit tests)
            self._pool = self.core.pool
            self._start_saving()
        # The AMI client may have connected (and resynced) before we were here.
        # Callbacks are restored after: a callback whose agent is still on the
        # line is adopted, not tried again.
        self._tasks.append(asyncio.create_task(self._cold_start(started, restore=self._pool is not None),
                                               name="acd-adopt"))
        self._tasks += [asyncio.create_task(self._run_timers(), name="acd-timers"),
                       asyncio.create_task(self._run_heartbeat(), name="acd-heartbeat")]

    def _listen_as_leader(self) -> None:
        """What a routing ACD listens to beside the call events (at start, or at a warm
        takeover): refusals, the callback inputs, every resync of Asterisk's channels."""
        self._inputs = [self.core.bus.subscribe_to(OfferRefused, self.on_offer_refused),
                        self.core.bus.subscribe_to(ActionRefused, self.on_action_refused), *self.subscribe_inputs()]
        self.core.resync_hooks.append(self.adopt)
        # Several Asterisk nodes: another node's resync adopts its callers (node_resynced);
        # an offer that could not be written to a node away held routing back (link_lost):
        # that node's resync, or its death (its calls end), lets it go on. Bounded by
        # ami_node_dead_after.
        node_hooks = getattr(self.core, "node_hooks", None)
        if node_hooks is not None:
            node_hooks.append(self.node_resynced)
            self._inputs.append(self.core.bus.subscribe_to(NodeDead, self.on_node_dead))

    async def _start_states(self, now: float, *, keep_wrapup: bool = False) -> list[Any]:
        """Every agent in the state it was in before this start (``acd.resume``, from
        each agent's last row of the state log), before any call is adopted: agents
        found talking are adopted on top of it. Without a database (or when it does
        not answer in time) today's ``auto_login``."""
        pool = self.core.pool
        if pool is None:
            return self.router.auto_login(now)
        try:
            async with asyncio.timeout(_STATES_TIMEOUT_S):
                rows = await pool.fetch(_LAST_STATES, [a.id for a in self.config.agents])
        except Exception as exc:   # TimeoutError too: the start goes on as before
            log.warning("acd could not read the agents' stored states: auto_login instead", error=str(exc))
            return self.router.auto_login(now)
        stored = {r["agent_id"]: Stored(r["state"], r["reason"], r["at"].timestamp()) for r in rows}
        out: list[Any] = []
        for s in start_states(self.config, stored, now, keep_wrapup=keep_wrapup):
            if s.state == LOGGED_OUT:
                continue
            if s.restored:
                out += self.router.resume(s.agent_id, s.state, s.reason, s.since, now)
            else:
                out += self.router.login(s.agent_id, now)
        log.info("acd agents resumed from the state log", stored=len(stored),
                 available=sum(1 for d in out if isinstance(d, acd_core.AgentState) and d.new == AVAILABLE),
                 not_ready=sum(1 for d in out if isinstance(d, acd_core.AgentState) and d.new == NOT_READY))
        return out

    async def stop(self) -> None:
        """Hand over to the fallback path: new callers go to app_queue at once
        (heartbeat 0), and the callers still waiting for us are sent there."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.adopt in self.core.resync_hooks:
            self.core.resync_hooks.remove(self.adopt)
        node_hooks = getattr(self.core, "node_hooks", None)
        if node_hooks is not None and self.node_resynced in node_hooks:
            node_hooks.remove(self.node_resynced)
        for unsubscribe in self._inputs:
            unsubscribe()
        self._inputs = []
        await self._stop_saving()
        ami = self.core.ami
        if ami is None or not ami.connected or not self.handover:
            return
        others = [a for a in (getattr(self.core, "nodes", None) or {}).values() if a is not ami and a.connected]
        sends = [a.send("Setvar", {"Variable": heartbeat_variable(self.epoch), "Value": "0"}, shape="single")
                 for a in (ami, *others)]
        sends += [self._ami(cid).send("Redirect", {"Channel": w.channel, "Context": "cti-fallback", "Exten": "s",
                                                   "Priority": "1"}, shape="single")
                  for cid, w in self.calls.items()
                  if not w.answered and w.channel is not None and w.callback is None]
        results = await asyncio.gather(*sends, return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        log.info("acd stopped: callers handed to the fallback queue", callers=len(sends) - 1 - len(others),
                 failed=len(failed))

    def on_node_dead(self, ev: NodeDead) -> None:
        """Bus subscriber: a node died and its calls ended: routing goes on without it."""
        self._link_back()

    def _link_back(self) -> None:
        if self._stopped or not self.router.link_down or self.core.ami is None or not self.core.ami.connected:
            return
        self._apply(self.router.link_restored(time.time()))

    # -- inputs --------------------------------------------------------------

    def on_call_event(self, ev: CallEvent) -> None:
        """Bus subscriber: the call events that matter to routing."""
        kind, cid, data = ev.kind, ev.call_id, ev.data
        if kind == "call.queued":
            if not data.get("acd"):
                return
            if self.adopting:
                self.held_arrivals.append(ev)
                return
            log.debug("acd call entered", call_id=cid, entered_at=time.time())  # bench/acd_latency.py --timeline
            queue = data.get("queue") or self.core.settings.acd_default_queue
            held = self.calls.get(cid)
            if held is not None:
                if not held.answered or held.callback is not None:
                    return  # e.g. a callback request for this call already holds its place
                # An agent transferred the caller back to a queue: a new entry. The
                # agent's leg may not be reported gone yet: their call is over now.
                if held.agent is not None:
                    self._apply(self.router.call_finished(cid, held.agent, ev.at))
                del self.calls[cid]
            self.calls[cid] = Waiting(channel=data["channel"], announced_at=ev.at)
            qcfg = self._queues.get(queue)
            if qcfg is not None and qcfg.callback and self.may_act():   # a shadow writes nothing
                setvar(self._ami(cid), data["channel"], "CTI_CALLBACK_OK", "1")
            self._enter(cid, Entry(queue, ev.at, data.get("priority"), parse_skills(data.get("skills")),
                                   data.get("customer")), ev.at)
            return
        waiting = self.calls.get(cid)
        if waiting is None:
            return
        if waiting.callback is not None:  # the caller hung up to be called back: the request lives on
            if kind in ("call.abandoned", "call.ended"):
                waiting.channel = None
            return
        if kind == "call.connected" and waiting.answered and data.get("agent") not in (None, waiting.agent):
            self._transferred_to(cid, waiting, str(data["agent"]), ev.at)
        elif kind == "call.connected" and waiting.agent is not None and not waiting.answered:
            waiting.answered = True
            self.carried.pop(cid, None)
            self._apply(self.router.offer_answered(cid, waiting.agent, ev.at))
        elif kind == "call.offer_ended" and waiting.agent is not None:
            reason = _FAILED.get(str(data.get("status")))
            if reason is not None:  # CANCEL / HANGUP: the caller left, call.abandoned follows
                agent, waiting.agent = waiting.agent, None
                self._offer_failed(cid, agent, reason, ev.at)
        elif kind == "call.agent_left" and waiting.agent is not None and data.get("agent") in (None, waiting.agent):
            agent, waiting.agent = waiting.agent, None
            log.debug("acd agent freed", call_id=cid, agent=agent, freed_at=time.time())  # acd_latency --timeline
            self._apply(self.router.call_finished(cid, agent, ev.at))
        elif kind == "call.agent_left" and data.get("agent") in waiting.others:
            waiting.others.discard(data["agent"])
            self._apply(self.router.call_finished(cid, data["agent"], ev.at))
        elif kind in ("call.abandoned", "call.ended"):
            del self.calls[cid]
            carried = self.carried.pop(cid, None)
            if carried is not None and not waiting.answered:
                self._apply(self.router.call_finished(cid, carried, ev.at))
            elif not waiting.answered:
                self._apply(self.router.call_abandoned(cid, ev.at))
            elif waiting.agent is not None:  # the agent's leg vanished unseen (resync)
                self._apply(self.router.call_finished(cid, waiting.agent, ev.at))
            for other in sorted(waiting.others):
                self._apply(self.router.call_finished(cid, other, ev.at))

    def _transferred_to(self, cid: str, waiting: Waiting, agent: str, at: float) -> None:
        """An answered call connected to another agent of ours (a transfer from the
        desktop names the target): that agent is on this call until their leg ends.
        The transferer, if still on the line (attended), stays on it until theirs does."""
        if agent not in {a.id for a in self.config.agents}:
            return
        if waiting.agent is not None:
            waiting.others.add(waiting.agent)
        waiting.others.discard(agent)
        waiting.agent = agent
        queue = waiting.entry.queue if waiting.entry is not None else None
        if queue not in self._queues:
            queue = next(iter(self.config.agent(agent).queues), self.core.settings.acd_default_queue)
        try:
            self._apply(self.router.agent_on_call(agent, cid, queue, at, back_to_previous=True))
        except CtiError as exc:   # no queue to count the call in: the call goes on regardless
            log.warning("acd could not count a transfer target busy", call_id=cid, agent=agent, error=str(exc))

    def agent_request(self, agent_id: str, what: str, reason: str = "") -> None:
        """An agent's own request (``login``, ``logout``, ``set_ready``,
        ``set_not_ready``, ``end_wrapup``), carried out at once.
        Raises: ``AcdInputError`` (unknown agent) or ``AgentStateError``."""
        now = time.time()
        method = getattr(self.router, what)
        self._apply(method(agent_id, reason, now) if what == "set_not_ready" else method(agent_id, now))
        self._tell(agent_id, now)   # a request during a call changes no state, only what is pending

    def disposition_saved(self, agent_id: str, call_id: str) -> None:
        """The agent saved a disposition of ``call_id``: one its queue required no longer
        holds the agent. Unknown agents (not in this configuration) are left alone."""
        if agent_id in {a.id for a in self.config.agents}:
            now = time.time()
            self._apply(self.router.disposition_saved(agent_id, call_id, now))
            self._tell(agent_id, now)

    def set_voice_blocked(self, agent_id: str, blocked: bool) -> None:
        """The agent's tasks (omni) block calls, or no longer do (``Router.set_voice_blocked``)."""
        (self.voice_blocked.add if blocked else self.voice_blocked.discard)(agent_id)
        try:
            self._apply(self.router.set_voice_blocked(agent_id, blocked, time.time()))
        except CtiError as exc:
            log.warning("acd voice block refused", agent=agent_id, error=str(exc))

    def bind_device(self, agent_id: str, device: str | None) -> None:
        """The agent's offers and callbacks ring ``device`` (a dial string) from
        now on; None: the device of the configuration. Unknown agents are
        remembered for a configuration that has them."""
        if device is None:
            self.devices.pop(agent_id, None)
        else:
            self.devices[agent_id] = device
        if agent_id in {a.id for a in self.config.agents}:
            self.router.set_device(agent_id, device or self.config.agent(agent_id).device)
            self._tell(agent_id, time.time())

    def device_reachable(self, agent_id: str, reachable: bool) -> None:
        """The agent's device can ring, or cannot (the agent leaves routing until it can)."""
        if reachable:
            self.unreachable.discard(agent_id)
        else:
            self.unreachable.add(agent_id)
        if agent_id in {a.id for a in self.config.agents}:
            now = time.time()
            self._apply(self.router.device_reachable(agent_id, reachable, now))
            self._tell(agent_id, now)   # on a call: only what is pending changes

    def device_of(self, agent_id: str) -> str:
        """The dial string the agent's calls ring now. Raises ``AcdInputError`` for an unknown agent."""
        return self.router.agent_state(agent_id).device

    def move_call(self, call_id: str, queue_id: str | None = None, priority: int | None = None) -> bool:
        """A supervisor moves a waiting call to ``queue_id`` and/or gives it ``priority``
        (``Router.move_call``); the caller hears nothing of it. The channel's
        ``CTI_QUEUE``/``CTI_PRIORITY`` follow, so a restart adopts it where it is now.
        Returns False when the call is not waiting here (gone, or an agent is ringing).
        Raises: ``AcdInputError`` (unknown queue, bad priority)."""
        now = time.time()
        out = self.router.move_call(call_id, now, queue_id=queue_id, priority=priority)
        moved = next((d for d in out if isinstance(d, acd_core.Moved)), None)
        waiting = self.calls.get(call_id)
        if moved is not None and waiting is not None:
            if waiting.entry is not None:
                waiting.entry = replace(waiting.entry, queue=moved.target, priority=moved.priority)
            if waiting.channel is not None and waiting.callback is None:
                self._write_move(call_id, waiting.channel, moved.target, moved.priority)
            elif waiting.callback is not None:
                waiting.callback = replace(waiting.callback, queue=moved.target, priority=moved.priority)
                self._save(waiting.callback)
        self._apply(out)
        return moved is not None

    def divert(self, call_id: str, reason: str) -> str | None:
        """Take a waiting caller out of routing for another path (an emergency switch):
        the router forgets it (``Router.divert``) and so do we; the caller of the
        returned channel is the sender's to redirect. None (nothing done) when the
        call is not waiting here with someone on the line, or an agent rings."""
        waiting = self.calls.get(call_id)
        if (waiting is None or waiting.answered or waiting.agent is not None or waiting.channel is None
                or waiting.callback is not None):
            return None
        out = self.router.divert(call_id, reason, time.time())
        if not any(isinstance(d, acd_core.Dequeued) for d in out):
            return None
        del self.calls[call_id]
        self._apply(out)
        return waiting.channel

    def _enter(self, call_id: str, entry: Entry, now: float) -> None:
        """The call (already in ``self.calls``) waits in the router with ``entry``."""
        waiting = self.calls.get(call_id)
        if waiting is not None:
            waiting.entry = entry
        self._call_input(call_id, lambda: self.router.call_waiting(
            call_id, entry.queue, now, priority=entry.priority, skills=entry.skills or None,
            customer_id=entry.customer_id, since=entry.since, callback=entry.callback))

    def _offer_failed(self, call_id: str, agent: str, reason: str, now: float) -> None:
        """An offer ended unanswered. One carried over a reconfiguration is not
        known to the router as an offer: the agent's hold ends as a miss and
        the call waits again in its place."""
        if self.carried.pop(call_id, None) != agent:
            self._apply(self.router.offer_failed(call_id, agent, reason, now))
            return
        out = self.router.call_finished(call_id, agent, now)
        try:
            out += self.router.set_not_ready(agent, acd_core.FAILURE_STATES[reason], now)
        except acd_core.AgentStateError:
            pass  # logged out meanwhile
        self._apply(out)
        waiting = self.calls.get(call_id)
        if waiting is not None and waiting.entry is not None:
            self._enter(call_id, waiting.entry, now)

    def _call_input(self, call_id: str, fn) -> None:
        try:
            self._apply(fn())
        except CtiError as exc:  # e.g. an unknown queue named by the dialplan
            log.error("acd refused the call", call_id=call_id, error=str(exc))
            self.calls.pop(call_id, None)

    # -- decisions -----------------------------------------------------------

    def _apply(self, decisions: list[Any]) -> None:
        """Carry decisions out: offers become AMI actions (in order, on one task),
        agent states are logged and stored, call decisions join the call's timeline.
        Nothing at all when this node may not act (``may_act``): not leading."""
        if decisions and not self.may_act():
            # Running (a leader whose lease ran out): worth a warning; a standby's: expected.
            (log.warning if self._tasks and not self.shadowing else log.debug)(
                "acd not leading: decisions dropped", count=len(decisions))
            self._wake.set()        # a shadow's router timers still run (acd/shadow.py)
            return
        for d in decisions:
            if isinstance(d, acd_core.Offer):
                waiting = self.calls.get(d.call_id)
                if waiting is None:  # the router holds a call we lost: give it back
                    self._apply(self.router.call_abandoned(d.call_id, time.time()))
                    continue
                waiting.agent = d.agent_id
                if waiting.callback is not None:
                    self._originate_callback(d)
                    log.info("acd callback offered", call_id=d.call_id, agent=d.agent_id, reason=d.reason)
                    continue
                device = d.device if self.route_device is None else self.route_device(d.call_id, d.device)
                self._send_offer(d, waiting.channel, device)
                self.core.model.expect_agent(d.call_id, d.agent_id, device)
                self._annotate(d.call_id, "acd.offer", agent=d.agent_id, device=d.device, queue=d.queue_id,
                               step=d.step, reason=d.reason)
            elif isinstance(d, acd_core.Ignored):
                log.debug("acd ignored an input", input=d.input, call_id=d.call_id, agent=d.agent_id,
                          reason=d.reason)
            elif isinstance(d, acd_core.Withdrawn):
                waiting = self.calls.get(d.call_id)
                if waiting is not None and waiting.agent == d.agent_id:
                    # Nobody reported on the ringing in time: take the caller back to the wait.
                    waiting.agent = None
                    if waiting.callback is not None:
                        self._callback_missed(d.call_id, waiting)
                    elif waiting.channel is not None:
                        self._redirect(d.call_id, waiting.channel, "cti-acd-wait", "back")
                self._annotate(d.call_id, "acd.withdrawn", agent=d.agent_id, reason=d.reason)
            elif isinstance(d, acd_core.MaxWait) and d.action != "overflow":
                waiting = self.calls.get(d.call_id)
                if waiting is not None and waiting.channel is not None:
                    self._send_maxwait(d.call_id, waiting.channel, d.action)
                self._annotate(d.call_id, "acd.maxwait", queue=d.queue_id, action=d.action)
            elif isinstance(d, acd_core.AgentState):
                log.info("agent state", agent=d.agent_id, old=d.old, new=d.new, reason=d.reason)
                if self.core.writer is not None:
                    self.core.writer.submit(AgentStateRow(agent_id=d.agent_id, at=_utc(d.at), state=d.new,
                                                          previous=d.old, reason=d.reason))
                self._tell(d.agent_id, d.at)
                for listener in self.agent_listeners:
                    listener(d.agent_id, d.at)
            else:
                name = type(d).__name__.lower()
                fields = {k: getattr(d, k) for k in getattr(d, "__dataclass_fields__", {})
                          if k not in ("call_id", "at")}
                call_id = getattr(d, "call_id", None)
                if call_id is not None:
                    self._annotate(call_id, f"acd.{name}", **fields)
                log.info(f"acd {name}", call_id=call_id, **fields)
        self._wake.set()

    def _tell(self, agent_id: str, at: float) -> None:
        """Publish the agent as the router has it now (``AgentStateChanged``) if that
        differs from what was told last. On the bus, so in turn with the call events:
        after the event that changed it (the call.queued that reserved the agent),
        never before it, and in the router's order beside the acd.offer."""
        view = self.router.agent_state(agent_id)
        previous = self.told.get(agent_id)
        if view == previous:
            return
        self.told[agent_id] = view
        self.core.bus.publish(AgentStateChanged(agent_id, at, view, previous))

    def _annotate(self, call_id: str, kind: str, **data: Any) -> None:
        self.core.annotate(call_id, kind, time.time(), **data)

    async def _run_timers(self) -> None:
        """Fire the router's timers when due, and announcements once a second.
        Woken early whenever an input changed the next deadline; a busy stream
        of inputs never starves a due timer (it is checked on every turn)."""
        checked = 0.0
        while True:
            self._wake.clear()
            now = time.time()
            deadline = self.router.next_deadline()
            if deadline is not None and deadline <= now:
                self._apply(self.router.tick(now))
                self._wake.clear()
                deadline = self.router.next_deadline()
            if now - checked >= 1.0:
                checked = now
                self._announcements(now)
                self._retry_callbacks(now)
            delay = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # comes just after the wake-up is set, and stop() then waits for us forever.
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # -- introspection ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {"waiting": len(self.calls), "offers_sent": self.offers_sent, "offers_failed": self.offers_failed,
                "offers_refused": self.offers_refused,
                "actions_refused": self.actions_refused, "epoch": self.epoch, "epoch_in_force": self.epoch_in_force,
                "fenced": self.fenced, "heartbeats": self.heartbeats, "callbacks_open": sum(1 for w in self.calls.values() if w.callback),
                **self.shadow_health()}


ACD = web.AppKey("acd", AcdService)
