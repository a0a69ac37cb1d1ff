"""Tickets (work orders): types, states, and the one table of allowed transitions. Pure.

No I/O and no clock: every function that needs the time takes ``now``. The
shell (``crm.ticket_store``) locks a ticket's row, calls ``apply`` and writes
what it returns (the new ticket and one audit entry) in the same transaction.

The cycle, as the desk runs it::

    created (call, IVR, import, by hand) ─▶ open
    open ──resolve_by_phone──▶ closed
    open ──send_to_lead──▶ with_lead ──dispatch──▶ dispatched       (the lead dispatches again)
    open ──dispatch──▶ dispatched
    dispatched ──visit_succeeded──▶ awaiting_callback
    dispatched ──visit_failed (engineer's cause)──▶ dispatched      (same engineer, another visit)
    dispatched ──visit_failed (customer's / other cause)──▶ to_redispatch
    to_redispatch ──dispatch / send_to_lead / resolve_by_phone──▶ ...
    awaiting_callback ──callback_no_answer──▶ awaiting_callback     (try again later)
    awaiting_callback ──confirm──▶ closed
    awaiting_callback ──unsatisfied──▶ to_redispatch
    closed ──reopen──▶ open
    (any state but closed and cancelled) ──cancel──▶ cancelled      (terminal)

Why it is shaped like this:

- ``TRANSITIONS`` below is the only place that says what is allowed. A command
  has a *kind*; ``visit_failed`` has one kind per cause so that "the engineer's
  own cause goes back to the same engineer" is a row of the table, not an
  ``if`` hidden in a handler.
- Commands are small frozen records that check their own data when built
  (``InvalidCommand`` names the field); the table checks the state
  (``TransitionRefused`` names the ticket, its state and the command, and says
  what the state allows).
- Every change, creation included, yields exactly one ``AuditEntry`` (who,
  when, from, to, note, data); ``revision`` counts them, so audit ``seq`` runs
  1, 2, 3... with no gap, and the store can detect a concurrent change.
- Title, notes, priority and the due time are edited outside the cycle
  (``edit``); an edit is audited like a transition (command ``edit``, the state
  unchanged) and counts as a revision.
- A ticket is due by ``due_at`` (creation + its type's ``due``); while it waits
  for the confirmation callback it is due by ``callback_due_at`` instead.
  ``is_overdue(ticket, now)`` is the one definition (the SQL list mirrors it).

Exceptions (all ``cti.errors.CtiError``)::

    TicketError
    ├── InvalidCommand      a command or ticket field is missing or malformed (names the field)
    ├── UnknownTicketType   a type the configuration does not define
    ├── TransitionRefused   the command is not allowed in the ticket's state
    ├── TicketNotFound      (raised by the store) no ticket has that id
    └── TicketConflict      (raised by the store) the ticket changed under the caller, or stayed locked
"""
from __future__ import annotations

import enum
import re
from dataclasses import MISSING, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Union

from cti.errors import CtiError

# -- errors ------------------------------------------------------------------


class TicketError(CtiError):
    """Base of every ticket error."""


class InvalidCommand(TicketError, ValueError):
    """A command or ticket field is missing or malformed; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class UnknownTicketType(TicketError, ValueError):
    """The ticket type is not in the configuration."""


class TransitionRefused(TicketError):
    """The command is not allowed in the ticket's current state."""

    def __init__(self, ticket_id: int | None, state: State, command: str) -> None:
        allowed = ", ".join(allowed_commands(state)) or "nothing"
        who = f"ticket {ticket_id}" if ticket_id is not None else "ticket"
        super().__init__(f"{who}: {command!r} is not allowed in state {state.value!r} (it allows: {allowed})")
        self.ticket_id = ticket_id
        self.state = state
        self.command = command


class TicketNotFound(TicketError, LookupError):
    """No ticket has that id."""


class TicketConflict(TicketError):
    """The ticket changed since the caller read it (or stayed locked too long): re-read and retry."""


# -- states and the table ------------------------------------------------------


class State(str, enum.Enum):
    OPEN = "open"                              # created, nobody acted yet
    WITH_LEAD = "with_lead"                    # handed to a regional lead who will dispatch
    DISPATCHED = "dispatched"                  # an engineer has to visit
    TO_REDISPATCH = "to_redispatch"            # a visit failed (not the engineer's cause) or the customer is unsatisfied
    AWAITING_CALLBACK = "awaiting_callback"    # visit done: call the customer to confirm
    CLOSED = "closed"                          # done (reopen is the way back)
    CANCELLED = "cancelled"                    # dropped (duplicate, mistake): terminal


class Source(str, enum.Enum):
    CALL = "call"
    IVR = "ivr"
    IMPORT = "import"
    MANUAL = "manual"


class FailureCause(str, enum.Enum):
    ENGINEER = "engineer"    # the engineer's own cause (no part, late, ...): back to the same engineer
    CUSTOMER = "customer"    # nobody home, refused access, ...: may be re-dispatched
    OTHER = "other"


#: Terminal states: nothing but ``reopen`` (closed) leaves them.
DONE = frozenset({State.CLOSED, State.CANCELLED})
_LIVE = (State.OPEN, State.WITH_LEAD, State.DISPATCHED, State.TO_REDISPATCH, State.AWAITING_CALLBACK)

#: THE table: (state, command kind) -> next state. Anything absent is refused.
TRANSITIONS: Mapping[tuple[State, str], State] = {
    (State.OPEN, "resolve_by_phone"): State.CLOSED,
    (State.OPEN, "send_to_lead"): State.WITH_LEAD,
    (State.OPEN, "dispatch"): State.DISPATCHED,
    (State.WITH_LEAD, "dispatch"): State.DISPATCHED,
    (State.DISPATCHED, "visit_succeeded"): State.AWAITING_CALLBACK,
    (State.DISPATCHED, "visit_failed:engineer"): State.DISPATCHED,
    (State.DISPATCHED, "visit_failed:customer"): State.TO_REDISPATCH,
    (State.DISPATCHED, "visit_failed:other"): State.TO_REDISPATCH,
    (State.TO_REDISPATCH, "dispatch"): State.DISPATCHED,
    (State.TO_REDISPATCH, "send_to_lead"): State.WITH_LEAD,
    (State.TO_REDISPATCH, "resolve_by_phone"): State.CLOSED,
    (State.AWAITING_CALLBACK, "callback_no_answer"): State.AWAITING_CALLBACK,
    (State.AWAITING_CALLBACK, "confirm"): State.CLOSED,
    (State.AWAITING_CALLBACK, "unsatisfied"): State.TO_REDISPATCH,
    (State.CLOSED, "reopen"): State.OPEN,
    **{(s, "cancel"): State.CANCELLED for s in _LIVE},
}


def allowed_commands(state: State) -> list[str]:
    """The command kinds ``state`` allows, in table order."""
    return [kind for (s, kind) in TRANSITIONS if s == state]


# -- commands ------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")


def _actor(value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 128 or _CONTROL.search(value) \
            or "\n" in value or "\r" in value:
        raise InvalidCommand("actor", "must be 1 to 128 characters without control characters")


def _person(field_name: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidCommand(field_name, "must be an id: letters, digits and _.:@+- (at most 64)")


def _text(field_name: str, value: str | None, *, required: bool, limit: int = 4000) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidCommand(field_name, "is required")
        if value is None:
            return
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise InvalidCommand(field_name, f"must be text of at most {limit} characters without control characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Command:
    actor: str                      # who does it (agent, engineer, lead, 'import', 'ivr')
    note: str | None = None

    def __post_init__(self) -> None:
        _actor(self.actor)
        _text("note", self.note, required=False)

    @property
    def kind(self) -> str:
        return self.name

    def data(self) -> dict[str, Any]:
        """What the audit entry keeps besides actor and note."""
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveByPhone(_Command):
    """Solved while talking to the customer: closes the ticket."""
    name = "resolve_by_phone"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToLead(_Command):
    """Hand the ticket to a regional lead, who dispatches it to one of their engineers."""
    name = "send_to_lead"
    lead: str

    def __post_init__(self) -> None:
        _Command.__post_init__(self)
        _person("lead", self.lead)

    def data(self) -> dict[str, Any]:
        return {"lead": self.lead}


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch(_Command):
    """Send an engineer (chosen by the ticket's region)."""
    name = "dispatch"
    engineer: str

    def __post_init__(self) -> None:
        _Command.__post_init__(self)
        _person("engineer", self.engineer)

    def data(self) -> dict[str, Any]:
        return {"engineer": self.engineer}


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitSucceeded(_Command):
    """The engineer reports the work done."""
    name = "visit_succeeded"


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitFailed(_Command):
    """The engineer reports a failed visit, its cause and reason."""
    name = "visit_failed"
    cause: FailureCause
    reason: str

    def __post_init__(self) -> None:
        _Command.__post_init__(self)
        if not isinstance(self.cause, FailureCause):
            try:
                object.__setattr__(self, "cause", FailureCause(self.cause))
            except ValueError:
                raise InvalidCommand("cause", f"must be one of {', '.join(c.value for c in FailureCause)}") from None
        _text("reason", self.reason, required=True, limit=500)

    @property
    def kind(self) -> str:
        return f"visit_failed:{self.cause.value}"

    def data(self) -> dict[str, Any]:
        return {"cause": self.cause.value, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackNoAnswer(_Command):
    """The confirmation callback did not reach the customer; it stays on the callback list."""
    name = "callback_no_answer"


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirm(_Command):
    """The customer confirms on the callback: closes the ticket."""
    name = "confirm"


@dataclass(frozen=True, slots=True, kw_only=True)
class _WithReason(_Command):
    """A command that must say why (kept in the audit entry)."""
    reason: str

    def __post_init__(self) -> None:
        _Command.__post_init__(self)
        _text("reason", self.reason, required=True, limit=500)

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsatisfied(_WithReason):
    """The customer is not satisfied on the callback: the ticket goes back to dispatch."""
    name = "unsatisfied"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(_WithReason):
    """Drop the ticket (duplicate, created by mistake, customer withdrew)."""
    name = "cancel"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reopen(_WithReason):
    """A closed ticket comes back (the problem returned); it starts over as open."""
    name = "reopen"


Command = Union[ResolveByPhone, SendToLead, Dispatch, VisitSucceeded, VisitFailed, CallbackNoAnswer,
                Confirm, Unsatisfied, Cancel, Reopen]
COMMANDS: tuple[type, ...] = (ResolveByPhone, SendToLead, Dispatch, VisitSucceeded, VisitFailed,
                              CallbackNoAnswer, Confirm, Unsatisfied, Cancel, Reopen)
COMMAND_NAMES = frozenset(c.name for c in COMMANDS)


def command_from(name: str, fields: Mapping[str, Any]) -> Command:
    """Build a command from its name and fields (an API body, a CLI line).

    Raises: ``InvalidCommand`` for an unknown name, an unknown or missing field, or bad data.
    """
    by_name = {c.name: c for c in COMMANDS}
    cls = by_name.get(name)
    if cls is None:
        raise InvalidCommand("command", f"unknown command {name!r} (known: {', '.join(sorted(by_name))})")
    known = set(cls.__dataclass_fields__)
    extra = set(fields) - known
    if extra:
        raise InvalidCommand(sorted(extra)[0], f"is not a field of {name!r}")
    missing = [f for f, d in cls.__dataclass_fields__.items()
               if f not in fields and d.default is MISSING and d.default_factory is MISSING]
    if missing:
        raise InvalidCommand(missing[0], "is required")
    return cls(**fields)



# -- ticket types ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TicketType:
    name: str           # e.g. 'repair' (stored on the ticket)
    label: str          # e.g. 'Repair'
    due: timedelta      # from creation (and from a reopen) to done


@dataclass(frozen=True, slots=True)
class TicketTypes:
    """The configured ticket types and the time a confirmation callback is due in."""

    types: Mapping[str, TicketType]
    callback_due: timedelta = timedelta(hours=24)

    def get(self, name: str) -> TicketType:
        """The type named ``name``. Raises ``UnknownTicketType`` naming the known ones."""
        t = self.types.get(name)
        if t is None:
            raise UnknownTicketType(f"unknown ticket type {name!r} (known: {', '.join(sorted(self.types))})")
        return t


DEFAULT_TYPES = TicketTypes({t.name: t for t in (
    TicketType("installation", "Installation", timedelta(days=7)),
    TicketType("add_on", "Add-on", timedelta(days=5)),
    TicketType("repair", "Repair", timedelta(days=2)),
    TicketType("missed_upload", "Missed-upload follow-up", timedelta(days=1)),
    TicketType("site_visit", "Site visit", timedelta(days=14)),
)})


def parse_ticket_types(doc: Mapping[str, Any]) -> TicketTypes:
    """Ticket types from a parsed TOML document::

        callback_due_hours = 24
        [types.repair]
        label = "Repair"
        due_hours = 48

    Raises: ``InvalidCommand`` naming the bad entry (``types.repair.due_hours: ...``).
    """
    extra = set(doc) - {"types", "callback_due_hours"}
    if extra:
        raise InvalidCommand(sorted(extra)[0], "unknown key (expected types, callback_due_hours)")
    raw = doc.get("types")
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidCommand("types", "at least one ticket type is required")
    types: dict[str, TicketType] = {}
    for name, spec in raw.items():
        where = f"types.{name}"
        if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]{0,31}$", name):
            raise InvalidCommand(where, "a type name is lower-case letters, digits and _ (at most 32)")
        if not isinstance(spec, Mapping) or set(spec) - {"label", "due_hours"}:
            raise InvalidCommand(where, "expects label and due_hours")
        label = spec.get("label", name)
        _text(f"{where}.label", label, required=True, limit=64)
        hours = spec.get("due_hours")
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours <= 24 * 366:
            raise InvalidCommand(f"{where}.due_hours", "must be a number of hours above 0 (at most a year)")
        types[name] = TicketType(name, label, timedelta(hours=hours))
    cb = doc.get("callback_due_hours", 24)
    if isinstance(cb, bool) or not isinstance(cb, (int, float)) or not 0 < cb <= 24 * 366:
        raise InvalidCommand("callback_due_hours", "must be a number of hours above 0 (at most a year)")
    return TicketTypes(types, timedelta(hours=cb))


# -- tickets ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    """One work order as the machine sees it. ``ticket_id`` is None until stored."""

    ticket_id: int | None
    type: str
    customer_id: str
    source: Source
    state: State
    title: str
    region: str | None
    created_at: datetime
    due_at: datetime
    callback_due_at: datetime | None = None   # set while awaiting the confirmation callback
    engineer: str | None = None
    lead: str | None = None
    visits: int = 0                           # visits reported (success or failure)
    callback_attempts: int = 0                # callbacks that did not reach the customer
    resolution: str | None = None             # how it closed: 'phone', 'confirmed'
    closed_at: datetime | None = None
    revision: int = 1                         # the number of audit entries
    priority: str = "normal"                  # PRIORITIES; edited outside the cycle (``edit``)
    notes: str = ""                           # free text about the work; edited outside the cycle


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One change of one ticket: ``seq`` is the ticket's revision after the change."""

    ticket_id: int | None
    seq: int
    at: datetime
    actor: str
    command: str                  # 'create' or a command kind ('visit_failed:customer')
    from_state: State | None      # None for the creation
    to_state: State
    note: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def _aware(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidCommand("now", "must be a timezone-aware datetime")


def new_ticket(*, type: str, customer_id: str, source: Source | str, actor: str, now: datetime,
               title: str | None = None, region: str | None = None, note: str | None = None,
               priority: str = "normal", notes: str = "",
               types: TicketTypes = DEFAULT_TYPES) -> tuple[Ticket, AuditEntry]:
    """A new open ticket and its creation entry.

    Raises: ``UnknownTicketType``; ``InvalidCommand`` naming a bad field.
    """
    _aware(now)
    ttype = types.get(type)
    _actor(actor)
    _text("customer_id", customer_id, required=True, limit=64)
    try:
        src = Source(source)
    except ValueError:
        raise InvalidCommand("source", f"must be one of {', '.join(s.value for s in Source)}") from None
    _text("title", title, required=False, limit=200)
    _text("note", note, required=False)
    if region is not None:
        _person("region", region)
    if priority not in PRIORITIES:
        raise InvalidCommand("priority", f"must be one of {', '.join(PRIORITIES)}")
    _text("notes", notes or None, required=False)
    ticket = Ticket(ticket_id=None, type=ttype.name, customer_id=customer_id, source=src, state=State.OPEN,
                    title=(title or "").strip() or ttype.label, region=region, created_at=now,
                    due_at=now + ttype.due, priority=priority, notes=notes or "")
    entry = AuditEntry(ticket_id=None, seq=1, at=now, actor=actor, command="create", from_state=None,
                       to_state=State.OPEN, note=note, data={"type": ttype.name, "source": src.value})
    return ticket, entry


def apply(ticket: Ticket, command: Command, now: datetime,
          types: TicketTypes = DEFAULT_TYPES) -> tuple[Ticket, AuditEntry]:
    """The ticket after ``command`` at ``now``, and the audit entry for the change.

    Raises: ``TransitionRefused`` when the table does not allow the command in the
    ticket's state (the ticket is unchanged); ``InvalidCommand`` for a naive ``now``.
    """
    _aware(now)
    target = TRANSITIONS.get((ticket.state, command.kind))
    if target is None:
        raise TransitionRefused(ticket.ticket_id, ticket.state, command.kind)
    changes: dict[str, Any] = {"state": target, "revision": ticket.revision + 1}
    if isinstance(command, SendToLead):
        changes.update(lead=command.lead, engineer=None)
    elif isinstance(command, Dispatch):
        changes.update(engineer=command.engineer)
    elif isinstance(command, (VisitSucceeded, VisitFailed)):
        changes.update(visits=ticket.visits + 1)
        # A failure of the engineer's own making keeps the engineer (the table keeps the
        # state); any other failure frees the ticket for a new dispatch.
        if isinstance(command, VisitFailed) and command.cause is not FailureCause.ENGINEER:
            changes.update(engineer=None)
    elif isinstance(command, CallbackNoAnswer):
        changes.update(callback_attempts=ticket.callback_attempts + 1)
    elif isinstance(command, Unsatisfied):
        changes.update(engineer=None)
    elif isinstance(command, Reopen):
        # Due again as if new; a type since removed from the configuration keeps its old span.
        ttype = types.types.get(ticket.type)
        span = ttype.due if ttype is not None else ticket.due_at - ticket.created_at
        changes.update(engineer=None, lead=None, resolution=None, closed_at=None, due_at=now + span)
    if target is State.AWAITING_CALLBACK and ticket.state is not State.AWAITING_CALLBACK:
        changes.update(callback_due_at=now + types.callback_due, callback_attempts=0)
    elif target is not State.AWAITING_CALLBACK:
        changes.update(callback_due_at=None)
    if target is State.CLOSED:
        changes.update(closed_at=now, resolution="phone" if isinstance(command, ResolveByPhone) else "confirmed")
    elif target is State.CANCELLED:
        changes.update(closed_at=now, resolution="cancelled")
    after = replace(ticket, **changes)
    entry = AuditEntry(ticket_id=ticket.ticket_id, seq=after.revision, at=now, actor=command.actor,
                       command=command.kind, from_state=ticket.state, to_state=target, note=command.note,
                       data=command.data())
    return after, entry


#: A ticket's priority, lowest first.
PRIORITIES = ("low", "normal", "high", "urgent")
#: The fields ``edit`` changes; the state and what the cycle records change only by ``apply``.
EDITABLE = ("title", "notes", "priority", "due_at")


def edit(ticket: Ticket, changes: Mapping[str, Any], *, actor: str, now: datetime,
         note: str | None = None) -> tuple[Ticket, AuditEntry]:
    """The ticket with ``changes`` (a subset of ``EDITABLE``) applied, and the audit
    entry for it (command ``edit``, the state unchanged, ``data`` holding each
    changed field as ``[before, after]``). A field given its current value is not a change.

    Raises: ``InvalidCommand`` naming a field that is not editable or a bad value,
    ``due_at`` on a closed or cancelled ticket, any edit of a cancelled one, or
    nothing changed (field ``body``).
    """
    _aware(now)
    _actor(actor)
    _text("note", note, required=False)
    for name in changes:
        if name not in EDITABLE:
            raise InvalidCommand(name, f"is not editable (editable: {', '.join(EDITABLE)}); the state changes"
                                       " only by a transition")
    if ticket.state is State.CANCELLED:
        raise InvalidCommand("state", f"ticket {ticket.ticket_id} is cancelled: it is no longer edited")
    after: dict[str, Any] = {}
    if "title" in changes:
        _text("title", changes["title"], required=True, limit=200)
        after["title"] = changes["title"].strip()
    if "notes" in changes:
        _text("notes", changes["notes"] if changes["notes"] else None, required=False)
        after["notes"] = changes["notes"] or ""
    if "priority" in changes:
        if changes["priority"] not in PRIORITIES:
            raise InvalidCommand("priority", f"must be one of {', '.join(PRIORITIES)}")
        after["priority"] = changes["priority"]
    if "due_at" in changes:
        due = changes["due_at"]
        if not isinstance(due, datetime) or due.tzinfo is None:
            raise InvalidCommand("due_at", "must be a timezone-aware time")
        if ticket.state in DONE:
            raise InvalidCommand("due_at", f"ticket {ticket.ticket_id} is {ticket.state.value}: nothing is due")
        if due <= ticket.created_at:
            raise InvalidCommand("due_at", "must be after the ticket's creation")
        after["due_at"] = due
    diff = {k: v for k, v in after.items() if getattr(ticket, k) != v}
    if not diff:
        raise InvalidCommand("body", "nothing to change")
    new = replace(ticket, **diff, revision=ticket.revision + 1)
    data = {k: [_plain(getattr(ticket, k)), _plain(v)] for k, v in diff.items()}
    entry = AuditEntry(ticket_id=ticket.ticket_id, seq=new.revision, at=now, actor=actor, command="edit",
                       from_state=ticket.state, to_state=ticket.state, note=note, data=data)
    return new, entry


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def due_by(ticket: Ticket) -> datetime | None:
    """When the ticket's next step is due: the callback's time while awaiting it,
    else the ticket's due time; None once closed or cancelled."""
    if ticket.state in DONE:
        return None
    if ticket.state is State.AWAITING_CALLBACK and ticket.callback_due_at is not None:
        return ticket.callback_due_at
    return ticket.due_at


def is_overdue(ticket: Ticket, now: datetime) -> bool:
    """True when the ticket is live and ``now`` is past ``due_by(ticket)``."""
    due = due_by(ticket)
    return due is not None and now > due
