"""A client moving to an API node that has not read the stream as far as the client had
(api.node_core.plan_resume, NodeHub's floor): resumed, nothing repeated, nothing missed.

The fault it guards against (BENCHMARKS.md, the 20-kill failover run): such a resume was a
``resync`` whose hello carried the node's own position, and the node then sent, under the
same numbers, the messages the client already had.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.hub import Resume, Scope
from api.node_core import NodeHub, ResumePlan, plan_resume

EPOCH = "bstream"
EVERYTHING = Scope(everything=True)


def body(i: int) -> str:
    return json.dumps({"type": "call.progress", "call_id": f"c{i}", "n": i}, separators=(",", ":"))


def feed(hub: NodeHub, messages: list[tuple[int, frozenset[str]]]) -> None:
    for seq, agents in messages:
        hub.publish_at(seq, body(seq), agents)


def parsed(texts: list[str]) -> list[dict]:
    return [json.loads(t) for t in texts]


def plan(last: int | None, *, epoch: str = EPOCH, head: int = 50, start: int = 0, oldest: int = 1,
         stream_last: int | None = 80, waited_s: float = 5.0, wait_s: float = 1.0) -> ResumePlan:
    resume = None if last is None else Resume(epoch, last)
    return plan_resume(resume, epoch=EPOCH, head=head, start=start, oldest=oldest, stream_last=stream_last,
                       waited_s=waited_s, wait_s=wait_s)


# -- the decision, by hand ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs, kind, reason", [
    ({"last": None}, "fresh", None),
    ({"last": 10, "epoch": "other"}, "resync", "unknown stream"),
    ({"last": -1}, "resync", "not a stream position"),
    ({"last": 50}, "replay", None),                                 # nothing missed
    ({"last": 0}, "replay", None),                                  # everything since the first, all kept
    ({"last": 20, "oldest": 21}, "replay", None),                   # the oldest kept is the next one
    ({"last": 19, "oldest": 21}, "resync", "missed 1 more"),        # one fell out of the ring
    ({"last": 29, "start": 30, "oldest": 31}, "resync", "missed 1 more"),   # before what the node read
    ({"last": 51, "waited_s": 0.0}, "wait", None),                  # one message in flight
    ({"last": 60, "waited_s": 0.99}, "wait", None),
    ({"last": 60, "waited_s": 1.0}, "ahead", None),                 # the node is behind: a floor
    ({"last": 80}, "ahead", None),                                  # the broker's last message
    ({"last": 81}, "resync", "ahead of the stream"),                # beyond what the broker holds
    ({"last": 81, "waited_s": 0.0}, "resync", "ahead of the stream"),   # no wait for that
    ({"last": 10**9, "stream_last": None}, "ahead", None),          # the broker not asked: taken
])
def test_the_resume_decision(kwargs, kind, reason):
    got = plan(**kwargs)
    assert got.kind == kind
    if reason is None:
        assert got.reason is None
    else:
        assert reason in got.reason


SEQ = st.integers(0, 200)


@settings(max_examples=500, deadline=None)
@given(last=st.integers(-5, 260), head=SEQ, start=SEQ, ring=st.integers(0, 100), ahead_by=st.integers(0, 40),
       known=st.booleans(), waited=st.floats(0, 5), wait=st.floats(0, 3), same=st.booleans())
def test_the_decision_serves_a_resume_only_from_what_can_follow_it(last, head, start, ring, ahead_by, known,
                                                                    waited, wait, same):
    """For any position: a replay only from what the node holds after ``last``; a floor only
    past the wait and within the broker's stream; a wait only while the node is behind."""
    start = min(start, head)
    oldest = max(start + 1, head - ring + 1)        # the ring holds oldest..head (none when oldest > head)
    stream_last = head + ahead_by if known else None
    p = plan_resume(Resume(EPOCH if same else "x", last), epoch=EPOCH, head=head, start=start, oldest=oldest,
                    stream_last=stream_last, waited_s=waited, wait_s=wait)
    assert (p.kind == "resync") == (p.reason is not None)
    if not same or last < 0:
        assert p.kind == "resync"
    elif p.kind == "replay":
        assert max(start, oldest - 1) <= last <= head
    elif p.kind == "wait":
        assert last > head and waited < wait and (stream_last is None or last <= stream_last)
    elif p.kind == "ahead":
        assert last > head and waited >= wait and (stream_last is None or last <= stream_last)
    else:
        assert p.kind == "resync"
        assert last < max(start, oldest - 1) or (stream_last is not None and last > stream_last)


# -- the hub: a client moving to a node behind it ---------------------------------------------

def test_a_client_moving_to_a_node_behind_it_gets_no_repeat_and_no_gap():
    """The 20-kill run's fault, in small: node 2 has read up to 5 when the client, who had
    12 on node 1, moves to it. Resumed, no snapshot (older than what the client holds), the
    pong carries the client's own position; then, as node 2 reads on, 13 onwards only."""
    msgs = [(i, frozenset({"a1"} if i % 2 else {"a2"})) for i in range(1, 21)]
    n1, n2 = NodeHub(epoch=EPOCH), NodeHub(epoch=EPOCH)
    c1 = n1.attach("k", Scope(agent_id="a1"), None, {}, 0.0).conn
    feed(n1, msgs[:12])
    n1.control(c1, {"type": "pong"})
    first = parsed(n1.take(c1))
    assert first[-1] == {"seq": 12, "type": "pong"}
    feed(n2, msgs[:5])
    n2.stream_last = 20                               # the broker holds up to 20
    att = n2.attach("k", Scope(agent_id="a1"), Resume(EPOCH, 12), {"snapshot": {"agent_state": "old"}}, 0.0)
    assert att.resumed and att.resync is None and att.replayed == 0 and n2.resumed_ahead == 1
    assert att.conn.floor == 12
    n2.control(att.conn, {"type": "pong"})
    hello, pong = parsed(n2.take(att.conn))
    assert (hello["type"], hello["seq"], hello["resumed"], hello["snapshot"]) == ("hello", 12, True, None)
    assert pong == {"seq": 12, "type": "pong"}
    feed(n2, msgs[5:])
    got = [m["seq"] for m in first if m["type"] != "pong"][1:] + [m["seq"] for m in parsed(n2.take(att.conn))]
    assert got == [s for s, a in msgs if "a1" in a]          # 1, 3, ..., 19: each once, in order
    n2.control(att.conn, {"type": "pong"})
    assert parsed(n2.take(att.conn)) == [{"seq": 20, "type": "pong"}]    # the node's head once past


def test_a_wallboard_to_a_connection_ahead_carries_its_own_position():
    n = NodeHub(epoch=EPOCH)
    feed(n, [(1, frozenset()), (2, frozenset())])
    n.stream_last = 9
    att = n.attach("s", EVERYTHING, Resume(EPOCH, 7), {}, 0.0)
    n.take(att.conn)
    n.broadcast({"type": "wallboard", "x": 1})
    assert parsed(n.take(att.conn)) == [{"seq": 7, "type": "wallboard", "x": 1}]


def test_a_resume_beyond_the_brokers_stream_is_a_resync_and_the_broker_unasked_takes_it():
    n = NodeHub(epoch=EPOCH)
    feed(n, [(1, frozenset()), (2, frozenset())])
    n.stream_last = 4
    att = n.attach("s", EVERYTHING, Resume(EPOCH, 5), {}, 0.0)
    assert att.resync is not None and "ahead of the stream" in att.resync
    assert [m["type"] for m in parsed(n.take(att.conn))] == ["hello", "resync"]
    att = n.attach("s2", EVERYTHING, Resume(EPOCH, 5), {}, 0.0, stream_last=None)
    assert att.resumed and att.conn.floor == 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sets(st.sampled_from(["a1", "a2", "a3"])), min_size=1, max_size=60), st.data())
def test_moving_to_a_node_behind_at_any_point_loses_and_repeats_nothing(audiences, data):
    """Whatever the point a client leaves node 1 and however far behind node 2 is then (it
    started anywhere before that point and has read anything up to it), what the client
    receives on both nodes is exactly the stream's messages for its scope, once each, in
    order; and a second move, back to a node behind again, the same."""
    msgs = [(i + 1, frozenset(a)) for i, a in enumerate(audiences)]
    n = len(msgs)
    scope = data.draw(st.sampled_from([EVERYTHING, Scope(agent_id="a1"), Scope(agent_id="a2")]))
    leave = data.draw(st.integers(0, n))
    read2 = data.draw(st.integers(0, leave))           # what node 2 has read when the client comes
    start2 = data.draw(st.integers(0, read2))
    pinged = data.draw(st.booleans())
    n1, n2 = NodeHub(epoch=EPOCH), NodeHub(epoch=EPOCH)
    n2.begin(start2)
    c = n1.attach("k", scope, None, {}, 0.0).conn
    feed(n1, msgs[:leave])
    if pinged:
        n1.control(c, {"type": "pong"})
    first = parsed(n1.take(c))
    last = first[-1]["seq"]
    feed(n2, msgs[start2:read2])
    n2.stream_last = leave
    att = n2.attach("k", scope, Resume(EPOCH, last), {}, 0.0)
    if att.resync is not None:
        # Only a client whose last event is before what node 2 read (it did not ping).
        assert not pinged and last < start2
        return
    out = parsed(n2.take(att.conn))
    assert out[0]["type"] == "hello" and out[0]["seq"] == last and out[0]["resumed"]
    back = data.draw(st.integers(leave, n))            # then back to node 1, which read only so far
    feed(n2, msgs[read2:])
    second = parsed(n2.take(att.conn))
    if second:
        n3 = NodeHub(epoch=EPOCH)
        n3.begin(0)
        feed(n3, msgs[:back])
        n3.stream_last = n
        last2 = second[-1]["seq"]
        keep = [m for m in second if m["seq"] <= last2]
        att3 = n3.attach("k", scope, Resume(EPOCH, last2), {}, 0.0)
        assert att3.resumed
        feed(n3, msgs[back:])
        third = parsed(n3.take(att3.conn))[1:]
    else:
        keep, third = [], []
    got = [m["seq"] for m in first[1:] if m["type"] != "pong"] + [m["seq"] for m in out[1:]] \
        + [m["seq"] for m in keep] + [m["seq"] for m in third]
    assert got == [s for s, a in msgs if scope.wants(a)]
