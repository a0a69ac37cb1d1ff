"""Articles' Markdown rendered safely (kb/render.py): nothing an author writes runs in the browser."""
from __future__ import annotations

import pytest

from kb.render import to_html


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<iframe src='https://evil.example'></iframe>",
    "<a href='javascript:alert(1)'>x</a>",
    "<svg onload=alert(1)>",
])
def test_raw_html_comes_out_as_text(hostile):
    html = to_html(f"Intro\n\n{hostile}\n\ninline {hostile} too")
    assert "<script" not in html and "<img" not in html and "<iframe" not in html and "<svg" not in html
    assert "<a href='javascript" not in html and "&lt;" in html


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "vbscript:msgbox(1)",
                                 "data:text/html,<script>alert(1)</script>", "file:///etc/passwd",
                                 "java%0ascript:alert(1)"])
def test_unsafe_link_schemes_are_not_links(url):
    html = to_html(f"[click]({url}) ![pic]({url})")
    assert 'href="javascript' not in html.lower() and 'href="vbscript' not in html.lower()
    assert 'href="data:' not in html.lower() and 'href="file:' not in html.lower()
    assert 'src="data:text/html' not in html.lower()


def test_markdown_is_rendered_and_links_open_without_the_opener():
    html = to_html("# Refunds\n\n1. Check the **charge**\n2. See [policy](https://example.com/p)\n\n"
                   "| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Refunds</h1>" in html and "<strong>charge</strong>" in html and "<ol>" in html
    assert '<a href="https://example.com/p" rel="noopener noreferrer nofollow" target="_blank">policy</a>' in html
    assert "<table>" in html


def test_attribute_quotes_in_a_link_cannot_break_out():
    html = to_html('[x](https://e.example/"onmouseover="alert(1))')
    assert 'onmouseover="alert' not in html
