"""``Router.divert``: an emergency switch takes a waiting caller out of routing."""
from __future__ import annotations

from acd.core import Dequeued, Ignored, Offer
from tests.unit.test_acd_core import T0, agent, offers, router


def test_a_diverted_caller_leaves_the_queue_and_is_never_offered():
    r = router([agent("a1")])
    r.set_not_ready("a1", "break", T0)
    r.call_waiting("c1", "q", T0)
    r.call_waiting("c2", "q", T0 + 1)
    out = r.divert("c1", "emergency:7", T0 + 2)
    d = next(d for d in out if isinstance(d, Dequeued))
    assert (d.call_id, d.reason) == ("c1", "emergency:7")
    assert [w.call_id for w in r.waiting_calls()] == ["c2"]
    assert offers(r.set_ready("a1", T0 + 3)) == [("c2", "a1")]
    assert r.queue_stats("q", T0 + 3).timed_out == 1     # left unserved, like a maximum wait


def test_a_caller_an_agent_rings_for_is_not_diverted():
    r = router([agent("a1")])
    assert any(isinstance(d, Offer) for d in r.call_waiting("c1", "q", T0))
    out = r.divert("c1", "emergency:7", T0 + 1)
    assert [type(d) for d in out] == [Ignored]
    assert [w.call_id for w in r.waiting_calls()] == ["c1"]


def test_diverting_an_unknown_call_is_ignored():
    assert [type(d) for d in router([agent("a1")]).divert("nope", "x", T0)] == [Ignored]
