"""Webhooks' core: which events a subscription wants, the payload, its signature,
the retry schedule, which addresses a delivery may connect to and the short code
each failure is logged with. Pure (``hmac``, ``json`` and ``ipaddress`` only).

A delivery is an HTTP POST of the JSON payload with these headers::

    Content-Type: application/json
    X-Cti-Event: call.ended
    X-Cti-Delivery: <event id: call_id:call_seq, the same for every attempt>
    X-Cti-Signature: t=1767225600,v1=<hex HMAC-SHA256 of "1767225600." + body, keyed by the secret>

The receiver recomputes the HMAC over ``f"{t}.".encode() + raw_body`` with the
subscription's secret, compares in constant time, and refuses a ``t`` too far
from its clock (``verify`` does all three), so a captured request cannot be
replayed later and a body cannot be changed. A 2xx answer is success; any
other answer, a timeout or a refused connection is retried after
``backoff(attempt)`` seconds, up to ``MAX_ATTEMPTS`` attempts.

Where a delivery may go (docs/security.md, "Webhooks"): the daemon sits inside the
contact centre's network, so a webhook URL must not turn it into a way in. Every
address a delivery is about to connect to (after DNS, on every connection, so a
name that changes its answer gains nothing) must pass ``address_allowed``: not
loopback, link-local (cloud metadata at 169.254.169.254), private (RFC 1918),
shared (CGNAT), ULA, multicast, unspecified or otherwise reserved, including the
IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64), unless the admin
allowlists its network (``CTI_WEBHOOK_ALLOW``). The delivery log shows only a
short code per failure (``failure_code``), the same for a closed port as for an
open port that does not speak HTTP, so the log cannot be used to scan.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import asdict, is_dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
TOLERANCE_S = 300
SIGNATURE_HEADER = "X-Cti-Signature"

# What a subscription may name: the kinds the daemon delivers (cti/events.py's table
# without call.state, which is never delivered; the ACD's decisions, acd/routing_shell.py;
# recording/recorder.py; api/ticket_routes.py), their families, or everything.
KINDS = frozenset({
    "call.started", "call.answered", "call.inbound", "call.queued", "call.outbound", "call.offered",
    "call.offer_ended", "call.connected", "call.agent_left", "call.dequeued", "call.abandoned", "call.held",
    "call.resumed", "call.transferred", "call.merged", "call.ended", "call.ivr",
    "acd.offer", "acd.withdrawn", "acd.maxwait", "acd.escalated", "acd.moved", "acd.dequeued", "acd.announced",
    "acd.callback_requested", "acd.callback_attempt",
    "recording.started", "recording.paused", "recording.resumed", "recording.stopped",
    "ticket.dispatched",
})
FAMILIES = frozenset(k.split(".", 1)[0] for k in KINDS)


def valid_pattern(p: str) -> bool:
    """``call.ended`` (a kind the daemon delivers), ``call.*`` (a family of them)
    or ``*`` (everything); anything else, a typo included, is not."""
    return p == "*" or p in KINDS or (p.endswith(".*") and p[:-2] in FAMILIES)


def wants(patterns: Iterable[str], kind: str) -> bool:
    for p in patterns:
        if p == "*" or p == kind or (p.endswith(".*") and kind.startswith(p[:-1])):
            return True
    return False


def payload(kind: str, call_id: str, seq: int, at: float, call: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of one event (``call``: a ``CallView`` or its dict)."""
    return {"id": f"{call_id}:{seq}", "type": kind, "call_id": call_id, "call_seq": seq, "at": at,
            "call": asdict(call) if is_dataclass(call) else dict(call), "data": dict(data)}


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str, allow_nan=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Cti-Signature`` value for ``body`` sent at ``timestamp`` (epoch seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = TOLERANCE_S) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its time is within
    ``tolerance`` seconds of ``now``. What receivers should do."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, 4 ... capped)."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))


def outcome(status: int | None) -> str:
    """``delivered`` for a 2xx answer, else ``failed`` (to retry)."""
    return "delivered" if status is not None and 200 <= status < 300 else "failed"


# -- where a delivery may connect -----------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused unless allowlisted. Most are also outside ``is_global``; listed so the
# docs and the code say the same thing.
REFUSED_NETWORKS: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8",          # "this network", unspecified
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",   # RFC 1918
    "100.64.0.0/10",      # shared address space (CGNAT)
    "127.0.0.0/8",        # loopback
    "169.254.0.0/16",     # link-local, cloud metadata
    "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",  # special, test
    "224.0.0.0/4",        # multicast
    "240.0.0.0/4",        # reserved, broadcast
    "::/128", "::1/128",  # unspecified, loopback
    "::/96",              # IPv4-compatible (deprecated)
    "100::/64",           # discard
    "2001::/23",          # IETF protocol assignments (Teredo among them)
    "2001:db8::/32",      # documentation
    "fc00::/7",           # unique local (ULA)
    "fe80::/10",          # link-local
    "fec0::/10",          # site-local (deprecated)
    "ff00::/8",           # multicast
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped ``::ffff:a.b.c.d``,
    6to4 ``2002:AABB:CCDD::``, NAT64 ``64:ff9b::a.b.c.d``), else None."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: Address | str, allow: Sequence[Network] = ()) -> bool:
    """May a delivery connect to ``ip``? Yes when an ``allow`` network holds it (or the
    IPv4 address it carries); else only when neither it nor the IPv4 address it
    carries is in ``REFUSED_NETWORKS``, and it is a global address."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])   # an IPv6 scope id names an interface
    inner = embedded_ipv4(ip)
    candidates = [ip] if inner is None else [ip, inner]
    if any(c in net for c in candidates for net in allow if c.version == net.version):
        return True
    for c in [inner] if inner is not None else [ip]:
        if any(c in net for net in REFUSED_NETWORKS if c.version == net.version) or not c.is_global:
            return False
    return True


def parse_allow(text: str | Iterable[str]) -> tuple[Network, ...]:
    """``"127.0.0.0/8, 10.1.2.3"`` (or a list of them) as networks; a bare address is
    its own /32 or /128. Raises ``ValueError`` naming the first bad entry."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[Network] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not a network or address: {item[:60]!r} (e.g. 127.0.0.0/8, 10.1.2.3)") from None
    return tuple(out)


_HOST = re.compile(r"^https?://(?:[^/?#@]*@)?(\[[^\]/?#]*\]|[^/?#:]*)(?::[0-9]*)?(?:[/?#]|$)", re.IGNORECASE)
# No top-level domain is numeric: a host whose last label is a number is an address
# in some legacy form (127.1, 2130706433, 0x7f.1, 0177.0.0.1), which resolvers read
# differently from one another.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def target_problem(url: str, allow: Sequence[Network] = ()) -> str | None:
    """Why ``url`` cannot be a webhook target, or None. Only what the URL itself shows is
    judged here (a literal address, a host-less URL, user info); a name is checked
    against the addresses it resolves to when each delivery connects."""
    m = _HOST.match(url)
    if m is None:
        return "must be an http:// or https:// URL with a host"
    if "@" in url.split("//", 1)[1].split("/", 1)[0]:
        return "must not carry a user name or password (the secret signs the payload)"
    host = m.group(1)
    if host.startswith("["):
        host = host[1:-1]
        if "%" in host:
            return "must not name an interface (IPv6 scope id)"
        try:
            ip: Address = ipaddress.IPv6Address(host)
        except ValueError:
            return "has a malformed IPv6 address"
    else:
        if not host:
            return "must be an http:// or https:// URL with a host"
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
                return "has a numeric host that is not a dotted IPv4 address (e.g. 127.1 or 2130706433)"
            return None
    if not address_allowed(ip, allow):
        return ("is on a loopback, link-local, private or reserved network; an admin may allow it with "
                "CTI_WEBHOOK_ALLOW")
    return None


# -- what the delivery log says -------------------------------------------------------

Failure = Literal["refused_address", "connect_failed", "timeout"]


def failure_code(status: int | None, failure: Failure | None) -> str | None:
    """The short code a delivery attempt is logged with: None for a 2xx answer,
    ``http_<status>`` for any other answer, else the failure itself. ``connect_failed``
    covers everything between the address check and an HTTP status line (no such
    name, refused, reset, TLS, an answer that is not HTTP), so a closed port and an
    open port that speaks something else read the same."""
    if status is not None:
        return None if 200 <= status < 300 else f"http_{status}"
    return failure or "connect_failed"
