"""The candidates' query of kb/queries.py is put together from constant pieces: every variant
is whole (no placeholder left, every parameter typed once where a variant may not use it)."""
from __future__ import annotations

import itertools
import re

import pytest

from kb.queries import PICKS, candidates

PLACEHOLDERS = ("MATCHED", "LINKED", "TITLED", "PICKQ", "TSPICK", "PICK", "TIE", "OTHER", "RANKW", "NORM")


@pytest.mark.parametrize("pick,links_first,common", list(itertools.product(PICKS, (False, True), (False, True))))
def test_every_variant_of_the_candidates_query_is_whole(pick, links_first, common):
    sql = candidates(pick, links_first, common)
    left = [p for p in PLACEHOLDERS if re.search(rf"\b{p}\b", sql)]
    assert not left, left
    # $1 to $28, each at least once (PostgreSQL must be able to type every parameter).
    assert {int(n) for n in re.findall(r"\$(\d+)", sql)} == set(range(1, 29))
    assert sql.count("(") == sql.count(")")


def test_the_rarity_pick_orders_by_rarity_and_links_first_by_their_worth():
    sql = candidates("idf", True, False)
    assert "unnest(q.px, q.pw)" in sql and "sum(t.w) AS lw" in sql and "hashint8(a.article_id)" in sql
    assert "unnest(q.px, q.pw)" not in candidates("ts", False, False)
