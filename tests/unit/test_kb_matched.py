"""What the candidates' query gives of each article's matched lexemes (``lexeme:letters:positions``)
and of the call's words (``lexeme:position``), as kb/store.py reads them for the ranking."""
from __future__ import annotations

from kb.store import _letters, _matched, _ordered, _positions


def test_matched_lexemes_split_into_letters_and_aligned_positions():
    got = _matched(["refund:AC:1,17", "a:b:C:4", "pdf:C:"])
    assert got == [("refund", "AC", "1,17"), ("a:b", "C", "4"), ("pdf", "C", "")]   # a colon in a lexeme stays
    assert _letters(got) == [("refund", "AC"), ("a:b", "C"), ("pdf", "C")]
    assert _positions(got) == {"refund": [(1, "A"), (17, "C")], "a:b": [(4, "C")], "pdf": []}


def test_the_call_words_keep_their_positions():
    assert _ordered(["money:1", "back:2", "x:y:9"]) == [("money", 1), ("back", 2), ("x:y", 9)]
    assert _ordered([]) == []
