"""A shadow of the omnichannel router, rebuilt from its decisions alone, that checks
its capacity invariants (the property tests and bench/omni_assign.py use it).

``Shadow.apply(decisions)`` replays every decision in order and raises
``AssertionError`` naming the decision when:

- an agent would hold more open tasks of a channel than its capacity there;
- a call is offered to an agent that holds a task of a ``voice_blocked_by``
  channel, whose ``capacity.voice`` is 0, or that is not available;
- a task goes to an agent logged out, on a break, or busy with a call when its
  channel is not in ``while_on_voice``;
- *fairness*: a task goes to an agent more loaded (open tasks of the channel /
  capacity) than another eligible member of its queue at that moment;
- a task leaves its queue twice, or one never accepted does;
- a task overflows from a queue it is not waiting in, or to one that is not its
  queue's ``on_max_wait`` target, or before its maximum wait there is over.

``stable(router)`` checks, after an input, that no waiting task has an eligible agent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from acd.config import TASK_CHANNELS, AcdConfig
from acd.decisions import (
    LOGGED_OUT, NOT_READY, AgentState, Offer, TaskAssigned, TaskDequeued, TaskEnded, TaskOverflowed, TaskReleased,
    VoiceBlock,
)
from acd.index import merge_requirements, qualifies
from acd.tasks import ON_VOICE

__all__ = ["Shadow"]


@dataclass
class Shadow:
    config: AcdConfig
    state: dict[str, str] = field(default_factory=dict)
    load: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)        # task -> queue
    open: dict[str, str] = field(default_factory=dict)           # task -> agent
    offers: int = 0
    assigned: int = 0
    per_agent: dict[str, int] = field(default_factory=dict)      # tasks assigned, all time
    released: dict[str, str] = field(default_factory=dict)       # task -> the agent a transfer took it from

    def __post_init__(self) -> None:
        self.agents = {a.id: a for a in self.config.agents}
        self.queues = {q.id: q for q in self.config.queues}
        self.members: dict[str, list[str]] = {}
        for q in self.config.queues:
            reqs = merge_requirements((r.skill, r.min_level) for r in q.requirements)
            self.members[q.id] = [a.id for a in self.config.agents if q.id in a.queues and qualifies(a.skills, reqs)]
        for a in self.config.agents:
            self.state[a.id] = LOGGED_OUT
            self.load[a.id] = dict.fromkeys(TASK_CHANNELS, 0)
            self.per_agent[a.id] = 0

    def accepted(self, task_id: str, queue_id: str) -> None:
        """``task_waiting`` accepted the task (call before applying its decisions)."""
        assert task_id not in self.waiting and task_id not in self.open, task_id
        self.waiting[task_id] = queue_id

    def transferred(self, task_id: str, queue_id: str) -> None:
        """``task_transferred`` accepted the task into ``queue_id`` (call before applying
        its decisions): it waits there, once its agent's ``TaskReleased`` is applied."""
        self.waiting[task_id] = queue_id

    def eligible(self, agent_id: str, channel: str) -> bool:
        a = self.agents[agent_id]
        st = self.state[agent_id]
        if st in (LOGGED_OUT, NOT_READY):
            return False
        if st in ON_VOICE and channel not in a.capacity.while_on_voice:
            return False
        return self.load[agent_id][channel] < a.capacity.of(channel)

    def ratio(self, agent_id: str, channel: str) -> float:
        return self.load[agent_id][channel] / self.agents[agent_id].capacity.of(channel)

    def blocked(self, agent_id: str) -> bool:
        a = self.agents[agent_id]
        return a.capacity.voice == 0 or any(self.load[agent_id][c] for c in a.capacity.voice_blocked_by)

    def apply(self, decisions: Iterable[object]) -> None:
        for d in decisions:
            if isinstance(d, AgentState):
                self.state[d.agent_id] = d.new
            elif isinstance(d, Offer):
                self.offers += 1
                assert not self.blocked(d.agent_id), f"voice offered to a blocked agent: {d} {self.load[d.agent_id]}"
                assert self.state[d.agent_id] == "reserved", d
            elif isinstance(d, TaskDequeued):
                assert self.waiting.pop(d.task_id, None) == d.queue_id, f"dequeued twice or unknown: {d}"
                if d.reason == "assigned":
                    self.open[d.task_id] = ""
            elif isinstance(d, TaskAssigned):
                ch, a = d.channel, d.agent_id
                assert self.open.get(d.task_id) == "", f"assigned without leaving its queue: {d}"
                assert self.eligible(a, ch), f"task to an ineligible agent: {d} state={self.state[a]} " \
                                             f"load={self.load[a]}"
                mine = self.ratio(a, ch)
                # A transfer goes to another agent than the one it came from when it can.
                skip = self.released.pop(d.task_id, None)
                for other in self.members[d.queue_id]:
                    if other != a and other != skip and self.eligible(other, ch):
                        assert mine <= self.ratio(other, ch), f"unfair: {d}, {other} has {self.load[other]}"
                self.load[a][ch] += 1
                assert self.load[a][ch] == d.load, d
                assert self.load[a][ch] <= self.agents[a].capacity.of(ch)
                self.open[d.task_id] = a
                self.assigned += 1
                self.per_agent[a] += 1
            elif isinstance(d, TaskReleased):
                assert self.open.get(d.task_id) == d.agent_id, d
                self.open[d.task_id] = ""
                self.released[d.task_id] = d.agent_id
                self.load[d.agent_id][d.channel] -= 1
                assert self.load[d.agent_id][d.channel] >= 0
            elif isinstance(d, TaskEnded):
                assert self.open.pop(d.task_id) == d.agent_id, d
                self.load[d.agent_id][d.channel] -= 1
                assert self.load[d.agent_id][d.channel] >= 0
            elif isinstance(d, TaskOverflowed):
                assert self.waiting.get(d.task_id) == d.queue_id, f"overflow of a task not waiting there: {d}"
                q = self.queues[d.queue_id]
                assert q.max_wait_s is not None and d.waited_s >= q.max_wait_s, f"overflow too soon: {d}"
                assert getattr(q.on_max_wait, "overflow", None) == d.target, f"overflow to another queue: {d}"
                self.waiting[d.task_id] = d.target
            elif isinstance(d, VoiceBlock):
                assert d.blocked == any(self.load[d.agent_id][c]
                                        for c in self.agents[d.agent_id].capacity.voice_blocked_by), d

    def stable(self) -> None:
        """No waiting task has an eligible member (checked after each whole input)."""
        # Every task of a queue has the same candidates: one look per queue.
        first: dict[str, str] = {}
        for tid, qid in self.waiting.items():
            first.setdefault(qid, tid)
        for qid, tid in first.items():
            ch = self.queues[qid].channel
            for a in self.members[qid]:
                assert not self.eligible(a, ch), f"task {tid} waits in {qid} while {a} could take it"

    def check_router(self, router) -> None:
        """The voice router's blocks match the loads (``router``: an ``OmniRouter``)."""
        for a in self.agents:
            assert router.voice.agent_state(a).voice_blocked == self.blocked(a), (a, self.load[a])
            assert router.tasks.load(a) == self.load[a]
            assert router.voice.state_of(a) == self.state[a]

