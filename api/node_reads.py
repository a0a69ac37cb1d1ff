"""What an API node answers itself, from the leader's boards on the broker. Pure.

The reads desktops and wallboards ask for most are served by an API node from what
it reads, not forwarded to the leader (docs/scale-out.md, "Reads served by a node"):

- ``GET /api/wallboard``: the last wallboard the leader published (``<stream>_BOARD``),
  the one the node pushes on ``/ws``;
- ``GET /api/acd/state``: the leader's routing picture (agents, waiting calls, queues,
  as its own ``GET /api/acd/state`` answers) made at the same instant as that board
  and carried in it (``acd_state``). The node ages it to the asking time: a waiting
  call's ``waited_s`` and a queue's ``longest_wait_s`` (when it has calls waiting or
  ringing) grow by the picture's age, nothing else changes. The leader makes the
  picture at most every ``api.broker.PICTURE_EVERY_S`` and sends the last one with the
  boards between (``acd_state_at``: when it was made). Every node serves the same picture, one instant of the leader's: the
  figures of one answer agree with each other, and supervisors on different nodes see
  the same ones; it is at most a board behind (``wallboard_push_s`` after a change,
  ``Age`` header in seconds);
- ``GET /api/me``: who the credential stands for (the node authenticates anyway).

A node that has no board yet (just started, or its leader publishes none: no ACD, an
older leader) forwards these to the leader, as every other request.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

ACD_KEY = "acd_state"      # the leader's routing picture, inside the board it publishes
ACD_AT_KEY = "acd_state_at"  # when the picture was made, when before the board (none: with the board)


class NodeReads:
    """The last board and routing picture read (``take``), answered aged (``acd_state``)."""

    def __init__(self) -> None:
        self.board: dict[str, Any] | None = None     # what supervisors get: the board without ``acd_state``
        self.acd: dict[str, Any] | None = None
        self.at: float | None = None                 # the leader's time when it built the board
        self.acd_at: float | None = None             # ... and the picture (the board's or before)
        self.refused = 0                             # boards whose routing picture was not usable
        self.served = 0                              # reads answered here (the shell counts)
        self.forwarded = 0                           # reads forwarded for want of a board or picture

    def take(self, published: Mapping[str, Any]) -> dict[str, Any]:
        """A board as the leader published it; returns the board supervisors get (without
        the routing picture). A picture that is not one (not the leader's shape) is
        dropped, counted, and the previous one is dropped too: an older picture beside a
        newer board would disagree with it."""
        board = {k: v for k, v in published.items() if k not in (ACD_KEY, ACD_AT_KEY)}
        at = board.get("at")
        acd = published.get(ACD_KEY)
        self.acd = None
        self.at = at if _is_time(at) else None
        self.board = board if self.at is not None else None     # not the leader's: the leader answers
        if acd is None:
            return board
        made = published.get(ACD_AT_KEY, at)
        if self.at is None or not _is_time(made) or made > self.at or not _acd_shaped(acd):
            self.refused += 1
            return board
        self.acd = acd
        self.acd_at = made
        return board

    def acd_state(self, now: float) -> tuple[dict[str, Any], float] | None:
        """The routing picture as of ``now`` and its age in seconds; None without one.
        Only the waits move with time (see the module doc); a clock behind the board's
        counts as no age."""
        if self.acd is None or self.acd_at is None:
            return None
        age = max(0.0, now - self.acd_at)
        acd = self.acd
        out = {**acd,
               "waiting": [{**w, "waited_s": round(w["waited_s"] + age, 3)} for w in acd["waiting"]],
               # A queue's longest wait is over its calls waiting and ringing (acd.core.queue_stats).
               "queues": [{**q, "longest_wait_s": round(q["longest_wait_s"] + age, 3)}
                          if q.get("waiting") or q.get("ringing") else q for q in acd["queues"]]}
        return out, age


def _is_time(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _acd_shaped(acd: Any) -> bool:
    """The leader's ``AcdState`` as JSON: the lists, each wait a number."""
    if not isinstance(acd, dict):
        return False
    lists = [acd.get(k) for k in ("agents", "waiting", "queues")]
    if not all(isinstance(x, list) and all(isinstance(i, dict) for i in x) for x in lists):
        return False
    return (all(_is_time(w.get("waited_s")) for w in acd["waiting"])
            and all(_is_time(q.get("longest_wait_s")) for q in acd["queues"]))
