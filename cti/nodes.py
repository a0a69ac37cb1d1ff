"""Several Asterisk nodes: who they are, how their ids stay apart, when one is dead. Pure.

One daemon follows every Asterisk node listed in the settings (``ami_nodes``), each
with its own AMI connection and resync (``cti.daemon``). What this module decides,
with no I/O and no clock (time is passed in, as in ``acd.core``):

- **Which nodes** (``node_specs``): the ``ami_nodes`` list, or, when it is empty,
  one node built from the single-node settings (``ami_host``, ``ami_port``,
  ``ami_user``, ``ami_secret``) named ``ami_node_name`` (``a``). A node's name is
  letters and digits (``NODE_NAME``): it is the prefix that keeps its ids apart, so
  it may hold no ``-``.
- **Ids that stay unique** (``qualify``): Asterisk numbers channels per process
  (``Uniqueid``, ``Linkedid``: ``<systemname>-<epoch>.<n>``), so two nodes may both
  have a ``1795335442.7``. With several nodes every uniqueid-like header of a frame
  (any key ending in ``Uniqueid`` or ``Linkedid``: ``DestUniqueid``,
  ``TransfererLinkedid``, ``BridgeUniqueid``..., and a listing's ``BridgeId``) is
  prefixed with ``<node>-`` before the call model, the typed inputs and the features
  see it, unless it already starts
  so: an Asterisk whose ``systemname`` is its node's name (the cluster's
  ``asterisk.conf``, scripts/asterisk-cluster) keeps its own ids, which then match
  its CDRs and logs. With one node nothing is rewritten: ids are as before.
  A call's id is its origin's qualified Linkedid, so the call model, the store,
  screen-pops and reports need nothing more to tell two nodes' calls apart; the
  node of an id is what comes before its first ``-`` (``node_of_id``).
- **Death** (``NodeWatch``): a node whose AMI connection is lost (or that never
  connected since the start) and that is not back within ``dead_after`` seconds is
  dead: ``NodeDead(node, since)`` once, ``since`` being when it was lost (the end
  time its calls are given: Asterisk's calls cannot outlive its connection by
  more than that, and a restart kills them then). The shell closes its calls
  by estimate and tells the features (its agents' phones become unreachable).
  A node that connects again is ``NodeBack`` (once per death): its resync adopts
  whatever it holds. A connection lost and back within ``dead_after`` is neither:
  the resync closes what vanished meanwhile, as with one node.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

NODE_NAME = re.compile(r"[A-Za-z0-9]{1,32}")

STARTING, UP, DOWN, DEAD = "starting", "up", "down", "dead"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One Asterisk node to follow: its name and AMI endpoint (``secret`` is a
    ``SecretStr``: it prints as stars)."""

    name: str
    host: str
    port: int
    user: str
    secret: Any
    phone_pjsip_conf: str | None = None     # the phones' file this node reads (None: ``phone_pjsip_conf``)

    def __repr__(self) -> str:
        return f"NodeSpec({self.name!r}, {self.host}:{self.port}, user={self.user!r})"


def check_node_name(name: str) -> str:
    """``name`` if it is a valid node name. Raises ``ValueError`` naming the rule."""
    if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
        raise ValueError(f"node name {name!r}: 1 to 32 letters and digits (it prefixes the node's call ids)")
    return name


def check_nodes(names: Sequence[str]) -> None:
    """Raises ``ValueError`` for a bad or repeated node name."""
    seen: set[str] = set()
    for name in names:
        check_node_name(name)
        if name in seen:
            raise ValueError(f"node name {name!r} is listed twice")
        seen.add(name)


def node_specs(settings: Any) -> list[NodeSpec]:
    """The nodes the daemon follows, in the order given (the first is the
    *primary*: the one features without a node of their own act on)."""
    nodes = list(getattr(settings, "ami_nodes", ()) or ())
    if not nodes:
        return [NodeSpec(settings.ami_node_name, settings.ami_host, settings.ami_port, settings.ami_user,
                         settings.ami_secret)]
    return [NodeSpec(n.name, n.host, n.port, n.user, n.secret, n.phone_pjsip_conf) for n in nodes]


# -- ids ---------------------------------------------------------------------------

def _id_key(key: str) -> bool:
    # CoreShowChannel names the bridge BridgeId; events name it BridgeUniqueid.
    return key.endswith(("Uniqueid", "Linkedid")) or key == "BridgeId"


def qualified(node: str, uid: str) -> str:
    """``uid`` (a Uniqueid or Linkedid of ``node``) as it is known across nodes."""
    if not uid or uid.startswith(node + "-"):
        return uid
    return f"{node}-{uid}"


def qualify(node: str | None, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The frame's headers with every uniqueid-like value qualified by ``node``
    (``qualified``); ``headers`` itself when there is nothing to change (and always
    for ``node`` None: one node, ids as Asterisk gives them)."""
    if node is None:
        return headers
    prefix = node + "-"
    changed: dict[str, str] | None = None
    for key, value in headers.items():
        if value and _id_key(key) and not value.startswith(prefix):
            if changed is None:
                changed = dict(headers)
            changed[key] = prefix + value
    return headers if changed is None else changed


def node_of_id(call_id: str, nodes: Iterable[str]) -> str | None:
    """The node a qualified id belongs to (the text before its first ``-`` when that
    is a node's name), or None."""
    head, sep, _ = call_id.partition("-")
    return head if sep and head in set(nodes) else None


# -- what acts on which node: the IVR's sessions, the phones' files ------------------

def _ip(text: str | None) -> str | None:
    """An address as one spelling (``::ffff:10.0.0.2`` is ``10.0.0.2``), else the text."""
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def session_node(peer: str | None, call_id: str, addresses: Mapping[str, Iterable[str]]) -> str | None:
    """The node a FastAGI session (or any connection an Asterisk node opens to us) speaks
    for: the node ``call_id`` names when the connection comes from one of that node's
    ``addresses`` (its AMI host's), else the only node at the connection's address
    ``peer``. None when no node is at ``peer``, when the node ``call_id`` names is
    elsewhere, or when several nodes share ``peer`` and the id names none of them (an
    Asterisk without its ``systemname``: its ids do not say whose they are)."""
    ip = _ip(peer)
    if ip is None:
        return None
    at = {n for n, addrs in addresses.items() if ip in {_ip(a) for a in addrs}}
    named = node_of_id(call_id, addresses)
    if named is not None:
        return named if named in at else None
    return next(iter(at)) if len(at) == 1 else None


def provision_targets(specs: Sequence[NodeSpec], default: Any) -> dict[str, str]:
    """Which file of the phones' PJSIP sections each node reads (node -> path): the
    node's own ``phone_pjsip_conf``, else ``default`` (one file every node reads: a
    shared directory, or nodes on one host). A node with neither is not provisioned by
    the daemon. Every device goes to every file: a phone may register on any node,
    and which one is known only once it has."""
    out = {}
    for n in specs:
        path = n.phone_pjsip_conf or default
        if path:
            out[n.name] = str(path)
    return out


# -- the inter-node trunk ----------------------------------------------------------

TRUNK_ENDPOINT = "cti-trunk-"   # + the far node's name: the PJSIP endpoint on each node


def route_device(device: str, caller_node: str | None, device_nodes: set[str | None]) -> str:
    """The dial string that rings ``device`` (``PJSIP/<aor>``) from a call on
    ``caller_node``, its phone being registered on ``device_nodes``: itself when the
    phone is there (or nowhere known, or the call's node is unknown, or it is not a
    plain PJSIP device), else ``PJSIP/<aor>@cti-trunk-<node>`` through the trunk to
    the first of its nodes (the far node's dialplan rings the phone there)."""
    if caller_node is None or caller_node in device_nodes or not device.startswith("PJSIP/"):
        return device
    aor = device[len("PJSIP/"):]
    others = sorted(n for n in device_nodes if n is not None)
    if not others or not aor or any(c in aor for c in "/@,&"):
        return device
    return f"PJSIP/{aor}@{TRUNK_ENDPOINT}{others[0]}"


# -- death and return --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NodeDead:
    """Node ``node`` has been away since ``since`` for longer than allowed."""

    node: str
    since: float


@dataclass(frozen=True, slots=True)
class NodeBack:
    """Node ``node``, once declared dead, is connected again at ``at`` (its resync ran)."""

    node: str
    at: float


NodeChange = NodeDead | NodeBack


@dataclass(slots=True)
class _Node:
    state: str
    since: float            # when it entered that state


class NodeWatch:
    """Each node's state (``starting``, ``up``, ``down``, ``dead``) from what the shell
    tells it; returns the deaths and returns as they are due. Time is an argument:
    ``next_deadline()`` says when ``tick`` has something to do."""

    def __init__(self, nodes: Iterable[str], dead_after: float, now: float) -> None:
        if dead_after <= 0:
            raise ValueError("dead_after must be positive")
        self.dead_after = dead_after
        self._nodes = {n: _Node(STARTING, now) for n in nodes}

    def state(self, node: str) -> str:
        return self._nodes[node].state

    def states(self) -> dict[str, str]:
        return {n: s.state for n, s in self._nodes.items()}

    def connected(self, node: str, now: float) -> list[NodeChange]:
        """The node's AMI connection is up and resynced."""
        n = self._nodes[node]
        out: list[NodeChange] = [NodeBack(node, now)] if n.state == DEAD else []
        n.state, n.since = UP, now
        return out

    def lost(self, node: str, at: float) -> list[NodeChange]:
        """The node's connection was lost at ``at`` (nothing if it was not up)."""
        n = self._nodes[node]
        if n.state == UP:
            n.state, n.since = DOWN, at
        return []

    def next_deadline(self) -> float | None:
        """When the next node away becomes dead, or None."""
        due = [n.since + self.dead_after for n in self._nodes.values() if n.state in (STARTING, DOWN)]
        return min(due) if due else None

    def tick(self, now: float) -> list[NodeChange]:
        """The nodes away for ``dead_after`` or longer at ``now``: each dead once."""
        out: list[NodeChange] = []
        for name, n in self._nodes.items():
            if n.state in (STARTING, DOWN) and now >= n.since + self.dead_after:
                out.append(NodeDead(name, n.since))
                n.state = DEAD
        return out
