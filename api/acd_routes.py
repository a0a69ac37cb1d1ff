"""ACD routes: the routing configuration (read, versions, replace live), the
live picture (agents, waiting calls, queues) and agents' own state requests.

Roles: reading is for supervisors and admins; replacing the configuration
for admins; an agent changes their own state, a supervisor their team's
agents' and an admin anyone's (audited in ``supervisor_actions``).
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from acd.config import AcdConfig
from acd.core import AcdInputError, AgentStateError
from acd.routing_shell import ACD, AcdService
from api import audit
from api.auth import ADMIN, EVERYONE, STAFF
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry


class ConfigReply(BaseModel):
    version: int | None = Field(description="the stored version in force (None without a database)")
    document: dict[str, Any]


class ConfigSaved(BaseModel):
    version: int
    calls_kept: int = Field(description="waiting calls and callbacks carried into the new configuration")
    queue_gone: int = Field(description="of them, calls whose queue is gone: now in the default queue")
    offers_carried: int = Field(description="offers ringing at the change, carried as the agent's call")


class VersionItem(BaseModel):
    version: int
    source: str
    created_at: datetime


class VersionList(BaseModel):
    versions: list[VersionItem]


class AgentItem(BaseModel):
    agent_id: str
    name: str
    state: str
    reason: str
    since: float
    call_id: str | None
    queue_id: str | None
    pending: str | None
    wrapup_ends_at: float | None = Field(None, description="in a timed wrap-up: when it ends (epoch seconds)")
    wrapup_max_at: float | None = Field(None, description="the latest extend_wrapup can reach (None: none)")
    disposition_due: str | None = Field(None, description="the call whose disposition the queue requires first")


class WaitingItem(BaseModel):
    call_id: str
    queue_id: str
    status: str
    priority: int
    waited_s: float
    step: int
    offered_to: str | None
    callback: bool


class QueueItem(BaseModel):
    queue_id: str
    waiting: int
    ringing: int
    longest_wait_s: float
    offered: int
    answered: int
    abandoned: int
    service_level: float | None
    target: float
    agents_logged_in: int
    agents_available: int


class AcdState(BaseModel):
    config_version: int | None
    agents: list[AgentItem]
    waiting: list[WaitingItem]
    queues: list[QueueItem]


class AgentStateBody(BaseModel):
    action: Literal["login", "logout", "ready", "not_ready", "end_wrapup", "extend_wrapup"] = Field(
        description="extend_wrapup: more wrap-up time, when the queue allows (wrapup_max_s)")
    reason: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9 _.-]*$")


_ACTIONS = {"login": "login", "logout": "logout", "ready": "set_ready", "not_ready": "set_not_ready",
            "end_wrapup": "end_wrapup", "extend_wrapup": "extend_wrapup"}


def _service(req: ApiRequest[Any, Any]) -> AcdService:
    service = req.app.get(ACD)
    if service is None:
        raise ApiError(404, "acd_disabled", "the ACD is not running (no acd_config)")
    return service


async def get_config(req: ApiRequest[None, None]) -> ConfigReply:
    s = _service(req)
    return ConfigReply(version=s.config_version, document=s.config.model_dump(mode="json"))


async def put_config(req: ApiRequest[AcdConfig, None]) -> ConfigSaved:
    s = _service(req)
    principal = req.principal
    version = await s.save_config_version(req.body.model_dump(mode="json"),
                                          f"api:{principal.name if principal else '?'}")
    if version is None:
        raise ApiError(409, "no_database", "configuration versions need the database")
    result = s.reconfigure(req.body, version)
    return ConfigSaved(version=version, **result)


async def list_versions(req: ApiRequest[None, None]) -> VersionList:
    found = await _service(req).config_versions()
    return VersionList(versions=[VersionItem(version=v.version, source=v.source, created_at=v.created_at)
                                 for v in found])


async def get_state(req: ApiRequest[None, None]) -> AcdState:
    return acd_state(_service(req), time.time())


def acd_state(s: AcdService, now: float) -> AcdState:
    """The routing picture at ``now``: what ``GET /api/acd/state`` answers (the leader also
    publishes it with each wallboard, for the API nodes: ``api.node_reads``)."""
    r = s.router
    agents = []
    for a in s.config.agents:
        v = r.agent_state(a.id)
        agents.append(AgentItem(agent_id=a.id, name=a.name, state=v.state, reason=v.reason, since=v.since,
                                call_id=v.call_id, queue_id=v.queue_id, pending=v.pending,
                                wrapup_ends_at=v.wrapup_ends_at, wrapup_max_at=v.wrapup_max_at,
                                disposition_due=v.disposition_due))
    waiting = [WaitingItem(call_id=w.call_id, queue_id=w.queue_id, status=w.status, priority=w.priority,
                           waited_s=round(now - w.arrived_at, 3), step=w.step, offered_to=w.offered_to,
                           callback=w.callback) for w in r.waiting_calls()]
    queues = []
    for q in s.config.queues:
        st = r.queue_stats(q.id, now)
        queues.append(QueueItem(queue_id=q.id, waiting=st.waiting, ringing=st.ringing,
                                longest_wait_s=round(st.longest_wait_s, 3), offered=st.offered,
                                answered=st.answered, abandoned=st.abandoned, service_level=st.service_level,
                                target=st.sl_target, agents_logged_in=st.agents_eligible,
                                agents_available=st.agents_available))
    return AcdState(config_version=s.config_version, agents=agents, waiting=waiting, queues=queues)


def _label(v: Any) -> str:
    return v.state + (f" ({v.reason})" if v.reason else "") + (f" (pending: {v.pending})" if v.pending else "")


async def set_agent_state(req: ApiRequest[AgentStateBody, None]) -> AgentItem:
    """Who may: the route's agent scope (the agent; a supervisor of their team or an
    admin, audited with the state before and after)."""
    s = _service(req)
    agent_id = req.match_info["agent_id"]
    if agent_id not in {a.id for a in s.config.agents}:
        raise ApiError(404, "unknown_agent", f"no agent {agent_id!r}")
    body = req.body
    other = req.principal is not None and req.over_agent == "other"
    details: dict[str, Any] = {"request": body.action, "reason": body.reason,
                               "from": _label(s.router.agent_state(agent_id))}

    async def refuse(status: int, error_id: str, message: str) -> ApiError:
        if other:
            assert req.principal is not None
            await audit.record(req.app, req.principal, "agent_state", agent_id=agent_id, details=details,
                               result="refused", error=message)
        return ApiError(status, error_id, message)

    if body.action == "not_ready" and not body.reason:
        raise await refuse(422, "invalid_body", "not_ready needs a reason (e.g. break, lunch, training)")
    try:
        s.agent_request(agent_id, _ACTIONS[body.action], body.reason)
    except AgentStateError as exc:
        raise await refuse(409, "agent_state", str(exc)) from None
    except AcdInputError as exc:
        raise await refuse(422, "invalid_body", str(exc)) from None
    v = s.router.agent_state(agent_id)
    if other:
        assert req.principal is not None
        await audit.record(req.app, req.principal, "agent_state", agent_id=agent_id,
                           details={**details, "to": _label(v)})
    name = s.config.agent(agent_id).name
    return AgentItem(agent_id=agent_id, name=name, state=v.state, reason=v.reason, since=v.since,
                     call_id=v.call_id, queue_id=v.queue_id, pending=v.pending, wrapup_ends_at=v.wrapup_ends_at,
                     wrapup_max_at=v.wrapup_max_at, disposition_due=v.disposition_due)


def setup_acd_routes(app: web.Application) -> None:
    api = setup_registry(app)
    tags = ("acd",)
    api.add("GET", "/api/acd/config", get_config, summary="The routing configuration in force", roles=STAFF,
            response=ConfigReply, tags=tags)
    api.add("PUT", "/api/acd/config", put_config, summary="Replace the routing configuration, live",
            description="Validated whole (422 names every bad entry), stored as a new version, put in force "
                        "keeping every waiting call's place (docs/acd.md, 'Configuration versions').",
            roles=ADMIN, body=AcdConfig, response=ConfigSaved, tags=tags, body_max=2 * 1024 * 1024)
    api.add("GET", "/api/acd/config/versions", list_versions, summary="Stored routing configurations, newest first",
            roles=STAFF, response=VersionList, tags=tags)
    api.add("GET", "/api/acd/state", get_state, summary="Agents, waiting calls and queues, live", roles=STAFF,
            response=AcdState, tags=tags)
    api.add("POST", "/api/acd/agents/{agent_id}/state", set_agent_state, summary="An agent's state request",
            description="Agents change their own state; supervisors their team's agents' and admins anyone's, "
                        "each such change audited (GET /api/supervisor/actions).",
            roles=EVERYONE, body=AgentStateBody, response=AgentItem, tags=tags, agent_scope="team")
