"""The state each agent starts in when the ACD starts (a daemon restart, or a
takeover in an HA pair: docs/ha.md, docs/acd.md "Taking over after a restart").
Pure: no I/O, no clock (``now`` is an argument).

The agent state log (``agent_states``) holds every change the router made; the
last row of each agent is the state it was in when the previous ACD stopped
(up to the writer's last batch: a crash loses changes not written yet). From it:

=====================  =========================================================
last stored state      the agent starts
=====================  =========================================================
(no row)               today's ``auto_login``: available if the configuration
                       says ``auto_login``, else logged out
logged_out             logged out
not_ready, reason R    not ready with R, since the stored time (time in state
                       goes on). ``unreachable`` is the exception: the router
                       set it for a device that could not ring, not the agent;
                       the agent is logged in and the phone gateway's next report
                       (or the login itself) decides again
available              available, since the stored time (idle time goes on)
reserved, on_call,     available, now: the calls are not stored per agent, and
wrapup                 adoption (acd/adoption.py) runs next and finds agents
                       still talking (on call, then wrap-up as usual); one whose
                       call ended while no ACD ran is free. A wrap-up is not
                       resumed: its timer and any disposition due were the
                       previous process's (a required disposition can still be
                       saved; it no longer blocks calls). An HA standby's
                       shadow (``keep_wrapup``) keeps a wrap-up, from its
                       stored time: the leader's is real and goes on
anything else          as with no row
=====================  =========================================================

A stored time later than ``now`` (clocks of two nodes apart) is taken as ``now``.
So an agent on a break never takes calls after a restart, and one who logged
out is never logged in by it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from acd.config import AcdConfig
from acd.core import UNREACHABLE
from acd.decisions import AGENT_STATES, AVAILABLE, LOGGED_OUT, NOT_READY, ON_CALL, RESERVED, WRAPUP

__all__ = ["Stored", "StartState", "start_states"]

_BUSY = frozenset({RESERVED, ON_CALL, WRAPUP})


@dataclass(frozen=True, slots=True)
class Stored:
    """An agent's last row of the state log: ``state`` (with ``reason``) since ``since``."""

    state: str
    reason: str | None
    since: float


@dataclass(frozen=True, slots=True)
class StartState:
    """Agent ``agent_id`` starts in ``state`` (logged_out, available or not_ready)
    with ``reason``, in it since ``since``; ``restored`` says it comes from the
    stored state (False: today's auto_login)."""

    agent_id: str
    state: str
    reason: str
    since: float
    restored: bool


def start_states(config: AcdConfig, stored: Mapping[str, Stored], now: float, *,
                 keep_wrapup: bool = False) -> list[StartState]:
    """The state of every agent of ``config`` (in its order) at start, from each
    agent's last stored state (``stored``: agent id -> its last row; agents not in
    the configuration are ignored). See the module docstring for the rules.
    ``keep_wrapup``: a stored wrap-up stays a wrap-up, from its stored time (an HA
    standby's shadow, acd/shadow.py: the leader's wrap-up is real and goes on)."""
    out: list[StartState] = []
    for agent in config.agents:
        last = stored.get(agent.id)
        if last is None or last.state not in AGENT_STATES:
            if agent.auto_login:
                out.append(StartState(agent.id, AVAILABLE, "login", now, False))
            else:
                out.append(StartState(agent.id, LOGGED_OUT, "", now, False))
            continue
        since = last.since if math.isfinite(last.since) and last.since <= now else now
        if last.state == LOGGED_OUT:
            out.append(StartState(agent.id, LOGGED_OUT, last.reason or "", since, True))
        elif last.state == NOT_READY and (last.reason or "") != UNREACHABLE:
            out.append(StartState(agent.id, NOT_READY, last.reason or "not ready", since, True))
        elif last.state == NOT_READY:
            out.append(StartState(agent.id, AVAILABLE, "login (was unreachable before the restart)", now, True))
        elif last.state == AVAILABLE:
            out.append(StartState(agent.id, AVAILABLE, last.reason or "ready", since, True))
        elif last.state == WRAPUP and keep_wrapup:
            out.append(StartState(agent.id, WRAPUP, last.reason or "wrap-up", since, True))
        else:
            assert last.state in _BUSY
            out.append(StartState(agent.id, AVAILABLE, f"logged in again after a restart (was {last.state})",
                                  now, True))
    return out
