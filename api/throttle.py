"""Login throttling and the password hash's waiting room. Pure: the clock is an
argument, no I/O.

``api/session_routes.py``'s login asks ``LoginThrottle.attempt`` before anything else. An
attempt let through is counted at once, as *pending*, before its password is
hashed, so a burst of concurrent guesses is counted like the same guesses one
after the other; the login then reports the outcome with ``failed``,
``succeeded`` or ``abandoned`` (never checked: the database was away, the
hash queue was full).

Three keys, each with its own count of failures inside ``window`` seconds:

- the pair (username case-folded, client address): the guesses of one client
  at one account;
- the address: one client guessing at many accounts (a larger ``free``
  allowance: a call centre's agents often share one NAT address);
- the username, from any address: guesses spread over many addresses.

For each key, the first ``free`` failures cost nothing; each failure after them
makes the key wait ``base * 2**(n - free - 1)`` seconds (capped at ``cap``).
Once a key has used its free failures, only one attempt may be in flight at a
time, and only after the wait: an attempt refused meanwhile gets the seconds to
wait (HTTP 429 and Retry-After) without being counted and without touching the
hash.

The username's key alone cannot lock its owner out: while it is waiting, an
attempt from an address that has no failure (and no attempt in flight) for that
username within the window goes ahead anyway. A stranger who fails from address
A therefore blocks A, not the owner at B; and a guesser spread over many
addresses gets one guess per address while the username waits, not five.

A success clears the pair's and the username's counts and takes the attempt back
from the address's (one good account must not launder an address that guesses
at others, nor should a hundred agents logging in behind one NAT count against
it).

Memory is bounded: at most ``max_keys`` keys per kind, the least recently used
dropped first (a flood of made-up usernames cannot grow it).

``HashQueue`` bounds the attempts hashing or waiting to: at most ``size`` in
all and ``per_address`` from one address, so a burst from one client never
queues an honest login behind more than ``per_address`` of its hashes, and the
rest are refused at once (HTTP 503 and Retry-After) instead of waiting.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Policy:
    free: int
    window: float = 900.0
    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures (0 within the free ones)."""
        over = failures - self.free
        return 0.0 if over <= 0 else min(self.cap, self.base * 2 ** (over - 1))


PAIR_POLICY = Policy(free=5)
ADDRESS_POLICY = Policy(free=30)
USER_POLICY = Policy(free=10)


@dataclass(slots=True)
class _Entry:
    failures: int
    pending: int
    first_at: float
    blocked_until: float


class _Counter:
    def __init__(self, policy: Policy, max_keys: int) -> None:
        self.policy = policy
        self.max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _live(self, key: str, now: float) -> _Entry | None:
        e = self._entries.get(key)
        if e is not None and e.pending == 0 and now - e.first_at > self.policy.window and now >= e.blocked_until:
            del self._entries[key]
            return None
        return e

    def wait(self, key: str, now: float) -> float:
        """Seconds before the next attempt may go ahead (0: now)."""
        e = self._live(key, now)
        if e is None:
            return 0.0
        if now < e.blocked_until:
            return e.blocked_until - now
        if e.failures + e.pending < self.policy.free or e.pending == 0:
            return 0.0
        # Past the free ones with attempts in flight: were they all to fail, this is the wait.
        return max(self.policy.base, self.policy.delay(e.failures + e.pending))

    def clean(self, key: str, now: float) -> bool:
        """No failure and no attempt in flight under this key."""
        e = self._live(key, now)
        return e is None or (e.failures == 0 and e.pending == 0)

    def _touch(self, key: str, e: _Entry) -> None:
        self._entries[key] = e
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def begin(self, key: str, now: float) -> None:
        e = self._live(key, now) or _Entry(0, 0, now, now)
        e.pending += 1
        self._touch(key, e)

    def fail(self, key: str, now: float) -> None:
        e = self._live(key, now)
        if e is None:                       # dropped meanwhile (max_keys): count it afresh
            e = _Entry(0, 1, now, now)
        e.pending = max(0, e.pending - 1)
        if now - e.first_at > self.policy.window and now >= e.blocked_until:
            e.failures, e.first_at = 0, now     # the window began afresh
        e.failures += 1
        if e.failures > self.policy.free:
            e.blocked_until = now + self.policy.delay(e.failures)
        self._touch(key, e)

    def take_back(self, key: str) -> None:
        """An attempt that is not a failure after all (a success, or never checked)."""
        e = self._entries.get(key)
        if e is not None:
            e.pending = max(0, e.pending - 1)

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


Blocker = Literal["", "pair", "address", "user"]


class LoginThrottle:
    def __init__(self, *, pair: Policy = PAIR_POLICY, address: Policy = ADDRESS_POLICY,
                 user: Policy = USER_POLICY, max_keys: int = 50_000) -> None:
        self.pairs = _Counter(pair, max_keys)
        self.addresses = _Counter(address, max_keys)
        self.users = _Counter(user, max_keys)

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        user = username.casefold()
        return f"{user}\x00{address}", user

    def check(self, username: str, address: str, now: float) -> tuple[float, Blocker]:
        """The seconds this attempt must still wait (0: it may go ahead) and the key
        that holds it back. Counts nothing (``attempt`` does)."""
        pair, user = self._keys(username, address)
        waits: list[tuple[float, Blocker]] = [(self.pairs.wait(pair, now), "pair"),
                                              (self.addresses.wait(address, now), "address")]
        if not self.pairs.clean(pair, now):
            waits.append((self.users.wait(user, now), "user"))
        wait, blocker = max(waits)
        return (wait, blocker) if wait > 0 else (0.0, "")

    def attempt(self, username: str, address: str, now: float) -> float:
        """Count an attempt before its password is checked. Returns 0.0 when it may
        go ahead (it is now in flight: report it with ``failed``, ``succeeded`` or
        ``abandoned``), else the seconds to wait (refused, not counted)."""
        wait, _ = self.check(username, address, now)
        if wait > 0:
            return wait
        pair, user = self._keys(username, address)
        self.pairs.begin(pair, now)
        self.addresses.begin(address, now)
        self.users.begin(user, now)
        return 0.0

    def failed(self, username: str, address: str, now: float) -> None:
        pair, user = self._keys(username, address)
        self.pairs.fail(pair, now)
        self.addresses.fail(address, now)
        self.users.fail(user, now)

    def succeeded(self, username: str, address: str, now: float) -> None:
        pair, user = self._keys(username, address)
        self.pairs.clear(pair)
        self.users.clear(user)
        self.addresses.take_back(address)

    def abandoned(self, username: str, address: str) -> None:
        """An attempt let through whose password was never checked: not counted."""
        pair, user = self._keys(username, address)
        self.pairs.take_back(pair)
        self.addresses.take_back(address)
        self.users.take_back(user)


class HashQueue:
    """Admission to the password hash: at most ``size`` attempts hashing or waiting
    to, at most ``per_address`` of them from one client address."""

    def __init__(self, size: int = 16, per_address: int = 4) -> None:
        self.size = size
        self.per_address = per_address
        self._by_address: dict[str, int] = {}
        self.inside = 0
        self.peak = 0                       # the most ever inside at once
        self.refused = 0

    def enter(self, address: str) -> int | None:
        """Let one attempt in: the number already inside ahead of it (hashing or
        waiting), or None when the queue is full for it (refuse it now)."""
        mine = self._by_address.get(address, 0)
        if self.inside >= self.size or mine >= self.per_address:
            self.refused += 1
            return None
        ahead = self.inside
        self._by_address[address] = mine + 1
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        return ahead

    def leave(self, address: str) -> None:
        mine = self._by_address.get(address, 0)
        if mine <= 0:
            return
        if mine == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = mine - 1
        self.inside -= 1
