"""Emergency mode in the sandbox (docs/emergency.md): a switch scoped to a caller-number
prefix moves the ACD's waiting callers of that prefix within 2 s, leaves other waiting
callers and a talking call alone, is audited, and sends new callers of the prefix down
the emergency path at the route step; switched off, new callers route as usual."""
from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url

PREFIX = "+4930"


@pytest.fixture
async def setup(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           emergency_prompt_dir=str(tmp_path / "prompts")))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="the ACD is up")
    for a in ("a2", "a3", "a4", "a5"):
        d.acd.agent_request(a, "set_not_ready", "test")
    await set_demo_times(demo_ami, ring=(0, 1), talk=(60, 60))
    events: list[tuple[float, dict[str, Any]]] = []
    demo_ami.add_listener(lambda frame: events.append((time.time(), dict(frame.headers))))
    await add_user(database, "em-sup", "supervisor")
    async with aiohttp.ClientSession() as http:
        try:
            yield d, events, http, bearer(await login(http, d, "em-sup"))
        finally:
            hangup_all()
            await d.stop()
            await set_demo_times(demo_ami)


def _emergency_events(events, call_id: str) -> list[tuple[float, dict[str, Any]]]:
    return [(t, e) for t, e in events if e.get("Event") == "UserEvent" and e.get("UserEvent") == "CtiEmergency"
            and e.get("Linkedid") == call_id]


async def _sales_call(demo_ami, number: str, name: str, d=None):
    # The dialplan's hooks go to CTI_HTTP: this daemon's port, not the default.
    extra = {} if d is None else {"CTI_HTTP": f"http://127.0.0.1:{d.settings.http_port}"}
    return await place_call(demo_ami, caller_num=number, caller_name=name, patience=120,
                            context="cti-demo-direct", variables={"CTI_QUEUE": "sales", **extra})


async def test_a_prefix_switch_moves_its_waiting_callers_within_2s_and_leaves_the_others(setup, demo_ami, database):
    d, events, http, sup = setup
    acd = d.acd
    # A caller of the prefix talking to Ada: the switch must leave this call alone.
    talking = await _sales_call(demo_ami, PREFIX + "1000001", "talking")
    await eventually(lambda: talking.channel_id in acd.calls and acd.calls[talking.channel_id].answered,
                     timeout=15, what="Ada talking to the first caller")
    acd.agent_request("a1", "set_not_ready", "test")     # after this call: nobody answers the rest
    ours = [await _sales_call(demo_ami, PREFIX + f"100000{i}", f"outage {i}") for i in (2, 3)]
    other = await _sales_call(demo_ami, "+4420" + "1000004", "elsewhere")
    waiting = {p.channel_id for p in (*ours, other)}
    await eventually(lambda: waiting <= {w.call_id for w in acd.router.waiting_calls()}, timeout=15,
                     what="three callers waiting in the ACD")

    t0 = time.time()
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
            "scope": "prefix", "value": PREFIX, "action": "hangup", "prompt": "vm-goodbye",
            "reason": "regional outage", "confirm": True}) as r:
        assert r.status == 201, await r.text()
        switch = await r.json()
    moved = {}
    for p in ours:
        found = await eventually(lambda: _emergency_events(events, p.channel_id), timeout=5,
                                 what=f"{p.caller_num} on the emergency path")
        at, ev = found[0]
        assert (ev["Switch"], ev["Action"], ev["Step"]) == (str(switch["id"]), "hangup", "wait")
        moved[p.channel_id] = at - t0
    assert all(0 <= s < 2.0 for s in moved.values()), moved
    print("emergency: seconds from the switch to each caller's new path:",
          sorted(round(s, 3) for s in moved.values()))
    # Out of the router; the other prefix still waits; the talking call goes on.
    assert {w.call_id for w in acd.router.waiting_calls()} == {other.channel_id}
    assert _emergency_events(events, other.channel_id) == []
    assert acd.calls[talking.channel_id].answered and _emergency_events(events, talking.channel_id) == []
    assert talking.channel_id in d.core.model.calls and d.core.model.calls[talking.channel_id].ended_at is None
    # The banner's list, read by every role.
    async with http.get(url(d, "/api/emergency/active"), headers=sup) as r:
        assert [s["id"] for s in (await r.json())["active"]] == [switch["id"]]

    # A new caller of the prefix takes the emergency path at the route step.
    fresh = await _sales_call(demo_ami, PREFIX + "1000005", "new", d)
    found = await eventually(lambda: _emergency_events(events, fresh.channel_id), timeout=10,
                             what="the new caller on the emergency path")
    assert (found[0][1]["Action"], found[0][1]["Step"]) == ("hangup", "route")
    assert fresh.channel_id not in {w.call_id for w in acd.router.waiting_calls()}

    # Audited: the switch (who, reason), the supervisor's action, each call reached.
    async def audited():
        conn = await asyncpg.connect(database)
        try:
            return (await conn.fetchrow("SELECT * FROM emergency_switches WHERE id = $1", switch["id"]),
                    await conn.fetch("SELECT * FROM supervisor_actions WHERE action = 'emergency_on'"),
                    await conn.fetch("SELECT * FROM emergency_calls WHERE switch_id = $1", switch["id"]))
        finally:
            await conn.close()
    row, actions, calls = await eventually(lambda: _all_three(audited), timeout=10, what="the audit written")
    assert row["declared_by"] == "em-sup" and row["reason"] == "regional outage" and row["declared_at"] is not None
    assert actions[0]["actor_name"] == "em-sup" and json.loads(actions[0]["details"])["switch"] == switch["id"]
    assert {(c["call_id"], c["step"], c["outcome"]) for c in calls} == {
        (ours[0].channel_id, "waiting", "hangup"), (ours[1].channel_id, "waiting", "hangup"),
        (fresh.channel_id, "route", "hangup")}

    # Off: audited, and the next caller of the prefix waits for an agent as usual.
    async with http.post(url(d, f"/api/emergency/switches/{switch['id']}/end"), headers=sup,
                         json={"reason": "restored", "confirm": True}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["ended_by"] == "em-sup"
    after = await _sales_call(demo_ami, PREFIX + "1000006", "after", d)
    await eventually(lambda: after.channel_id in {w.call_id for w in acd.router.waiting_calls()}, timeout=10,
                     what="a caller after the switch waiting as usual")
    assert _emergency_events(events, after.channel_id) == []


async def _all_three(fetch):
    row, actions, calls = await fetch()
    return (row, actions, calls) if row is not None and actions and len(calls) >= 3 else None


async def test_a_switch_needs_confirmation_and_a_valid_scope(setup):
    d, _, http, sup = setup
    body = {"scope": "prefix", "value": PREFIX, "action": "hangup", "reason": "x"}
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json=body) as r:
        assert r.status == 422 and "confirm" in await r.text()
    async with http.post(url(d, "/api/emergency/switches"), headers=sup,
                         json={**body, "value": "", "confirm": True}) as r:
        assert r.status == 422 and "value" in await r.text()
    async with http.post(url(d, "/api/emergency/switches"), headers=sup,
                         json={**body, "action": "queue", "confirm": True}) as r:
        assert r.status == 422 and "target" in await r.text()
