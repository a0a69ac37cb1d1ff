"""The wallboard, the supervisors' actions and the interval report against real calls in
the sandbox: every figure equals the one computed here by hand from the stored rows."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime, timezone

import aiohttp
import asyncpg
import pytest

from acd import rollups
from api.wallboard_service import BUILD_SHARE, REFRESH_S, REPORTS_AT_ONCE, WALLBOARD
from cti.demo import place_call, set_demo_times
from tests.integration.conftest import ROOT, daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import ACD_TEST, PASSWORD, add_user, bearer, login, url

ARTIFACTS = ROOT / "build" / "test-artifacts"
T = 20.0                    # the board's service-level threshold (acd-test.toml's default sl_seconds)
AGENTS = ("a1", "a2", "a3", "a4", "a5")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def centre(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           wallboard_push_s=0.1, timezone="UTC"))
    await eventually(lambda: d.acd is not None and d.acd.epoch_in_force == d.acd.epoch and d.acd.heartbeats > 0,
                     timeout=10, what="the ACD's epoch in force in Asterisk and a heartbeat")
    await set_demo_times(demo_ami, ring=(0, 0), talk=(1, 1))
    # Sam supervises the floor; his own phone is the device of the agent id on his user ("lazy",
    # never logged in), sat at a line that answers.
    await add_user(database, "sam", "supervisor", "lazy", team="floor")
    d.acd.bind_device("lazy", "Local/s@cti-demo-hold/n")
    await add_user(database, "sue", "supervisor", team="elsewhere")
    await add_user(database, "ada", "agent", "a1", team="floor")
    for n, a in enumerate(AGENTS[1:]):
        await add_user(database, f"agent{n}", "agent", a, team="floor")
    for a in AGENTS:
        d.acd.agent_request(a, "set_not_ready", "test")
    try:
        yield d
    finally:
        await d.stop()
        await set_demo_times(demo_ami)


async def call(demo_ami, queue: str, n: int, patience: int = 120):
    return await place_call(demo_ami, caller_num=f"+4420{n:07d}", caller_name=f"Caller {n}", patience=patience,
                            context="cti-demo-direct", variables={"CTI_QUEUE": queue})


async def fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def ended(dsn: str, ids: list[str]) -> None:
    async def done():
        rows = await fetch(dsn, "SELECT call_id FROM calls WHERE call_id = ANY($1) AND ended_at IS NOT NULL", ids)
        return len(rows) == len(ids)

    await eventually(done, timeout=60, interval=0.3, what=f"{len(ids)} calls ended in the database")


# -- figures by hand, from the stored rows -------------------------------------------------


async def by_hand(dsn: str) -> dict[str, list[dict]]:
    """Each queued call's wait, outcome and handle time, from calls, call_events and
    agent_states, without acd.figures: per queue, a list of calls."""
    calls = await fetch(dsn, "SELECT * FROM calls WHERE queue IS NOT NULL")
    left = {r["call_id"]: r["at"] for r in await fetch(
        dsn, "SELECT call_id, min(at) AS at FROM call_events WHERE kind = 'call.agent_left' GROUP BY call_id")}
    states = await fetch(dsn, "SELECT agent_id, at, state FROM agent_states ORDER BY agent_id, at")
    log = defaultdict(list)
    for s in states:
        log[s["agent_id"]].append((s["at"].timestamp(), s["state"]))
    out: dict[str, list[dict]] = defaultdict(list)
    for c in calls:
        joined = c["queue_joined_at"].timestamp()
        item = {"id": c["call_id"], "joined": joined}
        if c["agent_answered_at"] is not None:
            answered = c["agent_answered_at"].timestamp()
            talk_end = left[c["call_id"]].timestamp()
            rows = log[c["agent"]]
            i = next(i for i, (at, st) in enumerate(rows) if st == "wrapup" and abs(at - talk_end) <= 1.0)
            wrapup = rows[i + 1][0] - rows[i][0]
            item.update(outcome="answered", wait=answered - joined, handle=(talk_end - answered) + wrapup)
        else:
            assert c["abandoned"]
            item.update(outcome="abandoned", wait=c["queue_left_at"].timestamp() - joined)
        out[c["queue"]].append(item)
    return out


def expected(calls: list[dict]) -> dict:
    answered = [c for c in calls if c["outcome"] == "answered"]
    abandoned = [c for c in calls if c["outcome"] == "abandoned"]
    within = sum(1 for c in answered if c["wait"] <= T)
    return {"offered": len(calls), "answered": len(answered), "abandoned": len(abandoned),
            "service_level": within / len(calls),                      # abandons counted against
            "asa_s": sum(c["wait"] for c in answered) / len(answered) if answered else None,
            "aht_s": sum(c["handle"] for c in answered) / len(answered) if answered else None,
            "abandon_rate": len(abandoned) / len(calls)}


def same(got: dict, want: dict) -> None:
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=2e-3) if v is not None else got[k] is None, (k, got[k], v)


async def test_board_and_interval_report_equal_the_figures_computed_by_hand(centre, demo_ami, database, http):
    d, acd = centre, centre.acd
    sup = bearer(await login(http, d, "sam"))
    # 1. A caller gives up after 2 s: nobody is ready.
    gone = await call(demo_ami, "billing", 1, patience=2)
    await ended(database, [gone.channel_id])
    # 2. Dev (billing 8) takes two billing calls, one after the other (talk 1 s, wrap-up 1 s).
    acd.agent_request("a4", "set_ready")
    taken = [await call(demo_ami, "billing", n) for n in (2, 3)]
    await ended(database, [p.channel_id for p in taken])
    # 3. Support wants level 5; only Cleo (support 4) is ready: the call escalates at 6 s, she answers.
    acd.agent_request("a3", "set_ready")
    late = await call(demo_ami, "support", 4)
    await ended(database, [late.channel_id])
    await eventually(lambda: all(acd.router.agent_state(a).state == "available" for a in ("a3", "a4")),
                     timeout=10, what="wrap-ups over")
    kinds = [r["kind"] for r in await fetch(database, "SELECT kind FROM call_events WHERE call_id = $1",
                                            late.channel_id)]
    assert "acd.escalated" in kinds

    async def agent_states_stored():
        rows = await fetch(database, "SELECT count(*) AS n FROM agent_states WHERE state = 'wrapup'")
        return rows[0]["n"] >= 3
    await eventually(agent_states_stored, timeout=10)
    hand = await by_hand(database)
    assert {q: len(cs) for q, cs in hand.items()} == {"billing": 3, "support": 1}
    assert hand["support"][0]["wait"] >= 6.0

    async def board():
        async with http.get(url(d, "/api/wallboard"), headers=sup) as r:
            assert r.status == 200
            snap = await r.json()
        qs = {q["queue"]: q for q in snap["queues"]}
        ready = qs["billing"]["today"]["handled"] == 2 and qs["support"]["today"]["handled"] == 1
        return snap if ready else None

    snap = await eventually(board, timeout=15, what="the board has every call handled")
    qs = {q["queue"]: q for q in snap["queues"]}
    for queue, calls in hand.items():
        want = expected(calls)
        same(qs[queue]["today"], want)
        same(qs[queue]["last_30"], want)   # all arrived within the last half hour
        assert qs[queue]["waiting"] == 0
        assert qs[queue]["policy"].startswith("80% in 20 s, abandons counted against")
    assert [(a["call_id"], a["number"]) for a in snap["abandoned"]] == [(gone.channel_id, "+44200000001")]
    assert qs["billing"]["colours"]["abandon_rate"] == "red"       # 1/3 against a red of 10%

    # The interval report from PostgreSQL: per day, and per 15 minutes.
    day = datetime.now(timezone.utc).date().isoformat()
    for granularity in ("day", "15min"):
        async with http.get(url(d, f"/api/reports/queues?start={day}&end={day}&granularity={granularity}"),
                            headers=sup) as r:
            assert r.status == 200, await r.text()
            report = await r.json()
        for queue, calls in hand.items():
            groups = defaultdict(list)
            for c in calls:
                groups[c["joined"] // 900 * 900 if granularity == "15min" else 0].append(c)
            rows = [row for row in report["rows"] if row["queue"] == queue]
            assert len(rows) == len(groups)
            for row, key in zip(rows, sorted(groups)):
                same(row, expected(groups[key]))
    # Rolled up (as the daemon does once intervals settle), the same report reads the rollups: same rows.
    async with http.get(url(d, f"/api/reports/queues?start={day}&end={day}&granularity=15min"), headers=sup) as r:
        raw = await r.json()
    pool = d.runner.app[WALLBOARD].pool
    wb = d.runner.app[WALLBOARD]
    now = time.time()
    lo = rollups.quarter(min(c["joined"] for cs in hand.values() for c in cs))
    assert await rollups.roll_up(pool, lo, rollups.quarter(now) + 900, wb.config, wb.queues(), now=now,
                                 settle_s=-900) > 0
    async with http.get(url(d, f"/api/reports/queues?start={day}&end={day}&granularity=15min"), headers=sup) as r:
        rolled = await r.json()
    assert rolled["intervals"]["rollup"] > 0 and rolled["rows"] == raw["rows"]
    # Staffing: a plan for every half hour of today, beside the agents logged in.
    async with http.get(url(d, f"/api/reports/staffing?queue=billing&day={day}&granularity=30min"), headers=sup) as r:
        assert r.status == 200, await r.text()
        plan = await r.json()
    assert len(plan["rows"]) == 48 and plan["policy"].startswith("80% in 20 s")
    assert any((row["agents_logged_in"] or 0) > 0 for row in plan["rows"])
    assert sum(row["actual_calls"] or 0 for row in plan["rows"]) == 3
    async with http.get(url(d, f"/api/reports/staffing?queue=nowhere&day={day}"), headers=sup) as r:
        assert r.status == 404
    # Every report slot taken (long reports running): the next one is refused after a short
    # wait instead of taking a connection of the pool the dialplan hooks share.
    for _ in range(REPORTS_AT_ONCE):
        await wb.report_slots.acquire()
    try:
        async with http.get(url(d, f"/api/reports/queues?start={day}&end={day}"), headers=sup) as r:
            assert r.status == 503 and "reports are being computed" in await r.text()
    finally:
        for _ in range(REPORTS_AT_ONCE):
            wb.report_slots.release()
    async with http.get(url(d, f"/api/reports/queues?start={day}&end={day}"), headers=sup) as r:
        assert r.status == 200
    async with http.get(url(d, f"/api/reports/queues?start={day}&end=2000-01-01"), headers=sup) as r:
        assert r.status == 422 and "end is before start" in await r.text()
    async with http.get(url(d, f"/api/reports/queues?start={day}&end={day}&granularity=day&format=csv"),
                        headers=sup) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        lines = (await r.text()).splitlines()
    assert lines[0].startswith("queue,local_start,offered") and len(lines) == 3
    # Agents: Dev handled two calls, Cleo one; their time adds up over the day.
    async with http.get(url(d, f"/api/reports/agents?start={day}&end={day}&granularity=day"), headers=sup) as r:
        agents = {row["agent"]: row for row in (await r.json())["rows"]}
    assert (agents["a4"]["answered"], agents["a3"]["answered"]) == (2, 1)
    assert agents["a1"]["not_ready_by_reason"]["test"] > 0
    # The push interval: wallboard_push_s while boards build fast; stretched when a build is slow.
    wb = d.runner.app[WALLBOARD]
    # (How fast a board builds is bench/wallboard.py's figure, not a test's: here only the rule.)
    assert wb.pushes > 0 and wb.build_s > 0 and wb.push_s == 0.1
    assert wb.interval() == min(REFRESH_S, max(0.1, wb.build_s / BUILD_SHARE))
    wb.build_s = 0.001
    assert wb.interval() == 0.1
    wb.build_s = 0.2
    assert wb.interval() == pytest.approx(4.0)
    wb.build_s = 2.0               # never slower than the board's refresh
    assert wb.interval() == REFRESH_S


async def test_supervisor_actions_are_carried_out_and_audited(centre, demo_ami, database, http):
    d, acd = centre, centre.acd
    sup = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    waiting = await call(demo_ami, "billing", 11)
    await eventually(lambda: waiting.channel_id in acd.calls, timeout=10)
    move = url(d, f"/api/supervisor/calls/{waiting.channel_id}/move")
    async with http.post(move, json={"priority": 50}, headers=ada) as r:
        assert r.status == 403
    async with http.post(move, json={}, headers=sup) as r:
        assert r.status == 422
    async with http.post(move, json={"queue": "nowhere"}, headers=sup) as r:
        assert r.status == 422 and "unknown queue" in (await r.json())["message"]
    async with http.post(move, json={"queue": "sales", "priority": 50}, headers=sup) as r:
        assert r.status == 200, await r.text()
    (w,) = acd.router.waiting_calls()
    assert (w.queue_id, w.priority) == ("sales", 50)

    # Forced not ready and log out; Ada (sales 9) takes the moved call once ready, and is listened to.
    async with http.post(url(d, "/api/supervisor/agents/a2/state"), json={"action": "logout"}, headers=sup) as r:
        assert r.status == 200 and acd.router.agent_state("a2").state == "logged_out"
    await set_demo_times(demo_ami, ring=(0, 0), talk=(20, 20))
    acd.agent_request("a1", "set_ready")
    await eventually(lambda: acd.router.agent_state("a1").state == "on_call", timeout=10)
    spied: list[dict] = []
    demo_ami.add_listener(lambda f: f.name == "ChanSpyStart" and spied.append(dict(f.headers)))
    async with http.post(url(d, "/api/supervisor/agents/a1/spy"), headers=sup, json={"mode": "whisper"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["detail"] == "ringing Local/s@cti-demo-hold/n"      # Sam's own phone
    await eventually(lambda: spied, timeout=10, what="ChanSpy started on the agent's channel")
    assert spied[0]["SpyeeChannel"].startswith("Local/agent1@cti-demo-agents")
    async with http.post(url(d, "/api/supervisor/agents/a5/spy"), headers=sup, json={"mode": "listen"}) as r:
        assert r.status == 409                                   # Eve is not on a call
    async with http.post(url(d, "/api/supervisor/agents/a5/spy"), headers=sup,
                         json={"mode": "listen", "device": "Local/+15550100@cti-outbound"}) as r:
        assert r.status == 422                                   # no device but one's own rings
    async with http.post(url(d, "/api/supervisor/agents/a1/state"), headers=sup,
                         json={"action": "not_ready", "reason": "coaching"}) as r:
        assert (await r.json())["detail"] == "on_call (pending: coaching)"
    hangup_all()

    # A caller who gave up is called back by the button: a callback request in their queue.
    gone = await call(demo_ami, "billing", 12, patience=1)
    await ended(database, [gone.channel_id])
    async with http.post(url(d, "/api/supervisor/callbacks"), json={"call_id": gone.channel_id}, headers=sup) as r:
        assert r.status == 201, await r.text()
    assert acd.calls[gone.channel_id].callback.number == "+44200000012"
    async with http.post(url(d, "/api/supervisor/callbacks"), json={"call_id": gone.channel_id}, headers=sup) as r:
        assert r.status == 409                                   # one at a time
    async with http.post(url(d, "/api/supervisor/callbacks"), json={"call_id": "nope'; DROP TABLE calls;--"},
                         headers=sup) as r:
        assert r.status == 422

    # A supervisor of another team may neither listen to the floor's agents nor change their state.
    sue = bearer(await login(http, d, "sue"))
    for path, body in (("spy", {"mode": "listen"}), ("state", {"action": "logout"})):
        async with http.post(url(d, f"/api/supervisor/agents/a1/{path}"), json=body, headers=sue) as r:
            assert r.status == 403 and (await r.json())["error_id"] == "not_your_agent"
    assert acd.router.agent_state("a1").state != "logged_out"

    async with http.get(url(d, "/api/supervisor/actions"), headers=sup) as r:
        actions = (await r.json())["actions"]
    seen = [(a["action"], a["result"]) for a in reversed(actions)]
    assert seen == [("move", "refused"), ("move", "done"), ("logout", "done"), ("whisper", "done"),
                    ("listen", "refused"), ("not_ready", "done"), ("callback", "done"), ("callback", "refused")]
    assert all(a["actor"] == "sam" for a in actions)
    assert json.loads(json.dumps(actions[-2]["details"]))["queue"] == "sales"


async def test_the_wallboard_page_updates_live_in_a_real_browser(centre, demo_ami, browser):
    d = centre
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(url(d, "/wallboard/"))
    await page.fill("input[name=username]", "sam")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login button")
    await page.wait_for_selector("#status.live", timeout=10_000)
    assert await page.is_hidden("#login")
    waiting = page.locator("[data-queue=billing][data-fig=waiting]")
    assert await waiting.get_attribute("data-value") == "0"
    p = await call(demo_ami, "billing", 21)
    # A push follows each change at most wallboard_push_s later; the page shows it without a reload.
    await page.wait_for_selector("[data-queue=billing][data-fig=waiting][data-value='1']", timeout=5_000)
    assert p.channel_id in d.acd.calls
    await page.wait_for_selector(f"#waiting tr[data-call='{p.channel_id}']", timeout=5_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "wallboard.png"), full_page=True)
    assert (ARTIFACTS / "wallboard.png").stat().st_size > 0
    # The reports page (same tab: same session) draws its charts (uPlot) from today's calls.
    await page.goto(url(d, "/wallboard/reports.html"))
    await page.wait_for_selector("figure.chart .uplot canvas", timeout=10_000)
    assert "billing: offered" in (await page.text_content("#charts") or "")
    await page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)
