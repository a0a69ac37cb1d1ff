"""A task queue's maximum wait end to end (docs/omnichannel.md, "Maximum wait"): a real
daemon and PostgreSQL; a customer's chat into a chat queue nobody staffs overflows after
its maximum wait to the wider queue, whose agent gets it on the desktop; the customer's
widget sees the agent; the task's new queue is stored; the queues' figures count it."""
from __future__ import annotations

import time

import aiohttp
import asyncpg
import pytest

from omni.routes import OMNI
from tests.integration.conftest import daemon_settings, eventually, start_daemon
from tests.integration.test_api import add_user, bearer, login, url
from tests.integration.test_omni_conversations import call, chat_start, frames_until, my_tasks

ACD = """
skills = ["sales"]

[[agents]]
id = "a1"
name = "Ada"
device = "Local/stay1@cti-demo-agents/n"
skills = { sales = 9 }
queues = { sales = {}, wide = {} }
auto_login = true
capacity = { chat = 2 }

[[queues]]
id = "sales"

[[queues]]
id = "vip"
channel = "chat"
max_wait_s = 1.5
on_max_wait = { overflow = "wide" }

[[queues]]
id = "wide"
channel = "chat"
"""


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_chat_nobody_takes_in_time_overflows_to_the_wider_queue(asterisk, database, tmp_path, http):
    cfg = tmp_path / "acd.toml"
    cfg.write_text(ACD)
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=cfg, acd_announce_every=0))
    try:
        await add_user(database, "ada", "agent", "a1")
        ada = bearer(await login(http, d, "ada"))
        ws, started = await chat_start(http, d, "Carol", "carol@example.org", "Are you there?", queue="vip")
        task_id = started["task_id"]
        assert started["status"] == "waiting"
        assert await my_tasks(http, d, ada) == []
        # After the maximum wait the chat is in "wide", where Ada takes it at once.
        frames = await frames_until(ws, lambda f: f["type"] == "agent", timeout=20)
        assert not any(f["type"] == "error" for f in frames), frames
        (task,) = await eventually(lambda: my_tasks(http, d, ada), 10, what="the overflowed chat offered to Ada")
        assert (task["task_id"], task["queue"], task["agent_id"]) == (task_id, "wide", "a1")
        # Ada answers through the same routes; the customer reads it.
        assert (await call(http, d, "POST", f"/api/tasks/{task_id}/messages", ada, {"body": "Here I am"}))[0] == 201
        await frames_until(ws, lambda f: f["type"] == "message" and f["body"] == "Here I am")
        await d.runner.app[OMNI].flush()
        conn = await asyncpg.connect(database)
        try:
            row = await conn.fetchrow("SELECT queue_id, status, agent_id, created_at, queued_at FROM tasks "
                                      "WHERE task_id = $1", task_id)
        finally:
            await conn.close()
        assert (row["queue_id"], row["status"], row["agent_id"]) == ("wide", "assigned", "a1")
        assert row["queued_at"] > row["created_at"]         # the overflow's time, kept for a restart
        stats = {s.queue_id: s for s in d.runner.app[OMNI].queue_stats(time.time())}
        assert (stats["vip"].overflowed, stats["vip"].answered) == (1, 0)
        assert stats["wide"].answered == 1
        await ws.close()
    finally:
        await d.stop()
