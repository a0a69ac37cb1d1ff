"""The customer record, pure: CSV row validation for imports and the planning of merges.

No I/O: ``validate_rows`` takes rows already read (line number and a dict per
row), ``plan_merge`` takes two snapshots already loaded. ``crm.customer_store``
reads and writes them; ``cti customers import FILE.csv`` is the command.

CSV columns (header names are case-insensitive; only ``name`` and ``phones`` are
required; docs/customers.md has the details)::

    customer_id, name, phones, language, vip, tags, address, postcode, city, country, region, note, products

- ``phones``: one or more numbers separated by ``;`` or ``,``; each is
  normalised to E.164 with ``crm.phones.normalise_e164`` (a national number
  needs ``country_code``). A row with no valid number, or with any invalid one,
  is rejected: a half-imported row is worse than a rejected one.
- ``tags``: separated by ``;`` or ``,``, kept in lower case (``VIP`` -> ``vip``).
- ``products``: the products the customer holds, separated by ``;`` or ``,``, in the form
  articles are linked to (``kb.products.normalise``: "Solar Panels" -> ``solar-panels``).
- A rejection names the CSV line of the row (the header is line 1) and the
  column at fault; the other rows are imported.

Exceptions (``cti.errors.CtiError``)::

    CustomerError
    ├── InvalidCustomer   a field is missing or malformed (``field`` names it)
    ├── BadImportFile     the file cannot be imported at all (no header, unknown column)
    └── MergeRefused      a merge that cannot be done (same customer, unknown customer)
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from crm.phones import normalise_e164
from cti.errors import CtiError
from kb.products import InvalidProduct, split_cell


class CustomerError(CtiError):
    """Base of the customer errors."""


class InvalidCustomer(CustomerError, ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class BadImportFile(CustomerError, ValueError):
    """The file cannot be imported at all."""


class MergeRefused(CustomerError, ValueError):
    """The merge cannot be done; nothing changed."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
TAG = re.compile(r"^[a-z0-9][a-z0-9_.:+-]{0,39}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
_TRUE = {"1", "yes", "y", "true", "vip", "x"}
_FALSE = {"", "0", "no", "n", "false"}

COLUMNS = ("customer_id", "name", "phones", "language", "vip", "tags", "address", "postcode", "city",
           "country", "region", "note", "products")
REQUIRED = ("name", "phones")


@dataclass(frozen=True, slots=True)
class Address:
    line1: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str | None = None
    region: str | None = None
    label: str | None = None
    line2: str | None = None

    def key(self) -> tuple[str, ...]:
        """What makes two addresses the same place (case, spaces and punctuation aside)."""
        def norm(v: str | None) -> str:
            return re.sub(r"[\W_]+", "", (v or "").casefold())
        return (norm(self.line1), norm(self.line2), norm(self.postcode), norm(self.city), norm(self.country))


def _plain(field_name: str, value: str | None, *, limit: int, required: bool = False) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise InvalidCustomer(field_name, "is required")
        return None
    if len(text) > limit:
        raise InvalidCustomer(field_name, f"longer than {limit} characters")
    if _CONTROL.search(text):
        raise InvalidCustomer(field_name, "holds control characters (line breaks, tabs, NUL)")
    return text


def normalise_tag(raw: str) -> str:
    """A tag in its stored form (lower case, trimmed). Raises ``InvalidCustomer``."""
    tag = raw.strip().lower().replace(" ", "-")
    if not TAG.match(tag):
        raise InvalidCustomer("tags", f"{raw.strip()!r} is not a tag (letters, digits, _.:+- ; at most 40)")
    return tag


def _split(value: str | None) -> list[str]:
    return [p.strip() for p in re.split(r"[;,]", value or "") if p.strip()]


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One valid import row. ``customer_id`` None: the importer makes one up."""

    line: int
    customer_id: str | None
    name: str
    phones: tuple[str, ...]
    language: str | None = None
    vip: bool = False
    tags: frozenset[str] = frozenset()
    address: Address | None = None
    note: str | None = None
    products: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int          # the CSV line (header = 1)
    reason: str        # 'phones: '0301234' is not a phone number (...)'

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def check_header(header: Iterable[str] | None) -> list[str]:
    """The header's column names, normalised. Raises ``BadImportFile`` for a missing
    header, an unknown or repeated column, or a required column missing."""
    if not header:
        raise BadImportFile("the file is empty (expected a header line: name,phones,...)")
    names = [(h or "").strip().lower() for h in header]
    for n in names:
        if n not in COLUMNS:
            raise BadImportFile(f"unknown column {n!r} (known: {', '.join(COLUMNS)})")
    seen = set()
    for n in names:
        if n in seen:
            raise BadImportFile(f"column {n!r} appears twice")
        seen.add(n)
    for n in REQUIRED:
        if n not in seen:
            raise BadImportFile(f"required column {n!r} is missing")
    return names


def validate_row(line: int, row: Mapping[str, str | None], *, country_code: str | None = None,
                 regions: frozenset[str] | None = None) -> CustomerRow:
    """One CSV row as a ``CustomerRow``. Raises ``InvalidCustomer`` naming the column."""
    if None in row:  # csv.DictReader puts surplus cells under the key None
        raise InvalidCustomer("row", "has more cells than the header has columns")
    cid = _plain("customer_id", row.get("customer_id"), limit=64)
    if cid is not None and not ID.match(cid):
        raise InvalidCustomer("customer_id", f"{cid!r} is not an id (letters, digits, _.:@+-)")
    name = _plain("name", row.get("name"), limit=200, required=True)
    raw_phones = _split(row.get("phones"))
    if not raw_phones:
        raise InvalidCustomer("phones", "at least one phone number is required")
    phones: list[str] = []
    for raw in raw_phones:
        number = normalise_e164(raw, country_code)
        if number is None:
            hint = "" if country_code or not raw.lstrip().startswith("0") or raw.lstrip().startswith("00") \
                else " (a national number needs --country)"
            raise InvalidCustomer("phones", f"{raw[:40]!r} is not a phone number{hint}")
        if number not in phones:
            phones.append(number)
    language = _plain("language", row.get("language"), limit=8)
    if language is not None and not LANGUAGE.match(language):
        raise InvalidCustomer("language", f"{language!r} is not a language code (en, fr, pt_BR)")
    vip_text = (row.get("vip") or "").strip().lower()
    if vip_text not in _TRUE | _FALSE:
        raise InvalidCustomer("vip", f"{vip_text[:20]!r} is not yes/no")
    tags = frozenset(normalise_tag(t) for t in _split(row.get("tags")))
    region = _plain("region", row.get("region"), limit=64)
    if region is not None:
        if not ID.match(region):
            raise InvalidCustomer("region", f"{region!r} is not a region name (letters, digits, _.:@+-)")
        if regions is not None and region not in regions:
            raise InvalidCustomer("region", f"unknown region {region!r} (known: {', '.join(sorted(regions))})")
    country = _plain("country", row.get("country"), limit=2)
    if country is not None:
        country = country.upper()
        if not COUNTRY.match(country):
            raise InvalidCustomer("country", f"{country!r} is not a two-letter country code")
    parts = dict(line1=_plain("address", row.get("address"), limit=200),
                 postcode=_plain("postcode", row.get("postcode"), limit=16),
                 city=_plain("city", row.get("city"), limit=100), country=country, region=region)
    address = Address(**parts) if any(parts.values()) else None
    note = _plain("note", row.get("note"), limit=2000)
    try:
        held = tuple(split_cell(row.get("products")))
    except InvalidProduct as exc:
        raise InvalidCustomer("products", str(exc)) from None
    return CustomerRow(line=line, customer_id=cid, name=name, phones=tuple(phones), language=language,
                       vip=vip_text in _TRUE, tags=tags, address=address, note=note, products=held)


def validate_rows(rows: Iterable[tuple[int, Mapping[str, str | None]]], *, country_code: str | None = None,
                  regions: frozenset[str] | None = None) -> tuple[list[CustomerRow], list[Rejected]]:
    """Every row checked alone, then against the rows before it in the file (a
    repeated customer id or phone number rejects the later row).

    Returns: the valid rows and the rejections, each in file order.
    """
    valid: list[CustomerRow] = []
    rejected: list[Rejected] = []
    ids: dict[str, int] = {}
    phones: dict[str, int] = {}
    for line, raw in rows:
        try:
            row = validate_row(line, raw, country_code=country_code, regions=regions)
        except InvalidCustomer as exc:
            rejected.append(Rejected(line, str(exc)))
            continue
        if row.customer_id is not None and row.customer_id in ids:
            rejected.append(Rejected(line, f"customer_id: {row.customer_id!r} already on line {ids[row.customer_id]}"))
            continue
        repeated = next((p for p in row.phones if p in phones), None)
        if repeated is not None:
            rejected.append(Rejected(line, f"phones: {repeated} already on line {phones[repeated]}"))
            continue
        if row.customer_id is not None:
            ids[row.customer_id] = line
        for p in row.phones:
            phones[p] = line
        valid.append(row)
    return valid, rejected


# -- merges -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    """What a merge needs to know of one customer (loaded under lock by the shell)."""

    customer_id: str
    name: str
    language: str | None
    vip: bool
    phones: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    addresses: tuple[tuple[int, Address, bool], ...] = ()   # (address_id, address, is_primary)


@dataclass(frozen=True, slots=True)
class MergePlan:
    """How ``from_id`` folds into ``into_id``; notes, calls and tickets always move whole."""

    into_id: str
    from_id: str
    name: str
    language: str | None
    vip: bool
    phones: tuple[str, ...]                  # move to into_id
    tags: frozenset[str]                     # add to into_id
    addresses_moved: tuple[int, ...]         # move to into_id (never as primary if into_id has one)
    addresses_dropped: tuple[int, ...]       # the same place as one into_id has
    demote_primary: bool                     # a moved address loses is_primary
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "language": self.language, "vip": self.vip, "phones": list(self.phones),
                "tags": sorted(self.tags), "addresses_moved": list(self.addresses_moved),
                "addresses_dropped": list(self.addresses_dropped), **self.extra}


def plan_merge(keep: CustomerSnapshot, duplicate: CustomerSnapshot) -> MergePlan:
    """Fold ``duplicate`` into ``keep``: keep's values win, the duplicate fills gaps;
    VIP if either is; tags are united; addresses move unless keep has the same place.

    Raises: ``MergeRefused`` when both are the same customer.
    """
    if keep.customer_id == duplicate.customer_id:
        raise MergeRefused(f"cannot merge customer {keep.customer_id!r} into itself")
    have = {a.key() for _, a, _ in keep.addresses}
    moved, dropped = [], []
    for address_id, address, _ in duplicate.addresses:
        (dropped if address.key() in have else moved).append(address_id)
        have.add(address.key())
    return MergePlan(
        into_id=keep.customer_id, from_id=duplicate.customer_id,
        name=keep.name or duplicate.name, language=keep.language or duplicate.language,
        vip=keep.vip or duplicate.vip, phones=tuple(p for p in duplicate.phones if p not in keep.phones),
        tags=frozenset(duplicate.tags - keep.tags), addresses_moved=tuple(moved), addresses_dropped=tuple(dropped),
        demote_primary=any(primary for _, _, primary in keep.addresses),
    )


def read_csv(text: str) -> list[tuple[int, dict[str, str | None]]]:
    """The rows of a CSV text as (line, {column: value}), header checked.
    Raises ``BadImportFile`` (no header, unknown column, broken quoting)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = check_header(next(reader, None))
        rows = []
        start = reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                row: dict[str, str | None] = dict(zip(header, cells))
                if len(cells) > len(header):
                    row[None] = ",".join(cells[len(header):])  # type: ignore[index]
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BadImportFile(f"line {reader.line_num}: {exc}") from None
    return rows
