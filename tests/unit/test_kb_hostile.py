"""Hostile input at the knowledge base's pure edges (hypothesis): any text a desktop or an
article author sends becomes a bounded query of plain words, and any Markdown becomes HTML
with only harmless tags, attributes and link schemes."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from kb.ranking import MAX_TERMS, CallContext, OpenTicket, build_queries, terms
from kb.render import to_html

WORDY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=600)
ALLOWED_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "a", "img", "ul", "ol", "li", "code",
                "pre", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_ATTRS = {"href", "src", "alt", "title", "rel", "target", "start", "style", "class"}
SAFE_URL = re.compile(r"^(?!\s*(javascript|vbscript|file|data):)", re.I)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, attrs))


@given(WORDY)
def test_any_text_gives_at_most_max_terms_plain_words(text):
    words = terms(text)
    assert len(words) <= MAX_TERMS and len(set(words)) == len(words)
    assert all(re.fullmatch(r"[^\W_]{2,40}", w) and w not in ("or", "and", "not") for w in words)


@given(WORDY, WORDY, st.lists(st.text(max_size=40), max_size=5))
def test_every_input_query_is_words_joined_by_or(notes, title, path):
    q = build_queries(CallContext(notes=notes, tickets=(OpenTicket("t", title),), ivr_path=tuple(path)))
    for text in q.values():
        assert text == "" or all(re.fullmatch(r"[^\W_]{2,40}", w) for w in text.split(" or "))


MARKDOWNISH = st.lists(st.sampled_from([
    "<script>", "</script>", "alert(1)", "<img src=x onerror=", "[a](", "javascript:", "JaVaScRiPt:", ")",
    "![i](", "data:text/html,", "<", ">", "\"", "'", "&#106;", "\n\n", "`", "**", "<a href=", "onclick=",
    "<svg/onload=", "vbscript:", "%0a", "&colon;", " ", "x", "# ", "| a |", "\n|---|\n"]), max_size=40).map("".join)


@settings(max_examples=300)
@given(st.one_of(MARKDOWNISH, WORDY))
def test_any_markdown_renders_only_harmless_html(md):
    parser = Tags()
    parser.feed(to_html(md))
    for tag, attrs in parser.seen:
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs:
            assert name in ALLOWED_ATTRS and not name.startswith("on"), (tag, name)
            if name in ("href", "src"):
                assert value is not None and SAFE_URL.match(value), (tag, name, value)


def _nodes(tree):
    for n in tree:
        yield n
        yield from _nodes(n.get("children", []))


@settings(max_examples=300)
@given(st.one_of(MARKDOWNISH, WORDY))
def test_any_markdown_gives_a_tree_of_allowed_tags_attributes_and_safe_urls(md):
    from kb.render import TREE_TAGS, to_tree
    for n in _nodes(to_tree(md)):
        if "text" in n:
            assert set(n) == {"text"} and isinstance(n["text"], str)
            continue
        assert n["tag"] in TREE_TAGS
        assert set(n["attrs"]) <= {"href", "src", "alt", "title", "start", "rel", "target"}
        for k in ("href", "src"):
            if k in n["attrs"]:
                assert SAFE_URL.match(n["attrs"][k]), n
