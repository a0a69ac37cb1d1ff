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


def test_unknown_kinds_and_families_are_not_patterns():
    assert w.valid_pattern("call.ended") and w.valid_pattern("ticket.dispatched") and w.valid_pattern("*")
    assert w.valid_pattern("recording.*") and w.valid_pattern("acd.offer")
    assert not w.valid_pattern("call.endd") and not w.valid_pattern("calls.*") and not w.valid_pattern("foo.bar")
    assert not w.valid_pattern("call.state")        # never delivered


def test_every_call_kind_the_events_table_lists_can_be_subscribed():
    import re
    from cti import events
    listed = set(re.findall(r"^(call\.[a-z_]+)\s", events.__doc__, re.MULTILINE)) - {"call.state"}
    assert listed and listed <= w.KINDS


REFUSED = ["127.0.0.1", "127.8.9.10", "169.254.169.254", "10.1.2.3", "172.16.0.1", "172.31.255.255",
           "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
           "::1", "::", "fe80::1", "fd00::1", "fc00::1", "ff02::1",
           "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",      # IPv4-mapped
           "::127.0.0.1", "2002:7f00:1::1", "2002:a9fe:a9fe::", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"]
ALLOWED = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


def test_loopback_link_local_private_cgnat_ula_multicast_and_their_ipv6_forms_are_refused():
    assert [a for a in REFUSED if w.address_allowed(a)] == []
    assert [a for a in ALLOWED if not w.address_allowed(a)] == []


def test_an_allowlisted_network_is_allowed_in_every_form_and_nothing_beside_it():
    allow = w.parse_allow("127.0.0.0/8, fd00::/8")
    assert w.address_allowed("127.0.0.1", allow) and w.address_allowed("::ffff:127.0.0.1", allow)
    assert w.address_allowed("fd00::5", allow)
    assert not w.address_allowed("169.254.169.254", allow) and not w.address_allowed("::1", allow)
    assert w.parse_allow("10.1.2.3") == (w.ipaddress.ip_network("10.1.2.3/32"),)


def test_a_literal_target_is_judged_at_subscription_a_name_later():
    assert "CTI_WEBHOOK_ALLOW" in w.target_problem("http://127.0.0.1:9000/hook")
    assert w.target_problem("http://169.254.169.254/latest/meta-data/") is not None
    assert w.target_problem("http://[::ffff:127.0.0.1]/") is not None
    assert w.target_problem("http://[fd12::1]:80/") is not None
    assert w.target_problem("http://127.0.0.1:9000/hook", w.parse_allow("127.0.0.1")) is None
    assert w.target_problem("https://crm.example.com/hook") is None
    assert w.target_problem("http://localhost:9000/") is None          # refused when it connects
    for legacy in ("http://127.1/", "http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/"):
        assert "numeric" in w.target_problem(legacy), legacy
    assert "user" in w.target_problem("http://u:p@crm.example.com/")
    assert w.target_problem("http://[fe80::1%25eth0]/") is not None


def test_the_log_says_a_short_code_the_same_for_every_kind_of_connection_failure():
    assert w.failure_code(204, None) is None and w.failure_code(500, None) == "http_500"
    assert w.failure_code(302, None) == "http_302"
    assert w.failure_code(None, "timeout") == "timeout"
    assert w.failure_code(None, "refused_address") == "refused_address"
    assert w.failure_code(None, "connect_failed") == w.failure_code(None, None) == "connect_failed"
