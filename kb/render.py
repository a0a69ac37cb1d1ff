"""Articles' Markdown to HTML, safely: what an article's author writes must not run in an
agent's browser.

markdown-it-py in its CommonMark preset with raw HTML off: any ``<tag>`` in the text comes
out escaped, and its link validation drops ``javascript:``, ``vbscript:``, ``file:`` and
``data:`` (but images) URLs, leaving the text. Links open in a new tab without the opener.
"""
from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def _link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    tokens[idx].attrSet("target", "_blank")
    return renderer.renderToken(tokens, idx, options, env)


_md.add_render_rule("link_open", _link_open)


def to_html(markdown: str) -> str:
    """The HTML of ``markdown`` (raw HTML escaped, unsafe link schemes dropped)."""
    return _md.render(markdown)
