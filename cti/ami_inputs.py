"""The AMI events features take beside the call model, typed at the edge.

``parse(headers)`` turns the few AMI events a feature acts on into small frozen
records; the daemon publishes them on the bus after the call events of the same
frame (``cti.daemon.on_frame``), and a feature subscribes to the class it wants
(``bus.subscribe_to(ContactStatus, fn)``). Features no longer read raw headers:
what the dialplan or Asterisk said is here once, as fields, and what a value
must be to be used (a callback number, a mailbox) stays the feature's own rule.
Pure: headers in, a record or None out.

Families (one parser each):

=================================== ============================================
``UserEvent(CtiOfferRefused)``       ``OfferRefused``: the dialplan refused an offer of a lower epoch (acd)
``UserEvent(CtiActionRefused)``      ``ActionRefused``: the dialplan refused another routing action of a lower epoch (acd)
``UserEvent(CtiCallbackRequest)``    ``CallbackRequest``: a caller asks to be called back (acd)
``UserEvent(CtiCallbackResult)``     ``CallbackResult``: how a callback's dial ended (acd)
``OriginateResponse``                ``OriginateResult``: an originated leg's outcome (acd callbacks)
``Hangup``                           ``LegHungUp``: a leg ended (acd callbacks: the legs it originated)
``UserEvent(CtiRecording)``          ``RecordingReport``: the dialplan started a recording (recording)
``UserEvent(CtiVoicemail)``          ``VoicemailLeft``: a caller went to voicemail (ivr)
``UserEvent(CtiDialer)``             ``DialerStep``: a campaign call's step in ``cti-dialer`` (dialer)
``ContactStatus``                    ``ContactStatus``: a PJSIP contact's reachability (phone)
=================================== ============================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Union


@dataclass(frozen=True, slots=True)
class OfferRefused:
    """An offer for call ``call_id`` to ``agent`` reached ``channel`` with epoch ``epoch``
    while Asterisk held ``current`` (both as the dialplan wrote them: ``acd.epoch``
    reads the digits)."""

    call_id: str
    channel: str
    agent: str
    epoch: str
    current: str


@dataclass(frozen=True, slots=True)
class ActionRefused:
    """A routing action other than an offer (``action``: announce, maxwait, callback)
    reached ``channel`` with epoch ``epoch`` while Asterisk held ``current`` (as the
    dialplan wrote them); ``callback``: the callback's id, for a callback leg."""

    call_id: str
    channel: str
    action: str
    callback: str
    epoch: str
    current: str


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A caller's request to be called back, as the dialplan sent it (values unchecked:
    ``acd.callbacks.parse_request`` decides what is usable). ``call_id`` is the
    channel's Linkedid; ``since`` is epoch seconds as text, empty from the IVR."""

    call_id: str
    channel: str
    number: str
    queue: str
    skills: str
    priority: str
    customer: str
    since: str


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """The dialplan's word on a callback's dial to the customer (``status``: a DIALSTATUS)."""

    callback_id: str
    status: str


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """An asynchronous Originate's outcome for leg ``uniqueid`` (``reason``: Asterisk's code)."""

    uniqueid: str
    success: bool
    reason: str


@dataclass(frozen=True, slots=True)
class LegHungUp:
    uniqueid: str


@dataclass(frozen=True, slots=True)
class RecordingReport:
    """``CtiRecording``: the dialplan's answer about recording ``file`` of call ``call_id``."""

    call_id: str
    channel: str
    file: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class VoicemailLeft:
    """Call ``call_id`` reached voicemail box ``mailbox`` (as the dialplan wrote it)."""

    call_id: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class DialerStep:
    """A campaign call (leg ``uniqueid``, attempt ``attempt`` as the dialplan wrote it)
    reached ``step`` (answered, amd, abandoned, abandon_played, voicemail) with
    ``status`` and ``cause`` (AMD's, or Playback's)."""

    uniqueid: str
    attempt: str
    step: str
    status: str
    cause: str


@dataclass(frozen=True, slots=True)
class ContactStatus:
    """A PJSIP contact of ``aor`` at ``uri`` is now ``status`` (e.g. Reachable, Unreachable),
    on Asterisk node ``node`` (set by the daemon with several nodes; None: the one node)."""

    aor: str
    uri: str
    status: str
    node: str | None = None


AmiInput = Union[OfferRefused, ActionRefused, CallbackRequest, CallbackResult, OriginateResult, LegHungUp,
                 RecordingReport, VoicemailLeft, ContactStatus, DialerStep]


def _call_id(h: Mapping[str, str]) -> str:
    return h.get("Linkedid") or h.get("Uniqueid") or ""


def _offer_refused(h: Mapping[str, str]) -> OfferRefused:
    return OfferRefused(_call_id(h), h.get("Channel") or "", h.get("Agent") or "", h.get("Epoch") or "",
                        h.get("Current") or "")


def _action_refused(h: Mapping[str, str]) -> ActionRefused:
    return ActionRefused(_call_id(h), h.get("Channel") or "", h.get("Action") or "", h.get("Callback") or "",
                         h.get("Epoch") or "", h.get("Current") or "")


def callback_request(h: Mapping[str, str]) -> CallbackRequest:
    return CallbackRequest(_call_id(h), h.get("Channel") or "", h.get("Number") or "", h.get("Queue") or "",
                           h.get("Skills") or "", h.get("CtiPriority") or "", h.get("Customer") or "",
                           h.get("Since") or "")


def _callback_result(h: Mapping[str, str]) -> CallbackResult:
    return CallbackResult(h.get("Callback") or "", (h.get("Status") or "").strip())


def _recording(h: Mapping[str, str]) -> RecordingReport:
    return RecordingReport(h.get("Linkedid") or "", h.get("Channel") or "", h.get("File") or "",
                           h.get("Status") or "", h.get("Reason") or "")


def _voicemail(h: Mapping[str, str]) -> VoicemailLeft | None:
    call_id = _call_id(h)
    return VoicemailLeft(call_id, h.get("Mailbox") or "") if call_id else None


def _dialer(h: Mapping[str, str]) -> DialerStep | None:
    leg = h.get("Uniqueid")
    return DialerStep(leg, h.get("Attempt") or "", h.get("Step") or "", h.get("Status") or "",
                      h.get("Cause") or "") if leg else None


def _originate(h: Mapping[str, str]) -> OriginateResult | None:
    leg = h.get("Uniqueid")
    return OriginateResult(leg, h.get("Response") == "Success", h.get("Reason") or "0") if leg else None


def _hangup(h: Mapping[str, str]) -> LegHungUp | None:
    leg = h.get("Uniqueid")
    return LegHungUp(leg) if leg else None


def _contact(h: Mapping[str, str]) -> ContactStatus | None:
    aor, uri, status = h.get("AOR"), h.get("URI"), h.get("ContactStatus")
    return ContactStatus(aor, uri, status) if aor and uri and status else None


_USER_EVENTS: dict[str, Callable[[Mapping[str, str]], AmiInput | None]] = {
    "CtiOfferRefused": _offer_refused, "CtiActionRefused": _action_refused,
    "CtiCallbackRequest": callback_request, "CtiCallbackResult": _callback_result,
    "CtiRecording": _recording, "CtiVoicemail": _voicemail, "CtiDialer": _dialer,
}
_EVENTS: dict[str, Callable[[Mapping[str, str]], AmiInput | None]] = {
    "OriginateResponse": _originate, "Hangup": _hangup, "ContactStatus": _contact,
}


def parse(h: Mapping[str, str]) -> AmiInput | None:
    """The typed input of an AMI event's headers, or None: not one of the families
    above, or one without what identifies it (a call, a leg, a contact)."""
    event = h.get("Event")
    if event == "UserEvent":
        fn = _USER_EVENTS.get(h.get("UserEvent") or "")
    else:
        fn = _EVENTS.get(event or "")
    return None if fn is None else fn(h)
