"""The campaign runner: the imperative shell around the pure lead, window and pacing
decisions (docs/dialer.md, "The runner").

Every ``dialer_tick_s`` (and at once when a campaign call ends or a campaign is
started), for each running campaign in progressive or predictive mode:

1. ``launch_count`` (pure) says how many calls to start: the campaign's free agents
   in the ACD (agents of its queue), less those the inbound queues they also serve keep
   (``dialer.blending``: none while an inbound caller waits, none while the campaign's
   reserve for inbound is not met), then ``dialer.pacing.decide`` with the campaign's
   ``AbandonLedger`` headroom;
2. ``store.take_for_dialing`` takes that many leads that are due, inside their calling
   window, and not on the do-not-call list *now* (a listed number goes to ``do_not_call``
   and is never dialed);
3. each is an AMI ``Originate`` (asynchronous, ``Timeout`` = the campaign's ring time,
   at least 15 s) of ``dialer_dial`` into the dialplan context ``cti-dialer``, which runs
   ``AMD()`` and reports each step as ``UserEvent(CtiDialer)``.

What becomes of a call (``Attempt``, pure ``final_outcome``): not answered: the
``OriginateResponse`` reason (busy, no answer after the ring time, failed); answered:
AMD's word; a person goes to the ACD as a caller of the campaign's queue with 2 s to be
connected, else hears the campaign's abandonment message (``abandoned``); a machine gets
the voicemail drop or is hung up on (``machine``); connected to an agent (the call
model's ``call.connected``): ``answered``. The attempt is closed with its outcome, the
call's id (the leg's), AMD's status and cause and how long it rang; the lead moves on by
its campaign's retry rules (``store.record_outcome``).

A lead connected to an agent stays ``answered`` until the agent's result (the result
route, ``store.preview_result``); the runner pushes the lead card to that agent's desktop
(``on_connected``), writes when the connected call hung up, and every ``SWEEP_S`` closes
the leads whose result has not come ``dialer_result_timeout_s`` after their call ended
(pure ``stale_answered``; the lead goes ``done`` with ``answered_no_result``).

Each campaign dials by its own calling window and retry rules (``dialer.campaign_rules``,
stored with it; the defaults when it has none). Its abandonment ledger and measured pacing
inputs (live share, answer delay, handle time) are rebuilt from its stored attempts when
the runner first meets it after starting (a restart, a takeover in an HA pair: the runner
runs only on the leader, ``may_act``), the measured inputs again every ``MEASURE_S``.

The emergency stop (``pause_all``) stops placing calls at once, in memory, then writes
every running campaign ``paused``; calls in flight finish as they would.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import structlog

from acd.ami_actions import failure, submit
from cti.ami_inputs import DialerStep, LegHungUp, OriginateResult
from dialer import campaign_store, store
from dialer.blending import ArrivalLog, InboundQueue, InvalidReserve, ReserveConfig, inbound_queues, outbound_agents, \
    reserve_from_json
from dialer.campaign_rules import RulesCache, measured_from, rebuild_ledger
from dialer.leads import MIN_RING, InvalidRule, RetryRules, TransitionRefused
from dialer.pacing import MONTH, AbandonLedger, DialState, Measured, Mode, PacingConfig, decide
from dialer.windows import CallingWindow, InvalidWindow, WindowChecker

log = structlog.get_logger(__name__)

CONTEXT = "cti-dialer"
#: Outbound people wait at this priority in the ACD: above inbound callers, because they
#: have 2 s; the runner starts no call while an inbound caller waits (inbound first).
PRIORITY = 9

#: How long a call hung up before it was answered waits for its OriginateResponse.
ORIGINATE_GRACE_S = 2.0
#: How often the leads left answered without a result are looked for (seconds).
SWEEP_S = 30.0
#: How often a campaign's measured pacing inputs are read again from its attempts (seconds),
#: and over how many days.
MEASURE_S = 300.0
MEASURE_SPAN = timedelta(days=7)
#: A runner call still open this long after it started was placed by a process that is gone:
#: no unconnected campaign call lasts this long (120 s of ringing at most, AMD, a message).
ORPHAN_AFTER = timedelta(minutes=15)
#: The pacing inputs before a campaign has figures of its own (blended with them, worth 50 calls).
PRIOR = Measured(0.25, 8.0, 180.0)
# OriginateResponse Reason of a call nobody answered -> its outcome.
_NOT_ANSWERED = {"5": "busy", "3": "no_answer", "8": "failed", "1": "failed", "0": "failed"}


# -- pure ------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One campaign call, from its Originate to its end: what it has been through."""

    attempt_id: int
    lead_id: int
    campaign_id: int
    leg: str
    started: float                         # epoch seconds
    ring_s: int
    answered_at: float | None = None       # the customer's side answered (cti-dialer ran)
    amd_status: str | None = None
    amd_cause: str | None = None
    originate_reason: str | None = None    # set when the Originate failed
    agent: str | None = None               # connected to this agent
    abandoned: bool = False                # the abandonment message was started
    voicemail: bool = False                # the voicemail drop was played
    recorded: bool = False                 # the attempt's outcome is written
    rules: RetryRules | None = None        # the campaign's rules when the call was placed

    @property
    def person(self) -> bool:
        return self.amd_status in ("HUMAN", "NOTSURE")


def final_outcome(a: Attempt) -> str:
    """The outcome of an attempt that ended without an agent (``answered`` once one took it)."""
    if a.agent is not None:
        return "answered"
    if a.answered_at is None:
        return _NOT_ANSWERED.get(a.originate_reason or "0", "failed")
    if a.amd_status == "MACHINE" or a.voicemail:
        return "machine"
    if a.amd_status is None or a.amd_status == "HANGUP":
        # Hung up during AMD (or before it said anything): nobody was kept waiting.
        return "failed"
    # A person answered and no agent took them: abandoned (whether they heard the whole
    # message or hung up before the 2 s were over: counted against us either way).
    return "abandoned"


def rang(a: Attempt, now: float) -> timedelta:
    """How long the call rang: to the answer, or to its end."""
    end = a.answered_at if a.answered_at is not None else now
    return timedelta(seconds=max(0.0, end - a.started))


def stale_answered(connected_at: datetime, hung_up_at: datetime | None, live: bool, now: datetime,
                   after: timedelta) -> bool:
    """True when an answered lead has waited long enough for its agent's result to be closed
    without one: ``after`` past the end of its call. A call still live is never stale; one
    whose end was not seen (the daemon restarted during it) counts from its connection."""
    if live:
        return False
    end = hung_up_at if hung_up_at is not None else connected_at
    return now - end >= after


@dataclass(frozen=True, slots=True)
class AgentsView:
    """The campaign's agents in the ACD now: ``free`` (ready, idle), ``staffed`` (logged in,
    members of its queue) and the ``inbound`` queues they also serve (``dialer.blending``)."""
    free: int
    staffed: int
    inbound: tuple[InboundQueue, ...] = ()


@dataclass(frozen=True, slots=True)
class Pacing:
    """A campaign's pacing at one tick, as the board shows it: the calls started (``launch``)
    and why (``dialer.pacing.Decision.reason``, or ``inbound`` when the free agents were
    inbound's), the agents ``free`` for it after blending, its calls ``in_flight`` before the
    decision, and the measured inputs it used. ``dial_level``: the calls it then has ringing
    or in AMD per agent free for it (1.0 is progressive; above is predictive; None when no
    agent is free for it)."""
    launch: int
    reason: str
    free: int
    in_flight: int
    measured: Measured
    at: float

    @property
    def dial_level(self) -> float | None:
        return round((self.in_flight + self.launch) / self.free, 3) if self.free > 0 else None

    def view(self) -> dict[str, Any]:
        return {"dial_level": self.dial_level, "pacing_reason": self.reason, "free_for_campaign": self.free,
                "measured_live_rate": round(self.measured.live_rate, 4),
                "measured_answer_delay_s": round(self.measured.answer_delay_s, 2),
                "measured_handle_s": round(self.measured.handle_s, 1), "paced_at": self.at}


def pace(mode: str, agents: AgentsView, in_flight: int, headroom: int, measured: Measured,
         config: PacingConfig, *, now: float = 0.0, reserve: ReserveConfig = ReserveConfig()) -> Pacing:
    """How many calls a campaign starts at ``now`` (epoch seconds), and why. Preview starts
    none (the agent does); the inbound queues its agents serve take them first
    (``outbound_agents``: none while an inbound caller waits, none while the campaign's
    reserve for inbound is not met, else the free agents beyond it), and the inbound callers
    expected to arrive while its calls ring take free agents it may not count on
    (``dialer.pacing``, "Inbound on the same agents")."""
    if mode == "preview":
        return Pacing(0, "preview", max(0, agents.free), in_flight, measured, now)
    blend = outbound_agents(now, agents.free, agents.inbound, reserve)
    if blend.holds_back:
        # The free agents are inbound's: no call, not even on agents about to free.
        return Pacing(0, "inbound", 0, in_flight, measured, now)
    free = blend.outbound
    busy = max(0, agents.staffed - max(0, agents.free))
    cfg = PacingConfig(mode=Mode(mode), cap=config.cap, target=min(config.target, config.cap),
                       amd_false_positive_share=config.amd_false_positive_share,
                       max_lines_per_agent=config.max_lines_per_agent, inbound_quantile=config.inbound_quantile)
    # Inbound callers arriving while the calls ring take free agents (its reserve's first).
    state = DialState(free, busy, in_flight, inbound_per_s=blend.calls_per_hour / 3600.0,
                      inbound_spare=blend.reserved)
    decision = decide(state, measured, cfg, headroom)
    return Pacing(decision.launch, decision.reason, free, in_flight, measured, now)


def launch_count(mode: str, agents: AgentsView, in_flight: int, headroom: int, measured: Measured,
                 config: PacingConfig, *, now: float = 0.0, reserve: ReserveConfig = ReserveConfig()) -> int:
    """How many calls a campaign starts at ``now``: ``pace(...).launch``."""
    return pace(mode, agents, in_flight, headroom, measured, config, now=now, reserve=reserve).launch


def dial_string(template: str, number: str) -> str:
    """``template`` with ``{number}``: the number as stored (E.164: + and digits only)."""
    if not number.startswith("+") or not number[1:].isdigit():
        raise ValueError("not an E.164 number")
    return template.replace("{number}", number)


# -- the shell ---------------------------------------------------------------------------


@dataclass
class CampaignRunner:
    core: Any                                    # CoreServices
    acd: Any                                     # AcdService (None: nothing is dialed)
    windows: WindowChecker = field(default_factory=lambda: WindowChecker(CallingWindow()))
    rules: RetryRules = field(default_factory=RetryRules)
    measured: Measured = PRIOR
    calls: dict[str, Attempt] = field(default_factory=dict)        # leg -> attempt
    ledgers: dict[int, AbandonLedger] = field(default_factory=dict)
    #: Per campaign: its measured pacing inputs and when to read them again.
    measured_by: dict[int, tuple[Measured, datetime]] = field(default_factory=dict)
    paced: dict[int, Pacing] = field(default_factory=dict)     # campaign -> its last pacing
    #: False on a high-availability standby (``HaNode.may_act``): nothing is placed.
    may_act: Callable[[], bool] = lambda: True
    rebuilt: int = 0                             # ledgers rebuilt from the stored attempts
    orphans_closed: int = 0                      # attempts of a gone process closed as failed
    cache: RulesCache | None = None              # the campaigns' own windows and rules, built once each
    placed: int = 0
    stopped_at: float | None = None              # the last emergency stop (epoch seconds)
    _halted: bool = False                        # set by the emergency stop until the next start
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)
    _seq: int = 0
    _pending: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Called once a campaign call is connected and its attempt written: (attempt, call id, agent).
    on_connected: list[Callable[[int, str, str], Awaitable[Any]]] = field(default_factory=list)
    closed_no_result: int = 0
    _next_sweep: datetime | None = None
    #: The inbound queues' recent arrivals (blending's reserve measures their rate).
    arrivals: ArrivalLog = field(default_factory=ArrivalLog)

    async def start(self) -> None:
        """Start following calls and placing them. Again after ``stop`` (a new takeover):
        the ledgers and figures are rebuilt from the database, which the other node wrote."""
        self.ledgers.clear()
        self.measured_by.clear()
        self.paced.clear()
        self._halted = False
        self._next_sweep = None
        bus = self.core.bus
        self._unsubscribe = [bus.subscribe(self._on_call_event), bus.subscribe_to(DialerStep, self._on_step),
                             bus.subscribe_to(OriginateResult, self._on_originated),
                             bus.subscribe_to(LegHungUp, self._on_hangup)]
        self._task = asyncio.create_task(self._run(), name="dialer-runner")

    async def stop(self) -> None:
        for u in self._unsubscribe:
            u()
        self._unsubscribe = []
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def wake(self) -> None:
        self._halted = False
        self._wake.set()

    async def pause_all(self) -> list[int]:
        """The emergency stop: no call is placed from now (in memory, at once), then every
        running campaign is written paused. Returns the campaigns paused."""
        self._halted = True
        self.stopped_at = time.time()
        paused = await store.pause_all(self.core.pool)
        log.warning("dialer emergency stop", campaigns=paused)
        return paused

    # -- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        tick = self.core.settings.dialer_tick_s
        while True:
            try:
                await self.tick(datetime.now(timezone.utc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:          # the database away: try again next tick
                log.warning("dialer tick failed", error=str(exc))
            self._wake.clear()
            try:
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def tick(self, now: datetime) -> int:
        """Place the calls the running campaigns may start at ``now``; returns how many."""
        if not self.may_act():        # a standby (or a leader stepping down): nothing is written
            return 0
        if self.core.pool is not None and (self._next_sweep is None or now >= self._next_sweep):
            self._next_sweep = now + timedelta(seconds=SWEEP_S)
            await self.sweep(now)
        if self._halted or not self.may_act() or self.acd is None or self.core.ami is None \
                or self.core.pool is None:
            return 0
        started = 0
        for c in await store.running_campaigns(self.core.pool):
            if self._halted or not self.may_act():
                break
            try:
                windows, rules = self.campaign_rules(c)
                reserve = reserve_from_json(json.loads(c["reserve"])) if c.get("reserve") else ReserveConfig()
            except (InvalidRule, InvalidWindow, InvalidReserve) as exc:     # written around the API: never dialed
                log.warning("campaign rules unusable: not dialed", campaign_id=c["campaign_id"], error=str(exc))
                continue
            started += await self._campaign_tick(c, now, windows, rules, reserve)
        return started

    def campaign_rules(self, c: dict) -> tuple[WindowChecker, RetryRules]:
        """A running campaign's window checker and retry rules (its own, else the defaults:
        ``self.windows``, ``self.rules``). Raises ``InvalidRule``, ``InvalidWindow`` when what
        is stored is unusable."""
        if self.cache is None or self.cache.default is not self.windows or self.cache.base is not self.rules:
            self.cache = RulesCache(self.windows, self.rules)
        return self.cache.of(c)

    async def _history(self, cid: int, config: PacingConfig, now: datetime) -> None:
        """The campaign's ledger (first time) and measured inputs (every ``MEASURE_S``) from
        its stored attempts."""
        if cid not in self.ledgers:
            history = await campaign_store.ledger_history(self.core.pool, cid, now - MONTH)
            self.ledgers[cid] = rebuild_ledger(config, history, now)
            self.rebuilt += 1
            log.info("campaign ledger rebuilt", campaign_id=cid, minutes=len(history),
                     headroom=self.ledgers[cid].headroom(now))
        kept = self.measured_by.get(cid)
        if kept is None or now >= kept[1]:
            totals = await campaign_store.attempt_totals(self.core.pool, cid, now - MEASURE_SPAN)
            measured = measured_from(totals, self.measured, amd_false_positive_share=self._fp_share())
            self.measured_by[cid] = (measured, now + timedelta(seconds=MEASURE_S))

    def _fp_share(self) -> float:
        """The calibrated share of AMD's machine verdicts that were people (a setting)."""
        return float(getattr(self.core.settings, "dialer_amd_false_positive_share", 0.0))

    def _agents(self, queue: str | None, now: float) -> AgentsView | None:
        if queue is None:
            return None
        router = self.acd.router
        try:
            stats = router.queue_stats(queue, time.time())
        except Exception:        # an unknown queue: the campaign cannot dial
            return None
        return AgentsView(stats.agents_available, stats.agents_eligible,
                          tuple(inbound_queues(router, self.acd.config, queue, set(self.calls), self.arrivals, now)))

    async def sweep(self, now: datetime) -> int:
        """Close the leads left ``answered`` with no result ``dialer_result_timeout_s`` after
        their call ended (``stale_answered``). Returns how many."""
        after = timedelta(seconds=self.core.settings.dialer_result_timeout_s)
        live = {a.attempt_id for a in self.calls.values() if a.agent is not None}
        closed = 0
        for r in await store.awaiting_result(self.core.pool, now - after):
            if not stale_answered(r["connected_at"], r["hung_up_at"], r["attempt_id"] in live, now, after):
                continue
            lead = await store.close_no_result(self.core.pool, r["attempt_id"], now, rules=self.rules)
            if lead is not None:
                closed += 1
                log.info("campaign lead closed without a result", attempt=r["attempt_id"], lead=lead.lead_id)
        self.closed_no_result += closed
        await self.close_orphans(now)
        return closed

    async def close_orphans(self, now: datetime) -> int:
        """Close as ``failed`` the runner's attempts still open ``ORPHAN_AFTER`` after they
        started that this runner does not follow: calls of a process that ended (a restart,
        a leader that died) whose end nobody saw. Their leads would stay ``dialing`` for ever.
        Preview dials (an agent's) are not the runner's and are left. Returns how many."""
        ours = {a.attempt_id for a in self.calls.values()}
        closed = 0
        for r in await campaign_store.orphaned_attempts(self.core.pool, now - ORPHAN_AFTER):
            if r["attempt_id"] in ours:
                continue
            try:
                _, rules = self.campaign_rules(r)
            except (InvalidRule, InvalidWindow):
                rules = self.rules
            try:
                await store.record_outcome(self.core.pool, r["attempt_id"], "failed", now, rules=rules)
            except (TransitionRefused, store.DialerStoreError) as exc:
                log.warning("orphaned campaign attempt not closed", attempt=r["attempt_id"], error=str(exc))
                continue
            closed += 1
            log.warning("orphaned campaign attempt closed as failed", attempt=r["attempt_id"],
                        campaign_id=r["campaign_id"])
        self.orphans_closed += closed
        return closed

    async def _campaign_tick(self, c: dict, now: datetime, windows: WindowChecker, rules: RetryRules,
                             reserve: ReserveConfig = ReserveConfig()) -> int:
        cid = c["campaign_id"]
        agents = self._agents(c["queue"], now.timestamp())
        if agents is None:
            return 0
        config = PacingConfig(cap=float(c["abandon_cap"]), target=min(0.0175, float(c["abandon_cap"])),
                              amd_false_positive_share=self._fp_share())
        if c["mode"] != "preview":
            await self._history(cid, config, now)
        ledger = self.ledgers.get(cid)
        if ledger is None:
            return 0
        ledger.config = config            # the cap as the campaign says now
        measured = self.measured_by[cid][0] if cid in self.measured_by else self.measured
        in_flight = sum(1 for a in self.calls.values() if a.campaign_id == cid and a.agent is None)
        paced = pace(c["mode"], agents, in_flight, ledger.headroom(now), measured, config, now=now.timestamp(),
                     reserve=reserve)
        self.paced[cid] = paced
        n = paced.launch
        if n <= 0:
            return 0
        taken = await store.take_for_dialing(self.core.pool, cid, now, n, rules=rules, windows=windows)
        for t in taken:
            if self._halted or not self.may_act():   # stopped while the leads were taken
                await self._close(t.attempt_id, "failed", now, rules)
                continue
            self._originate(c, t.lead.phone, t.lead.lead_id, t.attempt_id, rules)
        return len(taken)

    def _originate(self, c: dict, phone: str, lead_id: int, attempt_id: int, rules: RetryRules | None = None) -> None:
        self._seq += 1
        leg = f"dialer-{attempt_id}-{self._seq}"
        # Several Asterisk nodes: placed on the primary and named as its events will carry it.
        primary_id = getattr(self.core, "primary_id", None)
        leg = primary_id(leg) if primary_id is not None else leg
        ring_s = max(int(MIN_RING.total_seconds()), int(c["ring_s"]))
        a = self.calls[leg] = Attempt(attempt_id, lead_id, c["campaign_id"], leg, time.time(), ring_s, rules=rules)
        variables = {
            "CTI_DIALER_ATTEMPT": str(attempt_id), "CTI_DIALER_CAMPAIGN": str(c["campaign_id"]),
            "CTI_QUEUE": c["queue"], "CTI_SKILLS": c["skills"] or "", "CTI_PRIORITY": str(PRIORITY),
            "CTI_DIALER_MACHINE": c["machine_action"],
            "CTI_DIALER_ABANDON_PROMPT": c["abandon_prompt"] or "",
            "CTI_DIALER_VM_PROMPT": c["voicemail_prompt"] or "",
        }
        headers = {
            "Channel": dial_string(self.core.settings.dialer_dial, phone), "Context": CONTEXT, "Exten": "s",
            "Priority": "1", "Timeout": str(ring_s * 1000), "Async": "true", "ChannelId": leg,
            "OtherChannelId": f"{leg}-2", "Variable": [f"{k}={v}" for k, v in variables.items()],
        }
        if c["caller_id"]:
            headers["CallerID"] = f'"{c["name"][:40]}" <{c["caller_id"]}>'.replace(",", " ")
        fut = submit(self.core.ami, "Originate", headers)
        self.placed += 1
        log.info("campaign call placed", campaign_id=c["campaign_id"], attempt=attempt_id, leg=leg)

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            if exc is not None and not a.recorded:
                log.warning("campaign call not placed", attempt=attempt_id, error=str(exc))
                a.originate_reason = "0"
                self._finish(a)

        fut.add_done_callback(done)

    # -- what Asterisk says ------------------------------------------------------------

    def _on_originated(self, ev: OriginateResult) -> None:
        a = self.calls.get(ev.uniqueid)
        if a is None or ev.success:
            return
        a.originate_reason = ev.reason
        self._finish(a)

    def _on_step(self, ev: DialerStep) -> None:
        a = self.calls.get(ev.uniqueid)
        if a is None or ev.attempt != str(a.attempt_id):
            return
        if ev.step == "answered":
            a.answered_at = time.time()
        elif ev.step == "amd":
            a.amd_status = ev.status.strip().upper()[:20] or None
            a.amd_cause = ev.cause.strip()[:100] or None
            self._ledger(a).record(datetime.now(timezone.utc), live=1 if a.person else 0,
                                   machines=1 if a.amd_status == "MACHINE" else 0)
        elif ev.step == "abandoned" and a.agent is None and not a.abandoned:
            a.abandoned = True
            self._ledger(a).record(datetime.now(timezone.utc), abandoned=1)
            # Out of the router: nobody may be offered a call that is hearing goodbye.
            if self.acd is not None:
                self.acd.divert(a.leg, "campaign call abandoned")
        elif ev.step == "voicemail":
            a.voicemail = True

    def _on_call_event(self, ev: Any) -> None:
        if ev.kind != "call.connected":
            return
        a = self.calls.get(ev.call_id)
        if a is None or a.agent is not None or a.abandoned:
            return
        a.agent = str(ev.data.get("agent") or "") or None
        if a.agent is not None:
            self._record(a, "answered")

    def _on_hangup(self, ev: LegHungUp) -> None:
        a = self.calls.get(ev.uniqueid)
        if a is None:
            return
        if a.answered_at is None and a.originate_reason is None:
            # Never answered: the OriginateResponse says why (busy, no answer) and may come
            # after the Hangup; wait for it a moment (a call lost otherwise is "failed").
            asyncio.get_running_loop().call_later(ORIGINATE_GRACE_S, self._finish_unless_done, a)
            return
        self._finish(a)

    def _finish_unless_done(self, a: Attempt) -> None:
        if not a.recorded:
            self._finish(a)

    def _ledger(self, a: Attempt) -> AbandonLedger:
        ledger = self.ledgers.get(a.campaign_id)
        if ledger is None:
            config = PacingConfig(amd_false_positive_share=self._fp_share())
            ledger = self.ledgers[a.campaign_id] = AbandonLedger(config)
        return ledger

    def _finish(self, a: Attempt) -> None:
        """The call is over: its outcome written (once), its place freed, the loop woken."""
        self.calls.pop(a.leg, None)
        if not a.recorded:
            self._record(a, final_outcome(a))
        elif a.agent is not None:
            self._record_hung_up(a)
        self._wake.set()

    def _record_hung_up(self, a: Attempt) -> None:
        task = asyncio.get_running_loop().create_task(self._hung_up(a, datetime.now(timezone.utc)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _hung_up(self, a: Attempt, now: datetime) -> None:
        # After the attempt's own write (answered): the row it updates is then closed.
        await asyncio.gather(*[t for t in self._pending if t.get_name() == f"dialer-write-{a.attempt_id}"],
                             return_exceptions=True)
        try:
            await store.call_hung_up(self.core.pool, a.attempt_id, now)
        except Exception as exc:
            log.warning("campaign call end not written", attempt=a.attempt_id, error=str(exc))

    def _record(self, a: Attempt, outcome: str) -> None:
        a.recorded = True
        now = datetime.now(timezone.utc)
        task = asyncio.get_running_loop().create_task(self._write(a, outcome, now, rang(a, time.time())),
                                                      name=f"dialer-write-{a.attempt_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, a: Attempt, outcome: str, now: datetime, ring: timedelta) -> None:
        base = a.rules or self.rules
        rules = RetryRules(ring_timeout=timedelta(seconds=a.ring_s), per_outcome=base.per_outcome,
                           max_attempts=base.max_attempts, skip_delay=base.skip_delay,
                           max_callback_ahead=base.max_callback_ahead, machine_voicemail=a.voicemail)
        try:
            lead = await store.record_outcome(self.core.pool, a.attempt_id, outcome, now, rules=rules, rang=ring,
                                              call_id=a.leg, amd_status=a.amd_status, agent_id=a.agent,
                                              amd_cause=a.amd_cause)
        except (TransitionRefused, store.DialerStoreError) as exc:
            log.warning("campaign attempt not recorded", attempt=a.attempt_id, error=str(exc))
            return
        except Exception as exc:
            log.error("campaign attempt not recorded", attempt=a.attempt_id, error=str(exc))
            return
        log.info("campaign attempt", attempt=a.attempt_id, outcome=outcome, lead_state=lead.state.value,
                 amd=a.amd_status)
        if outcome == "answered" and a.agent is not None:
            for hook in self.on_connected:
                try:
                    await hook(a.attempt_id, a.leg, a.agent)
                except Exception as exc:      # the desktop's card is a convenience: the lead is written
                    log.warning("campaign card not sent", attempt=a.attempt_id, error=str(exc))

    async def _close(self, attempt_id: int, outcome: str, now: datetime, rules: RetryRules) -> None:
        await store.record_outcome(self.core.pool, attempt_id, outcome, now, rules=rules)

    def pacing(self, campaign_id: int) -> dict[str, Any] | None:
        """The campaign's last pacing (``Pacing.view``); None when this runner is not running
        (a standby) or has not paced it since it started."""
        if self._task is None:
            return None
        paced = self.paced.get(campaign_id)
        return None if paced is None else paced.view()

    def in_flight(self, campaign_id: int) -> int | None:
        """The campaign's calls ringing or in AMD now (not yet connected); None when this
        runner is not running (a standby)."""
        if self._task is None:
            return None
        return sum(1 for a in self.calls.values() if a.campaign_id == campaign_id and a.agent is None)

    def health(self) -> dict[str, Any]:
        return {"placed": self.placed, "in_flight": len(self.calls), "halted": self._halted,
                "stopped_at": self.stopped_at, "closed_no_result": self.closed_no_result,
                "running": self._task is not None, "ledgers_rebuilt": self.rebuilt,
                "orphans_closed": self.orphans_closed}
