"""The ACD's leadership in Asterisk: its epoch, raised and kept, and the heartbeat
(docs/ha.md, "Fencing"; docs/acd.md).

Liveness: we set the global ``CTI_ACD_HEARTBEAT_<epoch>`` every 2 s. New
callers see a stale heartbeat and go to the app_queue fallback; waiting
callers check it every 20 s and go there too.

Fencing: every offer carries our leadership ``epoch``, which we raise in
Asterisk through ``[cti-acd-epoch]`` (it only rises); the dialplan refuses an
offer below the epoch in force (``on_offer_refused``) and reads only that
epoch's heartbeat. The values written and read are pure (``acd.epoch``).

Several Asterisk nodes (docs/scale-out.md): the primary node's epoch is raised
and confirmed as above; every other connected node gets the heartbeat too, and
our epoch raised once per connection (``_beat_other_nodes``: its outcome is
logged, not waited for), so callers on any node reach the ACD.

Mixed into ``AcdService`` (acd/routing_shell.py): it shares the service's
calls, listed under ``TYPE_CHECKING`` below.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import structlog

from acd.ami_actions import submit
from acd.epoch import (EPOCH_CHANNEL, EPOCH_GLOBAL, EPOCH_VARIABLE, heartbeat_variable, parse_action_refusal,
                       parse_refusal)
from acd.held_calls import Waiting
from cti.ami_inputs import ActionRefused, OfferRefused
from cti.errors import AmiError

if TYPE_CHECKING:
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

HEARTBEAT_EVERY = 2.0


@dataclass(kw_only=True)
class Heartbeat:
    """The epoch we lead with, what Asterisk confirmed of it, and the heartbeat's counters."""

    offers_refused: int = 0                     # by the dialplan: our epoch was below Asterisk's
    actions_refused: int = 0                    # our announcements, max waits, callbacks: refused likewise
    heartbeats: int = 0
    # Our leadership epoch (docs/ha.md): 1 for a lone daemon; the lease's when
    # leading a pair (``set_epoch``). Carried by every offer and the heartbeat.
    epoch: int = 1
    # The epoch Asterisk confirmed in force for us since the last (re)connect
    # (None: not raised yet); ``fenced``: Asterisk holds a higher one.
    epoch_in_force: int | None = None
    fenced: bool = False
    _beat: asyncio.Event = field(default_factory=asyncio.Event)
    # Other nodes: (epoch, connection's since) last raised there, by node name
    _raised: dict[str, tuple[int, float | None]] = field(default_factory=dict)

    if TYPE_CHECKING:  # what AcdService provides
        core: CoreServices
        calls: dict[str, Waiting]
        _offer_failed: Callable[[str, str, str, float], None]

    def on_offer_refused(self, ev: OfferRefused) -> None:
        """Bus subscriber (``cti.ami_inputs``): an offer of ours arrived below the epoch
        in force: the caller is back in the wait, nothing rang. Whoever leads now
        decides for the caller; here the offer ends as failed (the agent's hold ends,
        not ready "unreachable", so a fenced daemon does not offer in a loop)."""
        refusal = parse_refusal(ev)
        waiting = self.calls.get(refusal.call_id)
        if waiting is None or waiting.agent is None or waiting.agent != refusal.agent:
            return
        self.offers_refused += 1
        log.error("acd offer refused: a higher epoch is in force", call_id=refusal.call_id, agent=refusal.agent,
                  epoch=refusal.epoch, current=refusal.current)
        if refusal.current is not None and refusal.current > self.epoch:
            self.fenced, self.epoch_in_force = True, None
        agent, waiting.agent = waiting.agent, None
        self._offer_failed(refusal.call_id, agent, "failed", time.time())

    def on_action_refused(self, ev: ActionRefused) -> None:
        """Bus subscriber: one of our other routing actions (an announcement, a max
        wait, a callback leg) arrived below the epoch in force. The dialplan has
        already put the caller back in the wait (a callback leg: hung up before the
        customer was dialled); the leader in force decides for it. Here it is
        counted and logged, and a higher epoch in force marks us fenced. Another
        node's refusal (every node sees the UserEvent) is only counted by the node
        whose epoch it carried."""
        refusal = parse_action_refusal(ev)
        if refusal.epoch != self.epoch:
            return
        if refusal.action == "redirect" and (refusal.current is None or refusal.current <= self.epoch):
            # Our own epoch in force: the gate refused a Redirect that a later one of ours had
            # overtaken (acd.epoch.gate_action); the caller is where the later one sent it.
            log.info("acd gated redirect overtaken by a later one: not moved", call_id=refusal.call_id)
            return
        self.actions_refused += 1
        log.error("acd action refused: a higher epoch is in force", action=refusal.action, call_id=refusal.call_id,
                  callback=refusal.callback or None, epoch=refusal.epoch, current=refusal.current)
        if refusal.current is not None and refusal.current > self.epoch:
            self.fenced, self.epoch_in_force = True, None

    def set_epoch(self, epoch: int) -> None:
        """Lead with ``epoch`` from now on (the lease's, on a takeover): offers
        carry it at once; the heartbeat loop raises it in Asterisk and beats for it
        right away. Lowering it is allowed here (a test's deposed leader) but
        Asterisk keeps the highest, so such offers are refused."""
        heartbeat_variable(epoch)
        if epoch != self.epoch:
            log.info("acd epoch changed", old=self.epoch, new=epoch)
        self.epoch, self.epoch_in_force, self.fenced = epoch, None, False
        self._beat.set()

    async def raise_epoch(self) -> bool:
        """Raise Asterisk's epoch to ours through ``[cti-acd-epoch]`` (never by
        Setvar: it could lower it). True when ours is the epoch in force; False
        when a higher one is (we are fenced: every offer of ours is refused).
        Raises AmiError when Asterisk could not be asked."""
        epoch = self.epoch
        try:
            await self.core.ami.send("Originate", {"Channel": EPOCH_CHANNEL, "Application": "Hangup",
                                                   "Timeout": "5000", "Variable": f"{EPOCH_VARIABLE}={epoch}"},
                                     shape="single", timeout=10)
            ok = True
        except AmiError as exc:
            # Unanswered: a higher epoch is in force (or the dialplan is missing):
            # tell the two apart by asking.
            reply = await self.core.ami.send("Getvar", {"Variable": EPOCH_GLOBAL}, shape="single")
            current = reply.response.headers.get("Value") or ""
            if not current.isdigit() or int(current) <= epoch:
                raise AmiError(f"epoch {epoch} not raised (Asterisk has {current!r}): {exc}") from exc
            ok = False
        if epoch == self.epoch:
            self.epoch_in_force, self.fenced = (epoch, False) if ok else (None, True)
        if not ok:
            log.error("acd fenced: Asterisk holds a higher epoch; our offers are refused", epoch=epoch)
        return ok

    def _beat_other_nodes(self) -> None:
        """The heartbeat on every other connected node, and our epoch raised there
        once per connection; failures are logged (the next beat tries again)."""
        nodes = getattr(self.core, "nodes", None) or {}
        for name, ami in nodes.items():
            if ami is self.core.ami or not ami.connected:
                continue
            futs = [submit(ami, "Setvar", {"Variable": heartbeat_variable(self.epoch),
                                           "Value": str(int(time.time()))})]
            mark = (self.epoch, ami.health.since)
            if self._raised.get(name) != mark:
                self._raised[name] = mark
                futs.append(submit(ami, "Originate", {"Channel": EPOCH_CHANNEL, "Application": "Hangup",
                                                      "Timeout": "5000",
                                                      "Variable": f"{EPOCH_VARIABLE}={self.epoch}"}))

            def done(f: asyncio.Future[object], name: str = name) -> None:
                exc = f.exception() if not f.cancelled() else None
                if exc is not None:
                    log.warning("acd heartbeat not sent to a node", node=name, error=str(exc))

            for fut in futs:
                fut.add_done_callback(done)

    async def _run_heartbeat(self) -> None:
        """Every 2 s (at once after ``set_epoch`` or a reconnect): raise our epoch
        if Asterisk has not confirmed it since the last connect, then beat. The
        heartbeat is written before the raise completes: nobody reads ours until
        the epoch it names is in force, and then it is already fresh."""
        while True:
            self._beat.clear()
            ami = self.core.ami
            if ami is not None and ami.connected:
                beat = submit(ami, "Setvar", {"Variable": heartbeat_variable(self.epoch),
                                              "Value": str(int(time.time()))})
                if self.epoch_in_force != self.epoch and not self.fenced:
                    try:
                        await self.raise_epoch()
                    except AmiError as exc:
                        log.warning("acd epoch not raised", epoch=self.epoch, error=str(exc))
                try:
                    await beat
                    self.heartbeats += 1
                except AmiError as exc:
                    log.warning("acd heartbeat not sent", error=str(exc))
            self._beat_other_nodes()
            try:
                async with asyncio.timeout(HEARTBEAT_EVERY):
                    await self._beat.wait()
            except TimeoutError:
                pass
