"""The IVR in the daemon: menus (reloadable), the FastAGI server, lookups, the IVR path.

Wiring: ``setup_ivr(app, core)`` adds a ``cleanup_ctx`` that starts the FastAGI
server on ``agi_host:agi_port`` (after the core's database and AMI) and stops
it first at shutdown, cancelling every channel's session.

The dialplan runs ``AGI(agi://127.0.0.1:4573/ivr,${CHANNEL(linkedid)},${CTI_DID})``;
``IvrService.handle`` walks the caller through the menus with the pure
``ivr.interpreter.Walker`` and relays its requests: AGI commands to Asterisk,
customer lookups to PostgreSQL (bounded: a slow database means "not found").

Each step of the walk is written to ``call_ivr_steps`` (its own small batching
writer: rows wait in a bounded buffer while PostgreSQL is away) and published
on the bus as a ``call.ivr`` event of the call (``data``: menu, action, input,
value, duration), which the writer also keeps in ``call_events``.

Steps the dialplan reports after the walk are recorded the same way: the
``UserEvent(CtiVoicemail, Mailbox: ...)`` of ``[cti-voicemail]`` (reached from
the IVR or from the ACD's maximum wait) becomes a step ``voicemail`` of menu
``cti-voicemail``, numbered after the call's last step by the database.

Who may speak for a call (docs/security.md): FastAGI has no authentication,
and the steps of a walk reach the agent's screen-pop. A session is served only
for a channel the call model knows: its ``agi_uniqueid`` must be a live leg,
named ``agi_channel``, of the call its first argument names (waiting up to
``LEG_WAIT_S`` for the AMI events that lag behind), and no other session may
be running for that leg. Anything else is refused before a step is written
(``CTI_IVR_ERROR``; the dialplan routes the caller by default) and logged at
warning without the claimed values.

Menus: loaded at start (an invalid file stops the start, with the message);
before each call the file's modification time is checked and a changed file
reloaded. A reload that fails is logged with the message and the last good
menus stay in use.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import asyncpg
import structlog
from aiohttp import web

from crm.customer_lookup import find_by_account, find_by_phone
from crm.phones import normalise_e164
from cti.ami_inputs import VoicemailLeft
from cti.daemon import CoreServices
from cti.nodes import node_specs, qualified, session_node
from ivr.agi import AgiError, AgiHangup, AgiServer, AgiSession
from ivr.interpreter import CallInfo, Command, Customer, Finished, LookupCustomer, Step, Walker
from ivr.menus import EXAMPLE, MenuError, MenuSet, load_menus

log = structlog.get_logger(__name__)

Lookup = Callable[[LookupCustomer], Awaitable[Customer | None]]
NodeOf = Callable[[str | None, str], str | None]
# (call id, uniqueid, channel) -> whether that channel is a live leg of that call
Verify = Callable[[str, str, str], Awaitable[bool]]
LOOKUP_TIMEOUT = 2.0
LEG_WAIT_S = 3.0
VOICEMAIL_MENU = "cti-voicemail"       # the dialplan context that reports a voicemail
_MAILBOX_CHARS = re.compile(r"[^A-Za-z0-9_.@-]")


def voicemail_step(ev: VoicemailLeft, at: float) -> tuple[str, Step]:
    """The dialplan's ``UserEvent(CtiVoicemail, Mailbox: box@context)`` as
    ``(call id, step)``: a ``voicemail`` step of menu ``cti-voicemail`` (``seq`` 0:
    the next in the call). The mailbox is cut to what a mailbox may hold."""
    mailbox = _MAILBOX_CHARS.sub("", ev.mailbox)[:130] or None
    return ev.call_id, Step(0, at, VOICEMAIL_MENU, "voicemail", None, mailbox)


def leg_is_live(model: Any, call_id: str, uniqueid: str, channel: str) -> bool:
    """Whether ``uniqueid`` is a live leg of call ``call_id`` in the call model
    (``cti.calls.CallModel``), with channel name ``channel``. Pure."""
    call = model.legs.get(uniqueid) if uniqueid else None
    if call is None or call.call_id != call_id or call.ended_at is not None:
        return False
    leg = call.legs.get(uniqueid)
    return leg is not None and bool(channel) and leg.channel == channel


async def wait_for_leg(model: Any, call_id: str, uniqueid: str, channel: str, *,
                       timeout: float = LEG_WAIT_S, interval: float = 0.05) -> bool:
    """``leg_is_live``, polled for up to ``timeout`` seconds: the FastAGI session
    and the channel's AMI events come on separate sockets, and AMI may lag."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not leg_is_live(model, call_id, uniqueid, channel):
        if not uniqueid or not channel or loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


class IvrService:
    """Menus, sessions and the IVR path. ``handle`` is the FastAGI route ``ivr``."""

    def __init__(self, menus_path: str | Path, *, clock: Callable[[], float] = time.time,
                 lookup: Lookup | None = None, on_steps: Callable[[str, list[Step]], None] | None = None,
                 verify: Verify | None = None, node_of: NodeOf | None = None) -> None:
        """``verify(call id, uniqueid, channel)``: whether a session speaks for a
        live leg of that call (None: every session is believed; tests only).
        ``node_of(peer address, call id)``: several Asterisk nodes: the node a session
        speaks for (its ids are qualified with it, as the call model's), None for a
        peer that is no node's (refused); None (one node): ids as Asterisk gives them.
        Raises ``MenuError`` when the menu file is invalid."""
        self.path = Path(menus_path)
        self.clock = clock
        self.lookup = lookup
        self.on_steps = on_steps
        self.verify = verify
        self.node_of = node_of
        self.refused = 0
        self._legs: set[str] = set()        # uniqueids with a session running
        self._mtime = self._stat()
        self.menus: MenuSet = load_menus(self.path)
        self.last_error: str | None = None
        self.calls = 0
        self.outcomes: dict[str, int] = {}

    # -- menus -----------------------------------------------------------------

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def reload(self) -> str | None:
        """Load the menu file again. Returns None when it is in use now, else the
        error message (and the previous menus stay in use)."""
        self._mtime = self._stat()
        try:
            menus = load_menus(self.path)
        except MenuError as exc:
            self.last_error = str(exc)
            log.error("ivr.menus_rejected", error=self.last_error, keeping="the last good menus")
            return self.last_error
        self.menus, self.last_error = menus, None
        log.info("ivr.menus_loaded", path=str(self.path), menus=len(menus.menus))
        return None

    def reload_if_changed(self) -> None:
        if self._stat() != self._mtime:
            self.reload()

    # -- one channel ---------------------------------------------------------------

    async def handle(self, session: AgiSession) -> None:
        """Walk one caller through the menus; returns when the dialplan may go on."""
        self.reload_if_changed()
        env = session.env
        uniqueid = env.get("agi_uniqueid", "")
        call_id = session.arg(1) or uniqueid or "unknown"
        node = None if self.node_of is None else self.node_of(session.peer, call_id)
        if node is not None:          # several nodes: the ids as the call model knows them
            call_id, uniqueid = qualified(node, call_id), qualified(node, uniqueid)
        busy = bool(uniqueid) and uniqueid in self._legs
        stranger = self.node_of is not None and node is None
        if stranger or busy or (self.verify is not None
                                and not await self.verify(call_id, uniqueid, env.get("agi_channel", ""))):
            # Not a channel of a call we follow (or one already walking, or a peer that is
            # no Asterisk node of ours): nothing is written or shown. The claimed ids and
            # the caller's data stay out of the log.
            self.refused += 1
            log.warning("ivr.agi_unknown_channel",
                        reason="not from an Asterisk node's address" if stranger
                        else "a session already runs for this channel" if busy
                        else "not a live leg of the call it names")
            try:
                await session.command('SET VARIABLE CTI_IVR_ERROR "unknown channel"', timeout=5)
            except (AgiError, TimeoutError):
                pass
            return
        self._legs.add(uniqueid)
        try:
            await self._walk(session, env, call_id)
        finally:
            self._legs.discard(uniqueid)

    async def _walk(self, session: AgiSession, env: Mapping[str, str], call_id: str) -> None:
        caller = env.get("agi_callerid", "")
        info = CallInfo(did=session.arg(2) or env.get("agi_dnid") or None,
                        caller_id=None if caller in ("", "unknown") else caller, call_id=call_id)
        walker = Walker(self.menus, info, self.clock())
        self.calls += 1
        with structlog.contextvars.bound_contextvars(call_id=call_id):
            log.info("ivr.start", menu=walker.entry, calendar=walker.calendar_state, did=info.did)
            request = walker.start()
            # The entry step goes out now, not after the first prompt's answer (the
            # caller may take seconds to press a key): supervisors see the caller in the IVR.
            self._flush(call_id, walker)
            try:
                while not isinstance(request, Finished):
                    result: Any
                    if isinstance(request, Command):
                        result = await session.command(request.line, request.timeout)
                    else:
                        assert isinstance(request, LookupCustomer)
                        result = await self._lookup(request)
                    request = walker.send(result, self.clock())
                    self._flush(call_id, walker)
            except AgiHangup:
                request = walker.gone(self.clock())
            except TimeoutError:
                # Asterisk did not answer a command in time: give the call back to
                # the dialplan, which routes it by default (no CTI_QUEUE set).
                log.error("ivr.agi_timeout")
                request = walker.gone(self.clock())
            finally:
                self._flush(call_id, walker)
            self.outcomes[request.outcome] = self.outcomes.get(request.outcome, 0) + 1
            log.info("ivr.done", outcome=request.outcome, **{k.lower(): v for k, v in request.variables.items()})

    async def _lookup(self, request: LookupCustomer) -> Customer | None:
        if self.lookup is None:
            return None
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                return await self.lookup(request)
        except Exception as exc:      # a slow or absent database: "not found", and say so
            log.warning("ivr.lookup_failed", error=f"{type(exc).__name__}: {exc}")
            return None

    def _flush(self, call_id: str, walker: Walker) -> None:
        steps = walker.take_steps()
        if steps and self.on_steps is not None:
            self.on_steps(call_id, steps)

    def health(self) -> dict[str, Any]:
        return {"menus": str(self.path), "calls": self.calls, "outcomes": dict(self.outcomes),
                "refused": self.refused, "last_error": self.last_error}


# -- the IVR path in PostgreSQL ----------------------------------------------------

# seq NULL (a step reported later by the dialplan): one after the call's last step.
# The one writer task inserts in order, so the walker's steps are already there.
_INSERT_STEP = """
INSERT INTO call_ivr_steps (call_id, seq, at, menu, action, input, value, duration)
SELECT $1, COALESCE($2::integer,
                    (SELECT COALESCE(max(seq), 0) + 1 FROM call_ivr_steps WHERE call_id = $1)),
       $3, $4, $5, $6, $7, $8
ON CONFLICT (call_id, seq) DO NOTHING
"""


class StepWriter:
    """A bounded buffer of IVR steps written in batches by one task; rows wait
    (up to ``buffer_max``, then the newest are dropped and counted) while
    PostgreSQL is away. Writes are idempotent (``ON CONFLICT DO NOTHING``)."""

    def __init__(self, pool: asyncpg.Pool, *, buffer_max: int = 10_000, batch_max: int = 500,
                 timeout: float = 5.0) -> None:
        self.pool = pool
        self.buffer_max = buffer_max
        self.batch_max = batch_max
        self.timeout = timeout
        self._rows: deque[tuple[Any, ...]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def submit(self, call_id: str, steps: list[Step]) -> None:
        for s in steps:
            if len(self._rows) >= self.buffer_max:
                self.dropped += 1
                continue
            self._rows.append((call_id, s.seq or None, datetime.fromtimestamp(s.at, timezone.utc), s.menu,
                               s.action, s.input, s.value, s.duration))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ivr.step_writer")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        deadline = time.monotonic() + flush_timeout
        while self._rows and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self._rows:
            log.error("ivr.steps_unflushed", rows=len(self._rows))

    async def _run(self) -> None:
        delay = 0.1
        while True:
            if not self._rows:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._rows[i] for i in range(min(self.batch_max, len(self._rows)))]
            try:
                async with asyncio.timeout(self.timeout):
                    async with self.pool.acquire() as conn:
                        await conn.executemany(_INSERT_STEP, batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("ivr.steps_write_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for _ in batch:
                self._rows.popleft()
            self.written += len(batch)
            delay = 0.1


# -- wiring --------------------------------------------------------------------------


class IvrHolder:
    """What ``setup_ivr`` leaves in the app (``app[IVR]``), filled once started."""

    service: IvrService | None = None
    server: AgiServer | None = None
    steps: StepWriter | None = None


IVR = web.AppKey("ivr", IvrHolder)


def setup_ivr(app: web.Application, core: CoreServices, *, menus_path: str | Path | None = None,
              clock: Callable[[], float] = time.time) -> None:
    """Run the IVR in the daemon on ``core``: FastAGI server, menus, lookups, the IVR path.

    Menus come from ``menus_path``, else the ``ivr_menus`` setting, else
    ``ivr/examples/demo.toml``. ``clock`` (epoch seconds) chooses the calendar
    state; tests pass a fixed one.
    """
    holder = IvrHolder()
    app[IVR] = holder

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        s = core.settings
        path = Path(menus_path or s.ivr_menus or EXAMPLE)
        # Its share of the daemon's pool: a database that is away at start does not stop the IVR.
        pool = core.db("ivr")
        steps = StepWriter(pool)

        async def lookup(request: LookupCustomer) -> Customer | None:
            if request.match == "account":
                found = await find_by_account(pool, request.number)
            else:
                phone = normalise_e164(request.number)
                if phone is None:
                    return None
                found = await find_by_phone(pool, phone)
            return None if found is None else Customer(found.customer_id, found.name, found.language, found.vip)

        events = _StepEvents(core)

        def on_steps(call_id: str, new: list[Step]) -> None:
            steps.submit(call_id, new)
            for step in new:
                events.publish(call_id, step)

        def on_voicemail(ev: VoicemailLeft) -> None:
            call_id, step = voicemail_step(ev, clock())
            log.info("ivr.voicemail", call_id=call_id, mailbox=step.value)
            on_steps(call_id, [step])

        async def verify(call_id: str, uniqueid: str, channel: str) -> bool:
            return await wait_for_leg(core.model, call_id, uniqueid, channel)

        service = IvrService(path, clock=clock, lookup=lookup, on_steps=on_steps, verify=verify,
                             node_of=await _nodes_by_address(core))
        server = AgiServer(s.agi_host, s.agi_port, {"ivr": service.handle})
        steps.start()
        try:
            await server.start()
        except BaseException:
            await steps.stop(0)
            raise
        holder.service, holder.server, holder.steps = service, server, steps
        unsubscribe = core.bus.subscribe_to(VoicemailLeft, on_voicemail)
        try:
            yield
        finally:
            unsubscribe()
            await server.stop()
            await steps.stop()

    app.cleanup_ctx.append(ctx)


async def _nodes_by_address(core: CoreServices) -> NodeOf | None:
    """Several Asterisk nodes: whose sessions come from which addresses (each node's AMI
    host, resolved once here; ``cti.nodes.session_node``). None with one node."""
    specs = node_specs(core.settings)
    if len(specs) < 2:
        return None
    loop = asyncio.get_running_loop()
    addresses: dict[str, set[str]] = {}
    for spec in specs:
        found = {spec.host}
        try:
            found |= {str(info[4][0]) for info in await loop.getaddrinfo(spec.host, None)}
        except OSError as exc:
            log.warning("ivr: a node's host not resolved; its sessions must come from it as written",
                        node=spec.name, error=str(exc))
        addresses[spec.name] = found
    return lambda peer, call_id: session_node(peer, call_id, addresses)


class _StepEvents:
    """``call.ivr`` events for the screen-pop, numbered in the call's sequence.

    The FastAGI session and the AMI events of its channel come on separate
    sockets: the walk's first step can arrive before the call model has seen the
    call. Such steps wait (in order, per call) and are retried every
    ``RETRY_S`` for up to ``RETRIES`` times; a call still unknown after that
    (gone, or never seen) keeps its steps in the database only."""

    RETRY_S = 0.05
    RETRIES = 60

    def __init__(self, core: CoreServices) -> None:
        self.core = core
        self.waiting: dict[str, list[Step]] = {}
        self.given_up = 0

    def publish(self, call_id: str, step: Step) -> None:
        pending = self.waiting.get(call_id)
        if pending is not None:
            pending.append(step)
            return
        if not self._annotate(call_id, step):
            self.waiting[call_id] = [step]
            asyncio.get_running_loop().call_later(self.RETRY_S, self._retry, call_id, self.RETRIES)

    def _retry(self, call_id: str, left: int) -> None:
        pending = self.waiting.get(call_id)
        if not pending:
            self.waiting.pop(call_id, None)
            return
        while pending and self._annotate(call_id, pending[0]):
            pending.pop(0)
        if not pending:
            del self.waiting[call_id]
        elif left > 0:
            asyncio.get_running_loop().call_later(self.RETRY_S, self._retry, call_id, left - 1)
        else:
            del self.waiting[call_id]
            self.given_up += len(pending)

    def _annotate(self, call_id: str, step: Step) -> bool:
        data = {"menu": step.menu, "action": step.action, "input": step.input, "value": step.value,
                "duration": step.duration, "step": step.seq or None}
        return self.core.annotate(call_id, "call.ivr", step.at, **data) is not None
