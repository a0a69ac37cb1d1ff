"""Calling windows in the called party's local time. Pure: ``now`` is an argument.

A lead may be dialed when the local time is inside the campaign's window in *every*
time zone the lead may be in (the strictest reading). Where the zones come from:

1. The lead's own zone (``Lead.tz``, e.g. from the customer record) when it has one:
   it overrides whatever the number says.
2. Otherwise the number, through the time zone data of the ``phonenumbers`` library
   (longest prefix wins), read strictly:

   - North America (+1): the zones of the whole area code. The library maps some
     exchanges of an area code to one zone and the rest to a default, and numbers move
     between exchanges (portability), so an area code that the data splits (Indiana's
     219, 574, 812; Arizona's 928 with the Navajo Nation on mountain daylight time;
     Kentucky, Tennessee, the Dakotas, Idaho, Oregon, Florida's 850...) gives all its
     zones. Phoenix (602, 480, 520, 623) stays on America/Phoenix alone: no DST.
   - Elsewhere, for a geographic number: the zones of the longest matching prefix plus the zones of every
     longer prefix under it (an area the data splits further gives all its parts).
   - A number that is not geographic (a mobile in most countries outside North America,
     toll-free, personal numbers), or of no known type, or with no zone in the data
     (``Etc/Unknown``): every zone of its country. An Australian mobile may be in
     Perth as well as in Sydney.
   - Not even a country: ``UnknownZone`` (the lead is not dialable until it has a zone).

Cost: a number's zone set costs a parse (tens of microseconds): a lead's is found
once (at import) and kept with it, ``ZoneMap`` precomputes the set of every prefix
(a few thousand); a verdict is cached per zone set with the instant it stops
holding (the next window edge in any of its zones, at most ``MAX_VALIDITY`` ahead), so
checking a lead is a few dictionary look-ups (bench/dialer_windows.py).

Exceptions (all ``cti.errors.CtiError``)::

    WindowError
    ├── InvalidWindow   a window's hours are malformed (names the field)
    └── UnknownZone     no zone for a lead: not a number we can place, and no zone of its own
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers.phonenumberutil import is_number_type_geographical
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from cti.errors import CtiError

UNKNOWN = "Etc/Unknown"
#: A cached verdict is recomputed at least this often (a safety net under the edge arithmetic).
MAX_VALIDITY = timedelta(minutes=30)


class WindowError(CtiError):
    """Base of every calling-window error."""


class InvalidWindow(WindowError, ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class UnknownZone(WindowError, LookupError):
    """No time zone can be found for the lead."""


@lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """The zone called ``name``; ``UnknownZone`` if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(f"no time zone called {name!r}") from None


# -- zones from numbers ----------------------------------------------------------

_DIGITS = re.compile(r"^\+?([0-9]{4,15})$")


class ZoneMap:
    """Zone sets for numbers, read strictly (see the module docstring); cached by prefix."""

    def __init__(self, data: Mapping[str, tuple[str, ...]] = TIMEZONE_DATA,
                 longest: int = TIMEZONE_LONGEST_PREFIX) -> None:
        self._longest = longest
        self._sets: dict[str, frozenset[str]] = {}
        known = {k: frozenset(v) - {UNKNOWN} for k, v in data.items()}
        keys = sorted(known)
        for key in keys:
            if key.startswith("1") and len(key) >= 4:
                area = key[:4]
                self._sets[area] = self._sets.get(area, frozenset()) | known[key]
        for i, key in enumerate(keys):
            if key.startswith("1") and len(key) >= 4:
                continue                     # the whole area code speaks for it (above)
            zones = known[key]
            for longer in keys[i + 1:bisect.bisect_right(keys, key + "~")]:
                zones = zones | known[longer]   # a longer prefix under it: the area is split
            self._sets[key] = zones
        self._country: dict[int, frozenset[str]] = {}
        self._data = known

    def for_number(self, phone: str) -> frozenset[str]:
        """Every zone ``phone`` (E.164, ``+`` optional) may be in; ``UnknownZone`` if none.
        Costs a parse (tens of microseconds): resolve a lead once, keep its zone set."""
        m = _DIGITS.match(phone)
        if not m:
            raise UnknownZone(f"not an E.164 number: {phone[:32]!r}")
        digits = m.group(1)
        try:
            number = phonenumbers.parse("+" + digits)
        except phonenumbers.NumberParseException:
            raise UnknownZone(f"no country for {phone[:32]!r}") from None
        kind = phonenumbers.number_type(number)
        if kind != phonenumbers.PhoneNumberType.UNKNOWN and is_number_type_geographical(kind, number.country_code):
            sets = self._sets
            for n in range(min(self._longest, len(digits)), 0, -1):
                found = sets.get(digits[:n])
                if found is not None:
                    if found:
                        return found
                    break
        # A mobile or non-geographic number (or one the data does not place): the country.
        return self._country_zones(number.country_code)

    def _country_zones(self, code: int) -> frozenset[str]:
        if code not in self._country:
            prefix = str(code)
            self._country[code] = frozenset().union(*(v for k, v in self._data.items() if k.startswith(prefix)))
        if not self._country[code]:
            raise UnknownZone(f"no time zone known for country code {code}")
        return self._country[code]

    def for_lead(self, phone: str, own_zone: str | None = None) -> frozenset[str]:
        """The lead's own zone if it has one (validated), else ``for_number(phone)``."""
        if own_zone:
            zone(own_zone)
            return frozenset({own_zone})
        return self.for_number(phone)


# -- windows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Local hours when calling is allowed: ``hours[weekday]`` (0 = Monday) is a
    ``(start, end)`` pair, start included, end excluded; a weekday absent is closed, and so
    is every local date in ``closed_dates`` (public holidays)."""
    hours: Mapping[int, tuple[time, time]] = field(default_factory=lambda: {
        d: (time(9), time(20)) for d in range(6)})
    closed_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        for day, pair in self.hours.items():
            if day not in range(7):
                raise InvalidWindow("hours", f"weekday {day!r} is not 0 (Monday) to 6 (Sunday)")
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(t, time) for t in pair)):
                raise InvalidWindow("hours", f"weekday {day}: needs a (start, end) pair of times")
            if pair[0] >= pair[1] or pair[0].tzinfo or pair[1].tzinfo:
                raise InvalidWindow("hours", f"weekday {day}: start must be before end, local (no zone)")

    def open_at(self, local: datetime) -> bool:
        """True if calling is allowed at the local wall-clock time ``local``. The reference
        definition: everything faster below must agree with it."""
        pair = self.hours.get(local.weekday())
        if pair is None or local.date() in self.closed_dates:
            return False
        return pair[0] <= local.time().replace(tzinfo=None) < pair[1]

    def allowed(self, zones: Iterable[str], now: datetime) -> bool:
        """True if calling is allowed at ``now`` in every zone of ``zones`` (the strictest reading)."""
        return all(self.open_at(now.astimezone(zone(z))) for z in zones)

    def edges(self, zone_name: str, now: datetime) -> list[datetime]:
        """The window's opening and closing instants (in UTC) from the day before ``now``'s
        local date to two days after, in zone ``zone_name``."""
        tz = zone(zone_name)
        today = now.astimezone(tz).date()
        out = []
        for offset in range(-1, 3):
            day = today + timedelta(days=offset)
            pair = self.hours.get(day.weekday())
            if pair is None:
                continue
            # Both readings of an hour the clock repeats (fold) are edges.
            # (In UTC: aware datetimes sharing a tzinfo compare by wall time, fold ignored.)
            out += [datetime.combine(day, t, tzinfo=tz).replace(fold=f).astimezone(timezone.utc)
                    for t in pair for f in (0, 1)]
        return out


def _before_offset_change(tz: ZoneInfo, now: datetime, until: datetime) -> datetime:
    """``until``, or an instant before ``tz`` changes its offset (DST) if it does between
    ``now`` and ``until``: the wall clock jumps there, so a verdict cannot outlive it."""
    before = now.astimezone(tz).utcoffset()
    if until.astimezone(tz).utcoffset() == before:
        return until
    lo, hi = now, until                  # lo has the old offset, hi the new one
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return lo + timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    until: datetime           # the verdict holds for the same zone set until this instant


class WindowChecker:
    """Answers "may this lead be dialed now?" for one campaign window, fast: a verdict per
    zone set, kept until the next window edge in any of its zones."""

    def __init__(self, window: CallingWindow, zones: ZoneMap | None = None) -> None:
        self.window = window
        self.zones = zones or ZoneMap()
        self._verdicts: dict[frozenset[str], tuple[datetime, Verdict]] = {}

    def check(self, zone_set: frozenset[str], now: datetime) -> Verdict:
        """Whether ``zone_set`` may be called at ``now`` and until when that holds."""
        cached = self._verdicts.get(zone_set)
        if cached is not None and cached[0] <= now < cached[1].until:
            return cached[1]
        allowed = self.window.allowed(zone_set, now)
        until = now + MAX_VALIDITY
        for z in zone_set:
            for edge in self.window.edges(z, now):
                if now < edge < until:
                    until = edge
        # A date in closed_dates starts at local midnight: recompute at the next one.
        for z in zone_set:
            local = now.astimezone(zone(z))
            midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone(z))
            until = min(until, midnight)
        for z in zone_set:
            until = _before_offset_change(zone(z), now, until)
        # In UTC, as ``now`` should be: comparing datetimes of two zones costs a utcoffset().
        verdict = Verdict(allowed, until.astimezone(timezone.utc))
        self._verdicts[zone_set] = (now, verdict)
        return verdict

    def may_dial(self, phone: str, own_zone: str | None, now: datetime) -> bool:
        """True if the lead (its number, its own zone if any) may be dialed at ``now``;
        False too when no zone is known for it."""
        try:
            zone_set = self.zones.for_lead(phone, own_zone)
        except UnknownZone:
            return False
        return self.check(zone_set, now).allowed
