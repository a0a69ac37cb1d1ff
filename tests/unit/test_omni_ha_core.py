"""The task service in a high-availability pair (omni.routes.setup_omni with app[HA]): on a
standby nothing is routed, the task routes answer 503 standby and the chat socket 503; a
takeover starts it and restores the waiting and held tasks from the database (a stand-in
pool holding the rows a leader stored), holding the agent's load; a step-down stops it.
The real pair (two daemons, one lease) is tests/integration/test_ha.py's; here the wiring."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acd.config import AcdConfig
from acd.routing_shell import ACD, AcdService
from api.errors import ApiError
from cti.calls import CallModel
from cti.daemon import CORE, Core
from cti.events import Bus
from cti.ha import HA
from omni.routes import CHAT, OMNI, _leading, setup_omni
from omni.tasks import TaskError
from tests.wireami import WireAmi

CONFIG = {"skills": ["billing"], "queues": [{"id": "billing"}, {"id": "webchat", "channel": "chat"}],
          "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                      "skills": {"billing": 5}, "queues": {"billing": {}, "webchat": {}}, "auto_login": True,
                      "capacity": {"chat": 2, "voice_blocked_by": ["chat"]}}]}


class Ha:
    """The parts of cti.ha.HaNode the daemon's features use."""

    def __init__(self) -> None:
        self.leading = False
        self.on_lead: list[Any] = []
        self.on_step_down: list[Any] = []

    def may_act(self) -> bool:
        return self.leading

    def health(self) -> dict[str, Any]:
        return {"holder": "n1"}

    async def lead(self, epoch: int) -> None:
        self.leading = True
        for hook in self.on_lead:
            await hook(epoch)

    async def step_down(self) -> None:
        self.leading = False
        for hook in self.on_step_down:
            await hook()


class Pool:
    """The tasks table as the old leader left it (only what OmniService reads and writes)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.executed: list[tuple] = []

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        assert "FROM tasks" in sql
        return [r for r in self.rows if r["status"] in ("waiting", "assigned")]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any]:
        assert sql.startswith("INSERT INTO tasks")          # a new task: stored as asked
        task_id, channel, queue, customer, subject, ref, created = args
        row = {**_row(task_id, "waiting", None, created.timestamp()), "channel": channel, "queue_id": queue,
               "customer_ref": customer, "subject": subject, "ref": ref}
        self.rows.append(row)
        return row

    async def execute(self, sql: str, *args: Any) -> str:
        self.executed.append((sql, args))
        return "UPDATE 1"


def _row(task_id: str, status: str, agent: str | None, created: float) -> dict[str, Any]:
    at = datetime.fromtimestamp(created, timezone.utc)
    return {"task_id": task_id, "channel": "chat", "queue_id": "webchat", "customer_ref": f"{task_id}@example.org",
            "subject": "Hi", "ref": f"ref-{task_id}", "status": status, "agent_id": agent, "created_at": at,
            "assigned_at": at if agent else None, "closed_at": None, "disposition": None, "queued_at": None}


async def _pair_node(rows: list[dict[str, Any]]):
    core = Core(SimpleNamespace(acd_default_queue="billing", http_trusted_proxies=()),  # type: ignore[arg-type]
                model=CallModel(), bus=Bus(), ami=WireAmi())
    core.pool = Pool(rows)  # type: ignore[assignment]
    acd = AcdService(core, AcdConfig.model_validate(CONFIG))
    acd._apply(acd.router.auto_login(time.time()))
    ha = Ha()
    app = web.Application()
    app[CORE] = core
    app[ACD] = acd
    app[HA] = ha  # type: ignore[assignment]
    setup_omni(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, app, ha


async def test_a_standby_routes_no_task_and_a_takeover_restores_waiting_and_held_ones():
    t0 = time.time() - 60
    rows = [_row("t-held", "assigned", "a4", t0), _row("t-first", "waiting", None, t0 + 1),
            _row("t-second", "waiting", None, t0 + 2), _row("t-done", "closed", "a4", t0 - 5)]
    client, app, ha = await _pair_node(rows)
    omni = app[OMNI]
    try:
        # A standby: nothing routed, and it says why.
        assert omni.router is None and omni.tasks == {}
        with pytest.raises(ApiError) as refused:
            _leading(app)
        assert (refused.value.status, refused.value.error_id) == (503, "standby")
        assert "n1" in refused.value.message
        with pytest.raises(TaskError, match="standby"):
            await omni.file_task("chat", "webchat", "ada@example.org", "Hi", "s-1")
        resp = await client.get("/chat/ws")
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"

        await ha.lead(2)
        _leading(app)                               # no longer refused
        assert omni.health()["restored"] == 3
        # The held chat counts in a4's load (capacity 2): the first waiting one is given
        # to a4, the second waits, keeping its place ahead of anything filed later.
        tasks = {t.task_id: t for t in omni.tasks_of(None)}
        assert set(tasks) == {"t-held", "t-first", "t-second"}
        assert (tasks["t-held"].agent_id, tasks["t-first"].agent_id, tasks["t-second"].status) == ("a4", "a4", "waiting")
        assert omni.waiting_info("t-second")[0] == 1
        newer = await omni.file_task("chat", "webchat", "bob@example.org", "Hi", "s-2")
        assert omni.waiting_info(newer)[0] == 2
        async with client.ws_connect("/chat/ws") as ws:       # the chat socket is served
            await ws.send_json({"type": "start", "name": "Ada", "email": "ada@example.org", "question": "Hi"})
            assert (await ws.receive_json(timeout=5))["type"] == "started"

        await ha.step_down()
        assert omni.router is None and omni.tasks == {}
        with pytest.raises(ApiError):
            _leading(app)
    finally:
        await client.close()
    assert app[CHAT]._ticker is None or app[CHAT]._ticker.done()


async def test_a_lone_node_routes_at_once():
    core = Core(SimpleNamespace(acd_default_queue="billing", http_trusted_proxies=()),  # type: ignore[arg-type]
                model=CallModel(), bus=Bus(), ami=WireAmi())
    acd = AcdService(core, AcdConfig.model_validate(CONFIG))
    app = web.Application()
    app[CORE] = core
    app[ACD] = acd
    setup_omni(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        assert app[OMNI].router is not None
        _leading(app)
    finally:
        await client.close()
    assert app[OMNI].router is None
