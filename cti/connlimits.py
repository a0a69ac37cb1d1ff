"""How many HTTP connections the daemon takes, per client address and in all. Pure.

The shell (``cti.httpserver``) asks ``ConnectionCap.admit(address)`` for every
accepted connection and calls ``release`` when it ends; a connection that is not
admitted is answered 503 at once and closed, before anything is read from it.
``fd_plan`` says how many file descriptors the daemon needs besides its HTTP
clients, and so how many HTTP connections fit under the process's limit
(docs/security.md, "WebSocket and slow clients", has the budget).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Refusal = Literal["client_max", "total_max"]

# File descriptors the daemon keeps for itself, HTTP clients aside: listening sockets
# (HTTP, FastAGI), AMI, the database pools (auth/desk 10, hooks 8, wallboard 3,
# recording 3, ACD 2, the writer and reconciler 2), webhook deliveries (at most 100
# connections), FastAGI sessions (one per caller in a menu), recording files being
# read, the log, the embedded PostgreSQL's pipes, Python's own. Generous on purpose.
FD_RESERVE = 512
# The soft limit the daemon raises itself to when the hard limit allows.
FD_WANTED = 65536


@dataclass
class ConnectionCap:
    """Open connections per client address (``per_client``) and in all (``total``);
    0 means no cap. ``refused`` counts refusals by reason."""

    per_client: int
    total: int
    open: dict[str, int] = field(default_factory=dict)
    count: int = 0
    refused: dict[str, int] = field(default_factory=lambda: {"client_max": 0, "total_max": 0})

    def admit(self, address: str) -> Refusal | None:
        """Count a new connection from ``address``; returns None when it may stay,
        else why not (nothing is counted then)."""
        held = self.open.get(address, 0)
        reason: Refusal | None = None
        if self.total and self.count >= self.total:
            reason = "total_max"
        elif self.per_client and held >= self.per_client:
            reason = "client_max"
        if reason is not None:
            self.refused[reason] += 1
            return reason
        self.open[address] = held + 1
        self.count += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from ``address`` ended."""
        held = self.open.get(address, 0)
        if held <= 0:
            return
        self.count -= 1
        if held == 1:
            del self.open[address]
        else:
            self.open[address] = held - 1


def fd_plan(soft: int, hard: int, asked_total: int) -> tuple[int, int]:
    """The soft fd limit to set and the total HTTP connection cap to use, given the
    process's limits and the configured cap (0: as many as fit).

    The soft limit is raised to ``FD_WANTED`` when the hard limit allows (never
    lowered); the cap is what fits beside ``FD_RESERVE``, at least 64, and never
    more than the configured cap."""
    new_soft = soft
    if soft < FD_WANTED:
        new_soft = FD_WANTED if hard < 0 or hard >= FD_WANTED else max(soft, hard)
    fits = max(64, new_soft - FD_RESERVE)
    return new_soft, min(asked_total, fits) if asked_total else fits
