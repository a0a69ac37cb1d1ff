"""What the router says: decisions (its outputs) and views (answers to queries).

Every record is a small frozen dataclass. Times are epoch seconds, as given to
the router. A state change is emitted before the decision it leads to (an
agent's ``available -> reserved`` comes just before the ``Offer``).
"""
from __future__ import annotations

from dataclasses import dataclass

# Agent states.
LOGGED_OUT, AVAILABLE, RESERVED, ON_CALL, WRAPUP, NOT_READY = (
    "logged_out", "available", "reserved", "on_call", "wrapup", "not_ready",
)
AGENT_STATES = (LOGGED_OUT, AVAILABLE, RESERVED, ON_CALL, WRAPUP, NOT_READY)

# Where a call the router holds is.
WAITING, HELD, RINGING = "waiting", "held", "ringing"


# -- decisions ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Offer:
    """Ring ``device`` (agent ``agent_id``) for ``call_id`` for at most ``ring_timeout_s``.

    The router considers the agent reserved until ``offer_answered`` or
    ``offer_failed``. ``step`` is the escalation step the call was at (0: the
    queue's own requirements). ``reason`` says why this pair, in words.
    """

    call_id: str
    agent_id: str
    device: str
    queue_id: str
    ring_timeout_s: float
    step: int
    reason: str


@dataclass(frozen=True, slots=True)
class AgentState:
    """Agent ``agent_id`` went from ``old`` to ``new`` at ``at`` (``old == new``
    when only the not-ready reason changed)."""

    agent_id: str
    old: str
    new: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Escalated:
    """The call's requirements are now those of step ``step`` of its queue."""

    call_id: str
    queue_id: str
    step: int
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class MaxWait:
    """The call waited ``max_wait_s`` in ``queue_id``. ``action`` is ``overflow``
    (the call now waits in ``target``, keeping its place by arrival time),
    ``voicemail`` or ``callback`` (the call leaves the router; a ``Dequeued``
    follows; ``target`` is None)."""

    call_id: str
    queue_id: str
    action: str
    target: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Moved:
    """A supervisor moved the waiting call from ``queue_id`` to ``target`` (the same
    queue when only its priority changed) and/or gave it ``priority`` (None: the
    priority it had). A move to another queue is counted there like an overflow:
    timed out in ``queue_id``, a new stay in ``target`` from ``at`` (arrival order kept).
    ``own_priority``: the priority is the call's own (kept in any queue), not its queue's."""

    call_id: str
    queue_id: str
    target: str
    priority: int
    at: float
    own_priority: bool = False


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """Stop ringing ``agent_id`` for ``call_id``: the offer no longer stands
    (the caller left, or no answer was reported in time)."""

    call_id: str
    agent_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Dequeued:
    """The call left the router: ``reason`` is ``answered``, ``abandoned`` or
    ``max_wait``. Every call that ``call_waiting`` accepted ends with exactly one."""

    call_id: str
    queue_id: str
    reason: str
    waited_s: float
    at: float


@dataclass(frozen=True, slots=True)
class Ignored:
    """An input that no longer applies (a late answer, an unknown call): nothing
    changed. ``input`` is the method's name."""

    input: str
    call_id: str | None
    agent_id: str | None
    reason: str


Decision = Offer | AgentState | Escalated | MaxWait | Moved | Withdrawn | Dequeued | Ignored


# -- views ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    state: str
    reason: str
    since: float
    call_id: str | None             # the call offered to or handled by the agent
    pending: str | None             # "logout" or a not-ready reason, applied when the call ends
    queue_id: str | None = None     # the queue of that call
    device: str = ""                # the dial string its offers ring (set_device)
    reachable: bool = True          # False: its device cannot ring (not offered calls)
    wrapup_ends_at: float | None = None   # in wrap-up with a timer: when it ends
    wrapup_max_at: float | None = None    # the latest it can be extended to (None: no extension)
    disposition_due: str | None = None    # the call whose disposition must be saved before available
    voice_blocked: bool = False           # available for tasks, but offered no call (acd.tasks)


@dataclass(frozen=True, slots=True)
class WaitingCall:
    call_id: str
    queue_id: str
    status: str                     # waiting, held (for a preferred agent), ringing
    priority: int
    arrived_at: float               # first arrival: order and aging
    entered_at: float               # entry in this queue: steps, max wait, service level
    step: int
    requirements: tuple[tuple[str, int], ...]
    offered_to: str | None
    held_for: str | None
    callback: bool = False          # a callback request keeping its place (nobody on the line)


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue_id: str
    waiting: int                    # waiting or held
    ringing: int
    longest_wait_s: float
    offered: int                    # calls that left the queue: answered, abandoned, timed out
    answered: int
    answered_within_sl: int
    abandoned: int
    timed_out: int
    service_level: float | None     # answered within sl_seconds / offered, percent
    sl_target: float
    lending: bool                   # its agents may serve borrowing queues now
    agents_eligible: int            # logged in, meeting the base requirements, members
    agents_available: int
    handle_time_s: float            # moving average of talk time, plus wrapup_s


# -- tasks of the other channels (acd.tasks) ---------------------------------------

@dataclass(frozen=True, slots=True)
class TaskAssigned:
    """Task ``task_id`` (of ``channel``, waiting in ``queue_id``) is now the agent's:
    its desktop shows it at once (no ringing: the assignment is the offer). The
    agent holds it until ``task_closed``. ``load`` is the agent's count of open
    tasks of the channel, this one included."""

    task_id: str
    agent_id: str
    channel: str
    queue_id: str
    load: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class TaskDequeued:
    """The task stopped waiting: ``reason`` is ``assigned`` or ``abandoned``. Every
    task ``task_waiting`` accepted leaves its queue exactly once."""

    task_id: str
    queue_id: str
    channel: str
    reason: str
    waited_s: float
    at: float


@dataclass(frozen=True, slots=True)
class TaskOverflowed:
    """Task ``task_id`` waited its queue's ``max_wait_s`` in ``queue_id`` (from its entry
    there) and now waits in ``target`` (``on_max_wait``'s overflow), keeping its place by
    first arrival; a ``TaskAssigned`` follows when a member of the target may take it."""

    task_id: str
    queue_id: str
    target: str
    channel: str
    waited_s: float                 # in queue_id
    at: float


@dataclass(frozen=True, slots=True)
class TaskEnded:
    """The agent closed task ``task_id``: its capacity in the channel is free again."""

    task_id: str
    agent_id: str
    channel: str
    at: float


@dataclass(frozen=True, slots=True)
class TaskReleased:
    """Agent ``agent_id`` no longer holds task ``task_id`` (still open): it was
    transferred to another queue or agent, or taken by another one. The slot is free."""

    task_id: str
    agent_id: str
    channel: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class VoiceBlock:
    """Agent ``agent_id`` may (``blocked`` False) or may not be offered calls, by
    its capacity rule (``voice_blocked_by``): the voice router's ``set_voice_blocked``."""

    agent_id: str
    blocked: bool
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class TaskQueueStats:
    queue_id: str
    channel: str
    waiting: int
    open: int                       # assigned, not yet closed
    longest_wait_s: float
    offered: int                    # tasks that left the queue: assigned or abandoned
    answered: int                   # assigned
    answered_within_sl: int
    abandoned: int
    service_level: float | None     # percent
    sl_target: float
    sl_seconds: float
    agents_eligible: int            # members logged in and not on a break
    overflowed: int = 0             # left unanswered for on_max_wait's queue (counted in offered)
