"""The router's indexes: pools of agents and calls that can meet, kept ordered.

A *pool* is one queue with one set of requirements (a step's requirements
plus a caller's extra skills). It holds:

- the agents who may take its calls (members of the queue, or of a queue it
  borrows from) and meet its requirements, split into *tiers* by source queue,
  membership priority and delay. A tier keeps its available agents in a heap
  ordered by the queue's selection policy, so the best one is its top;
- its waiting calls, one heap per call priority, oldest arrival on top.

Both kinds of heap delete lazily: an entry carries the version its owner had
when pushed, and the owner bumps its version when it leaves (an agent stops
being available, a call is offered or moves). Stale entries are dropped when
they reach the top, and the heap is rebuilt when they outnumber live ones.
So a decision looks at a few heap tops, never at every agent or call.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any, Callable, Iterable, Mapping

ReqSet = tuple[tuple[str, int], ...]


def merge_requirements(*groups: Iterable[tuple[str, int]]) -> ReqSet:
    """One canonical requirement set: each skill once, at the highest level asked."""
    levels: dict[str, int] = {}
    for group in groups:
        for skill, level in group:
            if level > levels.get(skill, 0):
                levels[skill] = level
    return tuple(sorted(levels.items()))


def qualifies(skills: Mapping[str, int], reqs: ReqSet) -> bool:
    """Whether an agent with ``skills`` meets every requirement of ``reqs``."""
    for skill, level in reqs:
        if skills.get(skill, 0) < level:
            return False
    return True


def describe(reqs: ReqSet) -> str:
    return ", ".join(f"{s}>={lvl}" for s, lvl in reqs) if reqs else "any skills"


class Tier:
    """Available agents of one pool sharing source queue, membership priority and delay."""

    __slots__ = ("lender", "borrowed", "mprio", "delay", "heap", "live", "logged_in")

    def __init__(self, lender: Any, mprio: int, delay: float) -> None:
        self.lender = lender            # the lending queue, or None for the pool's own members
        self.borrowed = lender is not None
        self.mprio = mprio
        self.delay = delay
        self.heap: list[tuple[tuple, int, Any]] = []
        self.live = 0                   # available agents in the heap
        self.logged_in = 0

    def push(self, key: tuple, agent: Any) -> None:
        heappush(self.heap, (key, agent.avail_ver, agent))
        self.live += 1
        if len(self.heap) > 2 * self.live + 32:
            self.heap = [e for e in self.heap if e[1] == e[2].avail_ver]
            heapify(self.heap)

    def top(self) -> tuple[tuple, Any] | None:
        """The best available agent and its key, or None."""
        heap = self.heap
        while heap:
            key, ver, agent = heap[0]
            if ver == agent.avail_ver:
                return key, agent
            heappop(heap)
        return None

    def rekey(self, keyfn: Callable[[Any], tuple]) -> None:
        self.heap = [(keyfn(a), v, a) for _, v, a in self.heap if v == a.avail_ver]
        heapify(self.heap)


class Pool:
    """One queue and one requirement set: the agents who qualify, the calls that need them."""

    __slots__ = ("queue", "reqs", "label", "tiers", "delays", "calls", "n_calls", "heap_len",
                 "logged_in", "staffed")

    def __init__(self, queue: Any, reqs: ReqSet) -> None:
        self.queue = queue
        self.reqs = reqs
        self.label = describe(reqs)
        self.tiers: list[Tier] = []
        self.delays: list[float] = []   # distinct positive tier delays, ascending
        self.calls: dict[int, list[tuple[float, int, int, Any]]] = {}
        self.n_calls = 0                # live waiting calls
        self.heap_len = 0
        self.logged_in = 0              # distinct agents, logged in
        self.staffed = 0                # distinct agents, logged in and not "not ready"

    def push_call(self, call: Any) -> None:
        heap = self.calls.get(call.prio)
        if heap is None:
            heap = self.calls[call.prio] = []
        heappush(heap, (call.arrived_at, call.seq, call.ver, call))
        self.n_calls += 1
        self.heap_len += 1
        if self.heap_len > 2 * self.n_calls + 32:
            self.heap_len = 0
            for prio, h in list(self.calls.items()):
                h[:] = [e for e in h if e[2] == e[3].ver]
                heapify(h)
                self.heap_len += len(h)
                if not h:
                    del self.calls[prio]

    def drop_call(self, call: Any) -> None:
        """The call leaves (offered, moved, gone): its entry goes stale."""
        call.ver += 1
        self.n_calls -= 1

    def head(self, heap: list[tuple[float, int, int, Any]]) -> Any | None:
        while heap:
            entry = heap[0]
            if entry[2] == entry[3].ver:
                return entry[3]
            heappop(heap)
            self.heap_len -= 1
        return None

    def live_calls(self) -> list[Any]:
        """Every waiting call of the pool (unordered)."""
        return [e[3] for h in self.calls.values() for e in h if e[2] == e[3].ver]
