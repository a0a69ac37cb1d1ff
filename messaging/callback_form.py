"""The web callback form's request, checked. Pure: the clock is an argument.

A customer leaves a name, a number and a preferred time on the public page
(``/callback/``); ``plan`` turns what they sent into a ``WebCallback`` or a
``FormError`` naming the field. The number must be a real, callable number
(``messaging.core.normalise_number``: no premium rate), in one of the allowed
countries when the daemon names them. ``website`` is a honeypot: a field the
page hides from people, which bots fill in.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from pydantic import BaseModel, Field

from messaging.core import NumberError, normalise_number

AHEAD_MAX_S = 7 * 86_400
BODY_MAX = 4 * 1024
_NAME = re.compile(r"^[^\x00-\x1f\x7f<>]{1,100}$")


class CallbackFormBody(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="how to greet the customer")
    number: str = Field(min_length=1, max_length=32, description="the number to call, international "
                                                                 "(+44 20 7946 0000) or national")
    preferred: str = Field("asap", max_length=40, description='"asap", or an ISO 8601 time with a time zone '
                                                              "within the next 7 days")
    website: str = Field("", max_length=200, description="leave empty (a field hidden from people)")


class FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class WebCallback:
    callback_id: str
    name: str
    number: str               # E.164
    not_before: float | None  # the preferred time; None: as soon as possible
    bot: bool = False         # the honeypot was filled: answer as usual, file nothing


def new_id() -> str:
    return "web-" + secrets.token_hex(8)


def plan(body: CallbackFormBody, now: float, *, region: str | None = None,
         countries: tuple[str, ...] = ()) -> WebCallback:
    """Raises ``FormError`` (field, reason)."""
    if body.website.strip():
        return WebCallback(new_id(), "", "", None, bot=True)
    name = " ".join(body.name.split())
    if not _NAME.match(name):
        raise FormError("name", "1 to 100 characters, no control characters or < >")
    try:
        number = normalise_number(body.number, region, callable_only=True)
    except NumberError as exc:
        raise FormError("number", str(exc)) from None
    if countries:
        where = phonenumbers.region_code_for_number(phonenumbers.parse(number))
        if where not in countries:
            raise FormError("number", f"we call back numbers in {', '.join(countries)} only")
    not_before = None
    preferred = body.preferred.strip().lower()
    if preferred not in ("", "asap"):
        try:
            at = datetime.fromisoformat(body.preferred.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise FormError("preferred", '"asap" or a time like 2026-05-01T14:30:00+02:00') from None
        if at.tzinfo is None:
            raise FormError("preferred", "give the time with its time zone (+02:00 or Z)")
        ts = at.timestamp()
        if ts > now + AHEAD_MAX_S:
            raise FormError("preferred", "at most 7 days ahead")
        not_before = ts if ts > now else None
    return WebCallback(new_id(), name, number, not_before)
