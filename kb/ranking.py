"""Which articles to suggest for a call: the queries to ask and how their answers combine (pure).

A call says several things about what the caller needs, each weak alone:

- the IVR path: the menu nodes the caller went through and the labels of their choices
  ("billing" > "refunds");
- the queue (and the skills) it waits in;
- the customer's open tickets: their types and titles;
- the agent's notes so far (the strongest words, when there are any), widened with their
  synonyms (``kb_synonyms``, counted ``Weights.synonym`` of the words used);
- the customer's products: an article about other products only counts less
  (``product_factor``).
- optionally, the words earlier calls' "Helped" marks taught an article (``learned_rank``,
  words no article's text holds, counted as a field of that article).

``build_queries`` turns each input into one full-text query (the words of that input, any
of them: ``websearch_to_tsquery`` syntax, ``a or b or c``), and ``targets`` into the link
targets an article may be tied to. The store asks PostgreSQL for candidates (articles that
match any query or are linked to a target), each with its text rank per input, and
``rank`` orders them:

    score = (sum over inputs of weight * rank / best rank of that input among the candidates
             + link boosts) * feedback factor * products factor

Ranks are normalised per input so that a long query (notes) does not drown a short one
(a queue name). The notes and tickets rank by the rarity of the words an article holds
(``idf_rank``: BM25's inverse document frequency, field weights, divided by the article's
length, or long articles win on word count alone); the IVR and queue words by ``ts_rank``. The feedback factor smooths the helped and
not-relevant counts towards neutral (``feedback_factor``) so one mark moves little and
many marks move more, within ``[1 - f, 1 + f]``.

No I/O: inputs in, queries and orderings out (tests/unit/test_kb_ranking.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

# The inputs, in the order their ranks come back from the store.
INPUTS = ("notes", "tickets", "ivr", "queue")

#: At most this many distinct words per input go into its query (bounds the search's cost).
MAX_TERMS = 32
#: At most this many candidates are re-ranked here (the store orders them by a first score).
MAX_CANDIDATES = 60

_WORD = re.compile(r"[^\W_]{2,40}", re.UNICODE)
# Words that are operators in websearch_to_tsquery syntax; stop words are PostgreSQL's business.
_OPERATORS = frozenset({"or", "and", "not"})
# What agents write around the words that matter ("cust calls about ..., pls check"): in a
# contact center every article is about a customer calling, so these words say nothing about
# which one fits, and match articles that happen to use them ("Call forwarding"). Dropped from
# the notes and ticket titles; PostgreSQL drops the language's ordinary stop words itself.
NOTE_FILLER = {
    "en": frozenset("""cust customer customers cx caller called calls call calling says said asks asked asking
        wants wanted know about re pls please check checked urgent again 2nd second happy unhappy
        yesterday today since also then help issue problem query""".split()),
    "fr": frozenset("""client cliente clients appelle appel appels dit demande demandes veut savoir pour
        urgent encore depuis hier aujourd content contente aussi problème souci""".split()),
}


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each input and each kind of link counts (docs/knowledge.md, "Ranking")."""

    notes: float = 1.0
    tickets: float = 0.6
    ivr: float = 0.5
    queue: float = 0.25
    link_queue: float = 0.15
    link_skill: float = 0.1
    link_ivr: float = 0.35          # for the deepest node of the path; its ancestors count less
    link_ticket_type: float = 0.3
    feedback: float = 0.3           # the factor's reach: within [1 - feedback, 1 + feedback]
    feedback_prior: float = 2.0     # pseudo-marks (half helped, half not) that smooth the counts
    # The article is about a product the customer holds: nothing by default. Holding a product
    # says an article applies, not that it answers this call; 0.2 and 0.1 did worse on the
    # tuning half among 10,000 articles (bench/kb_suggest.py, BENCHMARKS.md).
    link_product: float = 0.0
    other_product: float = 0.5      # factor: it is about products only, none of which the customer holds
    synonym: float = 0.5            # a synonym's word counts this much of the word the call used
    # BM25 over the fields (``idf_rank``): saturation of repeated words, pull of the length
    # against the mean (0: none, 1: proportional), and the weight of each field.
    bm25_k1: float = 1.2
    bm25_b: float = 0.3             # 0.4 and 0.5 took 2 more tuning calls of 120: noise (BENCHMARKS.md)
    field_title: float = 1.0
    field_tags: float = 0.6
    field_body: float = 0.4
    # Two words of the call next to each other (at most one stop word between) found next to
    # each other in the article ("money back", "log in"): their mean rarity times this, by the
    # field holding them, added to the input's rank (``pair_rank``). 0: words only.
    pairs: float = 0.0
    # Coordination: an input's rank times the share of its words' rarity the article holds, to
    # this power (``coverage``): an article holding most of what the agent wrote beats one
    # holding one rare word of it. 0: off.
    coverage: float = 0.0
    # The words of earlier calls where agents marked the article "Helped" and that the article
    # does not hold (``kb_call_words``), matched by this call's notes and tickets, as a field
    # of the article weighing this much (``learned_rank``; title 1.0, body 0.4): the caller's
    # "border" on the customs article. 0: not used.
    learned: float = 0.5
    # A taught word counts only when at most this share of the articles' text holds it (1.0:
    # any; 0.0: only the words no article holds, the knowledge base's gaps). Chosen on the
    # tuning half, marks on the calls 0 mod 4, checked on the calls 2 mod 4: any word (1.0)
    # took those from 0.783 to 0.767 (0.5) or 0.733 (1.0); gaps only kept 0.783 (BENCHMARKS.md).
    learned_max_share: float = 0.0
    # The share of the candidates (``MAX_CANDIDATES``) picked among the articles whose title
    # holds one of the call's words too common to pick by themselves (``LexemeCounts.common``).
    # 0: none. Off: with ``ticket_route`` it took the tuning half from 0.775 to 0.808 and left
    # the checking half at 0.650 (BENCHMARKS.md).
    title_pick: float = 0.0
    # An open ticket whose type the knowledge base's links never put with the call's route
    # (``tickets_elsewhere``) is left out when this is on (1): a customer's older ticket about
    # something else. 0: every open ticket counts. Off, as ``title_pick``.
    ticket_route: float = 0.0

    def of_input(self, name: str) -> float:
        return float(getattr(self, name))

    def fields(self) -> dict[str, float]:
        """The weight of each field letter of ``kb_articles.search`` (title A, tags B, body C)."""
        return {"A": self.field_title, "B": self.field_tags, "C": self.field_body, "D": 0.1 * self.field_body}


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True, slots=True)
class OpenTicket:
    type: str
    title: str


@dataclass(frozen=True, slots=True)
class CallContext:
    """What is known about a call when suggestions are asked for."""

    language: str = "en"
    queue: str | None = None
    skills: tuple[str, ...] = ()
    ivr_path: tuple[str, ...] = ()          # menu node ids, root first
    ivr_labels: tuple[str, ...] = ()        # the words of the choices made (prompt labels)
    tickets: tuple[OpenTicket, ...] = ()
    notes: str = ""
    products: tuple[str, ...] = ()          # what the customer holds (empty: not known)


@dataclass(frozen=True, slots=True)
class Targets:
    """The link targets of a call: an article linked to one of them gets a boost."""

    queues: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    ivr: tuple[str, ...] = ()               # the path, root first (the deepest counts most)
    ticket_types: tuple[str, ...] = ()
    products: tuple[str, ...] = ()          # the customer's products (not used to pick candidates)

    def pairs(self) -> list[tuple[str, str]]:
        """(kind, target) of every target, as ``kb_article_links`` holds them."""
        return ([("queue", q) for q in self.queues] + [("skill", s) for s in self.skills]
                + [("ivr", n) for n in self.ivr] + [("ticket_type", t) for t in self.ticket_types])


@dataclass(frozen=True, slots=True)
class Candidate:
    """An article the store found, with what the ranking needs of it."""

    article_id: int
    ranks: Mapping[str, float]                          # input name -> ts_rank (0 when no match)
    links: frozenset[tuple[str, str]] = frozenset()     # its (kind, target) links
    helped: int = 0
    not_relevant: int = 0


@dataclass(frozen=True, slots=True)
class Scored:
    article_id: int
    score: float
    parts: dict[str, float] = field(default_factory=dict)   # what each input and boost added


def terms(text: str, limit: int = MAX_TERMS, drop: frozenset[str] = frozenset()) -> list[str]:
    """The distinct words of ``text``, lower case, in order of first use, at most ``limit``,
    without those in ``drop``.

    A word is two to forty letters or digits; punctuation, query operators and symbols go.
    """
    seen: dict[str, None] = {}
    for m in _WORD.finditer(text.lower()):
        word = m.group(0)
        if word not in _OPERATORS and word not in drop and word not in seen:
            seen[word] = None
            if len(seen) >= limit:
                break
    return list(seen)


def any_of(words: Iterable[str]) -> str:
    """A ``websearch_to_tsquery`` text matching any of ``words`` ('' when none)."""
    return " or ".join(words)


def _id_words(identifier: str) -> str:
    # Node, queue and skill ids are written billing_refunds, tech-support, Billing.Refunds.
    return re.sub(r"[_.:+@-]+", " ", identifier)


def build_queries(ctx: CallContext) -> dict[str, str]:
    """One query per input (``INPUTS``): the words it holds, any of them; '' for an empty input."""
    ticket_text = " ".join(f"{_id_words(t.type)} {t.title}" for t in ctx.tickets)
    ivr_text = " ".join([*ctx.ivr_labels, *(_id_words(n) for n in ctx.ivr_path)])
    queue_text = " ".join(_id_words(x) for x in ([ctx.queue] if ctx.queue else []) + list(ctx.skills))
    filler = NOTE_FILLER.get(ctx.language, frozenset())
    return {
        "notes": any_of(terms(ctx.notes, drop=filler)),
        "tickets": any_of(terms(ticket_text, drop=filler)),
        "ivr": any_of(terms(ivr_text)),
        "queue": any_of(terms(queue_text)),
    }


def targets(ctx: CallContext) -> Targets:
    return Targets(queues=(ctx.queue,) if ctx.queue else (), skills=tuple(dict.fromkeys(ctx.skills)),
                   ivr=tuple(dict.fromkeys(ctx.ivr_path)),
                   ticket_types=tuple(dict.fromkeys(t.type for t in ctx.tickets)),
                   products=tuple(dict.fromkeys(ctx.products)))


def tickets_elsewhere(tickets: Iterable[OpenTicket], route: Iterable[tuple[str, str]],
                      linked: Mapping[str, Iterable[tuple[str, str]]]) -> list[OpenTicket]:
    """The open tickets that look about something else than this call: their type is linked
    to articles (``linked``: each ticket type -> the other (kind, target) links of the
    articles linked to it), the call's route (``route``: those of its queue, skills and IVR
    nodes, as ``Targets.pairs`` gives them, that some article is linked to) is not empty, and
    no article of the ticket's type is linked to any of it. A type no article is linked to,
    or a route no article is linked to, says nothing: such tickets stay."""
    known = set(route)
    out = []
    for t in tickets:
        with_type = set(linked.get(t.type, ()))
        if with_type and known and known.isdisjoint(with_type):
            out.append(t)
    return out


def feedback_factor(helped: int, not_relevant: int, w: Weights = DEFAULT_WEIGHTS) -> float:
    """The multiplier feedback gives an article: 1.0 without marks, towards ``1 + w.feedback``
    when it helped every time, towards ``1 - w.feedback`` when it never did.

    The share of "helped" is smoothed with ``w.feedback_prior`` pseudo-marks split evenly,
    so one mark moves little and many marks move more.
    """
    helped, not_relevant = max(helped, 0), max(not_relevant, 0)
    prior = w.feedback_prior
    share = (helped + prior / 2) / (helped + not_relevant + prior) if helped + not_relevant + prior > 0 else 0.5
    return 1.0 + w.feedback * (2.0 * share - 1.0)


def link_boost(links: frozenset[tuple[str, str]], tg: Targets, w: Weights = DEFAULT_WEIGHTS) -> dict[str, float]:
    """What an article's links to this call's targets add, by kind (absent: adds nothing)."""
    out: dict[str, float] = {}
    if any(("queue", q) in links for q in tg.queues):
        out["link_queue"] = w.link_queue
    if any(("skill", s) in links for s in tg.skills):
        out["link_skill"] = w.link_skill
    # The deepest node of the path the article is linked to: the leaf counts fully, each step
    # towards the root half as much (the root menu says little).
    depth = len(tg.ivr)
    for i in range(depth - 1, -1, -1):
        if ("ivr", tg.ivr[i]) in links:
            out["link_ivr"] = w.link_ivr * 0.5 ** (depth - 1 - i)
            break
    if any(("ticket_type", t) in links for t in tg.ticket_types):
        out["link_ticket_type"] = w.link_ticket_type
    if w.link_product and any(("product", p) in links for p in tg.products):
        out["link_product"] = w.link_product
    return out


def target_weights(tg: Targets, w: Weights = DEFAULT_WEIGHTS) -> list[float]:
    """What a link to each of ``tg.pairs()`` is worth (as ``link_boost`` counts it), in the
    same order: the candidates linked to the call's targets are picked strongest first."""
    depth = len(tg.ivr)
    return ([w.link_queue] * len(tg.queues) + [w.link_skill] * len(tg.skills)
            + [w.link_ivr * 0.5 ** (depth - 1 - i) for i in range(depth)]
            + [w.link_ticket_type] * len(tg.ticket_types))


def product_factor(links: frozenset[tuple[str, str]], tg: Targets, w: Weights = DEFAULT_WEIGHTS) -> float:
    """``w.other_product`` for an article linked to products none of which the customer
    holds (when the customer's products are known), else 1.0: an article about no product
    in particular, or about one the customer has, is left alone. A factor, not a filter:
    a caller may well ask about a product they do not have yet."""
    if not tg.products:
        return 1.0
    about = {t for k, t in links if k == "product"}
    return w.other_product if about and about.isdisjoint(tg.products) else 1.0


def rank(candidates: Iterable[Candidate], tg: Targets, w: Weights = DEFAULT_WEIGHTS,
         limit: int = 3) -> list[Scored]:
    """The best ``limit`` candidates, best first; ties go to the lower (older) article id."""
    cands = list(candidates)
    best = {name: max((c.ranks.get(name, 0.0) for c in cands), default=0.0) for name in INPUTS}
    scored: list[Scored] = []
    for c in cands:
        parts: dict[str, float] = {}
        for name in INPUTS:
            r = c.ranks.get(name, 0.0)
            if r > 0 and best[name] > 0:
                parts[name] = w.of_input(name) * r / best[name]
        parts.update(link_boost(c.links, tg, w))
        base = sum(parts.values())
        if base <= 0:
            continue
        factor = feedback_factor(c.helped, c.not_relevant, w)
        if factor != 1.0:
            parts["feedback_factor"] = factor
        other = product_factor(c.links, tg, w)
        if other != 1.0:
            parts["other_product_factor"] = other
            factor *= other
        scored.append(Scored(c.article_id, base * factor, parts))
    scored.sort(key=lambda s: (-s.score, s.article_id))
    return scored[:limit]


# -- rarity: inverse document frequency -------------------------------------------------------------

#: The weight of the best field that holds a word: title A, tags B, body C (as the store's ts_rank).
FIELD_WEIGHTS = {"A": 1.0, "B": 0.6, "C": 0.4, "D": 0.1}
#: The inputs whose rank counts rare words more (``idf_rank``); the IVR and queue words are few
#: and common by nature, and keep ``ts_rank``.
IDF_INPUTS = ("notes", "tickets")


#: BM25's saturation of repeated words (k1) and pull of the article's length (b): chosen on the
#: even-numbered calls of the labelled set among 10,000 articles, checked on the odd ones
#: (bench/kb_suggest.py, BENCHMARKS.md).
BM25_K1 = 1.2
BM25_B = 0.3
#: A lexeme held by more than this share of the articles (and more than ``COMMON_FLOOR`` of
#: them) picks no candidates by itself: "bill" would pick thousands, among which the right one
#: is lost before it is ranked. It still counts in the ranking of those picked otherwise.
COMMON_SHARE = 0.03
COMMON_FLOOR = 50


@dataclass(frozen=True, slots=True)
class LexemeCounts:
    """How many articles of a language there are, how many hold each lexeme (``ts_stat``),
    and their mean length in lexemes."""

    total: int
    ndoc: Mapping[str, int]
    avg_length: float = 20.0

    def idf(self, lexeme: str) -> float:
        """BM25's inverse document frequency: near 0 for a lexeme in every article, high for a
        rare one (never negative)."""
        n = min(max(self.ndoc.get(lexeme, 0), 0), self.total)
        return math.log(1.0 + (self.total - n + 0.5) / (n + 0.5))

    def is_common(self, lexeme: str, share: float = COMMON_SHARE, floor: int = COMMON_FLOOR) -> bool:
        """Whether the lexeme is too common to pick candidates (``common``)."""
        return self.ndoc.get(lexeme, 0) > max(share * self.total, floor)

    def common(self, share: float = COMMON_SHARE, floor: int = COMMON_FLOOR) -> list[str]:
        """The lexemes too common to pick candidates (sorted)."""
        limit = max(share * self.total, floor)
        return sorted(w for w, n in self.ndoc.items() if n > limit)


def idf_rank(matched: Iterable[tuple[str, str]], length: int, counts: LexemeCounts,
             k1: float = BM25_K1, b: float = BM25_B, fields: Mapping[str, float] | None = None) -> float:
    """An article's rank for one input, BM25 over its fields: for each of the query's lexemes
    it holds (``matched``: the lexeme and the field letter of each occurrence, as PostgreSQL
    gives them, e.g. ``("refund", "AC")``: once in the title, once in the body), the word's
    rarity times its occurrences weighed by field (``FIELD_WEIGHTS``), saturated by ``k1``
    and scaled by the article's length against the mean (``b``).

    ``ts_rank`` weighs a match on "bill" (in thousands of articles) like one on "pdf" (in
    one), and a long article wins on word count; this does neither (bench/kb_suggest.py)."""
    fw = FIELD_WEIGHTS if fields is None else fields
    norm = k1 * (1.0 - b + b * max(length, 0) / max(counts.avg_length, 1.0))
    total = 0.0
    for lexeme, letters in matched:
        tf = sum(fw.get(x, 0.0) for x in letters)
        if tf > 0:
            total += counts.idf(lexeme) * tf * (k1 + 1.0) / (tf + norm)
    return total


def query_pairs(ordered: Iterable[tuple[str, int]], gap: int = 2) -> list[tuple[str, str]]:
    """The pairs of distinct lexemes next to each other in the call's text (``ordered``: each
    lexeme with its position, as ``to_tsvector`` numbers them; ``gap`` 2 lets one stop word sit
    between: "card through door"), each once, in order of first use."""
    seq = sorted(ordered, key=lambda x: x[1])
    out: dict[tuple[str, str], None] = {}
    for (a, pa), (b, pb) in zip(seq, seq[1:]):
        if a != b and 0 < pb - pa <= gap:
            out[(a, b)] = None
    return list(out)


def pair_rank(pairs: Iterable[tuple[str, str]], positions: Mapping[str, Iterable[tuple[int, str]]],
              counts: LexemeCounts, fields: Mapping[str, float] | None = None, gap: int = 2) -> float:
    """What the call's pairs of words (``query_pairs``) found together in an article add: for
    each pair whose two lexemes stand at most ``gap`` apart in the article, in either order
    (``positions``: each lexeme's (position, field letter) occurrences), their mean rarity
    times the weight of the best field holding them together. Each pair counts once: a pair
    is evidence of the topic, not of length."""
    fw = FIELD_WEIGHTS if fields is None else fields
    total = 0.0
    for a, b in pairs:
        pa, pb = list(positions.get(a, ())), list(positions.get(b, ()))
        best = max((min(fw.get(fa, 0.0), fw.get(fb, 0.0)) for xa, fa in pa for xb, fb in pb
                    if 0 < abs(xa - xb) <= gap), default=0.0)
        if best > 0:
            total += best * (counts.idf(a) + counts.idf(b)) / 2.0
    return total


def coverage(matched: Iterable[str], query: Iterable[str], counts: LexemeCounts) -> float:
    """The share of the query's lexemes' rarity (``LexemeCounts.idf``) that an article holds
    (``matched``): 1.0 when it holds all of them, 0.0 when none (or the query is empty)."""
    q = set(query)
    total = sum(counts.idf(x) for x in q)
    return sum(counts.idf(x) for x in set(matched) & q) / total if total > 0 else 0.0


def pick_weights(notes: Iterable[str], tickets: Iterable[str], related: Iterable[str], counts: LexemeCounts,
                 w: Weights = DEFAULT_WEIGHTS) -> dict[str, float]:
    """What each lexeme of the call weighs in the candidates' first pick: its rarity
    (``LexemeCounts.idf``) times the weight of the input it came from (the notes', the
    tickets'; a synonym's, ``related``, the notes' times ``w.synonym``), the highest when a
    lexeme comes from several. The pick then orders the articles holding the call's rare words
    by the same rarity the ranking uses, instead of ``ts_rank``, which weighs "bill" like
    "pdf"."""
    out: dict[str, float] = {}
    for words, weight in ((notes, w.notes), (tickets, w.tickets), (related, w.notes * w.synonym)):
        for x in words:
            out[x] = max(out.get(x, 0.0), weight * counts.idf(x))
    return out


# -- words learned from agents' marks (article-side expansion) -----------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """What agents' "Helped" marks (and approved proposals) taught of each article: for each
    article, the lexemes of the calls' words it does not hold, with the number of marks that
    said each (``kb_call_words``, ``evidence_from``)."""

    by_article: Mapping[int, Mapping[str, int]]
    postings: Mapping[str, tuple[int, ...]]     # lexeme -> the articles taught it, in id order

    @property
    def total(self) -> int:
        return len(self.by_article)

    def idf(self, lexeme: str) -> float:
        """BM25's rarity among the articles taught anything: a word every marked call says
        ("bill", an agent's habit) weighs near 0, one taught to a single article the most."""
        n = min(len(self.postings.get(lexeme, ())), self.total)
        return math.log(1.0 + (self.total - n + 0.5) / (n + 0.5))

    def share(self, lexeme: str) -> float:
        """``idf`` against that of a word taught to no article: 1.0 for a word taught to
        one article among many, towards 0 for one taught to all of them."""
        top = math.log(1.0 + (self.total + 0.5) / 0.5)
        return self.idf(lexeme) / top if self.total else 0.0


NO_EVIDENCE = Evidence({}, {})


def evidence_from(marks: Iterable[tuple[int, Iterable[str]]]) -> Evidence:
    """The evidence of ``marks``: (article id, the lexemes of one mark's words), one per mark;
    a lexeme said twice in one mark counts once."""
    by: dict[int, dict[str, int]] = {}
    for article_id, lexemes in marks:
        held = by.setdefault(article_id, {})
        for x in set(lexemes):
            held[x] = held.get(x, 0) + 1
    postings: dict[str, list[int]] = {}
    for article_id in sorted(by):
        for x in by[article_id]:
            postings.setdefault(x, []).append(article_id)
    return Evidence(by, {x: tuple(a) for x, a in postings.items()})


def learned_rank(article_id: int, lexemes: Iterable[str], ev: Evidence, counts: LexemeCounts,
                 k1: float = BM25_K1, max_share: float = 1.0) -> float:
    """What the words an article was taught (``Evidence``) add to its rank for one input, in
    ``idf_rank``'s units, as a field of the article: for each of the input's lexemes taught to
    it, the word's rarity among the articles' text (``LexemeCounts.idf``: "border", in no
    article, counts the most; "late", in many, little) times its rarity among the taught
    articles (``Evidence.share``: a word taught to most of them, an agent's habit, little),
    times the marks that said it, saturated as BM25 does (one mark counts 1, many at most
    ``k1 + 1``). A word more than ``max_share`` of the articles' text holds counts nothing."""
    held = ev.by_article.get(article_id)
    if not held:
        return 0.0
    total = 0.0
    for x in set(lexemes):
        m = held.get(x, 0)
        if m > 0 and counts.ndoc.get(x, 0) <= max_share * counts.total:
            total += counts.idf(x) * ev.share(x) * m * (k1 + 1.0) / (m + k1)
    return total


def learned_pick(query: Mapping[str, float], ev: Evidence, counts: LexemeCounts, limit: int,
                 max_share: float = 1.0) -> list[int]:
    """The ``limit`` articles the call's lexemes (``query``: lexeme -> the weight of the input
    it came from) were most taught to (``learned_rank``, each input by its weight), best
    first, ties to the lower id: candidates whose text may hold none of the call's words."""
    if limit <= 0 or not query:
        return []
    found = {a for x in query for a in ev.postings.get(x, ())}
    scored = [(sum(wt * learned_rank(a, [x], ev, counts, max_share=max_share) for x, wt in query.items()), a)
              for a in found]
    scored = [(s, a) for s, a in scored if s > 0]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [a for _, a in scored[:limit]]


def learned_query(notes: Iterable[str], tickets: Iterable[str], w: Weights = DEFAULT_WEIGHTS) -> dict[str, float]:
    """The call's lexemes and the weight of the input each came from (the notes', the
    tickets'; the higher when both)."""
    out: dict[str, float] = {}
    for words, weight in ((notes, w.notes), (tickets, w.tickets)):
        for x in words:
            out[x] = max(out.get(x, 0.0), weight)
    return out


def precision_at(suggested: list[list[int]], right: list[int], k: int = 3) -> float:
    """The share of calls whose right article is among their first ``k`` suggestions
    (with one right article per call: the hit rate at k, what the knowledge base's target
    calls precision@k). Raises ``ValueError`` when the lists differ in length or are empty."""
    if len(suggested) != len(right) or not right:
        raise ValueError("one list of suggestions per labelled call, at least one call")
    return sum(1 for s, r in zip(suggested, right) if r in s[:k]) / len(right)
