"""The client's address behind trusted proxies (api/client_address.py): the right-most
X-Forwarded-For hop that is not a proxy of ours; nothing a client sends can make it
anyone but itself."""
from __future__ import annotations

import ipaddress

import hypothesis.strategies as st
from hypothesis import given

from api.client_address import client_address, networks

PROXY = networks(("127.0.0.1/32", "10.0.0.0/8"))


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_address("127.0.0.1", "203.0.113.9", ()) == "127.0.0.1"


def test_a_request_through_the_local_proxy_is_from_the_address_it_appended():
    assert client_address("127.0.0.1", "203.0.113.9", PROXY) == "203.0.113.9"


def test_a_client_cannot_choose_its_address_by_sending_the_header_itself():
    # The client sent "1.2.3.4"; the proxy appended the real peer.
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.9", PROXY) == "203.0.113.9"
    # Straight to the daemon (not through a proxy): the header is the client's own words.
    assert client_address("198.51.100.7", "1.2.3.4", PROXY) == "198.51.100.7"


def test_a_chain_of_our_proxies_is_walked_back_to_the_first_stranger():
    assert client_address("127.0.0.1", "203.0.113.9, 10.1.2.3", PROXY) == "203.0.113.9"
    assert client_address("127.0.0.1", "10.1.2.3, 10.9.9.9", PROXY) == "127.0.0.1"


def test_junk_in_the_chain_leaves_the_connection_as_the_client():
    for header in ("", "  ", "unknown", "203.0.113.9, not-an-ip", "203.0.113.9,,", "x" * 10_000):
        assert client_address("127.0.0.1", header, PROXY) == "127.0.0.1", header
    assert client_address(None, "203.0.113.9", PROXY) == "-"


def test_ipv6_hops_are_written_one_way():
    assert client_address("127.0.0.1", "2001:DB8::0001", PROXY) == "2001:db8::1"


@given(peer=st.ip_addresses().map(str), header=st.text(max_size=300),
       hops=st.lists(st.ip_addresses().map(str), max_size=5))
def test_the_answer_is_the_peer_or_an_untrusted_hop_of_the_header(peer, header, hops):
    for forwarded in (header, ", ".join(hops), header + ", " + ", ".join(hops)):
        got = client_address(peer, forwarded, PROXY)
        if got == peer:
            continue
        assert any(ipaddress.ip_address(peer) in n for n in PROXY)        # only a proxy is looked through
        assert not any(ipaddress.ip_address(got) in n for n in PROXY)     # never one of our proxies
        assert got in {str(ipaddress.ip_address(h.strip())) for h in forwarded.split(",") if h.strip()
                       and _is_ip(h.strip())}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
