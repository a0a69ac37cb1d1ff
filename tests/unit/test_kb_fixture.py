"""The labelled knowledge-base set (tests/fixtures/kb) is what make_set.py makes: nobody edits
the JSON by hand, and the generator stays deterministic."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "kb"


def _make_set():
    spec = importlib.util.spec_from_file_location("kb_make_set", HERE / "make_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_json_files_are_what_the_generator_makes():
    arts, calls = _make_set().build()
    assert json.loads((HERE / "articles.json").read_text(encoding="utf-8")) == arts
    assert json.loads((HERE / "calls.json").read_text(encoding="utf-8")) == calls


def test_the_set_is_large_varied_and_every_call_names_an_existing_article():
    arts, calls = _make_set().build()
    keys = {a["key"] for a in arts}
    assert len(arts) >= 100 and len(calls) >= 200
    assert all(c["right"] in keys for c in calls)
    assert {a["language"] for a in arts} == {"en", "fr"}
    kinds = Counter("empty" if not c["notes"] else "notes" for c in calls)
    assert kinds["empty"] >= 10 and kinds["notes"] >= 150
