"""bench/failover.py's routing for a run (pure): N agents like the file's first, each on its
own simulated line, the queues untouched; a wrap-up set on every queue."""
from __future__ import annotations

import tomllib

import pytest

from acd.config import parse_config
from bench.failover import ACD_CONFIG, routing_text


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
