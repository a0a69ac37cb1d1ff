"""A warm standby (docs/ha.md, "Warm standby"): two real daemons on one Asterisk and one
PostgreSQL; the standby's ACD shadows the leader's. The leader is killed (SIGKILL) while two
callers wait, one agent is in wrap-up and the other on a break: the new leader keeps both
agents' states and the wrap-up from memory, offers the callers in their original order, and
offers no agent two calls."""
from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import eventually, hangup_all
from tests.integration.test_acd import call, ended_rows, fetch
from tests.integration.test_api import PASSWORD, add_user, bearer
from tests.integration.test_ha import _answered, _epoch_in_force, _ha, _role, _waiting, running_pair

AGENT = {"a1": "Local/agent1@cti-demo-agents", "a2": "Local/agent2@cti-demo-agents"}
ROUTING = 'skills = ["sales"]\n' + "".join(
    f'[[agents]]\nid = "{a}"\nname = "Agent {a}"\ndevice = "{d}/n"\n'
    f'skills = {{ sales = 5 }}\nqueues = {{ sales = {{}} }}\nauto_login = true\n' for a, d in AGENT.items()
) + '[[queues]]\nid = "sales"\nring_timeout_s = 15\nwrapup_s = 25\n'


async def _acd(d) -> dict[str, Any]:
    got = await d.health()
    return {} if got is None else got[1].get("acd") or {}


async def _login(http: aiohttp.ClientSession, d) -> dict[str, str]:
    async with http.post(d.url + "/api/login", json={"username": "root", "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        return bearer((await r.json())["token"])


async def _agents(http: aiohttp.ClientSession, d, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each agent as the node's router holds it (the read API answers on a standby too)."""
    async with http.get(d.url + "/api/acd/state", headers=auth) as r:
        assert r.status == 200, await r.text()
        return {a["agent_id"]: a for a in (await r.json())["agents"]}


def _offers(events: list[dict[str, Any]], since: int = 0) -> list[tuple[str, str]]:
    """(call, agent) of every Dial of a caller to one of our agents, in Asterisk's order."""
    out = []
    for e in events[since:]:
        if e.get("Event") != "DialBegin":
            continue
        for agent, device in AGENT.items():
            if e.get("DestChannel", "").startswith(device):
                out.append((e.get("Linkedid"), agent))
    return out


@pytest.fixture
async def warm_pair(asterisk, database, tmp_path, demo_ami):
    async def shadowing(n2) -> bool:
        ha, acd = await _ha(n2), await _acd(n2)
        return ha.get("role") == "standby" and ha.get("holder") == "n1" and acd.get("shadowing") is True

    async with running_pair(database, tmp_path, demo_ami, ROUTING, talk=3, standby_ready=shadowing,
                            what="n2 a standby shadowing n1's ACD") as nodes:
        yield nodes


async def test_a_warm_standby_keeps_wrapup_and_break_and_offers_in_order(warm_pair, demo_ami, database):
    n1, n2, events = warm_pair
    epoch1 = (await _ha(n1))["epoch"]
    await eventually(lambda: _epoch_in_force(demo_ami, epoch1), timeout=10, what="Asterisk holds n1's epoch")
    # a2 takes a break at the leader (its API); the standby reads it from the state log.
    await add_user(database, "root", "admin")
    http = aiohttp.ClientSession()
    try:
        await _run(http, n1, n2, events, demo_ami, database, epoch1)
    finally:
        await http.close()


async def _run(http, n1, n2, events, demo_ami, database, epoch1) -> None:
    on_n1 = await _login(http, n1)
    async with http.post(n1.url + "/api/acd/agents/a2/state", json={"action": "not_ready", "reason": "lunch"},
                         headers=on_n1) as r:
        assert r.status == 200, await r.text()
    on_n2 = await _login(http, n2)

    # a1 answers a first caller; two more callers queue behind it, in order.
    first = await call(demo_ami, "sales", 41)
    await eventually(lambda: _answered(events, first.channel_id), timeout=20, what="a1 talking")
    second = await call(demo_ami, "sales", 42)
    await eventually(lambda: _waiting(events, second.channel_id), timeout=15, what="the second caller waiting")
    third = await call(demo_ami, "sales", 43)
    await eventually(lambda: _waiting(events, third.channel_id), timeout=15, what="the third caller waiting")

    # The shadow holds what the leader holds: a1 in wrap-up after its call, a2 on its break,
    # two callers waiting, and nobody offered anything by it.
    async def shadow_has_it() -> dict[str, Any] | None:
        acd = await _acd(n2)
        return acd if acd.get("agents") == {"wrapup": 1, "not_ready": 1} and acd.get("waiting") == 2 else None

    shadow = await eventually(shadow_has_it, timeout=15, what="the shadow: a1 in wrap-up, a2 on a break, 2 waiting")
    assert shadow["followed"] >= 1 and shadow["offers_sent"] == 0
    assert _offers(events) == [(first.channel_id, "a1")]
    before = await _agents(http, n2, on_n2)
    assert (before["a2"]["state"], before["a2"]["reason"]) == ("not_ready", "lunch")
    assert before["a1"]["state"] == "wrapup" and before["a1"]["wrapup_ends_at"] is not None
    mark = len(events)

    await n1.kill()
    ha = await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over")
    assert ha["epoch"] > epoch1

    async def took_over() -> dict[str, Any] | None:
        acd = await _acd(n2)
        return acd if acd.get("takeover") is not None else None

    acd = await eventually(took_over, timeout=10, what="n2's ACD took over from its shadow")
    # From memory: the wrap-up goes on (a cold start makes a1 available at once) and the
    # break holds; nothing was dropped or adopted; nothing offered yet (nobody free).
    assert acd["agents"] == {"wrapup": 1, "not_ready": 1}, acd
    assert (acd["takeover"]["dropped"], acd["takeover"]["adopted"], acd["takeover"]["waiting"]) == (0, 0, 2)
    assert not acd["shadowing"]
    assert _offers(events, mark) == []
    after = await _agents(http, n2, on_n2)
    assert after["a1"]["wrapup_ends_at"] == before["a1"]["wrapup_ends_at"]     # the same timer
    assert (after["a2"]["state"], after["a2"]["reason"], after["a2"]["since"]) == \
        (before["a2"]["state"], before["a2"]["reason"], before["a2"]["since"])

    # When a1's wrap-up ends, the caller who waited longest is offered first, to a1 only.
    await eventually(lambda: _offers(events, mark), timeout=40, what="the first offer of the new leader")
    await eventually(lambda: _answered(events, second.channel_id), timeout=20, what="a1 talking to the second caller")
    assert _offers(events, mark) == [(second.channel_id, "a1")]     # not the third; nobody twice; a2 on its break

    hangup_all()
    rows = await ended_rows(database, [first.channel_id, second.channel_id, third.channel_id], timeout=40)
    assert rows[first.channel_id]["agent"] == "a1" and rows[second.channel_id]["agent"] == "a1"
    assert rows[third.channel_id]["agent"] is None


async def test_a_warm_standby_keeps_the_leaders_new_configuration_and_callback_across_a_kill(warm_pair, demo_ami,
                                                                                              database):
    """The leader puts a new configuration version in force and files a callback for an
    abandoned caller; the standby's shadow holds both before the kill (its own read API);
    the new leader runs that version and offers the callback."""
    n1, n2, events = warm_pair
    await add_user(database, "root", "admin")
    async with aiohttp.ClientSession() as http:
        on_n1, on_n2 = await _login(http, n1), await _login(http, n2)
        for agent in ("a1", "a2"):
            async with http.post(n1.url + f"/api/acd/agents/{agent}/state", json={"action": "not_ready",
                                                                                  "reason": "meeting"},
                                 headers=on_n1) as r:
                assert r.status == 200, await r.text()
        # A caller gives up while nobody is ready: abandoned.
        gone = await call(demo_ami, "sales", 61, patience=2)
        await eventually(lambda: _waiting(events, gone.channel_id), timeout=15, what="the caller waiting")
        abandoned = await eventually(lambda: fetch(database, "SELECT 1 FROM calls WHERE call_id = $1 AND abandoned",
                                                   gone.channel_id), timeout=20, what="the call stored abandoned")
        assert abandoned

        # A new configuration version at the leader (a longer wrap-up).
        async with http.get(n1.url + "/api/acd/config", headers=on_n1) as r:
            assert r.status == 200, await r.text()
            document = (await r.json())["document"]
        document["queues"][0]["wrapup_s"] = 41
        async with http.put(n1.url + "/api/acd/config", json=document, headers=on_n1) as r:
            assert r.status == 200, await r.text()
            version = (await r.json())["version"]
        # The supervisor's call-back for the abandoned caller, at the leader.
        async with http.post(n1.url + "/api/supervisor/callbacks", json={"call_id": gone.channel_id},
                             headers=on_n1) as r:
            assert r.status == 201, await r.text()

        async def shadow_holds_both() -> dict[str, Any] | None:
            async with http.get(n2.url + "/api/acd/state", headers=on_n2) as r:
                state = await r.json() if r.status == 200 else {}
            waiting = {w["call_id"]: w for w in state.get("waiting", [])}
            ok = state.get("config_version") == version and waiting.get(gone.channel_id, {}).get("callback")
            return state if ok else None

        await eventually(shadow_holds_both, timeout=15, what="the standby's shadow: the new version and the callback")
        async with http.get(n2.url + "/api/acd/config", headers=on_n2) as r:
            assert (await r.json())["document"]["queues"][0]["wrapup_s"] == 41

        await n1.kill()
        await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over")
        async with http.get(n2.url + "/api/acd/config", headers=on_n2) as r:
            got = await r.json()
            assert got["version"] == version and got["document"]["queues"][0]["wrapup_s"] == 41
        # a1 ready at the new leader: the callback it held is offered to a1.
        async def ready() -> bool:
            async with http.post(n2.url + "/api/acd/agents/a1/state", json={"action": "ready"}, headers=on_n2) as r:
                return r.status == 200

        await eventually(ready, timeout=10, what="a1 ready at n2")
        rows = await eventually(lambda: fetch(database, "SELECT status, agent_id, attempts FROM callbacks "
                                                        "WHERE callback_id = $1 AND agent_id = 'a1'", gone.channel_id),
                                timeout=20, what="the callback offered to a1 by the new leader")
        assert rows[0]["status"] in ("dialing", "connected", "failed", "pending")
