"""Campaign leads: states, the one table of allowed transitions, retry rules. Pure.

No I/O and no clock: every function that needs the time takes ``now``. The shell
(the campaign runner) picks dialable leads, calls ``apply`` with what happened
and writes the lead it returns with the attempt it made.

The cycle::

    new ──dial──▶ dialing ──answered──▶ answered ──complete──▶ done
                     │                      ├──callback (at T)──▶ retry at T
                     │                      ├──opt_out──▶ do_not_call
                     │                      └──no_result (no agent result in time)──▶ done
                     ├──busy / no_answer / machine / failed / abandoned──▶ retry at now + delay
                     │                                                     (or exhausted, or done
                     │                                                      for a machine that got
                     │                                                      a voicemail drop)
    retry ──dial (once now >= retry_at)──▶ dialing
    new, retry ──skip (preview: the agent passes)──▶ retry at now + skip delay (no attempt spent)
    new, retry ──withdraw (its ticket left a live list)──▶ done, ``withdrawn`` (never dialed again)
    (any state but do_not_call) ──do_not_call──▶ do_not_call            (terminal)

Why it is shaped like this:

- ``TRANSITIONS`` is the only place that says which command a state allows; where an
  outcome goes (retry, exhausted, done) is decided by the campaign's ``RetryRules``,
  in ``_after_outcome``, from counts the lead carries.
- A retry is a state with a time, not a timer: ``dialable(lead, now)`` is the one
  definition of "may be dialed now" (the SQL that picks leads mirrors it), and
  ``apply`` refuses to dial a lead early.
- Every dial spends one attempt, whatever comes of it; the campaign's
  ``max_attempts`` bounds them all, and each outcome has its own bound too
  (three busy signals may be enough while five unanswered rings are not).
- A callback a person asked for is honoured at their time; it is still an attempt
  (the next dial spends one), so a lead cannot call back for ever.
- ``done``, ``exhausted`` and ``do_not_call`` are terminal: ``do_not_call`` is
  reachable from every state (a number joins the list while its call rings: the
  call ends, the lead is never dialed again), the other two leave only to it.

Exceptions (all ``cti.errors.CtiError``)::

    LeadError
    ├── InvalidRule         a retry rule or command field is malformed (names the field)
    └── TransitionRefused   the command is not allowed in the lead's state (or not yet)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Mapping, Union

from cti.errors import CtiError


class LeadError(CtiError):
    """Base of every lead error."""


class InvalidRule(LeadError, ValueError):
    """A rule or command field is malformed; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class TransitionRefused(LeadError):
    """The command is not allowed in the lead's current state (or not at this time)."""

    def __init__(self, lead_id: int | None, state: State, command: str, why: str = "") -> None:
        allowed = ", ".join(allowed_commands(state)) or "nothing"
        who = f"lead {lead_id}" if lead_id is not None else "lead"
        super().__init__(f"{who}: {command!r} is not allowed in state {state.value!r}"
                         + (f" ({why})" if why else f" (it allows: {allowed})"))
        self.lead_id = lead_id
        self.state = state
        self.command = command


class State(str, enum.Enum):
    NEW = "new"
    DIALING = "dialing"
    ANSWERED = "answered"            # a person is on the line with an agent
    RETRY = "retry"                  # dial again at retry_at
    DONE = "done"
    DO_NOT_CALL = "do_not_call"
    EXHAUSTED = "exhausted"          # out of attempts


class Outcome(str, enum.Enum):
    """How a dial ended without reaching an agent (``answered`` is its own command)."""
    BUSY = "busy"
    NO_ANSWER = "no_answer"          # rang at least the campaign's ring time, nobody picked up
    MACHINE = "machine"              # AMD said machine
    FAILED = "failed"                # congestion, invalid number, trunk refused
    ABANDONED = "abandoned"          # a person answered and no agent was free within 2 s


TERMINAL = frozenset({State.DONE, State.DO_NOT_CALL, State.EXHAUSTED})
_LIVE = (State.NEW, State.DIALING, State.ANSWERED, State.RETRY)

#: THE table: (state, command kind) -> state, or None where the retry rules decide.
TRANSITIONS: Mapping[tuple[State, str], State | None] = {
    (State.NEW, "dial"): State.DIALING,
    (State.RETRY, "dial"): State.DIALING,
    (State.NEW, "skip"): State.RETRY,
    (State.RETRY, "skip"): State.RETRY,
    (State.NEW, "withdraw"): State.DONE,
    (State.RETRY, "withdraw"): State.DONE,
    (State.DIALING, "answered"): State.ANSWERED,
    (State.DIALING, "outcome"): None,           # retry, exhausted or done: _after_outcome
    (State.ANSWERED, "complete"): State.DONE,
    (State.ANSWERED, "callback"): State.RETRY,
    (State.ANSWERED, "opt_out"): State.DO_NOT_CALL,
    (State.ANSWERED, "no_result"): State.DONE,
    **{(s, "do_not_call"): State.DO_NOT_CALL for s in _LIVE + (State.DONE, State.EXHAUSTED)},
}


def allowed_commands(state: State) -> list[str]:
    """The command kinds ``state`` allows, in table order."""
    return [kind for (s, kind) in TRANSITIONS if s == state]


# -- rules ---------------------------------------------------------------------

#: Shortest ring before a call may count as "no answer" (the law in several countries).
MIN_RING = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class RetryRule:
    """What to do after one outcome: dial again ``delay`` later, retrying at most
    ``max_times`` times after this outcome (the next one such exhausts the lead; 0: never retry)."""
    delay: timedelta
    max_times: int

    def __post_init__(self) -> None:
        if not isinstance(self.delay, timedelta) or self.delay < timedelta(minutes=1) \
                or self.delay > timedelta(days=30):
            raise InvalidRule("delay", "must be between 1 minute and 30 days")
        if not isinstance(self.max_times, int) or not 0 <= self.max_times <= 100:
            raise InvalidRule("max_times", "must be an integer from 0 to 100")


def _default_rules() -> dict[Outcome, RetryRule]:
    return {
        Outcome.BUSY: RetryRule(timedelta(minutes=15), 3),
        Outcome.NO_ANSWER: RetryRule(timedelta(hours=2), 4),
        Outcome.MACHINE: RetryRule(timedelta(hours=4), 2),
        Outcome.FAILED: RetryRule(timedelta(hours=1), 2),
        Outcome.ABANDONED: RetryRule(timedelta(hours=1), 2),
    }


@dataclass(frozen=True, slots=True)
class RetryRules:
    """A campaign's rules: one ``RetryRule`` per outcome, a bound on all attempts, what a
    machine gets (``machine_voicemail``: a message is left and the lead is done), how far a
    callback may be asked for, how long a skipped preview lead waits, and the ring time."""
    per_outcome: Mapping[Outcome, RetryRule] = field(default_factory=_default_rules)
    max_attempts: int = 6
    machine_voicemail: bool = False
    max_callback_ahead: timedelta = timedelta(days=30)
    skip_delay: timedelta = timedelta(hours=1)
    ring_timeout: timedelta = timedelta(seconds=25)

    def __post_init__(self) -> None:
        missing = set(Outcome) - set(self.per_outcome)
        if missing:
            raise InvalidRule("per_outcome", f"has no rule for {', '.join(sorted(o.value for o in missing))}")
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 100:
            raise InvalidRule("max_attempts", "must be an integer from 1 to 100")
        if self.ring_timeout < MIN_RING or self.ring_timeout > timedelta(minutes=2):
            raise InvalidRule("ring_timeout", "must be between 15 s and 2 minutes")
        if not timedelta(minutes=1) <= self.skip_delay <= timedelta(days=30):
            raise InvalidRule("skip_delay", "must be between 1 minute and 30 days")
        if not timedelta(hours=1) <= self.max_callback_ahead <= timedelta(days=365):
            raise InvalidRule("max_callback_ahead", "must be between 1 hour and 365 days")


# -- the lead and its commands ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lead:
    """One number to call in one campaign. ``tz`` (an IANA zone) overrides the zone the
    number maps to; ``outcomes`` counts each outcome so far; ``attempts`` counts dials."""
    lead_id: int | None
    phone: str
    tz: str | None = None
    state: State = State.NEW
    attempts: int = 0
    outcomes: Mapping[Outcome, int] = field(default_factory=dict)
    retry_at: datetime | None = None
    last_outcome: str | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Dial:
    name = "dial"


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str
    name = "skip"


@dataclass(frozen=True, slots=True)
class Answered:
    name = "answered"


@dataclass(frozen=True, slots=True)
class Ended:
    """The dial ended without an agent: ``rang`` is how long it rang (no_answer needs 15 s)."""
    outcome: Outcome
    rang: timedelta | None = None
    name = "outcome"


@dataclass(frozen=True, slots=True)
class Complete:
    disposition: str
    name = "complete"


@dataclass(frozen=True, slots=True)
class Callback:
    at: datetime
    name = "callback"


@dataclass(frozen=True, slots=True)
class OptOut:
    name = "opt_out"


@dataclass(frozen=True, slots=True)
class DoNotCall:
    name = "do_not_call"


#: The outcome a lead is closed with when its agent recorded no result in time.
NO_RESULT = "answered_no_result"


@dataclass(frozen=True, slots=True)
class NoResult:
    """The call was answered and connected, and no result came from the agent in time: the
    lead is closed (done, ``last_outcome`` ``answered_no_result``) rather than left answered."""
    name = "no_result"


#: The outcome a lead is closed with when its ticket left the live list it came from.
WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class Withdraw:
    """The lead's ticket left the live list it came from (closed, called back, visit re-planned)
    before the lead was dialed: done, ``last_outcome`` ``withdrawn``. A lead being dialed or on
    a call is not withdrawn: its result decides."""
    name = "withdraw"


Command = Union[Dial, Skip, Answered, Ended, Complete, Callback, OptOut, DoNotCall, NoResult, Withdraw]


def agent_result(disposition: str | None, callback_at: datetime | None, opt_out: bool) -> Command:
    """The command an agent's result of an answered call is: an opt-out first (the person
    asked not to be called: it wins over anything else said), then a callback at a time,
    else done with the disposition (``done`` when none was given)."""
    if opt_out:
        return OptOut()
    if callback_at is not None:
        return Callback(callback_at)
    return Complete(disposition or "done")


def dialable(lead: Lead, now: datetime) -> bool:
    """True if ``lead`` may be dialed at ``now`` (calling windows and the DNC list aside)."""
    return lead.state is State.NEW or (lead.state is State.RETRY and lead.retry_at is not None
                                       and now >= lead.retry_at)


def apply(lead: Lead, command: Command, rules: RetryRules, now: datetime) -> Lead:
    """The lead after ``command`` at ``now``. Raises ``TransitionRefused`` when the state
    does not allow it (or a dial comes before ``retry_at``), ``InvalidRule`` on a bad field."""
    kind = command.name
    if (lead.state, kind) not in TRANSITIONS:
        raise TransitionRefused(lead.lead_id, lead.state, kind)
    target = TRANSITIONS[(lead.state, kind)]
    step = dict(state=target, retry_at=None, revision=lead.revision + 1)
    if isinstance(command, Dial):
        if not dialable(lead, now):
            raise TransitionRefused(lead.lead_id, lead.state, kind, f"not before {lead.retry_at.isoformat()}")
        if lead.attempts >= rules.max_attempts:
            raise TransitionRefused(lead.lead_id, lead.state, kind, "no attempt left")
        step["attempts"] = lead.attempts + 1
    elif isinstance(command, Skip):
        if not isinstance(command.reason, str) or not command.reason.strip() or len(command.reason) > 200:
            raise InvalidRule("reason", "a skip needs a reason of 1 to 200 characters")
        step["retry_at"] = now + rules.skip_delay
    elif isinstance(command, Ended):
        return replace(lead, **_after_outcome(lead, command, rules, now), revision=lead.revision + 1)
    elif isinstance(command, Complete):
        if not isinstance(command.disposition, str) or not command.disposition.strip():
            raise InvalidRule("disposition", "is required")
        step["last_outcome"] = command.disposition
    elif isinstance(command, Callback):
        if command.at.tzinfo is None:
            raise InvalidRule("at", "must carry a time zone")
        if not now < command.at <= now + rules.max_callback_ahead:
            raise InvalidRule("at", f"must be after now and at most {rules.max_callback_ahead} ahead")
        if lead.attempts >= rules.max_attempts:
            step["state"] = State.EXHAUSTED
        else:
            step["retry_at"] = command.at
        step["last_outcome"] = "callback"
    elif isinstance(command, OptOut):
        step["last_outcome"] = "opt_out"
    elif isinstance(command, NoResult):
        step["last_outcome"] = NO_RESULT
    elif isinstance(command, Withdraw):
        step["last_outcome"] = WITHDRAWN
    return replace(lead, **step)


def _after_outcome(lead: Lead, ended: Ended, rules: RetryRules, now: datetime) -> dict:
    outcome = Outcome(ended.outcome)
    if outcome is Outcome.NO_ANSWER and (ended.rang is None or ended.rang < MIN_RING):
        # A call hung up early by us is not "no answer": count it as failed (it is retried
        # like one) so that a bug in the shell cannot pass for the law's 15 s.
        outcome = Outcome.FAILED
    counts = dict(lead.outcomes)
    counts[outcome] = counts.get(outcome, 0) + 1
    rule = rules.per_outcome[outcome]
    step = dict(outcomes=counts, last_outcome=outcome.value, retry_at=None)
    if outcome is Outcome.MACHINE and rules.machine_voicemail:
        step["state"] = State.DONE
    elif counts[outcome] > rule.max_times or lead.attempts >= rules.max_attempts:
        step["state"] = State.EXHAUSTED
    else:
        step["state"] = State.RETRY
        step["retry_at"] = now + rule.delay
    return step
