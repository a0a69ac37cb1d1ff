"""The agent desktop follows the leader of an HA pair by itself (docs/ha.md, "Clients follow the
leader"), in headless Chromium against two real daemons without a broker: loaded from the
standby, it moves to the leader the hello names and commands it there (cross-origin, CORS);
when the leader is killed it comes back to the other node once that one leads."""
from __future__ import annotations

import asyncio
from pathlib import Path

from bench.harness import DaemonProcess, daemon_env, free_port
from tests.integration.conftest import eventually, hangup_all
from tests.integration.test_api import PASSWORD, add_user
from tests.integration.test_ha import ROUTING, _role

CLUSTER = "it-desk"


def _node(database: str, tmp: Path, name: str, routing: Path, port: int, peers: str) -> DaemonProcess:
    state = tmp / name
    state.mkdir()
    env = daemon_env(database, state, acd_config=routing, ha_cluster=CLUSTER, ha_node=name, acd_announce_every=0,
                     agi_port=free_port(), http_port=port, ha_peers=peers)
    return DaemonProcess(env, tmp / f"{name}.log")


async def test_the_desktop_moves_to_the_leader_and_back_to_the_survivor(asterisk, database, tmp_path, browser,
                                                                        demo_ami):
    tmp_path.chmod(0o755)
    hangup_all()
    await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    routing = tmp_path / "acd.toml"
    routing.write_text(ROUTING)
    p1, p2 = free_port(), free_port()
    peers = f"n1=http://127.0.0.1:{p1},n2=http://127.0.0.1:{p2}"
    n1 = _node(database, tmp_path, "n1", routing, p1, peers)
    n2 = _node(database, tmp_path, "n2", routing, p2, peers)
    page = None
    try:
        await n1.start()
        await eventually(lambda: _role(n1, "leader"), timeout=20, what="n1 leading")
        await n2.start()

        async def standing_by() -> bool:
            ha = await _role(n2, "standby")
            return ha is not None and ha["holder"] == "n1"

        await eventually(standing_by, timeout=10, what="n2 a standby that has read n1's lease")
        await add_user(database, "ada", "agent", agent_id="a1")

        page = await browser.new_page()
        await page.goto(n2.url + "/agent/")           # the standby's page
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        # The standby's hello names the leader: the desktop moves there (a resync: no shared stream).
        # (Polled from here: the page's CSP forbids the eval wait_for_function uses.)
        async def on_n1() -> bool:
            base = await page.evaluate("sessionStorage.getItem('base')")
            return base == n1.url and (await page.text_content("#link") or "").startswith("online")

        await eventually(on_n1, timeout=15, what="the desktop online on the leader n1")
        # A command from the page goes to the leader, cross-origin.
        item = await page.evaluate("window.ctiApi('POST', '/api/acd/agents/a1/state', "
                                   "{action: 'not_ready', reason: 'break'})")
        assert item["state"] == "not_ready"

        # The leader dies: the desktop leaves it for the other node, and stays once that one leads.
        await n1.kill()
        await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over")
        async def on_n2() -> bool:
            base = await page.evaluate("sessionStorage.getItem('base')")
            return base is None and (await page.text_content("#link") or "").startswith("online")

        await eventually(on_n2, timeout=40, what="the desktop online on n2, its page's own node")
        await asyncio.sleep(1.0)
        assert await on_n2()                            # and it stays there: n2 leads
        item = await page.evaluate("window.ctiApi('POST', '/api/acd/agents/a1/state', {action: 'ready'})")
        assert item["state"] == "available"       # n2 leads, and kept the state n1 stored
        hello_ha = await page.evaluate("JSON.parse(sessionStorage.getItem('nodes'))")
        assert hello_ha == [n1.url, n2.url]           # from n2's hello: the other node first
    finally:
        if page is not None:
            await page.close()
        for d in (n1, n2):
            await d.stop(timeout=20)
        hangup_all()
        await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
