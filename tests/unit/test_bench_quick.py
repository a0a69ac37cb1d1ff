"""bench/quick.py's comparison: figures of a run in, verdicts out (no run, no I/O)."""
from __future__ import annotations

import json
from pathlib import Path

from bench.quick import Figure, compare, spread

RECORDED = {
    "acd.arrival_p99_ms": {"value": 10.0, "better": "lower", "noise_floor": 0.2, "commit": "abc1234"},
    "ami.events_per_s": {"value": 100_000, "better": "higher", "noise_floor": 0.1, "commit": "def5678"},
}


def test_a_figure_worse_by_more_than_its_noise_is_flagged():
    (v,) = compare([Figure("acd.arrival_p99_ms", 13.0, noise=0.1)], RECORDED)
    assert v.worse and round(v.change, 2) == 0.30 and v.allowed == 0.2 and v.commit == "abc1234"


def test_a_figure_worse_within_the_runs_own_noise_is_not_flagged():
    (v,) = compare([Figure("acd.arrival_p99_ms", 13.0, noise=0.4)], RECORDED)
    assert not v.worse and v.allowed == 0.4


def test_the_recorded_noise_floor_applies_when_the_run_measured_less():
    (v,) = compare([Figure("acd.arrival_p99_ms", 11.5, noise=0.0)], RECORDED)
    assert not v.worse


def test_better_is_never_flagged_whichever_way_better_points():
    lower, higher = compare([Figure("acd.arrival_p99_ms", 2.0), Figure("ami.events_per_s", 300_000)], RECORDED)
    assert not lower.worse and lower.change < 0
    assert not higher.worse and higher.change < 0


def test_a_fall_of_a_higher_is_better_figure_is_flagged():
    (v,) = compare([Figure("ami.events_per_s", 80_000, noise=0.05)], RECORDED)
    assert v.worse and round(v.change, 2) == 0.20


def test_a_figure_never_recorded_is_shown_but_not_flagged():
    (v,) = compare([Figure("load.new_figure", 5.0, baseline=2.0)], RECORDED)
    assert not v.worse and v.recorded is None and v.change is None


def test_spread_is_relative_to_the_mean():
    assert spread(9.0, 11.0) == 0.2 and spread(0.0, 0.0) == 0.0


def test_the_recorded_file_names_a_commit_value_and_direction_for_every_figure():
    data = json.loads((Path(__file__).resolve().parents[2] / "bench" / "recorded.json").read_text())
    for name, rec in data["figures"].items():
        assert rec["better"] in ("lower", "higher"), name
        assert float(rec["value"]) >= 0 and len(rec["commit"]) >= 7, name
