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


# -- the same document as a tree, for clients that build the page with DOM calls -----------------

#: The elements a tree may hold; anything else markdown-it makes (nothing, with raw HTML off)
#: is left out with its text kept.
TREE_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "a", "img", "ul", "ol", "li",
                       "code", "pre", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "s"})
_TREE_ATTRS = {"a": ("href", "title"), "img": ("src", "alt", "title"), "ol": ("start",)}


def _attrs(tag: str, token: Any) -> dict[str, str]:
    out = {k: str(token.attrs[k]) for k in _TREE_ATTRS.get(tag, ()) if k in token.attrs}
    if tag == "a":
        out.update(rel="noopener noreferrer nofollow", target="_blank")
    return out


def _text_of(tokens: Any) -> str:
    return "".join(t.content if t.type in ("text", "code_inline") else _text_of(t.children or []) for t in tokens)


def to_tree(markdown: str) -> list[dict[str, Any]]:
    """The document as nested nodes: ``{"tag", "attrs", "children"}`` for an element (tags in
    ``TREE_TAGS``; attributes only ``href``/``title`` of links, ``src``/``alt``/``title`` of
    images, ``start`` of lists; URLs already validated as for ``to_html``) and
    ``{"text": ...}`` for text. A client builds it with ``createElement`` and ``textContent``:
    no HTML is parsed on the page."""
    root: dict[str, Any] = {"children": []}
    stack = [root]

    def add(node: dict[str, Any]) -> None:
        stack[-1]["children"].append(node)

    def element(tag: str, attrs: dict[str, str] | None = None, text: str | None = None) -> dict[str, Any]:
        return {"tag": tag, "attrs": attrs or {}, "children": [] if text is None else [{"text": text}]}

    def walk(tokens: Any) -> None:
        for tok in tokens:
            if tok.type == "inline":
                walk(tok.children or [])
            elif tok.nesting == 1:
                if tok.hidden or tok.tag not in TREE_TAGS:      # a tight list's paragraphs
                    stack.append(stack[-1])
                    continue
                node = element(tok.tag, _attrs(tok.tag, tok))
                add(node)
                stack.append(node)
            elif tok.nesting == -1:
                stack.pop()
            elif tok.type in ("text", "html_inline", "html_block"):
                if tok.content:
                    add({"text": tok.content})
            elif tok.type == "softbreak":
                add({"text": "\n"})
            elif tok.type == "hardbreak":
                add(element("br"))
            elif tok.type == "hr":
                add(element("hr"))
            elif tok.type == "code_inline":
                add(element("code", text=tok.content))
            elif tok.type in ("code_block", "fence"):
                add({"tag": "pre", "attrs": {}, "children": [element("code", text=tok.content)]})
            elif tok.type == "image":
                attrs = _attrs("img", tok)
                attrs["alt"] = _text_of(tok.children or [])
                add(element("img", attrs))
            elif tok.content:
                add({"text": tok.content})

    walk(_md.parse(markdown))
    return root["children"]
