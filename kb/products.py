"""Which products a customer holds, from what the center already knows (pure).

The suggestions lower articles about products the customer does not hold (``kb.ranking
.product_factor``); ``customer_products`` says which they hold. It is filled from:

==========  ================================================================  ========
source      what says the customer holds the product                          strength
==========  ================================================================  ========
crm         written by whatever feeds the CRM (every row before migration 0034)   4
import      the ``products`` column of ``cti customers import``                  4
tag         a customer tag ``product:NAME`` (``product:fibre``)                   3
ticket      a ticket (any state but cancelled) whose type or title names it       2
feedback    an article about it (one or two products) marked "Helped" on the      1
            customer's call
==========  ================================================================  ========

A product is one of the names articles are linked to (``kb_article_links`` of kind
``product``, "the known products"): a ticket "Fibre installation" names ``fibre`` when an
article is linked to ``fibre``; a name no article uses changes no suggestion. A stronger
source never gives way to a weaker one (``plan``); rows are added, never removed here (as the
import adds tags): a customer who gave a product up is the CRM's to correct.

No I/O: rows in, rows out (``kb.learn_store`` reads and writes them; tests/unit/test_kb_products.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Mapping

#: How much each source is believed (a stronger one replaces a weaker one, never the reverse).
STRENGTH = {"crm": 4, "import": 4, "tag": 3, "ticket": 2, "feedback": 1}
#: The tag prefix that names a product the customer holds.
TAG_PREFIX = "product:"
#: An article about more products than this says little about which one the caller holds.
FEEDBACK_MAX_PRODUCTS = 2
#: A product name as stored: lower case letters, digits and ``_.:@+-``, at most 64.
NAME = re.compile(r"^[a-z0-9][a-z0-9_.:@+-]{0,63}$")

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class InvalidProduct(ValueError):
    """A product name that cannot be stored (``normalise``)."""


@dataclass(frozen=True, slots=True)
class Found:
    """A product a customer holds, where it was learned, and since when (when known)."""

    product: str
    source: str
    since: date | None = None


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What a ticket says about products: its type, its title, its state and creation date."""

    type: str
    title: str
    state: str = "open"
    created: date | None = None


def normalise(raw: str) -> str:
    """A product name as stored: trimmed, lower case, spaces as ``-`` ("Solar Panels" ->
    ``solar-panels``). Raises ``InvalidProduct``."""
    name = re.sub(r"\s+", "-", raw.strip().lower())
    if not NAME.match(name):
        raise InvalidProduct(f"{raw.strip()[:40]!r} is not a product name (letters, digits, _.:@+- ; at most 64)")
    return name


def split_cell(cell: str | None) -> list[str]:
    """The products of an import cell, separated by ``;`` or ``,``, each normalised, each once.
    Raises ``InvalidProduct`` on the first bad one (the row is rejected, as a bad tag rejects it)."""
    out: dict[str, None] = {}
    for part in re.split(r"[;,]", cell or ""):
        if part.strip():
            out[normalise(part)] = None
    return list(out)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def mentioned(text: str, known: Iterable[str]) -> list[str]:
    """The known products ``text`` names: those whose words (``solar-panels``: solar, panels)
    come one after the other among its words, case aside. Sorted; each once. Whole words only:
    "tv" is not in "tvs", "fibre" is in "fibre_install" (ids' ``_`` separate words)."""
    words = _words(text)
    joined = f" {' '.join(words)} "
    found = set()
    for product in known:
        parts = _words(product)
        if parts and f" {' '.join(parts)} " in joined:
            found.add(product)
    return sorted(found)


def from_tickets(tickets: Iterable[TicketFacts], known: Iterable[str]) -> list[Found]:
    """The products the customer's tickets name (type or title), a cancelled ticket aside
    (an installation cancelled says they do not have it). ``since``: the earliest naming
    ticket's creation date."""
    known = list(known)
    dates: dict[str, list[date]] = {}
    for t in tickets:
        if t.state == "cancelled":
            continue
        for p in mentioned(f"{t.type} {t.title}", known):
            dates.setdefault(p, []).extend([t.created] if t.created else [])
    return [Found(p, "ticket", min(dates[p], default=None)) for p in sorted(dates)]


def from_tags(tags: Iterable[str]) -> list[Found]:
    """The products named by ``product:NAME`` tags (those that make a valid name)."""
    out: dict[str, None] = {}
    for tag in tags:
        if tag.startswith(TAG_PREFIX):
            try:
                out[normalise(tag[len(TAG_PREFIX):])] = None
            except InvalidProduct:
                continue
    return [Found(p, "tag") for p in out]


def from_helped(article_products: Iterable[str], on: date | None = None) -> list[Found]:
    """The products a "Helped" mark on an article says the caller holds: the article's own,
    when it is about one or two (``FEEDBACK_MAX_PRODUCTS``); none for an article about many
    products, or about none."""
    about = sorted(set(article_products))
    if not 1 <= len(about) <= FEEDBACK_MAX_PRODUCTS:
        return []
    return [Found(p, "feedback", on) for p in about]


def plan(existing: Mapping[str, str], found: Iterable[Found]) -> list[Found]:
    """What to write: each found product the customer does not have yet, or has from a weaker
    source (``STRENGTH``); the strongest finding of each product once. ``existing``: product ->
    its source now. Raises ``ValueError`` for an unknown source."""
    best: dict[str, Found] = {}
    for f in found:
        if f.source not in STRENGTH:
            raise ValueError(f"unknown product source {f.source!r} (known: {', '.join(STRENGTH)})")
        cur = best.get(f.product)
        if cur is None or STRENGTH[f.source] > STRENGTH[cur.source]:
            best[f.product] = f
    return [f for p, f in sorted(best.items())
            if p not in existing or STRENGTH[f.source] > STRENGTH.get(existing[p], 0)]
