"""Emergency mode's shell: the switches in force carried out on Asterisk.

- The switches live in PostgreSQL (``emergency.store``); the service reads the
  open ones at start, after every change made through it (the API, the phone's
  feature code) at once, and every ``emergency_poll_s`` (the CLI's changes, other
  nodes', scheduled starts and ends; the next scheduled change also wakes it).
- When a switch comes into force, the ACD's waiting callers it covers are moved
  per its action at once (``plan``): out of the router (``AcdService.divert``)
  and Redirected into ``cti-emergency`` (announcement, then hang up, dial a
  number, or voicemail), or moved to another queue (``AcdService.move_call``),
  or played the announcement in the wait. The switch's value (``CTI_EMERGENCY_MOVE``,
  with the ACD's epoch) and the Redirect into ``cti-emergency-move`` are written
  together on the ACD's AMI session (``submit``), like an offer: one round trip; the
  dialplan refuses them from a deposed leader (``acd.epoch.emergency_actions``).
  Callers ringing or talking to an agent are left alone.
- New calls: the global ``CTI_EMERGENCY`` (how many switches are in force; 0
  when none) lets ``cti-route`` skip everything while nothing is on; when it is
  above 0 the dialplan asks ``/hooks/emergency`` with the call's id, and the
  daemon chooses from the call it follows (caller number, DID, IVR path) and
  the queue the dialplan holds. A caller who reaches the ACD's wait without
  having asked (the global was set a moment late) is moved like a waiting one.
- Every call reached is recorded (``emergency_calls``); the switches in force
  are pushed on the WebSocket hub (``emergency`` messages) for the banner.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog

from acd.ami_actions import failure, submit
from acd.core import AcdInputError
from acd.epoch import emergency_actions, gated
from emergency import store
from emergency.pin import PinGuard
from emergency.switches import CallFacts, Switch, WaitingPlan, active, choose, choose_early, next_change, plan
from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

GLOBAL = "CTI_EMERGENCY"
CONTEXT = "cti-emergency"


def public(s: Switch) -> dict[str, Any]:
    """A switch as the banner and the active list show it."""
    return {"id": s.id, "scope": s.scope, "value": s.value, "action": s.action, "target": s.target,
            "reason": s.reason, "starts_at": s.starts_at, "ends_at": s.ends_at}


@dataclass
class Move:
    """One waiting caller moved by a switch (kept for /healthz and tests)."""

    call_id: str
    switch_id: int
    action: str
    decided_at: float
    done_at: float | None = None
    error: str | None = None


@dataclass
class EmergencyService:
    core: CoreServices
    acd: Any = None                               # AcdService, or None without the ACD
    push: Callable[[dict[str, Any]], None] | None = None   # to the hub (set by the routes' setup)
    switches: list[Switch] = field(default_factory=list)
    in_force: list[Switch] = field(default_factory=list)
    handled: dict[str, int] = field(default_factory=dict)    # call -> the switch that took it
    ivr_paths: dict[str, list[str]] = field(default_factory=dict)
    moves: list[Move] = field(default_factory=list)
    _records: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _unsubscribe: Callable[[], None] | None = None
    _global_set: str | None = None
    pin_guard: PinGuard = field(default_factory=PinGuard)
    # Called (each a coroutine function, no argument) when a switch covering every call
    # (scope all, or this node) comes into force: the dialer's emergency stop, which
    # pauses every campaign (docs/dialer.md, "Emergency stop").
    campaign_pause_hooks: list[Callable[[], Any]] = field(default_factory=list)
    version: int = 0                              # rises whenever the set in force changes
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._unsubscribe = self.core.bus.subscribe(self.on_call_event)
        self._tasks.append(asyncio.create_task(self._run(), name="emergency-poll"))

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._flush_records()

    async def _run(self) -> None:
        poll = self.core.settings.emergency_poll_s
        while True:
            try:
                await self.refresh()
            except Exception as exc:     # database away: keep what we have, try again
                log.warning("emergency switches not read", error=str(exc))
            await self._flush_records()
            self._set_global(force=False)
            nxt = next_change(self.switches, time.time())
            delay = poll if nxt is None else max(0.0, min(poll, nxt - time.time()))
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def refresh(self) -> None:
        """Read the open switches and put them in force (``apply``)."""
        pool = self.core.pool
        if pool is None:
            return
        async with asyncio.timeout(2.0):
            switches = await store.open_switches(pool)
        self.apply(switches, time.time())

    # -- decisions -----------------------------------------------------------

    def apply(self, switches: list[Switch], now: float) -> list[Move]:
        """Put ``switches`` in force at ``now``: callers waiting in the scope of a
        switch that just came into force are moved; the hub hears of any change."""
        before = {s.id for s in self.in_force}
        self.switches = switches
        self.in_force = active(switches, now)
        ids = {s.id for s in self.in_force}
        moved: list[Move] = []
        if ids - before:
            moved = self.sweep(now, ids - before)
            if self.campaign_pause_hooks and any(
                    s.id not in before and (s.scope == "all" or (s.scope == "node"
                                                                 and s.value == self.core.settings.node_name))
                    for s in self.in_force):
                self._pause_campaigns()
        if ids != before:
            log.info("emergency switches in force", switches=sorted(ids), moved=len(moved))
            self.version += 1
            self._changed.set()             # wakes the banners waiting for a change
            self._changed = asyncio.Event()
            self._set_global(force=True)
            if self.push is not None:
                self.push({"type": "emergency", "active": [public(s) for s in self.in_force]})
        return moved

    def facts(self, call_id: str, queue: str | None = None, number: str = "", did: str = "") -> CallFacts:
        """The call as followed on AMI; ``number`` and ``did`` (the dialplan's, at the
        hook) stand in where the model has not heard them yet."""
        call = self.core.model.calls.get(call_id)
        if queue is None and self.acd is not None:
            w = self.acd.calls.get(call_id)
            queue = w.entry.queue if w is not None and w.entry is not None else None
        return CallFacts(caller_num=(call.caller_num if call is not None else None) or number,
                         did=(call.exten if call is not None else None) or did,
                         queue=queue or (call.queue if call is not None else None) or "",
                         ivr_path=tuple(self.ivr_paths.get(call_id, ())), node=self.core.settings.node_name)

    def incident(self, call_id: str, queue: str | None = None, now: float | None = None) -> dict[str, Any] | None:
        """The switch in force that covers this call (as the banner shows it), for the
        agent's screen-pop: what the caller was told, and why. None when none covers it."""
        s = choose(self.switches, self.facts(call_id, queue), time.time() if now is None else now)
        return None if s is None else public(s)

    def _pause_campaigns(self) -> None:
        for hook in self.campaign_pause_hooks:
            task = asyncio.get_running_loop().create_task(hook())

            def done(t: asyncio.Task[Any]) -> None:
                if not t.cancelled() and t.exception() is not None:
                    log.error("campaigns not paused by the emergency", error=str(t.exception()))

            task.add_done_callback(done)
            self._tasks.append(task)

    def sweep(self, now: float, new: set[int] | None = None) -> list[Move]:
        """Move the ACD's waiting callers whose switch (by precedence) is one of ``new``
        (None: any in force) and has not taken them yet."""
        if self.acd is None:
            return []
        moved = []
        for call_id in list(self.acd.calls):
            s = choose(self.in_force, self.facts(call_id), now)
            if s is None or (new is not None and s.id not in new) or self.handled.get(call_id) == s.id:
                continue
            m = self.move_waiting(call_id, s, now)
            if m is not None:
                moved.append(m)
        return moved

    def move_waiting(self, call_id: str, s: Switch, now: float) -> Move | None:
        """Carry out ``s`` on a caller waiting in the ACD. None when the call is not
        waiting with someone on the line (ringing an agent, talking, a callback)."""
        acd = self.acd
        w = acd.calls.get(call_id)
        if w is None or w.answered or w.agent is not None or w.channel is None or w.callback is not None:
            return None
        p = plan(s, "waiting")
        assert isinstance(p, WaitingPlan)
        channel = w.channel
        move = Move(call_id, s.id, s.action, now)
        if p.leave_router:
            if acd.divert(call_id, f"emergency:{s.id}") is None:
                return None
        elif p.move_to is not None:
            try:
                if not acd.move_call(call_id, p.move_to):
                    return None
            except AcdInputError as exc:
                move.error = str(exc)
        self.handled[call_id] = s.id
        self.moves.append(move)
        self.core.annotate(call_id, "emergency.moved", now, switch=s.id, action=s.action, target=s.target)
        if move.error is not None:
            self._record(s.id, call_id, "waiting", "failed", move.error)
            log.warning("emergency move failed", call_id=call_id, switch=s.id, error=move.error)
            return move
        if p.exten is None:
            move.done_at = time.time()
            self._record(s.id, call_id, "waiting", s.action, f"moved to {p.move_to}" if p.move_to else "")
            return move
        # One value carrying the ACD's epoch, and the Redirect: cti-emergency-move refuses a
        # deposed leader's (docs/ha.md, "Fencing in the dialplan") before cti-emergency runs.
        try:
            actions = emergency_actions(acd.epoch, channel, p.exten, s.id, s.target, s.prompt)
            if getattr(acd, "gate_redirects", False):     # an HA pair: through the dialplan's gate
                actions = gated(acd.epoch, actions, acd.gate_seq)
        except ValueError as exc:
            move.error = str(exc)
            self._record(s.id, call_id, "waiting", "failed", str(exc)[:200])
            log.warning("emergency redirect not sent", call_id=call_id, switch=s.id, error=str(exc))
            return move
        ami_for = getattr(self.core, "ami_for", None)      # the caller's node (several nodes)
        ami = ami_for(call_id) if ami_for is not None else self.core.ami
        sends = [submit(ami, name, headers) for name, headers in actions]

        def done(f: asyncio.Future[Any]) -> None:
            exc = failure(f)
            move.done_at = time.time()
            if exc is None:
                self._record(s.id, call_id, "waiting", s.action, p.exten or "")
            else:
                move.error = str(exc)
                self._record(s.id, call_id, "waiting", "failed", str(exc)[:200])
                log.warning("emergency redirect failed", call_id=call_id, switch=s.id, error=str(exc))

        asyncio.gather(*sends).add_done_callback(done)
        return move

    def ivr_entry(self, call_id: str, number: str = "", did: str = "") -> Switch | None:
        """A new call at the IVR's entry, before the menu (the dialplan hook, ``step=ivr``):
        the switch that takes it there (``choose_early``), recorded, or None (the route
        step decides, after the menu)."""
        s = choose_early(self.in_force, self.facts(call_id, None, number, did), time.time())
        if s is not None:
            self.handled[call_id] = s.id
            self._record(s.id, call_id, "ivr", s.action, "")
            self.core.annotate(call_id, "emergency.ivr", time.time(), switch=s.id, action=s.action,
                               target=s.target)
        return s

    def route_step(self, call_id: str, queue: str, number: str = "", did: str = "") -> Switch | None:
        """A new call at the route step (the dialplan hook): the switch that applies,
        recorded as taking the call, or None."""
        s = choose(self.in_force, self.facts(call_id, queue or None, number, did), time.time())
        if s is not None:
            self.handled[call_id] = s.id
            self._record(s.id, call_id, "route", s.action, queue)
            self.core.annotate(call_id, "emergency.route", time.time(), switch=s.id, action=s.action,
                               target=s.target)
        return s

    async def toggle_preset(self, preset: str, pin: str, caller: str) -> tuple[str, str, int | None]:
        """The phone's feature code: ``(result, state, switch id)``. With the right PIN,
        the open switch of ``preset`` is switched off, or, none being open, the
        latest switch declared under it is declared again (same scope, action,
        announcement, reason) from now. Results: ``ok`` (state ``on``/``off``),
        ``wrong_pin``, ``locked``, ``disabled`` (no PIN configured), ``no_preset``."""
        secret = self.core.settings.emergency_pin
        result = self.pin_guard.check(pin, secret.get_secret_value() if secret is not None else None, time.time())
        if result != "ok":
            log.warning("emergency feature code refused", result=result, caller=caller, preset=preset)
            return result, "", None
        by = f"phone:{caller or 'unknown'}"
        pool = self.core.pool
        async with asyncio.timeout(2.0):
            async with pool.acquire() as conn:
                open_ids = [s.id for s in await store.open_switches(conn)]
                template = await store.preset(conn, preset)
                if template is None:
                    return "no_preset", "", None
                row = await conn.fetchrow("SELECT id FROM emergency_switches WHERE preset = $1 AND "
                                          "id = ANY($2::bigint[]) ORDER BY id DESC LIMIT 1", preset, open_ids)
                if row is not None:
                    await store.end(conn, row["id"], by=by, reason="feature code")
                    state, switch_id = "off", row["id"]
                else:
                    t = store.as_dict(template)
                    new = await store.declare(conn, scope=t["scope"], value=t["value"], action=t["action"],
                                              target=t["target"], prompt=t["prompt"], reason=t["reason"], by=by,
                                              announcement=t["announcement"], preset=preset)
                    state, switch_id = "on", new["id"]
        log.info("emergency feature code", state=state, switch=switch_id, by=by)
        await self.refresh()
        return "ok", state, switch_id

    # -- inputs ----------------------------------------------------------------

    def on_call_event(self, ev: Any) -> None:
        kind, cid = ev.kind, ev.call_id
        if kind == "call.ivr":
            data = ev.data
            menu = data.get("menu")
            if menu:
                path = self.ivr_paths.setdefault(cid, [])
                if menu not in path:
                    path.append(str(menu))
                if data.get("input"):
                    path.append(f"{menu}:{data['input']}")
        elif kind == "call.queued" and ev.data.get("acd") and self.in_force and cid not in self.handled:
            # After the ACD has taken the caller in (it hears this same event).
            asyncio.get_running_loop().call_soon(self._late_arrival, cid)
        elif kind == "call.ended":
            self.handled.pop(cid, None)
            self.ivr_paths.pop(cid, None)

    def _late_arrival(self, call_id: str) -> None:
        now = time.time()
        s = choose(self.in_force, self.facts(call_id), now)
        if s is not None and self.handled.get(call_id) is None:
            self.move_waiting(call_id, s, now)

    def release_waiters(self) -> None:
        """Answer every long poll now (the app is shutting down: none holds it up)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed_since(self, version: int, wait: float) -> None:
        """Return once the set in force is newer than ``version``, or after ``wait`` s."""
        if version != self.version or wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                await self._changed.wait()
        except TimeoutError:
            pass

    # -- I/O helpers -------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def _set_global(self, *, force: bool) -> None:
        ami = self.core.ami
        value = str(len(self.in_force))
        if ami is None or not ami.connected or (not force and value == self._global_set):
            return
        self._global_set = value
        fut = submit(ami, "Setvar", {"Variable": GLOBAL, "Value": value})
        # Several Asterisk nodes: every other connected node's dialplan reads it too
        # (best effort: a node that connects later gets it at the next change or poll).
        for other in (getattr(self.core, "nodes", None) or {}).values():
            if other is not ami and other.connected:
                submit(other, "Setvar", {"Variable": GLOBAL, "Value": value})

        def done(f: asyncio.Future[Any]) -> None:
            if failure(f) is not None:
                self._global_set = None     # try again at the next poll

        fut.add_done_callback(done)

    def _record(self, switch_id: int, call_id: str, step: str, outcome: str, detail: str) -> None:
        self._records.append((switch_id, call_id, step, outcome, detail))
        if len(self._records) == 1:
            self.wake()

    async def _flush_records(self) -> None:
        pool = self.core.pool
        if not self._records or pool is None:
            return
        rows, self._records = self._records, []
        try:
            async with asyncio.timeout(5.0):
                await store.record_calls(pool, rows)
        except Exception as exc:
            self._records = rows + self._records
            log.warning("emergency call records not written", rows=len(rows), error=str(exc))

    def health(self) -> dict[str, Any]:
        return {"in_force": [s.id for s in self.in_force], "moved": len(self.moves),
                "move_failures": sum(1 for m in self.moves if m.error)}
