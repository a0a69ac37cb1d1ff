"""bench/acd_latency.py's timelines (pure): the daemon's debug marks matched to Asterisk's
events, for an arrival and for an agent freed while callers waited."""
from __future__ import annotations

import json

from bench.acd_latency import Recorder, daemon_marks, freed_steps, offer_steps


class Frame:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


def feed(rec: Recorder, *frames: dict[str, str]) -> None:
    for f in frames:
        rec(Frame(**f))


def line(event: str, **kw) -> str:
    return json.dumps({"event": event, **kw})


def test_the_marks_are_each_callers_first_and_every_freeing_of_an_agent():
    text = "\n".join([line("acd call entered", call_id="c1", entered_at=1.0),
                      line("acd offer written", call_id="c1", written_at=2.0),
                      line("acd offer written", call_id="c1", written_at=9.0),      # a second offer
                      line("acd agent freed", call_id="c0", agent="agent1", freed_at=3.0),
                      line("acd agent freed", call_id="c2", agent="agent1", freed_at=7.0),
                      "not json", line("ami connected")])
    seen, freed = daemon_marks(text)
    assert seen["c1"] == {"acd": 1.0, "written": 2.0} and freed == {"agent1": [3.0, 7.0]}


def test_an_agent_freed_while_a_caller_waits_gives_each_step_after_its_hangup():
    rec = Recorder()
    feed(rec,
         {"Event": "UserEvent", "UserEvent": "CtiAcdWait", "Uniqueid": "c1", "Timestamp": "100.000"},
         {"Event": "DialBegin", "Uniqueid": "c1", "DestChannel": "Local/agent1@cti-demo-agents-1;1",
          "Timestamp": "100.010"},
         {"Event": "UserEvent", "UserEvent": "CtiAcdWait", "Uniqueid": "c2", "Timestamp": "100.500"},
         {"Event": "Hangup", "Channel": "Local/agent1@cti-demo-agents-1;1", "Timestamp": "101.000"},
         {"Event": "MusicOnHoldStop", "Uniqueid": "c2", "Timestamp": "101.004"},
         {"Event": "DialBegin", "Uniqueid": "c2", "DestChannel": "Local/agent1@cti-demo-agents-2;1",
          "Timestamp": "101.006"})
    rec.freed_received[0] = 101.001
    text = "\n".join([line("acd agent freed", call_id="c1", agent="agent1", freed_at=101.002),
                      line("acd offer written", call_id="c2", written_at=101.0025),
                      line("acd offer replied", call_id="c2", replied_at=101.0035)])
    steps = freed_steps(rec, ["c1", "c2"], text)
    assert len(steps) == 1
    got = steps[0]
    assert list(got) == ["delivered", "acd", "written", "replied", "redirected", "dialbegin"]
    assert [round(v, 1) for v in got.values()] == [1.0, 2.0, 2.5, 3.5, 4.0, 6.0]
    assert rec.free_to_ring({"c1", "c2"}) == [rec.ring["c2"] - 101.0]
    # The arrival path of c1 (an agent free at its entry): no daemon marks, no row.
    assert offer_steps(rec, ["c1"], text) == []


def test_nobody_waiting_when_the_agent_is_freed_gives_no_row():
    rec = Recorder()
    feed(rec,
         {"Event": "UserEvent", "UserEvent": "CtiAcdWait", "Uniqueid": "c1", "Timestamp": "100.000"},
         {"Event": "DialBegin", "Uniqueid": "c1", "DestChannel": "Local/agent1@x;1", "Timestamp": "100.010"},
         {"Event": "Hangup", "Channel": "Local/agent1@x;1", "Timestamp": "101.000"})
    assert freed_steps(rec, ["c1"], "") == [] and rec.free_to_ring({"c1"}) == []
