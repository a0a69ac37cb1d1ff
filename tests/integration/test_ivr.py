"""The IVR against the real sandbox: simulated callers press keys, the daemon
walks them through menus over FastAGI, the dialplan routes them with what the
menus decided (read from the ``CtiRoute`` UserEvent at the routing step)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from api.hooks import setup_hooks
from cti.ami import AmiClient
from cti.customers import save_customer
from cti.daemon import Core, build_app
from cti.demo_ivr import place_dtmf_call
from ivr.service import IVR, IvrHolder, setup_ivr
from tests.integration.conftest import daemon_settings, eventually, start_daemon

MENUS = """
[ivr]
default_queue = "support"

[calendars.office]
timezone = "Europe/Berlin"
hours = { mon = ["08:00-18:00"], tue = ["08:00-18:00"], wed = ["08:00-18:00"], thu = ["08:00-18:00"], fri = ["08:00-18:00"] }
holidays = [2026-12-25]

[entries."6001"]
menu = "main"

[entries."6002"]
calendar = "office"
open = "main"
closed = "closed"
holiday = "holiday"

[menus.main]
prompts = ["beep"]
timeout = 3
retries = 1
invalid_prompt = "beep"

[menus.main.options]
"1" = { action = "queue", queue = "sales", skills = { sales = 5 }, priority = 1 }
"2" = { action = "submenu", menu = "support" }
"3" = { action = "collect", name = "account", prompt = "beep", min_length = 6, max_length = 6, timeout = 3, pattern = "^[1-9][0-9]{5}$", invalid_prompt = "beep", then = { action = "queue", queue = "billing", skills = { billing = 5 } } }
"9" = { action = "lookup", by = "caller_id", vip = { action = "queue", queue = "vip", skills = { vip = 5 }, priority = 10 }, found = { action = "queue", queue = "support", priority = 2 }, not_found = { action = "queue", queue = "support" } }

[menus.support]
prompts = ["beep"]
timeout = 3
retries = 0

[menus.support.options]
"2" = { action = "queue", queue = "support", skills = { support = 5, french = 3 }, language = "fr" }

[menus.closed]
prompts = ["beep"]
timeout = 1
retries = 0
on_failure = { action = "queue", queue = "afterhours" }

[menus.closed.options]
"1" = { action = "queue", queue = "support" }

[menus.holiday]
prompts = ["beep"]
timeout = 1
retries = 0
on_failure = { action = "queue", queue = "holiday" }

[menus.holiday.options]
"1" = { action = "queue", queue = "support" }
"""

BERLIN = ZoneInfo("Europe/Berlin")
OPEN = datetime(2026, 11, 25, 10, 0, tzinfo=BERLIN).timestamp()       # a Wednesday morning
NIGHT = datetime(2026, 11, 25, 23, 0, tzinfo=BERLIN).timestamp()
CHRISTMAS = datetime(2026, 12, 25, 10, 0, tzinfo=BERLIN).timestamp()


class Ivr:
    def __init__(self, core: Core, holder: IvrHolder, runner: web.AppRunner, menus: Path, dsn: str) -> None:
        self.core = core
        self.holder = holder
        self.runner = runner
        self.menus = menus
        self.dsn = dsn
        self.routes: dict[str, dict[str, str]] = {}
        self.now = OPEN
        core.ami.add_listener(self._on_frame)

    def _on_frame(self, frame: Any) -> None:
        h = frame.headers
        if h.get("Event") == "UserEvent" and h.get("UserEvent") == "CtiRoute":
            self.routes[h.get("Linkedid", "")] = dict(h)

    async def route_of(self, call_id: str, timeout: float = 30) -> dict[str, str]:
        return await eventually(lambda: self.routes.get(call_id), timeout, what=f"CtiRoute for {call_id}")

    async def steps(self, call_id: str) -> list[tuple[str, str, str | None, str | None]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT menu, action, input, value FROM call_ivr_steps"
                                    " WHERE call_id = $1 ORDER BY seq", call_id)
        finally:
            await conn.close()
        return [tuple(r) for r in rows]


@pytest.fixture
async def ivr(asterisk: None, database: str, tmp_path: Path) -> AsyncIterator[Ivr]:
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS)
    settings = daemon_settings(database, tmp_path, agi_port=4573, ivr_menus=menus)
    app = build_app(settings)
    box: list[Ivr] = []
    setup_ivr(app, clock=lambda: box[0].now if box else OPEN)
    setup_hooks(app)
    d = await start_daemon(settings, app)
    box.append(Ivr(d.core, app[IVR], d.runner, menus, database))
    try:
        yield box[0]
    finally:
        await d.stop()


async def test_keys_walk_the_menus_to_the_queue_with_its_skills(ivr: Ivr, demo_ami: AmiClient):
    call = await place_dtmf_call(demo_ami, digits="WW2W2", caller_num="+4930100001", did="6001")
    route = await ivr.route_of(call.channel_id)
    assert route["Queue"] == "support"
    assert route["Skills"] == "support:5,french:3"
    assert route["CtiPriority"] == "0"
    steps = await eventually(lambda: ivr.steps(call.channel_id), 10)
    assert [(m, a, i) for m, a, i, _ in steps] == [
        ("main", "enter", None), ("main", "option", "2"), ("support", "enter", None),
        ("support", "option", "2"), ("support", "queue", None)]


async def test_an_invalid_key_is_refused_and_the_menu_asked_again(ivr: Ivr, demo_ami: AmiClient):
    call = await place_dtmf_call(demo_ami, digits="WW7WW1", caller_num="+4930100002", did="6001")
    route = await ivr.route_of(call.channel_id)
    assert (route["Queue"], route["Skills"], route["CtiPriority"]) == ("sales", "sales:5", "1")
    steps = await eventually(lambda: ivr.steps(call.channel_id), 10)
    assert [(a, i) for _, a, i, _ in steps][:3] == [("enter", None), ("invalid", "7"), ("option", "1")]


async def test_silence_times_out_twice_then_goes_to_the_default_queue(ivr: Ivr, demo_ami: AmiClient):
    call = await place_dtmf_call(demo_ami, digits="", caller_num="+4930100003", did="6001")
    route = await ivr.route_of(call.channel_id)
    assert route["Queue"] == "support" and route["Skills"] == ""
    steps = await eventually(lambda: ivr.steps(call.channel_id), 10)
    assert [a for _, a, _, _ in steps] == ["enter", "timeout", "timeout", "failed", "queue"]


async def test_digits_are_collected_and_validated(ivr: Ivr, demo_ami: AmiClient):
    # "12#" is too short and refused; "123456" is taken.
    call = await place_dtmf_call(demo_ami, digits="WW3W1W2W#W1W2W3W4W5W6", caller_num="+4930100004", did="6001")
    route = await ivr.route_of(call.channel_id, timeout=40)
    assert (route["Queue"], route["Skills"]) == ("billing", "billing:5")
    steps = await eventually(lambda: ivr.steps(call.channel_id), 10)
    collected = [(a, v) for _, a, i, v in steps if i == "account"]
    assert collected == [("rejected", "12"), ("collected", "123456")]


async def test_the_customer_is_looked_up_by_caller_id(ivr: Ivr, demo_ami: AmiClient):
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-42", "Ada Lovelace", ["+4930555042"], language="en", vip=True)
    await save_customer(conn, "C-43", "Charles Babbage", ["+4930555043"], language="en")
    await conn.close()
    vip = await place_dtmf_call(demo_ami, digits="WW9", caller_num="+4930555042", did="6001")
    known = await place_dtmf_call(demo_ami, digits="WW9", caller_num="0049 30 555043", did="6001")
    unknown = await place_dtmf_call(demo_ami, digits="WW9", caller_num="+4930555999", did="6001")
    r = await ivr.route_of(vip.channel_id)
    assert (r["Queue"], r["CtiPriority"], r["Customer"]) == ("vip", "10", "C-42")
    r = await ivr.route_of(known.channel_id)
    assert (r["Queue"], r["CtiPriority"], r["Customer"]) == ("support", "2", "C-43")
    r = await ivr.route_of(unknown.channel_id)
    assert (r["Queue"], r["Customer"]) == ("support", "")


async def test_the_calendar_chooses_the_after_hours_and_holiday_menus(ivr: Ivr, demo_ami: AmiClient):
    ivr.now = NIGHT
    night = await place_dtmf_call(demo_ami, digits="", caller_num="+4930100005", did="6002")
    assert (await ivr.route_of(night.channel_id))["Queue"] == "afterhours"
    ivr.now = CHRISTMAS
    xmas = await place_dtmf_call(demo_ami, digits="", caller_num="+4930100006", did="6002")
    assert (await ivr.route_of(xmas.channel_id))["Queue"] == "holiday"
    ivr.now = OPEN
    day = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930100007", did="6002")
    assert (await ivr.route_of(day.channel_id))["Queue"] == "sales"
    steps = await eventually(lambda: ivr.steps(night.channel_id), 10)
    assert steps[0] == ("closed", "enter", None, "closed")


async def test_the_ivr_path_is_published_on_the_call(ivr: Ivr, demo_ami: AmiClient):
    seen: list[Any] = []
    ivr.core.bus.subscribe(lambda ev: seen.append(ev) if ev.kind == "call.ivr" else None)
    call = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930100008", did="6001")
    await ivr.route_of(call.channel_id)
    evs = await eventually(lambda: [e for e in seen if e.call_id == call.channel_id and
                                    e.data["action"] == "queue"] and
                           [e for e in seen if e.call_id == call.channel_id], 10)
    assert [e.data["action"] for e in evs] == ["enter", "option", "queue"]
    assert evs[1].data["input"] == "1" and evs[1].call.caller_num == "+4930100008"


async def test_with_the_agi_server_stopped_the_dialplan_takes_the_fallback_route(ivr: Ivr, demo_ami: AmiClient):
    assert ivr.holder.server is not None
    await ivr.holder.server.stop()
    call = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930100009", did="6001")
    route = await ivr.route_of(call.channel_id)
    assert route["Queue"] == "support"            # the dialplan's default, not "sales"
    # ... and the caller reaches the app_queue fallback.
    await eventually(lambda: (c := ivr.core.model.calls.get(call.channel_id)) and c.queue == "cti-fallback", 20)


async def test_a_bad_menu_file_is_refused_and_the_last_good_menus_stay(ivr: Ivr, demo_ami: AmiClient):
    service = ivr.holder.service
    assert service is not None
    ivr.menus.write_text(MENUS.replace('queue = "sales"', 'queue = "sa les"'))
    call = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930100010", did="6001")
    assert (await ivr.route_of(call.channel_id))["Queue"] == "sales"
    assert service.last_error is not None
    assert str(ivr.menus) in service.last_error and "menus.main.options.1.queue" in service.last_error
    assert ":" + str(MENUS.splitlines().index(
        next(line for line in MENUS.splitlines() if line.startswith('"1" = { action = "queue"'))) + 1) \
        in service.last_error


async def test_the_lookup_hook_answers_the_dialplan(ivr: Ivr):
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-7", "Grace Hopper", ["+4930555007"], language="fr", vip=True)
    await conn.close()
    base = f"http://127.0.0.1:{ivr.core.settings.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/hooks/lookup", params={"number": "+4930555007"}) as r:
            assert r.status == 200 and await r.text() == "ok,C-7,1,fr\n"
        async with http.get(f"{base}/hooks/lookup", params={"number": "+4930555000"}) as r:
            assert r.status == 200 and await r.text() == "ok,,0,\n"
        async with http.get(f"{base}/hooks/route", params={"number": "004930555007"}) as r:
            assert await r.text() == "ok,vip,10,C-7,fr\n"
        async with http.get(f"{base}/hooks/lookup", params={"number": "12;DROP"}) as r:
            assert r.status == 400 and (await r.text()).startswith("error,invalid_number,")
