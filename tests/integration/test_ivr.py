"""The IVR against the real sandbox: simulated callers press keys, the daemon
walks them through menus over FastAGI, the dialplan routes them with what the
menus decided (read from the ``CtiRoute`` UserEvent at the routing step).
Also: voicemail, callback requests, and the dialplan's own CURL() hooks path."""
from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from acd.ami_actions import heartbeat_in_force
from api.dialplan_hooks import setup_hooks
from crm.customer_lookup import save_customer
from cti.ami import AmiClient
from cti.daemon import CORE, Core, build_app
from cti.demo_ivr import place_dtmf_call
from ivr.service import IVR, IvrHolder, setup_ivr
from tests.integration.conftest import daemon_settings, eventually, free_port, sandbox_hook_secret, start_daemon

SANDBOX_ROOT = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root"))
VOICEMAIL = SANDBOX_ROOT / "var/spool/asterisk/voicemail"

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
"4" = { action = "voicemail", mailbox = "billing" }
"5" = { action = "callback", queue = "billing", skills = { billing = 5 }, priority = 4 }
"6" = { action = "collect", name = "acct", prompt = "beep", min_length = 6, max_length = 6, timeout = 3, then = { action = "lookup", by = "input:acct", match = "account", found = { action = "queue", queue = "billing", priority = 3 }, not_found = { action = "queue", queue = "support" } } }
"8" = { action = "collect", name = "phone", prompt = "beep", min_length = 3, max_length = 20, timeout = 3, then = { action = "callback", queue = "support", number = "input:phone" } }

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
        self.user_events: dict[tuple[str, str], dict[str, str]] = {}
        self.now = OPEN
        core.ami.add_listener(self._on_frame)

    def _on_frame(self, frame: Any) -> None:
        h = frame.headers
        if h.get("Event") == "UserEvent":
            self.user_events[(h.get("UserEvent", ""), h.get("Linkedid", ""))] = dict(h)

    async def user_event(self, name: str, call_id: str, timeout: float = 30) -> dict[str, str]:
        """The UserEvent ``name`` of the call, as the daemon's AMI connection saw it."""
        return await eventually(lambda: self.user_events.get((name, call_id)), timeout,
                                what=f"{name} for {call_id}")

    async def route_of(self, call_id: str, timeout: float = 30) -> dict[str, str]:
        return await self.user_event("CtiRoute", call_id, timeout)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.core.settings.http_port}"

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
    setup_ivr(app, app[CORE], clock=lambda: box[0].now if box else OPEN)
    setup_hooks(app, app[CORE])
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
    async with aiohttp.ClientSession(headers={"X-CTI-Hook-Secret": sandbox_hook_secret()}) as http:
        async with http.get(f"{base}/hooks/lookup", params={"number": "+4930555007"}) as r:
            assert r.status == 200 and await r.text() == "ok,C-7,1,fr\n"
        async with http.get(f"{base}/hooks/lookup", params={"number": "+4930555000"}) as r:
            assert r.status == 200 and await r.text() == "ok,,0,\n"
        async with http.get(f"{base}/hooks/route", params={"number": "004930555007"}) as r:
            assert await r.text() == "ok,vip,10,C-7,fr\n"
        async with http.get(f"{base}/hooks/lookup", params={"number": "12;DROP"}) as r:
            assert r.status == 400 and (await r.text()).startswith("error,invalid_number,")


async def test_the_hooks_answer_no_one_without_the_secret_or_with_a_foreign_host(ivr: Ivr):
    """The oracle is closed: a local client without the secret, and a browser page that
    rebound its own name to 127.0.0.1 (its name in Host), learn nothing about a customer."""
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-8", "Ada Oracle", ["+4930555008"], language="de", vip=True)
    await conn.close()
    port = ivr.core.settings.http_port
    url = f"http://127.0.0.1:{port}/hooks/lookup"
    secret = {"X-CTI-Hook-Secret": sandbox_hook_secret()}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params={"number": "+4930555008", "format": "json"}) as r:
            assert r.status == 403 and (await r.json())["error_id"] == "forbidden"
            assert "Ada" not in await r.text()
        async with http.get(url, params={"number": "+4930555008"},
                            headers={**secret, "Host": f"rebind.attacker.example:{port}"}) as r:
            assert r.status == 403 and (await r.text()).startswith("error,wrong_host,")
        async with http.get(url, params={"number": "+4930555008"}, headers=secret) as r:
            assert await r.text() == "ok,C-8,1,de\n"


async def _forge_agi(port: int, env: dict[str, str]) -> list[str]:
    """Speak FastAGI to the daemon as a local process would: the header, then
    "200 result=0" to every command until it hangs up. Returns the commands."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    commands: list[str] = []
    try:
        async with asyncio.timeout(20):
            while len(commands) < 30 and (line := await reader.readline()):
                commands.append(line.decode().rstrip("\n"))
                writer.write(b"200 result=0\n")
                await writer.drain()
    finally:
        writer.close()
    return commands


async def test_fastagi_for_a_call_the_model_does_not_know_writes_and_shows_nothing(ivr: Ivr, demo_ami: AmiClient):
    """A local process cannot make up a call (or a leg of a real one) and put IVR steps,
    which reach the agent's screen-pop, on it."""
    seen: list[Any] = []
    ivr.core.bus.subscribe(lambda ev: seen.append(ev) if ev.kind == "call.ivr" else None)
    real = await place_dtmf_call(demo_ami, digits="", caller_num="+4930100031", did="6001", patience=30)
    await eventually(lambda: real.channel_id in ivr.core.model.calls, 10)
    base = {"agi_network": "yes", "agi_network_script": "ivr", "agi_request": "agi://127.0.0.1/ivr",
            "agi_callerid": "+4930999888", "agi_calleridname": "Forged Name", "agi_arg_2": "6001"}
    invented = await _forge_agi(4573, {**base, "agi_channel": "PJSIP/trunk-0000beef", "agi_uniqueid": "1733000000.999",
                                       "agi_arg_1": "forged-call-1"})
    a_real_call = await _forge_agi(4573, {**base, "agi_channel": "PJSIP/trunk-0000beef",
                                          "agi_uniqueid": "1733000000.998", "agi_arg_1": real.channel_id})
    for commands in (invented, a_real_call):
        assert commands == ['SET VARIABLE CTI_IVR_ERROR "unknown channel"']
    assert await ivr.steps("forged-call-1") == []
    assert not [ev for ev in seen if ev.call_id == "forged-call-1" or ev.data.get("input") == "+4930999888"]
    steps = await eventually(lambda: ivr.steps(real.channel_id), 10)   # the real caller's own walk
    assert steps[0][:2] == ("main", "enter") and all("+4930999888" not in str(s) for s in steps)
    assert ivr.holder.service is not None and ivr.holder.service.refused == 2


async def _ivr_events(dsn: str, call_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT data FROM call_events WHERE call_id = $1 AND kind = 'call.ivr'"
                                " ORDER BY seq", call_id)
    finally:
        await conn.close()
    return [json.loads(r["data"]) if isinstance(r["data"], str) else dict(r["data"]) for r in rows]


async def test_a_caller_leaves_a_voicemail_that_is_kept_and_recorded_with_the_call(ivr: Ivr, demo_ami: AmiClient):
    inbox = VOICEMAIL / "cti" / "billing" / "INBOX"
    before = set(inbox.glob("msg*")) if inbox.exists() else set()
    # Option 4 is the billing box; the caller then "talks" (monkeys, 16 s) and hangs up.
    call = await place_dtmf_call(demo_ami, digits="WW4", caller_num="+4930100020", did="6001",
                                 speak=["tt-monkeys"])
    created: list[Path] = []
    try:
        def message() -> Path | None:
            created[:] = [p for p in inbox.glob("msg*") if p not in before]
            for txt in (p for p in created if p.suffix == ".txt"):
                wav = txt.with_suffix(".wav")
                if wav.exists() and "+4930100020" in txt.read_text(errors="replace"):
                    return wav
            return None

        wav = await eventually(message, 60, what="a new message in the billing box")
        assert wav.stat().st_size > 0
        # The dialplan told the daemon, which recorded it with the call (path and events).
        event = await ivr.user_event("CtiVoicemail", call.channel_id)
        assert event["Mailbox"] == "billing@cti"
        steps = await eventually(
            lambda: _last_is(ivr.steps(call.channel_id), ("cti-voicemail", "voicemail")), 20)
        assert steps[-2:] == [("main", "voicemail", None, "billing@cti"),
                              ("cti-voicemail", "voicemail", None, "billing@cti")]
        events = await eventually(lambda: _ivr_events(ivr.dsn, call.channel_id), 20)
        assert {"menu": "cti-voicemail", "action": "voicemail", "value": "billing@cti"}.items() <= \
            events[-1].items()
    finally:
        for p in created:
            p.unlink(missing_ok=True)


async def _last_is(steps_coro: Any, menu_action: tuple[str, str]) -> Any:
    steps = await steps_coro
    return steps if steps and steps[-1][:2] == menu_action else None


async def test_a_callback_request_reaches_the_daemon_with_the_number_and_queue(ivr: Ivr, demo_ami: AmiClient):
    # cti-callback files a request only while the ACD's heartbeat is fresh (it keeps
    # requests); this daemon runs no ACD, so the heartbeat is set by hand for the test.
    heartbeat = await heartbeat_in_force(demo_ami)
    await demo_ami.send("Setvar", {"Variable": heartbeat, "Value": str(int(time.time()) + 120)}, shape="single")
    try:
        by_caller_id = await place_dtmf_call(demo_ami, digits="WW5", caller_num="+4930100021", did="6001")
        typed = await place_dtmf_call(demo_ami, digits="WW8W0W3W0W5W5W5W1W2#", caller_num="+4930100022",
                                      did="6001")
        ev = await ivr.user_event("CtiCallbackRequest", by_caller_id.channel_id)
        assert (ev["Number"], ev["Queue"], ev["Skills"].strip('"'), ev["CtiPriority"]) == \
            ("+4930100021", "billing", "billing:5", "4")
        ev = await ivr.user_event("CtiCallbackRequest", typed.channel_id, timeout=40)
        assert (ev["Number"], ev["Queue"]) == ("03055512", "support")
    finally:
        await demo_ami.send("Setvar", {"Variable": heartbeat, "Value": "0"}, shape="single")
    steps = await eventually(lambda: ivr.steps(by_caller_id.channel_id), 10)
    assert steps[-1] == ("main", "callback", None, "+4930100021")


async def test_a_typed_account_number_finds_the_customer(ivr: Ivr, demo_ami: AmiClient):
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-77", "Ada Account", ["+4930555077"], language="en", account_number="654321")
    await conn.close()
    known = await place_dtmf_call(demo_ami, digits="WW6W6W5W4W3W2W1", caller_num="+4930100023", did="6001")
    unknown = await place_dtmf_call(demo_ami, digits="WW6W1W1W1W1W1W1", caller_num="+4930100024", did="6001")
    r = await ivr.route_of(known.channel_id, timeout=40)
    assert (r["Queue"], r["CtiPriority"], r["Customer"]) == ("billing", "3", "C-77")
    r = await ivr.route_of(unknown.channel_id, timeout=40)
    assert (r["Queue"], r["Customer"]) == ("support", "")
    steps = await eventually(lambda: ivr.steps(known.channel_id), 10)
    assert ("main", "lookup", "654321", "C-77") in steps


async def test_the_dialplan_asks_the_hooks_and_routes_with_the_customer(ivr: Ivr, demo_ami: AmiClient):
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-88", "Vera VIP", ["+4930555088"], language="fr", vip=True)
    await save_customer(conn, "C-89", "Karl Known", ["+4930555089"], language="de")
    await conn.close()
    hooks = {"CTI_HTTP": ivr.http}
    vip = await place_dtmf_call(demo_ami, digits="", caller_num="+4930555088", did="7001",
                                context="cti-inbound-curl", variables=hooks)
    known = await place_dtmf_call(demo_ami, digits="", caller_num="0049 30 555089", did="7001",
                                  context="cti-inbound-curl", variables=hooks)
    unknown = await place_dtmf_call(demo_ami, digits="", caller_num="+4930555000", did="7001",
                                    context="cti-inbound-curl", variables=hooks)
    d = await ivr.user_event("CtiHookRoute", vip.channel_id)
    assert (d["Source"], d["Customer"], d["Vip"], d["CtiLanguage"]) == ("hooks", "C-88", "1", "fr")
    r = await ivr.route_of(vip.channel_id)
    assert (r["Queue"], r["CtiPriority"], r["Customer"]) == ("vip", "10", "C-88")
    d = await ivr.user_event("CtiHookRoute", known.channel_id)
    assert (d["Source"], d["Customer"], d["Vip"], d["CtiLanguage"]) == ("hooks", "C-89", "0", "de")
    r = await ivr.route_of(known.channel_id)
    assert (r["Queue"], r["CtiPriority"], r["Customer"]) == ("support", "0", "C-89")
    d = await ivr.user_event("CtiHookRoute", unknown.channel_id)
    assert (d["Source"], d["Customer"], d["CtiLanguage"]) == ("hooks", "", "")
    assert (await ivr.route_of(unknown.channel_id))["Queue"] == "support"


async def test_with_the_hooks_unreachable_the_dialplan_takes_the_default_route(ivr: Ivr, demo_ami: AmiClient):
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-90", "Vera VIP", ["+4930555090"], language="fr", vip=True)
    await conn.close()
    nobody = f"http://127.0.0.1:{free_port()}"           # nothing listens there
    call = await place_dtmf_call(demo_ami, digits="", caller_num="+4930555090", did="7001",
                                 context="cti-inbound-curl", variables={"CTI_HTTP": nobody})
    d = await ivr.user_event("CtiHookRoute", call.channel_id)
    assert (d["Source"], d["Queue"], d["Customer"]) == ("default", "support", "")
    r = await ivr.route_of(call.channel_id)
    assert (r["Queue"], r["Customer"]) == ("support", "")      # a VIP, but nobody could say so
    # ... and the caller is routed: queued with the daemon's ACD or the app_queue fallback.
    await eventually(lambda: (c := ivr.core.model.calls.get(call.channel_id)) and c.queue, 20)


async def test_the_dialplan_sends_the_hook_secret(asterisk: None, database: str, tmp_path: Path,
                                                  demo_ami: AmiClient):
    d = await start_daemon(daemon_settings(database, tmp_path, hook_secret="s3cret-for-hooks"))
    try:
        conn = await asyncpg.connect(database)
        await save_customer(conn, "C-91", "Sam Secret", ["+4930555091"], language="en")
        await conn.close()
        seen: dict[str, dict[str, str]] = {}
        d.core.ami.add_listener(lambda f: seen.__setitem__(f.headers.get("Linkedid", ""), dict(f.headers))
                                if f.headers.get("UserEvent") == "CtiHookRoute" else None)
        http = f"http://127.0.0.1:{d.settings.http_port}"
        right = await place_dtmf_call(demo_ami, digits="", caller_num="+4930555091", did="7001",
                                      context="cti-inbound-curl",
                                      variables={"CTI_HTTP": http, "CTI_HOOK_SECRET": "s3cret-for-hooks"})
        wrong = await place_dtmf_call(demo_ami, digits="", caller_num="+4930555091", did="7001",
                                      context="cti-inbound-curl",
                                      variables={"CTI_HTTP": http, "CTI_HOOK_SECRET": "guess"})
        r = await eventually(lambda: seen.get(right.channel_id), 30)
        assert (r["Source"], r["Customer"]) == ("hooks", "C-91")
        r = await eventually(lambda: seen.get(wrong.channel_id), 30)
        assert (r["Source"], r["Customer"]) == ("default", "")      # 401: the default route
    finally:
        await d.stop()
