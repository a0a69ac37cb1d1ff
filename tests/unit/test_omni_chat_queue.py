"""The widget names the chat queue its chats go to (``data-queue`` on the script tag, sent
as ``queue`` in the start frame): a chat queue of the ACD configuration is used, the first
one when none is named, and anything else is refused with a reason and files nothing."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acd.config import AcdConfig
from acd.routing_shell import AcdService
from cti.calls import CallModel
from cti.daemon import CORE, Core
from cti.events import Bus
from omni.chat import ChatError, parse_client
from omni.chat_service import ChatService
from omni.routes import chat_queues
from omni.service import OmniService
from tests.wireami import WireAmi

CONFIG = {"skills": ["billing"],
          "queues": [{"id": "billing"}, {"id": "webchat", "channel": "chat"}, {"id": "mail", "channel": "email"},
                     {"id": "vip-chat", "channel": "chat", "priority": 5}],
          "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                      "skills": {"billing": 5}, "queues": {"billing": {}, "webchat": {}, "vip-chat": {}, "mail": {}},
                      "capacity": {"chat": 2, "email": 1}}]}


def test_the_start_frame_may_name_a_queue():
    start = {"type": "start", "name": "Ada", "email": "ada@example.org", "question": "Hi"}
    assert parse_client(json.dumps(start)).queue is None
    assert parse_client(json.dumps({**start, "queue": "vip-chat"})).queue == "vip-chat"
    for bad in ("", "a b", "x" * 65, "-lead", "q\n", 7, ["webchat"]):
        with pytest.raises(ChatError, match="queue"):
            parse_client(json.dumps({**start, "queue": bad}))


async def _server():
    core = Core(SimpleNamespace(acd_default_queue="billing"), model=CallModel(), bus=Bus(),  # type: ignore[arg-type]
                ami=WireAmi())
    acd = AcdService(core, AcdConfig.model_validate(CONFIG))     # a4 logged out: chats wait in their queue
    app = web.Application()
    app[CORE] = core
    omni = OmniService(core, acd)
    await omni.start()
    queues = chat_queues(acd)
    chat = ChatService(omni, queues[0], lambda r: r.remote or "?", queues=lambda: chat_queues(acd))
    await chat.start()
    app.router.add_get("/chat/ws", chat.serve)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, omni, chat


async def _first(client, frame):
    async with client.ws_connect("/chat/ws") as ws:
        await ws.send_json(frame)
        return await ws.receive_json(timeout=5)


async def test_chats_go_to_the_queue_the_widget_names_or_the_first_chat_queue():
    client, omni, chat = await _server()
    try:
        assert chat_queues(chat.omni.acd) == ["webchat", "vip-chat"]
        start = {"type": "start", "name": "Ada", "email": "ada@example.org", "question": "Hi"}
        named = await _first(client, {**start, "queue": "vip-chat"})
        plain = await _first(client, start)
        assert named["type"] == plain["type"] == "started"
        assert omni.tasks[named["task_id"]].queue == "vip-chat"
        assert omni.tasks[plain["task_id"]].queue == "webchat"
        assert omni.router.waiting("vip-chat") == [named["task_id"]]
        # Not a chat queue (a voice, an e-mail or an unknown one): refused with the reason, nothing filed.
        for other in ("billing", "mail", "nowhere"):
            refused = await _first(client, {**start, "email": f"{other}@example.org", "queue": other})
            assert refused["type"] == "error" and other in refused["reason"] and "chat queue" in refused["reason"]
        assert len(omni.tasks) == 2 and omni.filed == 2
    finally:
        await chat.stop()
        await omni.stop()
        await client.close()


def test_the_chat_queues_follow_the_configuration_in_force():
    core = Core(SimpleNamespace(acd_default_queue="billing"), model=CallModel(), bus=Bus(),  # type: ignore[arg-type]
                ami=WireAmi())
    acd = AcdService(core, AcdConfig.model_validate(CONFIG))
    chat = ChatService(OmniService(core, acd), "webchat", lambda r: "?", queues=lambda: chat_queues(acd))
    assert chat.queue_for(None) == "webchat" and chat.queue_for("vip-chat") == "vip-chat"
    acd.config = SimpleNamespace(queues=[q for q in acd.config.queues if q.id != "vip-chat"])   # a new configuration
    with pytest.raises(ChatError):
        chat.queue_for("vip-chat")
    assert chat_queues(None) == []
