"""An API node's hub (api.node_core): seq is the broker's stream sequence, the same on every node."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.broker_core import Envelope, H_EXPECTED_LAST_ID, H_ID, Outbox, board_subject, chained, push_subject
from api.hub import Hub, Resume, Scope
from api.node_core import NodeHub, NodeState

EPOCH = "bstream"
EVERYTHING = Scope(everything=True)


def body(i: int, kind: str = "call.progress") -> str:
    return json.dumps({"type": kind, "call_id": f"c{i}", "n": i}, separators=(",", ":"))


def seqs(texts: list[str]) -> list[int]:
    return [json.loads(t)["seq"] for t in texts]


def feed(hub: NodeHub, messages: list[tuple[int, frozenset[str]]]) -> None:
    for seq, agents in messages:
        hub.publish_at(seq, body(seq), agents)


def test_seq_is_the_stream_sequence_on_the_shared_stream_and_skips_others_on_an_agents():
    hub = NodeHub(epoch=EPOCH)
    staff = hub.attach("staff", EVERYTHING, None, {}, 0.0).conn
    agent = hub.attach("user:1", Scope(agent_id="a1"), None, {}, 0.0).conn
    hub.take(staff), hub.take(agent)
    feed(hub, [(1, frozenset({"a1"})), (2, frozenset({"a2"})), (3, frozenset()), (4, frozenset({"a1", "a2"}))])
    assert seqs(hub.take(staff)) == [1, 2, 3, 4]
    assert seqs(hub.take(agent)) == [1, 4]


def test_the_hello_of_a_fresh_client_carries_the_head_and_the_stream_id_is_the_brokers():
    hub = NodeHub(epoch=EPOCH)
    feed(hub, [(5, frozenset())])
    hub.begin  # noqa: B018 (documented entry point; begin before feeding in the shell)
    conn = hub.attach("staff", EVERYTHING, None, {}, 0.0).conn
    hello = json.loads(hub.take(conn)[0])
    assert (hello["type"], hello["seq"], hello["stream"], hello["resumed"]) == ("hello", 5, EPOCH, False)


def test_a_client_resuming_on_another_node_gets_exactly_what_it_missed():
    """Two nodes that started reading at different points both hold the client's range."""
    msgs = [(i, frozenset({"a1"} if i % 3 == 0 else {"a2"})) for i in range(1, 41)]
    n1, n2 = NodeHub(epoch=EPOCH), NodeHub(epoch=EPOCH)
    n1.begin(0)
    n2.begin(10)
    feed(n1, msgs[:20])
    c1 = n1.attach("user:1", Scope(agent_id="a1"), None, {}, 0.0).conn
    n1.take(c1)
    feed(n1, msgs[20:30])
    got = seqs(n1.take(c1))
    assert got == [21, 24, 27, 30]
    # Node 1 dies; node 2 has read everything (from 11 on).
    feed(n2, msgs[10:40])
    att = n2.attach("user:1", Scope(agent_id="a1"), Resume(EPOCH, got[-1]), {}, 0.0)
    assert att.resumed and att.resync is None
    out = n2.take(att.conn)
    assert json.loads(out[0])["seq"] == 30 and json.loads(out[0])["resumed"] is True
    assert seqs(out[1:]) == [33, 36, 39]


@pytest.mark.parametrize("resume, why", [
    (Resume("other", 3), "unknown stream"),
    (Resume(EPOCH, 99), "ahead"),
    (Resume(EPOCH, 4), "more events than are kept"),     # before what this node read (it began at 5)
])
def test_a_resume_this_node_cannot_serve_whole_is_a_resync(resume, why):
    hub = NodeHub(epoch=EPOCH)
    hub.begin(5)
    feed(hub, [(6, frozenset()), (7, frozenset())])
    att = hub.attach("staff", EVERYTHING, resume, {}, 0.0)
    assert not att.resumed and why in att.resync
    kinds = [json.loads(t)["type"] for t in hub.take(att.conn)]
    assert kinds == ["hello", "resync"]


def test_a_resume_older_than_the_ring_is_a_resync():
    hub = NodeHub(epoch=EPOCH, ring_max=10)
    feed(hub, [(i, frozenset()) for i in range(1, 31)])
    assert hub.attach("staff", EVERYTHING, Resume(EPOCH, 19), {}, 0.0).resync is not None
    assert hub.attach("staff2", EVERYTHING, Resume(EPOCH, 20), {}, 0.0).replayed == 10


def test_sequences_must_rise_and_publish_is_refused():
    hub = NodeHub(epoch=EPOCH)
    feed(hub, [(3, frozenset())])
    with pytest.raises(ValueError):
        hub.publish_at(3, body(3), frozenset())
    with pytest.raises(TypeError):
        hub.publish({"type": "x"})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.sampled_from(["a1", "a2", "a3"])), min_size=1, max_size=60),
       st.data())
def test_moving_between_nodes_at_any_point_loses_and_repeats_nothing(audiences, data):
    """Whatever the point a client leaves node 1 (and node 2's start before it), the seqs it
    gets on both are exactly the stream's messages for its scope, once each, in order."""
    msgs = [(i + 1, frozenset(a)) for i, a in enumerate(audiences)]
    n = len(msgs)
    scope = data.draw(st.sampled_from([EVERYTHING, Scope(agent_id="a1"), Scope(agent_id="a2")]))
    leave = data.draw(st.integers(0, n))
    start2 = data.draw(st.integers(0, leave))
    n1, n2 = NodeHub(epoch=EPOCH), NodeHub(epoch=EPOCH)
    n2.begin(start2)
    c = n1.attach("k", scope, None, {}, 0.0).conn
    feed(n1, msgs[:leave])
    n1.control(c, {"type": "pong"})       # the client pings before it leaves: its seq is the head
    first = n1.take(c)
    last = json.loads(first[-1])["seq"]
    assert last == leave
    feed(n2, msgs[start2:])
    att = n2.attach("k", scope, Resume(EPOCH, last), {}, 0.0)
    assert att.resync is None
    got = seqs(first[1:-1]) + seqs(n2.take(att.conn)[1:])
    assert got == [s for s, a in msgs if scope.wants(a)]


SCOPES = [EVERYTHING, Scope(agent_id="a1"), Scope(agent_id="a2"), Scope(agent_id="a3"), Scope()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(SCOPES))), max_size=8),
       st.lists(st.tuples(st.sets(st.sampled_from(["a1", "a2", "a3", "a4"])), st.booleans()), max_size=30))
def test_the_leaders_hub_and_a_nodes_hub_deliver_each_event_to_the_same_streams(scopes, events):
    """One delivery step serves both numbering schemes: for any streams (some of whose readers
    leave) and any audiences, an event reaches the same streams' readers on both hubs, and
    both count the same copies."""
    leader, node = Hub(), NodeHub(epoch=EPOCH)
    conns = {}
    for i, k in enumerate(scopes):
        for hub in (leader, node):
            conns[hub, i] = hub.attach(f"p{i}", SCOPES[k], None, {}, 0.0).conn
            hub.take(conns[hub, i])
    for seq, (agents, leave) in enumerate(events, start=1):
        if leave and scopes:
            i = seq % len(scopes)
            for hub in (leader, node):
                hub.detach(conns[hub, i], 0.0)
        woke = {}
        woke[leader] = leader.publish({"type": "call.progress", "n": seq}, frozenset(agents))
        woke[node] = node.publish_at(seq, body(seq), frozenset(agents))
        got = {hub: sorted(c.stream.key for c in woke[hub]) for hub in (leader, node)}
        assert got[leader] == got[node]
        assert got[leader] == sorted(f"p{i}" for i, k in enumerate(scopes)
                                     if SCOPES[k].wants(frozenset(agents)) and conns[leader, i].stream.conns)
        for hub in (leader, node):
            for c in woke[hub]:
                hub.take(c)
    assert (leader.published, leader.delivered) == (node.published, node.delivered)


def test_an_agent_whose_last_event_is_before_what_the_new_node_read_resyncs_unless_it_pinged():
    n1, n2 = NodeHub(epoch=EPOCH), NodeHub(epoch=EPOCH)
    c = n1.attach("k", Scope(agent_id="a1"), None, {}, 0.0).conn
    feed(n1, [(1, frozenset({"a1"})), (2, frozenset({"a2"})), (3, frozenset({"a2"}))])
    n2.begin(2)
    feed(n2, [(3, frozenset({"a2"}))])
    assert n2.attach("k", Scope(agent_id="a1"), Resume(EPOCH, 1), {}, 0.0).resync is not None
    n1.control(c, {"type": "pong"})
    pong = json.loads(n1.take(c)[-1])
    assert pong == {"seq": 3, "type": "pong"}
    assert n2.attach("k2", Scope(agent_id="a1"), Resume(EPOCH, 3), {}, 0.0).resumed


def test_node_state_gives_an_agents_last_state_and_its_calls():
    st_ = NodeState()
    call = {"call_id": "c1", "state": "ringing"}
    st_.feed({"type": "agent.state", "agent_id": "a1", "state": "ready", "reason": "", "since": 1.0})
    st_.feed({"type": "call.offered", "call_id": "c1", "call": call, "data": {"agent": "a1"}})
    snap = st_.snapshot(Scope(agent_id="a1"))
    assert snap["agent_state"]["state"] == "ready" and snap["calls"] == [call]
    assert st_.snapshot(Scope(agent_id="a2")) == {"agent_state": None, "calls": []}
    st_.feed({"type": "call.ended", "call_id": "c1", "call": call, "data": {}})
    assert st_.snapshot(Scope(agent_id="a1"))["calls"] == [] and st_.calls == {}
    st_.feed({"type": "junk"})
    st_.feed({"type": "call.offered", "call_id": 3, "data": None})   # not ours: ignored


def test_a_wallboard_is_outside_the_events_subjects_and_pushes_are_inside():
    assert board_subject("east") == "ctiboard.east"
    assert push_subject("east", "screenpop") == "cti.east.push.screenpop"
    assert push_subject("east", "a.b") == "cti.east.push.a%2Eb"


def test_chained_headers_name_the_predecessor_and_the_window_is_the_head():
    box = Outbox(10)
    envs = [Envelope("s", {H_ID: f"o:{i}"}, b"{}", i) for i in range(1, 5)]
    for e in envs:
        box.offer(e)
    assert box.window(3) == envs[:3] and box.window(99) == envs
    assert chained(envs[0], None) == {H_ID: "o:1"}
    assert chained(envs[1], "o:1") == {H_ID: "o:2", H_EXPECTED_LAST_ID: "o:1"}


@given(st.text(max_size=70), st.integers(-10**12, 10**12), st.integers(0, 50))
def test_any_resume_a_client_sends_is_either_served_whole_or_a_resync(stream, last_seq, start):
    """Fuzzed: the client's (stream, last_seq) never breaks the hub; a resume is served only
    from what this node holds."""
    hub = NodeHub(epoch=EPOCH, ring_max=20)
    hub.begin(start)
    feed(hub, [(i, frozenset({"a1"})) for i in range(start + 1, start + 31)])
    for s in (stream, EPOCH):
        att = hub.attach("k", Scope(agent_id="a1"), Resume(s, last_seq), {}, 0.0)
        out = hub.take(att.conn)
        assert (att.resync is None) == att.resumed
        if att.resumed:
            assert seqs(out[1:]) == list(range(last_seq + 1, start + 31))
            assert last_seq >= hub.oldest - 1
        else:
            assert [json.loads(t)["type"] for t in out] == ["hello", "resync"]


def test_a_hole_in_the_stream_makes_resumes_from_before_it_resync():
    hub = NodeHub(epoch=EPOCH)
    feed(hub, [(1, frozenset()), (2, frozenset())])
    hub.lost_before(6)                  # 3..5 aged out before this node read them
    feed(hub, [(6, frozenset()), (7, frozenset())])
    assert hub.attach("s1", EVERYTHING, Resume(EPOCH, 2), {}, 0.0).resync is not None
    att = hub.attach("s2", EVERYTHING, Resume(EPOCH, 5), {}, 0.0)
    assert att.resumed and seqs(hub.take(att.conn)[1:]) == [6, 7]
