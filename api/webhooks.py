"""Webhooks' core: which events a subscription wants, the payload, its signature,
the retry schedule. Pure (``hmac`` and ``json`` only).

A delivery is an HTTP POST of the JSON payload with these headers::

    Content-Type: application/json
    X-Cti-Event: call.ended
    X-Cti-Delivery: <event id: call_id:call_seq, the same for every attempt>
    X-Cti-Signature: t=1767225600,v1=<hex HMAC-SHA256 of "1767225600." + body, keyed by the secret>

The receiver recomputes the HMAC over ``f"{t}.".encode() + raw_body`` with the
subscription's secret, compares in constant time, and refuses a ``t`` too far
from its clock (``verify`` does all three), so a captured request cannot be
replayed later and a body cannot be changed. A 2xx answer is success; any
other answer, a timeout or a refused connection is retried after
``backoff(attempt)`` seconds, up to ``MAX_ATTEMPTS`` attempts.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import asdict, is_dataclass
from typing import Any, Iterable, Mapping

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
TOLERANCE_S = 300
SIGNATURE_HEADER = "X-Cti-Signature"

_PATTERN = re.compile(r"^(\*|[a-z]+\.\*|[a-z]+\.[a-z_]+)$")


def valid_pattern(p: str) -> bool:
    """``call.ended`` (a kind), ``call.*`` (a family) or ``*`` (everything)."""
    return bool(_PATTERN.match(p))


def wants(patterns: Iterable[str], kind: str) -> bool:
    for p in patterns:
        if p == "*" or p == kind or (p.endswith(".*") and kind.startswith(p[:-1])):
            return True
    return False


def payload(kind: str, call_id: str, seq: int, at: float, call: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of one event (``call``: a ``CallView`` or its dict)."""
    return {"id": f"{call_id}:{seq}", "type": kind, "call_id": call_id, "call_seq": seq, "at": at,
            "call": asdict(call) if is_dataclass(call) else dict(call), "data": dict(data)}


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str, allow_nan=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Cti-Signature`` value for ``body`` sent at ``timestamp`` (epoch seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = TOLERANCE_S) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its time is within
    ``tolerance`` seconds of ``now``. What receivers should do."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, 4 ... capped)."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))


def outcome(status: int | None) -> str:
    """``delivered`` for a 2xx answer, else ``failed`` (to retry)."""
    return "delivered" if status is not None and 200 <= status < 300 else "failed"
