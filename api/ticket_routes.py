"""Tickets, customers and engineers over the API, and dispatch notifications.

Routes (docs/tickets.md, "API"):

    POST  /api/tickets                          create (from a call: the call is linked)
    GET   /api/tickets                          search: state, type, customer, region, engineer, overdue, text
    GET   /api/tickets/{id}                     the ticket, its audit trail, calls, recordings, notifications
    PATCH /api/tickets/{id}                     edit title, notes, priority, due time (not the state)
    POST  /api/tickets/{id}/transitions         one typed command of the cycle
    GET   /api/tickets/callbacks                the callback list (with the numbers to dial)
    GET   /api/tickets/overdue                  live tickets past their due time
    GET   /api/tickets/types                    the configured types, priorities and commands
    GET   /api/customers?q=                     find customers by id, number or name
    GET   /api/customers/not-visited            customers without a successful visit lately
    GET   /api/customers/{id}                   the customer page
    POST  /api/customers/{id}/notes             add a note
    GET   /api/engineers                        engineers (by region)
    PUT   /api/engineers/{id}                   create or change an engineer (admins)

Who may do what (``may_command``, ``may_edit``: pure): agents, supervisors and
admins work tickets; cancelling a ticket and moving its due time are for
supervisors and admins. QA reviewers see none of it. Every change names the
user (or API key) as its actor and passes the revision it was made on
(``expected_revision``): a ticket that moved since answers ``409
ticket_conflict``, a command its state refuses ``409 transition_refused``
with the machine's message.

A change that sends an engineer out (``dispatch``; a failed visit of the
engineer's own cause) notifies them once it has committed (``TicketNotifier``):
the sender is ``cti.ticket_notify.LogSender`` or ``WebhookSender`` by the
``ticket_notify`` setting; a failure is logged and recorded, the change stays.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import MISSING
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ADMIN, STAFF
from api.desk import db, query
from api.errors import ApiError, ErrorDetail
from api.recording_routes import scope_of
from api.registry import ApiRequest, setup_registry
from cti import engineers as engineer_store
from cti import ticket_store
from cti.customer_store import add_note, customer_recordings, customer_view, search_customers
from cti.daemon import CORE, run_with_app
from cti.ticket_notify import EVENT, REASONS, LogSender, Notification, NotifyError, Sender, dispatch_notification, \
    log_fields
from cti.tickets import (
    COMMANDS, DEFAULT_TYPES, EDITABLE, PRIORITIES, AuditEntry, InvalidCommand, State, Ticket, TicketConflict,
    TicketNotFound, TicketTypes, TransitionRefused, UnknownTicketType, allowed_commands, command_from, due_by,
    is_overdue,
)
from recording import recording_db as rec_store

log = structlog.get_logger(__name__)

TICKET_ROLES = frozenset({"agent", "supervisor", "admin"})
NOTIFY_TIMEOUT = 10.0
#: Commands only supervisors and admins give (by name; ``visit_failed:*`` is ``visit_failed``).
STAFF_COMMANDS = frozenset({"cancel"})
#: Fields only supervisors and admins edit.
STAFF_FIELDS = frozenset({"due_at"})


def may_command(role: str, kind: str) -> bool:
    """Whether ``role`` may give the command of kind ``kind`` (``visit_failed:customer``...)."""
    return role in STAFF or kind.split(":", 1)[0] not in STAFF_COMMANDS


def may_edit(role: str, field_name: str) -> bool:
    """Whether ``role`` may edit ``field_name`` of a ticket."""
    return role in STAFF or field_name not in STAFF_FIELDS


def commands_for(role: str, state: State) -> list[str]:
    """The command kinds a ``role`` user can give a ticket in ``state``: the table's, less the role's."""
    return [k for k in allowed_commands(state) if may_command(role, k)]


# -- models ------------------------------------------------------------------------------

Id = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
CommandName = Literal["resolve_by_phone", "send_to_lead", "dispatch", "visit_succeeded", "visit_failed",
                      "callback_no_answer", "confirm", "unsatisfied", "cancel", "reopen"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketView(BaseModel):
    ticket_id: int
    type: str
    customer_id: str
    customer_name: str | None = None
    source: str
    state: str
    title: str
    priority: str
    notes: str
    region: str | None
    engineer: str | None
    lead: str | None
    visits: int
    callback_attempts: int
    resolution: str | None
    created_at: datetime
    due_at: datetime
    callback_due_at: datetime | None
    closed_at: datetime | None
    due_by: datetime | None = Field(description="when the next step is due (None once closed)")
    overdue: bool
    revision: int = Field(description="pass it back as expected_revision")


class AuditView(BaseModel):
    seq: int
    at: datetime
    actor: str
    command: str = Field(description="'create', 'edit' or a command kind ('visit_failed:customer')")
    from_state: str | None
    to_state: str
    note: str | None
    data: dict[str, Any]


class LinkedCall(BaseModel):
    call_id: str
    linked_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    direction: str | None = None
    caller_num: str | None = None
    agent: str | None = None
    state: str | None = None


class LinkedRecording(BaseModel):
    recording_id: str
    linked_at: datetime | None


class NotificationView(BaseModel):
    seq: int
    event: str
    engineer_id: str
    sender: str
    outcome: Literal["sent", "failed"]
    error: str | None
    at: datetime


class TicketDetail(BaseModel):
    ticket: TicketView
    allowed_commands: list[str] = Field(description="what this user may do now (the table's, less the role's)")
    audit: list[AuditView]
    calls: list[LinkedCall]
    recordings: list[LinkedRecording]
    notifications: list[NotificationView]


class CreateBody(_Body):
    type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="a configured type (GET /api/tickets/types)")
    customer_id: str = Id
    title: str | None = Field(None, max_length=200, description="default: the type's label")
    notes: str = Field("", max_length=4000)
    note: str | None = Field(None, max_length=4000, description="kept on the creation's audit entry")
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    region: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$",
                               description="default: the customer's primary address's")
    call_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
                                description="the call it comes from (linked to the ticket and the customer)")
    source: Literal["call", "ivr", "import", "manual"] | None = Field(
        None, description="default: call when call_id is given, else manual")


class EditBody(_Body):
    expected_revision: int = Field(ge=1, description="the revision the change was made on")
    title: str | None = Field(None, min_length=1, max_length=200)
    notes: str | None = Field(None, max_length=4000)
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    due_at: datetime | None = Field(None, description="supervisors and admins; a live ticket only")
    note: str | None = Field(None, max_length=4000, description="kept on the audit entry")


class TransitionBody(_Body):
    command: CommandName
    expected_revision: int = Field(ge=1, description="the revision the command was given on")
    note: str | None = Field(None, max_length=4000)
    engineer: str | None = Field(None, description="dispatch: an active engineer of the ticket's region")
    lead: str | None = Field(None, description="send_to_lead")
    cause: Literal["engineer", "customer", "other"] | None = Field(None, description="visit_failed")
    reason: str | None = Field(None, max_length=500, description="visit_failed, unsatisfied, cancel, reopen")


class SearchQuery(_Body):
    state: str | None = Field(None, pattern=r"^[a-z_]+(,[a-z_]+)*$", description="one or more, comma-separated")
    type: str | None = None
    customer_id: str | None = None
    region: str | None = None
    engineer: str | None = None
    overdue: bool | None = None
    q: str | None = Field(None, max_length=200, description="text in the title, notes or customer's name; or an id")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=100_000)


class TicketList(BaseModel):
    tickets: list[TicketView]


class CallbackItem(BaseModel):
    ticket: TicketView
    customer_name: str
    phones: list[str] = Field(description="the customer's numbers (E.164), to dial")
    overdue: bool


class CallbackList(BaseModel):
    callbacks: list[CallbackItem]


class ListQuery(_Body):
    limit: int = Field(200, ge=1, le=1000)


class TypeView(BaseModel):
    name: str
    label: str
    due_hours: float


class CommandView(BaseModel):
    name: str
    fields: list[str] = Field(description="the fields it requires besides expected_revision")


class TypesReply(BaseModel):
    types: list[TypeView]
    callback_due_hours: float
    priorities: list[str]
    commands: list[CommandView]


class CustomerQuery(_Body):
    q: str = Field(min_length=1, max_length=200, description="a customer id, a number, or part of a name")
    limit: int = Field(20, ge=1, le=100)


class CustomerItem(BaseModel):
    customer_id: str
    name: str
    vip: bool
    phones: list[str]


class CustomerList(BaseModel):
    customers: list[CustomerItem]


class PhoneView(BaseModel):
    phone: str
    label: str | None = None


class AddressView(BaseModel):
    address_id: int
    label: str | None
    line1: str | None
    line2: str | None
    postcode: str | None
    city: str | None
    country: str | None
    region: str | None
    is_primary: bool


class NoteView(BaseModel):
    note_id: int
    at: datetime
    author: str
    body: str


class CustomerCall(BaseModel):
    call_id: str
    linked_at: datetime
    started_at: datetime | None
    state: str | None
    direction: str | None
    caller_num: str | None
    agent: str | None
    duration_s: float | None


class CustomerTicket(BaseModel):
    ticket_id: int
    type: str
    state: str
    title: str
    engineer: str | None
    created_at: datetime
    due_at: datetime
    closed_at: datetime | None
    call_ids: list[str]
    recording_ids: list[str]


class CustomerRecording(BaseModel):
    recording_id: int
    call_id: str
    started_at: datetime
    duration_s: float | None
    agent: str | None
    state: str


class CustomerPage(BaseModel):
    customer_id: str
    name: str
    language: str | None
    vip: bool
    created_at: datetime
    updated_at: datetime
    phones: list[PhoneView]
    addresses: list[AddressView]
    tags: list[str]
    notes: list[NoteView]
    calls: list[CustomerCall]
    tickets: list[CustomerTicket]
    recordings: list[CustomerRecording]


class NoteBody(_Body):
    body: str = Field(min_length=1, max_length=10_000)


class NoteAdded(BaseModel):
    note_id: int


class NotVisitedQuery(_Body):
    days: int = Field(90, ge=1, le=3660, description="no successful visit in this many days")
    region: str | None = None
    limit: int = Field(200, ge=1, le=1000)


class NotVisitedItem(BaseModel):
    customer_id: str
    name: str
    region: str | None
    last_visit: datetime | None = Field(description="None: never visited")


class NotVisitedList(BaseModel):
    customers: list[NotVisitedItem]


class EngineerView(BaseModel):
    engineer_id: str
    name: str
    region: str
    contact: str = Field(description="where notifications go (e-mail, number, URL: the sender's meaning)")
    active: bool


class EngineerList(BaseModel):
    engineers: list[EngineerView]


class EngineerQuery(_Body):
    region: str | None = None
    active: bool | None = None


class EngineerBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    region: str = Id
    contact: str = Field("", max_length=500)
    active: bool = True


# -- helpers -------------------------------------------------------------------------------

TYPES = web.AppKey("ticket_types", TicketTypes)


def _view(t: Ticket, now: datetime, customer_name: str | None = None, overdue: bool | None = None) -> TicketView:
    assert t.ticket_id is not None
    return TicketView(ticket_id=t.ticket_id, type=t.type, customer_id=t.customer_id, customer_name=customer_name,
                      source=t.source.value, state=t.state.value, title=t.title, priority=t.priority, notes=t.notes,
                      region=t.region, engineer=t.engineer, lead=t.lead, visits=t.visits,
                      callback_attempts=t.callback_attempts, resolution=t.resolution, created_at=t.created_at,
                      due_at=t.due_at, callback_due_at=t.callback_due_at, closed_at=t.closed_at, due_by=due_by(t),
                      overdue=is_overdue(t, now) if overdue is None else overdue, revision=t.revision)


def _audit(e: AuditEntry) -> AuditView:
    return AuditView(seq=e.seq, at=e.at, actor=e.actor, command=e.command,
                     from_state=None if e.from_state is None else e.from_state.value, to_state=e.to_state.value,
                     note=e.note, data=dict(e.data))


def _invalid(exc: InvalidCommand) -> ApiError:
    return ApiError(422, "invalid_body", str(exc),
                    [ErrorDetail(field=f"body.{exc.field}", message=str(exc), type="value_error")])


def _actor(req: ApiRequest[Any, Any]) -> str:
    assert req.principal is not None
    return req.principal.name


def _ticket_id(req: ApiRequest[Any, Any]) -> int:
    return int(req.match_info["ticket_id"])


async def _detail(req: ApiRequest[Any, Any], ticket_id: int) -> TicketDetail:
    pool = db(req.app)
    ticket = await query(ticket_store.get_ticket(pool, ticket_id))
    if ticket is None:
        raise ApiError(404, "unknown_ticket", f"no ticket {ticket_id}")
    trail = await query(ticket_store.audit_trail(pool, ticket_id))
    links = await query(ticket_store.ticket_links(pool, ticket_id))
    sent = await query(ticket_store.notifications(pool, ticket_id))
    name = await query(pool.fetchval("SELECT name FROM customers WHERE customer_id = $1", ticket.customer_id))
    seen = await query(rec_store.visible(pool, {_rid(r["recording_id"]) for r in links["recordings"]} - {None},
                                         scope_of(req.principal)))   # as on the customer page
    links["recordings"] = [r for r in links["recordings"] if _rid(r["recording_id"]) in seen]
    role = req.principal.role if req.principal else ""
    return TicketDetail(ticket=_view(ticket, datetime.now(timezone.utc), name),
                        allowed_commands=commands_for(role, ticket.state), audit=[_audit(e) for e in trail],
                        calls=[LinkedCall(**c) for c in links["calls"]],
                        recordings=[LinkedRecording(**r) for r in links["recordings"]],
                        notifications=[NotificationView(**n) for n in sent])


# -- notifications -------------------------------------------------------------------------


class WebhookSender:
    """Dispatch notifications as ``ticket.dispatched`` webhook events: queued for every
    active subscription that wants them, delivered signed and retried by
    ``api.webhook_service`` (its delivery log has each attempt)."""

    name = "webhook"

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def send(self, n: Notification) -> None:
        from api.webhook_service import WEBHOOKS

        service = self.app.get(WEBHOOKS)
        if service is None:
            raise NotifyError("webhooks are not set up")
        body = {"id": n.id, "type": n.event, "at": datetime.fromisoformat(n.at).timestamp(),
                "ticket_id": n.ticket_id, "data": n.as_dict()}
        if service.publish(n.event, body) == 0:
            raise NotifyError(f"no active webhook subscription wants {n.event}")


class TicketNotifier:
    """Sends the notifications committed changes call for, each in a task it owns
    (bounded by ``NOTIFY_TIMEOUT``, cancelled at shutdown); records every outcome."""

    def __init__(self, app: web.Application, sender: Sender) -> None:
        self.app = app
        self.sender = sender
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = self.failed = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def after(self, ticket: Ticket, entry: AuditEntry) -> None:
        """Call once ``entry`` has committed."""
        if entry.command not in REASONS or ticket.engineer is None:
            return
        task = asyncio.get_running_loop().create_task(self._notify(ticket, entry),
                                                      name=f"ticket-notify-{ticket.ticket_id}-{entry.seq}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _notify(self, ticket: Ticket, entry: AuditEntry) -> None:
        assert ticket.ticket_id is not None and ticket.engineer is not None
        error: str | None = None
        try:
            async with asyncio.timeout(NOTIFY_TIMEOUT):
                n = await self._message(ticket, entry)
                if n is None:
                    return
                await self.sender.send(n)
        except NotifyError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {NOTIFY_TIMEOUT:g}s"
        except Exception as exc:   # a sender's own failure: never the change's
            error = type(exc).__name__
        if error is None:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("ticket notification failed", ticket_id=ticket.ticket_id, seq=entry.seq,
                        engineer_id=ticket.engineer, sender=self.sender.name, error=error)
        try:
            async with asyncio.timeout(2.0):
                await ticket_store.record_notification(
                    db(self.app), ticket_id=ticket.ticket_id, seq=entry.seq, event=EVENT,
                    engineer_id=ticket.engineer, sender=self.sender.name,
                    outcome="sent" if error is None else "failed", error=error)
        except Exception as exc:   # the record is best effort; the log line above has a failure
            log.warning("ticket notification not recorded", ticket_id=ticket.ticket_id, error=type(exc).__name__)

    async def _message(self, ticket: Ticket, entry: AuditEntry) -> Notification | None:
        pool = db(self.app)
        assert ticket.engineer is not None
        engineer = await engineer_store.get(pool, ticket.engineer)
        if engineer is None:
            raise NotifyError(f"engineer {ticket.engineer!r} is unknown")
        view = await customer_view(pool, ticket.customer_id, last=1)
        customer: dict[str, Any] = {"customer_id": ticket.customer_id}
        if view is not None:
            addr = view["addresses"][0] if view["addresses"] else None
            customer.update(name=view["name"], phones=[p["phone"] for p in view["phones"]],
                            address=None if addr is None else {k: addr[k] for k in (
                                "line1", "line2", "postcode", "city", "country", "region")})
        n = dispatch_notification(ticket, entry, engineer, customer)
        if n is not None:
            log.debug("ticket notification", **log_fields(n))
        return n


NOTIFIER = web.AppKey("ticket_notifier", TicketNotifier)


# -- ticket handlers -------------------------------------------------------------------------


async def create(req: ApiRequest[CreateBody, None]) -> TicketDetail:
    b = req.body
    source = b.source or ("call" if b.call_id else "manual")
    if source == "call" and b.call_id is None:
        raise ApiError(422, "invalid_body", "call_id: a ticket from a call names the call",
                       [ErrorDetail(field="body.call_id", message="required when source is call", type="missing")])
    try:
        ticket, _ = await query(ticket_store.create_ticket(
            db(req.app), type=b.type, customer_id=b.customer_id, source=source, actor=_actor(req), title=b.title,
            note=b.note, region=b.region, call_id=b.call_id, priority=b.priority, notes=b.notes,
            types=req.app[TYPES]))
    except UnknownTicketType as exc:
        raise ApiError(422, "invalid_body", str(exc),
                       [ErrorDetail(field="body.type", message=str(exc), type="value_error")]) from None
    except InvalidCommand as exc:
        if exc.field == "customer_id":
            raise ApiError(404, "unknown_customer", str(exc)) from None
        raise _invalid(exc) from None
    assert ticket.ticket_id is not None
    log.info("ticket created", ticket_id=ticket.ticket_id, type=ticket.type, source=source, actor=_actor(req))
    return await _detail(req, ticket.ticket_id)


async def get_one(req: ApiRequest[None, None]) -> TicketDetail:
    return await _detail(req, _ticket_id(req))


async def edit(req: ApiRequest[EditBody, None]) -> TicketDetail:
    b = req.body
    changes = {k: getattr(b, k) for k in EDITABLE if k in b.model_fields_set}
    role = req.principal.role if req.principal else ""
    for k in changes:
        if not may_edit(role, k):
            raise ApiError(403, "forbidden_field", f"{k}: only supervisors and admins change it")
    try:
        await query(ticket_store.edit_ticket(db(req.app), _ticket_id(req), changes, actor=_actor(req), note=b.note,
                                             expected_revision=b.expected_revision))
    except TicketNotFound as exc:
        raise ApiError(404, "unknown_ticket", str(exc)) from None
    except TicketConflict as exc:
        raise ApiError(409, "ticket_conflict", str(exc)) from None
    except InvalidCommand as exc:
        raise _invalid(exc) from None
    return await _detail(req, _ticket_id(req))


async def transition(req: ApiRequest[TransitionBody, None]) -> TicketDetail:
    b = req.body
    ticket_id = _ticket_id(req)
    role = req.principal.role if req.principal else ""
    fields: dict[str, Any] = {"actor": _actor(req)}
    for name in ("note", "engineer", "lead", "cause", "reason"):
        value = getattr(b, name)
        if value is not None:
            fields[name] = value
    try:
        command = command_from(b.command, fields)
    except InvalidCommand as exc:
        raise _invalid(exc) from None
    if not may_command(role, command.kind):
        raise ApiError(403, "forbidden_command", f"{b.command}: only supervisors and admins give this command")
    pool = db(req.app)
    if b.command == "dispatch":
        ticket = await query(ticket_store.get_ticket(pool, ticket_id))
        if ticket is None:
            raise ApiError(404, "unknown_ticket", f"no ticket {ticket_id}")
        engineer = await query(engineer_store.get(pool, fields["engineer"]))
        try:
            engineer_store.check_dispatch(ticket, engineer, fields["engineer"])
        except InvalidCommand as exc:
            raise _invalid(exc) from None
    try:
        after, entry = await query(ticket_store.transition(pool, ticket_id, command,
                                                           expected_revision=b.expected_revision,
                                                           types=req.app[TYPES]))
    except TicketNotFound as exc:
        raise ApiError(404, "unknown_ticket", str(exc)) from None
    except TicketConflict as exc:
        raise ApiError(409, "ticket_conflict", str(exc)) from None
    except TransitionRefused as exc:
        raise ApiError(409, "transition_refused", str(exc)) from None
    log.info("ticket transition", ticket_id=ticket_id, command=entry.command, from_state=entry.from_state.value
             if entry.from_state else None, to_state=entry.to_state.value, actor=entry.actor)
    req.app[NOTIFIER].after(after, entry)
    return await _detail(req, ticket_id)


async def search(req: ApiRequest[None, SearchQuery]) -> TicketList:
    q = req.query
    states = q.state.split(",") if q.state else []
    bad = [s for s in states if s not in {x.value for x in State}]
    if bad:
        raise ApiError(422, "invalid_body", f"state: unknown state {bad[0]!r} (known: "
                       f"{', '.join(s.value for s in State)})",
                       [ErrorDetail(field="query.state", message="unknown state", type="value_error")])
    now = datetime.now(timezone.utc)
    rows = await query(ticket_store.search(db(req.app), states=states, type=q.type, customer_id=q.customer_id,
                                           region=q.region, engineer=q.engineer, overdue=q.overdue, text=q.q,
                                           now=now, limit=q.limit, offset=q.offset))
    return TicketList(tickets=[_view(r["ticket"], now, r["customer_name"], r["overdue"]) for r in rows])


async def callbacks(req: ApiRequest[None, ListQuery]) -> CallbackList:
    now = datetime.now(timezone.utc)
    rows = await query(ticket_store.callback_list(db(req.app), now=now, limit=req.query.limit))
    return CallbackList(callbacks=[CallbackItem(ticket=_view(r["ticket"], now, r["customer_name"]),
                                                customer_name=r["customer_name"], phones=r["phones"],
                                                overdue=r["overdue"]) for r in rows])


async def overdue(req: ApiRequest[None, ListQuery]) -> TicketList:
    now = datetime.now(timezone.utc)
    rows = await query(ticket_store.overdue(db(req.app), now=now, limit=req.query.limit))
    return TicketList(tickets=[_view(t, now, overdue=True) for t in rows])


async def types(req: ApiRequest[None, None]) -> TypesReply:
    tt = req.app[TYPES]
    commands = []
    for c in COMMANDS:
        required = [f for f, d in c.__dataclass_fields__.items()
                    if f != "actor" and d.default is MISSING and d.default_factory is MISSING]
        commands.append(CommandView(name=c.name, fields=required))
    return TypesReply(types=[TypeView(name=t.name, label=t.label, due_hours=t.due.total_seconds() / 3600)
                             for t in tt.types.values()],
                      callback_due_hours=tt.callback_due.total_seconds() / 3600, priorities=list(PRIORITIES),
                      commands=commands)


# -- customers -----------------------------------------------------------------------------


async def find_customers(req: ApiRequest[None, CustomerQuery]) -> CustomerList:
    rows = await query(search_customers(db(req.app), req.query.q, limit=req.query.limit))
    return CustomerList(customers=[CustomerItem(**r) for r in rows])


def _rid(value: Any) -> int | None:
    """A linked recording's id as the recordings table has it (links keep text)."""
    text = str(value)
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


async def customer_page(req: ApiRequest[None, None]) -> CustomerPage:
    cid = req.match_info["customer_id"]
    pool = db(req.app)
    view = await query(customer_view(pool, cid, last=50))
    if view is None:
        raise ApiError(404, "unknown_customer", f"no customer {cid!r}")
    recs = await query(customer_recordings(pool, cid))
    # Recordings follow their own scope (an agent's own calls', a supervisor's
    # team's), whoever may read the customer: the rest are not even named.
    ids = {r["recording_id"] for r in recs} | {_rid(i) for t in view["tickets"] for i in t["recording_ids"]}
    seen = await query(rec_store.visible(pool, ids - {None}, scope_of(req.principal)))
    tickets = [{**t, "recording_ids": [i for i in t["recording_ids"] if _rid(i) in seen]} for t in view["tickets"]]
    return CustomerPage(**{**view, "tickets": tickets, "recordings": [r for r in recs if r["recording_id"] in seen]})


async def customer_note(req: ApiRequest[NoteBody, None]) -> NoteAdded:
    cid = req.match_info["customer_id"]
    pool = db(req.app)
    if not await query(pool.fetchval("SELECT true FROM customers WHERE customer_id = $1", cid)):
        raise ApiError(404, "unknown_customer", f"no customer {cid!r}")
    return NoteAdded(note_id=await query(add_note(pool, cid, _actor(req), req.body.body)))


async def not_visited(req: ApiRequest[None, NotVisitedQuery]) -> NotVisitedList:
    q = req.query
    rows = await query(ticket_store.not_visited_lately(db(req.app), since=timedelta(days=q.days), region=q.region,
                                                       limit=q.limit))
    return NotVisitedList(customers=[NotVisitedItem(**r) for r in rows])


# -- engineers -------------------------------------------------------------------------------


async def list_engineers(req: ApiRequest[None, EngineerQuery]) -> EngineerList:
    rows = await query(engineer_store.list_engineers(db(req.app), region=req.query.region,
                                                     active=req.query.active))
    return EngineerList(engineers=[EngineerView(**engineer_store.as_dict(e)) for e in rows])


async def save_engineer(req: ApiRequest[EngineerBody, None]) -> EngineerView:
    b = req.body
    try:
        e, created = await query(engineer_store.save(db(req.app), req.match_info["engineer_id"], name=b.name,
                                                     region=b.region, contact=b.contact, active=b.active))
    except InvalidCommand as exc:
        raise _invalid(exc) from None
    log.info("engineer saved", engineer_id=e.engineer_id, region=e.region, active=e.active, created=created,
             actor=_actor(req))
    return EngineerView(**engineer_store.as_dict(e))


# -- wiring ----------------------------------------------------------------------------------


def setup_ticket_routes(app: web.Application, *, sender: Sender | None = None) -> None:
    """Ticket, customer and engineer routes, and the dispatch notifier. After
    ``setup_auth`` (its pool); before or after ``setup_webhooks`` (looked up when sending).
    ``sender`` replaces the one the ``ticket_notify`` setting names. Raises
    ``ConfigError`` for an unreadable ``ticket_types`` file."""
    settings = app[CORE].settings
    app[TYPES] = DEFAULT_TYPES if settings.ticket_types is None else \
        ticket_store.load_ticket_types(settings.ticket_types)
    if sender is None:
        sender = WebhookSender(app) if settings.ticket_notify == "webhook" else LogSender()
    notifier = app[NOTIFIER] = TicketNotifier(app, sender)
    run_with_app(app, notifier)
    api = setup_registry(app)
    roles = TICKET_ROLES
    t = ("tickets",)
    tid = "/api/tickets/{ticket_id:[0-9]+}"
    api.add("POST", "/api/tickets", create, summary="Create a ticket (from a call: the call is linked)",
            roles=roles, body=CreateBody, response=TicketDetail, status=201, tags=t,
            description="404 unknown_customer; 422 for an unknown type or a bad field.")
    api.add("GET", "/api/tickets", search, summary="Search tickets", roles=roles, query=SearchQuery,
            response=TicketList, tags=t, operation_id="search_tickets",
            description="Every filter given must hold; the most recently changed first.")
    api.add("GET", "/api/tickets/callbacks", callbacks, summary="The callback list: tickets awaiting confirmation",
            roles=roles, query=ListQuery, response=CallbackList, tags=t,
            description="The most urgent first, with the customer's numbers to dial "
                        "(POST /api/calls/dial with ticket_id links the call).")
    api.add("GET", "/api/tickets/overdue", overdue, summary="Live tickets past their due time", roles=roles,
            query=ListQuery, response=TicketList, tags=t, operation_id="overdue_tickets")
    api.add("GET", "/api/tickets/types", types, summary="Ticket types, priorities and commands", roles=roles,
            response=TypesReply, tags=t, operation_id="ticket_types")
    api.add("GET", tid, get_one, summary="A ticket with its audit trail, calls, recordings and notifications",
            roles=roles, response=TicketDetail, tags=t, operation_id="get_ticket")
    api.add("PATCH", tid, edit, summary="Edit a ticket's title, notes, priority or due time", roles=roles,
            body=EditBody, response=TicketDetail, tags=t, operation_id="edit_ticket",
            description="Audited as an 'edit' (the state never changes here: use transitions). due_at: "
                        "supervisors and admins (403 forbidden_field). 409 ticket_conflict when the ticket moved "
                        "past expected_revision.")
    api.add("POST", tid + "/transitions", transition, summary="Give a ticket a command of its cycle",
            roles=roles, body=TransitionBody, response=TicketDetail, tags=t, operation_id="transition_ticket",
            description="409 transition_refused (the state does not allow it; the message says what it allows), "
                        "409 ticket_conflict (moved past expected_revision), 422 for a missing or bad field "
                        "(dispatch: an unknown, inactive or other region's engineer), 403 forbidden_command "
                        "(cancel: supervisors and admins). A dispatch notifies the engineer after it commits.")
    c = ("customers",)
    api.add("GET", "/api/customers", find_customers, summary="Find customers by id, number or name", roles=roles,
            query=CustomerQuery, response=CustomerList, tags=c)
    api.add("GET", "/api/customers/not-visited", not_visited, summary="Customers without a successful visit lately",
            roles=roles, query=NotVisitedQuery, response=NotVisitedList, tags=c,
            description="Never visited first; leaves out customers with a live site_visit ticket.")
    api.add("GET", "/api/customers/{customer_id}", customer_page, summary="The customer page", roles=roles,
            response=CustomerPage, tags=c,
            description="Profile, numbers, addresses, tags, notes, recent calls, tickets, recordings.")
    api.add("POST", "/api/customers/{customer_id}/notes", customer_note, summary="Add a note to a customer",
            roles=roles, body=NoteBody, response=NoteAdded, status=201, tags=c)
    e = ("engineers",)
    api.add("GET", "/api/engineers", list_engineers, summary="Field engineers, by region", roles=roles,
            query=EngineerQuery, response=EngineerList, tags=e)
    api.add("PUT", "/api/engineers/{engineer_id}", save_engineer, summary="Create or change an engineer",
            roles=ADMIN, body=EngineerBody, response=EngineerView, tags=e)
