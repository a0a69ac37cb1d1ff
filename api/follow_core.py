"""Clients follow the leader in an HA pair (docs/ha.md, "Clients follow the leader"). Pure.

Every node of a pair answers HTTP and WebSocket clients; what a node does with a
request depends on whether it leads and whether the pair has an event broker:

- **The leader** serves everything itself.
- **A standby with a broker** is an API node (docs/scale-out.md): ``/ws`` from the
  broker's stream (so a client's ``seq`` is the stream sequence, the same on every
  node and across a takeover), every ``/api/`` request forwarded to the leader with
  the client's own credential. Pages, ``/healthz``, ``/metrics`` and the dialplan's
  hooks stay its own.
- **A standby without a broker** serves reads from its own warm call model and
  answers commands with 503 ``standby`` naming the leader (its node id and, when
  ``ha_peers`` gives it, its address in ``Cti-Leader-Url``): the desktop moves there.

A request a standby already forwarded is never forwarded again (``FORWARDED_BY``):
two nodes that both believe the other leads (a stale lease row) answer 503 rather
than pass it back and forth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping
from urllib.parse import urlsplit

from api.standby import refuses

FORWARDED_BY = "Cti-Forwarded-By"   # the standby that forwarded a request (loop guard)
LEADER_URL = "Cti-Leader-Url"       # the leader's address, on a standby's 503
CORS_MAX_AGE_S = 600
CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
CORS_EXPOSE = f"{LEADER_URL}, Retry-After"

Verdict = Literal["local", "forward", "refuse"]


@dataclass(frozen=True, slots=True)
class Peers:
    """The pair's nodes and their base URLs (``ha_peers``), and this node's name."""
    me: str
    urls: Mapping[str, str]

    def leader_url(self, holder: str | None) -> str | None:
        """The address to forward to: the lease holder's, never this node's own (a node that
        holds the row but does not lead, stepping down or taking over, has nobody to send to)."""
        if holder is None or holder == self.me:
            return None
        return self.urls.get(holder)

    def origins(self) -> frozenset[str]:
        """The browser origins of the nodes (scheme://host[:port]), allowed by CORS."""
        return frozenset(origin_of(u) for u in self.urls.values())

    def others_first(self) -> list[str]:
        """Every node's URL, this node's last: the order a desktop tries them in."""
        mine = [u for n, u in self.urls.items() if n == self.me]
        return [u for n, u in self.urls.items() if n != self.me] + mine


def origin_of(url: str) -> str:
    """The origin a browser sends for a page at ``url`` (default ports dropped)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{host}" + ("" if port is None or port == default else f":{port}")


def verdict(method: str, path: str, *, leading: bool, broker: bool, leader_known: bool,
            forwarded: bool) -> Verdict:
    """What a node does with a request (see the module doc). ``leader_known``: the lease
    names another node whose address is configured; ``forwarded``: it came from a standby."""
    if leading or not path.startswith("/api/"):
        return "local"
    if broker and leader_known and not forwarded:
        return "forward"
    return "refuse" if refuses(method, path, leading) else "local"


def cors(origin: str | None, allowed: frozenset[str], preflight: bool) -> dict[str, str] | None:
    """The CORS headers for a request from ``origin`` to a node of the pair, or None when
    none are due (no Origin, or one that is not a node of the pair). Credentials are bearer
    tokens in a header, never cookies: no ``Allow-Credentials``."""
    if origin is None or origin not in allowed:
        return None
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Expose-Headers": CORS_EXPOSE}
    if preflight:
        headers.update({"Access-Control-Allow-Methods": CORS_METHODS, "Access-Control-Allow-Headers": CORS_HEADERS,
                        "Access-Control-Max-Age": str(CORS_MAX_AGE_S)})
    return headers


def hello_part(peers: Peers, *, leading: bool, holder: str | None, broker: bool) -> dict[str, object]:
    """What a WebSocket hello tells a desktop of the pair: whether this node leads, where
    the leader is, the nodes to try when this one goes away (others first), and whether
    ``seq`` continues on another node (``shared_stream``: with a broker it does; without,
    each node numbers its own streams and a move is a resync)."""
    return {"node": peers.me, "leading": leading, "leader": holder,
            "leader_url": None if leading else peers.leader_url(holder),
            "nodes": peers.others_first(), "shared_stream": broker}


def connect_sources(urls: list[str] | tuple[str, ...]) -> str:
    """The pair's nodes for a page's CSP ``connect-src`` (the desktop's): each origin for
    the API and its ``ws``/``wss`` twin for ``/ws``, space-separated with a leading space
    ("" without nodes)."""
    out: list[str] = []
    for url in urls:
        origin = origin_of(url)
        ws = "wss" + origin[5:] if origin.startswith("https") else "ws" + origin[4:]
        out += [origin, ws]
    return "".join(f" {o}" for o in dict.fromkeys(out))
