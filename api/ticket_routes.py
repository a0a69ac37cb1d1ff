"""Tickets over the API, and the sender that passes dispatch notifications on as webhooks.

Routes (docs/tickets.md, "API"; customers and engineers: ``api.customer_routes``,
``api.engineer_routes``)::

    POST  /api/tickets                          create (from a call: the call is linked)
    GET   /api/tickets                          search: state, type, customer, region, engineer, overdue, text
    GET   /api/tickets/{id}                     the ticket, its audit trail, calls, recordings, notifications
    PATCH /api/tickets/{id}                     edit title, notes, priority, due time (not the state)
    POST  /api/tickets/{id}/transitions         one typed command of the cycle
    GET   /api/tickets/callbacks                the callback list (with the numbers to dial)
    GET   /api/tickets/overdue                  live tickets past their due time
    GET   /api/tickets/types                    the configured types, priorities and commands

Who may do what (``may_command``, ``may_edit``: pure): agents, supervisors and
admins work tickets; cancelling a ticket and moving its due time are for
supervisors and admins. QA reviewers see none of it. Every change names the
user (or API key) as its actor and passes the revision it was made on
(``expected_revision``): a ticket that moved since answers ``409
ticket_conflict``, a command its state refuses ``409 transition_refused``
with the machine's message.

A change that sends an engineer out (``dispatch``; a failed visit of the
engineer's own cause) notifies them once it has committed
(``crm.ticket_notifier.TicketNotifier``, ``app[NOTIFIER]``): the sender is
``crm.ticket_notify.LogSender`` or ``WebhookSender`` (below) by the
``ticket_notify`` setting; a failure is logged and recorded, the change stays.
"""
from __future__ import annotations

from dataclasses import MISSING
from datetime import datetime, timezone
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import STAFF
from api.crm_common import CRM_ROLES, Id, StrictBody, actor_of, invalid_field, recording_id
from api.db import db, query
from api.errors import ApiError, ErrorDetail
from api.recording_routes import scope_of
from api.registry import ApiRequest, setup_registry
from crm import engineers as engineer_store
from crm import ticket_store
from crm.ticket_notifier import TicketNotifier
from crm.ticket_notify import LogSender, Notification, NotifyError, Sender
from crm.tickets import (
    COMMANDS, DEFAULT_TYPES, EDITABLE, PRIORITIES, AuditEntry, InvalidCommand, State, Ticket, TicketConflict,
    TicketNotFound, TicketTypes, TransitionRefused, UnknownTicketType, allowed_commands, command_from, due_by,
    is_overdue,
)
from cti.daemon import CORE, run_with_app
from recording import recording_db as rec_store

log = structlog.get_logger(__name__)

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

CommandName = Literal["resolve_by_phone", "send_to_lead", "dispatch", "visit_succeeded", "visit_failed",
                      "callback_no_answer", "confirm", "unsatisfied", "cancel", "reopen"]


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


class CreateBody(StrictBody):
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


class EditBody(StrictBody):
    expected_revision: int = Field(ge=1, description="the revision the change was made on")
    title: str | None = Field(None, min_length=1, max_length=200)
    notes: str | None = Field(None, max_length=4000)
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    due_at: datetime | None = Field(None, description="supervisors and admins; a live ticket only")
    note: str | None = Field(None, max_length=4000, description="kept on the audit entry")


class TransitionBody(StrictBody):
    command: CommandName
    expected_revision: int = Field(ge=1, description="the revision the command was given on")
    note: str | None = Field(None, max_length=4000)
    engineer: str | None = Field(None, description="dispatch: an active engineer of the ticket's region")
    lead: str | None = Field(None, description="send_to_lead")
    cause: Literal["engineer", "customer", "other"] | None = Field(None, description="visit_failed")
    reason: str | None = Field(None, max_length=500, description="visit_failed, unsatisfied, cancel, reopen")


class SearchQuery(StrictBody):
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


class ListQuery(StrictBody):
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
    seen = await query(rec_store.visible(pool, {recording_id(r["recording_id"]) for r in links["recordings"]} - {None},
                                         scope_of(req.principal)))   # as on the customer page
    links["recordings"] = [r for r in links["recordings"] if recording_id(r["recording_id"]) in seen]
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


NOTIFIER = web.AppKey("ticket_notifier", TicketNotifier)
#: Called with ``(ticket, audit entry)`` after a transition made through the API has committed
#: (the dialer's live lists kick their sync: docs/dialer.md, "Live lists"). A hook must not block.
TICKET_CHANGED = web.AppKey("ticket_changed", list)


# -- ticket handlers -------------------------------------------------------------------------


async def create(req: ApiRequest[CreateBody, None]) -> TicketDetail:
    b = req.body
    source = b.source or ("call" if b.call_id else "manual")
    if source == "call" and b.call_id is None:
        raise ApiError(422, "invalid_body", "call_id: a ticket from a call names the call",
                       [ErrorDetail(field="body.call_id", message="required when source is call", type="missing")])
    try:
        ticket, _ = await query(ticket_store.create_ticket(
            db(req.app), type=b.type, customer_id=b.customer_id, source=source, actor=actor_of(req), title=b.title,
            note=b.note, region=b.region, call_id=b.call_id, priority=b.priority, notes=b.notes,
            types=req.app[TYPES]))
    except UnknownTicketType as exc:
        raise ApiError(422, "invalid_body", str(exc),
                       [ErrorDetail(field="body.type", message=str(exc), type="value_error")]) from None
    except InvalidCommand as exc:
        if exc.field == "customer_id":
            raise ApiError(404, "unknown_customer", str(exc)) from None
        raise invalid_field(exc) from None
    assert ticket.ticket_id is not None
    log.info("ticket created", ticket_id=ticket.ticket_id, type=ticket.type, source=source, actor=actor_of(req))
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
        await query(ticket_store.edit_ticket(db(req.app), _ticket_id(req), changes, actor=actor_of(req), note=b.note,
                                             expected_revision=b.expected_revision))
    except TicketNotFound as exc:
        raise ApiError(404, "unknown_ticket", str(exc)) from None
    except TicketConflict as exc:
        raise ApiError(409, "ticket_conflict", str(exc)) from None
    except InvalidCommand as exc:
        raise invalid_field(exc) from None
    return await _detail(req, _ticket_id(req))


async def transition(req: ApiRequest[TransitionBody, None]) -> TicketDetail:
    b = req.body
    ticket_id = _ticket_id(req)
    role = req.principal.role if req.principal else ""
    fields: dict[str, Any] = {"actor": actor_of(req)}
    for name in ("note", "engineer", "lead", "cause", "reason"):
        value = getattr(b, name)
        if value is not None:
            fields[name] = value
    try:
        command = command_from(b.command, fields)
    except InvalidCommand as exc:
        raise invalid_field(exc) from None
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
            raise invalid_field(exc) from None
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
    for hook in req.app.get(TICKET_CHANGED, ()):
        hook(after, entry)
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


# -- wiring ----------------------------------------------------------------------------------


def setup_ticket_routes(app: web.Application, *, sender: Sender | None = None) -> None:
    """The ticket routes and the dispatch notifier. After
    ``setup_auth`` (its pool); before or after ``setup_webhooks`` (looked up when sending).
    ``sender`` replaces the one the ``ticket_notify`` setting names. Raises
    ``ConfigError`` for an unreadable ``ticket_types`` file."""
    settings = app[CORE].settings
    app[TYPES] = DEFAULT_TYPES if settings.ticket_types is None else \
        ticket_store.load_ticket_types(settings.ticket_types)
    if sender is None:
        sender = WebhookSender(app) if settings.ticket_notify == "webhook" else LogSender()
    notifier = app[NOTIFIER] = TicketNotifier(lambda: db(app), sender)
    run_with_app(app, notifier)
    app[TICKET_CHANGED] = []
    api = setup_registry(app)
    roles = CRM_ROLES
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
