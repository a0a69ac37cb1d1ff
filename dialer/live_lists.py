"""Live lists: a campaign whose leads come from a query over the tickets, kept in step. Pure.

No I/O and no clock. The shell (``dialer.live_store``) reads a list and the campaign's
leads that name a ticket, calls ``diff``, and writes what it returns in one transaction
with the campaign's row locked; it writes an agent's result back to the ticket with the
command ``ticket_command`` chooses.

The lists (``SOURCES``), each one ticket state of the service cycle (crm.tickets):

- ``tickets_callback``: tickets ``awaiting_callback``: the visit succeeded, the customer is
  called to confirm (the tickets' own callback list, ``crm.ticket_store.callback_list``);
- ``tickets_visit``: tickets ``to_redispatch``: a visit failed (nobody home, no access) or the
  customer was unsatisfied on the callback; the customer is called to arrange the next visit.

A ticket's **stay** on a list is ``(ticket_id, entry)``, ``entry`` the audit seq of the
transition that put it in the list's state (a transition to the same state, such as
``callback_no_answer``, is not an entry). Leads are keyed by stay, so:

- a ticket on the list with no lead for its stay gets one (whatever became of leads of its
  earlier stays: a lead done with a result does not come back while the ticket stays);
- a lead not yet dialed (``new``, ``retry``) whose stay is no longer on the list is withdrawn
  (the ticket was closed, confirmed, re-dispatched, cancelled: or left and came back, a new
  stay with a lead of its own); a lead being dialed or on a call is left to its result;
- applying the diff and taking it again gives nothing to do (idempotent): a reconciliation
  can run any time, on any trigger, as often as wanted.

Exceptions: ``InvalidSource`` (a ``ValueError``) names the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from crm.tickets import (CallbackNoAnswer, Command, Confirm, InvalidCommand, ResolveByPhone, State as TicketState,
                         Unsatisfied)
from dialer.leads import State as LeadState

#: Where a campaign's leads come from: a CSV import, or a live list and the ticket state it is.
LIST_STATE: dict[str, TicketState] = {
    "tickets_callback": TicketState.AWAITING_CALLBACK,
    "tickets_visit": TicketState.TO_REDISPATCH,
}
SOURCES = ("csv",) + tuple(LIST_STATE)
#: Leads not yet dialed: the only ones a ticket leaving its list withdraws.
WITHDRAWABLE = frozenset({LeadState.NEW, LeadState.RETRY})


class InvalidSource(ValueError):
    """A source that is not one (``field`` names it)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def parse_source(value: object) -> str:
    """``value`` as a campaign source. Raises ``InvalidSource`` naming ``source``."""
    if not isinstance(value, str) or value not in SOURCES:
        raise InvalidSource("source", f"must be one of {', '.join(SOURCES)}")
    return value


def is_live(source: str) -> bool:
    return source in LIST_STATE


@dataclass(frozen=True, slots=True)
class ListEntry:
    """A ticket on a list now: its stay, its customer and the customer's numbers (E.164)."""
    ticket_id: int
    entry: int
    customer_id: str
    name: str | None = None
    phones: tuple[str, ...] = ()

    @property
    def stay(self) -> tuple[int, int]:
        return (self.ticket_id, self.entry)


@dataclass(frozen=True, slots=True)
class LinkedLead:
    """A lead of the campaign that names a ticket's stay."""
    lead_id: int
    ticket_id: int
    entry: int
    state: LeadState

    @property
    def stay(self) -> tuple[int, int]:
        return (self.ticket_id, self.entry)


@dataclass(frozen=True, slots=True)
class Add:
    """A lead to create: the entry, and the number it dials."""
    entry: ListEntry
    phone: str


@dataclass(frozen=True, slots=True)
class Diff:
    adds: tuple[Add, ...] = ()
    withdrawals: tuple[int, ...] = ()        # lead ids
    no_phone: tuple[int, ...] = ()           # ticket ids on the list whose customer has no number

    @property
    def empty(self) -> bool:
        return not self.adds and not self.withdrawals


def dial_number(phones: Iterable[str]) -> str | None:
    """The number a lead of this customer dials: the first of their numbers in order (None: none)."""
    ordered = sorted(p for p in phones if p)
    return ordered[0] if ordered else None


def diff(entries: Iterable[ListEntry], leads: Iterable[LinkedLead]) -> Diff:
    """What keeps the campaign's leads in step with the list ``entries`` (its tickets now).

    - an entry whose stay has no lead (in any state) is added, with its customer's first number
      (an entry without a number is reported in ``no_phone``, not added);
    - a lead ``new`` or ``retry`` whose stay is not on the list is withdrawn;
    - nothing else changes: leads dialing, answered or closed are left as they are.
    Entries repeated (the same stay) count once; the order of ``adds`` is the list's.
    """
    leads = list(leads)
    have = {lead.stay for lead in leads}
    on_list: set[tuple[int, int]] = set()
    adds: list[Add] = []
    no_phone: list[int] = []
    for e in entries:
        if e.stay in on_list:
            continue
        on_list.add(e.stay)
        if e.stay in have:
            continue
        phone = dial_number(e.phones)
        if phone is None:
            no_phone.append(e.ticket_id)
        else:
            adds.append(Add(e, phone))
    withdrawals = tuple(sorted(lead.lead_id for lead in leads
                               if lead.state in WITHDRAWABLE and lead.stay not in on_list))
    return Diff(tuple(adds), withdrawals, tuple(no_phone))


#: Dispositions an agent gives that move the ticket, per list (anything else leaves it as it is).
CONFIRMED, UNSATISFIED, RESOLVED = "confirmed", "unsatisfied", "resolved"
#: Dial outcomes that say the callback did not reach the customer.
NOT_REACHED = frozenset({"busy", "no_answer", "machine"})


def ticket_command(source: str, *, outcome: str, disposition: str | None, actor: str,
                   note: str | None = None) -> Command | None:
    """The ticket command an agent's result of a live-list lead is, or None (the ticket stays
    as it is: the note on the customer record and the call's link say what happened).

    ``tickets_callback`` (the ticket ``awaiting_callback``): ``answered`` with disposition
    ``confirmed`` -> ``confirm`` (closed); ``unsatisfied`` -> ``unsatisfied`` (back to dispatch);
    a preview dial that ended ``busy``, ``no_answer`` or ``machine`` -> ``callback_no_answer``
    (it stays on the list, its count of unanswered callbacks up one).
    ``tickets_visit`` (the ticket ``to_redispatch``): ``answered`` with disposition
    ``resolved`` -> ``resolve_by_phone`` (closed). Arranging the visit itself stays the
    dispatcher's ``dispatch`` (an engineer of the region is chosen there).
    A ``csv`` campaign's result never moves a ticket.
    """
    if source == "tickets_callback":
        if outcome == "answered" and disposition == CONFIRMED:
            return Confirm(actor=actor, note=note)
        if outcome == "answered" and disposition == UNSATISFIED:
            return Unsatisfied(actor=actor, note=note, reason="unsatisfied on the campaign's callback")
        if outcome in NOT_REACHED:
            return CallbackNoAnswer(actor=actor, note=note)
        return None
    if source == "tickets_visit":
        if outcome == "answered" and disposition == RESOLVED:
            return ResolveByPhone(actor=actor, note=note)
        return None
    return None


def safe_actor(actor: str) -> str:
    """``actor`` as a ticket command takes it (1 to 128 characters, one line): the dialer's
    own name when it would be refused."""
    try:
        CallbackNoAnswer(actor=actor)
    except InvalidCommand:
        return "dialer"
    return actor
