"""Synonyms learned from agents' marks (kb.learn): the call's words the helped article lacks and
the knowledge base lacks, paired with the article's rarest title word, proposed, never applied."""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from kb.learn import Evidence, Proposed, anchor, call_words, join_group, missing_words, proposals


def test_call_words_are_the_notes_and_ticket_titles_without_filler_or_numbers():
    assert call_words("en", "cust says parcel stuck at border 2nd time, 3 days", ["Customs hold #42"]) == [
        "parcel", "stuck", "at", "border", "time", "days", "customs", "hold"]
    assert call_words("fr", "client dit colis bloqué douane") == ["colis", "bloqué", "douane"]


def test_a_word_is_missing_when_none_of_its_lexemes_is_in_the_article():
    lexemes = {"parcel": ["parcel"], "border": ["border"], "at": [], "customs": ["custom"]}
    assert missing_words(lexemes, {"parcel", "custom", "charg"}) == ["border"]


def test_the_anchor_is_the_title_word_held_by_fewest_articles():
    title = {"customs": ["custom"], "charges": ["charg"], "and": [], "duty": ["duti"], "2024": ["2024"]}
    assert anchor(title, {"custom": 3, "charg": 40, "duti": 3}) == "customs"     # first of equals
    assert anchor({"and": []}, {}) is None


def test_pairs_are_proposed_from_calls_with_their_count():
    ev = [Evidence("c1", 7, ("border", "stuck")), Evidence("c2", 7, ("border",)), Evidence("c3", 9, ("border",))]
    got = proposals(ev, {7: "customs", 9: "duty"}, {"stuck": 4})
    assert got == [Proposed("border", "customs", 7, 2), Proposed("border", "duty", 9, 1)]


def test_words_other_articles_hold_are_not_a_gap_and_are_not_proposed():
    ev = [Evidence("c1", 7, ("stuck", "border"))]
    assert [p.word for p in proposals(ev, {7: "customs"}, {"stuck": 1})] == ["border"]
    assert [p.word for p in proposals(ev, {7: "customs"}, {"stuck": 1}, max_articles=1)] == ["border", "stuck"]


def test_decided_pairs_pairs_already_synonyms_and_thin_ones_are_not_proposed_again():
    ev = [Evidence("c1", 7, ("border", "frontier", "lorry")), Evidence("c1", 7, ("lorry",))]
    got = proposals(ev, {7: "customs"}, {}, decided={("border", "customs")}, groups=[{"customs", "frontier"}])
    assert [(p.word, p.calls) for p in got] == [("lorry", 1)]          # one call, said twice
    assert proposals(ev, {7: "customs"}, {}, min_calls=2) == []


def test_the_article_a_pair_stands_for_is_the_one_most_calls_led_to():
    ev = [Evidence("c1", 9, ("border",)), Evidence("c2", 7, ("border",)), Evidence("c3", 7, ("border",))]
    assert proposals(ev, {7: "customs", 9: "customs"}, {}) == [Proposed("border", "customs", 7, 3)]


def test_an_article_without_anchor_or_a_word_equal_to_it_proposes_nothing():
    assert proposals([Evidence("c1", 7, ("customs",)), Evidence("c2", 8, ("x",))], {7: "customs"}, {}) == []


def test_an_approved_pair_joins_the_group_of_its_anchor_or_a_new_one():
    groups = {"tax": ["customs", "duty"], "parcel": ["package", "parcel"]}
    assert join_group(groups, "border", "customs") == ("tax", ["border", "customs", "duty"])
    assert join_group(groups, "parcel", "lorry") == ("parcel", ["lorry", "package", "parcel"])
    assert join_group(groups, "border", "frontier") == ("frontier", ["border", "frontier"])
    assert join_group({"frontier": ["a", "b"]}, "border", "frontier") == ("learned-frontier", ["border", "frontier"])


words = st.text(alphabet="abcdefgh", min_size=1, max_size=4)


@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.integers(1, 3), st.lists(words, max_size=4)),
                max_size=12),
       st.dictionaries(st.integers(1, 3), words), st.dictionaries(words, st.integers(0, 3)))
def test_every_proposal_is_supported_by_its_calls_and_is_a_gap(raw, anchors, held):
    ev = [Evidence(c, a, tuple(ws)) for c, a, ws in raw]
    for p in proposals(ev, anchors, held):
        supporting = {e.call_id for e in ev if anchors.get(e.article_id) == p.anchor and p.word in e.words}
        assert p.calls == len(supporting) >= 1
        assert held.get(p.word, 0) == 0 and p.word != p.anchor


@given(st.text(max_size=200), st.lists(st.text(max_size=50), max_size=4))
def test_any_text_gives_at_most_32_distinct_plain_words(notes, titles):
    got = call_words("en", notes, titles)
    assert len(got) == len(set(got)) <= 32
    assert all(w == w.lower() and w.isalnum() and not w.isdigit() for w in got)


def test_the_proposals_routes_register_beside_the_kb_routes_for_kb_admins_only():
    from aiohttp import web

    from api.kb_routes import setup_kb_routes
    from api.registry import API

    app = web.Application()
    setup_kb_routes(app)
    roles = {(r.method, r.path): r.roles for r in app[API].routes}
    assert roles[("GET", "/api/kb/synonyms/proposals")] == {"supervisor", "admin"}
    assert roles[("POST", "/api/kb/synonyms/proposals/{proposal_id:[0-9]+}/decision")] == {"supervisor", "admin"}
    assert roles[("POST", "/api/kb/synonyms/proposals/{proposal_id:[0-9]+}/withdraw")] == {"supervisor", "admin"}
