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
