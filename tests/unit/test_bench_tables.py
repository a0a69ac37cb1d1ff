"""bench/tables.py: the benchmarks' percentiles, median times and markdown tables."""
from __future__ import annotations

from bench.tables import markdown_table, median_time, pct, percentiles


def test_percentiles_are_by_nearest_rank_scaled_and_rounded():
    xs = [i / 1000 for i in range(1, 101)]          # 1 ms .. 100 ms
    assert pct(xs, 50) == 0.051 and pct(xs, 99) == 0.1
    assert percentiles(xs, scale=1e3) == {"p50": 51, "p99": 100, "max": 100}
    assert percentiles([0.00123], (90,), scale=1e3, digits=2) == {"p90": 1.23, "max": 1.23}


def test_an_empty_sample_has_no_percentiles():
    assert pct([], 50) is None
    assert percentiles([]) == {"p50": None, "p99": None, "max": None}


def test_median_time_is_per_call_by_the_clock_given():
    ticks = iter(range(0, 1000, 10))               # each clock read 10 later: a run of 5 calls = 10
    calls = []
    assert median_time(lambda: calls.append(1), 3, number=5, clock=lambda: next(ticks)) == 2.0
    assert len(calls) == 15


def test_a_markdown_table_aligns_its_first_columns_left_and_the_rest_right():
    assert markdown_table(["what", "n", "ms"], [["ours", 3, "1.5"]]).splitlines() == [
        "| what | n | ms |", "|---|---:|---:|", "| ours | 3 | 1.5 |"]
    assert markdown_table(["a", "b"], [], left=0).splitlines()[1] == "|---:|---:|"
