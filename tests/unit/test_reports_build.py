"""Stored call rows and events become queue calls (acd.reports.build_queue_calls, pure)."""
from __future__ import annotations

import json

from acd.figures import ABANDONED, ANSWERED, TIMED_OUT, WAITING
from acd.reports import build_queue_calls

T0 = 1_767_603_600.0


def row(call_id: str, **kw: object) -> dict:
    base = {"call_id": call_id, "queue": "q", "queue_joined_at": T0, "queue_left_at": None, "agent": None,
            "agent_answered_at": None, "ended_at": None, "abandoned": False}
    base.update(kw)
    return base


def ev(call_id: str, seq: int, at: float, kind: str, **data: object) -> dict:
    return {"call_id": call_id, "seq": seq, "at": T0 + at, "kind": kind, "data": json.dumps(data)}


def test_an_agent_still_connected_has_no_talk_time_yet_but_hold_so_far():
    [c] = build_queue_calls([row("c", agent="a", agent_answered_at=T0 + 5)],
                            [ev("c", 1, 10, "call.held"), ev("c", 2, 30, "call.resumed"), ev("c", 3, 40, "call.held")],
                            now=T0 + 60)
    assert (c.outcome, c.wait_s, c.talk_s, c.hold_s) == (ANSWERED, 5, None, 40)


def test_without_agent_left_the_call_end_ends_the_talk():
    [c] = build_queue_calls([row("c", agent="a", agent_answered_at=T0 + 5, ended_at=T0 + 65)], [], now=T0 + 99)
    assert (c.talk_s, c.hold_s) == (60, 0)


def test_max_wait_to_voicemail_is_a_time_out_even_if_the_caller_then_hangs_up():
    [c] = build_queue_calls([row("c", abandoned=True, ended_at=T0 + 90, queue_left_at=T0 + 90)],
                            [ev("c", 1, 60, "acd.dequeued", reason="max_wait")], now=T0 + 99)
    assert (c.outcome, c.wait_s) == (TIMED_OUT, 60)


def test_an_abandon_without_queue_exit_uses_the_end_and_a_silent_exit_is_a_time_out():
    a, b, w = build_queue_calls([row("a", abandoned=True, ended_at=T0 + 30), row("b", ended_at=T0 + 40),
                                 row("w")], [], now=T0 + 50)
    assert (a.outcome, a.wait_s) == (ABANDONED, 30)
    assert (b.outcome, b.wait_s) == (TIMED_OUT, 40)
    assert (w.outcome, w.left_at) == (WAITING, None)


def test_chained_overflows_give_one_stay_per_queue():
    calls = build_queue_calls(
        [row("c", agent="a", agent_answered_at=T0 + 100, ended_at=T0 + 160)],
        [ev("c", 1, 30, "acd.maxwait", queue_id="q", action="overflow", target="r"),
         ev("c", 2, 70, "acd.maxwait", queue_id="r", action="overflow", target="s\r\n'; DROP TABLE calls")],
        now=T0 + 200)
    assert [(c.queue, c.outcome, c.arrived_at - T0, c.left_at - T0) for c in calls] == [
        ("q", TIMED_OUT, 0, 30), ("r", TIMED_OUT, 30, 70), ("s\r\n'; DROP TABLE calls", ANSWERED, 70, 100)]


def test_rows_without_a_queue_are_skipped_and_bad_json_is_ignored():
    calls = build_queue_calls([row("n", queue=None), row("c", abandoned=True, queue_left_at=T0 + 9)],
                              [{"call_id": "c", "seq": 1, "at": T0, "kind": "acd.maxwait", "data": "{not json"}],
                              now=T0 + 10)
    assert [(c.call_id, c.outcome) for c in calls] == [("c", ABANDONED)]
