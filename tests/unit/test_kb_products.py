"""The customers' products from the center's own data (kb.products): tickets, tags, the import's
column, "Helped" marks; a weaker source never replaces a stronger one."""
from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given

from crm.customer_model import InvalidCustomer, read_csv, validate_row, validate_rows
from kb.products import (
    NAME, STRENGTH, Found, InvalidProduct, TicketFacts, from_helped, from_tags, from_tickets, mentioned, normalise,
    plan, split_cell,
)

KNOWN = ["fibre", "solar-panels", "tv", "tv-box-4k", "mobile"]


def test_a_name_is_stored_lower_case_with_dashes_for_spaces():
    assert normalise("  Solar Panels ") == "solar-panels"
    assert normalise("TV-Box_4K") == "tv-box_4k"


@pytest.mark.parametrize("bad", ["", "  ", "-fibre", "fibre/pro", "x" * 65, "fibre\x00"])
def test_a_bad_name_is_refused_naming_it(bad):
    with pytest.raises(InvalidProduct, match="not a product name"):
        normalise(bad)


def test_an_import_cell_splits_on_semicolons_and_commas_each_once():
    assert split_cell("Fibre; TV box 4k, fibre,,") == ["fibre", "tv-box-4k"]
    assert split_cell(None) == [] and split_cell(" ") == []


def test_a_ticket_names_a_product_by_whole_words_in_its_type_or_title():
    assert mentioned("fibre_install", KNOWN) == ["fibre"]
    assert mentioned("Order SOLAR panels for the roof", KNOWN) == ["solar-panels"]
    assert mentioned("TV box 4K shows no picture", KNOWN) == ["tv", "tv-box-4k"]
    assert mentioned("two TVs and a panel", KNOWN) == []          # whole words only, in order
    assert mentioned("panels solar", KNOWN) == []


def test_tickets_give_their_products_since_the_earliest_but_not_a_cancelled_one():
    got = from_tickets([TicketFacts("repair", "Fibre down", "closed", date(2026, 3, 1)),
                        TicketFacts("installation", "fibre", "open", date(2025, 1, 9)),
                        TicketFacts("installation", "Solar panels", "cancelled", date(2026, 1, 1)),
                        TicketFacts("repair", "mobile no signal", "open", None)], KNOWN)
    assert got == [Found("fibre", "ticket", date(2025, 1, 9)), Found("mobile", "ticket", None)]


def test_product_tags_name_products_and_others_are_ignored():
    assert from_tags(["vip", "product:Fibre", "product:", "product:tv box", "lang:fr"]) == [
        Found("fibre", "tag"), Found("tv-box", "tag")]


def test_a_helped_article_about_one_or_two_products_says_the_caller_holds_them():
    assert from_helped(["tv", "fibre", "tv"], date(2026, 12, 7)) == [
        Found("fibre", "feedback", date(2026, 12, 7)), Found("tv", "feedback", date(2026, 12, 7))]
    assert from_helped([]) == []
    assert from_helped(["tv", "fibre", "mobile"]) == []         # about many: says nothing of which


def test_plan_adds_new_products_and_upgrades_weaker_sources_only():
    existing = {"fibre": "crm", "tv": "feedback", "mobile": "ticket"}
    found = [Found("fibre", "ticket"), Found("tv", "tag"), Found("mobile", "feedback"), Found("solar-panels", "feedback"),
             Found("solar-panels", "ticket")]
    assert plan(existing, found) == [Found("solar-panels", "ticket"), Found("tv", "tag")]


def test_plan_refuses_an_unknown_source():
    with pytest.raises(ValueError, match="unknown product source 'guess'"):
        plan({}, [Found("tv", "guess")])


def test_the_sources_match_the_migrations_check():
    sql = (Path(__file__).resolve().parents[2] / "cti" / "migrations" / "0034_kb_learning.sql").read_text()
    assert "CHECK (source IN ('crm', 'import', 'tag', 'ticket', 'feedback'))" in sql
    assert set(STRENGTH) == {"crm", "import", "tag", "ticket", "feedback"}


@given(st.lists(st.sampled_from(sorted(STRENGTH)), max_size=6), st.lists(st.sampled_from(sorted(STRENGTH)), max_size=6))
def test_plan_never_weakens_what_is_known(old, new):
    existing = {f"p{i}": s for i, s in enumerate(old)}
    for f in plan(existing, [Found(f"p{i}", s) for i, s in enumerate(new)]):
        assert STRENGTH[f.source] > STRENGTH.get(existing.get(f.product, ""), 0)


@given(st.text(max_size=80))
def test_any_cell_gives_valid_names_or_a_clear_refusal(cell):
    try:
        names = split_cell(cell)
    except InvalidProduct as exc:
        assert "not a product name" in str(exc)
        return
    assert all(NAME.match(n) for n in names) and len(names) == len(set(names))


@given(st.text(max_size=60), st.lists(st.text(min_size=1, max_size=20), max_size=5))
def test_mentioned_only_names_known_products(text, known):
    assert set(mentioned(text, known)) <= set(known)


# -- the customers import's column ---------------------------------------------------------------


def test_the_import_reads_a_products_column():
    rows = read_csv("name,phones,products\nAnn,+4930111,\"Fibre; TV\"\nBob,+4930222,\n")
    valid, rejected = validate_rows(rows)
    assert rejected == [] and [r.products for r in valid] == [("fibre", "tv"), ()]


def test_a_bad_product_rejects_the_row_naming_the_column():
    with pytest.raises(InvalidCustomer) as exc:
        validate_row(3, {"name": "Ann", "phones": "+4930111", "products": "fibre; tv/box"})
    assert exc.value.field == "products" and "'tv/box' is not a product name" in str(exc.value)


def test_the_pure_modules_do_no_io():
    root = Path(__file__).resolve().parents[2] / "kb"
    for name in ("products", "learn"):
        tree = ast.parse((root / f"{name}.py").read_text())
        mods = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
               [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in mods if m and m.split(".")[0] in ("asyncio", "asyncpg", "aiohttp", "time", "os")], name


def test_the_cti_command_has_kb_fill_products():
    from server.cli import _parser

    args = _parser().parse_args(["kb", "fill-products", "--customer", "C1", "--customer", "C2"])
    assert (args.command, args.kb_command, args.customer) == ("kb", "fill-products", ["C1", "C2"])
    assert _parser().parse_args(["kb", "fill-products"]).customer is None
