"""Synonyms learned from what agents mark helpful, proposed to KB admins (pure).

When an agent marks an article "Helped" on a call (or a supervisor approves an article an
agent proposed from a call), the words of the call's context (the agent's notes, the open
tickets' titles) that the article does not hold are evidence: the caller said "border" and
the answer was the article about customs. ``proposals`` turns the evidence into pairs
(the caller's word, the article's word) that KB admins approve or reject; an approved pair
joins the synonym list (``kb_synonyms``) the suggestions widen a call's words with, through
the same table ``PUT /api/kb/synonyms`` writes. Nothing is applied without a person's decision.

Which words are proposed (choices, docs/knowledge.md "Synonyms learned from agents"):

- the call's words as the suggestions read them (``kb.ranking.terms``, agents' filler words
  dropped), without numbers;
- that the article does not hold (none of the word's lexemes in the article, as the
  language's text search parses both);
- that the knowledge base lacks (held by at most ``max_articles`` live articles, none by
  default): a word other articles use is not a gap in the vocabulary, and pairing it with
  this article would pull those articles' calls here;
- paired with the article's anchor: its title's rarest word (held by the fewest articles),
  the word that finds this article and few others.

No I/O: the store parses the words and counts the articles (``kb.learn_store``); tests in
tests/unit/test_kb_learn.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable, Mapping, Sequence

from kb.ranking import MAX_TERMS, NOTE_FILLER, terms

#: A word is proposed once it came from this many distinct calls.
MIN_CALLS = 1
#: A word held by more live articles than this is not a gap in the knowledge base's words.
MAX_ARTICLES = 0


@dataclass(frozen=True, slots=True)
class Evidence:
    """One mark: the call, the article it led to, the call's words the article does not hold."""

    call_id: str
    article_id: int
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Proposed:
    """A synonym to propose: the caller's ``word`` means the article's ``anchor``."""

    word: str
    anchor: str
    article_id: int             # the article the most calls led to with this pair
    calls: int                  # distinct calls that said it


def call_words(language: str, notes: str, ticket_titles: Iterable[str] = ()) -> list[str]:
    """The words of a call's context, as the suggestions read them: lower case, each once,
    agents' filler words and numbers dropped, at most ``MAX_TERMS``."""
    filler = NOTE_FILLER.get(language, frozenset())
    text = " ".join([notes, *ticket_titles])
    return [w for w in terms(text, limit=4 * MAX_TERMS, drop=filler) if not w.isdigit()][:MAX_TERMS]


def missing_words(word_lexemes: Mapping[str, Sequence[str]], article_lexemes: Collection[str]) -> list[str]:
    """The words none of whose lexemes the article holds, in the mapping's order; a word
    without lexemes (a stop word of the language) is never missing."""
    held = set(article_lexemes)
    return [w for w, lx in word_lexemes.items() if lx and held.isdisjoint(lx)]


def anchor(title_lexemes: Mapping[str, Sequence[str]], ndoc: Mapping[str, int]) -> str | None:
    """The title's word held by the fewest articles (by its rarest lexeme; ``ndoc``: lexeme ->
    articles holding it), the first of equals; None for a title without such a word."""
    best: tuple[int, int, str] | None = None
    for i, (word, lexemes) in enumerate(title_lexemes.items()):
        if not lexemes or word.isdigit():
            continue
        n = min(max(ndoc.get(x, 0), 1) for x in lexemes)
        if best is None or (n, i) < best[:2]:
            best = (n, i, word)
    return best[2] if best else None


def proposals(evidence: Iterable[Evidence], anchors: Mapping[int, str], word_articles: Mapping[str, int], *,
              decided: Collection[tuple[str, str]] = (), groups: Iterable[Collection[str]] = (),
              min_calls: int = MIN_CALLS, max_articles: int = MAX_ARTICLES) -> list[Proposed]:
    """The pairs to propose, most supported first (then by word).

    ``anchors``: each article's anchor (``anchor``); ``word_articles``: how many live articles
    hold each word (absent: none); ``decided``: (word, anchor) pairs already approved or
    rejected (not proposed again); ``groups``: the synonym groups now (a pair already in one
    group is not proposed). A pair needs ``min_calls`` distinct calls."""
    calls: dict[tuple[str, str], dict[int, set[str]]] = {}
    for e in evidence:
        a = anchors.get(e.article_id)
        if a is None:
            continue
        for w in dict.fromkeys(e.words):
            if w != a and word_articles.get(w, 0) <= max_articles:
                calls.setdefault((w, a), {}).setdefault(e.article_id, set()).add(e.call_id)
    together = [set(g) for g in groups]
    out = []
    for (w, a), by_article in calls.items():
        n = len(set().union(*by_article.values()))
        if n < min_calls or (w, a) in decided or any(w in g and a in g for g in together):
            continue
        article = min(by_article, key=lambda k: (-len(by_article[k]), k))
        out.append(Proposed(w, a, article, n))
    out.sort(key=lambda p: (-p.calls, p.word, p.anchor))
    return out


def join_group(groups: Mapping[str, Collection[str]], word: str, anchor_word: str) -> tuple[str, list[str]]:
    """Where an approved pair goes: the group that holds the anchor (or else the word), with
    the other added; else a new group named after the anchor (``learned-`` before it when
    that name is taken). Returns the group's name and its phrases, sorted."""
    for want in (anchor_word, word):
        for name in sorted(groups):
            if want in groups[name]:
                return name, sorted({*groups[name], word, anchor_word})
    name = anchor_word[:40]
    if name in groups:
        name = f"learned-{anchor_word}"[:40]
    return name, sorted({word, anchor_word})
