"""bench/failover.py's routing for a run (pure): N agents like the file's first, each on its
own simulated line, the queues untouched; a wrap-up set on every queue."""
from __future__ import annotations

import tomllib
from datetime import datetime, timezone

import pytest

from acd.config import parse_config
from bench.failover import ACD_CONFIG, routing_text, waiting_order


def test_as_it_is_without_arguments():
    assert routing_text() == ACD_CONFIG.read_text()


@pytest.mark.parametrize("agents", [1, 16, 50])
def test_n_agents_each_on_its_own_line_like_the_first_with_the_queues_kept(agents):
    original = tomllib.loads(ACD_CONFIG.read_text())
    made = tomllib.loads(routing_text(agents=agents))
    assert [a["id"] for a in made["agents"]] == [f"f{n:02d}" for n in range(1, agents + 1)]
    devices = [a["device"] for a in made["agents"]]
    assert len(set(devices)) == agents and devices[0] == original["agents"][0]["device"]
    first = {k: v for k, v in original["agents"][0].items() if k not in ("id", "name", "device")}
    assert all({k: v for k, v in a.items() if k not in ("id", "name", "device")} == first for a in made["agents"])
    assert made["queues"] == original["queues"]
    parse_config(made)                                   # the daemon would take it


def test_wrapup_on_every_queue_with_agents_too():
    made = tomllib.loads(routing_text(wrapup=15, agents=3))
    assert {q["wrapup_s"] for q in made["queues"]} == {15} and len(made["agents"]) == 3


def test_no_agents_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        routing_text(agents=0)


def _row(agent, answered):
    at = None if answered is None else datetime.fromtimestamp(answered, timezone.utc)
    return {"agent": agent if answered is not None else None, "agent_answered_at": at}


def test_the_waiting_callers_order_by_the_offer_their_agent_answered():
    # Waiting at the kill (t=100) in this order: c1, c2, c3, c4, c5.
    fates = {"c1": _row("a1", 105.0), "c2": _row("a2", 104.0), "c3": _row("a3", 106.0),
             "c4": _row(None, None), "c5": _row("a5", 101.5)}
    offered = {"c1": [(103.0, "a9"), (104.9, "a1")],    # a9 did not answer; a1 did, offered after c2's
               "c2": [(103.5, "a2")], "c3": [(105.5, "a3")], "c5": [(99.0, "a5")]}
    rang = {"c1": [(104.95, "")], "c2": [(103.6, "")], "c3": [(105.6, "")]}
    got = waiting_order(["c1", "c2", "c3", "c4", "c5"], 100.0, fates, offered, rang)
    assert got["order_compared"] == 3 and got["order_violations"] == 1 and got["order_examples"] == [("c1", "c2")]
    assert got["order_by_ring_violations"] == 1 and got["order_by_answer_time_violations"] == 1
    assert got["order_offered_before_kill"] == 1         # c5: its answered offer came before the kill
    assert got["order_not_answered"] == 1                # c4


def test_a_caller_answered_with_no_offer_naming_its_agent_is_counted_apart():
    fates = {"c1": _row("a1", 103.0), "c2": _row("a2", 104.0)}
    got = waiting_order(["c1", "c2"], 100.0, fates, {"c2": [(103.9, "a2")]}, {})
    assert got["order_offer_not_recorded"] == 1 and got["order_offer_not_recorded_answered_after_s"] == [3.0]
    assert got["order_compared"] == 1 and got["order_violations"] == 0
