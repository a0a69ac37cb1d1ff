"""The after-run check used by the load and fault suites (bench/integrity.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bench.integrity import check

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def row(cid: str, **kw):
    base = {"call_id": cid, "state": "ended", "started_at": T0, "answered_at": T0 + timedelta(seconds=1),
            "queue_joined_at": T0 + timedelta(seconds=1), "queue_left_at": T0 + timedelta(seconds=3),
            "agent_answered_at": T0 + timedelta(seconds=3), "ended_at": T0 + timedelta(seconds=9),
            "abandoned": False, "end_estimated": False}
    base.update(kw)
    return base


def test_a_clean_run_is_ok():
    report = check(["a", "b"], [row("a"), row("b")])
    assert report.ok and report.summary()["rows"] == 2


def test_missing_extra_and_open_calls_are_named():
    report = check(["a", "b", "c"], [row("a"), row("c", ended_at=None, state="talking"), row("a-split")])
    assert not report.ok
    assert report.missing == ["b"] and report.extra == ["a-split"] and report.open == ["c"]


def test_foreign_ids_are_not_extra():
    assert check(["a"], [row("a"), row("cb-1")], foreign_prefixes=("cb-",)).ok


def test_timestamps_out_of_order_are_inconsistent():
    report = check(["a", "b", "c"], [
        row("a", ended_at=T0 - timedelta(seconds=1)),
        row("b", queue_left_at=T0 + timedelta(seconds=30)),
        row("c", state="talking"),
    ])
    assert set(report.inconsistent) == {"a", "b", "c"}
    assert "ended before start" in report.inconsistent["a"]
    assert "ended before leaving queue" in report.inconsistent["b"]
    assert "state talking" in report.inconsistent["c"]


def test_abandoned_yet_answered_is_inconsistent():
    assert "abandoned" in check(["a"], [row("a", abandoned=True)]).inconsistent["a"]


def test_placed_twice_counts_once():
    assert check(["a", "a"], [row("a")]).placed == 1
