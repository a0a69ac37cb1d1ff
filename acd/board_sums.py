"""Running counts of the queue stays the live board holds, so that a board costs what
changed since the last one, not the calls of the last half hour. Pure: no I/O, no
clock (``now`` is an argument).

The board's queue figures are counts over stays chosen by arrival: "today" (arrived
at or after the day's start), "last 15 / 30 minutes" (arrived in ``(now - window,
now]``), plus "waiting" over every stay still waiting (docs/metrics.md). A stay's
counts (``acd.figures.count_calls``) depend on ``now`` only while it waits, and
counts of disjoint sets add up (``QueueCounts``), so ``StaySums`` keeps:

- the stays that left their queue in **blocks** of ``BLOCK_S`` seconds of arrival
  per queue, each with its counts, made again only when one of its stays changed
  (a block's counts cannot be taken apart: the longest wait is a maximum);
- the stays still waiting apart, counted at each board (they are few).

A range of arrivals is then the sum of the blocks wholly inside it and the stays of
the blocks across its ends, counted one by one: the same counts as
``count_calls`` over the stays in the range (up to the order of float additions:
the last bits, under the board's rounding). ``BLOCK_S`` is a power of two, so a
block's bounds are exact in floats and a stay is in the block its arrival says.

Time passes through ``now`` only: a window's blocks are chosen at each query, so
nothing expires by itself; the ledger (``acd.ledger``) removes a call's stays when
it folds the call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Callable, Iterable, Mapping, Sequence

from acd.figures import WAITING, QueueCall, QueueCounts, SlPolicy, count_calls

__all__ = ["BLOCK_S", "QueueParts", "StaySums", "total"]

BLOCK_S = 16.0                     # seconds of arrival per block: a power of two (exact bounds)

_NAMES = tuple(f.name for f in fields(QueueCounts))
_MAXIMA = frozenset(n for n in _NAMES if n.startswith("longest"))
_VALUES = attrgetter(*_NAMES)


def total(parts: Sequence[QueueCounts]) -> QueueCounts:
    """The counts of disjoint sets added up (as ``+`` would, in one pass)."""
    if not parts:
        return QueueCounts()
    if len(parts) == 1:
        return parts[0]
    values = []
    for name, column in zip(_NAMES, zip(*map(_VALUES, parts))):
        if name in _MAXIMA:
            present = [v for v in column if v is not None]
            values.append(max(present) if present else None)
        else:
            acc = column[0]
            for v in column[1:]:
                acc += v
            values.append(acc)
    return QueueCounts(*values)


@dataclass(frozen=True, slots=True)
class QueueParts:
    """What the board shows of one queue's stays held, before today's folded counts:
    ``today`` and each rolling window's counts, the stays waiting and the longest of
    their waits at ``now``."""

    today: QueueCounts
    windows: Mapping[str, QueueCounts]
    waiting: int
    longest_waiting_s: float | None


class _Block:
    __slots__ = ("stays", "counts")

    def __init__(self) -> None:
        self.stays: dict[str, list[QueueCall]] = {}     # call id -> its stays here
        self.counts: QueueCounts | None = None          # None: to count again

    def of(self, policy: SlPolicy) -> QueueCounts:
        if self.counts is None:
            self.counts = count_calls([s for ss in self.stays.values() for s in ss], policy, now=0.0)
        return self.counts


class StaySums:
    """Each call's stays (``set``), counted per queue by arrival block (module doc).
    ``policy_of``: a queue's service-level policy (fixed: a new one needs a new
    ``StaySums``)."""

    def __init__(self, policy_of: Callable[[str], SlPolicy]) -> None:
        self._policy_of = policy_of
        self._calls: dict[str, list[QueueCall]] = {}                   # call id -> its stays as counted
        self._blocks: dict[str, dict[int, _Block]] = {}                # queue -> block number -> block
        self._waiting: dict[str, dict[str, list[QueueCall]]] = {}      # queue -> call id -> its stays waiting

    def set(self, call_id: str, stays: Sequence[QueueCall]) -> None:
        """``call_id``'s stays are now ``stays`` (none: forgotten)."""
        old = self._calls.get(call_id)
        if old is not None:
            if old == stays:
                return
            self._drop(call_id, old)
        if stays:
            stays = list(stays)
            self._calls[call_id] = stays
            self._add(call_id, stays)
        else:
            self._calls.pop(call_id, None)

    def remove(self, call_id: str) -> None:
        self.set(call_id, ())

    def stays(self, call_id: str) -> list[QueueCall]:
        return self._calls.get(call_id, [])

    def all_stays(self) -> Iterable[QueueCall]:
        for stays in self._calls.values():
            yield from stays

    def queues(self) -> set[str]:
        """The queues with a stay held."""
        return set(self._blocks) | set(self._waiting)

    def _add(self, call_id: str, stays: list[QueueCall]) -> None:
        for s in stays:
            if s.outcome == WAITING:
                self._waiting.setdefault(s.queue, {}).setdefault(call_id, []).append(s)
                continue
            blocks = self._blocks.setdefault(s.queue, {})
            k = math.floor(s.arrived_at / BLOCK_S)
            block = blocks.get(k)
            if block is None:
                block = blocks[k] = _Block()
            block.stays.setdefault(call_id, []).append(s)
            block.counts = None

    def _drop(self, call_id: str, stays: list[QueueCall]) -> None:
        for s in stays:
            if s.outcome == WAITING:
                waiting = self._waiting.get(s.queue)
                if waiting is not None and waiting.pop(call_id, None) is not None and not waiting:
                    del self._waiting[s.queue]
                continue
            blocks = self._blocks.get(s.queue)
            if blocks is None:
                continue
            k = math.floor(s.arrived_at / BLOCK_S)
            block = blocks.get(k)
            if block is None or block.stays.pop(call_id, None) is None:
                continue
            block.counts = None
            if not block.stays:
                del blocks[k]
                if not blocks:
                    del self._blocks[s.queue]

    def parts(self, queue: str, *, now: float, day_start: float, windows: Mapping[str, float]) -> QueueParts:
        """``queue``'s counts today (arrived at or after ``day_start``) and in each window
        (``name -> seconds``: arrived in ``(now - seconds, now]``), and its stays waiting."""
        policy = self._policy_of(queue)
        # (lower bound, upper bound, lower bound excluded): today first, then the windows
        ranges = [(day_start, math.inf, False)] + [(now - w, now, True) for w in windows.values()]
        whole: list[list[QueueCounts]] = [[] for _ in ranges]
        loose: list[list[QueueCall]] = [[] for _ in ranges]
        for k, block in self._blocks.get(queue, {}).items():
            first, end = k * BLOCK_S, (k + 1) * BLOCK_S          # arrivals in [first, end)
            for i, (lo, hi, open_lo) in enumerate(ranges):
                if end <= lo or first > hi:
                    continue                                     # none in the range
                if (first > lo if open_lo else first >= lo) and end <= hi:
                    whole[i].append(block.of(policy))            # all in the range
                else:
                    loose[i].extend(s for ss in block.stays.values() for s in ss
                                    if (s.arrived_at > lo if open_lo else s.arrived_at >= lo)
                                    and s.arrived_at <= hi)
        waiting = [s for ss in self._waiting.get(queue, {}).values() for s in ss]
        for i, (lo, hi, open_lo) in enumerate(ranges):
            loose[i].extend(s for s in waiting
                            if (s.arrived_at > lo if open_lo else s.arrived_at >= lo) and s.arrived_at <= hi)
        counts = [total(whole[i] + [count_calls(loose[i], policy, now=now)]) if whole[i]
                  else count_calls(loose[i], policy, now=now) for i in range(len(ranges))]
        return QueueParts(counts[0], dict(zip(windows, counts[1:])), len(waiting),
                          max((now - s.arrived_at for s in waiting), default=None))
