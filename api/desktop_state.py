"""The agent desktop's live state (``Desktop``, ``app[DESKTOP]``): screen-pops
sent from the bus, and what the desktop's routes (``api.desktop``) share: the
calls each agent was popped, click-to-dial calls, attended transfers under way,
the last call each agent answered.

A bus subscriber feeds ``api.screenpop.Tracker``; each pop it returns is
published on the WebSocket hub (``screenpop`` messages) to the agent concerned
(and supervisors), in order per call. The customer look-up (profile, recent
calls, open tickets) and the IVR steps read back from the database run once per
call, bounded by ``LOOKUP_TIMEOUT``: a slow database gives a card with
``customer_lookup: "timeout"``, never a late one.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable

import asyncpg
import structlog
from aiohttp import web

from api import screenpop
from api.db import db
from api.errors import ApiError
from api.ws import WS
from crm import ticket_store
from crm.conversations import customer_conversations
from crm.customer_lookup import find_by_phone
from crm.customer_store import customer_view
from crm.phones import normalise_e164
from cti import control
from cti.daemon import CoreServices
from cti.events import CallEvent

log = structlog.get_logger(__name__)

LOOKUP_TIMEOUT = 1.5           # the customer look-up for one card, at most
RECENT_TIMEOUT = 0.5           # of which the customer's calls by number (no index on caller_num): else linked ones
MAX_PENDING = 10_000           # screen-pops waiting for their look-up, beyond: dropped (counted)
RECENT_PER_AGENT = 200         # calls remembered per agent (who may wrap up what)


async def lookup_card_data(pool: asyncpg.Pool, call_id: str, caller_num: str | None,
                           customer_id: str | None, want_ivr: bool) -> dict[str, Any]:
    """The customer record, their recent calls and open tickets, and (when
    ``want_ivr``) the call's IVR steps from the database. Unbounded: the caller bounds it."""
    out: dict[str, Any] = {"status": "not_found"}
    if want_ivr:
        rows = await pool.fetch("SELECT seq AS step, menu, action, input, value FROM call_ivr_steps"
                                " WHERE call_id = $1 ORDER BY seq LIMIT $2", call_id, screenpop.MAX_STEPS)
        out["ivr_steps"] = [dict(r) for r in rows]
    if customer_id is None:
        phone = normalise_e164(caller_num or "")
        if phone is None:
            out["status"] = "no_number"
            return out
        rec = await find_by_phone(pool, phone)
        if rec is None:
            return out
        customer_id = rec.customer_id
    full = await customer_view(pool, customer_id, last=6)
    if full is None:
        return out
    tickets = await ticket_store.by_customer(pool, customer_id, live_only=True, limit=10)
    recent = [c for c in full["calls"] if c["call_id"] != call_id][:5]
    try:   # every call from or to the customer's numbers, not only those linked to them
        async with asyncio.timeout(RECENT_TIMEOUT):
            rows = await pool.fetch(
                """SELECT call_id, started_at, state, direction, caller_num, agent, duration_s::float8 AS duration_s
                     FROM calls
                    WHERE call_id <> $1 AND started_at > now() - interval '1 year'
                      AND (caller_num = ANY($2::text[]) OR (direction = 'outbound' AND exten = ANY($2::text[]))
                           OR call_id IN (SELECT call_id FROM customer_calls WHERE customer_id = $3))
                    ORDER BY started_at DESC LIMIT 5""",
                call_id, [p["phone"] for p in full["phones"]], customer_id)
        recent = [dict(r) for r in rows]
    except TimeoutError:
        log.info("recent calls by number: too slow, the linked calls only", customer_id=customer_id)
    contacts: list[dict[str, Any]] = []
    try:   # the customer's chats, mails and messages (bounded like the calls by number)
        async with asyncio.timeout(RECENT_TIMEOUT):
            contacts = await customer_conversations(pool, customer_id, limit=5)
    except TimeoutError:
        log.info("recent contacts: too slow, left out", customer_id=customer_id)
    out.update(status="found",
               customer={k: full[k] for k in ("customer_id", "name", "language", "vip", "phones", "addresses",
                                              "tags", "notes")},
               recent_calls=recent,
               recent_contacts=contacts,
               open_tickets=[{"ticket_id": t.ticket_id, "type": t.type, "state": t.state, "title": t.title,
                              "created_at": t.created_at, "due_at": t.due_at} for t in tickets])
    return out


class Desktop:
    """Screen-pops and what the desktop's routes share (``app[DESKTOP]``)."""

    def __init__(self, app: web.Application, core: CoreServices) -> None:
        self.app = app
        self.core = core
        self.tracker = screenpop.Tracker()
        self._lookups: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._chains: dict[str, asyncio.Task[None]] = {}
        self.recent: dict[str, deque[str]] = {}          # agent -> call ids popped to them
        self.outbound: dict[str, str] = {}               # click-to-dial call -> agent (agent's leg first)
        # attended transfers under way: call -> (the transferring agent, their leg's channel)
        self.consults: dict[str, tuple[str | None, str]] = {}
        # the last call each agent answered (call id, queue, caller): the wrap-up a reloaded page rebuilds
        self.answered: dict[str, tuple[str, str | None, str | None, str | None]] = {}
        # The emergency switch covering a call (emergency/, set when it runs): on the pop.
        self.incident_of: Callable[[str, str | None], dict[str, Any] | None] | None = None
        self.pops_sent = 0
        self.pops_dropped = 0
        self.lookups_late = 0
        self._unsubscribe: Any = None

    async def start(self) -> None:
        self._unsubscribe = self.core.bus.subscribe(self.on_call_event)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        tasks = [*self._chains.values(), *self._lookups.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- bus --

    def on_call_event(self, ev: CallEvent) -> None:
        ctx = self.tracker.calls.get(ev.call_id)
        data = ev.data
        owner = self.outbound.get(ev.call_id)
        if owner is not None and ev.kind in ("call.offered", "call.connected"):
            # Click-to-dial: the party "offered" is the customer; the card is the agent's.
            data = {**data, "agent": owner}
        pops = self.tracker.feed(ev.kind, ev.call_id, ev.at, data)
        ctx = ctx or self.tracker.calls.get(ev.call_id)
        agent = data.get("agent")
        if ev.kind == "call.connected" and isinstance(agent, str) and agent:
            queue = (ctx.queue if ctx is not None else None) or ev.call.queue
            self.answered[agent] = (ev.call_id, queue, ev.call.caller_num, ev.call.caller_name)
        if ev.kind == "call.ended":
            self.outbound.pop(ev.call_id, None)
            self.consults.pop(ev.call_id, None)
        for pop in pops:
            self._remember(pop.agent, pop.call_id)
            if ctx is None:
                continue
            if len(self._chains) >= MAX_PENDING and pop.call_id not in self._chains:
                self.pops_dropped += 1
                continue
            if ctx.lookup is None and pop.call_id not in self._lookups:
                self._lookups[pop.call_id] = asyncio.create_task(self._lookup(ctx, ev), name="screenpop-lookup")
            prev = self._chains.get(pop.call_id)
            task = asyncio.create_task(self._send(prev, pop, ctx, ev.call), name="screenpop")
            self._chains[pop.call_id] = task
            task.add_done_callback(lambda t, cid=pop.call_id: self._chains.get(cid) is t and self._chains.pop(cid))

    def _remember(self, agent: str, call_id: str) -> None:
        calls = self.recent.setdefault(agent, deque(maxlen=RECENT_PER_AGENT))
        if call_id not in calls:
            calls.append(call_id)

    async def _lookup(self, ctx: screenpop.Context, ev: CallEvent) -> dict[str, Any]:
        found = await self.bounded_lookup(ctx, ev.call)
        ctx.lookup = found
        self._lookups.pop(ctx.call_id, None)
        return found

    async def bounded_lookup(self, ctx: screenpop.Context, call: Any) -> dict[str, Any]:
        """``lookup_card_data`` for ``call`` (a ``CallView``), bounded by ``LOOKUP_TIMEOUT``."""
        try:
            pool = db(self.app)
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                return await lookup_card_data(pool, ctx.call_id, call.caller_num, ctx.customer_id,
                                              want_ivr=not ctx.ivr and call.direction == "inbound")
        except TimeoutError:
            self.lookups_late += 1
            return {"status": "timeout"}
        except Exception as exc:
            log.warning("screen-pop look-up failed", call_id=ctx.call_id, error=type(exc).__name__)
            return {"status": "error"}

    async def _send(self, prev: asyncio.Task[None] | None, pop: screenpop.Pop, ctx: screenpop.Context,
                    view: Any) -> None:
        if prev is not None:
            await asyncio.gather(prev, return_exceptions=True)   # in order per call
        found = ctx.lookup
        task = self._lookups.get(pop.call_id)
        if found is None and task is not None:
            found = await asyncio.gather(task, return_exceptions=True)
            found = found[0] if isinstance(found[0], dict) else {"status": "error"}
        found = found or {"status": "error"}
        ivr = found.get("ivr_steps") if not ctx.ivr else None
        incident = None
        if self.incident_of is not None:
            try:
                incident = self.incident_of(pop.call_id, ctx.queue)
            except Exception as exc:   # the pop goes out without it
                log.warning("screen-pop: the emergency switch not looked up", call_id=pop.call_id,
                            error=type(exc).__name__)
        message = screenpop.card(pop, ctx, view, time.time(), lookup=found, ivr_steps=ivr or None,
                                 incident=incident)
        hub = self.app.get(WS)
        if hub is not None:
            hub.push(message, frozenset({pop.agent}))
            self.pops_sent += 1

    # -- calls --

    def parties(self, call_id: str) -> control.Parties:
        call = self.core.model.calls.get(call_id)
        if call is None:
            raise ApiError(404, "unknown_call", f"no live call {call_id!r}")
        p = control.parties(call)
        owner = self.outbound.get(call_id)
        if owner is not None:
            # Click-to-dial: the call began with the agent's leg; the customer is the other one.
            p = control.Parties(p.call_id, p.agent_leg, p.caller, owner,
                                "talking" if p.state == "talking" else p.state, p.legs)
        return p

    def handled_by(self, agent_id: str, call_id: str) -> bool:
        return call_id in self.recent.get(agent_id, ()) or self.outbound.get(call_id) == agent_id


DESKTOP = web.AppKey("desktop", Desktop)
