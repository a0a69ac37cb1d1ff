"""The WebSocket hub's pure core: sequence numbers, resume, bounded queues, topics."""
from __future__ import annotations

import json
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from api.hub import (
    AgentSnapshot, CallAudience, Hub, Resume, Scope, agent_update, encode,
)

AGENT = Scope(agent_id="a1")
ALL = Scope(everything=True)


def hub(**kw) -> Hub:
    n = count(1)
    return Hub(new_epoch=lambda: f"e{next(n)}", **kw)


def messages(h: Hub, conn) -> list[dict]:
    return [json.loads(t) for t in h.take(conn)]


def test_hello_names_the_stream_and_carries_what_the_shell_gave():
    h = hub()
    att = h.attach("user:1", AGENT, None, {"user": {"name": "ada"}}, now=0)
    (hello,) = messages(h, att.conn)
    assert hello == {"seq": 0, "type": "hello", "user": {"name": "ada"}, "stream": "e1", "resumed": False}


def test_agent_gets_only_events_that_name_their_agent():
    h = hub()
    mine = h.attach("user:1", AGENT, None, {}, 0).conn
    other = h.attach("user:2", Scope(agent_id="a2"), None, {}, 0).conn
    boss = h.attach("user:3", ALL, None, {}, 0).conn
    for c in (mine, other, boss):
        h.take(c)
    h.publish({"type": "call.offered", "call_id": "c1"}, frozenset({"a1"}))
    h.publish({"type": "call.offered", "call_id": "c2"}, frozenset({"a2"}))
    h.publish({"type": "call.started", "call_id": "c3"})
    assert [m["call_id"] for m in messages(h, mine)] == ["c1"]
    assert [m["call_id"] for m in messages(h, other)] == ["c2"]
    assert [(m["seq"], m["call_id"]) for m in messages(h, boss)] == [(1, "c1"), (2, "c2"), (3, "c3")]


def test_a_nobody_scope_receives_nothing():
    h = hub()
    c = h.attach("user:9", Scope(), None, {}, 0).conn
    h.take(c)
    assert h.publish({"type": "call.started"}, frozenset({"a1"})) == []
    assert h.take(c) == []


def test_seq_counts_per_stream_and_control_messages_take_no_number():
    h = hub()
    c = h.attach("user:1", AGENT, None, {}, 0).conn
    h.publish({"type": "x"}, frozenset({"a1"}))
    h.control(c, {"type": "pong"})
    h.publish({"type": "y"}, frozenset({"a1"}))
    assert [(m["type"], m["seq"]) for m in messages(h, c)] == [("hello", 0), ("x", 1), ("pong", 1), ("y", 2)]


def test_reconnect_with_last_seq_gets_exactly_what_it_missed():
    h = hub()
    c = h.attach("user:1", AGENT, None, {}, 0).conn
    for i in range(3):
        h.publish({"type": "e", "i": i}, frozenset({"a1"}))
    got = messages(h, c)
    h.detach(c, 1)
    for i in range(3, 6):
        h.publish({"type": "e", "i": i}, frozenset({"a1"}))   # nobody connected: kept in the ring
    att = h.attach("user:1", AGENT, Resume("e1", got[-1]["seq"]), {}, 2)
    after = messages(h, att.conn)
    assert att.resumed and att.replayed == 3 and att.resync is None
    assert after[0]["type"] == "hello" and after[0]["resumed"] is True
    assert [m["i"] for m in after[1:]] == [3, 4, 5]


def test_resume_beyond_the_ring_says_resync():
    h = hub(replay_max=10)
    c = h.attach("user:1", AGENT, None, {}, 0).conn
    h.detach(c, 0)
    for i in range(25):
        h.publish({"type": "e"}, frozenset({"a1"}))
    att = h.attach("user:1", AGENT, Resume("e1", 3), {}, 1)
    hello, resync = messages(h, att.conn)
    assert not att.resumed and hello["resumed"] is False
    assert resync["type"] == "resync" and "kept" in resync["reason"] and resync["seq"] == 25


def test_resume_with_another_epoch_or_a_future_seq_says_resync():
    h = hub()
    h.detach(h.attach("user:1", AGENT, None, {}, 0).conn, 0)
    assert h.attach("user:1", AGENT, Resume("old-epoch", 0), {}, 1).resync is not None
    assert h.attach("user:1", AGENT, Resume("e1", 99), {}, 1).resync is not None


def test_full_queue_drops_the_slow_client_and_spares_the_others():
    h = hub(queue_max=10)
    slow = h.attach("user:1", ALL, None, {}, 0).conn
    fast = h.attach("user:2", ALL, None, {}, 0).conn
    for i in range(30):
        h.publish({"type": "e", "i": i})
        h.take(fast)
    assert slow.drop == "slow" and list(slow.queue) == [] and h.dropped_slow == 1
    assert fast.drop is None
    # The slow one comes back with its last seq (0: it processed nothing) and loses nothing.
    h.detach(slow, 1)
    att = h.attach("user:1", ALL, Resume("e1", 0), {}, 1)
    assert [m["i"] for m in messages(h, att.conn)[1:]] == list(range(30))


def test_queue_depths_sum_and_max_over_open_connections():
    h = hub()
    a = h.attach("user:1", ALL, None, {}, 0).conn
    b = h.attach("user:2", AGENT, None, {}, 0).conn
    h.take(a), h.take(b)
    assert h.queue_depths() == (0, 0)
    for i in range(3):
        h.publish({"type": "e", "i": i}, frozenset({"a1"}))
    h.publish({"type": "e", "i": 9})
    assert h.queue_depths() == (4 + 3, 4)
    h.take(a)
    assert h.queue_depths() == (3, 3)
    h.detach(b, 1)
    assert h.queue_depths() == (0, 0)


def test_role_change_makes_a_new_stream_and_drops_the_old_readers():
    h = hub()
    old = h.attach("user:1", AGENT, None, {}, 0).conn
    new = h.attach("user:1", ALL, None, {}, 0)
    assert old.drop == "replaced"
    assert messages(h, new.conn)[0]["stream"] == "e2"


def test_idle_streams_expire_and_a_resume_then_resyncs():
    h = hub(stream_ttl=60)
    h.detach(h.attach("user:1", AGENT, None, {}, 0).conn, now=100)
    assert h.expire(now=150) == 0
    assert h.expire(now=160) == 1
    assert h.attach("user:1", AGENT, Resume("e1", 0), {}, 161).resync is not None


def test_the_replay_rings_size_is_counted_as_they_fill_wrap_and_expire():
    h = hub(replay_max=3, stream_ttl=60)
    staff = h.attach("user:1", ALL, None, {}, 0).conn
    h.attach("user:2", AGENT, None, {}, 0)

    def held() -> tuple[int, int]:
        rings = [text for s in h.streams.values() for _, text in s.ring]
        return len(rings), sum(len(t) for t in rings)

    for i in range(5):
        h.publish({"type": "x", "n": i * 1000}, frozenset({"a1"}) if i % 2 else frozenset())
        assert (h.replay_events, h.replay_bytes) == held()
    assert h.replay_events == 3 + 2
    h.detach(staff, now=0)
    h.expire(now=60)
    assert (h.replay_events, h.replay_bytes) == held() == (2, held()[1])


def test_the_replay_ring_keeps_no_event_older_than_its_age_bound():
    h = hub(replay_max=100, replay_max_age=120)
    conn = h.attach("user:1", ALL, None, {}, 0).conn
    for i in range(3):
        h.publish({"type": "x", "n": i})          # seq 1-3
    h.expire(now=0)                               # mark: seq 3 at t=0
    for i in range(2):
        h.publish({"type": "x", "n": 3 + i})      # seq 4-5
    h.expire(now=60)
    assert [seq for seq, _ in h.streams["user:1"].ring] == [1, 2, 3, 4, 5]
    h.expire(now=120)                             # what was published by t=0 is 120 s old
    assert [seq for seq, _ in h.streams["user:1"].ring] == [4, 5]
    assert (h.replay_events, h.replay_bytes) == (2, sum(len(t) for _, t in h.streams["user:1"].ring))
    h.take(conn)
    h.detach(conn, now=120)
    # A client that had everything up to 3 resumes without a gap; one that had only 2 is told to resync.
    ok = h.attach("user:1", ALL, Resume("e1", 3), {}, 121)
    assert ok.resync is None and [m["seq"] for m in messages(h, ok.conn)][1:] == [4, 5]
    assert h.attach("user:1", ALL, Resume("e1", 2), {}, 122).resync is not None
    h.expire(now=300)                             # nothing new: the ring empties, a client up to date resumes
    assert not h.streams["user:1"].ring
    assert h.attach("user:1", ALL, Resume("e1", 5), {}, 301).resync is None


def test_encode_splices_the_seq_into_the_body():
    assert json.loads(encode(7, {"type": "t", "x": "a\"b\n"})) == {"seq": 7, "type": "t", "x": "a\"b\n"}


# -- resume never loses or repeats a message --------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.integers(1, 5)),
    st.tuples(st.just("read"), st.integers(0, 10)),
    st.just(("reconnect", 0)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops=ops, replay_max=st.integers(5, 40), queue_max=st.integers(10, 20))
def test_resume_never_loses_or_repeats_an_event(ops, replay_max, queue_max):
    h = hub(replay_max=replay_max, queue_max=queue_max)
    sent = 0
    received: list[int] = []      # the event numbers the client processed, in order
    lost_marked = False
    # A client that never processed a hello has nothing to resume: it starts at its first hello.
    state = {"stream": None, "last": 0, "base": 0}
    conn = None
    pending: list[dict] = []

    def connect():
        resume = Resume(state["stream"], state["last"]) if state["stream"] else None
        att = h.attach("user:1", AGENT, resume, {}, 0)
        return att.conn

    def read(n):
        nonlocal lost_marked
        pending.extend(json.loads(t) for t in h.take(conn))
        for _ in range(min(n, len(pending))):
            m = pending.pop(0)
            if m["type"] == "hello":
                if state["stream"] is None:
                    state["base"] = state["last"] = m["seq"]
                state["stream"] = m["stream"]
            elif m["type"] == "resync":
                lost_marked = True
                state["last"] = m["seq"]
            else:
                assert m["seq"] == state["last"] + 1, "a gap or a repeat"
                state["last"] = m["seq"]
                received.append(m["n"])

    conn = connect()
    for op, n in ops:
        if op == "publish":
            for _ in range(n):
                sent += 1
                h.publish({"type": "e", "n": sent}, frozenset({"a1"}))
            if conn.drop:   # the shell closes it; the client reconnects
                h.detach(conn, 0)
                pending.clear()
                conn = connect()
        elif op == "read":
            read(n)
        else:
            h.detach(conn, 0)
            pending.clear()    # unread messages die with the socket
            conn = connect()
    read(10**6)
    assert received == sorted(set(received))           # never repeated, in order
    if not lost_marked:
        assert received == list(range(state["base"] + 1, sent + 1))    # nothing lost unless a resync said so
    # A resync only when the ring could not cover the gap.
    if sent <= replay_max:
        assert not lost_marked


# -- topics ------------------------------------------------------------------------

def test_call_audience_follows_offer_answer_and_leave():
    a = CallAudience()
    assert a.feed("call.started", "c", {}) == frozenset()
    assert a.feed("acd.offer", "c", {"agent": "a1"}) == {"a1"}
    assert a.feed("call.offered", "c", {"agent": "a1"}) == {"a1"}
    assert a.feed("call.state", "c", {"old": "queued", "new": "offered"}) == {"a1"}
    assert a.feed("call.offer_ended", "c", {"agent": "a1", "status": "NOANSWER"}) == {"a1"}
    assert a.feed("call.state", "c", {}) == frozenset()      # a1 no longer sees it
    assert a.feed("call.offered", "c", {"agent": "a2"}) == {"a2"}
    assert a.feed("call.connected", "c", {"agent": "a2"}) == {"a2"}
    assert a.calls_of("a2") == ["c"] and a.calls_of("a1") == []
    assert a.feed("call.held", "c", {}) == {"a2"}
    assert a.feed("call.agent_left", "c", {"agent": "a2"}) == {"a2"}
    assert a.feed("call.transferred", "c", {}) == frozenset()   # not a2's any more...
    assert a.feed("call.ended", "c", {}) == {"a2"}               # ...but its end closes a2's screen-pop
    assert a.calls == {} and a.left == {}


def test_an_agent_whose_offer_ended_is_not_told_of_the_end():
    a = CallAudience()
    a.feed("call.offered", "c", {"agent": "a1"})
    a.feed("call.offer_ended", "c", {"agent": "a1"})
    assert a.feed("call.ended", "c", {}) == frozenset()


def test_call_audience_forgets_ended_calls():
    a = CallAudience()
    a.feed("call.connected", "c", {"agent": "a1"})
    assert a.feed("call.ended", "c", {}) == {"a1"}
    assert a.calls == {}


def test_an_agent_update_is_a_message_when_a_client_would_see_a_change():
    v1 = AgentSnapshot("a1", "available", "", 1.0, None, None)
    assert agent_update(v1, None) == {"type": "agent.state", "agent_id": "a1", "state": "available",
                                      "previous": None, "reason": "", "since": 1.0, "call_id": None, "pending": None,
                                      "wrapup_ends_at": None, "wrapup_max_at": None, "disposition_due": None}
    assert agent_update(AgentSnapshot("a1", "available", "", 5.0, None, None), v1) is None    # only since
    v2 = AgentSnapshot("a1", "reserved", "", 2.0, "c", None)
    assert agent_update(v2, v1)["previous"] == "available"
    on_break = AgentSnapshot("a1", "reserved", "", 2.0, "c", "lunch")
    assert agent_update(on_break, v2)["previous"] == "reserved"                               # only pending
    wrap = AgentSnapshot("a1", "wrapup", "", 3.0, None, None, 13.0, 40.0)
    longer = AgentSnapshot("a1", "wrapup", "", 3.0, None, None, 43.0, 40.0)
    assert agent_update(longer, wrap)["wrapup_ends_at"] == 43.0                              # only extended


def test_broadcast_reaches_staff_only_without_a_seq_and_is_not_replayed():
    h = hub()
    boss = h.attach("user:3", ALL, None, {}, 0).conn
    agent = h.attach("user:1", AGENT, None, {}, 0).conn
    h.take(boss), h.take(agent)
    h.publish({"type": "x"})
    h.broadcast({"type": "wallboard", "n": 1})
    assert [(m["type"], m["seq"]) for m in messages(h, boss)] == [("x", 1), ("wallboard", 1)]
    assert messages(h, agent) == []
    h.detach(boss, 1)
    again = h.attach("user:3", ALL, Resume("e1", 0), {}, 2).conn
    assert [m["type"] for m in messages(h, again)] == ["hello", "x"]


def test_broadcast_to_a_full_queue_drops_that_client_as_slow():
    h = hub(queue_max=10)
    boss = h.attach("user:3", ALL, None, {}, 0).conn
    for i in range(20):
        h.broadcast({"type": "wallboard", "n": i})
    assert boss.drop == "slow" and h.dropped_slow == 1


def test_a_ping_flood_whose_pongs_are_not_read_marks_the_connection_slow():
    """Control answers count against the queue like events: memory stays bounded."""
    h = hub(queue_max=10)
    c = h.attach("user:1", AGENT, None, {}, 0).conn
    h.take(c)
    answers = [h.control(c, {"type": "pong"}) for _ in range(1000)]
    assert answers.index(True) == c.limit and c.drop == "slow"
    assert len(c.queue) == 0 and h.dropped_slow == 1
