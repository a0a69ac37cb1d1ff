"""The omnichannel service in the daemon: tasks filed by channels, routed by the ACD's
task router, offered to agents' desktops over the WebSocket hub, stored in PostgreSQL.

The entry point every channel uses (web chat today; e-mail and messaging later)::

    omni = app[OMNI]
    task_id = await omni.file_task("chat", "webchat", "ada@example.org", "Order 1234", "chat-session-id")

It stores the task (idempotent per channel and ``ref``: filing the same
conversation again returns the first task's id), enters it in the router, and
when the router assigns it, pushes ``task.offered`` to the agent's desktop on
``/ws`` (no Asterisk involved). ``close_task`` (the agent, with a disposition)
frees the agent's slot. The capacity rule joins the voice router through the
ACD service: its agent state changes come in (``AcdService.agent_listeners``),
and a ``VoiceBlock`` goes out as ``AcdService.set_voice_blocked``.

In a high-availability pair it runs only while this node leads (``omni.routes.setup_omni``
wires it through ``cti.ha.run_while_leading`` after the ACD): ``may_act`` is the node's
lease check, and a takeover's ``start`` restores the waiting and held tasks from
PostgreSQL exactly as a restart does.

Database writes go through one ordered queue (assigned before closed); a
database that fails loses no routing: the router keeps going and the write is
logged (``omni.store_failed``).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, replace
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from acd.core import AcdInputError
from acd.figures import bucket_start
from acd.decisions import (
    Decision, Ignored, TaskAssigned, TaskDequeued, TaskEnded, TaskOverflowed, TaskQueueStats, TaskReleased,
    VoiceBlock,
)
from acd.tasks import TaskRouter
from omni import store
from omni.tasks import Task, TaskError, new_task

log = structlog.get_logger(__name__)

__all__ = ["OmniService", "TaskError", "NotYourTask"]

DISPOSITION_MAX = 64


class NotYourTask(TaskError):
    """The task is not assigned to the agent who asks."""


# (what happened: offered / closed / abandoned / released / overflowed, the task)
Listener = Callable[[str, Task], None]


class OmniService:
    def __init__(self, core: Any, acd: Any, push: Callable[[dict[str, Any], frozenset[str]], None] | None = None
                 ) -> None:
        self.core = core
        self.acd = acd                              # acd.routing_shell.AcdService, or None
        self.push = push or (lambda body, agents: None)
        self.router: TaskRouter | None = None
        self.tasks: dict[str, Task] = {}            # open tasks (waiting or assigned)
        self.listeners: list[Listener] = []         # channels told of their tasks' fate
        self._todo: deque[list[Decision]] = deque()
        self._busy = False
        self._writes: asyncio.Queue[Callable[[], Awaitable[Any]] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._timers: asyncio.Task[None] | None = None     # the router's maximum waits
        self._wake = asyncio.Event()                        # an input: the next deadline may be sooner
        self.filed = self.assigned = self.closed = 0
        self.restored = 0                           # tasks taken back from the database at the last start
        self.started = False                        # start done: the open tasks taken back (health's running)
        self._day: float | None = None              # the start of the day the queue figures count
        # Whether this node may route tasks (an HA pair: ``HaNode.may_act``; alone: always).
        self.may_act: Callable[[], bool] = lambda: True

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self.acd is None:
            log.info("omni disabled: no ACD to route tasks")
            return
        self.router = TaskRouter(self.acd.config)
        self._writer = asyncio.create_task(self._write_loop(), name="omni-writes")
        self.acd.agent_listeners.append(self._agent_changed)
        if self._reconfigured not in self.acd.config_listeners:
            self.acd.config_listeners.append(self._reconfigured)
        now = time.time()
        self._voice_states(now)
        pool = self.core.pool
        if pool is not None:
            found = await store.open_tasks(pool)
            self.restored = len(found)
            self._restore(found, now)
            # The day's figures of the task queues count what an earlier process routed too.
            try:
                async with asyncio.timeout(5):
                    counts = await store.day_counts(pool, _midnight(self.core, now), self._sl_seconds())
            except Exception as exc:
                log.warning("omni day figures not read back", error=type(exc).__name__)
                counts = {}
            self._seed(counts)
        self._day = _midnight(self.core, now)
        self._timers = asyncio.create_task(self._run_timers(), name="omni-timers")
        self.started = True

    def _voice_states(self, now: float) -> None:
        assert self.router is not None
        for a in self.acd.config.agents:
            self._handle(self.router.agent_voice(a.id, self.acd.router.state_of(a.id), now))

    def _sl_seconds(self) -> dict[str, float]:
        return {q.id: q.sl_seconds for q in self.acd.config.queues if q.channel != "voice"}

    def _seed(self, counts: dict[str, tuple[int, int, int, int]]) -> None:
        assert self.router is not None
        known = set(self.router.queue_ids())
        for qid, (offered, answered, within, abandoned) in counts.items():
            if qid in known:
                self.router.seed_counts(qid, offered, answered, within, abandoned)

    def _restore(self, found: list[Task], now: float) -> None:
        """Open tasks into a fresh router: those agents hold count in their load again
        (first, so that a waiting one is not given to an agent already full); waiting ones
        wait again, keeping their place. A task whose agent is no longer configured waits
        again in its queue; one whose queue is gone moves to the first queue of its channel
        (held ones stay with their agent) or, when the configuration has none, stays out of
        routing (logged)."""
        assert self.router is not None
        queues = self.router.queue_ids()
        by_channel = {}
        for q in self.acd.config.queues:
            if q.id in queues:
                by_channel.setdefault(q.channel, q.id)
        agents = {a.id for a in self.acd.config.agents}
        placed: list[Task] = []
        for t in found:
            queue = t.queue if t.queue in queues else by_channel.get(t.channel)
            if queue is None:
                log.warning("omni task has no queue of its channel", task_id=t.task_id, queue=t.queue)
                continue
            if queue != t.queue:
                t = replace(t, queue=queue)
                self.write(lambda p, t=t: store.set_queue(p, t.task_id, t.queue))
            if t.status == "assigned" and t.agent_id not in agents:
                t = replace(t, status="waiting", agent_id=None, assigned_at=None)
                self.write(lambda p, t=t: store.set_waiting(p, t.task_id, t.queue))
            self.tasks[t.task_id] = t
            placed.append(t)
        for t in placed:
            if t.status == "assigned":
                self._handle(self.router.task_held(t.task_id, t.queue, t.agent_id or "", now, since=t.created_at))
        for t in placed:
            if t.status == "waiting":
                self._handle(self.router.task_waiting(t.task_id, t.queue, now, since=t.created_at,
                                                      entered=t.queued_at, customer_ref=t.customer_ref))
        # A block the call router still holds that the new task router does not (the agent's
        # tasks left, or its rule changed) is lifted: the router only says what changes.
        for agent_id in sorted(agents & set(self.acd.voice_blocked)):
            if not self.router.voice_blocked(agent_id):
                self.acd.set_voice_blocked(agent_id, False)

    def _reconfigured(self, config: Any, now: float) -> None:
        """A new ACD configuration is in force (``AcdService.reconfigure``): a fresh task
        router of it takes every open task (``_restore``) and the day's figures so far."""
        if self.router is None:
            return
        old = self.router
        counts = {q: _counts(old.queue_stats(q, now)) for q in old.queue_ids()}
        found = sorted(self.tasks.values(), key=lambda t: (t.created_at, t.task_id))
        self.tasks = {}
        self.router = TaskRouter(config)
        self._voice_states(now)
        self._restore(found, now)
        self._seed(counts)
        log.info("omni configuration in force", tasks=len(self.tasks), queues=len(self.router.queue_ids()))

    async def stop(self) -> None:
        self.started = False
        if self.acd is not None and self._agent_changed in self.acd.agent_listeners:
            self.acd.agent_listeners.remove(self._agent_changed)
        if self.acd is not None and self._reconfigured in self.acd.config_listeners:
            self.acd.config_listeners.remove(self._reconfigured)
        if self._timers is not None:
            self._timers.cancel()
            await asyncio.gather(self._timers, return_exceptions=True)
            self._timers = None
        if self._writer is not None:
            self._writes.put_nowait(None)
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        # Stopped (an HA step-down): nothing is routed here until the next start, which
        # reads the open tasks back from the database.
        self.router = None
        self.tasks.clear()
        self._todo.clear()

    async def flush(self) -> None:
        """Wait until every database write queued so far is done."""
        done = asyncio.get_running_loop().create_future()
        self._writes.put_nowait(lambda: _set(done))
        await done

    def health(self) -> dict[str, Any]:
        # Running once the open tasks are taken back (not while a start reads them: a takeover's
        # health then said running with nothing restored yet).
        return {"running": self.router is not None and self.started, "open": len(self.tasks), "filed": self.filed,
                "assigned": self.assigned, "closed": self.closed, "restored": self.restored}

    # -- the entry point of every channel -----------------------------------------

    async def file_task(self, channel: str, queue: str, customer_ref: str, subject: str, ref: str) -> str:
        """File a work item of ``channel`` (chat, email, message) into ``queue``, a queue
        of that channel in the ACD configuration. Returns the task id (the one already
        filed when this channel filed ``ref`` before). Raises ``TaskError`` for a bad
        field, an unknown queue or one of another channel, or when no ACD runs."""
        router = self._router()
        task = new_task(channel, queue, customer_ref, subject, ref, time.time())
        cfg = next((q for q in self.acd.config.queues if q.id == queue), None)
        if cfg is None or cfg.channel != channel:
            raise TaskError(f"queue {queue!r} is no {channel} queue")
        pool = self.core.pool
        if pool is not None:
            stored = await store.insert_task(pool, task)
            if stored is None:
                existing = await store.by_ref(pool, channel, task.ref)
                assert existing is not None
                return existing.task_id
        else:
            same = next((t for t in self.tasks.values() if t.channel == channel and t.ref == task.ref), None)
            if same is not None:
                return same.task_id
        self.tasks[task.task_id] = task
        self.filed += 1
        log.info("omni task filed", task_id=task.task_id, channel=channel, queue=queue)
        self._handle(router.task_waiting(task.task_id, queue, task.created_at, customer_ref=task.customer_ref))
        return task.task_id

    def close_task(self, task_id: str, agent_id: str, disposition: str) -> Task:
        """The agent is done with its task. Returns the closed task. Raises ``TaskError``
        (unknown or not assigned) or ``NotYourTask``."""
        router = self._router()
        if not isinstance(disposition, str) or not 0 < len(disposition.strip()) <= DISPOSITION_MAX:
            raise TaskError(f"disposition: 1 to {DISPOSITION_MAX} characters")
        task = self.tasks.get(task_id)
        if task is None or task.status != "assigned":
            raise TaskError(f"task {task_id!r} is not open with an agent")
        if task.agent_id != agent_id:
            raise NotYourTask(f"task {task_id!r} is not assigned to {agent_id!r}")
        now = time.time()
        closed = task.closed(now, disposition.strip())
        self.tasks[task_id] = closed
        self._handle(router.task_closed(task_id, now))
        return closed

    def abandon(self, task_id: str) -> bool:
        """The customer left before an agent had the task: True when it was waiting."""
        router = self._router()
        return any(isinstance(d, TaskDequeued) for d in self._handle(router.task_abandoned(task_id, time.time())))

    def end_task(self, task_id: str, disposition: str) -> Task | None:
        """Close an open task whoever holds it (its channel closed the conversation: the
        mail thread, the messaging conversation). A waiting one is closed too (taken out
        of its queue, counted as abandoned). Returns the closed task, None when it was not
        open. Raises ``TaskError`` when tasks are not routed here."""
        router = self._router()
        task = self.tasks.get(task_id)
        if task is None:
            return None
        now = time.time()
        if task.status == "waiting":
            self._handle(router.task_abandoned(task_id, now))
            return replace(task, status="abandoned", closed_at=now)
        closed = self.tasks[task_id] = task.closed(now, disposition[:DISPOSITION_MAX])
        self._handle(router.task_closed(task_id, now))
        return closed

    def take(self, task_id: str, agent_id: str) -> Task:
        """The agent takes the task itself (or is given it: a transfer to an agent).
        Returns the task as it is then. Raises ``TaskError`` (not open, unknown agent)."""
        router = self._router()
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskError(f"task {task_id!r} is not open")
        if task.agent_id == agent_id:
            return task
        try:
            self._handle(router.task_taken(task_id, agent_id, time.time()))
        except AcdInputError as exc:
            raise TaskError(str(exc)) from None
        return self.tasks[task_id]

    def transfer(self, task_id: str, queue: str) -> Task:
        """The task waits in ``queue`` (of its channel), keeping its wait; its agent is
        freed. Returns the task as it is then (maybe already with another agent).
        Raises ``TaskError`` (not open, unknown queue or one of another channel)."""
        router = self._router()
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskError(f"task {task_id!r} is not open")
        if task.status == "waiting" and task.queue == queue:
            return task
        now = time.time()
        try:
            decisions = router.task_transferred(task_id, queue, now)
        except AcdInputError as exc:
            raise TaskError(str(exc)) from None
        moved = self.tasks[task_id] = replace(self.tasks[task_id], queue=queue, queued_at=now)
        if moved.status == "waiting":
            self.write(lambda p: store.set_waiting(p, task_id, queue, now))
        self._handle(decisions)
        return self.tasks[task_id]

    def open_by_ref(self, channel: str, ref: str) -> Task | None:
        """The open task of the channel's conversation ``ref``, if any."""
        return next((t for t in self.tasks.values() if t.channel == channel and t.ref == ref), None)

    # -- queries ---------------------------------------------------------------------

    def tasks_of(self, agent_id: str | None) -> list[Task]:
        """Open tasks of the agent (every open task for None)."""
        return [t for t in self.tasks.values() if agent_id is None or t.agent_id == agent_id]

    def waiting_info(self, task_id: str) -> tuple[int | None, float | None]:
        """(position in its queue, estimated seconds): (0, 0.0) once assigned, (None, None) unknown."""
        if self.router is None:
            return None, None
        return self.router.position(task_id), self.router.estimated_wait(task_id)

    def queue_stats(self, now: float) -> list[TaskQueueStats]:
        """Each task queue's figures now, those of the day since the site's midnight (none
        while not running: no ACD, or a standby)."""
        router = self.router
        if router is None:
            return []
        day = _midnight(self.core, now)
        if self._day is not None and day > self._day:
            router.new_day()
        self._day = day
        return [router.queue_stats(q, now) for q in router.queue_ids()]

    # -- internals ---------------------------------------------------------------------

    def _router(self) -> TaskRouter:
        if self.router is None:
            if self.acd is not None and not self.may_act():
                raise TaskError("tasks are not routed here: this node is a high-availability standby")
            raise TaskError("tasks are not routed: no ACD runs")
        return self.router

    def _agent_changed(self, agent_id: str, at: float) -> None:
        if self.router is not None:
            try:
                decisions = self.router.agent_voice(agent_id, self.acd.router.state_of(agent_id), at)
            except AcdInputError:   # an agent a new configuration adds: the new task router has it
                return
            self._handle(decisions)

    def _handle(self, decisions: list[Decision]) -> list[Decision]:
        """Carry decisions out, in order; those caused meanwhile (a voice block lets a
        call be offered, whose agent state comes back here) are queued behind."""
        self._todo.append(decisions)
        if self._busy:
            return decisions
        self._busy = True
        try:
            while self._todo:
                for d in self._todo.popleft():
                    self._one(d)
        finally:
            self._busy = False
            self._wake.set()
        return decisions

    async def _run_timers(self) -> None:
        """Sleep until the router's next deadline (a maximum wait), or until an input may
        have brought it nearer; then ``tick``."""
        while True:
            self._wake.clear()
            router = self.router
            deadline = router.next_deadline() if router is not None else None
            try:
                async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.time())):
                    await self._wake.wait()
                continue
            except TimeoutError:
                pass
            if self.router is not None:
                try:
                    self._handle(self.router.tick(time.time()))
                except Exception:   # a bug must not stop the timers: the next input wakes them again
                    log.exception("omni timers failed")
                    await asyncio.sleep(1)

    def _one(self, d: Decision) -> None:
        if isinstance(d, TaskAssigned):
            task = self.tasks.get(d.task_id)
            if task is None:
                return
            task = self.tasks[d.task_id] = task.assigned(d.agent_id, d.at)
            self.assigned += 1
            log.info("omni task assigned", task_id=d.task_id, agent=d.agent_id, reason=d.reason)
            self.write(lambda p: store.set_assigned(p, d.task_id, d.agent_id, d.at))
            self.push({"type": "task.offered", "task": _public(task), "load": d.load, "reason": d.reason},
                      frozenset({d.agent_id}))
            self._tell("offered", task)
        elif isinstance(d, TaskOverflowed):
            task = self.tasks.get(d.task_id)
            if task is None:
                return
            task = self.tasks[d.task_id] = replace(task, queue=d.target, queued_at=d.at)
            log.info("omni task overflowed", task_id=d.task_id, queue=d.queue_id, target=d.target,
                     waited_s=round(d.waited_s, 1))
            self.write(lambda p: store.set_queue(p, d.task_id, d.target, d.at))
            self._tell("overflowed", task)
        elif isinstance(d, TaskReleased):
            task = self.tasks.get(d.task_id)
            if task is None:
                return
            task = self.tasks[d.task_id] = replace(task, status="waiting", agent_id=None, assigned_at=None,
                                                   queued_at=d.at)
            queue = task.queue
            log.info("omni task released", task_id=d.task_id, agent=d.agent_id, reason=d.reason)
            self.write(lambda p: store.set_waiting(p, d.task_id, queue, d.at))
            self.push({"type": "task.released", "task": _public(task), "reason": d.reason},
                      frozenset({d.agent_id}))
            self._tell("released", task)
        elif isinstance(d, TaskEnded):
            task = self.tasks.pop(d.task_id, None)
            if task is None:
                return
            self.closed += 1
            disposition = task.disposition or ""
            self.write(lambda p: store.set_closed(p, d.task_id, d.at, disposition))
            self.push({"type": "task.closed", "task": _public(task)}, frozenset({d.agent_id}))
            self._tell("closed", task)
        elif isinstance(d, TaskDequeued) and d.reason == "abandoned":
            task = self.tasks.pop(d.task_id, None)
            self.write(lambda p: store.set_abandoned(p, d.task_id, d.at))
            if task is not None:
                self._tell("abandoned", task)
        elif isinstance(d, VoiceBlock):
            log.info("omni voice block", agent=d.agent_id, blocked=d.blocked, reason=d.reason)
            self.acd.set_voice_blocked(d.agent_id, d.blocked)
        elif isinstance(d, Ignored):
            log.debug("omni ignored", input=d.input, task_id=d.call_id, reason=d.reason)

    def _tell(self, what: str, task: Task) -> None:
        for listener in self.listeners:
            try:
                listener(what, task)
            except Exception:   # a channel's bug must not stop routing
                log.exception("omni listener failed", what=what, task_id=task.task_id)

    def write(self, fn: Callable[[Any], Awaitable[Any]]) -> None:
        """Queue a database write behind the ones before it (none without a database)."""
        pool = self.core.pool
        if pool is not None and self._writer is not None:
            self._writes.put_nowait(lambda: fn(pool))

    async def _write_loop(self) -> None:
        while True:
            job = await self._writes.get()
            if job is None:
                return
            try:
                async with asyncio.timeout(10):
                    await job()
            except Exception as exc:
                log.warning("omni.store_failed", error=type(exc).__name__)


async def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _midnight(core: Any, now: float) -> float:
    """The start of the day of ``now`` in the site's time zone (the wallboard's day)."""
    try:
        tz = ZoneInfo(getattr(core.settings, "timezone", None) or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return bucket_start(now, "day", tz)


def _counts(s: TaskQueueStats) -> tuple[int, int, int, int]:
    return s.offered, s.answered, s.answered_within_sl, s.abandoned


def _public(t: Task) -> dict[str, Any]:
    return asdict(t)
