"""Callback requests: parsed at the edge, and what happens after each attempt. Pure.

A caller asks to be called back from the wait (key 1), from the IVR, or at
the queue's maximum wait; the dialplan announces it with
``UserEvent(CtiCallbackRequest, Number, Queue, Skills, CtiPriority, Customer,
Since)`` (context ``cti-callback``). The request keeps the caller's place
(``since``, when their wait began). When the router offers it, the daemon
rings the agent first and, once the agent answers, dials the customer
(context ``cti-acd-callback``), which reports ``UserEvent(CtiCallbackResult,
Callback, Agent, Status)`` with the Dial status.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from cti.ami_inputs import CallbackRequest
from cti.errors import CtiError

NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
_SKILLS = re.compile(r"^[A-Za-z0-9_.:@+,-]{0,400}$")

PENDING, DIALING, CONNECTED, FAILED, CANCELLED = "pending", "dialing", "connected", "failed", "cancelled"
OPEN = (PENDING, DIALING)


class CallbackError(CtiError, ValueError):
    """A callback request the daemon cannot keep (a bad number, queue or time)."""


@dataclass(frozen=True, slots=True)
class Callback:
    callback_id: str                 # the id of the call that asked
    number: str
    queue: str
    skills: str = ""
    priority: int | None = None
    customer_id: str | None = None
    since: float = 0.0               # the wait began: the place kept
    requested_at: float = 0.0
    status: str = PENDING
    attempts: int = 0
    not_before: float | None = None
    agent_id: str | None = None
    last_leg: str | None = None
    last_result: str | None = None


def parse_request(req: CallbackRequest, now: float, default_queue: str) -> Callback:
    """A ``CtiCallbackRequest`` user event (``cti.ami_inputs.CallbackRequest``) -> a
    ``Callback``, or ``CallbackError``.

    The call id is the channel's Linkedid. ``Since`` (epoch seconds) may be
    empty (a request from the IVR: the wait begins now); one in the future or
    more than a day old is taken as now.
    """
    call_id = req.call_id
    if not call_id or len(call_id) > 100 or any(c in call_id for c in "\r\n\0,"):
        raise CallbackError(f"callback request without a usable call id: {call_id[:40]!r}")
    number = req.number.strip()
    if not NUMBER.match(number):
        raise CallbackError(f"call {call_id}: callback number must be 3 to 20 digits, not {number[:40]!r}")
    queue = req.queue.strip() or default_queue
    if not _NAME.match(queue):
        raise CallbackError(f"call {call_id}: bad queue name {queue[:40]!r}")
    skills = req.skills.strip().strip('"')
    if not _SKILLS.match(skills):
        raise CallbackError(f"call {call_id}: bad skills {skills[:40]!r}")
    prio_text = req.priority.strip()
    try:
        priority = int(prio_text) if prio_text else None
    except ValueError:
        raise CallbackError(f"call {call_id}: priority must be an integer, not {prio_text[:20]!r}") from None
    customer = req.customer.strip() or None
    if customer is not None and not _NAME.match(customer):
        raise CallbackError(f"call {call_id}: bad customer id {customer[:40]!r}")
    try:
        since = float(req.since.strip() or now)
    except ValueError:
        since = now
    if not (now - 86_400 <= since <= now):
        since = now
    return Callback(call_id, number, queue, skills, priority, customer, since, now)


def dial_string(template: str, number: str) -> str:
    """Where the customer is dialled: ``template`` with ``{number}`` replaced."""
    if not NUMBER.match(number):
        raise CallbackError(f"not a callback number: {number[:40]!r}")
    return template.replace("{number}", number)


def after_attempt(cb: Callback, dial_status: str, now: float, *, max_attempts: int,
                  retry_s: float) -> Callback:
    """The customer's phone was tried: ``ANSWER`` connects; anything else
    waits ``retry_s`` for another try, until ``max_attempts`` tries failed."""
    attempts = cb.attempts + 1
    if dial_status == "ANSWER":
        return replace(cb, status=CONNECTED, attempts=attempts, last_result=dial_status, not_before=None)
    if attempts >= max_attempts:
        return replace(cb, status=FAILED, attempts=attempts, last_result=dial_status or "UNKNOWN",
                       not_before=None)
    return replace(cb, status=PENDING, attempts=attempts, last_result=dial_status or "UNKNOWN",
                   not_before=now + retry_s)


def agent_missed(cb: Callback) -> Callback:
    """The agent did not answer: the request waits again, no attempt spent."""
    return replace(cb, status=PENDING, agent_id=None)
