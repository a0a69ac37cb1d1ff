"""Login throttling: failed logins slow down guessing, per username and per client address.

Pure: the clock is an argument, no I/O. ``api/desk.py``'s login asks ``check``
before verifying a password and reports the outcome with ``failed`` or
``succeeded``.

The rule, for each key (the username, case-folded, and the client's address):
the first ``free`` failures inside ``window`` seconds cost nothing; each
failure after them makes the key wait ``base * 2**(n - free - 1)`` seconds
(capped at ``cap``) before its next attempt is even looked at. An attempt
during the wait is refused with the time left (HTTP 429 and Retry-After),
without touching the password hash, so the wait cannot be hammered through.
A success clears the username's count (not the address's: one good account
must not launder an address guessing at others). Addresses get a larger
``free`` allowance, since a call centre's agents often share one NAT address.

Memory is bounded: at most ``max_keys`` keys, the least recently failed
dropped first (a flood of made-up usernames cannot grow it).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    free: int
    window: float = 900.0
    base: float = 1.0
    cap: float = 300.0


USER_POLICY = Policy(free=5)
ADDRESS_POLICY = Policy(free=30)


@dataclass(slots=True)
class _Entry:
    failures: int
    first_at: float
    blocked_until: float


class _Counter:
    def __init__(self, policy: Policy, max_keys: int) -> None:
        self.policy = policy
        self.max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        e = self._entries.get(key)
        if e is None:
            return 0.0
        if now - e.first_at > self.policy.window and now >= e.blocked_until:
            del self._entries[key]
            return 0.0
        return max(0.0, e.blocked_until - now)

    def fail(self, key: str, now: float) -> None:
        p = self.policy
        e = self._entries.get(key)
        if e is None or (now - e.first_at > p.window and now >= e.blocked_until):
            e = _Entry(0, now, now)
        e.failures += 1
        over = e.failures - p.free
        if over > 0:
            e.blocked_until = now + min(p.cap, p.base * 2 ** (over - 1))
        self._entries[key] = e
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class LoginThrottle:
    def __init__(self, *, user: Policy = USER_POLICY, address: Policy = ADDRESS_POLICY,
                 max_keys: int = 50_000) -> None:
        self.users = _Counter(user, max_keys)
        self.addresses = _Counter(address, max_keys)

    @staticmethod
    def _user_key(username: str) -> str:
        return username.casefold()

    def check(self, username: str, address: str, now: float) -> float:
        """Seconds this attempt must still wait (0: go ahead)."""
        return max(self.users.wait(self._user_key(username), now), self.addresses.wait(address, now))

    def failed(self, username: str, address: str, now: float) -> None:
        self.users.fail(self._user_key(username), now)
        self.addresses.fail(address, now)

    def succeeded(self, username: str, now: float) -> None:
        self.users.clear(self._user_key(username))
