"""The ACD's AMI actions out: written when decided, replies seen to by callbacks
(docs/acd.md, "Why Redirect into Dial"; docs/ha.md, "Fencing in the dialplan").

Each action goes to the caller's node (several Asterisk nodes: ``CoreServices.ami_for``)
and carries our epoch in the very value the dialplan acts on (``acd.epoch``): the offer
(``CTI_OFFER`` and the Redirect into ``cti-acd-offer``, on the wire before the caller's
event is done with), the maximum wait, the position announcements and a supervisor's
move. Mixed into ``AcdService`` (acd/routing_shell.py): it shares the service's calls,
router and counters, listed under ``TYPE_CHECKING`` below.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import structlog

from acd.ami_actions import failure, submit_all
from acd.epoch import Action, announce_actions, gated, maxwait_actions, move_actions, offer_value, redirect_action
from acd.held_calls import Waiting
from cti.errors import AmiDisconnected, AmiNotConnected

if TYPE_CHECKING:
    from acd import core as acd_core
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Sending:
    """What the ACD writes to Asterisk, and how a failed write ends."""

    if TYPE_CHECKING:  # what AcdService provides
        offers_sent: int
        offers_failed: int
        core: CoreServices
        calls: dict[str, Waiting]
        router: acd_core.Router
        epoch: int
        carried: dict[str, str]
        _stopped: bool
        _apply: Callable[[list[Any]], None]
        _offer_failed: Callable[[str, str, str, float], None]
        _annotate: Callable[..., None]
        may_act: Callable[[], bool]
        gate_redirects: bool
        gate_seq: Iterator[int]

    def _ami(self, call_id: str) -> Any:
        """The AMI client of the caller's node (several Asterisk nodes), else the one."""
        ami_for = getattr(self.core, "ami_for", None)
        return ami_for(call_id) if ami_for is not None else self.core.ami

    def _gate(self, actions: list[Action]) -> list[Action]:
        """In a pair, the routing Redirects through the dialplan's epoch gate
        (``gate_redirects``; ``acd.epoch.gated``), else as they are."""
        return gated(self.epoch, actions, self.gate_seq) if self.gate_redirects else actions

    def _redirect(self, call_id: str, channel: str, context: str, exten: str) -> None:
        """Send the caller to ``context,exten,1`` (through the gate in a pair); a failure is logged."""
        fut = submit_all(self._ami(call_id), self._gate([redirect_action(channel, context, exten)]))

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            if exc is not None:
                log.warning("redirect failed", call_id=call_id, context=context, error=str(exc))

        fut.add_done_callback(done)

    def _send_offer(self, d: Any, channel: str, device: str | None = None) -> None:
        """``CTI_OFFER`` and the Redirect into ``cti-acd-offer`` (through the gate in a
        pair), both on the wire before this returns: the caller's arrival costs one AMI
        round trip. On the caller's node (``device``: how the agent's phone is reached
        from there)."""
        value = offer_value(self.epoch, d.agent_id, d.ring_timeout_s, device or d.device)
        both = submit_all(self._ami(d.call_id), self._gate([
            ("Setvar", {"Channel": channel, "Variable": "CTI_OFFER", "Value": value}),
            redirect_action(channel, "cti-acd-offer", "s")]))
        log.debug("acd offer written", call_id=d.call_id, agent=d.agent_id, written_at=time.time())
        both.add_done_callback(lambda f: self._offer_done(d, f))

    def _offer_done(self, d: Any, fut: asyncio.Future[Any]) -> None:
        exc = failure(fut)
        if self._stopped:
            return
        if exc is None:
            self.offers_sent += 1
            log.debug("acd offer replied", call_id=d.call_id, agent=d.agent_id, replied_at=time.time())
            return
        self.offers_failed += 1
        log.warning("offer not placed", call_id=d.call_id, agent=d.agent_id, error=str(exc))
        waiting = self.calls.get(d.call_id)
        if waiting is not None and waiting.agent == d.agent_id:
            if isinstance(exc, AmiDisconnected):
                # Written, fate unknown: it may ring. The offer stands (the router's ring
                # guard ends it if nothing is heard); nothing more is offered until resync.
                self._apply(self.router.link_lost(time.time()))
                return
            waiting.agent = None
            self._offer_unplaced(d.call_id, d.agent_id, exc, time.time())

    def _offer_unplaced(self, call_id: str, agent: str, exc: BaseException, now: float) -> None:
        """An offer's AMI action failed. Nothing written for want of a connection is
        no fault of the agent's: the agent is free again, the call waits in its
        place, and nothing is offered until the connection is back (``adopt``, on
        every reconnect, calls ``link_restored``); without that rule one dead
        connection ran every waiting caller through every free agent, leaving them
        all not ready "unreachable". Any other failure (Asterisk refused, no reply)
        ends the offer as failed."""
        if isinstance(exc, AmiNotConnected) and call_id not in self.carried:
            self._apply(self.router.link_lost(now))
            self._apply(self.router.offer_unsent(call_id, agent, now))
        else:
            self._offer_failed(call_id, agent, "failed", now)

    def _send_maxwait(self, call_id: str, channel: str, action: str) -> None:
        """The queue's maximum wait: ``CTI_MAXWAIT`` (with our epoch) and the Redirect
        into ``cti-acd-maxwait,<action>``; a failure is logged."""
        both = submit_all(self._ami(call_id), self._gate(maxwait_actions(self.epoch, channel, action)))

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            if exc is not None:
                log.warning("max wait action not sent", call_id=call_id, action=action, error=str(exc))

        both.add_done_callback(done)

    def _announcements(self, now: float) -> None:
        """Queue a position/wait announcement for callers due one."""
        every = self.core.settings.acd_announce_every
        if every <= 0 or not self.may_act():
            return
        for w in self.router.waiting_calls():
            waiting = self.calls.get(w.call_id)
            if (w.status != "waiting" or waiting is None or waiting.agent is not None
                    or waiting.channel is None or waiting.callback is not None):
                continue
            if now - waiting.announced_at >= every:
                waiting.announced_at = now
                self._announce(w.call_id)

    def _announce(self, call_id: str) -> None:
        # Written now, so in wire order after any offer already decided: an
        # announcement never pulls a caller out of an agent's ringing, and an
        # offer decided after it redirects the caller out of the announcement.
        waiting = self.calls.get(call_id)
        if waiting is None or waiting.agent is not None or waiting.channel is None or waiting.callback is not None:
            return
        now = time.time()
        position = self.router.position(call_id)
        if not position:
            return
        ewt = self.router.estimated_wait(call_id, now)
        minutes = -1 if ewt is None else max(1, round(ewt / 60))
        both = submit_all(self._ami(call_id), self._gate(announce_actions(self.epoch, waiting.channel, position,
                                                                            minutes)))

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            if exc is None:
                self._annotate(call_id, "acd.announced", position=position, minutes=minutes)
            else:
                log.warning("announcement not played", call_id=call_id, error=str(exc))

        both.add_done_callback(done)

    def _write_move(self, call_id: str, channel: str, queue: str, priority: int) -> None:
        """The moved caller's ``CTI_QUEUE``/``CTI_PRIORITY``, through the dialplan's epoch
        gate (``acd.epoch.move_actions``), not plain Setvars; a failure is logged."""
        try:
            actions = move_actions(self.epoch, channel, queue, priority)
        except ValueError as exc:
            log.warning("acd move not written to the channel", call_id=call_id, error=str(exc))
            return

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            if exc is not None:
                log.warning("acd move not written to the channel", call_id=call_id, error=str(exc))

        submit_all(self._ami(call_id), actions).add_done_callback(done)
