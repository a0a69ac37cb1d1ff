"""High availability in the daemon: the lease (``cti.lease_pg``) decides who routes.

With ``ha_cluster`` set, ``cti serve`` starts as a **standby**: its own AMI session,
call model, database writer, read-only API and ``/healthz`` run as on a leader, but
what acts on calls (the ACD, recording policy) does not start. The lease's
decisions are applied here, one at a time and in order, on a task of their own
(the lease loop must keep renewing while a feature starts):

- ``StartLeading(epoch)``: the epoch is already above Asterisk's (``CTI_ACD_EPOCH``,
  read while waiting and fed to the lease core, so the row's epoch is
  ``greatest(row, Asterisk's, highest seen) + 1``); the timeline writes start and
  each ``on_lead`` hook runs (the ACD: ``set_epoch``, then start, which adopts
  waiting callers and talking agents from Asterisk's listing).
- ``StepDown``: ``on_step_down`` hooks run (the ACD stops *without* handing callers
  to app_queue: the next leader adopts them), then the process asks to exit with
  ``EXIT_STEPPED_DOWN`` (75, EX_TEMPFAIL): its service manager starts it again,
  as a standby with an empty router (docs/ha.md, rule 5).

- ``HandoverAsked`` (``cti handover``): a planned handover. The node stops acting
  at once (``may_act`` false), runs the ``on_step_down`` hooks while its lease still
  renews (nobody else may lead yet, so no caller is offered twice), waits for its writer
  to empty (timelines, agent states: the new leader reads them), then releases the
  lease (``PgLeadership.release``: the row marked released, the session dropped) so
  the standby takes over without waiting a ttl, and exits with 75 like a step-down.

``may_act()`` is the gate features check before every routing action: a leader
paused past its lease and resumed finds it false before its lease loop has even
run again. Without ``ha_cluster`` there is no ``HaNode``; a lone daemon leads with
epoch 1 as before.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import web

from cti.leadership import Decision, HandoverAsked, LeaseConfig, StartLeading, StepDown
from cti.lease_pg import PgLeadership

log = structlog.get_logger("cti.ha")

EXIT_STEPPED_DOWN = 75
EPOCH_GLOBAL = "CTI_ACD_EPOCH"      # the epoch Asterisk holds (acd/epoch.py, the dialplan)


def default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:200]


def continue_numbering(model: Any, stored: dict[str, int]) -> int:
    """Number each live call's next events after the highest ``seq`` already stored for
    it (``stored``: call id -> max seq in ``call_events``), so the timeline a new leader
    writes continues the old leader's instead of colliding with it (each process numbers
    its own model's events). Returns how many calls were moved on. No I/O."""
    moved = 0
    for call_id, top in stored.items():
        call = model.calls.get(call_id)
        if call is not None and top > call.seq:
            call.seq = top
            moved += 1
    return moved


def leaderless_seconds(leading: bool, heartbeat_age: float | None, renew_within: float) -> float | None:
    """How long the cluster has had no leader at least, as this node sees it: a leader
    whose renewals stopped stepped down at the latest ``renew_within`` after sending
    the last one (rule 1), and the row's age counts from when this node first saw that
    renewal (no earlier than it was sent). 0 while this node leads; None before it has
    read the row. Pure."""
    if leading:
        return 0.0
    if heartbeat_age is None:
        return None
    return round(max(0.0, heartbeat_age - renew_within), 3)


class HaNode:
    """One member of a cluster. ``core`` is the daemon's ``Core`` (its ``dsn``,
    ``ami`` and ``shutdown`` are read when the node starts)."""

    def __init__(self, core: Any, cluster: str, node: str | None = None,
                 config: LeaseConfig | None = None) -> None:
        self.core = core
        self.cluster = cluster
        self.node = node or default_node()
        self.config = config or LeaseConfig()
        self.role = "standby"            # standby | leader | handing-over | stepped-down
        self.epoch: int | None = None
        self.takeovers = 0
        self.leading_since: float | None = None      # wall clock, for /healthz
        self.handover: dict[str, Any] | None = None   # the last planned handover's timings (s)
        self.asterisk_epoch: int | None = None
        self.on_lead: list[Callable[[int], Awaitable[None]]] = []
        self.on_step_down: list[Callable[[], Awaitable[None]]] = []
        self.lease: PgLeadership | None = None
        self._decisions: asyncio.Queue[Decision] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the rest of the daemon asks -----------------------------------------

    def may_act(self) -> bool:
        """True while this node leads and its lease has not run out (checked on the
        monotonic clock, not by the lease loop: true at once after a resume)."""
        return self.role == "leader" and self.lease is not None and self.lease.leading()

    def health(self) -> dict[str, Any]:
        lease = self.lease.lease if self.lease is not None else None
        row = lease.row if lease is not None else None
        age = lease.heartbeat_age(asyncio.get_running_loop().time()) if lease is not None else None
        return {"role": self.role, "node": self.node, "cluster": self.cluster, "epoch": self.epoch,
                "holder": row.holder if row is not None else None,
                "lease_epoch": row.epoch if row is not None else None,
                "heartbeat_age_s": None if age is None else round(age, 3),
                "leaderless_s": leaderless_seconds(self.role == "leader", age, self.config.renew_within),
                "takeovers": self.takeovers, "asterisk_epoch": self.asterisk_epoch,
                "leading_since": self.leading_since, "released": row.released if row is not None else None,
                "handover": self.handover}

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        assert self.core.dsn is not None
        self.lease = PgLeadership(self.core.dsn, self.cluster, self.node, self.config,
                                  on_decision=self._decisions.put_nowait)
        log.info("ha standby", cluster=self.cluster, node=self.node)
        self._tasks = [asyncio.create_task(self.lease.run(), name="ha-lease"),
                       asyncio.create_task(self._apply_decisions(), name="ha-decisions"),
                       asyncio.create_task(self._watch_asterisk_epoch(), name="ha-asterisk-epoch")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.lease is not None:
            await self.lease.close()     # releases the advisory lock; the row ages out for the standby

    # -- the decisions ----------------------------------------------------------------

    async def _apply_decisions(self) -> None:
        while True:
            d = await self._decisions.get()
            if isinstance(d, StartLeading) and self.role == "standby":
                await self._lead(d.epoch)
            elif isinstance(d, StepDown) and self.role == "leader":
                await self._step_down(d.reason)
                return
            elif isinstance(d, HandoverAsked) and self.role == "leader":
                await self._hand_over()
                return

    async def _lead(self, epoch: int) -> None:
        self.role, self.epoch = "leader", epoch
        self.takeovers += 1
        self.leading_since = time.time()
        await self._continue_timelines()
        self.core.timeline = True
        log.warning("ha leading", node=self.node, epoch=epoch, asterisk_epoch=self.asterisk_epoch)
        for hook in list(self.on_lead):
            try:
                await hook(epoch)
            except Exception:
                log.exception("ha: a feature failed to start leading", hook=getattr(hook, "__qualname__", repr(hook)))

    async def _continue_timelines(self) -> None:
        """Before writing timelines: carry on each live call's numbering from the database
        (the old leader's rows), bounded; on failure the new rows may collide with old ones
        (the first row of a seq stays) and this is logged."""
        pool, live = self.core.pool, list(self.core.model.calls)
        if pool is None or not live:
            return
        try:
            async with asyncio.timeout(2):
                rows = await pool.fetch("SELECT call_id, max(seq) AS top FROM call_events WHERE call_id = ANY($1)"
                                        " GROUP BY call_id", live)
        except Exception as exc:
            log.warning("ha: live calls' timelines not continued", error=type(exc).__name__)
            return
        moved = continue_numbering(self.core.model, {r["call_id"]: r["top"] for r in rows})
        log.info("ha: timelines continued", calls=len(live), moved=moved)

    async def _step_down(self, reason: str) -> None:
        self.role = "stepped-down"
        self.core.timeline = False
        log.warning("ha stepped down: exiting to start again as a standby", node=self.node, epoch=self.epoch,
                    reason=reason)
        for hook in list(self.on_step_down):
            try:
                async with asyncio.timeout(10):
                    await hook()
            except Exception:
                log.exception("ha: a feature failed to stop", hook=getattr(hook, "__qualname__", repr(hook)))
        shutdown = getattr(self.core, "shutdown", None)
        if shutdown is not None:
            shutdown(EXIT_STEPPED_DOWN)

    async def _hand_over(self) -> None:
        """A planned handover: stop acting, then release the lease, then exit (75)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.role = "handing-over"         # may_act is false from here on
        log.warning("ha handing over: stopping, then releasing the lease", node=self.node, epoch=self.epoch)
        for hook in list(self.on_step_down):
            try:
                async with asyncio.timeout(10):
                    await hook()
            except Exception:
                log.exception("ha: a feature failed to stop", hook=getattr(hook, "__qualname__", repr(hook)))
        self.core.timeline = False
        stopped = loop.time()
        # What this leader decided is in the database before the standby leads: its
        # timelines (the new leader numbers each live call's events after the stored
        # ones), agent states and callbacks. Bounded: the lease must still be renewing.
        writer = getattr(self.core, "writer", None)
        drained = True
        if writer is not None:
            drained = await writer.drain(timeout=self.config.renew_within)
        written = loop.time()
        released = self.lease is not None and await self.lease.release(timeout=self.config.renew_within)
        self.role = "stepped-down"
        self.handover = {"stop_s": round(stopped - t0, 3), "drain_s": round(written - stopped, 3),
                         "drained": drained, "release_s": round(loop.time() - written, 3), "released": released}
        log.warning("ha handed over: exiting to start again as a standby", node=self.node, epoch=self.epoch,
                    **self.handover)
        shutdown = getattr(self.core, "shutdown", None)
        if shutdown is not None:
            shutdown(EXIT_STEPPED_DOWN)

    async def _watch_asterisk_epoch(self) -> None:
        """While not leading: read the epoch Asterisk holds and give it to the lease
        core, so that a takeover goes above it (an earlier leader's epoch the row
        lost, a failover to a lagging replica)."""
        while True:
            ami = self.core.ami
            if self.role == "standby" and ami is not None and ami.connected and self.lease is not None:
                with contextlib.suppress(Exception):
                    reply = await ami.send("Getvar", {"Variable": EPOCH_GLOBAL}, shape="single", timeout=2)
                    value = reply.response.headers.get("Value") or ""
                    digits = "".join(c for c in value if "0" <= c <= "9")
                    if digits:
                        self.asterisk_epoch = int(digits)
                        self.lease.lease.observe_epoch(int(digits))
            await asyncio.sleep(self.config.poll_every)


HA = web.AppKey("ha", HaNode)


def run_while_leading(app: Any, ha: HaNode, start: Callable[[int], Awaitable[None]],
                      stop: Callable[[], Awaitable[None]], *, first: bool = False) -> None:
    """A feature that acts on calls runs only while ``ha`` leads: ``start(epoch)``
    on each takeover, ``stop()`` on step-down or when the app stops (once per start).
    ``first``: started before the features already registered (the broker's publisher
    must be subscribed before the ACD's first decisions of the new term)."""
    started = False

    async def lead(epoch: int) -> None:
        nonlocal started
        await start(epoch)
        started = True

    async def step_down() -> None:
        nonlocal started
        if started:
            started = False
            await stop()

    if first:
        ha.on_lead.insert(0, lead)
    else:
        ha.on_lead.append(lead)
    ha.on_step_down.append(step_down)

    async def ctx(app: Any) -> Any:
        try:
            yield
        finally:
            await step_down()

    app.cleanup_ctx.append(ctx)
