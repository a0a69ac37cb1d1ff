"""Who a request comes from, behind a reverse proxy or not (pure: no I/O).

The connection's peer is the client unless it is a proxy we trust
(``http_trusted_proxies``). Then the client is the right-most address of
``X-Forwarded-For`` that is not itself a trusted proxy: every proxy appends
the address it received the request from, so the entries to the left of the
last trusted hop are whatever the client chose to send and are never believed.
A header that is absent, empty or not made of addresses leaves the peer as the
client: a misconfigured proxy costs per-client limits, never lets a client
pick its own address.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def networks(items: tuple[str, ...]) -> tuple[Network, ...]:
    """The trusted proxies' networks (the setting's strings, already checked)."""
    return tuple(ipaddress.ip_network(i, strict=False) for i in items)


def _trusted(address: str, trusted: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address for per-client rules and logs ("-" when unknown)."""
    if not peer:
        return "-"
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for[:4096].split(",")]
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer               # junk in the chain: believe only the connection
        if not _trusted(address, trusted):
            return address
    return peer                       # every hop a proxy of ours: the request began there
