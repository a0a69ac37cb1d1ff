"""Call control: typed commands in, AMI actions out. Pure: no I/O.

The agent desktop (``api/desktop.py``) turns a click into one of the commands
below, ``parties`` finds the channels it acts on in the call model, and
``actions`` says which AMI actions carry it out, in order; the shell sends
them on one AMI connection (Asterisk runs a session's actions in order).

Every value that reaches Asterisk is checked here first, whatever checked it
before: channel names as Asterisk makes them, numbers and DTMF digits by
pattern, ids by pattern (``ControlError`` names the bad field). Values are
never built from caller-controlled text (caller names never reach an action).

How each command works in the dialplan (``asterisk-config/extensions.conf``):

- **Hang up**: ``Hangup`` of every leg of the call (an agent's Local channel
  ends both halves), so a call on hold ends too.
- **Hold**: a call the ACD connected is the caller's ``Dial`` bridged with the
  agent's leg. Hold sets ``CTI_HOLD`` on both legs and redirects both at once
  (``Redirect`` with ``ExtraChannel``) into ``cti-hold``, where they meet in a
  holding bridge of their own (``BridgeWait``): the caller hears music, the
  agent silence. Both legs stay up and in one bridge, so the call model reads
  it as held (``MusicOnHoldStart`` in a bridge of two).
- **Resume**: the AMI ``Bridge`` action on the two legs pulls them out of the
  holding bridge into a plain one; when either hangs up later, the other goes
  back to ``cti-hold``'s next priority and hangs up.
- **Blind transfer**: ``BlindTransfer`` of the agent's leg sends the caller to
  ``cti-transfer``: ``queue`` (routing again, with ``CTI_QUEUE`` set first),
  ``agent`` (rings ``CTI_XFER_DIAL``) or a number (``cti-outbound``).
- **Attended transfer**: ``Atxfer`` on the agent's leg. Asterisk carries it
  out as the ``atxfer`` feature (``features.conf``; the agents' ``Dial`` has
  option ``t``), keying the target into ``cti-atxfer`` as DTMF digits: ``8``
  (the agent in ``CTI_XFER_DIAL``), ``9``/``7`` and the number. The caller
  hears music; hanging the agent's leg up completes it, ``CancelAtxfer``
  returns to the caller.
- **Click-to-dial**: ``Originate`` of the agent's device into
  ``cti-click-to-dial`` (the agent sees the customer's number); once the agent
  answers, the customer is dialled with the company's caller ID.
- **DTMF**: ``PlayDTMF`` on the caller's leg, one action per digit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from cti.errors import CtiError

Action = tuple[str, dict[str, Any]]

# Whole values only (``fullmatch``): with ``match``, ``$`` also matches before a
# trailing newline, which would carry "1234\n" through to Asterisk.
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9/@._;:+#~-]{0,199}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NUMBER = re.compile(r"\+?[0-9]{2,20}")
_DIGITS = re.compile(r"[0-9*#A-D]{1,32}")
_DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/@._;:+#{}~-]{0,199}")
_CID = re.compile(r'[^\r\n\x00]{0,120}')

DTMF_MS = 250


class ControlError(CtiError, ValueError):
    """A command that cannot be carried out as given. ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check(field: str, value: str | None, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ControlError(field, f"not {what}")
    return value


def channel(value: str | None, field: str = "channel") -> str:
    return _check(field, value, _CHANNEL, "a channel name")


def ident(value: str | None, field: str = "id") -> str:
    return _check(field, value, _ID, "an id (letters, digits, _ . -)")


def number(value: str | None, field: str = "number") -> str:
    return _check(field, value, _NUMBER, "a phone number (+ and 2 to 20 digits)")


def digits(value: str | None, field: str = "digits") -> str:
    return _check(field, value, _DIGITS, "DTMF digits (0-9 * # A-D, at most 32)")


# -- the parties of a call -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Parties:
    """The channels of a live call a command acts on."""

    call_id: str
    caller: str | None          # the leg that started the call (the customer on inbound calls)
    agent_leg: str | None       # the answering agent's leg, while it lives
    agent: str | None           # the agent id the model names
    state: str
    legs: tuple[str, ...]       # every leg's channel name


def parties(call: Any) -> Parties:
    """The parties of a ``cti.calls.Call`` (read only)."""
    origin = call.legs.get(call.call_id)
    agent_leg = call.legs.get(call.agent_leg) if call.agent_leg is not None else None
    return Parties(call.call_id, origin.channel if origin is not None else None,
                   agent_leg.channel if agent_leg is not None else None, call.agent, call.state,
                   tuple(leg.channel for leg in call.legs.values()))


# -- commands --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hangup:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Hold:
    call_id: str
    caller: str
    agent_leg: str


@dataclass(frozen=True, slots=True)
class Resume:
    caller: str
    agent_leg: str


TargetKind = Literal["agent", "queue", "number"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a transfer goes: an agent (``device`` from the ACD configuration),
    a queue, or a number."""

    kind: TargetKind
    value: str                   # agent id, queue id, or number
    device: str | None = None    # the agent's dial string
    ring_s: int = 30


@dataclass(frozen=True, slots=True)
class BlindTransfer:
    caller: str
    agent_leg: str
    target: Target


@dataclass(frozen=True, slots=True)
class AttendedTransfer:
    agent_leg: str
    target: Target


@dataclass(frozen=True, slots=True)
class CancelTransfer:
    agent_leg: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    channel: str
    digits: str


@dataclass(frozen=True, slots=True)
class ClickToDial:
    """Ring ``device`` (agent ``agent_id``) first; when answered, dial ``dial``
    (the customer) showing ``caller_id``. ``channel_id`` becomes the call's id."""

    agent_id: str
    device: str
    number: str
    dial: str
    caller_id: str
    ring_s: int
    channel_id: str


Command = Hangup | Hold | Resume | BlindTransfer | AttendedTransfer | CancelTransfer | Dtmf | ClickToDial


def dial_string(template: str, value: str) -> str:
    """``template`` with ``{number}`` replaced by a checked number."""
    return template.replace("{number}", number(value))


def _device(value: str | None, field: str = "target.device") -> str:
    return _check(field, value, _DEVICE, "a dial string")


def _target_checked(t: Target) -> Target:
    if t.kind == "agent":
        ident(t.value, "target.value")
        _device(t.device)
    elif t.kind == "queue":
        ident(t.value, "target.value")
    elif t.kind == "number":
        number(t.value, "target.value")
    else:
        raise ControlError("target.kind", "agent, queue or number")
    if not 5 <= t.ring_s <= 300:
        raise ControlError("target.ring_s", "between 5 and 300 seconds")
    return t


def actions(cmd: Command) -> list[Action]:
    """The AMI actions that carry ``cmd`` out, in order. Raises ``ControlError``."""
    if isinstance(cmd, Hangup):
        if not cmd.channels:
            raise ControlError("channels", "the call has no leg left")
        return [("Hangup", {"Channel": channel(c), "Cause": "16"}) for c in cmd.channels]
    if isinstance(cmd, Hold):
        caller, agent = channel(cmd.caller, "caller"), channel(cmd.agent_leg, "agent_leg")
        key = ident(cmd.call_id, "call_id")
        return [("Setvar", {"Channel": caller, "Variable": "CTI_HOLD", "Value": key}),
                ("Setvar", {"Channel": agent, "Variable": "CTI_HOLD", "Value": key}),
                ("Redirect", {"Channel": caller, "Context": "cti-hold", "Exten": "caller", "Priority": "1",
                              "ExtraChannel": agent, "ExtraContext": "cti-hold", "ExtraExten": "agent",
                              "ExtraPriority": "1"})]
    if isinstance(cmd, Resume):
        return [("Bridge", {"Channel1": channel(cmd.caller, "caller"), "Channel2": channel(cmd.agent_leg, "agent_leg"),
                            "Tone": "no"})]
    if isinstance(cmd, BlindTransfer):
        caller, agent = channel(cmd.caller, "caller"), channel(cmd.agent_leg, "agent_leg")
        t = _target_checked(cmd.target)
        out: list[Action] = []
        if t.kind == "queue":
            out += [("Setvar", {"Channel": caller, "Variable": "CTI_QUEUE", "Value": t.value}),
                    ("Setvar", {"Channel": caller, "Variable": "CTI_SKILLS", "Value": ""})]
            exten = "queue"
        elif t.kind == "agent":
            out += [("Setvar", {"Channel": caller, "Variable": "CTI_XFER_DIAL", "Value": t.device}),
                    ("Setvar", {"Channel": caller, "Variable": "CTI_XFER_RING", "Value": str(t.ring_s)})]
            exten = "agent"
        else:
            exten = t.value
        return out + [("BlindTransfer", {"Channel": agent, "Context": "cti-transfer", "Exten": exten})]
    if isinstance(cmd, AttendedTransfer):
        agent = channel(cmd.agent_leg, "agent_leg")
        t = _target_checked(cmd.target)
        if t.kind == "queue":
            raise ControlError("target.kind", "an attended transfer goes to an agent or a number")
        # Asterisk dials the target as DTMF digits: 8 is the agent in CTI_XFER_DIAL
        # (inherited, hence "__"), 9 a number with a leading +, 7 one without.
        if t.kind == "agent":
            return [("Setvar", {"Channel": agent, "Variable": "__CTI_XFER_DIAL", "Value": t.device}),
                    ("Setvar", {"Channel": agent, "Variable": "__CTI_XFER_RING", "Value": str(t.ring_s)}),
                    ("Atxfer", {"Channel": agent, "Context": "cti-atxfer", "Exten": "8"})]
        exten = "9" + t.value[1:] if t.value.startswith("+") else "7" + t.value
        return [("Atxfer", {"Channel": agent, "Context": "cti-atxfer", "Exten": exten})]
    if isinstance(cmd, CancelTransfer):
        return [("CancelAtxfer", {"Channel": channel(cmd.agent_leg, "agent_leg")})]
    if isinstance(cmd, Dtmf):
        ch = channel(cmd.channel)
        return [("PlayDTMF", {"Channel": ch, "Digit": d, "Duration": str(DTMF_MS)})
                for d in digits(cmd.digits)]
    if isinstance(cmd, ClickToDial):
        num = number(cmd.number)
        _check("caller_id", cmd.caller_id, _CID, "a caller ID without line breaks")
        if not 5 <= cmd.ring_s <= 300:
            raise ControlError("ring_s", "between 5 and 300 seconds")
        variables = {"CTI_AGENT": ident(cmd.agent_id, "agent_id"), "CTI_DIAL": _device(cmd.dial, "dial"),
                     "CTI_DIAL_RING": str(cmd.ring_s), "CTI_DIAL_CID": cmd.caller_id, "CTI_DIAL_NUM": num}
        return [("Originate", {
            "Channel": _device(cmd.device, "device"), "Context": "cti-click-to-dial", "Exten": "s", "Priority": "1",
            "Timeout": str(cmd.ring_s * 1000), "Async": "true", "CallerID": f'"{num}" <{num}>',
            "ChannelId": ident(cmd.channel_id, "channel_id"), "OtherChannelId": ident(cmd.channel_id + "-2", "channel_id"),
            "Variable": [f"{k}={v}" for k, v in variables.items()]})]
    raise ControlError("command", f"unknown command {type(cmd).__name__}")


# -- who may do what ---------------------------------------------------------------

Verb = Literal["hangup", "hold", "resume", "transfer", "dtmf"]


def refuse(verb: Verb, p: Parties, *, agent_id: str | None, any_call: bool) -> tuple[int, str, str] | None:
    """Why ``verb`` on the call ``p`` is refused, as ``(status, error_id, message)``,
    or None when it may go ahead. ``agent_id``: the asking agent; ``any_call``:
    supervisors and admins may act on any call."""
    if not any_call and (agent_id is None or p.agent != agent_id):
        return 403, "not_your_call", "an agent may control only their own calls"
    if verb == "hangup":
        return None if p.legs else (409, "call_state", "the call has no leg left")
    if verb == "dtmf":
        return None if p.caller else (409, "call_state", "the call has no caller leg")
    if p.caller is None or p.agent_leg is None:
        return 409, "call_state", f"the call is not connected to an agent (state {p.state})"
    if verb == "hold" and p.state != "talking":
        return 409, "call_state", f"only a call in conversation can be held (state {p.state})"
    if verb == "resume" and p.state != "held":
        return 409, "call_state", f"the call is not on hold (state {p.state})"
    return None
