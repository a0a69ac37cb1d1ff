"""Emergency mode in the sandbox (docs/emergency.md): a switch scoped to a caller-number
prefix moves the ACD's waiting callers of that prefix within 2 s, leaves other waiting
callers and a talking call alone, is audited, and sends new callers of the prefix down
the emergency path at the route step; switched off, new callers route as usual."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import wave
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg
import pytest

from cti.demo import place_call, set_demo_times
from emergency.routes import EMERGENCY
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


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CTI_DATABASE_URL": dsn, "CTI_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "server.cli", "emergency", *args], text=True, env=env,
                          capture_output=True, timeout=60)


async def test_a_queue_switch_from_the_cli_overflows_waiting_callers_to_another_queue(setup, demo_ami, database):
    """The CLI writes to the database; the daemon's next read (1 s) moves the caller in the
    router, with no redirect (no announcement): the caller hears nothing of it."""
    d, events, _, _ = setup
    acd = d.acd
    acd.agent_request("a1", "set_not_ready", "test")
    p = await _sales_call(demo_ami, "+4420" + "2000001", "overflow")
    await eventually(lambda: p.channel_id in {w.call_id for w in acd.router.waiting_calls()}, timeout=15,
                     what="the caller waiting in sales")
    refused = await asyncio.to_thread(_cli, database, "on", "--scope", "queue", "--value", "sales", "--action",
                                      "queue", "--target", "support", "--reason", "storm")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    t0 = time.time()
    done = await asyncio.to_thread(_cli, database, "on", "--scope", "queue", "--value", "sales", "--action",
                                   "queue", "--target", "support", "--reason", "storm", "--yes")
    assert done.returncode == 0, done.stderr
    switch_id = int(done.stdout.split("\t")[0])
    await eventually(lambda: [w.queue_id for w in acd.router.waiting_calls() if w.call_id == p.channel_id]
                     == ["support"], timeout=5, what="the caller moved to support")
    print(f"emergency: CLI switch to the caller in its new queue: {time.time() - t0:.2f} s "
          "(CLI process start and the daemon's 1 s read included)")
    assert _emergency_events(events, p.channel_id) == []
    listed = await asyncio.to_thread(_cli, database, "list")
    assert listed.stdout.startswith(f"{switch_id}\tqueue sales\tqueue support")
    off = await asyncio.to_thread(_cli, database, "off", str(switch_id), "--reason", "over", "--yes")
    assert off.returncode == 0 and "ENDED" in off.stdout
    await eventually(lambda: not d.runner.app[EMERGENCY].in_force, timeout=5, what="the daemon saw it off")


def _code_events(events) -> list[dict[str, Any]]:
    return [e for _, e in events if e.get("Event") == "UserEvent" and e.get("UserEvent") == "CtiEmergencyCode"]


async def test_the_phone_feature_code_toggles_a_preset_with_the_pin_and_refuses_a_wrong_one(
        asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           emergency_pin="2468"))
    events: list[tuple[float, dict[str, Any]]] = []
    demo_ami.add_listener(lambda frame: events.append((time.time(), dict(frame.headers))))
    service = d.runner.app[EMERGENCY]
    try:
        # The preset's template: declared once (here by the CLI), then off.
        made = await asyncio.to_thread(_cli, database, "on", "--scope", "all", "--action", "continue", "--prompt",
                                       "vm-goodbye", "--reason", "building evacuated", "--preset", "42", "--yes")
        assert made.returncode == 0, made.stderr
        template = int(made.stdout.split("\t")[0])
        assert (await asyncio.to_thread(_cli, database, "off", str(template), "--reason", "template",
                                        "--yes")).returncode == 0
        await eventually(lambda: not service.in_force, timeout=5, what="the template off")

        async def dial(pin: str) -> dict[str, Any]:
            before = len(_code_events(events))
            await place_call(demo_ami, caller_num="+442030000099", caller_name="floor phone", patience=30,
                             context="cti-emergency-code", caller_context="cti-demo-dtmf",
                             variables={"__DIGITS": f"WW42#W{pin}#",
                                        "CTI_HTTP": f"http://127.0.0.1:{d.settings.http_port}"})
            found = await eventually(lambda: len(_code_events(events)) > before and _code_events(events)[before],
                                     timeout=20, what="the feature code answered")
            return found

        wrong = await dial("1111")
        assert wrong["Result"] == "wrong_pin" and "1111" not in json.dumps(wrong)
        assert not service.in_force
        on = await dial("2468")
        assert (on["Result"], on["State"]) == ("ok", "on")
        await eventually(lambda: [s.id for s in service.in_force] == [int(on["Switch"])], timeout=5,
                         what="the preset in force")
        conn = await asyncpg.connect(database)
        try:
            row = await conn.fetchrow("SELECT * FROM emergency_switches WHERE id = $1", int(on["Switch"]))
        finally:
            await conn.close()
        assert (row["declared_by"], row["reason"], row["scope"], row["preset"]) == (
            "phone:+442030000099", "building evacuated", "all", "42")
        off = await dial("2468")
        assert (off["Result"], off["State"], off["Switch"]) == ("ok", "off", on["Switch"])
        await eventually(lambda: not service.in_force, timeout=5, what="the preset off")
    finally:
        hangup_all()
        await d.stop()


async def test_an_announcement_by_text_is_spoken_into_a_file_asterisk_plays(setup):
    """espeak-ng then sox, as the IVR's prompts: 8 kHz mono 16-bit, named by its text."""
    d, _, http, sup = setup
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
            "scope": "did", "value": "5999", "action": "continue", "reason": "recall",
            "announcement": "We know about the recall of model X. Please hold.", "confirm": True}) as r:
        assert r.status == 201, await r.text()
        prompt = (await r.json())["prompt"]
    assert prompt.startswith(d.settings.emergency_prompt_dir + "/em-")
    with wave.open(prompt + ".wav") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 8000          # over a second of speech


async def test_a_recorded_announcement_is_uploaded_checked_and_named_in_a_switch(setup):
    d, _, http, sup = setup
    from tests.unit.test_emergency_wav import wav
    good = base64.b64encode(wav(seconds=1.5)).decode()
    async with http.post(url(d, "/api/emergency/announcements"), headers=sup, json={"wav_base64": good}) as r:
        assert r.status == 201, await r.text()
        prompt = (await r.json())["prompt"]
    assert open(prompt + ".wav", "rb").read() == base64.b64decode(good)
    bad = base64.b64encode(wav(rate=16000)).decode()
    async with http.post(url(d, "/api/emergency/announcements"), headers=sup, json={"wav_base64": bad}) as r:
        assert r.status == 422 and "8000 Hz" in await r.text()
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
            "scope": "did", "value": "5998", "action": "hangup", "prompt": prompt, "reason": "fire",
            "confirm": True}) as r:
        assert r.status == 201 and (await r.json())["prompt"] == prompt


async def test_a_scheduled_switch_moves_its_waiting_callers_at_its_start(setup, demo_ami):
    """Declared now to start in 3 s: nothing moves before; at the start the caller is moved
    (the service wakes at the next scheduled change, not only at its 1 s read)."""
    d, events, http, sup = setup
    acd = d.acd
    acd.agent_request("a1", "set_not_ready", "test")
    p = await _sales_call(demo_ami, "+3312" + "3000001", "scheduled")
    await eventually(lambda: p.channel_id in {w.call_id for w in acd.router.waiting_calls()}, timeout=15,
                     what="the caller waiting")
    start = datetime.now(timezone.utc) + timedelta(seconds=3)
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
            "scope": "prefix", "value": "+3312", "action": "voicemail", "reason": "planned works",
            "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=5)).isoformat(),
            "confirm": True}) as r:
        assert r.status == 201, await r.text()
    assert _emergency_events(events, p.channel_id) == []
    found = await eventually(lambda: _emergency_events(events, p.channel_id), timeout=10,
                             what="the caller moved at the start")
    at, ev = found[0]
    late = at - start.timestamp()
    print(f"emergency: scheduled start to the caller's new path: {late:.3f} s")
    assert (ev["Action"], ev["Step"]) == ("voicemail", "wait") and 0 <= late < 2.0


async def test_continue_plays_the_announcement_to_a_waiting_caller_who_keeps_their_place(setup, demo_ami):
    """Action continue: the caller hears the announcement and goes back to the wait, still in
    the router in the same place; an agent who becomes ready is offered them as usual."""
    d, events, http, sup = setup
    acd = d.acd
    acd.agent_request("a1", "set_not_ready", "test")
    first = await _sales_call(demo_ami, "+4420" + "4000001", "first")
    await eventually(lambda: first.channel_id in {w.call_id for w in acd.router.waiting_calls()}, timeout=15,
                     what="the first caller waiting")
    p = await _sales_call(demo_ami, "+3399" + "4000002", "informed")
    await eventually(lambda: p.channel_id in {w.call_id for w in acd.router.waiting_calls()}, timeout=15,
                     what="the second caller waiting")
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
            "scope": "prefix", "value": "+3399", "action": "continue", "prompt": "beep", "reason": "known issue",
            "confirm": True}) as r:
        assert r.status == 201, await r.text()
    found = await eventually(lambda: _emergency_events(events, p.channel_id), timeout=5, what="the announcement")
    assert (found[0][1]["Action"], found[0][1]["Step"]) == ("continue", "wait")
    assert _emergency_events(events, first.channel_id) == []
    await asyncio.sleep(1.5)     # the beep played; back in the wait
    assert [w.call_id for w in acd.router.waiting_calls()] == [first.channel_id, p.channel_id]
    reply = await demo_ami.send("Getvar", {"Channel": acd.calls[p.channel_id].channel, "Variable": "CONTEXT"},
                                shape="single")
    assert reply.response.headers.get("Value") == "cti-acd-wait"
    acd.agent_request("a1", "set_ready")
    await eventually(lambda: acd.calls.get(first.channel_id) is not None and acd.calls[first.channel_id].answered,
                     timeout=15, what="the first caller answered first")


async def test_the_screen_pop_of_a_caller_under_a_switch_names_the_incident(setup, demo_ami):
    """Docs/emergency.md: the agent offered a caller whom a switch covers sees the switch (its
    scope, action and reason) on the pop; a caller no switch covers gets none."""
    d, events, http, sup = setup
    acd = d.acd
    acd.agent_request("a1", "set_not_ready", "test")
    async with http.post(url(d, "/api/emergency/switches"), headers=sup, json={
            "scope": "prefix", "value": "+3399", "action": "continue", "prompt": "beep", "reason": "known issue",
            "confirm": True}) as r:
        assert r.status == 201, await r.text()
        switch_id = (await r.json())["id"]
    ws = await http.ws_connect(url(d, "/ws"))
    await ws.send_json({"type": "auth", "token": await login(http, d, "em-sup")})
    informed = await _sales_call(demo_ami, "+3399" + "4000007", "informed")
    plain = await _sales_call(demo_ami, "+4420" + "4000008", "plain")
    await eventually(lambda: {informed.channel_id, plain.channel_id} <= {w.call_id for w in acd.router.waiting_calls()},
                     timeout=20, what="both callers waiting")
    pops: dict[str, dict[str, Any]] = {}
    acd.agent_request("a1", "set_ready")
    acd.agent_request("a2", "set_ready")
    while set(pops) != {informed.channel_id, plain.channel_id}:
        msg = await ws.receive(timeout=30)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        m = json.loads(msg.data)
        if m["type"] == "screenpop" and m["call_id"] in (informed.channel_id, plain.channel_id):
            pops.setdefault(m["call_id"], m["card"])
    incident = pops[informed.channel_id]["incident"]
    assert incident is not None and (incident["id"], incident["reason"], incident["action"]) == (
        switch_id, "known issue", "continue")
    assert pops[plain.channel_id]["incident"] is None
    await ws.close()
