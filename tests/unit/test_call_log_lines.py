"""The daemon's log of call events (cti/daemon.py ``log_subscriber``): at info a call's start
and its end, with what the call came to; every other event only at debug; secrets masked."""
from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from cti import logs
from cti.daemon import log_fields, log_subscriber
from cti.events import CallEnded, CallQueued, CallStarted, CallView

T = 1_800_000_000.0


def view(**over) -> CallView:
    base = dict(call_id="c1", state="queued", direction="inbound", caller_num="+100", caller_name="x", exten="s",
                started_at=T, answered_at=T + 1, queue="sales", queue_joined_at=T + 2, queue_left_at=None,
                agent=None, agent_answered_at=None, ended_at=None, hangup_cause=None, hangup_cause_txt=None,
                end_estimated=False, abandoned=False, legs=1)
    return CallView(**{**base, **over})


def events() -> list:
    ended = view(state="ended", queue_left_at=T + 9.04, agent="a1", agent_answered_at=T + 9.04, ended_at=T + 70.0,
                 hangup_cause=16, hangup_cause_txt="Normal Clearing")
    return [CallStarted("c1", T, 1, view(state="ringing"), channel="PJSIP/trunk-1"),
            CallQueued("c1", T + 2, 2, view(), queue="sales", acd=True),
            CallEnded("c1", T + 70, 3, ended, cause=16, cause_txt="Normal Clearing", estimated=False)]


def lines(level: str) -> list[dict]:
    """The lines logged for ``events()`` at ``level``; the logging set up before is put back."""
    root = logging.getLogger()
    saved = structlog.get_config(), root.level, list(root.handlers)
    out = io.StringIO()
    logs.configure("json", level, out)
    try:
        for ev in events():
            log_subscriber(ev)
    finally:
        structlog.configure(**saved[0])
        root.setLevel(saved[1])
        root.handlers[:] = saved[2]
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_at_info_a_line_when_a_call_starts_and_one_when_it_ends_with_what_it_came_to():
    got = lines("info")
    assert [x["event"] for x in got] == ["call.started", "call.ended"]
    end = got[1]
    assert end["level"] == "info" and end["queue"] == "sales" and end["agent"] == "a1" and end["answered"] is True
    assert end["duration_s"] == 70.0 and end["waited_s"] == 7.0 and end["cause"] == 16
    assert "abandoned" not in end                       # only when it was


def test_at_debug_every_event():
    got = lines("debug")
    assert [x["event"] for x in got] == ["call.started", "call.queued", "call.ended"]
    assert got[1]["level"] == "debug" and got[1]["queue"] == "sales" and got[1]["acd"] is True


@pytest.mark.parametrize("level", ["warning", "error"])
def test_above_info_none(level):
    assert lines(level) == []


def test_fields_unset_are_left_out_and_an_abandoned_call_says_so():
    ended = view(state="ended", ended_at=T + 30, abandoned=True, answered_at=None, queue_left_at=T + 30)
    fields = log_fields(CallEnded("c1", T + 30, 9, ended, cause=None, cause_txt=None, estimated=False))
    assert fields["abandoned"] is True and fields["answered"] is False and "agent" not in fields
    assert "cause" not in fields and fields["waited_s"] == 28.0
