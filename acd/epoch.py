"""Fencing by epoch: the values the ACD writes into Asterisk and reads back (pure).

A leader's epoch (docs/ha.md) travels with every offer, and Asterisk keeps the
highest epoch it was given in the global ``CTI_ACD_EPOCH``:

- ``CTI_OFFER = epoch,agent,ring seconds,device``: ``cti-acd-offer`` refuses an
  offer whose epoch is below the global (the caller goes back to the wait,
  ``UserEvent(CtiOfferRefused)``). The device comes last: a dial string may hold
  commas, the dialplan takes fields 4 onwards.
- The epoch is raised only through ``[cti-acd-epoch]`` (an Originate of
  ``EPOCH_CHANNEL`` with ``CTI_NEW_EPOCH``), which sets the global only when the
  new value is higher: a deposed leader's late raise cannot lower it.
- The heartbeat is per epoch: ``CTI_ACD_HEARTBEAT_<epoch>``; the dialplan reads
  the one of the epoch in force, so a deposed leader's heartbeat (or its 0 on
  stop) is read by nobody.
- The ACD's other routing actions carry the epoch the same way, in the value the
  dialplan acts on, and are refused below the epoch in force
  (``UserEvent(CtiActionRefused, Action, Epoch, Current)``, the caller back in
  the wait): ``CTI_ANNOUNCE = epoch,position,minutes`` (``cti-acd-announce``),
  ``CTI_MAXWAIT = epoch,action`` (``cti-acd-maxwait``, which also refuses a value
  naming another action than its extension), and the callback Originate's
  ``CTI_CALLBACK_EPOCH`` (``cti-acd-callback``: checked when the agent answers,
  before the customer is dialled). The epoch travels in the value written with
  the Redirect, not in a variable of its own: a newer leader's Setvar landing
  between a deposed leader's Setvar and Redirect then makes that Redirect carry
  the newer leader's own value.
- In an HA pair no routing Redirect is sent as such (``gated``): each is an
  Originate of ``GATE_CHANNEL`` whose ``[cti-acd-gate]`` compares the epoch (and the
  order of the sender's actions on that channel) under the epoch's lock and only then
  runs ``ChannelRedirect``: a deposed leader's late Redirect moves nobody (a Redirect
  moves a channel before any dialplan runs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from cti.ami_inputs import ActionRefused, OfferRefused

EPOCH_GLOBAL = "CTI_ACD_EPOCH"
EPOCH_VARIABLE = "CTI_NEW_EPOCH"
EPOCH_CONTEXT = "cti-acd-epoch"
# Originated to raise the epoch; the call model ignores channels named so (cti/calls.py).
EPOCH_CHANNEL = f"Local/raise@{EPOCH_CONTEXT}/n"
CALLBACK_EPOCH_VARIABLE = "CTI_CALLBACK_EPOCH"
# An extension of cti-acd-maxwait (``_[a-z].``): a queue's on_max_wait other than
# overflow (voicemail, callback; any other word plays goodbye and hangs up).
MAXWAIT_ACTION = re.compile(r"[a-z][a-z]+")

# One AMI action: (name, headers), written in order by the shell (``AmiClient.submit``).
Action = tuple[str, dict[str, Any]]


def epoch_digits(value: str | None) -> int | None:
    """The epoch in a value as the dialplan reads it (``FILTER(0-9,...)``): its
    digits, or None when it has none."""
    digits = "".join(c for c in (value or "") if "0" <= c <= "9")
    return int(digits) if digits else None


def heartbeat_variable(epoch: int) -> str:
    """The global the leader of ``epoch`` keeps fresh (unix seconds)."""
    return f"CTI_ACD_HEARTBEAT_{_checked(epoch)}"


@dataclass(frozen=True, slots=True)
class OfferValue:
    epoch: int
    agent: str
    ring_s: int
    device: str

    def __str__(self) -> str:
        """``CTI_OFFER`` as ``cti-acd-offer`` reads it."""
        return f"{_checked(self.epoch)},{self.agent},{self.ring_s},{self.device}"


def offer_value(epoch: int, agent: str, ring_s: float, device: str) -> str:
    return str(OfferValue(epoch, agent, int(ring_s), device))


def parse_offer(value: str) -> OfferValue:
    """``CTI_OFFER`` back, field by field as the dialplan cuts it (ValueError if malformed)."""
    parts = value.split(",", 3)
    if len(parts) != 4:
        raise ValueError(f"CTI_OFFER needs epoch,agent,ring,device: {value!r}")
    epoch = epoch_digits(parts[0])
    if epoch is None or not parts[2].isdigit():
        raise ValueError(f"CTI_OFFER epoch and ring seconds must be digits: {value!r}")
    return OfferValue(epoch, parts[1], int(parts[2]), parts[3])


@dataclass(frozen=True, slots=True)
class Refusal:
    """``UserEvent(CtiOfferRefused)``: an offer of ``epoch`` reached a channel while
    Asterisk held ``current``."""
    channel: str
    call_id: str
    agent: str
    epoch: int | None
    current: int | None


def parse_refusal(ev: OfferRefused) -> Refusal:
    """The dialplan's refusal (typed at the edge, ``cti.ami_inputs``) with its epochs read."""
    return Refusal(channel=ev.channel, call_id=ev.call_id, agent=ev.agent, epoch=epoch_digits(ev.epoch),
                   current=epoch_digits(ev.current))


# -- the other routing actions: built here, written by the shell --------------------


@dataclass(frozen=True, slots=True)
class AnnounceValue:
    epoch: int
    position: int
    minutes: int      # -1: unknown

    def __str__(self) -> str:
        """``CTI_ANNOUNCE`` as ``cti-acd-announce`` reads it."""
        return f"{_checked(self.epoch)},{self.position},{self.minutes}"


def parse_announce(value: str) -> AnnounceValue:
    """``CTI_ANNOUNCE`` back as the dialplan cuts it (ValueError if malformed)."""
    parts = value.split(",")
    if len(parts) != 3:
        raise ValueError(f"CTI_ANNOUNCE needs epoch,position,minutes: {value!r}")
    epoch = epoch_digits(parts[0])
    try:
        position, minutes = int(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"CTI_ANNOUNCE position and minutes must be integers: {value!r}") from None
    if epoch is None:
        raise ValueError(f"CTI_ANNOUNCE epoch must be digits: {value!r}")
    return AnnounceValue(epoch, position, minutes)


def announce_actions(epoch: int, channel: str, position: int, minutes: int) -> list[Action]:
    """A position/wait announcement: ``CTI_ANNOUNCE`` and the Redirect into
    ``cti-acd-announce``, which refuses it below the epoch in force."""
    value = str(AnnounceValue(epoch, position, minutes))
    return [("Setvar", {"Channel": channel, "Variable": "CTI_ANNOUNCE", "Value": value}),
            ("Redirect", {"Channel": channel, "Context": "cti-acd-announce", "Exten": "s", "Priority": "1"})]


def maxwait_value(epoch: int, action: str) -> str:
    """``CTI_MAXWAIT`` as ``cti-acd-maxwait`` reads it: the epoch, then the action,
    which must also be the extension the caller is redirected to."""
    if not MAXWAIT_ACTION.fullmatch(action):
        raise ValueError(f"no max-wait action {action!r}")
    return f"{_checked(epoch)},{action}"


def parse_maxwait(value: str) -> tuple[int, str]:
    parts = value.split(",")
    epoch = epoch_digits(parts[0]) if len(parts) == 2 else None
    if epoch is None or not MAXWAIT_ACTION.fullmatch(parts[1]):
        raise ValueError(f"CTI_MAXWAIT needs epoch,action: {value!r}")
    return epoch, parts[1]


def maxwait_actions(epoch: int, channel: str, action: str) -> list[Action]:
    """The queue's maximum wait reached: ``CTI_MAXWAIT`` and the Redirect into
    ``cti-acd-maxwait,<action>``; refused below the epoch in force, or when the
    value names another action than the extension (a newer leader's value)."""
    return [("Setvar", {"Channel": channel, "Variable": "CTI_MAXWAIT", "Value": maxwait_value(epoch, action)}),
            ("Redirect", {"Channel": channel, "Context": "cti-acd-maxwait", "Exten": action, "Priority": "1"})]


def callback_variables(epoch: int, variables: dict[str, str]) -> list[str]:
    """The callback Originate's ``Variable`` header: the leg's variables and the
    sender's epoch, which ``cti-acd-callback`` checks before dialling the customer."""
    return [f"{k}={v}" for k, v in {**variables, CALLBACK_EPOCH_VARIABLE: str(_checked(epoch))}.items()]


MOVE_CONTEXT = "cti-acd-move"
# Originated per move (a gate: a Setvar alone reaches no dialplan that could refuse it);
# the call model ignores channels named so (cti/calls.py).
MOVE_CHANNEL = f"Local/move@{MOVE_CONTEXT}/n"
QUEUE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def move_value(epoch: int, queue: str, priority: int) -> str:
    """``CTI_MOVE`` as ``cti-acd-move`` reads it: the epoch, the queue, the priority, cut at
    colons (an Originate's ``Variable`` header splits its values at commas)."""
    if not QUEUE_ID.fullmatch(queue):
        raise ValueError(f"not a queue id: {queue!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"a priority is an integer, not {priority!r}")
    return f"{_checked(epoch)}:{queue}:{priority}"


def parse_move(value: str) -> tuple[int, str, int]:
    """``CTI_MOVE`` back as the dialplan cuts it (ValueError if malformed)."""
    parts = value.split(":")
    epoch = epoch_digits(parts[0]) if len(parts) == 3 else None
    if epoch is None or not QUEUE_ID.fullmatch(parts[1]) or not re.fullmatch(r"-?[0-9]+", parts[2]):
        raise ValueError(f"CTI_MOVE needs epoch:queue:priority: {value!r}")
    return epoch, parts[1], int(parts[2])


def move_actions(epoch: int, channel: str, queue: str, priority: int) -> list[Action]:
    """A supervisor's move of a waiting caller (``AcdService.move_call``): the channel's
    ``CTI_QUEUE``/``CTI_PRIORITY`` (read by adoption after a takeover, and by the fallback)
    are written by the dialplan, not by a Setvar: an Originate of ``MOVE_CHANNEL`` whose
    ``cti-acd-move`` refuses ``CTI_MOVE`` below the epoch in force and otherwise sets them
    on ``CTI_MOVE_CHANNEL`` with ``EXPORT()``. Rare (a supervisor's action): its two Local
    channels are worth the fence."""
    if not channel or any(c in channel for c in ",\r\n"):
        raise ValueError(f"not a channel name: {channel!r}")
    return [("Originate", {"Channel": MOVE_CHANNEL, "Application": "Hangup", "Timeout": "5000", "Async": "true",
                           "Variable": [f"CTI_MOVE={move_value(epoch, queue, priority)}",
                                        f"CTI_MOVE_CHANNEL={channel}"]})]


EMERGENCY_MOVE_CONTEXT = "cti-emergency-move"
_EMERGENCY_FIELD = re.compile(r"[A-Za-z0-9_.:@+/-]*")


def emergency_value(epoch: int, action: str, switch: int, target: str, prompt: str) -> str:
    """``CTI_EMERGENCY_MOVE`` as ``cti-emergency-move`` reads it: epoch, action (also the
    extension), switch, target, prompt (no commas: the dialplan cuts at them)."""
    if not MAXWAIT_ACTION.fullmatch(action):
        raise ValueError(f"no emergency action {action!r}")
    for name, v in (("target", target), ("prompt", prompt)):
        if not _EMERGENCY_FIELD.fullmatch(v):
            raise ValueError(f"an emergency {name} of letters, digits and _ . : @ + / - only: {v!r}")
    return f"{_checked(epoch)},{action},{int(switch)},{target},{prompt}"


def parse_emergency(value: str) -> tuple[int, str, int, str, str]:
    parts = value.split(",")
    epoch = epoch_digits(parts[0]) if len(parts) == 5 else None
    if epoch is None or not MAXWAIT_ACTION.fullmatch(parts[1]) or not parts[2].isdigit():
        raise ValueError(f"CTI_EMERGENCY_MOVE needs epoch,action,switch,target,prompt: {value!r}")
    return epoch, parts[1], int(parts[2]), parts[3], parts[4]


def emergency_actions(epoch: int, channel: str, action: str, switch: int, target: str, prompt: str) -> list[Action]:
    """An emergency switch takes a waiting caller (``emergency.service``): one value and the
    Redirect into ``cti-emergency-move,<action>``, which refuses it below the epoch in force
    (or naming another action) and otherwise sets ``CTI_EMERGENCY_SWITCH``/``_TARGET``/
    ``_PROMPT`` from it and goes on into ``cti-emergency,<action>``."""
    value = emergency_value(epoch, action, switch, target, prompt)
    return [("Setvar", {"Channel": channel, "Variable": "CTI_EMERGENCY_MOVE", "Value": value}),
            ("Redirect", {"Channel": channel, "Context": EMERGENCY_MOVE_CONTEXT, "Exten": action, "Priority": "1"})]


# -- the gate before the Redirect (an HA pair) ------------------------------------

GATE_CONTEXT = "cti-acd-gate"
# Originated instead of a Redirect (a Redirect moves the channel before any dialplan runs,
# so only a gate before it can refuse it); the call model ignores channels named so.
GATE_CHANNEL = f"Local/redirect@{GATE_CONTEXT}/n"
# Where the ACD's routing Redirects go; the gate moves a caller nowhere else.
GATED_CONTEXT = re.compile(r"cti-acd-(offer|announce|wait|maxwait)|cti-emergency-move")
GATED_EXTEN = re.compile(r"[a-z]+")


def gate_value(epoch: int, seq: int, context: str, exten: str) -> str:
    """``CTI_GATE`` as ``cti-acd-gate`` reads it: the epoch, the sender's sequence number
    of the action, the context, the extension, cut at colons (an Originate's ``Variable``
    header splits its values at commas)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError(f"a gate's sequence number is a positive integer, not {seq!r}")
    if not GATED_CONTEXT.fullmatch(context):
        raise ValueError(f"not a context the gate moves callers to: {context!r}")
    if not GATED_EXTEN.fullmatch(exten):
        raise ValueError(f"not an extension the gate moves callers to: {exten!r}")
    return f"{_checked(epoch)}:{seq}:{context}:{exten}"


def parse_gate(value: str) -> tuple[int, int, str, str]:
    """``CTI_GATE`` back as the dialplan cuts it (ValueError if malformed, or naming a
    context or extension the gate refuses)."""
    parts = value.split(":")
    epoch = epoch_digits(parts[0]) if len(parts) == 4 else None
    if epoch is None or not parts[1].isdigit() or not GATED_CONTEXT.fullmatch(parts[2]) \
            or not GATED_EXTEN.fullmatch(parts[3]):
        raise ValueError(f"CTI_GATE needs epoch:seq:context:exten of a routing action: {value!r}")
    return epoch, int(parts[1]), parts[2], parts[3]


def gate_action(epoch: int, seq: int, channel: str, context: str, exten: str) -> Action:
    """The Redirect of ``channel`` into ``context,exten,1`` through the gate: an Originate
    of ``GATE_CHANNEL`` whose ``cti-acd-gate``, under the epoch's lock, refuses it below
    the epoch in force, or when the channel was last moved by a later action (a higher
    epoch, or the same epoch and a higher ``seq``: each Originate runs on a thread of its
    own, so two written in order may reach the dialplan in the other order), and
    otherwise runs ``ChannelRedirect`` (refused: ``UserEvent(CtiActionRefused, Action:
    redirect)``, the caller not moved, the Originate fails unanswered)."""
    if not channel or any(c in channel for c in ",\r\n"):
        raise ValueError(f"not a channel name: {channel!r}")
    return ("Originate", {"Channel": GATE_CHANNEL, "Application": "Hangup", "Timeout": "5000", "Async": "true",
                          "Variable": [f"CTI_GATE={gate_value(epoch, seq, context, exten)}",
                                       f"CTI_GATE_CHANNEL={channel}"]})


def gated(epoch: int, actions: list[Action], seqs: Iterator[int]) -> list[Action]:
    """``actions`` with each Redirect into a routing context replaced by its gate
    (``gate_action``, numbered from ``seqs``, the sender's one increasing count in the
    order it writes); the values written before it (Setvar) stay as they are, in order."""
    out: list[Action] = []
    for name, headers in actions:
        if name == "Redirect" and GATED_CONTEXT.fullmatch(str(headers.get("Context", ""))):
            out.append(gate_action(epoch, next(seqs), headers["Channel"], headers["Context"], headers["Exten"]))
        else:
            out.append((name, headers))
    return out


def redirect_action(channel: str, context: str, exten: str) -> Action:
    """A plain Redirect into ``context,exten,1`` (a lone daemon's; ``gated`` in a pair)."""
    return ("Redirect", {"Channel": channel, "Context": context, "Exten": exten, "Priority": "1"})


@dataclass(frozen=True, slots=True)
class ActionRefusal:
    """``UserEvent(CtiActionRefused)``: a routing action (``announce``, ``maxwait``,
    ``callback``) of ``epoch`` reached a channel while Asterisk held ``current``."""
    action: str
    call_id: str
    channel: str
    callback: str
    epoch: int | None
    current: int | None


def parse_action_refusal(ev: ActionRefused) -> ActionRefusal:
    return ActionRefusal(action=ev.action, call_id=ev.call_id, channel=ev.channel, callback=ev.callback,
                         epoch=epoch_digits(ev.epoch), current=epoch_digits(ev.current))


def _checked(epoch: int) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"an epoch is a positive integer, not {epoch!r}")
    return epoch
