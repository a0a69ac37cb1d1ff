"""Agents' phones in the sandbox: a real SIP phone (baresip) and a real browser phone (Chromium)
provisioned by the daemon, offered ACD calls, carrying audio; unreachable phones leave routing."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from cti.demo import place_call
from phone.gateway import PHONES
from tests.integration.conftest import SANDBOX, daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.sipphones import Baresip

ACD_PHONES = Path(__file__).with_name("acd-phones.toml")
# The sandbox root in use (a private one under scripts/test-isolated).
PJSIP_D = Path(os.environ.get("CTI_SANDBOX_ROOT") or "/var/cache/cti/asterisk-root") / "etc/asterisk/pjsip.d"


def cli(command: str) -> str:
    return subprocess.run([str(SANDBOX), "cli", command], capture_output=True, text=True, timeout=30).stdout


def rtp_counts(device: str) -> tuple[int, int] | None:
    """(packets received from, packets sent to) the device's channel, from
    ``pjsip show channelstats`` (it lists only bridged channels)."""
    for line in cli("pjsip show channelstats").splitlines():
        if f"PJSIP/{device}-" in line or f" {device}-" in line:
            numbers = [int(n) for n in re.findall(r"(?<![\w.:/-])\d+(?![\w.:])", line)]
            # Columns: ... Codec | Receive: Count Lost Pct Jitter | Transmit: Count Lost Pct Jitter | RTT
            found = re.search(r"\s(ulaw|alaw|opus)\s+(\d+)\s+\d+\s+\d+\s+[\d.]+\s+(\d+)", line)
            if found:
                return int(found.group(2)), int(found.group(3))
            return (numbers[0], numbers[4]) if len(numbers) >= 5 else None
    return None


@pytest.fixture
async def phones(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    conf = PJSIP_D / "cti-phones.conf"
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_PHONES, phone_pjsip_conf=conf))
    try:
        yield d
    finally:
        await d.stop()
        conf.unlink(missing_ok=True)
        cli("module reload res_pjsip.so")


def service(d):
    return d.runner.app[PHONES]


def agent(d, agent_id="p1"):
    return d.acd.router.agent_state(agent_id)


async def test_baresip_is_offered_an_acd_call_auto_answers_and_carries_audio(phones, demo_ami, tmp_path):
    d = phones
    s = service(d)
    await eventually(lambda: s.listed, timeout=10, what="contacts listed")
    password = await s.add_device("sp-desk1", "sip", label="desk 1")
    assert "md5_cred" in (PJSIP_D / "cti-phones.conf").read_text()
    assert password not in (PJSIP_D / "cti-phones.conf").read_text()
    await s.bind("p1", "sp-desk1")
    await s.set_options("p1", auto_answer=True, zip_tone=True)
    # Seated at a phone that has not registered: the agent cannot be offered calls, and says why.
    await eventually(lambda: (agent(d).state, agent(d).reason) == ("not_ready", "unreachable"), timeout=10,
                     what="p1 unreachable before the phone registers")
    assert agent(d).device == "PJSIP/sp-desk1"

    phone = Baresip(tmp_path / "baresip", "sp-desk1", password)
    await phone.start()
    try:
        await eventually(lambda: s.reach.up("sp-desk1"), timeout=15, what=f"baresip registered: {phone.output()}")
        await eventually(lambda: agent(d).state == "available", timeout=5, what="p1 available again")

        placed = await place_call(demo_ami, caller_num="+442000000001", caller_name="Phone test", patience=60,
                                  context="cti-demo-direct", caller_context="cti-demo-talker",
                                  variables={"CTI_QUEUE": "phones"})
        await eventually(lambda: agent(d).state == "on_call", timeout=20, what="baresip answered the offer")
        call = d.core.model.calls.get(placed.channel_id)
        assert call is not None and call.agent == "p1"

        async def media_both_ways():
            counts = rtp_counts("sp-desk1")
            return counts if counts and counts[0] > 50 and counts[1] > 50 else None

        rx, tx = await eventually(media_both_ways, timeout=20, interval=0.5,
                                  what="RTP from and to the phone in pjsip show channelstats")
        assert rx > 50 and tx > 50
        hangup_all()
        await eventually(lambda: agent(d).state == "available", timeout=15, what="p1 back after the call")

        # Unregistering (baresip stops) takes the agent out of routing.
        await phone.stop()
        await eventually(lambda: not s.reach.up("sp-desk1"), timeout=15, what="contact removed")
        await eventually(lambda: (agent(d).state, agent(d).reason) == ("not_ready", "unreachable"), timeout=5,
                         what="p1 unreachable after unregistering")
        second = await place_call(demo_ami, caller_num="+442000000002", caller_name="Nobody", patience=30,
                                  context="cti-demo-direct", variables={"CTI_QUEUE": "phones"})
        await eventually(lambda: any(w.call_id == second.channel_id for w in d.acd.router.waiting_calls()),
                         timeout=10, what="the second call waits")
        waiting = next(w for w in d.acd.router.waiting_calls() if w.call_id == second.channel_id)
        assert waiting.offered_to is None and waiting.status == "waiting"
    finally:
        await phone.stop()
        hangup_all()


async def add_agent_user(dsn: str, username: str, agent_id: str, password: str) -> None:
    import asyncpg

    from api import accounts
    from api.auth import Passwords

    conn = await asyncpg.connect(dsn)
    try:
        await accounts.create_user(conn, username=username, display_name=username.title(), role="agent",
                                   password_hash=Passwords().hash(password), agent_id=agent_id)
    finally:
        await conn.close()


async def test_the_browser_phone_registers_receives_an_acd_call_and_answers_it_from_the_page(
        phones, demo_ami, database, browser):
    d = phones
    s = service(d)
    # Options live in Asterisk's AstDB and outlive a test: the page must ring, not answer by itself.
    await s.set_options("p1", auto_answer=False, zip_tone=False)
    await add_agent_user(database, "pia", "p1", "correct horse battery")
    dtmf: list[str] = []
    d.core.ami.add_listener(lambda f: dtmf.append(f.headers.get("Digit", ""))
                            if f.headers.get("Event") == "DTMFEnd"
                            and f.headers.get("Channel", "").startswith("PJSIP/web-p1-") else None)

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"http://127.0.0.1:{d.settings.http_port}/phone/")
    await page.fill("input[name=username]", "pia")
    await page.fill("input[name=password]", "correct horse battery")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#registration:text-is('registered')", timeout=20_000)
    assert await page.inner_text("#error") == "", errors
    # The browser phone is now the agent's seat, and it can ring.
    assert agent(d).device == "PJSIP/web-p1"
    await eventually(lambda: s.reach.up("web-p1") and agent(d).state == "available", timeout=10,
                     what="p1 available at the browser phone")

    placed = await place_call(demo_ami, caller_num="+442000000003", caller_name="Web test", patience=60,
                              context="cti-demo-direct", caller_context="cti-demo-talker",
                              variables={"CTI_QUEUE": "phones"})
    await page.wait_for_selector("#call:text-is('ringing')", timeout=20_000)
    assert not await page.is_disabled("#answer")
    await page.click("#answer")
    await page.wait_for_selector("#call:text-is('talking')", timeout=20_000)
    await eventually(lambda: agent(d).state == "on_call", timeout=10, what="p1 on the call")

    # Asterisk bridged the caller with the browser phone's channel.
    reply = await d.core.ami.send("BridgeList", shape="list", timeout=10)
    bridges = [f.headers["BridgeUniqueid"] for f in reply.events if f.headers.get("Event") == "BridgeListItem"]
    members: list[str] = []
    for b in bridges:
        info = await d.core.ami.send("BridgeInfo", {"BridgeUniqueid": b}, shape="list", timeout=10)
        chans = [f.headers.get("Channel", "") for f in info.events if f.headers.get("Event") == "BridgeInfoChannel"]
        if any(c.startswith("PJSIP/web-p1-") for c in chans):
            members = chans
    assert any(c.startswith("PJSIP/web-p1-") for c in members) and len(members) == 2, members
    assert d.core.model.calls[placed.channel_id].agent == "p1"

    async def audio_in():
        counts = rtp_counts("web-p1")
        return counts if counts and counts[0] > 20 and counts[1] > 20 else None

    await eventually(audio_in, timeout=20, interval=0.5, what="RTP both ways with the browser")

    # DTMF, mute and hold from the page.
    await page.click("#keypad button:text('5')")
    await eventually(lambda: "5" in dtmf, timeout=10, what="DTMF 5 from the page reached Asterisk")
    await page.click("#mute")
    assert await page.get_attribute("#mute", "aria-pressed") == "true"
    await page.click("#hold")
    await page.wait_for_selector("#hold[aria-pressed=true]", timeout=10_000)
    await page.click("#hold")
    await page.wait_for_selector("#hold[aria-pressed=false]", timeout=10_000)

    await page.click("#hangup")
    await page.wait_for_selector("#call:text-is('ended')", timeout=10_000)
    await eventually(lambda: agent(d).state == "available", timeout=15, what="p1 free after hanging up")
    assert errors == []


async def test_a_refused_microphone_is_explained_on_the_page(phones, database):
    from playwright.async_api import async_playwright

    from tests.integration.conftest import CHROMIUM

    await add_agent_user(database, "pia", "p1", "correct horse battery")
    async with async_playwright() as pw:
        # No fake-UI flag: Chromium asks for the microphone, and the context grants nothing.
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--use-fake-device-for-media-stream",
                                           "--deny-permission-prompts"])
        try:
            page = await (await b.new_context(permissions=[])).new_page()
            await page.goto(f"http://127.0.0.1:{phones.settings.http_port}/phone/")
            await page.fill("input[name=username]", "pia")
            await page.fill("input[name=password]", "correct horse battery")
            await page.click("button[type=submit]")
            await page.wait_for_selector("#error:not(:empty)", timeout=20_000)
            assert "Microphone access was refused" in await page.inner_text("#error")
            assert await page.inner_text("#registration") == "off"
        finally:
            await b.close()


async def test_phone_api_roles_bad_bodies_and_no_digest_in_answers(phones, database):
    import aiohttp

    d = phones
    await add_agent_user(database, "pia", "p1", "correct horse battery")
    from api import accounts
    from api.auth import Passwords
    import asyncpg

    conn = await asyncpg.connect(database)
    try:
        await accounts.create_user(conn, username="root", display_name="Root", role="admin",
                                   password_hash=Passwords().hash("correct horse battery"))
    finally:
        await conn.close()
    base = f"http://127.0.0.1:{d.settings.http_port}"
    async with aiohttp.ClientSession() as http:
        async def token(user):
            async with http.post(f"{base}/api/login", json={"username": user, "password": "correct horse battery"}) as r:
                return {"Authorization": f"Bearer {(await r.json())['token']}"}

        admin, pia = await token("root"), await token("pia")
        hostile = {"device_id": "desk\r\n[evil]", "kind": "sip"}
        async with http.post(f"{base}/api/phone/devices", json=hostile, headers=admin) as r:
            assert r.status == 422
            assert (await r.json())["details"][0]["field"] == "body.device_id"
        async with http.post(f"{base}/api/phone/devices", json={"device_id": "desk-9"}, headers=pia) as r:
            assert r.status == 403
        async with http.post(f"{base}/api/phone/devices", json={"device_id": "desk-9", "label": "hall"},
                             headers=admin) as r:
            assert r.status == 201
            password = (await r.json())["password"]
        async with http.get(f"{base}/api/phone/devices", headers=admin) as r:
            text = await r.text()
            assert "desk-9" in text and password not in text and "ha1" not in text and "md5" not in text
        # An agent seats only themselves; the seat moves their offers.
        async with http.put(f"{base}/api/phone/agents/p1/seat", json={"device_id": "desk-9"}, headers=pia) as r:
            assert r.status == 200, await r.text()
            view = await r.json()
            assert view["device"] == "PJSIP/desk-9" and view["reachable"] is False
        async with http.put(f"{base}/api/phone/agents/p1/seat", json={"device_id": "nope"}, headers=pia) as r:
            assert r.status == 404 and (await r.json())["error_id"] == "unknown_device"
        async with http.put(f"{base}/api/phone/agents/p1/options", json={"auto_answer": "maybe"},
                            headers=pia) as r:
            assert r.status == 422
        # Unreachable: ready is refused with the reason.
        await eventually(lambda: agent(d).reason == "unreachable", timeout=10, what="p1 unreachable")
        async with http.post(f"{base}/api/acd/agents/p1/state", json={"action": "ready"}, headers=pia) as r:
            assert r.status == 409 and "unreachable" in (await r.json())["message"]
        async with http.post(f"{base}/api/phone/agents/p1/webrtc", headers=admin) as r:
            assert r.status == 403  # a browser phone's secret goes to its own agent only
        async with http.put(f"{base}/api/phone/agents/p1/seat", json={"device_id": None}, headers=pia) as r:
            assert (await r.json())["device"] == "Local/agent1@cti-demo-agents/n"
        await eventually(lambda: agent(d).state == "available", timeout=10, what="p1 back at the configured device")
