"""Words agents' "Helped" marks taught the articles (kb/ranking.py: ``evidence_from``,
``learned_rank``, ``learned_pick``, ``learned_query``) and how they join the ranking."""
from __future__ import annotations

import math

import pytest

from kb.ranking import (
    NO_EVIDENCE,
    OpenTicket,
    LexemeCounts,
    Weights,
    evidence_from,
    learned_pick,
    learned_query,
    learned_rank,
    tickets_elsewhere,
)


def test_evidence_counts_marks_per_article_and_articles_per_lexeme():
    ev = evidence_from([(7, ["border", "stuck", "border"]), (7, ["border"]), (3, ["stuck"]), (9, [])])
    assert ev.by_article[7] == {"border": 2, "stuck": 1}
    assert ev.by_article[3] == {"stuck": 1}
    assert ev.postings == {"border": (7,), "stuck": (3, 7)}
    assert ev.total == 3                       # article 9 was marked, with no word it lacked


def test_a_word_taught_to_every_article_weighs_less_than_one_taught_to_one():
    ev = evidence_from([(1, ["pls", "border"]), (2, ["pls"]), (3, ["pls"])])
    assert ev.idf("border") > ev.idf("pls") > 0
    assert ev.idf("never") == math.log(1.0 + 3.5 / 0.5)


COUNTS = LexemeCounts(total=1000, ndoc={"late": 400, "deal": 2}, avg_length=20.0)


def test_learned_rank_weighs_the_taught_words_by_their_rarity_in_text_and_in_the_marks():
    ev = evidence_from([(1, ["border"]), (2, ["deal"]), (2, ["deal"]), (3, ["late"]), (3, ["card"]), (4, ["card"])])
    one = learned_rank(1, ["border"], ev, COUNTS)
    assert one == pytest.approx(COUNTS.idf("border") * ev.share("border"))
    # A word many articles' text holds counts less than one none holds.
    assert learned_rank(3, ["late"], ev, COUNTS) < one
    # Two marks count more than one, less than twice.
    two = learned_rank(2, ["deal"], ev, COUNTS)
    single = COUNTS.idf("deal") * ev.share("deal")
    assert single < two < 2 * single
    # A word taught to two articles counts less than one taught to one.
    assert learned_rank(4, ["card"], ev, COUNTS) < one
    # A word the article was not taught adds nothing; repeated words count once.
    assert learned_rank(1, ["deal"], ev, COUNTS) == 0.0
    assert learned_rank(1, ["border", "border"], ev, COUNTS) == one
    assert learned_rank(42, ["border"], ev, COUNTS) == 0.0
    assert learned_rank(1, ["border"], NO_EVIDENCE, COUNTS) == 0.0


def test_the_share_of_a_word_is_between_zero_and_one():
    ev = evidence_from([(1, ["pls", "border"]), (2, ["pls"]), (3, ["pls"])])
    assert 0 < ev.share("pls") < ev.share("border") < 1
    assert NO_EVIDENCE.share("pls") == 0.0


def test_learned_pick_orders_by_rank_then_id_and_stops_at_the_limit():
    ev = evidence_from([(5, ["border", "customs"]), (4, ["border"]), (6, ["border"]), (8, ["other"])])
    q = {"border": 1.0, "customs": 1.0}
    assert learned_pick(q, ev, COUNTS, 10) == [5, 4, 6]
    assert learned_pick(q, ev, COUNTS, 2) == [5, 4]
    assert learned_pick(q, ev, COUNTS, 0) == []
    assert learned_pick({}, ev, COUNTS, 3) == []
    assert learned_pick(q, NO_EVIDENCE, COUNTS, 3) == []
    # The input's weight orders them: a ticket's word (0.6) below a note's.
    ev2 = evidence_from([(1, ["border"]), (2, ["customs"])])
    assert learned_pick({"border": 0.6, "customs": 1.0}, ev2, COUNTS, 2) == [2, 1]


def test_learned_query_keeps_the_stronger_input_of_a_lexeme():
    w = Weights(notes=1.0, tickets=0.6)
    assert learned_query(["border", "late"], ["late", "parcel"], w) == {"border": 1.0, "late": 1.0, "parcel": 0.6}


def test_a_ticket_whose_type_the_links_never_put_with_the_route_is_elsewhere():
    billing = OpenTicket("billing_dispute", "price went up")
    tech = OpenTicket("mobile_fault", "no signal")
    unknown = OpenTicket("odd_type", "whatever")
    linked = {"billing_dispute": [("queue", "billing"), ("ivr", "billing_invoices")],
              "mobile_fault": [("queue", "tech"), ("ivr", "tech_mobile")]}
    route = [("queue", "tech"), ("ivr", "tech_email")]
    assert tickets_elsewhere([billing, tech, unknown], route, linked) == [billing]
    # A route no article is linked to says nothing: every ticket stays.
    assert tickets_elsewhere([billing, tech], [], linked) == []
    # The IVR leaf alone is enough to agree.
    assert tickets_elsewhere([billing], [("ivr", "billing_invoices")], linked) == []
