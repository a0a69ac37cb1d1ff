"""The web clients put data from the server on the page as text, never as HTML.

Caller names, customer names, ticket titles and notes come from outside; the
clients write them with ``textContent`` (the agent page's ``setText``), so
none of the sinks that parse HTML or run code may appear in our own scripts
(the vendored SIP library is not ours and is left out).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
OURS = sorted(p for p in STATIC.rglob("*") if p.suffix in (".js", ".html") and "vendor" not in p.parts)
SINKS = re.compile(r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\s*\("
                   r"|setAttribute\(\s*['\"]on|\.srcdoc\b")


def test_the_clients_are_found():
    assert {p.name for p in OURS} >= {"app.js", "wallboard.js", "phone.js"}


@pytest.mark.parametrize("path", OURS, ids=lambda p: str(p.relative_to(STATIC)))
def test_no_client_script_writes_html_or_runs_strings(path: Path):
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if SINKS.search(line)]
    assert not hits, hits


def test_the_agent_page_writes_caller_data_with_text_content():
    app = (STATIC / "agent" / "app.js").read_text()
    assert re.search(r"function setText\(id, text\) \{ \$\(id\)\.textContent = ", app)
    assert 'setText("caller-name", c.caller.name)' in app


PAGES = sorted(p for p in STATIC.rglob("*.html") if "vendor" not in p.parts)
INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:", re.I)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(STATIC)))
def test_no_page_holds_inline_script_or_style(path: Path):
    """The pages' policy (api/hygiene.py) allows scripts and styles from files only."""
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if INLINE.search(line)]
    assert not hits, hits


def test_pages_get_a_policy_and_api_answers_are_not_stored():
    from api.hygiene import security_headers

    h: dict[str, str] = {}
    security_headers("/wallboard/", "text/html", h, "wss://pbx.example:8089/ws")
    csp = h["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self';" in csp
    assert h["X-Content-Type-Options"] == "nosniff" and h["Server"] == "open-cti" and "Cache-Control" not in h
    h = {}
    security_headers("/phone/", "text/html", h, "wss://pbx.example:8089/ws")
    assert "connect-src 'self' wss://pbx.example:8089;" in h["Content-Security-Policy"]
    h = {"Content-Security-Policy": "default-src 'none'", "Cache-Control": "private, no-store"}
    security_headers("/api/recordings/1/audio", "audio/wav", h, "ws://x/ws")
    assert h["Content-Security-Policy"] == "default-src 'none'" and h["Cache-Control"] == "private, no-store"
    h = {}
    security_headers("/api/login", "application/json", h, "ws://x/ws")
    assert h["Cache-Control"] == "no-store" and "Content-Security-Policy" not in h
