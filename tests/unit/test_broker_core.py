"""The broker's pure parts (api.broker_core): subjects, envelopes, the outbox, the follower."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.broker_core import (
    BrokerMessageError,
    Follower,
    Outbox,
    agent_subject,
    call_subject,
    decode,
    encode,
    stream_subjects,
    token,
    untoken,
)
from api.hub import call_message, encode as hub_encode
from tests.unit.test_event_json import synthetic


def test_subjects_name_cluster_family_and_kind():
    assert call_subject("east", "call.offered") == "cti.east.call.call.offered"
    assert call_subject("east", "acd.offer") == "cti.east.call.acd.offer"
    assert agent_subject("east", "a1") == "cti.east.agent.a1"
    assert stream_subjects("east") == ["cti.east.>"]


def test_a_token_cannot_change_a_subjects_shape():
    assert token("a.b *>c") == "a%2Eb%20%2A%3Ec"
    assert agent_subject("x.y", "ag.1") == "cti.x%2Ey.agent.ag%2E1"
    assert untoken(token("Agent 7 é.%")) == "Agent 7 é.%"


def test_a_kinds_parts_are_tokens_and_none_may_be_empty():
    assert call_subject("east", "call.>") == "cti.east.call.call.%3E"
    assert call_subject("east", "effect") == "cti.east.call.effect"
    with pytest.raises(ValueError):
        call_subject("east", "call..x")
    with pytest.raises(ValueError):
        token("")


@given(st.text(min_size=1, max_size=40))
def test_token_round_trips_and_is_one_safe_token(text):
    t = token(text)
    assert untoken(t) == text
    assert all(c.isalnum() and c.isascii() or c in "_-%" for c in t)


def test_the_payload_is_the_websocket_body_and_headers_carry_order_and_audience():
    for ev in synthetic():
        body = call_message(ev.kind, ev.call_id, ev.seq, ev.at, ev.call, ev.data)
        env = encode(call_subject("east", ev.kind), body, frozenset({"a2", "a1"}), "o1", 5)
        # What a WebSocket client reads is the same body with its stream's seq in front.
        assert json.loads(hub_encode(9, body)) == {"seq": 9, **json.loads(env.payload)}
        assert env.headers["Nats-Msg-Id"] == "o1:5" and env.headers["Cti-Agents"] == "a1,a2"
        d = decode(env.subject, env.headers, env.payload, 12)
        assert (d.stream_seq, d.origin, d.bus_seq, d.agents) == (12, "o1", 5, frozenset({"a1", "a2"}))
        assert d.body == json.loads(env.payload) and d.body_json == env.payload.decode()


def test_agents_with_commas_and_dots_survive_the_header():
    env = encode("cti.e.agent.x", {"type": "agent.state"}, frozenset({"a,b", "c.d"}), "o", 1)
    assert decode(env.subject, env.headers, env.payload, 1).agents == {"a,b", "c.d"}


@pytest.mark.parametrize("subject,headers,payload,why", [
    ("other.x", {"Cti-Origin": "o", "Cti-Bus-Seq": "1"}, b'{"type":"x"}', "subject"),
    ("cti.e.call.call.started", {"Cti-Bus-Seq": "1"}, b'{"type":"x"}', "Origin"),
    ("cti.e.call.call.started", {"Cti-Origin": "o", "Cti-Bus-Seq": "0"}, b'{"type":"x"}', "Bus-Seq"),
    ("cti.e.call.call.started", {"Cti-Origin": "o", "Cti-Bus-Seq": "-1"}, b'{"type":"x"}', "Bus-Seq"),
    ("cti.e.call.call.started", {"Cti-Origin": "o", "Cti-Bus-Seq": "1"}, b'[1]', "body"),
    ("cti.e.call.call.started", {"Cti-Origin": "o", "Cti-Bus-Seq": "1"}, b'\xff', "JSON"),
    ("cti.e.call.call.started", {"Cti-Origin": "o", "Cti-Bus-Seq": "1", "Cti-Agents": "a.b"}, b'{"type":"x"}',
     "token"),
])
def test_decode_refuses_what_is_not_ours_saying_why(subject, headers, payload, why):
    with pytest.raises(BrokerMessageError, match=why):
        decode(subject, headers, payload, 1)


@given(st.text(max_size=60), st.dictionaries(st.sampled_from(["Cti-Origin", "Cti-Bus-Seq", "Cti-Agents", "X"]),
                                             st.text(max_size=30)),
       st.binary(max_size=200), st.integers(-5, 10**12))
def test_decode_of_anything_returns_or_raises_its_own_error(subject, headers, payload, seq):
    try:
        d = decode(subject, headers, payload, seq)
    except BrokerMessageError:
        return
    assert d.stream_seq >= 1 and d.bus_seq >= 1 and isinstance(d.body, dict)


def _env(n: int):
    return encode("cti.e.agent.a", {"type": "agent.state", "n": n}, frozenset(), "o", n)


def test_the_outbox_keeps_order_and_drops_the_newest_past_its_limit():
    box = Outbox(3)
    assert [box.offer(_env(n)) for n in range(1, 6)] == [True, True, True, False, False]
    assert (len(box), box.dropped, box.offered) == (3, 2, 5)
    seen = []
    while (env := box.head()) is not None:
        assert box.head() is env            # stays until done
        seen.append(env.bus_seq)
        box.done()
    assert seen == [1, 2, 3] and box.published == 3
    assert box.offer(_env(6)) and box.head().bus_seq == 6


def _d(stream_seq: int, bus_seq: int, origin: str = "o"):
    env = encode("cti.e.agent.a", {"type": "agent.state"}, frozenset(), origin, bus_seq)
    return decode(env.subject, env.headers, env.payload, stream_seq)


def test_the_follower_passes_contiguous_messages_and_skips_repeats():
    f = Follower(after=10)
    assert [f.feed(_d(s, s)).kind for s in (11, 12, 12, 13)] == ["ok", "ok", "duplicate", "ok"]
    assert f.duplicates == 1 and f.gaps == 0 and f.last_stream_seq == 13


def test_the_follower_reports_a_stream_gap_and_a_publisher_drop():
    f = Follower()
    assert f.feed(_d(1, 1)).kind == "ok"
    v = f.feed(_d(4, 4))
    assert (v.kind, v.missing) == ("stream_gap", 2)
    v = f.feed(_d(5, 9))
    assert (v.kind, v.missing) == ("bus_gap", 4)
    # A new publisher (another origin, e.g. after a takeover) starts its own count.
    assert f.feed(_d(6, 1, origin="p")).kind == "ok"
    assert f.gaps == 2
