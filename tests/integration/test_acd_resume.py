"""Agents keep their state across a daemon that died (issue 19): a second daemon on the
same database starts each agent in its last stored state (acd.resume), not logged in afresh."""
from __future__ import annotations

from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.test_acd import call, ended_rows, fetch
from cti.demo import set_demo_times

# Three agents of one queue, all logged in at start (auto_login).
ROUTING = 'skills = ["sales"]\n' + "".join(
    f'[[agents]]\nid = "a{i}"\nname = "Agent {i}"\ndevice = "Local/agent{i}@cti-demo-agents/n"\n'
    f'skills = {{ sales = 5 }}\nqueues = {{ sales = {{}} }}\nauto_login = true\n' for i in (1, 2, 3)
) + '[[queues]]\nid = "sales"\nring_timeout_s = 15\nwrapup_s = 1\nselection = "longest_idle"\n'


async def test_a_break_and_a_logout_outlive_a_daemon_that_died(asterisk, database, tmp_path, demo_ami):
    hangup_all()
    routing = tmp_path / "acd.toml"
    routing.write_text(ROUTING)
    settings = daemon_settings(database, tmp_path, acd_config=routing, acd_announce_every=0)
    first = await start_daemon(settings)
    try:
        await eventually(lambda: first.acd is not None and first.acd.heartbeats > 0, timeout=10)
        first.acd.agent_request("a1", "set_not_ready", "lunch")
        first.acd.agent_request("a2", "logout")
        lunch_since = first.acd.router.agent_state("a1").since
        assert first.acd.router.agent_state("a3").state == "available"

        async def stored():
            rows = await fetch(database, "SELECT agent_id FROM agent_states WHERE (agent_id, state, reason) IN "
                               "(('a1', 'not_ready', 'lunch'), ('a2', 'logged_out', 'logout'))")
            return len(rows) == 2 or None

        await eventually(stored, timeout=10, what="the break and the logout stored")
        first.acd.handover = False  # as if it died
    finally:
        await first.stop()

    second = await start_daemon(settings)
    try:
        acd = second.acd
        await eventually(lambda: acd is not None and acd.heartbeats > 0, timeout=10)
        a1, a2, a3 = (acd.router.agent_state(a) for a in ("a1", "a2", "a3"))
        assert (a1.state, a1.reason) == ("not_ready", "lunch")
        assert abs(a1.since - lunch_since) < 1e-5      # time on the break goes on
        assert a2.state == "logged_out"
        assert a3.state == "available"
        # The state log goes on unbroken: no new row for the break.
        rows = await fetch(database, "SELECT count(*) AS n FROM agent_states WHERE agent_id = 'a1' "
                           "AND state = 'not_ready'")
        assert rows[0]["n"] == 1

        await set_demo_times(demo_ami, ring=(0, 0), talk=(1, 1))
        caller = await call(demo_ami, "sales", 1)
        (row,) = (await ended_rows(database, [caller.channel_id], timeout=40)).values()
        assert row["agent"] == "a3" and not row["abandoned"]
        offers = await fetch(database, "SELECT data->>'agent' AS agent FROM call_events "
                             "WHERE call_id = $1 AND kind = 'acd.offer'", caller.channel_id)
        assert [r["agent"] for r in offers] == ["a3"]
        assert acd.router.agent_state("a1").state == "not_ready"
        assert acd.router.agent_state("a2").state == "logged_out"
    finally:
        await second.stop()
        await set_demo_times(demo_ami)
