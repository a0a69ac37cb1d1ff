"""Customers over the API: find them, the customer page, notes, and who was not visited lately.

Routes (docs/customers.md, docs/tickets.md "API")::

    GET   /api/customers?q=                     find customers by id, number or name
    GET   /api/customers/not-visited            customers without a successful visit lately
    GET   /api/customers/{id}                   the customer page
    POST  /api/customers/{id}/notes             add a note

Agents, supervisors and admins (``CRM_ROLES``); QA reviewers see none of it. The
page names only the recordings the asking user may hear (``recording.recording_db.visible``).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from api.crm_common import CRM_ROLES, StrictBody, actor_of, recording_id
from api.db import db, query
from api.errors import ApiError
from api.recording_routes import scope_of
from api.registry import ApiRequest, setup_registry
from crm import ticket_store
from crm.conversations import customer_conversations
from crm.customer_store import add_note, customer_recordings, customer_view, search_customers
from recording import recording_db as rec_store

# -- models ------------------------------------------------------------------------------


class CustomerQuery(StrictBody):
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


class CustomerConversation(BaseModel):
    channel: Literal["chat", "email", "message"]
    conversation: str = Field(description="a chat's task id, a mail thread's id, a messaging conversation's id")
    subject: str = Field(description="as the customer wrote it (show it as text)")
    state: str
    agent: str | None
    started_at: datetime
    last_at: datetime


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
    conversations: list[CustomerConversation] = Field(
        default_factory=list, description="chats, mail threads and messaging conversations, newest first")


class NoteBody(StrictBody):
    body: str = Field(min_length=1, max_length=10_000)


class NoteAdded(BaseModel):
    note_id: int


class NotVisitedQuery(StrictBody):
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


# -- handlers ------------------------------------------------------------------------------


async def find_customers(req: ApiRequest[None, CustomerQuery]) -> CustomerList:
    rows = await query(search_customers(db(req.app), req.query.q, limit=req.query.limit))
    return CustomerList(customers=[CustomerItem(**r) for r in rows])


async def customer_page(req: ApiRequest[None, None]) -> CustomerPage:
    cid = req.match_info["customer_id"]
    pool = db(req.app)
    view = await query(customer_view(pool, cid, last=50))
    if view is None:
        raise ApiError(404, "unknown_customer", f"no customer {cid!r}")
    recs = await query(customer_recordings(pool, cid))
    # Recordings follow their own scope (an agent's own calls', a supervisor's
    # team's), whoever may read the customer: the rest are not even named.
    ids = {r["recording_id"] for r in recs} | {recording_id(i) for t in view["tickets"] for i in t["recording_ids"]}
    seen = await query(rec_store.visible(pool, ids - {None}, scope_of(req.principal)))
    tickets = [{**t, "recording_ids": [i for i in t["recording_ids"] if recording_id(i) in seen]}
               for t in view["tickets"]]
    talks = await query(customer_conversations(pool, cid, limit=50))
    return CustomerPage(**{**view, "tickets": tickets, "recordings": [r for r in recs if r["recording_id"] in seen],
                           "conversations": talks})


async def customer_note(req: ApiRequest[NoteBody, None]) -> NoteAdded:
    cid = req.match_info["customer_id"]
    pool = db(req.app)
    if not await query(pool.fetchval("SELECT true FROM customers WHERE customer_id = $1", cid)):
        raise ApiError(404, "unknown_customer", f"no customer {cid!r}")
    return NoteAdded(note_id=await query(add_note(pool, cid, actor_of(req), req.body.body)))


async def not_visited(req: ApiRequest[None, NotVisitedQuery]) -> NotVisitedList:
    q = req.query
    rows = await query(ticket_store.not_visited_lately(db(req.app), since=timedelta(days=q.days), region=q.region,
                                                       limit=q.limit))
    return NotVisitedList(customers=[NotVisitedItem(**r) for r in rows])


# -- wiring ----------------------------------------------------------------------------------


def setup_customer_routes(app: web.Application) -> None:
    """The customer routes. After ``setup_auth`` (its pool)."""
    api = setup_registry(app)
    roles = CRM_ROLES
    c = ("customers",)
    api.add("GET", "/api/customers", find_customers, summary="Find customers by id, number or name", roles=roles,
            query=CustomerQuery, response=CustomerList, tags=c)
    api.add("GET", "/api/customers/not-visited", not_visited, summary="Customers without a successful visit lately",
            roles=roles, query=NotVisitedQuery, response=NotVisitedList, tags=c,
            description="Never visited first; leaves out customers with a live site_visit ticket.")
    api.add("GET", "/api/customers/{customer_id}", customer_page, summary="The customer page", roles=roles,
            response=CustomerPage, tags=c,
            description="Profile, numbers, addresses, tags, notes, recent calls, tickets, recordings, and "
                        "conversations (chats, mail threads, messaging) by the customer's addresses and numbers.")
    api.add("POST", "/api/customers/{customer_id}/notes", customer_note, summary="Add a note to a customer",
            roles=roles, body=NoteBody, response=NoteAdded, status=201, tags=c)
