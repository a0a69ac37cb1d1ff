"""What the ACD's shell keeps of each call the router holds (``AcdService.calls``):
the channel, the agent offered or talking, a callback request, and the routing
inputs to enter the call again with."""
from __future__ import annotations

from dataclasses import dataclass, field

from acd import callbacks as cbs


def parse_skills(text: str | None) -> dict[str, int]:
    """``"support:5,french:3"`` -> ``{"support": 5, "french": 3}``; a bare name means level 1.
    Malformed pieces are ignored (the value comes from the dialplan)."""
    out: dict[str, int] = {}
    for piece in (text or "").split(","):
        name, _, level = piece.strip().partition(":")
        if not name:
            continue
        try:
            out[name] = int(level) if level else 1
        except ValueError:
            continue
    return out


# The dialplan's wait start is to the millisecond (``STRFTIME(,,%s.%3q)``; whole seconds,
# ``${EPOCH}``, before); the stored join is when the daemon saw ``CtiAcdWait``, a moment
# later. A stored join this close after it is the same entry; an older one is an earlier
# entry (a caller transferred back to a queue).
SAME_ENTRY_S = 5.0


def adopted_wait_start(since: float, stored: float | None) -> float:
    """The wait start of a caller adopted after a restart: the one stored for this call
    when it is the same queue entry (precise, and what the reports already hold, so
    adopting rewrites nothing), else the dialplan's ``CTI_WAIT_START``."""
    if stored is not None and since <= stored < since + SAME_ENTRY_S:
        return stored
    return since


@dataclass(slots=True)
class Waiting:
    """What the shell knows of a call the router holds."""

    channel: str | None              # None: nobody on the line (a callback request)
    agent: str | None = None         # the agent currently offered or talking
    answered: bool = False
    announced_at: float = 0.0        # when the caller last heard position and wait
    callback: cbs.Callback | None = None  # the caller asked to be called back
    leg: str | None = None           # the agent leg of the current callback attempt
    entry: "Entry | None" = None     # what the call entered the router with
    # agents on the call besides ``agent``: a transferer still on the line while
    # the target talks (attended transfer); each is finished when their leg ends
    others: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Entry:
    """A call's routing inputs, kept to enter it again (a new configuration,
    a carried offer that failed, a callback's next try)."""

    queue: str
    since: float
    priority: int | None = None
    skills: dict[str, int] = field(default_factory=dict)
    customer_id: str | None = None
    callback: bool = False
