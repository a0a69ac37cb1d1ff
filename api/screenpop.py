"""Screen-pops: what an agent's screen shows of a call offered to them. Pure.

``Tracker`` follows the bus (call events in) and keeps, per live call, what a
card needs that the call view does not carry: the IVR path (``call.ivr``
steps), the routing entry (queue, skills, priority, customer id from the
IVR's lookup), when each agent was offered it. It answers each event with the
pops to send: ``Pop(call_id, agent, phase)`` for the agents concerned, phases
``offered``, ``answered``, ``held``, ``resumed`` (from ``call.state``), ``transferred``, ``ended``.

``card`` assembles the message from the tracked context, the call view and
what the shell looked up (the customer record, open tickets), and ``ivr_summary``
turns the steps into the path, the choices and the data the caller entered.
The shell (``api.desktop_state``) does the look-ups, bounded by timeouts, and
publishes the cards on the WebSocket hub to those agents.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from cti.events import CallView

MAX_STEPS = 100          # IVR steps kept per call
MAX_CALLS = 5000         # live calls tracked (the oldest is forgotten beyond)

# Held and resumed are read from the call's state changes: a hold ended by the
# legs leaving the holding bridge changes the state before any MusicOnHoldStop.
_PHASES = {"call.connected": "answered", "call.transferred": "transferred", "call.ended": "ended"}


def _hold_phase(data: Mapping[str, Any]) -> str | None:
    old, new = data.get("old"), data.get("new")
    if new == "held" and old != "held":
        return "held"
    if old == "held" and new not in ("held", "ended"):
        return "resumed"
    return None


@dataclass(frozen=True, slots=True)
class Pop:
    call_id: str
    agent: str
    phase: str


@dataclass(slots=True)
class Context:
    call_id: str
    ivr: list[dict[str, Any]] = field(default_factory=list)
    queue: str | None = None
    skills: str | None = None
    priority: int | None = None
    customer_id: str | None = None
    offered_at: dict[str, float] = field(default_factory=dict)   # agent -> when first offered
    agents: list[str] = field(default_factory=list)              # agents who were popped, in order
    lookup: dict[str, Any] | None = None                         # the shell's look-up, done once


class Tracker:
    """Per-call context from the bus; ``feed`` returns the pops an event calls for."""

    def __init__(self, max_calls: int = MAX_CALLS) -> None:
        self.max_calls = max_calls
        self.calls: OrderedDict[str, Context] = OrderedDict()

    def context(self, call_id: str) -> Context:
        ctx = self.calls.get(call_id)
        if ctx is None:
            ctx = self.calls[call_id] = Context(call_id)
            while len(self.calls) > self.max_calls:
                self.calls.popitem(last=False)
        return ctx

    def feed(self, kind: str, call_id: str, at: float, data: Mapping[str, Any]) -> list[Pop]:
        if kind == "call.ivr":
            ctx = self.context(call_id)
            if len(ctx.ivr) < MAX_STEPS:
                ctx.ivr.append({k: data.get(k) for k in ("step", "menu", "action", "input", "value")})
            return []
        if kind == "call.queued":
            ctx = self.context(call_id)
            ctx.queue = data.get("queue") or ctx.queue
            ctx.skills = data.get("skills") or ctx.skills
            if data.get("priority") is not None:
                ctx.priority = data.get("priority")
            ctx.customer_id = data.get("customer") or ctx.customer_id
            return []
        if kind == "call.offered":
            agent = data.get("agent")
            if not isinstance(agent, str) or not agent:
                return []
            ctx = self.context(call_id)
            ctx.offered_at.setdefault(agent, at)
            if agent not in ctx.agents:
                ctx.agents.append(agent)
            return [Pop(call_id, agent, "offered")]
        phase = _hold_phase(data) if kind == "call.state" else _PHASES.get(kind)
        if phase is None:
            return []
        ctx = self.calls.get(call_id)
        if kind == "call.ended":
            self.calls.pop(call_id, None)
        if ctx is None:
            return []
        if kind == "call.connected":
            agent = data.get("agent")
            if isinstance(agent, str) and agent and agent not in ctx.agents:
                ctx.agents.append(agent)
            return [Pop(call_id, agent, phase)] if isinstance(agent, str) and agent else []
        return [Pop(call_id, a, phase) for a in ctx.agents]


def ivr_summary(steps: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The IVR path as the agent reads it: every step, the keys chosen
    (``"main: 1"``), the data entered (``{"account": "123456"}``) and where the
    caller was sent."""
    path, choices, entered = [], [], {}
    outcome = None
    for s in steps:
        step = {k: s.get(k) for k in ("menu", "action", "input", "value")}
        path.append(step)
        if step["action"] == "option" and step["input"] is not None:
            choices.append(f"{step['menu']}: {step['input']}")
        elif step["action"] == "collected" and step["input"]:
            entered[str(step["input"])] = step["value"]
        elif step["action"] in ("queue", "transfer", "hangup"):
            outcome = {"action": step["action"], "value": step["value"]}
    return {"path": path, "choices": choices, "entered": entered, "outcome": outcome}


def card(pop: Pop, ctx: Context | None, view: Any, now: float, *, lookup: Mapping[str, Any] | None = None,
         ivr_steps: Iterable[Mapping[str, Any]] | None = None,
         incident: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``screenpop`` WebSocket message for ``pop``. ``view`` is the call's
    ``CallView`` (a dataclass or its dict); ``lookup`` what the shell found:
    ``{"status": "found" | "not_found" | "no_number" | "timeout" | "error",
    "customer": ..., "recent_calls": [...], "recent_contacts": [...], "open_tickets": [...]}``
    (``recent_contacts``: the customer's latest chats, mails and messages, crm.conversations);
    ``ivr_steps`` replaces the tracked steps (read back from the database); ``incident``
    is the emergency switch covering the call (docs/emergency.md), or None."""
    v = view if isinstance(view, Mapping) else (view.as_dict() if isinstance(view, CallView) else asdict(view))
    steps = list(ivr_steps) if ivr_steps is not None else (ctx.ivr if ctx is not None else [])
    offered_at = ctx.offered_at.get(pop.agent) if ctx is not None else None
    joined = v.get("queue_joined_at")
    waited_until = offered_at if offered_at is not None else (v.get("queue_left_at") or now)
    wait_s = round(max(0.0, waited_until - joined), 3) if joined is not None else None
    found = lookup or {"status": "pending"}
    return {
        "type": "screenpop",
        "phase": pop.phase,
        "call_id": pop.call_id,
        "agent_id": pop.agent,
        "card": {
            "caller": {"number": v.get("caller_num"), "name": v.get("caller_name")},
            "did": v.get("exten"),
            "direction": v.get("direction"),
            "state": v.get("state"),
            "queue": (ctx.queue if ctx is not None and ctx.queue else None) or v.get("queue"),
            "priority": ctx.priority if ctx is not None else None,
            "skills": ctx.skills if ctx is not None else None,
            "started_at": v.get("started_at"),
            "queued_at": joined,
            "offered_at": offered_at,
            "answered_at": v.get("agent_answered_at") if v.get("agent") == pop.agent else None,
            "ended_at": v.get("ended_at"),
            "wait_s": wait_s,
            "ivr": ivr_summary(steps),
            "customer_lookup": found.get("status"),
            "customer": found.get("customer"),
            "recent_calls": list(found.get("recent_calls") or []),
            "recent_contacts": list(found.get("recent_contacts") or []),
            "open_tickets": list(found.get("open_tickets") or []),
            "incident": dict(incident) if incident is not None else None,
        },
    }
