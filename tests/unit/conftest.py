"""Fixtures shared by unit tests."""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from acd.config import AcdConfig
from acd.routing_shell import AcdService
from api.hub import Hub, Scope
from api.ws import HubService
from cti.calls import CallModel
from cti.daemon import CORE, Core
from cti.events import Bus
from omni.service import OmniService
from tests.wireami import WireAmi

# One agent, a4, in a voice queue and a chat queue, with two chat slots that block calls.
OMNI_CONFIG = {"skills": ["billing"], "queues": [{"id": "billing"}, {"id": "webchat", "channel": "chat"}],
               "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                           "skills": {"billing": 5}, "queues": {"billing": {}, "webchat": {}}, "auto_login": True,
                           "capacity": {"chat": 2, "voice_blocked_by": ["chat"]}}]}


@pytest.fixture
async def acd_hub() -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Any]]]:
    """``await acd_hub(config)``: a fake core (no database; AMI actions go to a ``WireAmi``)
    with a real ACD of ``config`` (its ``auto_login`` agents logged in before the hub starts,
    as in the daemon) and a real hub service: ``.core``, ``.app`` (the core as ``app[CORE]``),
    ``.acd``, ``.hub``. The hub is stopped after the test."""
    hubs: list[HubService] = []

    async def start(config: dict[str, Any]) -> Any:
        core = Core(SimpleNamespace(acd_default_queue="billing"), model=CallModel(), bus=Bus(),  # type: ignore[arg-type]
                    ami=WireAmi())
        acd = AcdService(core, AcdConfig.model_validate(config))
        acd._apply(acd.router.auto_login(time.time()))
        app = web.Application()
        app[CORE] = core
        hub = HubService(app, Hub(), core, acd)
        await hub.start()
        hubs.append(hub)
        return SimpleNamespace(core=core, app=app, acd=acd, hub=hub)

    try:
        yield start
    finally:
        for hub in hubs:
            await hub.stop()


@pytest.fixture
async def omni_running(acd_hub: Callable[[dict[str, Any]], Awaitable[Any]]) -> AsyncIterator[Any]:
    """The omnichannel service on ``acd_hub(OMNI_CONFIG)`` (a4 logged in): ``.core``, ``.app``,
    ``.acd``, ``.hub`` (the ``HubService``), ``.omni`` and ``.desk``, a4's desktop connection.
    Stopped after the test."""
    o = await acd_hub(OMNI_CONFIG)
    o.desk = o.hub.hub.attach("user:4", Scope(agent_id="a4"), None, {}, 0).conn
    o.omni = OmniService(o.core, o.acd, o.hub.push)
    await o.omni.start()
    try:
        yield o
    finally:
        await o.omni.stop()
