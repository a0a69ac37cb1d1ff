"""api.webhooks: matching, signing and verifying, backoff."""
from __future__ import annotations

from api import webhooks as w


def test_patterns_match_kinds_families_and_everything():
    assert w.wants(["call.ended"], "call.ended") and not w.wants(["call.ended"], "call.offered")
    assert w.wants(["call.*"], "call.offered") and not w.wants(["call.*"], "acd.offer")
    assert w.wants(["*"], "acd.offer")
    assert not w.valid_pattern("call.ended\r\nx") and not w.valid_pattern("") and w.valid_pattern("acd.*")


def test_a_signature_verifies_only_with_the_same_secret_body_and_a_fresh_time():
    body = w.encode(w.payload("call.ended", "c1", 9, 1.0, {"call_id": "c1"}, {"cause": 16}))
    header = w.sign("s3cret", 1000, body)
    assert header.startswith("t=1000,v1=")
    assert w.verify("s3cret", header, body, now=1010)
    assert not w.verify("other", header, body, now=1010)
    assert not w.verify("s3cret", header, body + b" ", now=1010)
    assert not w.verify("s3cret", header, body, now=1000 + w.TOLERANCE_S + 1)
    assert not w.verify("s3cret", "garbage", body, now=1000)


def test_the_payload_names_the_event_the_same_way_on_every_attempt():
    p = w.payload("call.offered", "c1", 4, 2.5, {"call_id": "c1"}, {"agent": "a1"})
    assert (p["id"], p["type"], p["data"]) == ("c1:4", "call.offered", {"agent": "a1"})


def test_backoff_doubles_and_is_capped():
    assert [w.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert w.backoff(50) == w.BACKOFF_MAX_S
    assert w.outcome(204) == "delivered" and w.outcome(500) == "failed" and w.outcome(None) == "failed"
