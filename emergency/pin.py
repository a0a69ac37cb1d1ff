"""The phone feature code's PIN check (pure; time is an argument).

A wrong PIN counts; after ``max_failures`` wrong ones within ``window_s`` every
attempt is refused (``locked``, right PIN or not) until the oldest of them
leaves the window, so the PIN cannot be guessed from a phone at dialling
speed. No PIN configured: the feature code is ``disabled``."""
from __future__ import annotations

import hmac
from collections import deque
from dataclasses import dataclass, field


@dataclass
class PinGuard:
    max_failures: int = 5
    window_s: float = 600.0
    failures: deque[float] = field(default_factory=deque)

    def check(self, given: str, pin: str | None, now: float) -> str:
        """``ok``, ``wrong_pin``, ``locked`` or ``disabled``."""
        if not pin:
            return "disabled"
        while self.failures and now - self.failures[0] >= self.window_s:
            self.failures.popleft()
        if len(self.failures) >= self.max_failures:
            return "locked"
        if hmac.compare_digest(given.encode(), pin.encode()):
            return "ok"
        self.failures.append(now)
        return "wrong_pin"
