"""The ACD's API against the real daemon: the routing configuration read, replaced
live (a waiting caller keeps their place, an invalid document is refused whole)
and kept across a restart; agents' state requests and who may make them."""
from __future__ import annotations

import aiohttp
import pytest

from cti.demo import place_call, set_demo_times
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def started(database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
    return d


async def test_config_replaced_live_keeps_the_waiting_caller_and_outlives_a_restart(
        asterisk, database, tmp_path, demo_ami, http):
    hangup_all()
    d = await started(database, tmp_path)
    await add_user(database, "root", "admin")
    await add_user(database, "sam", "supervisor", team="floor")
    await add_user(database, "ada", "agent", "a1", team="floor")
    await add_user(database, "cleo", "agent", "a3", team="floor")
    await add_user(database, "dev", "agent", "a4", team="floor")
    try:
        admin, sup, ada = [bearer(await login(http, d, u)) for u in ("root", "sam", "ada")]
        for agent in ("a1", "a2", "a3", "a4", "a5"):
            d.acd.agent_request(agent, "set_not_ready", "test")
        async with http.get(url(d, "/api/acd/config"), headers=sup) as r:
            assert r.status == 200
            current = await r.json()
        first_version = current["version"]
        assert first_version is not None and {q["id"] for q in current["document"]["queues"]} >= {"billing"}
        caller = await place_call(demo_ami, caller_num="+442070000001", caller_name="Kept", patience=60,
                                  context="cti-demo-direct", variables={"CTI_QUEUE": "billing"})
        await eventually(lambda: caller.channel_id in d.acd.calls, timeout=10, what="caller waiting")
        arrived = d.acd.router.waiting_calls()[0].arrived_at

        # An agent and a supervisor may not replace it; a broken document is refused whole.
        doc = current["document"]
        for headers, status in ((ada, 403), (sup, 403)):
            async with http.put(url(d, "/api/acd/config"), json=doc, headers=headers) as r:
                assert r.status == status
        broken = {**doc, "queues": [{**q, "requirements": [{"skill": "nope", "min_level": 1}]}
                                    if q["id"] == "billing" else q for q in doc["queues"]]}
        async with http.put(url(d, "/api/acd/config"), json=broken, headers=admin) as r:
            assert r.status == 422
            assert "nope" in await r.text()
        assert d.acd.config_version == first_version

        # Billing now wants level 7: only a4 (billing 8) qualifies, not a3 (billing 6).
        stricter = {**doc, "queues": [{**q, "requirements": [{"skill": "billing", "min_level": 7}]}
                                      if q["id"] == "billing" else q for q in doc["queues"]]}
        async with http.put(url(d, "/api/acd/config"), json=stricter, headers=admin) as r:
            assert r.status == 200, await r.text()
            saved = await r.json()
        assert saved["version"] > first_version and saved["calls_kept"] == 1
        (still,) = d.acd.router.waiting_calls()
        assert (still.call_id, still.arrived_at) == (caller.channel_id, arrived)

        # a3 goes ready (by the API, as a supervisor): not qualified any more, the caller waits.
        async with http.post(url(d, "/api/acd/agents/a3/state"), json={"action": "ready"}, headers=sup) as r:
            assert r.status == 200 and (await r.json())["state"] == "available"
        assert d.acd.router.waiting_calls()[0].status == "waiting"
        # Ada may change only her own state.
        async with http.post(url(d, "/api/acd/agents/a4/state"), json={"action": "ready"}, headers=ada) as r:
            assert r.status == 403
        async with http.post(url(d, "/api/acd/agents/a1/state"), json={"action": "not_ready"}, headers=ada) as r:
            assert r.status == 422  # a reason is needed
        async with http.post(url(d, "/api/acd/agents/a4/state"), json={"action": "ready"}, headers=sup) as r:
            assert r.status == 200
        await eventually(lambda: d.acd.router.agent_state("a4").call_id == caller.channel_id, timeout=10,
                         what="a4 (qualified) takes the caller")
        async with http.get(url(d, "/api/acd/state"), headers=sup) as r:
            state = await r.json()
        a4 = next(a for a in state["agents"] if a["agent_id"] == "a4")
        assert a4["call_id"] == caller.channel_id and a4["queue_id"] == "billing"
        async with http.get(url(d, "/api/acd/config/versions"), headers=sup) as r:
            versions = (await r.json())["versions"]
        assert [v["source"] for v in versions[:2]] == ["api:root", f"file:{ACD_TEST}"]
    finally:
        await d.stop()
        await set_demo_times(demo_ami)

    # The file did not change: the version saved through the API stays in force.
    d = await started(database, tmp_path)
    try:
        assert d.acd.config_version == saved["version"]
        billing = next(q for q in d.acd.config.queues if q.id == "billing")
        assert [(r.skill, r.min_level) for r in billing.requirements] == [("billing", 7)]
    finally:
        await d.stop()
