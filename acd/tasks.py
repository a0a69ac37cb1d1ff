"""Tasks of the other channels (chat, e-mail, message) in the ACD: pure, time passed in.

The voice router (``acd.core.Router``) keeps routing calls exactly as before;
this core routes the *tasks* of the other channels to the same agents, and the
two meet in each agent's capacity rule (``acd.config.Capacity``,
docs/omnichannel.md). ``acd.omni.OmniRouter`` joins them into one pure router.

- A task waits in a queue of its channel (the queue's ``channel``), and goes
  to one agent who keeps it until ``task_closed``. No ringing: an assignment is
  the offer and its acceptance (the desktop shows the task at once).
- The agent's voice state comes in with ``agent_voice`` (each ``AgentState.new``
  of the voice router): logged out or on a break (not ready), it takes no new
  task; ringing, talking or in wrap-up, only those of ``while_on_voice``.
- Capacity: an agent holds at most ``capacity.<channel>`` open tasks of each
  channel. While it holds any task of a ``voice_blocked_by`` channel, a
  ``VoiceBlock`` tells the voice router to offer it no call; it comes once per
  input, after the assignments (never lifted and set again within one input).
- Fairness: a new task goes to the least-loaded eligible agent (open tasks of
  the channel / its capacity there), then the fewest open tasks of every
  channel, then the longest since its last task. An agent who frees a slot
  takes the best task it may: higher priority, then the longest effective
  wait (waited x the queue's ``aging_weight``). After every input no waiting
  task has an eligible agent (*stable*, as for calls), so the freed agent is
  the only one eligible and fairness holds at every assignment.
- Service level per queue, so per channel: assigned within its ``sl_seconds``.
- Maximum wait: a queue's ``max_wait_s`` with ``on_max_wait = { overflow = "q" }``
  (a queue of the same channel): a task waiting that long since it entered the
  queue moves to ``q`` (``TaskOverflowed``), keeping its place by first arrival,
  and is routed there as a new arrival; ``q``'s own maximum wait then counts from
  the overflow. The router says when it next needs ``tick(now)``
  (``next_deadline()``); the shell sleeps until then.
- An agent may also *take* a task itself (``task_taken``: the mail panel's
  Take), and a task may be *transferred* to another queue of its channel
  (``task_transferred``, keeping its wait) or to an agent (``task_taken``).
  An agent's own take counts like a held task, even over its capacity (the
  agent chose it; the router then gives it nothing more of the channel until
  it is under); the router's own assignments never exceed it.

Costs: a new task scans the members of its queue; a freed agent looks at the
head of each of its queues of that channel (a heap per queue).

Errors: ``AcdInputError`` (``acd.core``) for unknown agents and queues or a
voice queue; inputs that no longer apply return ``Ignored``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from heapq import heappop, heappush
from itertools import count

from acd.config import TASK_CHANNELS, AcdConfig, Capacity, Overflow
from acd.config import Queue as QueueConfig
from acd.core import AcdInputError
from acd.decisions import (
    LOGGED_OUT, NOT_READY, ON_CALL, RESERVED, WRAPUP, Decision, Ignored, TaskAssigned,
    TaskDequeued, TaskEnded, TaskOverflowed, TaskQueueStats, TaskReleased, VoiceBlock,
)
from acd.index import merge_requirements, qualifies

__all__ = ["TaskRouter", "ON_VOICE"]

# Voice states in which the agent is busy with a call: only ``while_on_voice`` channels.
ON_VOICE = frozenset({RESERVED, ON_CALL, WRAPUP})
_WAITING, _ASSIGNED, _GONE = "waiting", "assigned", "gone"
HANDLE_ALPHA = 0.2


@dataclass(slots=True, eq=False)
class _Agent:
    id: str
    ord: int
    cap: Capacity
    skills: dict[str, int]
    state: str = LOGGED_OUT
    load: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASK_CHANNELS, 0))
    tasks: set[str] = field(default_factory=set)
    last_at: float = -math.inf
    assigned: int = 0
    blocked: bool = False           # what was last said to the voice router
    queues: list["_Queue"] = field(default_factory=list)

    def open_total(self) -> int:
        return sum(self.load.values())

    def may_take(self, channel: str) -> bool:
        """Logged in, not on a break, below capacity, and not held by a call (unless allowed)."""
        if self.state in (LOGGED_OUT, NOT_READY):
            return False
        if self.state in ON_VOICE and channel not in self.cap.while_on_voice:
            return False
        return self.load[channel] < self.cap.of(channel)


@dataclass(slots=True, eq=False)
class _Task:
    id: str
    queue: "_Queue"
    prio: int
    arrived_at: float
    seq: int
    customer_ref: str | None
    status: str = _WAITING
    agent: _Agent | None = None
    assigned_at: float = 0.0
    entered_at: float = 0.0         # entry in its queue now: the maximum wait counts from it


class _Queue:
    __slots__ = ("cfg", "id", "channel", "reqs", "members", "heap", "waiting", "offered", "answered",
                 "within", "abandoned", "overflowed", "handle_avg", "open", "overflow_to")

    def __init__(self, cfg: QueueConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.channel = cfg.channel
        self.reqs = merge_requirements((r.skill, r.min_level) for r in cfg.requirements)
        self.members: list[_Agent] = []         # qualified members only
        self.heap: list[tuple[int, float, int, _Task]] = []   # (-prio, arrived, seq, task), lazy
        self.waiting: dict[str, _Task] = {}
        self.offered = self.answered = self.within = self.abandoned = self.overflowed = 0
        self.handle_avg = cfg.expected_handle_s
        self.open = 0
        self.overflow_to: str | None = cfg.on_max_wait.overflow if isinstance(cfg.on_max_wait, Overflow) else None

    def head(self) -> _Task | None:
        heap = self.heap
        while heap:
            task = heap[0][3]
            if task.status == _WAITING and task.queue is self:
                return task
            heappop(heap)
        return None


class TaskRouter:
    """Routes chat, e-mail and message tasks to agents within their capacity. See the module docstring."""

    def __init__(self, config: AcdConfig) -> None:
        self.config = config
        self.ignored = 0
        self._now = -math.inf
        self._seq = count()
        self._agents = {a.id: _Agent(a.id, i, a.capacity, dict(a.skills)) for i, a in enumerate(config.agents)}
        self._queues = {q.id: _Queue(q) for q in config.queues if q.channel != "voice"}
        for a in config.agents:
            agent = self._agents[a.id]
            for qid in a.queues:
                q = self._queues.get(qid)
                if q is not None and qualifies(agent.skills, q.reqs):
                    q.members.append(agent)
                    agent.queues.append(q)
        self._tasks: dict[str, _Task] = {}
        self._timers: list[tuple[float, int, _Task]] = []     # (max wait's end, seq, task), lazy

    # -- inputs ------------------------------------------------------------------

    def note_voice(self, agent_id: str, state: str) -> None:
        """The agent's voice state is now ``state``, known before any task is matched: when
        several agents change in one input (wrap-ups ending at the same tick), each is
        noted first, so the first one freed does not fill up while the others look busy."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            agent.state = state

    def agent_voice(self, agent_id: str, state: str, now: float) -> list[Decision]:
        """The agent's voice state is now ``state`` (the voice router's ``AgentState.new``)."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        agent.state = state
        out: list[Decision] = []
        self._match_agent(agent, now, out)
        self._check_block(agent, now, out)
        return out

    def task_waiting(self, task_id: str, queue_id: str, now: float, *, priority: int | None = None,
                     customer_ref: str | None = None, since: float | None = None,
                     entered: float | None = None) -> list[Decision]:
        """A task starts waiting in ``queue_id`` (a queue of a task channel); ``since``
        (at most ``now``) when it began, for one taken over after a restart (its place),
        and ``entered`` when it entered this queue if later (a transfer or an overflow
        before the restart: the maximum wait counts from it; default ``since``).
        Raises ``AcdInputError`` for an unknown or voice queue or a bad priority."""
        now = self._clock(now)
        q = self._queues.get(queue_id)
        if q is None:
            raise AcdInputError(f"unknown task queue {queue_id!r}")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise AcdInputError(f"task {task_id!r}: priority must be an integer, not {priority!r}")
        if task_id in self._tasks:
            return self._ignore("task_waiting", task_id, None, "task already known")
        began = now if since is None or since != since else min(since, now)
        entered_at = began if entered is None or entered != entered else min(max(entered, began), now)
        task = _Task(task_id, q, q.cfg.priority if priority is None else priority, began, next(self._seq),
                     customer_ref, entered_at=entered_at)
        self._tasks[task_id] = task
        out: list[Decision] = []
        self._arrive(task, q, now, out, None, "")
        return out

    def task_held(self, task_id: str, queue_id: str, agent_id: str, now: float, *,
                  since: float | None = None) -> list[Decision]:
        """The agent already holds the task (found open after a restart): it counts in the
        agent's load from now on, even over capacity (a fact, not an offer: the agent then
        takes no new task of the channel until under it). No decision but a ``VoiceBlock``.
        Raises ``AcdInputError`` for an unknown agent or task queue."""
        now = self._clock(now)
        q = self._queue(queue_id)
        agent = self._agent(agent_id)
        if task_id in self._tasks:
            return self._ignore("task_held", task_id, agent_id, "task already known")
        began = now if since is None else min(since, now)
        task = _Task(task_id, q, q.cfg.priority, began, next(self._seq), None, status=_ASSIGNED, agent=agent,
                     assigned_at=now)
        self._tasks[task_id] = task
        agent.tasks.add(task_id)
        agent.load[q.channel] += 1
        q.open += 1
        out: list[Decision] = []
        self._check_block(agent, now, out)
        return out

    def task_abandoned(self, task_id: str, now: float) -> list[Decision]:
        """The customer left before an agent had the task (ignored once assigned: the agent closes it)."""
        now = self._clock(now)
        task = self._tasks.get(task_id)
        if task is None or task.status != _WAITING:
            return self._ignore("task_abandoned", task_id, None, "task not waiting")
        q = task.queue
        del q.waiting[task_id]
        del self._tasks[task_id]
        task.status = _GONE
        q.offered += 1
        q.abandoned += 1
        return [TaskDequeued(task_id, q.id, q.channel, "abandoned", max(0.0, now - task.arrived_at), now)]

    def task_closed(self, task_id: str, now: float) -> list[Decision]:
        """The agent is done with the task: its slot is free and it takes the best waiting task it may."""
        now = self._clock(now)
        task = self._tasks.get(task_id)
        if task is None or task.status != _ASSIGNED:
            return self._ignore("task_closed", task_id, None, "task not assigned")
        agent = task.agent
        assert agent is not None
        q = task.queue
        del self._tasks[task_id]
        task.status = _GONE
        agent.tasks.discard(task_id)
        agent.load[q.channel] -= 1
        q.open -= 1
        q.handle_avg += HANDLE_ALPHA * (max(0.0, now - task.assigned_at) - q.handle_avg)
        out: list[Decision] = [TaskEnded(task_id, agent.id, q.channel, now)]
        self._match_agent(agent, now, out)
        # Once, after the agent took what it may: a block lifted and set again in one
        # input would let the voice router offer a call in between.
        self._check_block(agent, now, out)
        return out

    def task_taken(self, task_id: str, agent_id: str, now: float, *, reason: str = "taken") -> list[Decision]:
        """``agent_id`` takes the task itself, or is given it (a transfer to an agent):
        waiting, it leaves its queue; held by another agent, that agent's slot is
        freed (``TaskReleased``, then it takes the best task it may). Counts even
        over capacity (see the module docstring). Raises ``AcdInputError`` for an
        unknown agent; an unknown or closed task, or one the agent holds, is ``Ignored``."""
        now = self._clock(now)
        agent = self._agent(agent_id)
        task = self._tasks.get(task_id)
        if task is None or task.status not in (_WAITING, _ASSIGNED):
            return self._ignore("task_taken", task_id, agent_id, "task not open")
        if task.agent is agent:
            return self._ignore("task_taken", task_id, agent_id, "the agent holds it already")
        out: list[Decision] = []
        q = task.queue
        previous = task.agent
        if previous is None:
            self._assign(task, agent, now, out, reason)
        else:
            self._release(task, now, out, f"{reason} by {agent_id}")
            task.status, task.agent, task.assigned_at = _ASSIGNED, agent, now
            agent.tasks.add(task.id)
            agent.load[q.channel] += 1
            agent.last_at = now
            agent.assigned += 1
            q.open += 1
            out.append(TaskAssigned(task.id, agent.id, q.channel, q.id, agent.load[q.channel], reason, now))
            self._match_agent(previous, now, out)
            self._check_block(previous, now, out)
        self._check_block(agent, now, out)
        return out

    def task_transferred(self, task_id: str, queue_id: str, now: float) -> list[Decision]:
        """The task goes to wait in ``queue_id`` (a queue of the same channel), keeping
        its wait (its place is by when it first arrived); its agent, if any, is freed.
        Then routed as a new arrival (the least-loaded eligible member takes it).
        Raises ``AcdInputError`` for an unknown queue or one of another channel; an
        unknown or closed task is ``Ignored``."""
        now = self._clock(now)
        target = self._queue(queue_id)
        task = self._tasks.get(task_id)
        if task is None or task.status not in (_WAITING, _ASSIGNED):
            return self._ignore("task_transferred", task_id, None, "task not open")
        if target.channel != task.queue.channel:
            raise AcdInputError(f"queue {queue_id!r} is a {target.channel} queue, the task is {task.queue.channel}")
        out: list[Decision] = []
        previous = task.agent
        if previous is None:
            if task.queue is target:
                return self._ignore("task_transferred", task_id, None, "already waiting in this queue")
            del task.queue.waiting[task.id]     # its stale heap entry is skipped (queue differs)
        else:
            self._release(task, now, out, f"transferred to {queue_id}")
        task.status, task.agent = _WAITING, None
        task.prio = target.cfg.priority
        task.entered_at = now
        self._arrive(task, target, now, out, previous, "transferred: ")
        if previous is not None:
            self._match_agent(previous, now, out)
            self._check_block(previous, now, out)
        return out

    def tick(self, now: float) -> list[Decision]:
        """Every maximum wait come by ``now``: the task overflows (``TaskOverflowed``) and
        is routed in its target queue as a new arrival (maybe a ``TaskAssigned``)."""
        now = self._clock(now)
        out: list[Decision] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, task = heappop(timers)
            if self._due(task) != due:
                continue
            q = task.queue
            target = self._queues[q.overflow_to or ""]
            del q.waiting[task.id]          # its heap entry is skipped (queue differs)
            q.offered += 1
            q.overflowed += 1
            out.append(TaskOverflowed(task.id, q.id, target.id, q.channel, max(0.0, now - task.entered_at), now))
            task.prio = target.cfg.priority
            task.entered_at = now
            self._arrive(task, target, now, out, None, f"overflow from {q.id}: ")
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called: the first maximum wait to come (None: none)."""
        timers = self._timers
        while timers and self._due(timers[0][2]) != timers[0][0]:
            heappop(timers)
        return timers[0][0] if timers else None

    def new_day(self) -> None:
        """The day's counters (offered, answered, within the service level, abandoned) of
        every queue start again (the shell calls it at the site's midnight)."""
        for q in self._queues.values():
            q.offered = q.answered = q.within = q.abandoned = q.overflowed = 0

    def seed_counts(self, queue_id: str, offered: int, answered: int, within: int, abandoned: int) -> None:
        """Add the day's figures routed before this router existed (a restart, a
        takeover, a new configuration) to the queue's counters."""
        q = self._queue(queue_id)
        q.offered += offered
        q.answered += answered
        q.within += within
        q.abandoned += abandoned

    # -- queries -------------------------------------------------------------------

    def load(self, agent_id: str) -> dict[str, int]:
        """Open tasks of the agent per task channel."""
        return dict(self._agent(agent_id).load)

    def voice_blocked(self, agent_id: str) -> bool:
        return self._agent(agent_id).blocked

    def agent_of(self, task_id: str) -> str | None:
        task = self._tasks.get(task_id)
        return task.agent.id if task is not None and task.agent is not None else None

    def waiting(self, queue_id: str) -> list[str]:
        """Waiting task ids of the queue in service order."""
        q = self._queue(queue_id)
        return [t.id for t in sorted(q.waiting.values(), key=lambda t: (-t.prio, t.arrived_at, t.seq))]

    def position(self, task_id: str) -> int | None:
        """1 for the next task of its queue to be served, 0 once assigned, None if unknown."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if task.status == _ASSIGNED:
            return 0
        mine = (-task.prio, task.arrived_at, task.seq)
        return 1 + sum(1 for t in task.queue.waiting.values() if (-t.prio, t.arrived_at, t.seq) < mine)

    def estimated_wait(self, task_id: str) -> float | None:
        """Seconds until assignment: position x handle time / the staffed members' slots
        (0 once assigned; None when unknown or nobody staffed could take it)."""
        pos = self.position(task_id)
        if pos is None:
            return None
        if pos == 0:
            return 0.0
        q = self._tasks[task_id].queue
        slots = sum(a.cap.of(q.channel) for a in q.members if a.state not in (LOGGED_OUT, NOT_READY))
        if slots == 0:
            return None
        return pos * q.handle_avg / slots

    def queue_stats(self, queue_id: str, now: float) -> TaskQueueStats:
        q = self._queue(queue_id)
        oldest = min((t.arrived_at for t in q.waiting.values()), default=now)
        sl = 100.0 * q.within / q.offered if q.offered else None
        eligible = sum(1 for a in q.members if a.state not in (LOGGED_OUT, NOT_READY))
        return TaskQueueStats(q.id, q.channel, len(q.waiting), q.open, max(0.0, now - oldest), q.offered,
                              q.answered, q.within, q.abandoned, sl, q.cfg.sl_percent, q.cfg.sl_seconds,
                              eligible, q.overflowed)

    def queue_ids(self) -> list[str]:
        return list(self._queues)

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _fair_key(agent: _Agent, channel: str) -> tuple:
        return (agent.load[channel] / agent.cap.of(channel), agent.open_total(), agent.last_at, agent.ord)

    def _arrive(self, task: _Task, q: _Queue, now: float, out: list[Decision], other_than: _Agent | None,
                why: str) -> None:
        """The task waits in ``q`` from now (a new one, a transfer, an overflow): the
        least-loaded eligible member (not ``other_than``) takes it, else its maximum
        wait, if any, is armed."""
        task.queue = q
        task.seq = next(self._seq)
        q.waiting[task.id] = task
        heappush(q.heap, (-task.prio, task.arrived_at, task.seq, task))
        best = None
        for agent in q.members:
            if agent is not other_than and agent.may_take(q.channel):
                k = self._fair_key(agent, q.channel)
                if best is None or k < best[0]:
                    best = (k, agent)
        if best is not None:
            self._assign(task, best[1], now, out, f"{why}least loaded eligible agent "
                         f"({best[1].load[q.channel]}/{best[1].cap.of(q.channel)} {q.channel})")
            self._check_block(best[1], now, out)
            return
        due = self._due(task)
        if due is not None:
            heappush(self._timers, (due, task.seq, task))

    @staticmethod
    def _due(task: _Task) -> float | None:
        """When the waiting task's maximum wait in its queue ends (None: not waiting, or none)."""
        q = task.queue
        if task.status != _WAITING or q.overflow_to is None or q.cfg.max_wait_s is None:
            return None
        return task.entered_at + q.cfg.max_wait_s

    def _assign(self, task: _Task, agent: _Agent, now: float, out: list[Decision], reason: str) -> None:
        q = task.queue
        del q.waiting[task.id]
        task.status = _ASSIGNED
        task.agent = agent
        task.assigned_at = now
        agent.tasks.add(task.id)
        agent.load[q.channel] += 1
        agent.last_at = now
        agent.assigned += 1
        q.open += 1
        q.offered += 1
        q.answered += 1
        waited = max(0.0, now - task.arrived_at)
        q.within += waited <= q.cfg.sl_seconds
        out.append(TaskDequeued(task.id, q.id, q.channel, "assigned", waited, now))
        out.append(TaskAssigned(task.id, agent.id, q.channel, q.id, agent.load[q.channel], reason, now))

    def _release(self, task: _Task, now: float, out: list[Decision], reason: str) -> None:
        """The task's agent no longer holds it (the task stays open)."""
        agent = task.agent
        assert agent is not None
        q = task.queue
        agent.tasks.discard(task.id)
        agent.load[q.channel] -= 1
        q.open -= 1
        task.agent = None
        out.append(TaskReleased(task.id, agent.id, q.channel, reason, now))

    def _check_block(self, agent: _Agent, now: float, out: list[Decision]) -> None:
        holding = [c for c in agent.cap.voice_blocked_by if agent.load[c]]
        blocked = bool(holding)
        if blocked != agent.blocked:
            agent.blocked = blocked
            out.append(VoiceBlock(agent.id, blocked, f"holds {', '.join(holding)} tasks" if blocked
                                  else "no task blocks voice", now))

    def _match_agent(self, agent: _Agent, now: float, out: list[Decision]) -> None:
        """Give the agent the best waiting tasks it may take, until full or none is left."""
        while True:
            best = None
            for q in agent.queues:
                if not q.waiting or not agent.may_take(q.channel):
                    continue
                task = q.head()
                if task is None:
                    continue
                k = (-task.prio, (task.arrived_at - now) * q.cfg.aging_weight, task.seq)
                if best is None or k < best[0]:
                    best = (k, task)
            if best is None:
                return
            task = best[1]
            # Another member freed at the same instant and less loaded takes it instead
            # (the agent keeps it when their loads are equal): least loaded first, as when a
            # task arrives.
            ch = task.queue.channel
            mine = self._fair_key(agent, ch)
            fairer = min(((self._fair_key(a, ch), a) for a in task.queue.members
                          if a is not agent and a.may_take(ch)), default=None, key=lambda x: x[0])
            if fairer is not None and fairer[0][0] < mine[0]:
                other = fairer[1]
                self._assign(task, other, now, out, f"agent free in {ch}: priority {task.prio}, "
                             f"waited {now - task.arrived_at:.1f}s; least loaded of those free "
                             f"({other.load[ch]}/{other.cap.of(ch)} {ch})")
                self._check_block(other, now, out)
                continue
            self._assign(task, agent, now, out, f"agent free in {ch}: priority {task.prio}, "
                         f"waited {now - task.arrived_at:.1f}s")

    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise AcdInputError(f"unknown agent {agent_id!r}")
        return agent

    def _queue(self, queue_id: str) -> _Queue:
        q = self._queues.get(queue_id)
        if q is None:
            raise AcdInputError(f"unknown task queue {queue_id!r}")
        return q

    def _clock(self, now: float) -> float:
        if now > self._now:
            self._now = now
        return self._now

    def _ignore(self, what: str, task_id: str | None, agent_id: str | None, reason: str) -> list[Decision]:
        self.ignored += 1
        return [Ignored(what, task_id, agent_id, reason)]
