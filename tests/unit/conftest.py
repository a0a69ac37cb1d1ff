"""Fixtures shared by unit tests."""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, AsyncIterator

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
async def omni_running() -> AsyncIterator[Any]:
    """The omnichannel service on a fake core (no database; AMI actions go to a ``WireAmi``)
    with a real ACD (``OMNI_CONFIG``, a4 logged in) and hub: ``.core``, ``.app`` (the core
    as ``app[CORE]``), ``.acd``, ``.hub`` (the ``HubService``), ``.omni`` and ``.desk``, a4's
    desktop connection. Stopped after the test."""
    core = Core(SimpleNamespace(acd_default_queue="billing"), model=CallModel(), bus=Bus(),  # type: ignore[arg-type]
                ami=WireAmi())
    acd = AcdService(core, AcdConfig.model_validate(OMNI_CONFIG))
    acd._apply(acd.router.auto_login(time.time()))
    app = web.Application()
    app[CORE] = core
    hub = HubService(app, Hub(), core, acd)
    await hub.start()
    desk = hub.hub.attach("user:4", Scope(agent_id="a4"), None, {}, 0).conn
    omni = OmniService(core, acd, hub.push)
    await omni.start()
    try:
        yield SimpleNamespace(core=core, app=app, acd=acd, hub=hub, omni=omni, desk=desk)
    finally:
        await omni.stop()
        await hub.stop()
