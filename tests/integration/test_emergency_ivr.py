"""Emergency mode before the IVR menu, in the sandbox (docs/emergency.md, "Before the menu"),
and the scopes the other tests leave out (did, node, ivr, all): callers coming in through the
FastAGI IVR (cti-inbound), a switch in force for each case.

- a ``did`` switch with ``continue``: the announcement is played at the IVR's entry, before
  the menu's first step, then the caller goes through the menu to the queue chosen;
- a ``node`` switch with ``hangup``: the caller is taken at the IVR's entry and never meets
  the menu;
- an ``ivr`` switch (``main:1``, overflow to another queue): decided at the route step,
  after the menu, which must have been walked to know the branch;
- a switch for ``all`` calls while a ``queue`` switch is in force: the call is not taken
  before the menu (the queue switch may take precedence), and the route step chooses the
  queue switch for a caller of that queue;
- a ``prefix`` switch with ``number``: taken before the menu, sent to cti-outbound.
"""
from __future__ import annotations

import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from cti.demo_ivr import place_dtmf_call
from tests.integration.conftest import daemon_settings, eventually, hangup_all, sandbox_hook_secret, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url
from tests.integration.test_ivr import MENUS


@pytest.fixture
async def setup(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS)
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           agi_port=4573, ivr_menus=menus,
                                           emergency_prompt_dir=str(tmp_path / "prompts")))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10, what="the ACD is up")
    for a in ("a1", "a2", "a3", "a4", "a5"):            # "lazy" is logged out
        d.acd.agent_request(a, "set_not_ready", "test")          # callers wait: nobody answers
    events: list[tuple[float, dict[str, Any]]] = []
    demo_ami.add_listener(lambda frame: events.append((time.time(), dict(frame.headers))))
    steps: list[tuple[float, Any]] = []
    d.core.bus.subscribe(lambda ev: steps.append((time.time(), ev)) if ev.kind == "call.ivr" else None)
    await add_user(database, "ivr-sup", "supervisor")
    async with aiohttp.ClientSession() as http:
        try:
            yield d, events, steps, http, bearer(await login(http, d, "ivr-sup"))
        finally:
            hangup_all()
            await d.stop()


def _user_events(events, name: str, call_id: str) -> list[tuple[float, dict[str, Any]]]:
    return [(t, e) for t, e in events if e.get("Event") == "UserEvent" and e.get("UserEvent") == name
            and e.get("Linkedid") == call_id]


async def _switch(http, d, sup, **body) -> dict[str, Any]:
    async with http.post(url(d, "/api/emergency/switches"), headers=sup,
                         json={"reason": "test", "confirm": True, **body}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def _call(d, demo_ami, digits: str, number: str, did: str = "6001"):
    return await place_dtmf_call(demo_ami, digits=digits, caller_num=number, did=did,
                                 variables={"CTI_HTTP": f"http://127.0.0.1:{d.settings.http_port}"})


async def _recorded(database: str, switch_id: int) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(database)
    try:
        return [tuple(r) for r in await conn.fetch(
            "SELECT call_id, step, outcome FROM emergency_calls WHERE switch_id = $1", switch_id)]
    finally:
        await conn.close()


async def test_a_did_switch_plays_its_announcement_before_the_menu_then_the_caller_goes_on(
        setup, demo_ami, database):
    d, events, steps, http, sup = setup
    switch = await _switch(http, d, sup, scope="did", value="6001", action="continue", prompt="beep")
    call = await _call(d, demo_ami, "WWWW1", "+4420555001")
    found = await eventually(lambda: _user_events(events, "CtiEmergency", call.channel_id), timeout=15,
                             what="the caller on the emergency path")
    at, ev = found[0]
    assert (ev["Switch"], ev["Action"], ev["Step"]) == (str(switch["id"]), "continue", "ivr")
    # Then the menu, after the announcement: the caller pressed 1 (sales) and waits there.
    route = await eventually(lambda: _user_events(events, "CtiRoute", call.channel_id), timeout=20,
                             what="the caller routed after the menu")
    assert route[0][1]["Queue"] == "sales"
    menu = [t for t, ev in steps if ev.call_id == call.channel_id]
    assert menu and at < min(menu), "the announcement came before the menu's first step"
    assert len(_user_events(events, "CtiEmergency", call.channel_id)) == 1     # not again at the route step
    await eventually(lambda: call.channel_id in {w.call_id for w in d.acd.router.waiting_calls()}, timeout=10,
                     what="the caller waiting in sales")
    assert await eventually(lambda: _recorded(database, switch["id"]), timeout=10) == [
        (call.channel_id, "ivr", "continue")]
    # A caller of another DID (one the menus do not know: the default route) goes without it.
    other = await _call(d, demo_ami, "WWWW1", "+4420555002", did="6009")
    await eventually(lambda: _user_events(events, "CtiRoute", other.channel_id), timeout=20, what="other routed")
    assert _user_events(events, "CtiEmergency", other.channel_id) == []


async def test_a_node_switch_with_hangup_takes_the_caller_before_the_menu(setup, demo_ami, database):
    d, events, steps, http, sup = setup
    switch = await _switch(http, d, sup, scope="node", value=d.settings.node_name, action="hangup",
                           prompt="vm-goodbye")
    call = await _call(d, demo_ami, "WWWW1", "+4420555003")
    found = await eventually(lambda: _user_events(events, "CtiEmergency", call.channel_id), timeout=15,
                             what="the caller on the emergency path")
    assert (found[0][1]["Action"], found[0][1]["Step"]) == ("hangup", "ivr")
    await eventually(lambda: (c := d.core.model.calls.get(call.channel_id)) is None or c.ended_at is not None,
                     timeout=15, what="the call ended")
    assert [ev for _, ev in steps if ev.call_id == call.channel_id] == []          # never met the menu
    assert _user_events(events, "CtiRoute", call.channel_id) == []
    assert await eventually(lambda: _recorded(database, switch["id"]), timeout=10) == [
        (call.channel_id, "ivr", "hangup")]


async def test_an_ivr_branch_switch_is_decided_after_the_menu_at_the_route_step(setup, demo_ami, database):
    d, events, steps, http, sup = setup
    switch = await _switch(http, d, sup, scope="ivr", value="main:1", action="queue", target="support")
    chose_1 = await _call(d, demo_ami, "WWWW1", "+4420555004")
    chose_2 = await _call(d, demo_ami, "WWWW2WW2", "+4420555005")
    found = await eventually(lambda: _user_events(events, "CtiEmergency", chose_1.channel_id), timeout=20,
                             what="the caller of branch 1 on the emergency path")
    assert (found[0][1]["Action"], found[0][1]["Step"]) == ("queue", "route")
    route = await eventually(lambda: _user_events(events, "CtiRoute", chose_1.channel_id), timeout=10,
                             what="routed")
    assert route[0][1]["Queue"] == "support"                # overflowed from sales
    assert [ev for _, ev in steps if ev.call_id == chose_1.channel_id]              # the menu was walked
    other = await eventually(lambda: _user_events(events, "CtiRoute", chose_2.channel_id), timeout=20,
                             what="the caller of branch 2 routed")
    assert other[0][1]["Queue"] == "support" and _user_events(events, "CtiEmergency", chose_2.channel_id) == []
    assert await eventually(lambda: _recorded(database, switch["id"]), timeout=10) == [
        (chose_1.channel_id, "route", "queue")]


async def test_a_switch_for_all_calls_leaves_the_choice_to_the_route_step_while_a_queue_switch_is_on(
        setup, demo_ami, database):
    d, events, steps, http, sup = setup
    everyone = await _switch(http, d, sup, scope="all", action="continue", prompt="beep")
    sales = await _switch(http, d, sup, scope="queue", value="sales", action="voicemail", target="sales@cti")
    to_sales = await _call(d, demo_ami, "WWWW1", "+4420555006")
    found = await eventually(lambda: _user_events(events, "CtiEmergency", to_sales.channel_id), timeout=20,
                             what="the sales caller on the emergency path")
    assert (found[0][1]["Switch"], found[0][1]["Action"], found[0][1]["Step"]) == (
        str(sales["id"]), "voicemail", "route")
    assert [ev for _, ev in steps if ev.call_id == to_sales.channel_id]            # after the menu
    to_support = await _call(d, demo_ami, "WWWW2WW2", "+4420555007")
    found = await eventually(lambda: _user_events(events, "CtiEmergency", to_support.channel_id), timeout=20,
                             what="the support caller on the emergency path")
    assert (found[0][1]["Switch"], found[0][1]["Step"]) == (str(everyone["id"]), "route")
    await eventually(lambda: to_support.channel_id in {w.call_id for w in d.acd.router.waiting_calls()},
                     timeout=10, what="the support caller waiting after the announcement")


async def test_a_prefix_switch_sends_its_callers_to_a_number_before_the_menu(setup, demo_ami, database):
    """Action ``number``: the dialplan dials the target through cti-outbound (the sandbox has
    no trunk there, so the call ends: the path taken is what is checked)."""
    d, events, steps, http, sup = setup
    switch = await _switch(http, d, sup, scope="prefix", value="+4930", action="number", target="+4930999000")
    call = await _call(d, demo_ami, "WWWW1", "+4930555008")
    other = await _call(d, demo_ami, "WWWW1", "+4420555009")
    found = await eventually(lambda: _user_events(events, "CtiEmergency", call.channel_id), timeout=15,
                             what="the caller of the prefix on the emergency path")
    assert (found[0][1]["Action"], found[0][1]["Step"]) == ("number", "ivr")
    await eventually(lambda: (c := d.core.model.calls.get(call.channel_id)) is None or c.ended_at is not None,
                     timeout=15, what="the call ended at cti-outbound")
    assert [ev for _, ev in steps if ev.call_id == call.channel_id] == []
    await eventually(lambda: _user_events(events, "CtiRoute", other.channel_id), timeout=20, what="other routed")
    assert _user_events(events, "CtiEmergency", other.channel_id) == []
    assert await eventually(lambda: _recorded(database, switch["id"]), timeout=10) == [
        (call.channel_id, "ivr", "number")]


async def test_the_hook_answers_before_the_menu_only_for_a_switch_it_can_decide_then(setup):
    d, events, steps, http, sup = setup
    await _switch(http, d, sup, scope="queue", value="sales", action="hangup")
    hook = f"http://127.0.0.1:{d.settings.http_port}/hooks/emergency"
    secret = {"X-CTI-Hook-Secret": sandbox_hook_secret()}
    args = {"call": "hook-1", "queue": "sales", "number": "+4420555010", "did": "6001"}
    async with http.get(hook, params={**args, "step": "ivr"}, headers=secret) as r:
        assert r.status == 200 and (await r.text()).strip() == "none"        # the queue is not known yet
    async with http.get(hook, params={**args, "step": "route"}, headers=secret) as r:
        assert r.status == 200 and (await r.text()).startswith("ok,")
    async with http.get(hook, params={**args, "step": "later"}, headers=secret) as r:
        assert r.status == 400
