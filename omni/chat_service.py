"""Web chat in the daemon: the customer's WebSocket (``/chat/ws``, unauthenticated,
rate- and size-limited), the agent's side over the API and the hub, transcripts.

A customer's ``start`` files a chat task into the chat queue it names (the widget's
``data-queue``; one of the chat queues of the ACD configuration, the first by default) (``OmniService.file_task``, the chat's
token as its ``ref``) and gets the token back: with it the widget resumes after a
reconnect (``resume`` with the last ``seq`` it has: the messages after it come
first, then live ones) and downloads the transcript (``/chat/transcript/{token}``).
While the chat waits, the widget is told its place and the estimated wait
(``queue`` frames, at start and every ``QUEUE_EVERY`` seconds). The agent the
router gives it sees ``task.offered`` on /ws and then ``chat.message`` and
``chat.typing``; it answers through ``POST /api/tasks/{task_id}/messages``.
Messages are numbered by the chat (``omni.chat.Chat``) and stored in
``chat_messages`` in that order. When an agent closes a chat whose customer asked for
it (``start``'s ``transcript``), the transcript goes to their address through
``mail_transcript`` (``MailService.send_transcript``, wired by the composition root
when mail goes out; None: never), and the ``closed`` frame says so (``mail``).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Awaitable, Callable, Sequence

import structlog
from aiohttp import WSMsgType, web

from omni import store
from omni.chat import FRAME_MAX, Chat, ChatError, ChatMessage, RateLimit, parse_client
from omni.service import OmniService
from omni.tasks import Task

log = structlog.get_logger(__name__)

QUEUE_EVERY = 5.0
FIRST_FRAME_S = 15.0
MAX_CHATS = 5000            # chats kept in memory (closed ones dropped first)


class ChatService:
    def __init__(self, omni: OmniService, queue: str, address_of: Callable[[web.Request], str],
                 queues: Callable[[], Sequence[str]] | None = None) -> None:
        self.omni = omni
        self.queue = queue                          # the chat queue new chats go to unless they name one
        self.queues = queues or (lambda: [queue])   # the chat queues a widget may name
        self.address_of = address_of
        self.chats: dict[str, Chat] = {}            # token -> chat
        self.by_task: dict[str, Chat] = {}
        self.sockets: dict[str, set[web.WebSocketResponse]] = {}
        self.connects = RateLimit(rate=0.5, burst=20)       # per client address
        self.starts = RateLimit(rate=0.05, burst=5)         # new chats per client address
        self.sends = RateLimit(rate=1.0, burst=8)           # messages per chat
        self._ticker: asyncio.Task[None] | None = None
        # (address, task id, transcript) -> whether the relay took it
        self.mail_transcript: Callable[[str, str, str], Awaitable[bool]] | None = None
        self._mailing: set[asyncio.Future[bool]] = set()
        omni.listeners.append(self._task_changed)

    async def start(self) -> None:
        """After ``OmniService.start``: the open chats are rebuilt from ``chat_messages``
        (a restart, or a takeover: what this node held before may be stale), so a widget
        resumes by ``seq`` and the agent answers as before."""
        self.chats.clear()
        self.by_task.clear()
        pool = self.omni.core.pool
        open_chats = [t for t in self.omni.tasks.values() if t.channel == "chat"]
        if pool is not None and open_chats:
            try:
                async with asyncio.timeout(10):
                    found = await store.messages_of(pool, [t.task_id for t in open_chats])
            except Exception as exc:    # the widgets' resumes then read them one by one
                log.warning("chats not rebuilt", error=type(exc).__name__)
            else:
                for t in open_chats:
                    self._keep(_rebuilt(t, found.get(t.task_id, [])))
                log.info("chats rebuilt", chats=len(open_chats))
        self._ticker = asyncio.create_task(self._tell_queue(), name="chat-queue")

    def _keep(self, chat: Chat) -> Chat:
        self.chats[chat.token] = chat
        self.by_task[chat.task_id] = chat
        self._trim()
        return chat

    async def _load(self, token: str) -> Chat | None:
        """A chat no longer (or not yet) in memory, from the database: its messages, and
        its state as the task router has it (closed when the task is not open)."""
        pool = self.omni.core.pool
        if pool is None:
            return None
        task = await store.by_ref(pool, "chat", token)
        if task is None:
            return None
        task = self.omni.tasks.get(task.task_id, task)
        return _rebuilt(task, await store.messages(pool, task.task_id))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for conns in list(self.sockets.values()):
            for ws in list(conns):
                await ws.close(code=1001, message=b"server shutting down")
        await asyncio.gather(*self._mailing, return_exceptions=True)    # each bounded by the send timeout

    # -- the customer's socket ----------------------------------------------------

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if not self.omni.may_act():
            raise web.HTTPServiceUnavailable(text="this node does not lead: chats are served by the other one",
                                             headers={"Retry-After": "1"})
        address = self.address_of(request)
        if not self.connects.allow(address, time.monotonic()):
            raise web.HTTPTooManyRequests(text="too many connections: wait a little", headers={"Retry-After": "10"})
        ws = web.WebSocketResponse(max_msg_size=FRAME_MAX, heartbeat=30.0)
        await ws.prepare(request)
        chat: Chat | None = None
        try:
            async with asyncio.timeout(FIRST_FRAME_S):
                first = await ws.receive()
            chat = await self._open(ws, first, address)
            if chat is None:
                return ws
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await self._error(ws, "text frames only")
                    continue
                try:
                    cm = parse_client(msg.data)
                    if cm.kind == "message":
                        if not self.sends.allow(chat.token, time.monotonic()):
                            raise ChatError("too many messages: wait a second and send again")
                        self.say(chat, "customer", cm.body)
                    elif cm.kind == "typing":
                        if chat.agent_id is not None:
                            self.omni.push({"type": "chat.typing", "task_id": chat.task_id, "who": "customer",
                                            "on": cm.on}, frozenset({chat.agent_id}))
                    elif cm.kind == "leave":
                        self.leave(chat)
                    else:
                        raise ChatError("this chat has started: send message, typing or leave")
                except ChatError as exc:
                    await self._error(ws, str(exc))
        except TimeoutError:
            await ws.close(code=4408, message=b"no start or resume in time")
        finally:
            if chat is not None:
                self.sockets.get(chat.token, set()).discard(ws)
        return ws

    async def _open(self, ws: web.WebSocketResponse, first: Any, address: str) -> Chat | None:
        try:
            if first.type != WSMsgType.TEXT:
                raise ChatError("send a start or resume frame first")
            cm = parse_client(first.data)
            if cm.kind == "start":
                if not self.starts.allow(address, time.monotonic()):
                    raise ChatError("too many new chats from here: wait a minute")
                chat = await self._start_chat(cm.name, cm.email, cm.body, self.queue_for(cm.queue),
                                              transcript=cm.transcript)
                last = 0
            elif cm.kind == "resume":
                chat = self.chats.get(cm.token)
                if chat is None:    # from before a restart or a takeover, or trimmed
                    loaded = await self._load(cm.token)
                    if loaded is None:
                        raise ChatError("no such chat (it may have ended long ago): start a new one")
                    chat = self.chats.get(cm.token) or self._keep(loaded)
                last = cm.last_seq
            else:
                raise ChatError("send a start or resume frame first")
        except ChatError as exc:
            await self._error(ws, str(exc))
            await ws.close(code=4400, message=b"bad first frame")
            return None
        self.sockets.setdefault(chat.token, set()).add(ws)
        await ws.send_json({"type": "started", "token": chat.token, "task_id": chat.task_id, "status": chat.status})
        for m in chat.after(last):
            await ws.send_json(m.public())
        if chat.status == "waiting":
            await ws.send_json(self._queue_frame(chat))
        elif chat.status == "closed":
            await ws.send_json({"type": "closed", "transcript": f"/chat/transcript/{chat.token}"})
        return chat

    def queue_for(self, asked: str | None) -> str:
        """The chat queue a start goes to: the one the widget names, which must be a chat
        queue of the configuration, or the default. Raises ``ChatError``."""
        if asked is None:
            return self.queue
        if asked not in self.queues():
            raise ChatError(f"queue {asked!r} is no chat queue here")
        return asked

    async def _start_chat(self, name: str, email: str, question: str, queue: str | None = None, *,
                          transcript: bool = False) -> Chat:
        token = secrets.token_urlsafe(24)
        task_id = await self.omni.file_task("chat", queue or self.queue, email, question[:200], token)
        chat = Chat(token, task_id, name, email, mail_transcript=transcript)
        self.chats[token] = chat
        self.by_task[task_id] = chat
        self._trim()
        self.say(chat, "customer", question)
        # The router may have given it to an agent already, before the chat existed here.
        task = self.omni.tasks.get(task_id)
        if task is not None and task.status == "assigned":
            self._task_changed("offered", task)
        return chat

    # -- both sides -------------------------------------------------------------

    def say(self, chat: Chat, sender: str, body: str, agent_id: str | None = None) -> ChatMessage:
        """Add a message to the chat: stored, sent to the customer's sockets and to the agent."""
        m = chat.add(sender, body, time.time(), agent_id)
        self.omni.write(lambda p: store.add_message(p, chat.task_id, m.seq, m.sender, m.body, m.at, m.agent_id))
        self._to_customer(chat, m.public())
        if chat.agent_id is not None:
            self.omni.push(_agent_frame(chat, m), frozenset({chat.agent_id}))
        return m

    def leave(self, chat: Chat) -> None:
        if chat.status == "waiting":
            self.omni.abandon(chat.task_id)
        elif chat.status == "active":
            self.say(chat, "system", f"{chat.name} left the chat")

    def agent_typing(self, chat: Chat, on: bool) -> None:
        self._to_customer(chat, {"type": "typing", "who": "agent", "on": on})

    def _task_changed(self, what: str, task: Task) -> None:
        chat = self.by_task.get(task.task_id)
        if chat is None:
            return
        if what == "offered" and chat.status == "waiting":
            chat.status, chat.agent_id = "active", task.agent_id
            self._to_customer(chat, {"type": "agent", "status": "active"})
            for m in chat.messages:     # the agent gets the conversation so far
                self.omni.push(_agent_frame(chat, m), frozenset({task.agent_id or ""}))
        elif what == "released" and chat.status == "active":    # a transfer: the next agent follows
            self.say(chat, "system", "You are being transferred to another agent.")
            chat.status, chat.agent_id = "waiting", None
            self._to_customer(chat, self._queue_frame(chat))
        elif what in ("closed", "abandoned") and chat.status != "closed":
            # Only a chat an agent had and closed is mailed: a typed address alone sends nothing.
            mail = what == "closed" and chat.status == "active" and chat.mail_transcript \
                and self.mail_transcript is not None
            chat.status = "closed"
            self.say(chat, "system", "The chat has ended." if what == "closed" else "You left the queue.")
            if mail:
                self._send_transcript(chat)
            self._to_customer(chat, {"type": "closed", "transcript": f"/chat/transcript/{chat.token}", "mail": mail})

    def _send_transcript(self, chat: Chat) -> None:
        assert self.mail_transcript is not None
        job = asyncio.ensure_future(self.mail_transcript(chat.email, chat.task_id, chat.transcript()))
        self._mailing.add(job)
        job.add_done_callback(self._mailing.discard)

    def _to_customer(self, chat: Chat, body: dict[str, Any]) -> None:
        for ws in list(self.sockets.get(chat.token, ())):
            if not ws.closed:
                asyncio.ensure_future(_send(ws, body))

    def _queue_frame(self, chat: Chat) -> dict[str, Any]:
        pos, wait = self.omni.waiting_info(chat.task_id)
        return {"type": "queue", "position": pos, "wait_s": None if wait is None else round(wait)}

    async def _tell_queue(self) -> None:
        while True:
            await asyncio.sleep(QUEUE_EVERY)
            for chat in list(self.chats.values()):
                if chat.status == "waiting" and self.sockets.get(chat.token):
                    self._to_customer(chat, self._queue_frame(chat))

    def _trim(self) -> None:
        if len(self.chats) <= MAX_CHATS:
            return
        for token, chat in list(self.chats.items()):
            if chat.status == "closed" and not self.sockets.get(token):
                del self.chats[token]
                self.by_task.pop(chat.task_id, None)
                if len(self.chats) <= MAX_CHATS:
                    return

    async def transcript(self, token: str) -> str | None:
        """The transcript of the chat with this token (from the database when it is no
        longer in memory); None when there is no such chat."""
        chat = self.chats.get(token) or await self._load(token)
        return None if chat is None else chat.transcript()

    @staticmethod
    async def _error(ws: web.WebSocketResponse, reason: str) -> None:
        if not ws.closed:
            await ws.send_json({"type": "error", "reason": reason})


def _rebuilt(task: Task, messages: list[dict[str, Any]]) -> Chat:
    """A chat rebuilt from its task and stored messages (its seq numbering goes on). The
    customer's name is not stored: their address stands for it."""
    status = {"waiting": "waiting", "assigned": "active"}.get(task.status, "closed")
    chat = Chat(task.ref, task.task_id, task.customer_ref, task.customer_ref, status=status,
                agent_id=task.agent_id if status == "active" else None)
    for m in messages:
        # A gap (a write lost before a crash) is filled, so that every later seq keeps its
        # place and the numbering goes on after the last one stored.
        while len(chat.messages) + 1 < m["seq"]:
            chat.messages.append(ChatMessage(len(chat.messages) + 1, "system", "(a message was not kept)", m["at"]))
        if m["seq"] == len(chat.messages) + 1:
            chat.messages.append(ChatMessage(m["seq"], m["sender"], m["body"], m["at"], m["agent_id"]))
    return chat


def _agent_frame(chat: Chat, m: ChatMessage) -> dict[str, Any]:
    """A chat message as the agent's desktop gets it on /ws."""
    return {**m.public(), "type": "chat.message", "task_id": chat.task_id, "customer": chat.name}


async def _send(ws: web.WebSocketResponse, body: dict[str, Any]) -> None:
    try:
        await ws.send_json(body)
    except (ConnectionError, RuntimeError):
        pass
