"""Leadership: which of several ``cti serve`` processes decides. Pure: no I/O, no clock.

The shell (``cti.lease_pg``) runs the requests this core asks for on one dedicated
PostgreSQL connection, one at a time, and feeds back their results with the local
monotonic time; the core says when it next needs to be called (``next_deadline``).
docs/ha.md has the whole plan and the failure cases.

Why it is shaped like this:

- Two guards, for two different things. The advisory lock (session level, on the
  dedicated connection) lets one contender at a time try to take over. The lease row
  (holder, epoch, heartbeat_at) bounds *time*: a leader whose session is gone may not
  know it yet (a partition, a paused process), so the lock alone does not tell the
  next leader when the old one has stopped acting.
- The leader's rule: it counts from the moment it *sent* its last successful renewal
  (the row's heartbeat was written at or after that moment) and steps down at
  ``sent + renew_within`` unless a later renewal succeeded. Every input checks this
  first, so a reply that arrives too late cannot extend a lease that has run out.
- The standby's rule: it remembers when it first saw the row's current value (its
  own clock; the database's ``heartbeat_at`` is only compared for equality, never
  against a local clock, so no two clocks need agree on the time of day). It takes
  over only when it holds the advisory lock and ``ttl`` has passed since it first saw
  that value, with a compare-and-set on exactly that value. An absent row is a value
  like any other (a deleted row, or a database restored without it, must not let a
  second leader in while the first still renews into the void). So the old leader's
  step-down (at most ``sent + renew_within``, sent <= written <= first seen) comes
  strictly before the takeover (at least ``first seen + ttl``) because
  ``renew_within < ttl``; the clocks only need to run at about the same rate.
- Epochs only rise: a takeover sets ``greatest(epoch, highest epoch this node has
  seen) + 1``, so even a database that lost its last writes (a failover to a lagging
  replica) cannot hand out an epoch twice to this node's knowledge. The epoch is the
  fencing token Asterisk checks (docs/ha.md).
- A stepped-down node drops its session (releasing the lock) and starts again as a
  follower: it never resumes an old epoch.
- A leader that keeps its session but stops renewing (paused) keeps the lock; after
  ``ttl + 2 * poll_every`` of an unchanged row, a follower terminates the lock
  holder's session (``Evict``), which is safe by the same inequality.
- A planned handover (``cti handover``): the renewal's reply says an operator asked
  for one (``HandoverAsked``); the daemon stops acting, then ``release()`` steps the
  leader down and marks the row *released* (``Release``, where holder and epoch are
  still its own), then drops its session. A released row says its holder has
  stopped: a candidate takes it at once, without waiting a ttl. The node that
  released stays out of the contest for a ttl, so the standby gets the row.

States (``Role``): FOLLOWER (no lock; maybe no session), CANDIDATE (holds the lock,
waits for the ttl), LEADER, STEPPED_DOWN (was leader; must reconnect before
contending again). A result that does not answer the pending request is ignored.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Union


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"
    STEPPED_DOWN = "stepped-down"


@dataclass(frozen=True)
class LeaseConfig:
    """Seconds. ``renew_every < renew_within < ttl``: the leader renews several times
    per ``renew_within`` and gives up strictly before a standby may take over."""
    ttl: float = 3.0
    renew_within: float = 2.0
    renew_every: float = 0.5
    poll_every: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.renew_within < self.ttl:
            raise ValueError("lease timing needs 0 < renew_every < renew_within < ttl "
                             f"(got {self.renew_every}, {self.renew_within}, {self.ttl})")
        if self.poll_every <= 0:
            raise ValueError(f"poll_every must be positive (got {self.poll_every})")

    @property
    def evict_after(self) -> float:
        """How long a follower watches an unchanged row, the lock held by another
        session, before it terminates that session: the ttl plus time for a healthy
        candidate holding the lock to have taken over."""
        return self.ttl + 2 * self.poll_every


@dataclass(frozen=True)
class LeaseRow:
    """The cluster's row. ``heartbeat_at`` is the database's value, opaque here:
    only compared for equality (a renewal always changes it)."""
    holder: str
    epoch: int
    heartbeat_at: Any
    released: bool = False      # the holder stopped acting and handed the lease over


# -- requests: what the shell runs next on its dedicated connection ------------------


@dataclass(frozen=True)
class Connect:
    """Close the session if one is open (releasing the lock), open a new one.
    Answer: ``on_connected`` or ``on_connection_lost``."""


@dataclass(frozen=True)
class TryLock:
    """``pg_try_advisory_lock``. Answer: ``on_lock(acquired)``."""


@dataclass(frozen=True)
class ReadLease:
    """Read the cluster's row. Answer: ``on_lease_read(row or None)``."""


@dataclass(frozen=True)
class TakeOver:
    """Compare-and-set: when the row is still ``expected`` (``None``: absent), make
    this node the holder with epoch ``greatest(row epoch, min_epoch) + 1`` and a fresh
    heartbeat. Answer: ``on_took_over(row)`` or ``on_takeover_refused``."""
    expected: LeaseRow | None
    min_epoch: int


@dataclass(frozen=True)
class Renew:
    """Refresh the heartbeat where holder and epoch are still ours, within the
    ``timeout`` given. Answer: ``on_renewed(heartbeat_at)`` or ``on_renew_refused``."""
    epoch: int
    timeout: float


@dataclass(frozen=True)
class Evict:
    """Terminate the session that holds the lock (not ours). Answer: ``on_evicted``."""


@dataclass(frozen=True)
class Release:
    """Mark the row released (and a new heartbeat) where holder and ``epoch`` are still
    ours; sent only after this node stepped down. Answer: ``on_released(done)``."""
    epoch: int


Request = Union[Connect, TryLock, ReadLease, TakeOver, Renew, Evict, Release]


# -- decisions: what the rest of the daemon must do -------------------------------


@dataclass(frozen=True)
class StartLeading:
    """Lead from ``at`` with ``epoch``: every routing action carries it."""
    epoch: int
    at: float


@dataclass(frozen=True)
class StepDown:
    """Stop acting now; ``at``: when leadership ended (the renewal deadline at the
    latest). ``reason``: ``renewal overdue``, ``deposed`` or ``connection lost``."""
    epoch: int
    at: float
    reason: str


@dataclass(frozen=True)
class HandoverAsked:
    """An operator asked the leader of ``epoch`` to hand over (``cti handover``): stop
    acting, then ``Lease.release``. Told once per term."""
    epoch: int
    at: float


Decision = Union[StartLeading, StepDown, HandoverAsked]


class Lease:
    """One contender's view. Every method takes ``now`` (local monotonic seconds)."""

    def __init__(self, node_id: str, config: LeaseConfig, now: float) -> None:
        self.node_id = node_id
        self.config = config
        self.role = Role.FOLLOWER
        self.connected = False
        self.epoch = 0                  # held while leading; the last one held afterwards
        self.max_epoch = 0              # the highest epoch seen anywhere
        self.row: LeaseRow | None = None
        self.row_since = now            # when this node first saw ``row``'s value
        self._read_once = False         # ``row`` is only known after a first read
        self.deadline: float | None = None   # a leader's step-down time
        self._fresh = False             # a read of the row since the last poll cycle ended
        self._lock_busy = False         # the last TryLock found another session holding it
        self._pending: Request | None = None
        self._release: int | None = None     # the epoch to mark released, once stepped down
        self._hold_off = now                  # no contending before this (after a release)
        self._handover_told = False
        self._sent_at = now
        self._next_at = now
        self._now = now

    # -- queries -----------------------------------------------------------------

    def leading(self, now: float) -> bool:
        """True while this node may act as leader: the gate before every routing action."""
        return self.role is Role.LEADER and self.deadline is not None and now < self.deadline

    def next_deadline(self) -> float:
        """When to call ``tick``/``next_request`` again, at the latest."""
        due = self._next_at if self._pending is None else float("inf")
        if self.role is Role.LEADER and self.deadline is not None:
            due = min(due, self.deadline)
        return due

    @property
    def pending(self) -> Request | None:
        return self._pending

    def observe_epoch(self, epoch: int) -> None:
        """An epoch seen outside the row (the one Asterisk holds, ``CTI_ACD_EPOCH``):
        a takeover sets an epoch above it too, so the row and Asterisk agree."""
        if epoch > self.max_epoch:
            self.max_epoch = epoch

    def heartbeat_age(self, now: float) -> float | None:
        """Seconds since this node last saw the row change (a renewal changes it):
        the lease's age as this node knows it; None before the first read."""
        return max(0.0, now - self.row_since) if self._read_once else None

    # -- time ----------------------------------------------------------------------

    def tick(self, now: float) -> list[Decision]:
        """Steps down a leader whose renewal is overdue."""
        return self._expire(self._clock(now))

    def next_request(self, now: float) -> Request | None:
        """The request to run now, or ``None`` (one is pending, or none is due yet).
        The time it is asked for is taken as the time it is sent."""
        now = self._clock(now)
        if self._pending is not None or now < self._next_at:
            return None
        req = self._choose(now)
        if req is not None:
            self._pending, self._sent_at = req, now
        return req

    def release(self, now: float) -> list[Decision]:
        """Hand over (the daemon has stopped acting): step down now, then mark the row
        released so a standby takes over at once, then drop the session and stay out of
        the contest for a ttl. Nothing when not leading."""
        now = self._clock(now)
        if self.role is not Role.LEADER:
            return []
        connected = self.connected
        out = self._step_down(now, "handover")
        if connected:
            self.connected, self._release = True, self.epoch
        self._hold_off = now + self.config.ttl
        return out

    @property
    def releasing(self) -> bool:
        """A release asked and not answered yet."""
        return self._release is not None

    def _choose(self, now: float) -> Request | None:
        if self._release is not None:
            if self.connected:
                return Release(self._release)
            self._release = None
        if not self.connected:
            return Connect()
        if self.role is Role.LEADER:
            assert self.deadline is not None
            return Renew(self.epoch, max(self.deadline - now, 0.0))
        if not self._fresh:
            return ReadLease()
        if now < self._hold_off:
            self._end_cycle(now)
            self._next_at = min(self._next_at, self._hold_off)
            return None
        if self.role is Role.CANDIDATE:
            if now >= self.row_since + self.config.ttl or (self.row is not None and self.row.released):
                return TakeOver(self.row, self.max_epoch)
            self._end_cycle(now)
            self._next_at = min(self._next_at, self.row_since + self.config.ttl)   # on time
            return None
        if self._lock_busy and now >= self.row_since + self.config.evict_after:
            return Evict()
        return TryLock()

    # -- results -------------------------------------------------------------------

    def on_connected(self, now: float) -> list[Decision]:
        if not self._answer(Connect):
            return []
        now = self._clock(now)
        self.connected = True
        self.role = Role.FOLLOWER
        self._fresh = self._lock_busy = False
        self._next_at = now
        return []

    def on_connection_lost(self, now: float) -> list[Decision]:
        """Any failure of the dedicated session (a closed socket, a timeout, an
        error): the lock is gone or about to be, so a leader steps down at once."""
        now = self._clock(now)
        self._pending = None
        self._release = None
        out = self._step_down(now, "connection lost") if self.role is Role.LEADER else []
        if self.role is Role.CANDIDATE:
            self.role = Role.FOLLOWER
        self.connected = False
        self._next_at = now + self.config.poll_every   # pace reconnection attempts
        return out

    def on_lease_read(self, now: float, row: LeaseRow | None) -> list[Decision]:
        if not self._answer(ReadLease):
            return []
        now = self._clock(now)
        out = self._expire(now)
        self._see(now, row)
        self._fresh = True
        self._next_at = now
        return out

    def on_lock(self, now: float, acquired: bool) -> list[Decision]:
        if not self._answer(TryLock):
            return []
        now = self._clock(now)
        if acquired:
            self.role = Role.CANDIDATE
            self._lock_busy = False
            self._next_at = now     # the read in hand may already allow a takeover
        else:
            self._lock_busy = True
            self._end_cycle(now)
        return []

    def on_evicted(self, now: float) -> list[Decision]:
        if not self._answer(Evict):
            return []
        self._lock_busy = False
        self._next_at = self._clock(now)
        return []

    def on_took_over(self, now: float, row: LeaseRow) -> list[Decision]:
        if not self._answer(TakeOver):
            return []
        now = self._clock(now)
        highest = self.max_epoch
        self._see(now, row)
        self.epoch = row.epoch
        if row.holder != self.node_id or row.epoch <= highest or now >= self._sent_at + self.config.renew_within:
            # Never started: drop the session and contend again (a new epoch next time).
            self._step_down(now, "")
            return []
        self.role = Role.LEADER
        self.deadline = self._sent_at + self.config.renew_within
        self._next_at = self._sent_at + self.config.renew_every
        self._handover_told = False
        return [StartLeading(self.epoch, now)]

    def on_takeover_refused(self, now: float) -> list[Decision]:
        """The row changed since it was read: read it again."""
        if not self._answer(TakeOver):
            return []
        self._fresh = False
        self._next_at = self._clock(now)
        return []

    def on_renewed(self, now: float, heartbeat_at: Any, handover: bool = False) -> list[Decision]:
        """``handover``: the row says an operator asked for a handover."""
        if not self._answer(Renew):
            return []
        now = self._clock(now)
        out = self._expire(now)
        if self.role is not Role.LEADER:
            return out
        self.deadline = self._sent_at + self.config.renew_within
        self._next_at = self._sent_at + self.config.renew_every
        self._see(now, LeaseRow(self.node_id, self.epoch, heartbeat_at))
        if handover and not self._handover_told:
            self._handover_told = True
            out.append(HandoverAsked(self.epoch, now))
        return out

    def on_released(self, now: float, done: bool) -> list[Decision]:
        """The release ran (``done``: the row was still ours and is now released); the
        session goes next (a Connect), which frees the lock for the standby."""
        if not self._answer(Release):
            return []
        self._release = None
        self.connected = False
        self._next_at = self._clock(now)
        return []

    def on_renew_refused(self, now: float) -> list[Decision]:
        """No row with our holder and epoch: another node took over."""
        if not self._answer(Renew):
            return []
        now = self._clock(now)
        out = self._expire(now)
        if self.role is Role.LEADER:
            out += self._step_down(now, "deposed")
        return out

    # -- helpers -----------------------------------------------------------------

    def _clock(self, now: float) -> float:
        # A ``now`` earlier than one already seen is taken as that one.
        self._now = max(self._now, now)
        return self._now

    def _answer(self, kind: type) -> bool:
        if not isinstance(self._pending, kind):
            return False
        self._pending = None
        return True

    def _see(self, now: float, row: LeaseRow | None) -> None:
        if row != self.row or not self._read_once:
            self.row, self.row_since, self._read_once = row, now, True
        if row is not None:
            self.max_epoch = max(self.max_epoch, row.epoch)

    def _end_cycle(self, now: float) -> None:
        self._fresh = False
        self._next_at = now + self.config.poll_every

    def _expire(self, now: float) -> list[Decision]:
        if self.role is Role.LEADER and self.deadline is not None and now >= self.deadline:
            return self._step_down(now, "renewal overdue")
        return []

    def _step_down(self, now: float, reason: str) -> list[Decision]:
        # Leadership ended at the deadline at the latest, whenever this runs.
        at = now if self.deadline is None else min(now, self.deadline)
        self.role = Role.STEPPED_DOWN
        self.deadline = None
        self.connected = False      # the session (and the lock) must go before contending again
        self._pending = None
        self._fresh = self._lock_busy = False
        self._next_at = now
        return [StepDown(self.epoch, at, reason)]
