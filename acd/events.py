"""What the ACD tells the rest of the daemon on the bus (``cti.events.Bus``),
besides the decisions it puts on calls' timelines (``acd.*`` call events).

Subscribe with ``bus.subscribe_to(AgentStateChanged, fn)`` (the WebSocket hub,
the wallboard). The ACD publishes one whenever what it holds of an agent
(``AgentView``) changed: a state change of the router, and also what changes no
state (a not-ready or logout asked for during a call, a device that cannot ring
now, an agent a new configuration adds). Published in turn with the call
events: after the event that caused it (the ``call.queued`` that reserved the
agent), before the ``acd.offer`` it leads to.
"""
from __future__ import annotations

from dataclasses import dataclass

from acd.decisions import AgentView


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """Agent ``agent_id`` is now as ``view`` says (since ``at``, epoch seconds);
    ``previous`` is what the ACD told of it before (None: nothing yet, since the
    ACD started or since a configuration added the agent)."""

    agent_id: str
    at: float
    view: AgentView
    previous: AgentView | None
