"""A campaign survey's branching (dialer.survey): checked when saved (no dangling reference,
no cycle, nothing unreachable), the next question chosen by the answer, and any definition
either read or refused by name (hypothesis)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.survey import END, InvalidSurvey, asked, parse_survey, path, questions_of, survey_to_json

ROUTER = [
    {"id": "happy", "text": "Happy with your router?", "type": "yes_no", "branches": {"no": "why"}},
    {"id": "plan", "text": "Which plan?", "type": "choice", "options": ["fibre", "copper"],
     "branches": {"copper": "upgrade"}, "next": "end"},
    {"id": "why", "text": "What is wrong?", "next": "upgrade"},
    {"id": "upgrade", "text": "Shall we call about fibre?", "type": "yes_no"},
]


def test_the_next_question_is_chosen_by_the_answer():
    s = parse_survey(ROUTER)
    assert s.after("happy", "yes") == "plan"            # not branched: the next in the list
    assert s.after("happy", "no") == "why"
    assert s.after("plan", "fibre") is None             # next: end
    assert s.after("plan", "copper") == "upgrade"
    assert s.after("why", "slow") == "upgrade"
    assert s.after("upgrade", "yes") is None            # the last question ends it


def test_the_path_follows_the_answers_and_stops_at_the_question_to_ask():
    s = parse_survey(ROUTER)
    assert path(s, {}) == ["happy"]
    assert path(s, {"happy": "no"}) == ["happy", "why", "upgrade"]      # why and upgrade do not branch
    assert path(s, {"happy": "yes"}) == ["happy", "plan"]              # plan does: its answer is awaited
    assert path(s, {"happy": "no", "why": "drops", "upgrade": "yes"}) == ["happy", "why", "upgrade"]
    assert path(s, {"happy": "yes", "plan": "fibre"}) == ["happy", "plan"]
    assert path(parse_survey([]), {}) == []


def test_answers_off_the_path_are_left_out():
    s = parse_survey(ROUTER)
    got = asked(s, {"happy": "yes", "plan": "fibre", "why": "stale, from before the agent changed happy"})
    assert [(q.id, a) for q, a in got] == [("happy", "yes"), ("plan", "fibre")]


def test_a_flat_survey_is_still_a_survey():
    flat = [{"id": "a", "text": "A?"}, {"id": "b", "text": "B?", "type": "yes_no"}]
    s = parse_survey(flat)
    assert path(s, {"a": "x", "b": "no"}) == ["a", "b"] == path(s, {})
    assert survey_to_json(s) == [{"id": "a", "text": "A?", "type": "text", "options": []},
                                 {"id": "b", "text": "B?", "type": "yes_no", "options": []}]


def q(qid, **kw):
    return {"id": qid, "text": qid.upper() + "?", **kw}


@pytest.mark.parametrize("survey, field, words", [
    ([q("a", next="zz")], "survey.0.next", "no question 'zz'"),
    ([q("a", type="yes_no", branches={"no": "zz"})], "survey.0.branches.no", "no question 'zz'"),
    # Dangling even where no answer can take it: every answer of the yes/no is branched.
    ([q("a", type="yes_no", branches={"yes": END, "no": END}, next="zz")], "survey.0.next", "no question"),
    ([q("a", next="b"), q("b", next="a")], "survey.1.next", "a cycle: a -> b -> a"),
    ([q("a", type="yes_no", branches={"no": "a"})], "survey.0.branches.no", "a cycle: a -> a"),
    ([q("a"), q("b", type="choice", options=["x", "y"], branches={"y": "a"})], "survey.1.branches.y", "a cycle"),
    ([q("a", next=END), q("b")], "survey.1", "never asked"),
    ([q("a"), q("a")], "survey.1.id", "already question 0"),
    ([q("end")], "survey.0.id", "not 'end'"),
    ([q("A")], "survey.0.id", "a name"),
    ([q("a", type="rating")], "survey.0.type", "text, choice or yes_no"),
    ([q("a", type="choice", options=["x"])], "survey.0.options", "2 to 20"),
    ([q("a", type="choice", options=["x", "x"])], "survey.0.options", "distinct"),
    ([q("a", type="yes_no", options=["x", "y"])], "survey.0.options", "only a choice"),
    ([q("a", branches={"x": END})], "survey.0.branches", "cannot branch"),
    ([q("a", type="yes_no", branches={"maybe": END})], "survey.0.branches", "not an answer"),
    ([q("a", type="yes_no", branches={"yes": 3})], "survey.0.branches.yes", "a question id"),
    ([q("a", colour="red")], "survey.0.colour", "unknown field"),
    ([{"id": "a", "text": "line\nbreak"}], "survey.0.text", "no control characters"),
    ([q(f"q{i}") for i in range(51)], "survey", "at most 50"),
    ("a", "survey", "a list"),
])
def test_a_bad_survey_is_refused_naming_its_field(survey, field, words):
    with pytest.raises(InvalidSurvey) as e:
        parse_survey(survey)
    assert e.value.field == field and words in str(e.value)


def test_a_stored_survey_that_does_not_check_is_read_flat():
    s = questions_of([q("a", next="b"), q("b", next="a"), "junk"])
    assert [x.id for x in s.questions] == ["a", "b"] and path(s, {"a": "1", "b": "2"}) == ["a", "b"]


# -- fuzz --------------------------------------------------------------------------------------

IDS = ["a", "b", "c", "d", "e", END, "zz"]
question = st.fixed_dictionaries(
    {"id": st.sampled_from(IDS[:5] + ["end", "Bad"]), "text": st.sampled_from(["Q?", "", "x\x00"])},
    optional={"type": st.sampled_from(["text", "choice", "yes_no", "other"]),
              "options": st.one_of(st.lists(st.sampled_from(["x", "y", "z", ""]), max_size=4), st.text(max_size=2)),
              "next": st.one_of(st.sampled_from(IDS), st.integers()),
              "branches": st.one_of(st.dictionaries(st.sampled_from(["yes", "no", "x", "y", "w"]),
                                                    st.sampled_from(IDS), max_size=3), st.lists(st.integers())),
              "extra": st.none()})


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.lists(question, max_size=6), st.none(), st.integers(), st.text(max_size=3),
                 st.lists(st.one_of(st.integers(), st.none()), max_size=2)))
def test_any_definition_is_read_or_refused_by_name_and_a_read_one_always_ends(obj):
    try:
        s = parse_survey(obj)
    except InvalidSurvey as exc:
        assert exc.field.startswith("survey")
        return
    assert parse_survey(survey_to_json(s)) == s
    ids = [x.id for x in s.questions]
    # Whatever the answers, the walk ends without asking a question twice, and only asks
    # questions of the survey; every question is on some walk.
    answers_for = {x.id: list(x.answers() or ("free text",)) for x in s.questions}
    reached = set()
    todo = [{}]
    while todo:
        answers = todo.pop()
        p = path(s, answers)
        assert len(p) == len(set(p)) and set(p) <= set(ids)
        reached |= set(p)
        last = p[-1] if p else None
        if last is not None and last not in answers:
            for a in answers_for[last]:
                todo.append({**answers, last: a})
    assert reached == set(ids)


@st.composite
def well_formed(draw):
    """Questions whose every field is well formed, with references anywhere (or nowhere)."""
    n = draw(st.integers(1, 7))
    ids = [f"q{i}" for i in range(n)]
    targets = st.sampled_from(ids + [END, "gone"])
    out = []
    for qid in ids:
        kind = draw(st.sampled_from(["text", "choice", "yes_no"]))
        d = {"id": qid, "text": "Q?", "type": kind}
        answers = {"choice": ["x", "y", "z"], "yes_no": ["yes", "no"]}.get(kind, [])
        if kind == "choice":
            d["options"] = answers
        if draw(st.booleans()):
            d["next"] = draw(targets)
        if answers:
            d["branches"] = draw(st.dictionaries(st.sampled_from(answers), targets, max_size=len(answers)))
        out.append(d)
    return out


def reference_edges(survey):
    """Where each question may lead, worked out afresh: a branch per answer, else next, else the following one."""
    ids = [d["id"] for d in survey]
    edges = {}
    for i, d in enumerate(survey):
        answers = {"choice": d.get("options", []), "yes_no": ["yes", "no"]}.get(d["type"], [None])
        default = d.get("next", ids[i + 1] if i + 1 < len(ids) else END)
        edges[d["id"]] = {d.get("branches", {}).get(a, default) for a in answers} - {END}
    return edges


@settings(max_examples=800, deadline=None)
@given(well_formed())
def test_a_survey_is_accepted_exactly_when_it_has_no_dangling_reference_no_cycle_and_nothing_unreachable(survey):
    ids = [d["id"] for d in survey]
    refs = [t for d in survey for t in [d.get("next", END), *d.get("branches", {}).values()]]
    edges = reference_edges(survey)
    dangling = any(t not in ids and t != END for t in refs)
    # Kahn: remove questions with nothing left to lead to; a cycle is what remains.
    left = {k: set(v) for k, v in edges.items()} if not dangling else {}
    while any(not v for v in left.values()):
        done = {k for k, v in left.items() if not v}
        left = {k: v - done for k, v in left.items() if k not in done}
    seen, todo = {ids[0]}, [ids[0]]
    while todo and not dangling:
        for t in edges[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    good = not dangling and not left and seen == set(ids)
    try:
        parse_survey(survey)
        assert good
    except InvalidSurvey as exc:
        assert not good, str(exc)
        assert any(w in str(exc) for w in ("no question", "a cycle", "never asked")), str(exc)
