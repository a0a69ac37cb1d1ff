"""The load harness's short version: a minute of real calls through the IVR, the ACD and
simulated agents, the daemon in its own process, WebSocket desktops for every agent and two
supervisors. Asserts what must hold at any speed: every call Asterisk accepted is in the
database once, closed, in order; every offer Asterisk made to an agent popped on that agent's
screen (and the supervisors'), and no screen-pop reached another agent. Timings are printed,
never asserted (bench/load.py and BENCHMARKS.md)."""
from __future__ import annotations

import json

from bench.load_callers import Mix
from bench.load_run import Options, run_load


async def test_a_minute_of_load_loses_no_call_and_no_screen_pop(asterisk, pg_admin):
    opts = Options(rate=1.0, duration=60, agents=6, supervisors=2, ring=(0, 1), talk=(2, 5),
                   mix=Mix(ivr_share=0.3, abandon_share=0.15), database_url=pg_admin, settle_s=0, idle_s=0,
                   seed=11)
    out = await run_load(opts)
    (step,) = out["steps"]
    print(json.dumps(step, indent=1, default=str))
    assert step["accepted"] >= 30 and step["originate_failed"] == 0
    assert step["integrity"]["ok"], step["integrity"]["explain"]
    assert step["integrity"]["placed"] == step["accepted"] == step["integrity"]["rows"]
    pops = step["screenpop"]
    assert pops["offers"] >= 20, pops                      # the agents were offered calls
    assert pops["missing"] == 0, pops["missing_sample"]     # each offer popped at that agent's client
    assert pops["wrong_agent"] == 0 and pops["supervisor_missing"] == 0
    assert step["ws"]["screenpops_dropped"] == 0


async def test_every_call_event_reaches_every_connected_supervisor(asterisk, pg_admin):
    """The fan-out run's short version: 60 supervisors on lean clients in two processes,
    a few calls; every call event must reach all of them, nobody dropped as slow, and
    the baseline (one frame to as many sockets) must complete too."""
    from bench.load_fanout import run_fanout

    opts = Options(rate=0.5, duration=15, agents=4, supervisors=0, ring=(0, 1), talk=(2, 4),
                   mix=Mix(ivr_share=0.3, abandon_share=0.0), database_url=pg_admin, settle_s=0, idle_s=0, seed=5)
    out = await run_fanout(opts, 60, 2)
    print(json.dumps({k: v for k, v in out.items() if k != "by_kind"}, indent=1, default=str))
    assert out["connected"] == 60 and out["calls_placed"] >= 3
    assert out["call_events_seen"] >= 10
    assert out["events_reaching_every_client"] == out["call_events_seen"]
    assert out["slow_drops"] == 0
    assert out["direct_writes"] > 0           # the flush wrote, not only the writer tasks
    assert out["floor"]["rounds_complete"] == out["floor"]["rounds"]
