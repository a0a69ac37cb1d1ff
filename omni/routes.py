"""Omnichannel routes: an agent's open tasks, and closing one with a disposition
(docs/api.md, "Tasks"). The service itself (``OMNI``) is the in-process entry point
channels file tasks through (omni/service.py)."""
from __future__ import annotations

from typing import Any, AsyncIterator

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from acd.routing_shell import ACD
from api.errors import ApiError
from api.registry import ApiRequest, setup_registry
from cti.daemon import CORE
from omni.service import DISPOSITION_MAX, NotYourTask, OmniService, TaskError

OMNI = web.AppKey("omni", OmniService)
AGENT_OR_STAFF = frozenset({"agent", "supervisor", "admin"})


class TaskItem(BaseModel):
    task_id: str
    channel: str
    queue: str
    customer_ref: str
    subject: str
    ref: str
    created_at: float
    status: str
    agent_id: str | None
    assigned_at: float | None
    closed_at: float | None
    disposition: str | None


class TaskList(BaseModel):
    tasks: list[TaskItem]


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str = Field(min_length=1, max_length=DISPOSITION_MAX, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$")


def _service(req: ApiRequest[Any, Any]) -> OmniService:
    return req.app[OMNI]


def _item(t: Any) -> TaskItem:
    return TaskItem(task_id=t.task_id, channel=t.channel, queue=t.queue, customer_ref=t.customer_ref,
                    subject=t.subject, ref=t.ref, created_at=t.created_at, status=t.status, agent_id=t.agent_id,
                    assigned_at=t.assigned_at, closed_at=t.closed_at, disposition=t.disposition)


async def list_tasks(req: ApiRequest[None, None]) -> TaskList:
    who = req.principal
    agent = who.agent_id if who is not None and who.role == "agent" else None
    if who is not None and who.role == "agent" and agent is None:
        return TaskList(tasks=[])
    return TaskList(tasks=[_item(t) for t in _service(req).tasks_of(agent)])


async def close_task(req: ApiRequest[CloseBody, None]) -> TaskItem:
    who = req.principal
    if who is None or not who.agent_id:
        raise ApiError(403, "not_an_agent", "only the agent holding a task closes it")
    try:
        return _item(_service(req).close_task(req.match_info["task_id"], who.agent_id, req.body.disposition))
    except NotYourTask as exc:
        raise ApiError(403, "not_your_task", str(exc)) from None
    except TaskError as exc:
        raise ApiError(404, "no_open_task", str(exc)) from None


def setup_omni(app: web.Application) -> OmniService:
    """The omnichannel service (``app[OMNI]``) and its routes. After ``setup_acd`` and
    ``setup_ws`` (task offers go out on the hub)."""
    from api.ws import WS

    core = app[CORE]
    acd = app.get(ACD)
    service = OmniService(core, acd)
    app[OMNI] = service
    core.health_parts["omni"] = service.health

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hub = app.get(WS)
        if hub is not None:
            service.push = hub.push
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)
    api = setup_registry(app)
    tags = ("tasks",)
    api.add("GET", "/api/tasks", list_tasks, summary="Open tasks (chat, e-mail, message): an agent's own; "
            "every one for supervisors and admins", roles=AGENT_OR_STAFF, response=TaskList, tags=tags)
    api.add("POST", "/api/tasks/{task_id}/close", close_task, summary="Close the agent's own task with a disposition",
            description="Frees the agent's slot in the task's channel; the best waiting task it may take "
                        "follows at once (pushed as task.offered on /ws).",
            roles=frozenset({"agent"}), body=CloseBody, response=TaskItem, tags=tags)
    return service
