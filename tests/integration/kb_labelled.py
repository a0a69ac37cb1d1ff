"""The labelled knowledge-base set (tests/fixtures/kb): load its articles, turn its calls into
call contexts, and measure precision@3. Shared by the precision test and bench/kb_suggest.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kb import store
from kb.ranking import CallContext, OpenTicket, precision_at

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kb"


def articles() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "articles.json").read_text(encoding="utf-8"))


def calls() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "calls.json").read_text(encoding="utf-8"))


def context(call: dict[str, Any], *, only_notes: bool = False) -> CallContext:
    """The call as the suggestion asks see it (``only_notes``: the agent's notes alone)."""
    if only_notes:
        return CallContext(language=call["language"], notes=call["notes"])
    return CallContext(language=call["language"], queue=call["queue"], skills=tuple(call["skills"]),
                       ivr_path=tuple(call["ivr_path"]),
                       tickets=tuple(OpenTicket(t["type"], t["title"]) for t in call["tickets"]), notes=call["notes"])


async def load(pool: Any, items: list[dict[str, Any]] | None = None) -> dict[str, int]:
    """Create the articles; returns their ids by key."""
    ids = {}
    for a in items if items is not None else articles():
        art = await store.create_article(pool, title=a["title"], body=a["body"], tags=a["tags"],
                                         language=a["language"], owner="kb-set",
                                         links=[store.Link(x["kind"], x["target"]) for x in a["links"]])
        ids[a["key"]] = art.article_id
    return ids


async def precision(pool: Any, ids: dict[str, int], *, only_notes: bool = False,
                    stats: store.LexemeStats | None = None) -> float:
    suggested, right = [], []
    for c in calls():
        got = await store.suggest(pool, context(c, only_notes=only_notes), stats=stats)
        suggested.append([s.article_id for s in got])
        right.append(ids[c["right"]])
    return precision_at(suggested, right, 3)
