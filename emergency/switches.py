"""Emergency switches: which one applies to a call, and what happens to it (pure).

A switch (``Switch``) is declared for a *scope* and has an *action*:

- scope ``all`` (every call), ``node`` (calls handled by one daemon node/site,
  value: the node name), ``queue`` (value: a queue id), ``did`` (the number
  dialled), ``prefix`` (the caller's number starts with the value, e.g.
  ``+4930`` for a regional outage), ``ivr`` (the caller went through this IVR
  branch: a menu name, or ``menu:key``).
- action ``continue`` (play the announcement, then the call goes on as
  usual), ``hangup`` (play, then hang up), ``queue`` (play, then overflow to
  the queue ``target``), ``number`` (play, then dial the number ``target``),
  ``voicemail`` (play, then a voicemail in the box ``target``, or the queue's).

Precedence (``choose``), when several active switches cover one call: the most
specific scope wins, in the order ``prefix`` (a longer prefix before a shorter
one) > ``did`` > ``ivr`` > ``queue`` > ``node`` > ``all``; among equally
specific ones the latest declared (highest ``declared_at``, then highest id).
A switch is active from ``starts_at`` until ``ends_at`` (None: until switched
off) unless ``ended_at`` (switched off by someone) came first.

What happens to a call depends on where it is (``plan``):

- ``new``: at the IVR's entry, before the menu, when the switch's scope is known
  by then (``choose_early``: the caller's number, the DID, the node), else at the
  route step (before the ACD), it takes the switch's path.
- ``waiting``: waiting for an agent in the ACD, it is moved per the action
  (``WaitingPlan``): ``queue`` moves it in the router (and plays the
  announcement in the wait), ``continue`` plays the announcement and leaves it
  in its place, the others take it out of the router and send it down the
  emergency path (``cti-emergency`` in the dialplan).
- ``with_agent``: ringing or talking to an agent: untouched.

Time is an argument; nothing here reads a clock or does I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

Scope = Literal["all", "node", "queue", "did", "prefix", "ivr"]
Action = Literal["continue", "hangup", "queue", "number", "voicemail"]
Phase = Literal["new", "waiting", "with_agent"]

SCOPES: tuple[str, ...] = ("all", "node", "queue", "did", "prefix", "ivr")
ACTIONS: tuple[str, ...] = ("continue", "hangup", "queue", "number", "voicemail")
# Higher is more specific (precedence above).
_RANK = {"all": 0, "node": 1, "queue": 2, "ivr": 3, "did": 4, "prefix": 5}

# What a value may be, per scope (it reaches the dialplan and the database).
_VALUE = {
    "node": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    "queue": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"),
    "did": re.compile(r"^[+0-9*#A-Za-z]{1,32}$"),
    "prefix": re.compile(r"^\+?[0-9]{1,20}$"),
    "ivr": re.compile(r"^[A-Za-z0-9_.-]{1,64}(:[0-9*#]{1,16})?$"),
}
_TARGET = {
    "queue": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"),
    "number": re.compile(r"^\+?[0-9]{3,20}$"),
    "voicemail": re.compile(r"^([A-Za-z0-9_.-]{1,64}(@[A-Za-z0-9_.-]{1,64})?)?$"),
}
# A prompt: a stock sound name or an absolute path without extension (as the IVR's).
# Each segment starts with no dot, so no "..": the dialplan reads it as a file name.
PROMPT = re.compile(r"^/?[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,12}$")


class SwitchError(ValueError):
    """A switch that cannot be: the message names the field."""


@dataclass(frozen=True, slots=True)
class Switch:
    """One emergency switch as declared (and stored, migration 0019)."""

    id: int
    scope: str
    value: str               # "" for scope all
    action: str
    target: str = ""         # queue id, number or mailbox; "" where the action needs none
    prompt: str = ""         # the announcement (a prompt reference), "" for none
    reason: str = ""
    declared_at: float = 0.0
    starts_at: float = 0.0
    ends_at: float | None = None     # scheduled end; None: until switched off
    ended_at: float | None = None    # switched off

    def active(self, now: float) -> bool:
        if now < self.starts_at:
            return False
        if self.ended_at is not None and now >= self.ended_at:
            return False
        return self.ends_at is None or now < self.ends_at

    @property
    def rank(self) -> tuple[int, int, float, int]:
        """Sort key: greater applies first (most specific scope, longest prefix, latest declared)."""
        return (_RANK[self.scope], len(self.value) if self.scope == "prefix" else 0, self.declared_at, self.id)


def check(scope: str, value: str, action: str, target: str, prompt: str,
          starts_at: float, ends_at: float | None) -> None:
    """Raise ``SwitchError`` naming the field when the declaration is not valid."""
    if scope not in SCOPES:
        raise SwitchError(f"scope: one of {', '.join(SCOPES)}")
    if scope == "all":
        if value:
            raise SwitchError("value: scope all takes no value")
    elif not _VALUE[scope].match(value):
        raise SwitchError(f"value: not a valid {scope} ({value!r})")
    if action not in ACTIONS:
        raise SwitchError(f"action: one of {', '.join(ACTIONS)}")
    if action in ("queue", "number") and not target:
        raise SwitchError(f"target: action {action} needs one")
    if action in _TARGET and not _TARGET[action].match(target):
        raise SwitchError(f"target: not a valid {action} target ({target!r})")
    if action in ("continue", "hangup") and target:
        raise SwitchError(f"target: action {action} takes none")
    if prompt and not PROMPT.match(prompt):
        raise SwitchError("prompt: a sound name or an absolute path without extension")
    if ends_at is not None and ends_at <= starts_at:
        raise SwitchError("ends_at: must be after starts_at")


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a switch's scope is matched against."""

    caller_num: str = ""
    did: str = ""
    queue: str = ""
    ivr_path: tuple[str, ...] = ()     # menus and "menu:key" choices, in order
    node: str = ""


def covers(s: Switch, call: CallFacts) -> bool:
    """Whether the switch's scope includes the call."""
    if s.scope == "all":
        return True
    if s.scope == "node":
        return call.node == s.value
    if s.scope == "queue":
        return call.queue == s.value
    if s.scope == "did":
        return call.did == s.value
    if s.scope == "prefix":
        return bool(call.caller_num) and call.caller_num.startswith(s.value)
    if s.scope == "ivr":
        return s.value in call.ivr_path
    return False


def active(switches: Iterable[Switch], now: float) -> list[Switch]:
    """The switches in force at ``now``, the one that applies first first."""
    return sorted((s for s in switches if s.active(now)), key=lambda s: s.rank, reverse=True)


def choose(switches: Iterable[Switch], call: CallFacts, now: float) -> Switch | None:
    """The switch that applies to the call at ``now`` (precedence above), or None."""
    best: Switch | None = None
    for s in switches:
        if s.active(now) and covers(s, call) and (best is None or s.rank > best.rank):
            best = s
    return best


#: The scopes a new call's facts already hold at the IVR's entry, before the menu: the
#: caller's number, the number dialled and the node; not yet the queue or the IVR branch.
EARLY_SCOPES: tuple[str, ...] = ("all", "node", "did", "prefix")


def choose_early(switches: Iterable[Switch], call: CallFacts, now: float) -> Switch | None:
    """The switch that takes a new call at the IVR's entry (its announcement is heard
    before the menu), or None: the call is then decided at the route step, after the
    menu, as before. ``choose`` over the switches of ``EARLY_SCOPES`` (the call's queue and
    IVR branch are ignored: not known yet); None too when the pick is scoped ``all`` or
    ``node`` while a switch scoped to a queue or an IVR branch is in force, which may take
    precedence once the menu has said where the call goes."""
    switches = list(switches)
    facts = CallFacts(caller_num=call.caller_num, did=call.did, node=call.node)
    s = choose((x for x in switches if x.scope in EARLY_SCOPES), facts, now)
    if s is None:
        return None
    if _RANK[s.scope] < _RANK["queue"] and any(x.scope in ("queue", "ivr") and x.active(now) for x in switches):
        return None
    return s


def next_change(switches: Iterable[Switch], now: float) -> float | None:
    """The next moment after ``now`` at which the active set changes (a scheduled
    start or end), or None: the shell sleeps until then."""
    times = [t for s in switches for t in (s.starts_at, s.ends_at, s.ended_at) if t is not None and t > now]
    return min(times, default=None)


@dataclass(frozen=True, slots=True)
class WaitingPlan:
    """What to do with a caller waiting in the ACD when a switch takes it."""

    leave_router: bool        # take the call out of the router (it will not be offered)
    move_to: str | None       # move it to this queue in the router (action queue)
    exten: str | None         # Redirect into cti-emergency at this extension; None: no redirect


@dataclass(frozen=True, slots=True)
class Untouched:
    reason: str


def plan(s: Switch, phase: Phase) -> WaitingPlan | Untouched | str:
    """What the switch does to a call in ``phase``: for ``new`` the dialplan path
    (the action's extension in ``cti-emergency``), for ``waiting`` a
    ``WaitingPlan``, for ``with_agent`` ``Untouched``."""
    if phase == "with_agent":
        return Untouched("an agent has the call")
    if phase == "new":
        return s.action
    if s.action == "continue":
        # Nothing to say: nothing to do; else the announcement in the wait, place kept.
        return WaitingPlan(False, None, "continue" if s.prompt else None)
    if s.action == "queue":
        return WaitingPlan(False, s.target, "continue" if s.prompt else None)
    return WaitingPlan(True, None, s.action)


def hook_line(s: Switch | None) -> str:
    """The dialplan hook's answer (``/hooks/emergency``): ``ok,id,action,target,prompt``
    or ``none``. Every field is already restricted by ``check`` (no comma)."""
    if s is None:
        return "none"
    return f"ok,{s.id},{s.action},{s.target},{s.prompt}"
