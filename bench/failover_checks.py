"""What bench/failover.py checks after its kills, as pure functions (tested on small hand-made
sequences in tests/unit/test_bench_failover_checks.py).

- **A desktop's ``seq``** (``expected_seqs``, ``seq_check``): the numbers a connected client
  received, in the order it received them, against what the broker's stream holds for it.
  A supervisor gets every message of the stream; an agent the messages naming it
  (``Cti-Agents``). From its first hello to the end of the run the client must have had each
  of those exactly once, in order. A reconnect that resumes (``resumed: true``, the node
  replaying what the client missed) counts as contiguous when the replay fills the gap; a
  ``resync`` (state reloaded, nothing replayed) leaves the gap, which is reported as missing.
- **The waiting callers' order** (``order_violations``): the callers waiting at a kill, in the
  order the ACD must serve them, against the moment each was served afterwards. Every pair
  served the other way round is a violation; callers never served (hung up, or served before
  the kill: the database's view lagged) are left out of the comparison and counted apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence


def expected_seqs(stream: Iterable[tuple[int, frozenset[str]]], agent_id: str | None, after: int,
                  upto: int) -> list[int]:
    """The stream sequences a client should receive after ``after`` up to ``upto``
    (inclusive): all of them for a supervisor (``agent_id`` None), those whose agents
    include ``agent_id`` for an agent's desktop. ``stream`` is ``(sequence, agents)`` per
    message, in any order."""
    return sorted(seq for seq, agents in stream
                  if after < seq <= upto and (agent_id is None or agent_id in agents))


@dataclass(frozen=True)
class SeqCheck:
    """One client's ``seq`` against what it should have had."""

    expected: int                                  # messages it should have received
    received: int                                  # event messages it received (repeats included)
    missing: list[int] = field(default_factory=list)        # expected, never received
    repeated: list[int] = field(default_factory=list)       # received more than once
    out_of_order: list[int] = field(default_factory=list)   # received after a higher number
    unexpected: list[int] = field(default_factory=list)     # received, not meant for it

    @property
    def contiguous(self) -> bool:
        return not (self.missing or self.repeated or self.out_of_order or self.unexpected)


def seq_check(received: Sequence[int], expected: Sequence[int]) -> SeqCheck:
    """``received``: the ``seq`` of every event message in arrival order (a resume's replay
    included, control messages left out); ``expected``: ``expected_seqs`` for the client's
    window. Contiguous when ``received`` is exactly ``expected``."""
    want = set(expected)
    seen: set[int] = set()
    repeated, out_of_order, unexpected = [], [], []
    top = None
    for seq in received:
        if seq in seen:
            repeated.append(seq)
            continue
        seen.add(seq)
        if seq not in want:
            unexpected.append(seq)
        if top is not None and seq < top:
            out_of_order.append(seq)
        top = seq if top is None else max(top, seq)
    missing = [s for s in expected if s not in seen]
    return SeqCheck(expected=len(want), received=len(received), missing=missing, repeated=repeated,
                    out_of_order=out_of_order, unexpected=unexpected)


def gaps(missing: Sequence[int]) -> list[tuple[int, int]]:
    """Missing numbers as runs ``(first, last)``: how a report shows them (pure)."""
    runs: list[tuple[int, int]] = []
    for s in sorted(missing):
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


@dataclass(frozen=True)
class OrderCheck:
    """The callers waiting at a kill, served afterwards: in their order or not."""

    compared: int                                     # callers served after the kill
    unserved: list[str] = field(default_factory=list)  # no service time (hung up, other end)
    violations: list[tuple[str, str]] = field(default_factory=list)   # (ahead, served before it)

    @property
    def overtaken(self) -> list[str]:
        """Callers some caller behind them was served before, once each, in queue order."""
        return list(dict.fromkeys(a for a, _ in self.violations))

    @property
    def in_order(self) -> bool:
        return not self.violations


def order_violations(order: Sequence[str], served: Mapping[str, float | None]) -> OrderCheck:
    """``order``: the callers waiting at the kill, first to be served first; ``served``:
    when each was served afterwards (None or absent: never). A pair ``(a, b)`` with ``a``
    ahead of ``b`` and ``b`` served strictly before ``a`` is a violation (equal times are
    not: one batch of decisions). Callers never served are compared with nobody."""
    if len(set(order)) != len(order):
        raise ValueError("a caller is in the order twice")
    timed = [(c, served[c]) for c in order if served.get(c) is not None]
    unserved = [c for c in order if served.get(c) is None]
    violations = []
    for i, (a, ta) in enumerate(timed):
        for b, tb in timed[i + 1:]:
            if tb < ta:                                     # type: ignore[operator]
                violations.append((a, b))
    return OrderCheck(compared=len(timed), unserved=unserved, violations=violations)


def answering_offer(offers: Sequence[tuple[float, str]], agent: str | None) -> float | None:
    """When the ACD made the offer the caller's agent answered: the last of the call's offers
    ``(at, agent)`` naming ``agent`` (None when nobody answered, or no offer names them).
    Matched by agent, not by time: an offer is stamped once written, which may be after an
    instant answer."""
    if agent is None:
        return None
    mine = [t for t, a in offers if a == agent]
    return max(mine) if mine else None
