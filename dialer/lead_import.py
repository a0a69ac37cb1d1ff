"""A campaign's lead list from CSV: rows checked one by one, a line-numbered report. Pure.

Columns (header required, names case-insensitive, any order): ``phone`` (required),
``name``, ``customer_id``, ``tz`` (an IANA zone: the lead's own, overriding its number's).
Every valid row comes back with the zones it will be called in (``dialer.windows``),
resolved once here; a row is rejected, naming its line and column, when its phone is not
a number, appears on an earlier line, has no zone and no ``tz``, or a field is malformed.
A file that cannot be read at all (no header, unknown or repeated column, broken
quoting, over ``MAX_ROWS`` rows) raises ``BadLeadFile``.

Numbers are normalised as customers' are (``crm.phones.normalise_e164``): ``+`` or ``00``
international, a single ``0`` national with the import's country code.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from crm.customer_model import Rejected
from crm.phones import normalise_e164
from cti.errors import CtiError
from dialer.windows import UnknownZone, ZoneMap

COLUMNS = ("phone", "name", "customer_id", "tz")
MAX_ROWS = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")


class BadLeadFile(CtiError, ValueError):
    """The file cannot be read as a lead list; the message says where and why."""


@dataclass(frozen=True, slots=True)
class LeadRow:
    line: int
    phone: str
    zones: frozenset[str]
    name: str | None = None
    customer_id: str | None = None
    tz: str | None = None


def _header(cells: list[str] | None) -> list[str]:
    if not cells:
        raise BadLeadFile("the file is empty (expected a header line: phone,name,customer_id,tz)")
    names = [c.strip().lower() for c in cells]
    for n in names:
        if n not in COLUMNS:
            raise BadLeadFile(f"unknown column {n[:40]!r} (known: {', '.join(COLUMNS)})")
    if len(set(names)) != len(names):
        raise BadLeadFile("a column appears twice")
    if "phone" not in names:
        raise BadLeadFile("required column 'phone' is missing")
    return names


def _text(column: str, value: str | None, limit: int) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > limit or _CONTROL.search(value):
        raise ValueError(f"{column}: at most {limit} characters, no control characters")
    return value


def _row(line: int, row: dict[str, str], extra: bool, country_code: str | None, zones: ZoneMap) -> LeadRow:
    if extra:
        raise ValueError("row: has more cells than the header has columns")
    raw = (row.get("phone") or "").strip()
    phone = normalise_e164(raw, country_code)
    if phone is None:
        raise ValueError(f"phone: {raw[:40]!r} is not a phone number")
    name = _text("name", row.get("name"), 200)
    customer_id = _text("customer_id", row.get("customer_id"), 64)
    if customer_id is not None and not _ID.match(customer_id):
        raise ValueError(f"customer_id: {customer_id[:40]!r} is not an id (letters, digits, _.:@+-)")
    tz = _text("tz", row.get("tz"), 64)
    try:
        found = zones.for_lead(phone, tz)
    except UnknownZone as exc:
        column = "tz" if tz else "phone"
        raise ValueError(f"{column}: {exc} (give the lead a tz)") from None
    return LeadRow(line, phone, found, name, customer_id, tz)


def parse_leads(text: str, *, country_code: str | None = None,
                zones: ZoneMap | None = None) -> tuple[list[LeadRow], list[Rejected]]:
    """The valid rows and the rejected ones (line, reason), each in file order.
    Raises ``BadLeadFile`` for a file that cannot be read as a list."""
    zones = zones or ZoneMap()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    valid: list[LeadRow] = []
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    try:
        header = _header(next(reader, None))
        line = reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                if len(valid) + len(rejected) >= MAX_ROWS:
                    raise BadLeadFile(f"more than {MAX_ROWS} rows: split the file")
                try:
                    lead = _row(line, dict(zip(header, cells)), len(cells) > len(header), country_code, zones)
                except ValueError as exc:
                    rejected.append(Rejected(line, str(exc)))
                else:
                    if lead.phone in seen:
                        rejected.append(Rejected(line, f"phone: {lead.phone} already on line {seen[lead.phone]}"))
                    else:
                        seen[lead.phone] = line
                        valid.append(lead)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise BadLeadFile(f"line {reader.line_num}: {exc}") from None
    return valid, rejected
