"""The knowledge base's ranking core (kb/ranking.py): queries from a call's inputs, link
boosts, smoothed feedback, and the combination."""
from __future__ import annotations

import pytest

from kb.ranking import (
    DEFAULT_WEIGHTS,
    CallContext,
    Candidate,
    LexemeCounts,
    OpenTicket,
    Targets,
    Weights,
    build_queries,
    coverage,
    feedback_factor,
    idf_rank,
    link_boost,
    pair_rank,
    pick_weights,
    precision_at,
    product_factor,
    query_pairs,
    rank,
    target_weights,
    targets,
    terms,
)


def test_terms_are_distinct_lower_words_without_operators_or_punctuation():
    assert terms("Card charged TWICE -- twice! or (refund) a & b'; DROP") == [
        "card", "charged", "twice", "refund", "drop"]


def test_terms_are_bounded():
    assert len(terms(" ".join(f"w{i}" for i in range(500)))) == 32


def test_each_input_makes_its_own_query_of_any_of_its_words():
    ctx = CallContext(queue="billing", skills=("refunds",), ivr_path=("main", "billing_refunds"),
                      ivr_labels=("Refunds",), tickets=(OpenTicket("delivery_issue", "Parcel lost"),),
                      notes="customer says the card was charged twice")
    q = build_queries(ctx)
    assert q["notes"] == "the or card or was or charged or twice"
    assert q["tickets"] == "delivery or parcel or lost"
    assert q["ivr"] == "refunds or main or billing"
    assert q["queue"] == "billing or refunds"


def test_agents_filler_words_are_dropped_from_notes_in_the_call_language():
    assert build_queries(CallContext(notes="cust calls about router pls check"))["notes"] == "router"
    fr = CallContext(language="fr", notes="client appelle pour colis abîmé")
    assert build_queries(fr)["notes"] == "colis or abîmé"


def test_an_empty_input_makes_an_empty_query():
    assert build_queries(CallContext()) == {"notes": "", "tickets": "", "ivr": "", "queue": ""}


def test_targets_hold_the_queue_skills_path_and_ticket_types_once_each():
    ctx = CallContext(queue="q1", skills=("s", "s"), ivr_path=("main", "b"),
                      tickets=(OpenTicket("t", "x"), OpenTicket("t", "y")))
    assert targets(ctx) == Targets(queues=("q1",), skills=("s",), ivr=("main", "b"), ticket_types=("t",))
    assert ("ivr", "b") in targets(ctx).pairs()


def test_feedback_is_neutral_without_marks_and_smoothed_within_its_reach():
    assert feedback_factor(0, 0) == 1.0
    one = feedback_factor(1, 0)
    many = feedback_factor(50, 0)
    assert 1.0 < one < many < 1.0 + DEFAULT_WEIGHTS.feedback
    assert 1.0 - DEFAULT_WEIGHTS.feedback < feedback_factor(0, 50) < feedback_factor(0, 1) < 1.0
    assert feedback_factor(10, 10) == pytest.approx(1.0)


def test_the_deepest_linked_ivr_node_counts_most():
    tg = Targets(ivr=("main", "billing", "refunds"))
    leaf = link_boost(frozenset({("ivr", "refunds")}), tg)["link_ivr"]
    mid = link_boost(frozenset({("ivr", "billing")}), tg)["link_ivr"]
    both = link_boost(frozenset({("ivr", "billing"), ("ivr", "refunds")}), tg)["link_ivr"]
    assert leaf == DEFAULT_WEIGHTS.link_ivr and mid == leaf / 2 and both == leaf


def test_links_to_other_targets_add_nothing():
    assert link_boost(frozenset({("queue", "sales"), ("ivr", "x")}), Targets(queues=("billing",))) == {}


def test_ranks_are_normalised_per_input_so_every_input_counts():
    """A strong notes match alone loses to an article that matches tickets, IVR and queue well."""
    a = Candidate(1, {"notes": 0.9})
    b = Candidate(2, {"notes": 0.5, "tickets": 0.01, "ivr": 0.02, "queue": 0.01})
    assert [s.article_id for s in rank([a, b], Targets())] == [2, 1]


def test_a_link_to_the_call_queue_breaks_a_text_tie():
    a = Candidate(1, {"notes": 0.4})
    b = Candidate(2, {"notes": 0.4}, links=frozenset({("queue", "billing")}))
    assert [s.article_id for s in rank([a, b], Targets(queues=("billing",)))] == [2, 1]


def test_feedback_moves_an_article_up_or_down():
    a = Candidate(1, {"notes": 0.40})
    b = Candidate(2, {"notes": 0.38}, helped=20)
    assert [s.article_id for s in rank([a, b], Targets())] == [2, 1]
    c = Candidate(3, {"notes": 0.40}, not_relevant=20)
    d = Candidate(4, {"notes": 0.38})
    assert [s.article_id for s in rank([c, d], Targets())] == [4, 3]


def test_candidates_with_nothing_for_this_call_are_left_out():
    assert rank([Candidate(1, {}), Candidate(2, {"notes": 0.0}, helped=9)], Targets()) == []


def test_at_most_limit_best_first_ties_to_the_older_article():
    cands = [Candidate(i, {"notes": 0.1}) for i in (5, 3, 9, 1)]
    assert [s.article_id for s in rank(cands, Targets(), limit=3)] == [1, 3, 5]


def test_the_parts_say_what_each_input_added():
    s = rank([Candidate(1, {"notes": 0.2, "ivr": 0.1}, links=frozenset({("queue", "q")}))],
             Targets(queues=("q",)), Weights(notes=1.0, ivr=0.5, link_queue=0.15))[0]
    assert s.parts == {"notes": 1.0, "ivr": 0.5, "link_queue": 0.15}
    assert s.score == pytest.approx(1.65)


def test_precision_at_3_counts_calls_whose_right_article_is_in_their_top_3():
    assert precision_at([[1, 2, 3], [4, 5, 6], [7, 8, 9, 10]], [3, 9, 10]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        precision_at([[1]], [])


def test_a_rare_word_counts_more_than_a_common_one_and_the_title_more_than_the_body():
    counts = LexemeCounts(10_000, {"bill": 4_000, "pdf": 3})
    assert counts.idf("pdf") > 5 * counts.idf("bill") > 0
    assert counts.idf("never-seen") > counts.idf("pdf")
    assert LexemeCounts(10, {"x": 99}).idf("x") > 0                # counts from a stale snapshot: never negative
    assert idf_rank([("pdf", "C")], 20, counts) > idf_rank([("bill", "A")], 20, counts)
    assert idf_rank([("pdf", "AC")], 20, counts) > idf_rank([("pdf", "C")], 20, counts)
    assert idf_rank([("pdf", "C")], 20, counts) > idf_rank([("pdf", "C")], 2_000, counts)   # long articles
    assert idf_rank([], 20, counts) == 0.0


def test_repeats_of_a_word_saturate_and_length_counts_against_the_mean():
    counts = LexemeCounts(10_000, {"pdf": 3}, avg_length=30.0)
    once, twice, many = (idf_rank([("pdf", "C" * n)], 30, counts) for n in (1, 2, 40))
    assert once < twice < many < once * (1.2 + 1.0) / 0.4 + 1e-9   # BM25's bound: idf * (k1 + 1)
    assert many - twice > 0 and (many - twice) < (twice - once) * 40  # saturating, not linear
    # An article as long as the mean ranks as the same article would among longer ones.
    assert idf_rank([("pdf", "C")], 30, counts) == pytest.approx(
        idf_rank([("pdf", "C")], 60, LexemeCounts(10_000, {"pdf": 3}, avg_length=60.0)))


def test_only_words_in_more_than_a_share_of_a_large_base_are_too_common_to_pick_candidates():
    big = LexemeCounts(10_000, {"bill": 4_000, "order": 301, "pdf": 3, "refund": 300})
    assert big.common() == ["bill", "order"]                           # over 3% of 10,000
    small = LexemeCounts(101, {"bill": 40, "pdf": 1})
    assert small.common() == []                                        # a small base: none (floor)


def test_an_article_about_other_products_only_counts_less_when_the_customer_products_are_known():
    tg = Targets(products=("tv", "mobile"))
    other = frozenset({("product", "solar-panels")})
    assert product_factor(other, tg) == DEFAULT_WEIGHTS.other_product < 1.0
    assert product_factor(other | {("product", "tv")}, tg) == 1.0        # about one they hold too
    assert product_factor(frozenset({("queue", "billing")}), tg) == 1.0  # about no product
    assert product_factor(other, Targets()) == 1.0                       # products not known


def test_rank_lowers_an_article_about_a_product_the_customer_does_not_hold():
    tg = Targets(products=("tv",))
    cands = [Candidate(1, {"notes": 1.0}, frozenset({("product", "solar-panels")})),
             Candidate(2, {"notes": 0.8}, frozenset())]
    best = rank(cands, tg)
    assert [s.article_id for s in best] == [2, 1]
    assert best[1].parts["other_product_factor"] == DEFAULT_WEIGHTS.other_product
    assert [s.article_id for s in rank(cands, Targets())] == [1, 2]


def test_a_product_link_lifts_only_when_its_weight_says_so():
    tg = Targets(products=("tv",))
    links = frozenset({("product", "tv")})
    assert "link_product" not in link_boost(links, tg)                  # 0 by default
    assert link_boost(links, tg, Weights(link_product=0.2))["link_product"] == 0.2


def test_targets_carry_the_customer_products_but_do_not_pick_by_them():
    tg = targets(CallContext(products=("tv", "tv", "mobile")))
    assert tg.products == ("tv", "mobile") and tg.pairs() == []


def test_target_weights_follow_the_pairs_and_the_link_boosts():
    tg = Targets(queues=("billing",), skills=("refunds",), ivr=("main", "billing", "billing_refunds"),
                 ticket_types=("billing_dispute",))
    w = DEFAULT_WEIGHTS
    assert len(target_weights(tg)) == len(tg.pairs())
    assert target_weights(tg) == [w.link_queue, w.link_skill, w.link_ivr / 4, w.link_ivr / 2, w.link_ivr,
                                  w.link_ticket_type]


def test_pick_weights_are_rarity_times_the_input_weight_and_synonyms_count_less():
    counts = LexemeCounts(1000, {"bill": 900, "pdf": 2, "invoic": 20})
    got = pick_weights(["bill", "pdf"], ["pdf"], ["invoic"], counts)
    assert got["pdf"] == pytest.approx(DEFAULT_WEIGHTS.notes * counts.idf("pdf"))      # the best input's
    assert got["invoic"] == pytest.approx(DEFAULT_WEIGHTS.notes * DEFAULT_WEIGHTS.synonym * counts.idf("invoic"))
    assert 0 < got["bill"] < got["pdf"]
    assert counts.is_common("bill") and not counts.is_common("invoic")  # too common to pick, still weighed


def test_field_weights_and_bm25_parameters_come_from_the_weights():
    counts = LexemeCounts(10_000, {"pdf": 3}, avg_length=30.0)
    w = Weights(field_title=2.0, field_body=0.2)
    assert w.fields()["A"] == 2.0 and w.fields()["C"] == 0.2
    assert idf_rank([("pdf", "A")], 30, counts, fields=w.fields()) > idf_rank([("pdf", "A")], 30, counts)
    # b 0: the length does not count at all; b 1: fully.
    assert idf_rank([("pdf", "C")], 300, counts, b=0.0) == pytest.approx(idf_rank([("pdf", "C")], 30, counts, b=0.0))
    assert idf_rank([("pdf", "C")], 300, counts, b=1.0) < idf_rank([("pdf", "C")], 300, counts, b=0.3)


def test_query_pairs_are_neighbouring_lexemes_allowing_one_stop_word_between():
    # "money back" (1, 2), "card through door" (card 4, door 6: "through" is a stop word), "late" far away.
    got = query_pairs([("back", 2), ("money", 1), ("card", 4), ("door", 6), ("late", 10)])
    assert got == [("money", "back"), ("back", "card"), ("card", "door")]
    assert query_pairs([("refund", 1), ("refund", 2)]) == []            # a word with itself is no pair
    assert query_pairs([]) == []


def test_a_pair_found_together_counts_once_by_its_best_field_and_apart_not_at_all():
    counts = LexemeCounts(1_000, {"money": 10, "back": 100})
    together = {"money": [(1, "A"), (20, "C")], "back": [(2, "A"), (21, "C")]}
    apart = {"money": [(1, "A")], "back": [(9, "C")]}
    mean_idf = (counts.idf("money") + counts.idf("back")) / 2
    assert pair_rank([("money", "back")], together, counts) == pytest.approx(1.0 * mean_idf)
    assert pair_rank([("money", "back")], {"money": [(21, "C")], "back": [(20, "C")]}, counts) == pytest.approx(
        0.4 * mean_idf)                                                   # either order, the body's weight
    assert pair_rank([("money", "back")], apart, counts) == 0.0
    assert pair_rank([("money", "back")], {"money": [(1, "A")]}, counts) == 0.0


def test_coverage_is_the_share_of_the_query_rarity_an_article_holds():
    counts = LexemeCounts(1_000, {"pdf": 1, "bill": 500})
    assert coverage(["pdf", "bill"], ["pdf", "bill"], counts) == pytest.approx(1.0)
    assert coverage([], ["pdf"], counts) == 0.0 and coverage(["pdf"], [], counts) == 0.0
    assert 0.5 < coverage(["pdf"], ["pdf", "bill"], counts) < 1.0 and coverage(["bill"], ["pdf", "bill"], counts) < 0.5
    assert coverage(["pdf", "other"], ["pdf", "bill"], counts) == coverage(["pdf"], ["pdf", "bill"], counts)
