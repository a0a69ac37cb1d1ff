"""Adoption: after a (re)connect, or at start, the ACD takes over the calls
Asterisk already holds in its dialplan (docs/acd.md, "Taking over after a restart"):
callers waiting in ``cti-acd-wait``, with what the dialplan set on their
channel, and agents found talking on calls we connected before.

Mixed into ``AcdService`` (acd/routing_shell.py): it shares the service's
calls and router, listed under ``TYPE_CHECKING`` below.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import structlog

from acd import config as acd_config
from acd import core as acd_core
from acd.held_calls import Entry, Waiting, adopted_wait_start, parse_skills
from cti.errors import CtiError
from cti.nodes import qualify

if TYPE_CHECKING:
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

# Waiting callers whose channel variables are asked at once when adopting (each asks five
# Getvars together): a long queue is read in a few round trips, not one caller at a time.
ADOPT_AT_ONCE = 16


@dataclass(kw_only=True)
class Adoption:
    """How many calls were adopted; arrivals held back while the first adoption runs."""

    adopted: int = 0
    # While the first listing is being adopted (at start, or a takeover in an HA pair),
    # new callers' ``call.queued`` wait here: routed before the talking agents are
    # adopted, they would be offered to an agent who only looks free. Replayed after.
    adopting: bool = False
    held_arrivals: list[Any] = field(default_factory=list)

    if TYPE_CHECKING:  # what AcdService provides
        core: CoreServices
        config: acd_config.AcdConfig
        router: acd_core.Router
        calls: dict[str, Waiting]
        legs: dict[str, str]
        devices: dict[str, str]
        epoch_in_force: int | None
        fenced: bool
        _beat: asyncio.Event
        _queues: dict[str, Any]
        _enter: Callable[[str, Entry, float], None]
        _call_input: Callable[[str, Callable[[], list[Any]]], None]
        _apply: Callable[[list[Any]], None]
        _restore_callbacks: Callable[[], Any]
        on_call_event: Callable[[Any], None]
        _stopped: bool

    async def _adopt_now(self, restore: bool = False) -> None:
        try:
            await self.core.ami.wait_connected(timeout=60)
            # Every node connected now (several Asterisk nodes: ids qualified as the model's),
            # the primary first; a node away is adopted by its own resync when it connects.
            for node, ami in self._nodes_to_adopt():
                try:
                    listing = await ami.send("CoreShowChannels", shape="list", timeout=30)
                except CtiError as exc:
                    log.warning("acd could not look for waiting callers at start", node=node, error=str(exc))
                    continue
                await self.adopt([qualify(node, f.headers) for f in listing.events
                                  if f.headers.get("Event") == "CoreShowChannel"],
                                 ami=ami, primary=ami is self.core.ami)
        except CtiError as exc:
            log.warning("acd could not look for waiting callers at start", error=str(exc))
        finally:
            self.release_arrivals()
        if restore:
            await self._restore_callbacks()

    def _nodes_to_adopt(self) -> list[tuple[str | None, Any]]:
        """(the model's node name, its AMI client) of every connected node, primary first."""
        if not getattr(self.core, "multi", False):
            return [(None, self.core.ami)]
        nodes = getattr(self.core, "nodes", {})
        ordered = sorted(nodes.items(), key=lambda kv: kv[1] is not self.core.ami)
        return [(name, ami) for name, ami in ordered if ami is self.core.ami or ami.connected]

    async def node_resynced(self, node: str, ami: Any, channels: list[Any]) -> None:
        """Another Asterisk node (re)connected (``Core.node_hooks``; ``channels``: its
        listing, ids qualified): its waiting callers and talking agents are adopted,
        and offers held back for want of it go now."""
        await self.adopt(channels, ami=ami, primary=False)

    async def adopt(self, channels: list[Any], ami: Any = None, primary: bool = True) -> None:
        """After a (re)connect: take over callers already waiting in ``cti-acd-wait``
        (a daemon restart, or events missed while away), with what the dialplan
        set on their channel: their place, steps and max wait count from the wait
        start it stored. Agents found talking are on call (``_adopt_talking``), and
        they are taken first: a waiting caller adopted before them would be offered
        to an agent who only looks free (Asterisk lists channels in no order).
        ``ami``: the node the listing is from (default the primary); ``primary``: its
        epoch and heartbeat are the ones confirmed again (another node's are raised
        by the heartbeat loop on its own)."""
        if primary:
            # A new connection may be a restarted Asterisk, which has forgotten the epoch.
            self.epoch_in_force, self.fenced = None, False
            self._beat.set()

        def talking(item: Any) -> bool:
            context = item.get("Context")
            # An agent leg in cti-acd-callback has answered (the customer may still ring).
            return (context == "cti-acd-offer" and bool(item.get("BridgeId"))) or context == "cti-acd-callback"

        def ringing(item: Any) -> bool:
            return item.get("Context") == "cti-acd-offer" and not item.get("BridgeId")

        taken: set[int] = set()
        for i, item in enumerate(channels):
            if talking(item):
                await self._adopt_talking(item, ami=ami)
                taken.add(i)
            elif ringing(item) and await self._adopt_talking(item, ringing=True, ami=ami):
                taken.add(i)     # its agent is busy with it; unanswered, it comes back as an arrival
        # The waiting callers' variables are asked all at once (ADOPT_AT_ONCE in flight: a
        # takeover behind a long queue asked one caller after another, about 28 ms each),
        # their stored joins in one query; then they enter in the listing's order.
        pending: list[tuple[str, Waiting]] = []
        for i, item in enumerate(channels):
            context = item.get("Context")
            if i in taken or context not in ("cti-acd-wait", "cti-acd-announce", "cti-acd-offer"):
                continue
            call_id, channel = item.get("Linkedid") or item.get("Uniqueid"), item.get("Channel")
            if not call_id or not channel or call_id in self.calls:
                continue
            pending.append((call_id, Waiting(channel=channel)))
            self.calls[call_id] = pending[-1][1]          # claimed before we wait
        gate = asyncio.Semaphore(ADOPT_AT_ONCE)

        async def ask(channel: str) -> dict[str, str]:
            async with gate:
                return await self._getvars(channel, "CTI_QUEUE", "CTI_SKILLS", "CTI_PRIORITY", "CTI_CUSTOMER",
                                           "CTI_WAIT_START", ami=ami)

        found = await asyncio.gather(*(ask(w.channel) for _, w in pending))
        joins = await self._stored_joins([call_id for call_id, _ in pending]) if pending else {}
        for (call_id, waiting), values in zip(pending, found):
            try:
                since = float(values["CTI_WAIT_START"])
            except ValueError:
                since = time.time()
            try:
                priority = int(values["CTI_PRIORITY"]) if values["CTI_PRIORITY"] else None
            except ValueError:
                priority = None
            since = adopted_wait_start(since, joins.get(call_id))
            if self.calls.get(call_id) is not waiting:  # it left while we asked
                continue
            waiting.announced_at = since
            self.adopted += 1
            log.info("acd adopted a waiting caller", call_id=call_id, queue=values["CTI_QUEUE"])
            queue = values["CTI_QUEUE"] or self.core.settings.acd_default_queue
            # The call's record learns it waits (a model started after the caller queued did
            # not see it: a hang-up from here on must count as an abandon).
            self.core.bus.publish(*self.core.model.waiting_found(call_id, queue, since, time.time()))
            self._enter(call_id, Entry(queue, since, priority, parse_skills(values["CTI_SKILLS"]),
                                       values["CTI_CUSTOMER"] or None), time.time())
        # Asterisk can be told again: offers held back while the connection was down go now.
        self._apply(self.router.link_restored(time.time()))

    def release_arrivals(self) -> None:
        """End the hold of the first adoption: the arrivals held meanwhile are routed now,
        in their order (one adopted from the listing meanwhile is not entered twice)."""
        self.adopting = False
        held, self.held_arrivals = self.held_arrivals, []
        if self._stopped:       # cancelled by stop(): nothing is routed any more
            return
        for ev in held:
            self.on_call_event(ev)

    async def _stored_joins(self, call_ids: list[str]) -> dict[str, float]:
        """When these calls' records say they joined their queue, by call id (none without
        a database, or for a call never stored: a crash before the writer's next batch)."""
        pool = self.core.pool
        if pool is None:
            return {}
        try:
            rows = await pool.fetch("SELECT call_id, queue_joined_at FROM calls WHERE call_id = ANY($1::text[]) "
                                    "AND ended_at IS NULL AND queue_joined_at IS NOT NULL", call_ids)
        except Exception as exc:   # the record is a refinement: adopt from the dialplan's value
            log.warning("acd could not read waiting callers' stored queue joins", calls=len(call_ids),
                        error=str(exc))
            return {}
        return {r["call_id"]: r["queue_joined_at"].timestamp() for r in rows}

    async def _getvars(self, channel: str, *names: str, ami: Any = None) -> dict[str, str]:
        ami = ami if ami is not None else self.core.ami
        replies = await asyncio.gather(*(ami.send("Getvar", {"Channel": channel, "Variable": n},
                                                  shape="single") for n in names),
                                       return_exceptions=True)
        return {n: (r.response.headers.get("Value") or "") if not isinstance(r, BaseException) else ""
                for n, r in zip(names, replies)}

    async def _adopt_talking(self, item: Any, ringing: bool = False, ami: Any = None) -> bool:
        """An agent talking on a call we connected before a restart: the agent
        is on call until it ends, then wraps up (a caller connected to an agent
        in ``cti-acd-offer``, or an agent's callback leg in ``cti-acd-callback``).
        ``ringing``: a caller in ``cti-acd-offer`` whose Dial still rings the agent
        the dialplan named (``CTI_AGENT``): that agent is busy with it too (offered
        nothing else); if the ring goes unanswered the caller returns to the wait
        and arrives again. Returns whether the call was taken."""
        channel, uniqueid = item.get("Channel"), item.get("Uniqueid")
        if not channel or not uniqueid:
            return False
        callback = item.get("Context") == "cti-acd-callback"
        values = await self._getvars(channel, "CTI_AGENT", "CTI_QUEUE", "CTI_CALLBACK", ami=ami)
        agent = values["CTI_AGENT"]
        call_id = values["CTI_CALLBACK"] if callback else (item.get("Linkedid") or uniqueid)
        if not call_id or call_id in self.calls or agent not in {a.id for a in self.config.agents}:
            return False
        queue = values["CTI_QUEUE"]
        if queue not in self._queues:  # a callback leg does not carry it: any queue of the agent's
            memberships = self.config.agent(agent).queues
            queue = next(iter(memberships), self.core.settings.acd_default_queue)
        waiting = self.calls[call_id] = Waiting(channel=None if callback else channel, agent=agent, answered=True)
        if callback:
            waiting.leg = uniqueid
            self.legs[uniqueid] = call_id
        device = self.devices.get(agent, self.config.agent(agent).device)
        if not callback:
            self.core.model.expect_agent(call_id, agent, device)
        self._call_input(call_id, lambda: self.router.agent_on_call(agent, call_id, queue, time.time()))
        if not callback and not ringing:
            # The call's record learns its agent too (one who answered while we were away
            # is otherwise never named on it).
            self.core.bus.publish(*self.core.model.agent_found(call_id, agent, device, time.time()))
        self.adopted += 1
        log.info("acd adopted an agent on call", call_id=call_id, agent=agent, callback=callback, ringing=ringing)
        return True
