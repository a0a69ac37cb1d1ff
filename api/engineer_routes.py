"""Field engineers over the API: the list by region, and creating or changing one.

Routes (docs/tickets.md, "API")::

    GET   /api/engineers                        engineers (by region)
    PUT   /api/engineers/{id}                   create or change an engineer (admins)

A dispatch names one of them (``crm.engineers.check_dispatch``, in ``api.ticket_routes``).
"""
from __future__ import annotations

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import ADMIN
from api.crm_common import CRM_ROLES, Id, StrictBody, actor_of, invalid_field
from api.db import db, query
from api.registry import ApiRequest, setup_registry
from crm import engineers as engineer_store
from crm.tickets import InvalidCommand

log = structlog.get_logger(__name__)

# -- models ------------------------------------------------------------------------------


class EngineerView(BaseModel):
    engineer_id: str
    name: str
    region: str
    contact: str = Field(description="where notifications go (e-mail, number, URL: the sender's meaning)")
    active: bool


class EngineerList(BaseModel):
    engineers: list[EngineerView]


class EngineerQuery(StrictBody):
    region: str | None = None
    active: bool | None = None


class EngineerBody(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    region: str = Id
    contact: str = Field("", max_length=500)
    active: bool = True


# -- handlers ------------------------------------------------------------------------------


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
        raise invalid_field(exc) from None
    log.info("engineer saved", engineer_id=e.engineer_id, region=e.region, active=e.active, created=created,
             actor=actor_of(req))
    return EngineerView(**engineer_store.as_dict(e))


# -- wiring ----------------------------------------------------------------------------------


def setup_engineer_routes(app: web.Application) -> None:
    """The engineer routes. After ``setup_auth`` (its pool)."""
    api = setup_registry(app)
    api.add("GET", "/api/engineers", list_engineers, summary="Field engineers, by region", roles=CRM_ROLES,
            query=EngineerQuery, response=EngineerList, tags=("engineers",))
    api.add("PUT", "/api/engineers/{engineer_id}", save_engineer, summary="Create or change an engineer",
            roles=ADMIN, body=EngineerBody, response=EngineerView, tags=("engineers",))
