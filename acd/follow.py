"""What a standby's shadow router learns of the leader's decisions (docs/ha.md, "Warm standby").
Pure: no I/O, no clock.

The standby's ACD runs the same router, fed by its own call model, but following
(``Router(following=True)``): it makes no offer of its own. What it cannot see in
its own model is what the leader decided: an offer (the standby's model sees the
caller's Dial to a device a moment later, but not whose decision it was), the
ring guard giving up, a supervisor's move, a caller diverted, and every agent's
own request (a break, a logout: sent to the leader's API). Those come from the
leader's writes, as small records here:

==================  ==========================================  ==========================
record              from the leader's                           router input
==================  ==========================================  ==========================
``OfferSeen``       ``Offer``; ``acd.offer`` in ``call_events``  ``offer_observed``
``OfferGone``       ``Withdrawn`` by the ring guard;             ``offer_ended(withdrawn)``
                    ``acd.withdrawn`` with that reason
``EscalatedSeen``   ``Escalated``; ``acd.escalated``             ``escalation_observed``
``MaxWaitSeen``     ``MaxWait``; ``acd.maxwait``                 ``max_wait_observed``
``MovedSeen``       ``Moved``; ``acd.moved``                     ``move_call``
``DivertedSeen``    ``Dequeued`` for another path (emergency);   ``divert``
                    ``acd.dequeued`` with that reason
``StateSeen``       ``AgentState``; a row of ``agent_states``    ``agent_state_observed``
==================  ==========================================  ==========================

What the shadow decides the same way by itself is not followed: calls waiting,
answered, abandoned, finished (its own model), escalation steps and wrap-up
timers (its own clock; a step the leader skipped for want of agents, whose
states the follower had not read yet, is caught up). A maximum wait is followed
although it is a matter of time: a leader's offer in the same instant stops it,
and only the leader knows which came first. What stays apart while the
follower's reading lags: a step skipped for want of agents (or not) by the
follower on an agent state it has not read yet (and a preferred agent's hold
that depends on it); an abandon, or an answer, counted in the queue the caller
was in before an overflow not read yet (the answering agent's call then counts
there too: its wrap-up is that queue's). ``tests/unit/test_acd_follow_properties.py``: a
router fed a random run of a leader's inputs and decisions this way ends in the
leader's state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

from acd.callbacks import CANCELLED, DIALING, PENDING, Callback
from acd.core import RING_GUARD, Router
from acd.decisions import AGENT_STATES, AgentState, Decision, Dequeued, Escalated, MaxWait, Moved, Offer, Withdrawn
from cti.calls import channel_prefix

__all__ = ["OfferSeen", "OfferGone", "EscalatedSeen", "MaxWaitSeen", "MovedSeen", "DivertedSeen", "StateSeen",
           "Observation", "from_decision", "from_annotation", "from_message", "from_state_row", "feed", "SELF_DECIDED",
           "agent_of_channel", "gone_calls", "latest_states", "NodeReconcile", "reconcile_nodes",
           "HeldCallback", "CallbackStep", "callback_steps", "config_to_follow"]

# Why a call leaves the router when the shadow decides it by itself.
SELF_DECIDED = frozenset({"answered", "abandoned", "max_wait"})


@dataclass(frozen=True, slots=True)
class OfferSeen:
    """The leader offered ``call_id`` to ``agent_id`` at ``at``."""

    call_id: str
    agent_id: str
    at: float


@dataclass(frozen=True, slots=True)
class OfferGone:
    """The leader's ring guard gave up on the offer of ``call_id`` to ``agent_id``."""

    call_id: str
    agent_id: str
    at: float


@dataclass(frozen=True, slots=True)
class EscalatedSeen:
    """The leader put ``call_id`` at escalation ``step`` of ``queue_id``."""

    call_id: str
    queue_id: str
    step: int
    at: float


@dataclass(frozen=True, slots=True)
class MaxWaitSeen:
    """The leader ended ``call_id``'s stay in ``queue_id`` for its maximum wait."""

    call_id: str
    queue_id: str
    at: float


@dataclass(frozen=True, slots=True)
class MovedSeen:
    """A supervisor moved ``call_id`` to ``queue_id`` at the leader, where it now has
    ``priority``: its own (``own_priority``, kept in any queue) or its queue's."""

    call_id: str
    queue_id: str
    priority: int
    at: float
    own_priority: bool = True


@dataclass(frozen=True, slots=True)
class DivertedSeen:
    """The leader took ``call_id`` out of routing for another path (``reason``)."""

    call_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class StateSeen:
    """The leader put ``agent_id`` in ``state`` with ``reason`` at ``at``."""

    agent_id: str
    state: str
    reason: str
    at: float


Observation = Union[OfferSeen, OfferGone, EscalatedSeen, MaxWaitSeen, MovedSeen, DivertedSeen, StateSeen]


def from_decision(d: Decision, now: float) -> Observation | None:
    """What the leader's decision ``d`` (taken at ``now``) tells a follower; None:
    nothing the follower does not decide by itself."""
    if isinstance(d, Offer):
        return OfferSeen(d.call_id, d.agent_id, now)
    if isinstance(d, AgentState):
        return StateSeen(d.agent_id, d.new, d.reason, d.at)
    if isinstance(d, Withdrawn):
        return OfferGone(d.call_id, d.agent_id, d.at) if d.reason == RING_GUARD else None
    if isinstance(d, Escalated):
        return EscalatedSeen(d.call_id, d.queue_id, d.step, d.at)
    if isinstance(d, MaxWait):
        return MaxWaitSeen(d.call_id, d.queue_id, d.at)
    if isinstance(d, Moved):
        return MovedSeen(d.call_id, d.target, d.priority, d.at, d.own_priority)
    if isinstance(d, Dequeued) and d.reason not in SELF_DECIDED:
        return DivertedSeen(d.call_id, d.reason, d.at)
    return None


def from_annotation(call_id: str, kind: str, data: Mapping[str, Any], at: float) -> Observation | None:
    """The same from a row of ``call_events`` (the leader's timeline: ``acd.offer``,
    ``acd.withdrawn``, ``acd.escalated``, ``acd.maxwait``, ``acd.moved``, ``acd.dequeued``). None
    for other kinds and for rows missing what is needed (nothing of them can be followed)."""
    agent = data.get("agent")
    if kind == "acd.offer" and isinstance(agent, str) and agent:
        return OfferSeen(call_id, agent, at)
    if kind == "acd.withdrawn" and isinstance(agent, str) and data.get("reason") == RING_GUARD:
        return OfferGone(call_id, agent, at)
    if kind == "acd.escalated":
        queue, step = data.get("queue_id"), data.get("step")
        if isinstance(queue, str) and isinstance(step, int) and not isinstance(step, bool):
            return EscalatedSeen(call_id, queue, step, at)
        return None
    if kind == "acd.maxwait":
        queue = data.get("queue") or data.get("queue_id")    # an overflow's row names it queue_id
        return MaxWaitSeen(call_id, queue, at) if isinstance(queue, str) else None
    if kind == "acd.moved":
        target, priority = data.get("target"), data.get("priority")
        if isinstance(target, str) and isinstance(priority, int) and not isinstance(priority, bool):
            return MovedSeen(call_id, target, priority, at, data.get("own_priority") is not False)
        return None
    if kind == "acd.dequeued":
        reason = data.get("reason")
        if isinstance(reason, str) and reason not in SELF_DECIDED:
            return DivertedSeen(call_id, reason, at)
    return None


def from_message(body: Mapping[str, Any]) -> Observation | None:
    """The same from a message of the event broker's stream (docs/broker.md: the
    WebSocket body, ``api.hub.call_message`` or ``api.hub.agent_message``): an
    ``agent.state`` is a state row, an ``acd.*`` call message a timeline row. None for
    anything else or anything malformed. (Not wired yet: the shadow reads PostgreSQL.)"""
    kind, at = body.get("type"), body.get("at")
    if kind == "agent.state":
        agent, state, since = body.get("agent_id"), body.get("state"), body.get("since")
        reason = body.get("reason")
        if isinstance(agent, str) and isinstance(state, str) and _number(since) \
                and (reason is None or isinstance(reason, str)):
            return from_state_row(agent, state, reason, float(since))
        return None
    call_id, data = body.get("call_id"), body.get("data")
    if isinstance(kind, str) and kind.startswith("acd.") and isinstance(call_id, str) and _number(at) \
            and isinstance(data, Mapping):
        return from_annotation(call_id, kind, data, float(at))
    return None


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def from_state_row(agent_id: str, state: str, reason: str | None, at: float) -> StateSeen | None:
    """A row of ``agent_states``; None for a state the router does not know."""
    if state not in AGENT_STATES:
        return None
    return StateSeen(agent_id, state, reason or "", at)


def latest_states(observations: Iterable[Observation]) -> list[Observation]:
    """``observations`` (in order) without the agent states a later one of the same
    agent supersedes: a state row is the agent's whole state, so only its newest
    counts, and an older one fed to a follower that has since seen the agent's
    calls from its own model would take it back in time."""
    items = list(observations)
    last: dict[str, int] = {}
    for i, o in enumerate(items):
        if isinstance(o, StateSeen):
            last[o.agent_id] = i
    return [o for i, o in enumerate(items) if not isinstance(o, StateSeen) or last[o.agent_id] == i]


def feed(router: Router, observations: Iterable[Observation]) -> list[Decision]:
    """Give a following router what the leader decided, in order (a batch: each
    agent's newest state only, ``latest_states``). Observations of agents, queues
    or calls it does not know (another configuration) are skipped. Returns the
    router's decisions (no offer: it follows)."""
    out: list[Decision] = []
    for o in latest_states(observations):
        try:
            if isinstance(o, OfferSeen):
                out += router.offer_observed(o.call_id, o.agent_id, o.at)
            elif isinstance(o, OfferGone):
                out += router.offer_ended(o.call_id, o.agent_id, "withdrawn", o.at)
            elif isinstance(o, EscalatedSeen):
                out += router.escalation_observed(o.call_id, o.queue_id, o.step, o.at)
            elif isinstance(o, MaxWaitSeen):
                out += router.max_wait_observed(o.call_id, o.queue_id, o.at)
            elif isinstance(o, MovedSeen):
                out += router.move_call(o.call_id, o.at, queue_id=o.queue_id,
                                        priority=o.priority if o.own_priority else None)
            elif isinstance(o, DivertedSeen):
                out += router.divert(o.call_id, o.reason, o.at)
            else:
                out += router.agent_state_observed(o.agent_id, o.state, o.reason, o.at)
        except ValueError:      # AcdInputError: not in this configuration
            continue
    return out


def agent_of_channel(name: Any, devices: Mapping[str, str]) -> str | None:
    """The agent an offer rang, from what a standby's call model names it: the
    channel the caller dialled (``PJSIP/a1-0000002a``: the agent whose device,
    in ``devices`` agent -> dial string, makes it) or already the agent's id.
    None for anything else (a device nobody of ours sits at)."""
    if not isinstance(name, str) or not name:
        return None
    if name in devices:
        return name
    for agent, device in devices.items():
        if device and name.startswith(channel_prefix(device)):
            return agent
    return None


def gone_calls(channels_of: Mapping[str, str | None], listing: Iterable[Mapping[str, Any]]) -> list[str]:
    """The calls (call id -> the caller's channel; None: nobody on the line, e.g. a
    callback request) whose channel is not in Asterisk's ``CoreShowChannels``
    ``listing``: over while nobody was told, in their order."""
    present = {item.get("Channel") for item in listing}
    return [cid for cid, channel in channels_of.items() if channel is not None and channel not in present]


@dataclass(frozen=True, slots=True)
class NodeReconcile:
    """What a takeover does with one Asterisk node's ``CoreShowChannels`` listing:
    ``gone``, the calls held here on that node that it no longer lists (in their
    order); ``adopt``, the listing's items the shadow lacks (a caller or a talking
    agent it never saw) and every agent's callback leg, to adopt the old way."""

    node: str | None
    gone: tuple[str, ...]
    adopt: tuple[Mapping[str, Any], ...]


def reconcile_nodes(held: Mapping[str, tuple[str | None, str | None]],
                    listings: Mapping[str | None, Iterable[Mapping[str, Any]]]) -> list[NodeReconcile]:
    """A takeover's reconciliation, node by node (several Asterisk nodes, ``ami_nodes``).

    ``held``: call id -> (the call's node, the caller's channel; None: nobody on the
    line, e.g. a callback request). ``listings``: node -> its listing, its ids already
    qualified as the call model's (``cti.nodes.qualify``); one node is ``None``.
    Channel names are per node (two nodes may both have ``PJSIP/trunk-00000001``), so a
    call is gone only when *its own* node's listing lacks its channel, and a node not
    listed (not connected, its listing failed) loses nothing here: its resync, or its
    death (``NodeDead``), answers for its calls. Returns one ``NodeReconcile`` per
    listing, in the listings' order."""
    out: list[NodeReconcile] = []
    for node, listing in listings.items():
        items = list(listing)
        mine = {cid: channel for cid, (call_node, channel) in held.items() if call_node == node}
        adopt = tuple(item for item in items if item.get("Context") == "cti-acd-callback"
                      or (item.get("Linkedid") or item.get("Uniqueid")) not in held)
        out.append(NodeReconcile(node, tuple(gone_calls(mine, items)), adopt))
    return out


# -- callbacks and configurations ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class HeldCallback:
    """What the shadow holds of a call id a callback row names: ``caller`` (a caller
    waiting, no callback yet), ``waiting`` (a callback request waiting, in the router
    or for its ``not_before``), ``ringing`` (offered to ``agent``), ``answered`` (the
    agent took it); ``attempts``: the customer tries the shadow knows of."""

    kind: str
    agent: str | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class CallbackStep:
    """One thing the shadow does for a callback row: ``enter`` (wait now, in its place),
    ``later`` (wait for its ``not_before``), ``convert`` (the waiting caller's request
    takes the caller's place), ``update`` (the leader's record replaces the shadow's),
    ``offered`` (the leader offered it to ``agent``), ``missed`` (``agent`` did not take
    it: it waits again), ``answered`` (``agent`` took it: the agent is on the call,
    the request leaves the router), ``leave`` (it no longer waits at the leader)."""

    kind: str
    agent: str | None = None


def callback_steps(row: Callback, held: HeldCallback | None, now: float) -> list[CallbackStep]:
    """What a follower does with the leader's current row of a callback request (the
    ``callbacks`` table holds each request's latest state only), given what it holds
    (``held``; None: nothing of that id). The leader's path, row by row: ``pending``
    (waiting, maybe until ``not_before``), ``dialing`` (offered to ``agent_id``: the
    agent's phone rings, then the customer is dialled), then ``connected`` or
    ``failed`` after the customer's try, or ``pending`` again: with as many attempts
    as before the agent missed it, with one more after a try that failed (the agent
    had taken it). A row the follower has already caught up with gives nothing."""
    wait = CallbackStep("later") if row.not_before is not None and row.not_before > now else CallbackStep("enter")
    kind = None if held is None else held.kind
    took = held is not None and row.attempts > held.attempts      # the agent took it meanwhile
    if row.status == PENDING:
        if kind is None:
            return [wait]
        if kind == "caller":
            return [CallbackStep("convert")]
        if kind == "waiting":
            return [CallbackStep("update")]
        if kind == "ringing":
            assert held is not None
            if took:
                return [CallbackStep("answered", held.agent), wait]
            return [CallbackStep("missed", held.agent)]
        return [wait] if took else []          # answered: the try failed, it waits to try again
    if row.status == DIALING:
        if not row.agent_id or kind == "answered":
            return []
        if kind == "ringing":
            assert held is not None
            if not took and held.agent == row.agent_id:
                return []                      # known already
            # Offered again (to another agent, or the same after a try that failed).
            first = [CallbackStep("answered", held.agent)] if took else []
        else:
            first = [CallbackStep("convert")] if kind == "caller" else [wait] if kind is None else []
        return [*first, CallbackStep("offered", row.agent_id)]
    # connected, failed, cancelled: no longer waiting.
    if kind is None:
        return []
    if kind == "answered":
        return [CallbackStep("leave")]
    if row.status != CANCELLED and row.agent_id:
        offered = [] if kind == "ringing" and held and held.agent == row.agent_id else \
            [CallbackStep("offered", row.agent_id)]
        return [*offered, CallbackStep("answered", row.agent_id), CallbackStep("leave")]
    return [CallbackStep("leave")]


def config_to_follow(current: int | None, versions: Iterable[tuple[int, str]]) -> int | None:
    """The configuration version a follower puts in force, from the stored versions
    newer than its own (``versions``: number, source), or None (none to follow). Only
    versions saved through the API (source ``api:...``) count: the API saves a
    version on the node that leads and puts it in force there at once (a standby
    forwards it), while a ``file:...`` version is recorded by whichever node starts
    with a changed file, which the leader does not run."""
    newest = max((v for v, source in versions if source.startswith("api:") and (current is None or v > current)),
                 default=None)
    return newest
