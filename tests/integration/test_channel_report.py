"""The report per channel (GET /api/reports/channels, docs/omnichannel.md) on a real daemon
and PostgreSQL: chats answered and abandoned through the widget are counted in the chat row,
beside zeros for the quiet channels; CSV; a bad range refused; agents refused."""
from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import pytest

from omni.routes import OMNI
from tests.integration.conftest import eventually, start_daemon
from tests.integration.test_api import url
from tests.integration.test_omni_conversations import call, chat_start, frames_until, my_tasks, settings, users


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_the_channel_report_counts_chats_answered_and_abandoned(asterisk, database, tmp_path, http):
    d = await start_daemon(settings(database, tmp_path))
    try:
        t = await users(database, http, d)
        ws1, s1 = await chat_start(http, d, "Carol", "carol@example.org", "First")
        await eventually(lambda: my_tasks(http, d, t["ada"]), 10, what="the first chat with Ada")
        assert (await call(http, d, "POST", f"/api/tasks/{s1['task_id']}/close", t["ada"],
                           {"disposition": "done"}))[0] == 200
        # Ada holds two chats at most: the next two are hers, a fourth waits and leaves.
        chats = [await chat_start(http, d, f"C{i}", f"c{i}@example.org", "Hello") for i in range(3)]
        ws4, s4 = chats[-1]
        assert s4["status"] == "waiting"
        await ws4.send_json({"type": "leave"})
        await frames_until(ws4, lambda f: f["type"] == "closed")
        await d.runner.app[OMNI].flush()
        day = datetime.now(timezone.utc).date().isoformat()      # the daemon's timezone: UTC
        status, body = await call(http, d, "GET", f"/api/reports/channels?start={day}&end={day}", t["sue"])
        assert status == 200, body
        rows = {r["channel"]: r for r in body["rows"]}
        assert list(rows) == ["voice", "chat", "email", "message"]
        chat = rows["chat"]
        assert (chat["offered"], chat["answered"], chat["abandoned"], chat["waiting"]) == (4, 3, 1, 0)
        assert chat["handled"] == 1 and chat["aht_s"] is not None and chat["wait_p50_s"] is not None
        assert rows["email"]["offered"] == 0 and rows["email"]["wait_p90_s"] is None
        async with http.get(url(d, f"/api/reports/channels?start={day}&end={day}&format=csv"),
                            headers=t["sue"]) as r:
            assert r.status == 200 and r.content_type == "text/csv"
            lines = (await r.text()).splitlines()
        assert lines[0].startswith("channel,offered,answered,abandoned") and lines[2].startswith("chat,4,3,1")
        # Per interval: the same contacts, split by the hour they came in.
        status, body = await call(http, d, "GET", f"/api/reports/channels?start={day}&end={day}&granularity=60min",
                                  t["sue"])
        assert status == 200 and body["granularity"] == "60min", body
        chat_rows = [r for r in body["rows"] if r["channel"] == "chat"]
        assert sum(r["offered"] for r in chat_rows) == 4 and sum(r["abandoned"] for r in chat_rows) == 1
        assert all(r["local_start"].startswith(day) for r in body["rows"])
        status, err = await call(http, d, "GET", f"/api/reports/channels?start={day}&end=2000-01-01", t["sue"])
        assert status == 422, err
        status, _ = await call(http, d, "GET", f"/api/reports/channels?start={day}&end={day}", t["ada"])
        assert status == 403
        for ws, _ in [(ws1, s1), *chats]:
            await ws.close()
    finally:
        await d.stop()
