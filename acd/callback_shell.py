"""The callback machine's shell: callers who asked to be called back, from the
dialplan's request to the agent's call to them (docs/acd.md, "Callbacks").

The states and their rules are pure (``acd.callbacks``: ``parse_request``,
``after_attempt``, ``agent_missed``). This shell feeds them and carries them
out: the dialplan's ``CtiCallbackRequest``/``CtiCallbackResult`` UserEvents
and what becomes of the agent legs we originate (``OriginateResponse``,
``Hangup``) come in typed on the bus (``cti.ami_inputs``, ``subscribe_inputs``); a request waits in
the router like a caller, keeping its place; an offer to an agent becomes an
``Originate`` of the agent's device into ``cti-acd-callback``, which then dials
the customer; every state is saved (``acd.callback_db``) and open requests wait
again after a restart (``_restore_callbacks``).

Mixed into ``AcdService`` (acd/routing_shell.py): it shares the service's
calls and router, listed under ``TYPE_CHECKING`` below.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import structlog

from acd import callback_db
from acd import callbacks as cbs
from acd import core as acd_core
from acd.ami_actions import failure, submit
from acd.epoch import callback_variables
from acd.held_calls import Entry, Waiting, parse_skills
from cti.ami_inputs import CallbackRequest, CallbackResult, LegHungUp, OriginateResult

if TYPE_CHECKING:
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

# OriginateResponse Reason of an agent leg that did not answer -> the router's reason.
_ORIGINATE_FAILED = {"3": "noanswer", "5": "busy", "8": "failed", "1": "rejected", "0": "failed"}


@dataclass(kw_only=True)
class CallbackShell:
    """The callback requests' state beside the service's: counters, the agent legs
    we originated (leg -> call), the requests waiting to try again."""

    callbacks_requested: int = 0
    callbacks_restored: int = 0
    legs: dict[str, str] = field(default_factory=dict)           # callback agent leg -> call id
    retries: dict[str, cbs.Callback] = field(default_factory=dict)  # callbacks waiting to try again
    _cb_writer: callback_db.CallbackWriter | None = None
    _leg_seq: int = 0

    if TYPE_CHECKING:  # what AcdService provides
        core: CoreServices
        calls: dict[str, Waiting]
        router: acd_core.Router
        carried: dict[str, str]
        offers_sent: int
        offers_failed: int
        epoch: int
        _pool: Any
        _queues: dict[str, Any]
        _stopped: bool
        _apply: Callable[[list[Any]], None]
        _enter: Callable[[str, Entry, float], None]
        _offer_failed: Callable[[str, str, str, float], None]
        _offer_unplaced: Callable[[str, str, BaseException, float], None]
        _annotate: Callable[..., None]
        _ami: Callable[[str], Any]

    def _start_saving(self) -> None:
        """Callback states are saved from now on (with a database)."""
        if self._pool is not None:
            self._cb_writer = callback_db.CallbackWriter(self._pool)
            self._cb_writer.start()

    async def _stop_saving(self) -> None:
        if self._cb_writer is not None:
            await self._cb_writer.stop()

    def subscribe_inputs(self) -> list[Callable[[], None]]:
        """Take the callback requests and results from the dialplan, and what becomes
        of the agent legs we originate, from the bus; returns the unsubscribes."""
        bus = self.core.bus
        return [bus.subscribe_to(CallbackRequest, self._callback_requested),
                bus.subscribe_to(CallbackResult, self._callback_result),
                bus.subscribe_to(OriginateResult, self._originated),
                bus.subscribe_to(LegHungUp, self._hung_up)]

    def _originated(self, ev: OriginateResult) -> None:
        if ev.uniqueid in self.legs:
            self._leg_originated(ev.uniqueid, ev.success, ev.reason)

    def _hung_up(self, ev: LegHungUp) -> None:
        if ev.uniqueid in self.legs:
            self._leg_ended(ev.uniqueid)

    def _save(self, cb: cbs.Callback) -> None:
        if self._cb_writer is not None:
            self._cb_writer.save(cb)

    def _callback_requested(self, req: CallbackRequest) -> None:
        now = time.time()
        try:
            cb = cbs.parse_request(req, now, self.core.settings.acd_default_queue)
        except cbs.CallbackError as exc:
            log.error("callback request refused", error=str(exc))
            return
        if cb.queue not in self._queues:
            log.warning("callback request for an unknown queue: default queue used", call_id=cb.callback_id,
                        queue=cb.queue)
            cb = replace(cb, queue=self.core.settings.acd_default_queue)
        call_id = cb.callback_id
        waiting = self.calls.get(call_id)
        if waiting is not None and waiting.callback is not None:
            log.info("callback already requested", call_id=call_id)
            return
        if waiting is not None and waiting.agent is not None:
            log.info("callback request dropped: an agent is ringing for the caller", call_id=call_id)
            return
        self.callbacks_requested += 1
        view = next((w for w in self.router.waiting_calls() if w.call_id == call_id), None)
        if waiting is not None and view is not None:
            # Waiting in the router: the request takes over the caller's place.
            cb = replace(cb, since=view.arrived_at, queue=view.queue_id)
            waiting.callback = cb
            if waiting.entry is not None:
                waiting.entry = replace(waiting.entry, since=view.arrived_at, callback=True)
            self._apply(self.router.to_callback(call_id, now))
        else:
            if waiting is None:
                waiting = self.calls[call_id] = Waiting(channel=req.channel or None)
            waiting.callback = cb
            self._enter_callback(cb, now)
        self._save(cb)
        self._annotate(call_id, "acd.callback_requested", number=cb.number, queue=cb.queue,
                       waited=round(now - cb.since, 3))
        log.info("callback requested", call_id=call_id, queue=cb.queue, since=cb.since)

    def _enter_callback(self, cb: cbs.Callback, now: float) -> None:
        self._enter(cb.callback_id, Entry(cb.queue, cb.since, cb.priority, parse_skills(cb.skills),
                                          cb.customer_id, callback=True), now)

    def _originate_callback(self, d: Any) -> None:
        waiting = self.calls.get(d.call_id)
        if waiting is None or waiting.callback is None or waiting.agent != d.agent_id:
            return
        settings = self.core.settings
        cb = waiting.callback
        self._leg_seq += 1
        leg = f"{d.call_id}-cb{self._leg_seq}"
        cb = waiting.callback = replace(cb, status=cbs.DIALING, agent_id=d.agent_id, last_leg=leg)
        waiting.leg, waiting.answered = leg, False
        self.legs[leg] = d.call_id
        self._save(cb)
        variables = {
            "CTI_CALLBACK": d.call_id, "CTI_AGENT": d.agent_id,
            "CTI_CALLBACK_DIAL": cbs.dial_string(settings.acd_callback_dial, cb.number),
            "CTI_CALLBACK_RING": str(settings.acd_callback_ring_s),
            "CTI_CALLBACK_CID": settings.acd_callback_caller_id,
        }
        # On the node of the call (several Asterisk nodes): the leg's id starts with the
        # call's, hence with that node's prefix, and its events are found by it.
        fut = submit(self._ami(d.call_id), "Originate", {
            "Channel": d.device, "Context": "cti-acd-callback", "Exten": "s", "Priority": "1",
            "Timeout": str(int(d.ring_timeout_s * 1000)), "Async": "true",
            "CallerID": f'"Callback" <{cb.number}>', "ChannelId": leg, "OtherChannelId": f"{leg}-2",
            "Variable": callback_variables(self.epoch, variables),
        })

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            if self._stopped:
                return
            if exc is None:
                self.offers_sent += 1
                return
            self.offers_failed += 1
            log.warning("callback offer not placed", call_id=d.call_id, agent=d.agent_id, error=str(exc))
            self.legs.pop(leg, None)
            if waiting.agent == d.agent_id:
                waiting.agent = None
                self._callback_missed(d.call_id, waiting)
                self._offer_unplaced(d.call_id, d.agent_id, exc, time.time())

        fut.add_done_callback(done)

    def _callback_missed(self, call_id: str, waiting: Waiting) -> None:
        """The agent did not take the callback: it waits again, no attempt spent."""
        if waiting.leg is not None:
            self.legs.pop(waiting.leg, None)
            waiting.leg = None
        if waiting.callback is not None:
            waiting.callback = cbs.agent_missed(waiting.callback)
            self._save(waiting.callback)

    def _leg_originated(self, leg: str, answered: bool, reason: str) -> None:
        call_id = self.legs[leg]
        waiting = self.calls.get(call_id)
        if waiting is None or waiting.agent is None or waiting.leg != leg:
            return
        now = time.time()
        if answered:
            waiting.answered = True
            self.carried.pop(call_id, None)
            self._apply(self.router.offer_answered(call_id, waiting.agent, now))
            return
        agent, waiting.agent = waiting.agent, None
        self._callback_missed(call_id, waiting)
        self._offer_failed(call_id, agent, _ORIGINATE_FAILED.get(reason, "failed"), now)

    def _callback_result(self, res: CallbackResult) -> None:
        call_id = res.callback_id
        waiting = self.calls.get(call_id)
        if waiting is None or waiting.callback is None:
            return
        s = self.core.settings
        cb = waiting.callback = cbs.after_attempt(waiting.callback, res.status, time.time(),
                                                  max_attempts=s.acd_callback_attempts,
                                                  retry_s=s.acd_callback_retry_s)
        self._save(cb)
        self._annotate(call_id, "acd.callback_attempt", agent=cb.agent_id, result=cb.last_result,
                       status=cb.status, attempts=cb.attempts)
        log.info("callback attempt", call_id=call_id, agent=cb.agent_id, result=cb.last_result, status=cb.status,
                 attempts=cb.attempts)

    def _leg_ended(self, leg: str) -> None:
        call_id = self.legs.pop(leg)
        waiting = self.calls.get(call_id)
        if waiting is None or waiting.leg != leg:
            return
        waiting.leg = None
        now = time.time()
        agent, waiting.agent = waiting.agent, None
        if agent is not None and not waiting.answered:  # ended before any OriginateResponse
            self._callback_missed(call_id, waiting)
            self._offer_failed(call_id, agent, "noanswer", now)
            return
        cb = waiting.callback
        if cb is not None and cb.status == cbs.DIALING:  # the result never came: count a failed try
            cb = waiting.callback = cbs.after_attempt(cb, "UNKNOWN", now, max_attempts=self.core.settings.
                                                      acd_callback_attempts,
                                                      retry_s=self.core.settings.acd_callback_retry_s)
            self._save(cb)
        if agent is not None:
            self._apply(self.router.call_finished(call_id, agent, now))
        waiting.answered = False
        if cb is not None and cb.status == cbs.PENDING:
            self.retries[call_id] = cb
        else:
            del self.calls[call_id]

    def _retry_callbacks(self, now: float) -> None:
        due = [cb for cb in self.retries.values() if (cb.not_before or 0) <= now]
        for cb in due:
            del self.retries[cb.callback_id]
            waiting = self.calls.get(cb.callback_id)
            if waiting is None or waiting.callback is None:
                continue
            self._enter_callback(waiting.callback, now)

    async def _restore_callbacks(self) -> None:
        """At start: callback requests left open by the last run wait again in their place."""
        delay = 1.0
        while True:
            try:
                found = await callback_db.load_open(self._pool)
                break
            except Exception as exc:  # the database may come later: keep trying
                log.warning("callback requests not loaded yet", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
        now = time.time()
        for cb in found:
            waiting = self.calls.get(cb.callback_id)
            if waiting is not None:
                if waiting.callback is None and waiting.leg is not None:  # its agent is still on the line
                    waiting.callback = cb
                continue
            if cb.queue not in self._queues:
                cb = replace(cb, queue=self.core.settings.acd_default_queue)
            cb = replace(cb, status=cbs.PENDING, agent_id=None)
            self.calls[cb.callback_id] = Waiting(channel=None, callback=cb)
            self.callbacks_restored += 1
            if cb.not_before is not None and cb.not_before > now:
                self.retries[cb.callback_id] = cb
            else:
                self._enter_callback(cb, now)
        if found:
            log.info("callback requests restored", count=len(found))

    def request_callback(self, call_id: str, number: str, queue: str, since: float | None = None, *,
                         not_before: float | None = None, customer_id: str | None = None) -> cbs.Callback:
        """File a callback for a caller no longer on the line (a supervisor's call-back
        button for an abandoned caller, the web callback form): it is stored and waits
        in ``queue`` like any callback request, keeping the place ``since`` (the
        caller's first arrival; now when None or older than a day). Its id is
        ``call_id``. ``not_before`` (a time to come: the customer's preferred time)
        holds it back until then, its place taken at that time. ``customer_id``: the
        customer it is for (routing by customer, the agent's screen-pop).
        Raises: ``CallbackError`` (bad number or queue) or ``AcdInputError`` (a
        request for this call is already open, or the queue is unknown)."""
        now = time.time()
        if queue not in self._queues:
            raise acd_core.AcdInputError(f"unknown queue {queue!r}")
        if call_id in self.calls:
            raise acd_core.AcdInputError(f"call {call_id!r} is still waiting or already has a callback")
        cb = cbs.parse_request(CallbackRequest(call_id, "", number, queue, "", "", customer_id or "",
                                               "" if since is None else repr(float(since))), now, queue)
        self.calls[call_id] = Waiting(channel=None, callback=cb)
        self.callbacks_requested += 1
        if not_before is not None and not_before > now:
            cb = self.calls[call_id].callback = replace(cb, since=not_before, not_before=not_before)
            self.retries[call_id] = cb
        else:
            self._enter_callback(cb, now)
        self._save(cb)
        log.info("callback filed", call_id=call_id, queue=queue)
        return cb
