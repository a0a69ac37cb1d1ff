"""Omnichannel routes: an agent's open tasks, and closing one with a disposition
(docs/api.md, "Tasks"). The service itself (``OMNI``) is the in-process entry point
channels file tasks through (omni/service.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from acd.routing_shell import ACD
from api.client_address import client_address, networks
from api.errors import ApiError, ErrorDetail
from api.registry import ApiRequest, setup_registry
from api.standby import standby_error
from api.static_files import StaticFiles
from cti.daemon import CORE
from cti.ha import HA, run_while_leading
from omni.chat import BODY_MAX, Chat, ChatError
from omni.canned import setup_canned
from omni.chat_service import ChatService
from omni.service import DISPOSITION_MAX, NotYourTask, OmniService, TaskError

log = structlog.get_logger(__name__)

CHAT = web.AppKey("omni_chat", ChatService)
_STATIC = StaticFiles(Path(__file__).resolve().parents[1] / "api" / "static" / "chat",
                      allowed=frozenset({"widget.js", "widget.css", "index.html"}))
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'")

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
    queued_at: float | None = None      # when a transfer or an overflow moved it to its queue


class TaskList(BaseModel):
    tasks: list[TaskItem]


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str = Field(min_length=1, max_length=DISPOSITION_MAX, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$")


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$",
                              description="a queue of the task's channel: it waits there, keeping its wait")
    agent: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$",
                              description="an agent of the ACD configuration: theirs at once")

    @model_validator(mode="after")
    def _one(self) -> "TransferBody":
        if (self.queue is None) == (self.agent is None):
            raise ValueError("give a queue or an agent, not both")
        return self


class TargetAgent(BaseModel):
    agent_id: str
    name: str
    state: str = Field(description="the agent's voice state now (available, on_call, not_ready, logged_out...)")
    load: int = Field(description="open tasks of the task's channel")
    capacity: int = Field(description="the agent's capacity in the task's channel")


class TransferTargets(BaseModel):
    task_id: str
    channel: str
    queues: list[str] = Field(description="the other queues of the task's channel")
    agents: list[TargetAgent] = Field(description="agents with capacity in the channel, but the one holding it")


class SayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=BODY_MAX)


class TypingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: bool


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: int = Field(0, ge=0, le=1_000_000)


class ChatLine(BaseModel):
    seq: int
    sender: str
    body: str
    at: float


class ChatLines(BaseModel):
    task_id: str
    status: str
    customer: str
    messages: list[ChatLine]


class Done(BaseModel):
    ok: bool = True


def _leading(app: web.Application) -> None:
    """Tasks live on the node that leads: a standby answers 503 ``standby`` (its list of
    tasks is empty, not the truth)."""
    ha = app.get(HA)
    if ha is not None and not app[OMNI].may_act():
        raise standby_error(ha)


def _chat_of(req: ApiRequest[Any, Any], *, own: bool) -> Chat:
    """The chat of the path's task, held by the asking agent (``own``) or any (staff)."""
    _leading(req.app)
    chat = req.app[CHAT].by_task.get(req.match_info["task_id"])
    if chat is None:
        raise ApiError(404, "no_chat", "no web chat with this task id")
    who = req.principal
    staff = who is not None and who.role in ("supervisor", "admin")
    if (own or not staff) and (who is None or not who.agent_id or chat.agent_id != who.agent_id):
        raise ApiError(403, "not_your_task", "this chat is not assigned to you")
    return chat


async def say(req: ApiRequest[SayBody, None]) -> ChatLine:
    chat = _chat_of(req, own=True)
    try:
        m = req.app[CHAT].say(chat, "agent", req.body.body, req.principal.agent_id if req.principal else None)
    except ChatError as exc:
        raise ApiError(409 if chat.status == "closed" else 422, "chat_refused", str(exc)) from None
    return ChatLine(seq=m.seq, sender=m.sender, body=m.body, at=m.at)


async def typing(req: ApiRequest[TypingBody, None]) -> Done:
    req.app[CHAT].agent_typing(_chat_of(req, own=True), req.body.on)
    return Done()


async def chat_messages(req: ApiRequest[None, MessagesQuery]) -> ChatLines:
    chat = _chat_of(req, own=False)
    return ChatLines(task_id=chat.task_id, status=chat.status, customer=chat.name,
                     messages=[ChatLine(seq=m.seq, sender=m.sender, body=m.body, at=m.at)
                               for m in chat.after(req.query.after)])


async def widget_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    return await _STATIC.response(request, name, {
        "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        # The widget is embedded in other sites' pages: its script and style may be loaded from them.
        "Cross-Origin-Resource-Policy": "cross-origin"})


async def transcript(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    text = await request.app[CHAT].transcript(token) if 16 <= len(token) <= 64 else None
    if text is None:
        raise web.HTTPNotFound(text="no such chat")
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={
        "Content-Disposition": 'attachment; filename="chat-transcript.txt"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def _service(req: ApiRequest[Any, Any]) -> OmniService:
    _leading(req.app)
    return req.app[OMNI]


def _item(t: Any) -> TaskItem:
    return TaskItem(task_id=t.task_id, channel=t.channel, queue=t.queue, customer_ref=t.customer_ref,
                    subject=t.subject, ref=t.ref, created_at=t.created_at, status=t.status, agent_id=t.agent_id,
                    assigned_at=t.assigned_at, closed_at=t.closed_at, disposition=t.disposition)


async def list_tasks(req: ApiRequest[None, None]) -> TaskList:
    who = req.principal
    agent = who.agent_id if who is not None and who.role == "agent" else None
    service = _service(req)
    if who is not None and who.role == "agent" and agent is None:
        return TaskList(tasks=[])
    return TaskList(tasks=[_item(t) for t in service.tasks_of(agent)])


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


def _may_transfer(req: ApiRequest[Any, Any], task: Any) -> None:
    who = req.principal
    staff = who is not None and who.role in ("supervisor", "admin")
    if not staff and (who is None or not who.agent_id or task.agent_id != who.agent_id):
        raise ApiError(403, "not_your_task", "only the agent holding a task (or a supervisor) transfers it")


async def transfer_task(req: ApiRequest[TransferBody, None]) -> TaskItem:
    who = req.principal
    service = _service(req)
    task = service.tasks.get(req.match_info["task_id"])
    if task is None:
        raise ApiError(404, "no_open_task", "no open task with this id")
    _may_transfer(req, task)
    b = req.body
    try:
        moved = service.transfer(task.task_id, b.queue) if b.queue is not None else service.take(task.task_id, b.agent)
    except TaskError as exc:
        field = "body.queue" if b.queue is not None else "body.agent"
        raise ApiError(422, "invalid_body", str(exc), [ErrorDetail(field=field, message=str(exc),
                                                                   type="value_error")]) from None
    log.info("omni task transferred", task_id=task.task_id, queue=b.queue, agent=b.agent,
             actor=who.name if who else None)
    return _item(moved)


async def transfer_targets(req: ApiRequest[None, None]) -> TransferTargets:
    service = _service(req)
    task = service.tasks.get(req.match_info["task_id"])
    if task is None or service.router is None:
        raise ApiError(404, "no_open_task", "no open task with this id")
    _may_transfer(req, task)
    acd = service.acd
    ch = task.channel
    return TransferTargets(
        task_id=task.task_id, channel=ch,
        queues=[q.id for q in acd.config.queues if q.channel == ch and q.id != task.queue],
        agents=[TargetAgent(agent_id=a.id, name=a.name, state=acd.router.state_of(a.id),
                            load=service.router.load(a.id)[ch], capacity=a.capacity.of(ch))
                for a in acd.config.agents if a.capacity.of(ch) > 0 and a.id != task.agent_id])


def task_queues(acd: Any) -> list[str]:
    """The ids of the task queues (chat, e-mail, message) of the configuration in force."""
    return [] if acd is None else [q.id for q in acd.config.queues if q.channel != "voice"]


def chat_queues(acd: Any) -> list[str]:
    """The ids of the chat queues of the ACD's configuration in force, in its order."""
    return [] if acd is None else [q.id for q in acd.config.queues if q.channel == "chat"]


def setup_omni(app: web.Application) -> OmniService:
    """The omnichannel service (``app[OMNI]``) and its routes. After ``setup_acd`` and
    ``setup_ws`` (task offers go out on the hub) and ``setup_wallboard`` (its task
    queue figures come from here).

    In a high-availability pair (``app[HA]``) the service and the chat's queue ticker
    run only while this node leads, started after the ACD on each takeover (the
    waiting and held tasks are read back from PostgreSQL), stopped on step-down; on a
    standby the task routes and the chat socket answer 503."""
    from api.wallboard_service import WALLBOARD
    from api.ws import WS

    core = app[CORE]
    acd = app.get(ACD)
    ha = app.get(HA)
    service = OmniService(core, acd)
    app[OMNI] = service
    if ha is not None:
        service.may_act = ha.may_act
    if WALLBOARD in app:
        app[WALLBOARD].task_stats = service.queue_stats
    core.health_parts["omni"] = service.health

    trusted = networks(core.settings.http_trusted_proxies)

    def address_of(request: web.Request) -> str:
        return client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)

    chat_queue = next(iter(chat_queues(acd)), None)
    chat = ChatService(service, chat_queue or "", address_of, queues=lambda: chat_queues(acd))
    app[CHAT] = chat

    async def start(epoch: int = 0) -> None:
        await service.start()
        await chat.start()

    async def stop() -> None:
        await chat.stop()
        await service.stop()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hub = app.get(WS)
        if hub is not None:
            service.push = hub.push
        if ha is None:
            await start()
        try:
            yield
        finally:
            if ha is None:
                await stop()

    app.cleanup_ctx.append(ctx)
    if ha is not None:
        # Registered after the ACD's: on a takeover the ACD runs before tasks are routed.
        run_while_leading(app, ha, start, stop)
    api = setup_registry(app)
    tags = ("tasks",)
    api.add("GET", "/api/tasks", list_tasks, summary="Open tasks (chat, e-mail, message): an agent's own; "
            "every one for supervisors and admins", roles=AGENT_OR_STAFF, response=TaskList, tags=tags)
    api.add("POST", "/api/tasks/{task_id}/close", close_task, summary="Close the agent's own task with a disposition",
            description="Frees the agent's slot in the task's channel; the best waiting task it may take "
                        "follows at once (pushed as task.offered on /ws).",
            roles=frozenset({"agent"}), body=CloseBody, response=TaskItem, tags=tags)
    api.add("POST", "/api/tasks/{task_id}/transfer", transfer_task, summary="Transfer a task to a queue or an agent",
            description="To a queue of its channel: it waits there keeping its wait (the router gives it to the "
                        "least-loaded eligible member other than its agent when there is one); to an agent: "
                        "theirs at once, even over their capacity. The agent holding it, or a supervisor or "
                        "admin. task.released goes to the agent it leaves, task.offered to the next.",
            roles=AGENT_OR_STAFF, body=TransferBody, response=TaskItem, tags=tags)
    api.add("GET", "/api/tasks/{task_id}/transfer-targets", transfer_targets,
            summary="Where a task may be transferred: its channel's other queues, agents with capacity there",
            roles=AGENT_OR_STAFF, response=TransferTargets, tags=tags)
    setup_canned(app, lambda: task_queues(app.get(ACD)))
    api.add("POST", "/api/tasks/{task_id}/messages", say, summary="Send a message in the agent's own web chat",
            description="Stored (chat_messages) and sent to the customer's widget; numbered by the chat.",
            roles=frozenset({"agent"}), body=SayBody, response=ChatLine, status=201, tags=tags)
    api.add("POST", "/api/tasks/{task_id}/typing", typing, summary="The agent is (no longer) typing in its chat",
            roles=frozenset({"agent"}), body=TypingBody, response=Done, tags=tags)
    api.add("GET", "/api/tasks/{task_id}/messages", chat_messages,
            summary="A web chat's messages after seq `after` (the agent's own; any for supervisors and admins)",
            roles=AGENT_OR_STAFF, query=MessagesQuery, response=ChatLines, tags=tags)
    if chat_queue is not None:
        app.router.add_get("/chat/ws", chat.serve)
        app.router.add_get("/chat/transcript/{token}", transcript)
        app.router.add_get("/chat/", widget_file)
        app.router.add_get("/chat/{name}", widget_file)
        api.document("GET", "/chat/ws", summary="WebSocket: the customer's web chat (unauthenticated; see "
                     "docs/omnichannel.md)", roles=None, operation_id="chat_websocket", status=101,
                     content_type=None, tags=("chat",),
                     description="First frame start {name, email, question} or resume {token, last_seq}; "
                                 "rate-limited per client address; frames of at most 8 KiB.")
        api.document("GET", "/chat/transcript/{token}", summary="A web chat's transcript (text/plain, download)",
                      roles=None, operation_id="chat_transcript", content_type="text/plain", tags=("chat",))
    return service
