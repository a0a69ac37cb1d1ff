"""The call model: AMI events in, calls and domain events out. Pure: no I/O, no clock.

Why it is shaped like this:

- A *leg* is one Asterisk channel, keyed by ``Uniqueid``. A *call* is the group
  of legs sharing a ``Linkedid``; its id is that Linkedid. Asterisk changes a
  channel's Linkedid when it enters a bridge (every participant takes the
  oldest one present), so every event that names a known leg with another
  Linkedid moves the leg to that call. A call left with no legs by such a move
  ends as *merged* into the other.
- The call's *origin* is the leg whose Uniqueid is the Linkedid (the channel
  that started it). Caller ID, answer time and hangup cause are the origin's.
- The state is derived, not stored: ``derive_state`` looks at the facts
  (hung up, held in a bridge, bridged, transferred, ringing an agent, queued,
  answered) in a fixed order of precedence. Events change facts; after each,
  the state is derived again and ``call.state`` is emitted when it changed.
- Time comes from the event's ``Timestamp`` header (``timestampevents=yes`` in
  manager.conf), so durations are Asterisk's own; ``now`` is the fallback.
- ``resync`` reconciles the model with a fresh ``CoreShowChannels`` (and
  ``QueueStatus``) listing after a reconnect: legs that vanished meanwhile are
  ended with an estimated time, legs we never saw are adopted.
- Several Asterisk nodes (``cti.nodes``): each frame is fed with the node it came
  from, its ids already qualified by the shell (``cti.nodes.qualify``), so ids never
  clash; each leg and call knows its node (a call's is its origin's). A resync is
  one node's: only that node's legs can vanish in it. ``node_down`` ends every leg
  of a node that died, by estimate; the other nodes' calls are untouched.
- The inter-node trunk: a caller on node A offered to an agent on node B is one
  call, A's. A's leg dialled into the trunk (``PJSIP/cti-trunk-b-...``) is the
  agent's leg of A's call, and what A reports (the offer, the answer, the hangup)
  is the whole call. On B the trunk's channel *starts* a call (its Uniqueid is its
  Linkedid) and everything linked to it is the far half of A's call: not a call of
  its own, ignored (``trunk_prefix``; counted in ``trunk_legs``).

Values from AMI are caller-controlled (names, numbers): they are kept as
text, never interpreted, and must be sanitised by whoever sends them back to
Asterisk (``cti.amiproto.encode_action`` refuses CR/LF).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from cti.amiproto import unescape_cid
from cti.events import (
    Annotation, CallAbandoned, CallAgentLeft, CallAnswered, CallConnected, CallDequeued, CallEnded, CallEvent,
    CallHeld, CallInbound, CallMerged, CallOfferEnded, CallOffered, CallOutbound, CallQueued, CallResumed,
    CallStarted, CallStateChanged, CallTransferred, CallView,
)

Headers = Mapping[str, str]

RINGING, IVR, QUEUED, OFFERED, TALKING, HELD, TRANSFERRED, ENDED = (
    "ringing", "ivr", "queued", "offered", "talking", "held", "transferred", "ended",
)

# Asterisk's pseudo-channel that runs the "failed" extension of an Originate
# that could not be placed: it is not a caller.
# Not calls: Asterisk's stand-in for a failed originate, the Local channel the
# phone service originates to have the dialplan reload res_pjsip
# (phone/gateway.py, [cti-phone-reload]), and the one the ACD originates to
# raise its epoch (acd/epoch.py, [cti-acd-epoch]), or to move a waiting caller through the
# epoch gate ([cti-acd-move]), or to redirect one through it in an HA pair ([cti-acd-gate]).
_PSEUDO_CHANNELS = ("OutgoingSpoolFailed", "Local/pjsip@cti-phone-reload-", "Local/raise@cti-acd-epoch-",
                    "Local/move@cti-acd-move-", "Local/redirect@cti-acd-gate-")
# An agent id as the ACD configuration allows it (acd/config.py).
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NUMBER = re.compile(r"\+?[0-9]{2,20}")


def _cid(value: str | None) -> str | None:
    if not value or value == "<unknown>":
        return None
    return value


@dataclass(slots=True)
class Leg:
    uniqueid: str
    linkedid: str
    channel: str
    created_at: float
    up: bool = False
    bridge: str | None = None
    moh: bool = False
    on_hold: bool = False
    cause: int | None = None
    cause_txt: str | None = None
    node: str | None = None


@dataclass(slots=True)
class Call:
    call_id: str
    started_at: float
    node: str | None = None       # the Asterisk node of its origin (None: one node, unnamed)
    legs: dict[str, Leg] = field(default_factory=dict)
    direction: str = "internal"
    caller_num: str | None = None
    caller_name: str | None = None
    exten: str | None = None
    answered_at: float | None = None
    queue: str | None = None
    queue_joined_at: float | None = None
    queue_left_at: float | None = None
    in_queue: bool = False
    agent: str | None = None
    agent_answered_at: float | None = None
    ended_at: float | None = None
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    end_estimated: bool = False
    abandoned: bool = False
    transferred: bool = False
    # agent leg Uniqueid -> (agent name, device) while it rings
    offers: dict[str, tuple[str, str]] = field(default_factory=dict)
    # the leg of the agent who answered, while it lives
    agent_leg: str | None = None
    # every answered agent leg still up -> its agent (a transfer adds the target's
    # while the transferer's may live on): each reports call.agent_left as it ends
    agent_legs: dict[str, str] = field(default_factory=dict)
    # (agent id, channel-name prefix) the router has just offered the call to
    expected: tuple[str, str] | None = None
    # click-to-dial: the agent whose device placed the call (the party dialled is the customer)
    dialler: str | None = None
    legs_seen: int = 0
    seq: int = 0
    state: str = RINGING

    def view(self) -> CallView:
        return CallView(
            self.call_id, self.state, self.direction, self.caller_num, self.caller_name,
            self.exten, self.started_at, self.answered_at, self.queue, self.queue_joined_at,
            self.queue_left_at, self.agent, self.agent_answered_at, self.ended_at,
            self.hangup_cause, self.hangup_cause_txt, self.end_estimated, self.abandoned,
            self.legs_seen,
        )


def derive_state(call: Call, bridges: Mapping[str, set[str]]) -> str:
    """The state a call is in, from its facts, in order of precedence."""
    if call.ended_at is not None:
        return ENDED
    talking = False
    for leg in call.legs.values():
        if leg.bridge is not None and len(bridges.get(leg.bridge, ())) >= 2:
            if leg.on_hold or leg.moh:
                return HELD
            talking = True
    # An agent who answered is talking from that moment until their leg ends,
    # whatever the bridge is doing meanwhile.
    if talking or (call.agent_leg is not None and call.agent_leg in call.legs):
        return TALKING
    if call.transferred:
        return TRANSFERRED
    if call.offers:
        return OFFERED
    if call.in_queue:
        return QUEUED
    origin = call.legs.get(call.call_id)
    if call.answered_at is not None or (origin is not None and origin.up):
        return IVR
    return RINGING


def _parse_duration(text: str | None) -> float:
    """CoreShowChannel's Duration, ``HH:MM:SS``, in seconds (0 if unreadable)."""
    if not text:
        return 0.0
    try:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return 0.0


class CallModel:
    """Mirror of Asterisk's calls. ``feed`` one event at a time; read ``calls``.

    Returns from ``feed``/``resync``: the domain events the input caused, in order.
    Never raises on odd input: an event about an unknown channel is ignored
    (counted in ``ignored``), a malformed number is treated as absent.
    """

    def __init__(self, trunk_prefix: str | None = None) -> None:
        self.calls: dict[str, Call] = {}
        self.legs: dict[str, Call] = {}      # Uniqueid -> the call it belongs to
        self.bridges: dict[str, set[str]] = {}
        self.ignored = 0
        self.events_in = 0
        # Channels of the inter-node trunk start so; a call one of them starts is
        # the far half of another node's call: its Linkedid -> its node, ignored.
        self.trunk_prefix = trunk_prefix or None
        self.foreign: dict[str, str | None] = {}
        self.trunk_legs = 0
        self._node: str | None = None         # the node of the frame being fed
        self._handlers: dict[str, Callable[[Headers, float, list[CallEvent]], None]] = {
            "Newchannel": self._newchannel,
            "Newstate": self._newstate,
            "NewCallerid": self._newcallerid,
            "Hangup": self._hangup,
            "BridgeEnter": self._bridge_enter,
            "BridgeLeave": self._bridge_leave,
            "BridgeDestroy": self._bridge_destroy,
            "DialBegin": self._dial_begin,
            "DialEnd": self._dial_end,
            "QueueCallerJoin": self._queue_join,
            "QueueCallerLeave": self._queue_leave,
            "QueueCallerAbandon": self._queue_abandon,
            "AgentCalled": self._agent_called,
            "AgentConnect": self._agent_connect,
            "MusicOnHoldStart": self._moh_start,
            "MusicOnHoldStop": self._moh_stop,
            "Hold": self._hold,
            "Unhold": self._unhold,
            "BlindTransfer": self._blind_transfer,
            "AttendedTransfer": self._attended_transfer,
            "UserEvent": self._user_event,
        }

    # -- input ---------------------------------------------------------------

    def feed(self, headers: Headers, now: float, node: str | None = None) -> list[CallEvent]:
        """Apply one AMI event (its headers) from ``node`` (None: the one node), its
        ids qualified (``cti.nodes.qualify``). ``now`` is used when it has no Timestamp."""
        self.events_in += 1
        handler = self._handlers.get(headers.get("Event", ""))
        if handler is None:
            return []
        self._node = node
        ts = headers.get("Timestamp")
        if ts is not None:
            try:
                now = float(ts)
            except ValueError:
                pass
        out: list[CallEvent] = []
        handler(headers, now, out)
        return out

    def resync(self, channels: Iterable[Headers], queue_entries: Iterable[Headers], now: float,
               node: str | None = None) -> list[CallEvent]:
        """Reconcile with a fresh listing of live channels (``CoreShowChannel`` items)
        and queue entries (``QueueEntry`` items) taken at ``now`` on ``node`` (None:
        the one node; ids qualified like ``feed``'s). Only that node's legs can vanish."""
        out: list[CallEvent] = []
        self._node = node
        live: dict[str, Headers] = {}
        foreign = {k: n for k, n in self.foreign.items() if n != node}
        channels = [c for c in channels if c.get("Uniqueid")]
        for c in channels:           # the trunk's far halves first: a listing is in no order
            linkedid = c.get("Linkedid") or c["Uniqueid"]
            if self._is_trunk_origin(c["Uniqueid"], linkedid, c.get("Channel", "")):
                foreign[linkedid] = node
        self.foreign = foreign
        for c in channels:
            channel = c.get("Channel", "")
            if channel.startswith(_PSEUDO_CHANNELS) or (c.get("Linkedid") or c["Uniqueid"]) in foreign:
                continue
            live[c["Uniqueid"]] = c
        # Legs that ended while we were away.
        for uid in [u for u, call in self.legs.items() if u not in live and call.legs[u].node == node]:
            call = self.legs[uid]
            leg = call.legs[uid]
            self._drop_leg(call, leg, now, out, estimated=True)
        # Legs we have never seen, and the bridges everyone is in now (this node's
        # bridges are listed again; the others' stay).
        self.bridges = {b: members for b, members in self.bridges.items()
                        if members and not any(self._leg_node(u) == node for u in members)}
        for uid, item in live.items():
            call = self.legs.get(uid)
            linkedid = item.get("Linkedid") or uid
            if call is None:
                created = now - _parse_duration(item.get("Duration"))
                call = self._add_leg(uid, linkedid, item.get("Channel", ""), created, out)
                leg = call.legs[uid]
                if uid == call.call_id:
                    self._set_caller(call, item.get("CallerIDNum"), item.get("CallerIDName"))
            else:
                leg = call.legs[uid]
                if linkedid != call.call_id:
                    call = self._move_leg(call, leg, linkedid, now, out)
            leg.up = item.get("ChannelStateDesc") == "Up"
            leg.bridge = item.get("BridgeId") or None
            if leg.bridge:
                self.bridges.setdefault(leg.bridge, set()).add(uid)
        for entry in queue_entries:
            call = self.legs.get(entry.get("Uniqueid", ""))
            if call is None:
                continue
            call.in_queue = True
            call.queue = entry.get("Queue") or call.queue
            if call.queue_joined_at is None:
                call.queue_joined_at = now - _to_float(entry.get("Wait"), 0.0)
                # Duration and Wait are both whole seconds, rounded down: the two
                # estimates can put the join a second before the start. The call
                # began no later than it joined the queue.
                call.started_at = min(call.started_at, call.queue_joined_at)
        for call in [c for c in self.calls.values() if c.node == node]:
            origin = call.legs.get(call.call_id)
            if origin is not None and origin.up and call.answered_at is None:
                call.answered_at = origin.created_at  # best estimate: unknown while away
            self._update_state(call, now, out)
        return out

    def node_down(self, node: str | None, at: float, reason: str | None = None) -> list[CallEvent]:
        """Asterisk node ``node`` is dead (``cti.nodes.NodeDead``): every leg it had
        ends at ``at``, by estimate, so do the calls left with none; the other
        nodes' calls are untouched. Its resync, when it returns, adopts what lives."""
        out: list[CallEvent] = []
        why = reason or f"Asterisk node {node} was lost"
        for uid in [u for u, call in self.legs.items() if call.legs[u].node == node]:
            call = self.legs[uid]
            self._drop_leg(call, call.legs[uid], at, out, estimated=True, reason=why)
        self.bridges = {b: m for b, m in self.bridges.items() if m}
        self.foreign = {k: n for k, n in self.foreign.items() if n != node}
        return out

    def node_of(self, call_id: str) -> str | None:
        """The node of a live call (its origin's), or None (unknown, or one node)."""
        call = self.calls.get(call_id)
        return call.node if call is not None else None

    # -- channels ------------------------------------------------------------

    def _leg_node(self, uid: str) -> str | None:
        call = self.legs.get(uid)
        return call.legs[uid].node if call is not None else self._node

    def _is_trunk_origin(self, uid: str, linkedid: str, channel: str) -> bool:
        """A trunk channel that starts a call: the far half of another node's call."""
        return self.trunk_prefix is not None and uid == linkedid and channel.startswith(self.trunk_prefix)

    def _add_leg(self, uid: str, linkedid: str, channel: str, at: float, out: list[CallEvent]) -> Call:
        call = self.calls.get(linkedid)
        started = call is None
        if call is None:
            call = self.calls[linkedid] = Call(call_id=linkedid, started_at=at, node=self._node)
        elif at < call.started_at:
            # A resync lists legs in no order: the call began with its oldest leg.
            call.started_at = at
        call.legs[uid] = Leg(uid, linkedid, channel, at, node=self._node)
        call.legs_seen += 1
        self.legs[uid] = call
        if started:
            self._emit(call, CallStarted, at, out, channel=channel)
        return call

    def _newchannel(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        uid = h.get("Uniqueid")
        channel = h.get("Channel", "")
        if not uid or uid in self.legs or channel.startswith(_PSEUDO_CHANNELS):
            return
        linkedid = h.get("Linkedid") or uid
        if linkedid in self.foreign or self._is_trunk_origin(uid, linkedid, channel):
            self.foreign[linkedid] = self._node
            self.trunk_legs += 1
            return
        call = self._add_leg(uid, linkedid, channel, now, out)
        if uid == call.call_id:
            self._set_caller(call, h.get("CallerIDNum"), h.get("CallerIDName"))

    def _leg(self, h: Headers, now: float, out: list[CallEvent], prefix: str = "") -> tuple[Call, Leg] | None:
        """The call and leg an event is about, moving the leg if its Linkedid changed."""
        call = self.legs.get(h.get(prefix + "Uniqueid", ""))
        if call is None:
            if self.foreign and h.get(prefix + "Uniqueid") in self.foreign and h.get("Event") == "Hangup":
                del self.foreign[h[prefix + "Uniqueid"]]     # the trunk's far half is over
            self.ignored += 1
            return None
        leg = call.legs[h[prefix + "Uniqueid"]]
        linkedid = h.get(prefix + "Linkedid")
        if linkedid and linkedid != call.call_id:
            call = self._move_leg(call, leg, linkedid, now, out)
        return call, leg

    def _move_leg(self, old: Call, leg: Leg, linkedid: str, now: float, out: list[CallEvent]) -> Call:
        new = self.calls.get(linkedid)
        if new is None:
            # Regrouped under a Linkedid we have no call for (its origin is gone):
            # the call keeps living under its new id.
            new = Call(call_id=linkedid, started_at=old.started_at, node=old.node)
            self.calls[linkedid] = new
            self._emit(new, CallStarted, now, out, channel=leg.channel)
        del old.legs[leg.uniqueid]
        new.legs[leg.uniqueid] = leg
        new.legs_seen += 1
        leg.linkedid = linkedid
        self.legs[leg.uniqueid] = new
        offer = old.offers.pop(leg.uniqueid, None)
        if offer is not None:
            new.offers[leg.uniqueid] = offer
        agent = old.agent_legs.pop(leg.uniqueid, None)
        if agent is not None:
            new.agent_legs[leg.uniqueid] = agent
        if not old.legs:
            self._end(old, now, out, merged_into=linkedid)
        else:
            self._update_state(old, now, out)
        return new

    def _newstate(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, leg = found
        if h.get("ChannelStateDesc") == "Up" and not leg.up:
            leg.up = True
            if leg.uniqueid == call.call_id and call.answered_at is None:
                call.answered_at = now
                self._emit(call, CallAnswered, now, out)
            self._update_state(call, now, out)

    def _newcallerid(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is not None and found[1].uniqueid == found[0].call_id:
            self._set_caller(found[0], h.get("CallerIDNum"), h.get("CallerIDName"))

    def _set_caller(self, call: Call, num: str | None, name: str | None) -> None:
        call.caller_num = _cid(num)
        name = _cid(name)
        call.caller_name = unescape_cid(name) if name else None

    def _hangup(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, leg = found
        leg.cause = _to_int(h.get("Cause"))
        leg.cause_txt = h.get("Cause-txt")
        self._drop_leg(call, leg, now, out, estimated=False)

    def _drop_leg(self, call: Call, leg: Leg, now: float, out: list[CallEvent], *, estimated: bool,
                  reason: str = "ended while the daemon was disconnected") -> None:
        del call.legs[leg.uniqueid]
        del self.legs[leg.uniqueid]
        if leg.bridge is not None:
            members = self.bridges.get(leg.bridge)
            if members is not None:
                members.discard(leg.uniqueid)
        if leg.uniqueid == call.call_id or call.hangup_cause is None:
            call.hangup_cause, call.hangup_cause_txt = leg.cause, leg.cause_txt
        offer = call.offers.pop(leg.uniqueid, None)
        if offer is not None:
            self._emit(call, CallOfferEnded, now, out, agent=offer[0], device=offer[1], status="HANGUP")
        left = call.agent_legs.pop(leg.uniqueid, None)
        if left is not None:
            self._emit(call, CallAgentLeft, now, out, agent=left, uniqueid=leg.uniqueid)
        if leg.uniqueid == call.call_id and call.in_queue and not call.abandoned and not estimated:
            # The caller hung up while waiting (our ACD: app_queue says so itself).
            call.abandoned = True
            wait = now - call.queue_joined_at if call.queue_joined_at is not None else 0.0
            self._emit(call, CallAbandoned, now, out, queue=call.queue, wait_s=round(wait, 3),
                       position=None)
        if not call.legs:
            call.end_estimated = estimated
            if estimated:
                call.hangup_cause_txt = reason
            self._end(call, now, out)
        else:
            self._update_state(call, now, out)

    def _end(self, call: Call, now: float, out: list[CallEvent], merged_into: str | None = None) -> None:
        if call.in_queue:
            call.in_queue = False
            call.queue_left_at = call.queue_left_at or now
        call.offers.clear()
        call.ended_at = now
        if merged_into is not None:
            self._emit(call, CallMerged, now, out, into=merged_into)
        self._update_state(call, now, out)
        self._emit(call, CallEnded, now, out, cause=call.hangup_cause,
                   cause_txt=call.hangup_cause_txt, estimated=call.end_estimated)
        del self.calls[call.call_id]

    # -- bridges -------------------------------------------------------------

    def _bridge_enter(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, leg = found
        bridge = h.get("BridgeUniqueid")
        if not bridge:
            return
        leg.bridge = bridge
        self.bridges.setdefault(bridge, set()).add(leg.uniqueid)
        if call.transferred:
            call.transferred = False
        # The other parties' calls may change state too (they now have company).
        for uid in self.bridges[bridge]:
            other = self.legs.get(uid)
            if other is not None:
                self._update_state(other, now, out)

    def _bridge_leave(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, leg = found
        bridge = leg.bridge
        leg.bridge = None
        if bridge is None:
            return
        members = self.bridges.get(bridge)
        if members is not None:
            members.discard(leg.uniqueid)
            for uid in members:
                other = self.legs.get(uid)
                if other is not None:
                    self._update_state(other, now, out)
        self._update_state(call, now, out)

    def _bridge_destroy(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self.bridges.pop(h.get("BridgeUniqueid", ""), None)

    # -- dialling and queues -------------------------------------------------

    def _dial_begin(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        if "Uniqueid" not in h:  # an Originate dialling out: nobody is offered anything
            return
        found = self._leg(h, now, out)
        dest = h.get("DestUniqueid")
        if found is None or not dest:
            return
        call, _ = found
        if dest not in call.offers:
            device = h.get("DestChannel", "")
            agent = device
            if call.expected is not None and device.startswith(call.expected[1]):
                agent, call.expected = call.expected[0], None
            elif call.dialler is not None:
                agent = call.dialler   # the customer rings; the call is the dialling agent's
            call.offers[dest] = (agent, device)
            self._emit(call, CallOffered, now, out, agent=agent, device=device, uniqueid=dest)
            self._update_state(call, now, out)

    def _dial_end(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        if "Uniqueid" not in h:
            return
        found = self._leg(h, now, out)
        dest = h.get("DestUniqueid", "")
        if found is None:
            return
        call, _ = found
        offer = call.offers.pop(dest, None)
        if offer is None:
            return
        status = h.get("DialStatus", "")
        if status == "ANSWER":
            call.agent_leg = dest
            call.agent_legs[dest] = offer[0]
            if call.agent_answered_at is None or call.agent != offer[0]:
                call.agent = offer[0]
                call.agent_answered_at = now
                self._emit(call, CallConnected, now, out, agent=offer[0], device=offer[1], uniqueid=dest)
            if call.in_queue:
                call.in_queue = False
                call.queue_left_at = now
                self._emit(call, CallDequeued, now, out, queue=call.queue)
        else:
            self._emit(call, CallOfferEnded, now, out, agent=offer[0], device=offer[1], status=status)
        self._update_state(call, now, out)

    def _agent_called(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        dest = h.get("DestUniqueid")
        if found is None or not dest:
            return
        call, _ = found
        agent = h.get("MemberName") or h.get("Interface") or h.get("DestChannel", "")
        device = h.get("Interface") or h.get("DestChannel", "")
        call.offers[dest] = (agent, device)
        self._emit(call, CallOffered, now, out, agent=agent, device=device, uniqueid=dest,
                   queue=h.get("Queue"), source="app_queue")
        self._update_state(call, now, out)

    def _agent_connect(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, _ = found
        agent = h.get("MemberName") or h.get("Interface")
        if call.agent != agent or call.agent_answered_at is None:
            call.agent = agent
            call.agent_answered_at = call.agent_answered_at or now
            self._emit(call, CallConnected, now, out, agent=agent, device=h.get("Interface"), source="app_queue")

    def _queue_join(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, _ = found
        call.queue = h.get("Queue")
        call.in_queue = True
        call.queue_joined_at = now
        call.queue_left_at = None
        self._emit(call, CallQueued, now, out, queue=call.queue, position=_to_int(h.get("Position")))
        self._update_state(call, now, out)

    def _queue_leave(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, _ = found
        if call.in_queue:
            call.in_queue = False
            call.queue_left_at = now
            self._emit(call, CallDequeued, now, out, queue=h.get("Queue"))
            self._update_state(call, now, out)

    def _queue_abandon(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, _ = found
        call.abandoned = True
        wait = now - call.queue_joined_at if call.queue_joined_at is not None else _to_float(h.get("HoldTime"), 0.0)
        self._emit(call, CallAbandoned, now, out, queue=h.get("Queue"), wait_s=round(wait, 3),
                   position=_to_int(h.get("Position")))

    # -- hold and transfer ---------------------------------------------------

    def _set_hold(self, h: Headers, now: float, out: list[CallEvent], attr: str, value: bool) -> None:
        found = self._leg(h, now, out)
        if found is None:
            return
        call, leg = found
        setattr(leg, attr, value)
        self._update_state(call, now, out)

    def _moh_start(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self._set_hold(h, now, out, "moh", True)

    def _moh_stop(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self._set_hold(h, now, out, "moh", False)

    def _hold(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self._set_hold(h, now, out, "on_hold", True)

    def _unhold(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self._set_hold(h, now, out, "on_hold", False)

    def _transfer(self, h: Headers, now: float, out: list[CallEvent], prefix: str, kind: str, target: str | None) -> None:
        found = self._leg(h, now, out, prefix)
        if found is None:
            return
        call, _ = found
        call.transferred = True
        self._emit(call, CallTransferred, now, out, type=kind, target=target, result=h.get("Result"))
        self._update_state(call, now, out)

    def _blind_transfer(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self._transfer(h, now, out, "Transferer", "blind", h.get("Extension"))

    def _attended_transfer(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        self._transfer(h, now, out, "OrigTransferer", "attended", h.get("SecondTransfererChannel"))

    # -- dialplan marks ------------------------------------------------------

    def _user_event(self, h: Headers, now: float, out: list[CallEvent]) -> None:
        kind = h.get("UserEvent")
        if kind not in ("CtiInbound", "CtiAcdWait", "CtiOutbound"):
            return
        found = self._leg(h, now, out)
        if found is None:
            return
        call, leg = found
        if kind == "CtiOutbound":
            # cti-click-to-dial: the agent's device answered and the customer is dialled next.
            agent = h.get("CtiAgent") or None
            if leg.uniqueid == call.call_id and agent is not None and _IDENT.fullmatch(agent):
                call.direction = "outbound"
                call.dialler = agent
                number = h.get("CtiNumber") or ""
                call.exten = number if _NUMBER.fullmatch(number) else None
                self._emit(call, CallOutbound, now, out, agent=agent, number=call.exten)
            return
        if kind == "CtiInbound":
            call.direction = "inbound"
            call.exten = h.get("DID") or h.get("Exten")
            self._emit(call, CallInbound, now, out, did=call.exten)
            return
        # The caller waits for the daemon's ACD (dialplan context cti-acd-wait).
        call.queue = h.get("Queue") or None
        call.in_queue = True
        call.queue_joined_at = now
        call.queue_left_at = None
        self._emit(call, CallQueued, now, out, queue=call.queue, acd=True, channel=leg.channel,
                   uniqueid=leg.uniqueid, skills=_unquote(h.get("Skills")) or None,
                   priority=_to_int(h.get("CtiPriority")), customer=h.get("Customer") or None)

    def expect_agent(self, call_id: str, agent: str, device: str) -> None:
        """The next Dial from this call to ``device`` rings agent ``agent``: name the
        offer (and the answering agent) by the agent's id, not the channel name."""
        call = self.calls.get(call_id)
        if call is not None:
            call.expected = (agent, channel_prefix(device))

    def name_offer(self, call_id: str, uniqueid: str, agent: str) -> None:
        """The device ringing on leg ``uniqueid`` of this call is agent ``agent``'s: its
        answer and its leg's end name the agent, not the channel. For a model that had
        no ``expect_agent`` for the Dial (an HA standby, whose ACD learns whose offer it
        was from the channel: acd/shadow.py). Nothing if that offer is not ringing."""
        call = self.calls.get(call_id)
        if call is not None and uniqueid in call.offers:
            call.offers[uniqueid] = (agent, call.offers[uniqueid][1])

    def waiting_found(self, call_id: str, queue: str | None, since: float, now: float) -> list[CallEvent]:
        """After a resync: the caller waits for the ACD in its dialplan (found by the ACD's
        adoption, which read the queue and the wait start the dialplan stored). A model
        that started after the caller's ``CtiAcdWait`` (a restart, a standby taking over)
        did not see it queue: the call is queued from ``since`` on, so hanging up from
        here on is an abandon with its whole wait, as for a caller seen to queue. Nothing
        for a call that already knows it waits, has an agent, or is gone; no
        ``call.queued`` (it queued before, and the ACD has it already): only the state."""
        call = self.calls.get(call_id)
        out: list[CallEvent] = []
        if call is None or call.in_queue or call.ended_at is not None or call.agent_answered_at is not None:
            return out
        call.in_queue = True
        call.queue = queue or call.queue
        if call.queue_joined_at is None:
            call.queue_joined_at = min(since, now)
            call.started_at = min(call.started_at, call.queue_joined_at)
        call.queue_left_at = None
        self._update_state(call, now, out)
        return out

    def agent_found(self, call_id: str, agent: str, device: str, now: float) -> list[CallEvent]:
        """After a resync: ``agent`` was found talking with this call's caller (read
        from the caller's channel: an agent who answered while we were away, or
        before a restart). A call that did not know it gets it: the agent answered
        at ``now`` at the latest (``call.connected`` with ``estimated``; the store
        keeps an earlier answer it already holds), and the agent's leg is the
        one bridged with the caller. Nothing if the call already has this agent
        or is gone."""
        call = self.calls.get(call_id)
        out: list[CallEvent] = []
        if call is None or (call.agent == agent and call.agent_answered_at is not None):
            return out
        origin = call.legs.get(call_id)
        if origin is not None and origin.bridge is not None:
            peers = sorted(u for u in self.bridges.get(origin.bridge, ()) if u != call_id and u in call.legs)
            if peers:
                call.agent_leg = peers[0]
                call.agent_legs[peers[0]] = agent
        call.agent, call.agent_answered_at = agent, now
        if call.in_queue:
            call.in_queue = False
            call.queue_left_at = now
            self._emit(call, CallDequeued, now, out, queue=call.queue)
        self._emit(call, CallConnected, now, out, agent=agent, device=device, uniqueid=call.agent_leg,
                   source="resync")
        return out

    def annotate(self, call_id: str, kind: str, at: float, /, **data: Any) -> CallEvent | None:
        """An event about a live call from elsewhere in the daemon (e.g. the ACD's
        escalation), numbered in the call's sequence. None if the call is gone."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        call.seq += 1
        return Annotation(kind, call.call_id, at, call.seq, call.view(), data)

    # -- output --------------------------------------------------------------

    def _update_state(self, call: Call, now: float, out: list[CallEvent]) -> None:
        new = derive_state(call, self.bridges)
        if new != call.state:
            old, call.state = call.state, new
            call.seq += 1
            out.append(CallStateChanged(call.call_id, now, call.seq, call.view(), old, new))
            # Hold is a state, however it came about: music starting in a bridge
            # of two, or the second leg joining a holding bridge whose music
            # already plays (the desktop's hold). Reports time it between these.
            if new == HELD:
                call.seq += 1
                out.append(CallHeld(call.call_id, now, call.seq, call.view()))
            elif old == HELD and new != ENDED:
                call.seq += 1
                out.append(CallResumed(call.call_id, now, call.seq, call.view()))

    def _emit(self, call: Call, event: type[CallEvent], at: float, out: list[CallEvent], **fields: Any) -> None:
        # Facts are reported with the state they lead to (a call.offered event
        # already says "offered"), so the state change is emitted first.
        self._update_state(call, at, out)
        call.seq += 1
        out.append(event(call.call_id, at, call.seq, call.view(), **fields))


def channel_prefix(device: str) -> str:
    """How the channels a dial string creates are named: ``PJSIP/1001`` makes
    ``PJSIP/1001-0000002a``, ``Local/agent1@ctx/n`` makes ``Local/agent1@ctx-0000001b;1``,
    ``PJSIP/1001@cti-trunk-b`` (1001 through the trunk endpoint) makes
    ``PJSIP/cti-trunk-b-00000003``."""
    if device.startswith("Local/"):
        device = device.split("/", 2)
        device = "/".join(device[:2])
    elif device.startswith("PJSIP/"):
        target = device[len("PJSIP/"):].split("/", 1)[0]
        device = "PJSIP/" + target.rpartition("@")[2]
    return device + "-"


def _unquote(text: str | None) -> str | None:
    """Undo the dialplan's QUOTE() (which keeps commas in a UserEvent value)."""
    if text and len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _to_int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _to_float(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default
