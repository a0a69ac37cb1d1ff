"""Hostile caller names and numbers end to end in the sandbox: a real call
through the dialplan, the IVR over FastAGI, the ACD, the screen-pop on /ws,
the database and the agent page in headless Chromium.

What is promised (docs/hostile-input.md):
- the name is kept exactly as the caller sent it (quotes, backslashes, SQL,
  HTML, unicode, 250 characters), in the call model, the database, every
  WebSocket message (JSON-escaped) and on the agent page (as text, never HTML);
- the number is filtered by the dialplan on the inbound entry to
  ``+0123456789*#`` (extensions.conf, ``cti-inbound``): a deterministic,
  documented sanitisation;
- a value with CR, LF or NUL never reaches Asterisk: the AMI client refuses
  to send it (``UnsafeValue``) before a byte is written.
"""
from __future__ import annotations

import json

import aiohttp
import asyncpg
import pytest

from cti.demo import place_call, set_demo_times
from cti.errors import UnsafeValue
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import ACD_TEST, PASSWORD, add_user, login, url

# (name, number as sent). Each goes the IVR way (DID 5000 -> FastAGI -> support)
# or straight to the ACD's sales queue.
HOSTILE = [
    ("'; DROP TABLE calls;--", "+4930111001"),
    ('Robert "Bobby" O\'Brien \\ back\\slash \\n', "+4930111002"),
    ('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>&amp;', "+4930111003"),
    ("semi;colon;${CALLERID(num)};$[1+1];Action: Originate", "+4930111004"),
    ("J\u00fcrgen M\u00fcller \u202eevil\u202c \U0001F680 \u4e2d\u6587", "+4930111005"),
    # 214 characters: Originate's CallerID (quotes and number included) must fit
    # Asterisk's 256-byte buffer, or Asterisk itself cuts it before any event.
    ("L" + "o" * 200 + "ng name \u00e9\u00e9", "+4930111006"),
]
HOSTILE_NUMBER = "+49'30;--\"111007 OR 1=1"


@pytest.fixture
async def hostile_daemon(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
    await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
    for agent in ("a3", "a4", "a5"):
        d.acd.agent_request(agent, "set_not_ready", "test")
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "sam", "supervisor")
    try:
        yield d
    finally:
        await d.stop()
        await set_demo_times(demo_ami)


async def calls_row(dsn: str, call_id: str):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT caller_name, caller_num, ended_at FROM calls WHERE call_id = $1", call_id)
    finally:
        await conn.close()


async def messages_until(ws, stop, into: list[tuple[str, dict]]) -> None:
    """Collect (raw text, decoded) pairs until ``stop(decoded)``."""
    while True:
        msg = await ws.receive(timeout=60)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        m = json.loads(msg.data)
        into.append((msg.data, m))
        if stop(m):
            return


async def test_hostile_caller_names_travel_exactly_and_render_as_text(hostile_daemon, demo_ami, database, browser):
    d = hostile_daemon
    page = await browser.new_page()
    async with aiohttp.ClientSession() as http:
        sam = await http.ws_connect(url(d, "/ws"))
        await sam.send_json({"type": "auth", "token": await login(http, d, "sam")})
        await page.goto(url(d, "/agent/"))
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("#link:has-text('online')")
        for i, (name, number) in enumerate(HOSTILE):
            via_ivr = i % 2 == 0
            if via_ivr:   # DID 5000: the IVR over FastAGI, then support (Ben, a2)
                placed = await place_call(demo_ami, caller_num=number, caller_name=name, patience=60)
            else:         # straight to sales (Ada, a1, whose page is open)
                placed = await place_call(demo_ami, caller_num=number, caller_name=name, patience=60,
                                          context="cti-demo-direct", variables={"CTI_QUEUE": "sales"})
            cid = placed.channel_id
            seen: list[tuple[str, dict]] = []
            await messages_until(sam, lambda m: m.get("call_id") == cid and m["type"] == "call.ended", seen)
            mine = [(raw, m) for raw, m in seen if m.get("call_id") == cid]
            # (A call's first events may come before Asterisk named the caller: None.)
            names = {m["call"]["caller_name"] for _, m in mine if m["type"].startswith("call.")} - {None}
            assert names == {name}, (i, names)
            pops = [m for _, m in mine if m["type"] == "screenpop"]
            assert pops and {p["card"]["caller"]["name"] for p in pops} == {name}
            assert {p["card"]["caller"]["number"] for p in pops} == {number}
            if via_ivr:
                assert any(m["type"] == "call.ivr" for _, m in mine)
            # The wire: JSON with the name's quotes, backslashes and controls escaped.
            for raw, _ in mine:
                assert "\n" not in raw and "\r" not in raw and json.loads(raw)["call_id"] == cid
            row = await eventually(lambda: calls_row(database, cid), 10, what="the call stored")
            assert (row["caller_name"], row["caller_num"]) == (name, number)
            if not via_ivr:   # Ada's page shows the card: as text
                await page.wait_for_function(
                    "n => document.getElementById('caller-name').textContent === n", arg=name, timeout=20_000)
                assert await page.eval_on_selector_all("#screenpop img, #screenpop script", "e => e.length") == 0
                assert await page.evaluate("window.__pwned === undefined")
        await sam.close()
    await page.close()
    # Nothing was dropped, nothing ran: the calls table is still there, one row per call.
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM calls WHERE caller_num LIKE '+4930111%'") == len(HOSTILE)
    finally:
        await conn.close()


async def test_a_hostile_number_is_filtered_by_the_inbound_dialplan(hostile_daemon, demo_ami, database):
    d = hostile_daemon
    placed = await place_call(demo_ami, caller_num=HOSTILE_NUMBER, caller_name="n", patience=60)
    row = await eventually(lambda: calls_row(database, placed.channel_id), 30, what="the call stored")
    await eventually(lambda: placed.channel_id not in d.core.model.calls, 30, what="the call ended")
    row = await calls_row(database, placed.channel_id)
    # extensions.conf, cti-inbound: FILTER(+0123456789*#, ...) before anything else sees it.
    assert row["caller_num"] == "+4930111007" + "11"   # and the digits of "OR 1=1"
    assert row["caller_name"] == "n"


@pytest.mark.parametrize("name", ["Evil\r\nAction: Originate", "a\nb", "nul\0"])
async def test_a_caller_value_with_a_line_break_never_reaches_asterisk(hostile_daemon, demo_ami, name):
    """Refused before a byte is written: the connection stays usable and in step."""
    d = hostile_daemon
    with pytest.raises(UnsafeValue):
        await place_call(demo_ami, caller_num="+4930111008", caller_name=name, patience=5)
    with pytest.raises(UnsafeValue):
        await d.core.ami.send("Setvar", {"Variable": "CTI_NAME", "Value": name}, shape="single")
    for ami in (demo_ami, d.core.ami):
        pong = await ami.send("Ping", {}, shape="single")
        assert pong.response.response == "Success"
    assert all(c.caller_num != "+4930111008" for c in d.core.model.calls.values())


async def test_caller_data_never_becomes_an_originate_callback_or_dial(hostile_daemon, demo_ami, database):
    """A caller whose number is not a number (the demo entry does not filter it)
    abandons; a supervisor's call-back to it is refused with 409 and audited with
    the number exactly as stored. Click-to-dial to SQL is a 422. Nothing reaches
    Asterisk: no callback is filed."""
    d = hostile_daemon
    number = "+49'30;--111009"
    placed = await place_call(demo_ami, caller_num=number, caller_name="'; DROP TABLE calls;--", patience=2,
                              context="cti-demo-direct", variables={"CTI_QUEUE": "billing"})   # nobody ready
    row = await eventually(lambda: calls_row(database, placed.channel_id), 30, what="the call stored")
    row = await eventually(lambda: _ended(database, placed.channel_id), 30, what="the call abandoned")
    stored = row["caller_num"]
    assert stored and not stored.lstrip("+").isdigit()
    async with aiohttp.ClientSession() as http:
        sam = {"Authorization": f"Bearer {await login(http, d, 'sam')}"}
        async with http.post(url(d, "/api/supervisor/callbacks"), json={"call_id": placed.channel_id},
                             headers=sam) as r:
            body = await r.json()
            assert r.status == 409 and body["error_id"] == "callback_refused", body
        async with http.post(url(d, "/api/supervisor/callbacks"),
                             json={"call_id": placed.channel_id, "number": "1; DROP TABLE calls"}, headers=sam) as r:
            assert r.status == 422 and (await r.json())["details"][0]["field"] == "body.number"
        ada = {"Authorization": f"Bearer {await login(http, d, 'ada')}"}
        async with http.post(url(d, "/api/calls/dial"), json={"number": "'; DROP TABLE calls;--"}, headers=ada) as r:
            assert r.status == 422 and (await r.json())["details"][0]["field"] == "body.number"
    assert d.acd.callbacks_requested == 0
    conn = await asyncpg.connect(database)
    try:
        audit = await conn.fetchrow("SELECT result, details FROM supervisor_actions WHERE call_id = $1",
                                    placed.channel_id)
        assert json.loads(audit["details"])["number"] == stored and audit["result"] != "done"
        assert await conn.fetchval("SELECT count(*) FROM callbacks") == 0
    finally:
        await conn.close()


async def _ended(dsn: str, call_id: str):
    row = await calls_row(dsn, call_id)
    return row if row is not None and row["ended_at"] is not None else None
