"""Messaging's core: signatures, the inbound JSON shape, numbers, delivery states
and a rate limit. Pure (``hmac``, ``json``, ``phonenumbers``, pydantic); the clock
is an argument.

Both directions are signed the same way (docs/messaging.md, "Signing")::

    X-CTI-Timestamp: 1767225600
    X-CTI-Signature: sha256=<hex HMAC-SHA256 of b"1767225600." + raw body, keyed by the shared secret>

The timestamp is inside the MAC, so a captured request cannot be sent again
later with a fresh timestamp; one more than ``TOLERANCE_S`` seconds from our
clock is refused (a replay inside that window is caught by the provider's
message id: stored once).

Every refusal is a ``Refused`` with the HTTP status, a stable ``error_id`` and
a reason that names what is wrong (never the secret, never the expected MAC).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SIGNATURE_HEADER = "X-CTI-Signature"
TIMESTAMP_HEADER = "X-CTI-Timestamp"
TOLERANCE_S = 300
TEXT_MAX = 4096
BODY_MAX = 16 * 1024

_HEX = re.compile(r"^[0-9a-f]{64}$")
_TS = re.compile(r"^[0-9]{1,12}$")
_PROVIDER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,199}$"


class Refused(Exception):
    """A request refused: ``status`` (4xx), ``error_id`` and a reason for the sender."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


# -- signing ---------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-CTI-Signature`` value of ``body`` sent at ``timestamp`` (epoch seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of a signed JSON POST of ``body``."""
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float,
           tolerance: float = TOLERANCE_S) -> int:
    """Check the signature of ``body``; returns its timestamp. Raises ``Refused``
    (401 ``bad_signature`` or ``stale_request``) naming what is missing or wrong."""
    ts_text = (headers.get(TIMESTAMP_HEADER) or "").strip()
    sig_text = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not sig_text:
        raise Refused(401, "bad_signature", f"the {SIGNATURE_HEADER} header is missing")
    if not ts_text:
        raise Refused(401, "bad_signature", f"the {TIMESTAMP_HEADER} header is missing")
    if not _TS.match(ts_text):
        raise Refused(401, "bad_signature", f"{TIMESTAMP_HEADER} must be whole epoch seconds")
    ts = int(ts_text)
    if abs(now - ts) > tolerance:
        raise Refused(401, "stale_request", f"{TIMESTAMP_HEADER} is more than {tolerance:g} s from the "
                                            "server's clock (a replay, or a clock to set right)")
    scheme, _, mac = sig_text.partition("=")
    if scheme.strip().lower() != "sha256" or not _HEX.match(mac.strip().lower()):
        raise Refused(401, "bad_signature", f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>")
    expected = sign(secret, ts, body).partition("=")[2]
    if not hmac.compare_digest(expected, mac.strip().lower()):
        raise Refused(401, "bad_signature", "the signature does not match the body and timestamp "
                                            "(another secret, or a changed body)")
    return ts


# -- numbers ---------------------------------------------------------------------------------

# What a customer's number may not be: numbers that cost the caller (a callback to
# them is toll fraud), or that are no one's phone.
_REFUSED_TYPES = {phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST,
                  phonenumbers.PhoneNumberType.UAN, phonenumbers.PhoneNumberType.VOICEMAIL,
                  phonenumbers.PhoneNumberType.PAGER}


class NumberError(ValueError):
    """Not a phone number we can use; the message says why."""


def normalise_number(text: str, region: str | None = None, *, callable_only: bool = False) -> str:
    """``text`` as E.164 (``+4930123456``). A number without ``+``/``00`` is read as
    national in ``region`` (ISO 3166 code; None: it must be international).
    ``callable_only``: also refuse premium-rate, shared-cost and similar numbers.
    Raises ``NumberError``."""
    raw = text.strip()
    if not raw or len(raw) > 32:
        raise NumberError("a phone number of at most 32 characters is required")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        if region is None and not raw.startswith("+"):
            raise NumberError("give the number in international form (+ and the country code)") from None
        raise NumberError("this is not a phone number") from None
    if not phonenumbers.is_valid_number(num):
        raise NumberError("this number does not exist in its country's numbering plan")
    if callable_only and phonenumbers.number_type(num) in _REFUSED_TYPES:
        raise NumberError("premium-rate and shared-cost numbers cannot be called back")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


# -- the inbound shape -------------------------------------------------------------------------


class InboundBody(BaseModel):
    """One message a customer sent (docs/messaging.md, "Inbound")."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: str = Field(pattern=_PROVIDER_ID, description="the provider's id of the message (idempotency key)")
    from_: str = Field(alias="from", min_length=1, max_length=32, description="the customer's number")
    to: str = Field(min_length=1, max_length=32, description="our number they wrote to")
    text: str = Field(min_length=1, max_length=TEXT_MAX)
    timestamp: datetime = Field(description="when the customer sent it, ISO 8601 with a time zone")


@dataclass(frozen=True, slots=True)
class Inbound:
    provider_id: str
    number: str           # the customer's, E.164
    our_number: str       # E.164 when it is a number, else as given (a short code, a sender name)
    text: str
    sent_at: float


_OUR = re.compile(r"^[A-Za-z0-9+][A-Za-z0-9 +_.-]{0,31}$")


def parse_inbound(raw: bytes, region: str | None = None) -> Inbound:
    """The signed body -> an ``Inbound``. Raises ``Refused``: 400 ``invalid_json``,
    422 ``invalid_body`` naming the field."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, "invalid_json", f"the body is not JSON: {str(exc)[:100]}") from None
    if not isinstance(data, dict):
        raise Refused(422, "invalid_body", "the body must be a JSON object")
    try:
        body = InboundBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Refused(422, "invalid_body", f"{where}: {first['msg']}") from None
    if body.timestamp.tzinfo is None:
        raise Refused(422, "invalid_body", "timestamp: give a time zone (2026-05-01T08:00:00Z)")
    if "\x00" in body.text:
        raise Refused(422, "invalid_body", "text: may not hold NUL characters")
    try:
        number = normalise_number(body.from_, region)
    except NumberError as exc:
        raise Refused(422, "invalid_body", f"from: {exc}") from None
    try:
        ours = normalise_number(body.to, region)
    except NumberError:
        if not _OUR.match(body.to):
            raise Refused(422, "invalid_body", "to: neither a phone number nor a sender name") from None
        ours = body.to
    return Inbound(body.message_id, number, ours, body.text, body.timestamp.timestamp())


# -- outbound --------------------------------------------------------------------------------

PENDING, SENT, FAILED = "pending", "sent", "failed"


def outbound_body(message_id: int, conversation_id: int, to: str, from_: str, text: str, at: float) -> bytes:
    """The JSON POSTed to the provider for one reply (docs/messaging.md, "Outbound")."""
    return json.dumps({"message_id": str(message_id), "conversation_id": str(conversation_id), "to": to,
                       "from": from_, "text": text,
                       "timestamp": datetime.fromtimestamp(at, timezone.utc).isoformat()},
                      separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    state: str                 # PENDING, SENT, FAILED
    attempts: int
    next_at: float | None      # when to try again (PENDING only)
    error: str | None


def after_attempt(attempts: int, status: int | None, failure: str | None, now: float, *,
                  max_attempts: int, retry_s: float) -> Delivery:
    """One attempt made (``attempts`` before it): a 2xx is sent; anything else waits
    ``retry_s * 2**n`` (at most 5 min) for another, until ``max_attempts`` failed."""
    n = attempts + 1
    if status is not None and 200 <= status < 300:
        return Delivery(SENT, n, None, None)
    error = failure or (f"http_{status}" if status is not None else "failed")
    if n >= max_attempts:
        return Delivery(FAILED, n, None, error)
    return Delivery(PENDING, n, now + min(300.0, retry_s * 2 ** (n - 1)), error)


# -- a rate limit --------------------------------------------------------------------------------


class RateLimit:
    """A token bucket per key: ``burst`` requests at once, then one per
    ``1/rate`` seconds. At most ``max_keys`` keys, the least recently used dropped."""

    def __init__(self, rate: float, burst: int, max_keys: int = 50_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0.0 when a request under ``key`` may go ahead now (it is counted), else the
        seconds until one may (nothing counted)."""
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0.0

    def __len__(self) -> int:
        return len(self._buckets)
