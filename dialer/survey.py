"""A campaign's survey: the questions the agent asks, the next one chosen by the answer.
Pure: JSON in, a checked ``Survey`` out; answers in, the questions to ask out
(docs/dialer.md, "Surveys and branching").

The JSON is a list of questions::

    {"id": "happy", "text": "Are you happy with us?", "type": "yes_no",
     "branches": {"no": "why"}, "next": "end"}

- ``type``: ``text`` (free text), ``choice`` (one of ``options``, 2 to 20, distinct) or
  ``yes_no`` (``yes`` or ``no``; no options).
- ``next``: the question after this one whatever the answer; ``"end"`` ends the survey.
  Absent: the question after it in the list (the last one ends it).
- ``branches``: by answer (an option of a ``choice``, ``yes``/``no``), the question after
  this one; an answer not named goes to ``next``. A ``text`` question has none (free text
  is not matched).

Checked when the survey is saved, so an agent never meets a broken one: ids unique (and
none called ``end``), every target a question of the survey (no dangling reference), no
cycle (a survey always ends: a target may be any question, but no path comes back), every
question reachable from the first (one never asked is a mistake), at most 50 questions.

Exceptions (``cti.errors.CtiError``)::

    InvalidSurvey      ``field`` names the bad part: survey.2.branches.no, survey.0.id
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cti.errors import CtiError

END = "end"
MAX_QUESTIONS = 50
MAX_OPTIONS = 20
TYPES = ("text", "choice", "yes_no")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidSurvey(CtiError, ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str
    type: str = "text"
    options: tuple[str, ...] = ()
    next: str | None = None                          # None: the following question
    branches: tuple[tuple[str, str], ...] = ()       # (answer, target), in the order given

    def answers(self) -> tuple[str, ...] | None:
        """The answers it accepts (None: any text)."""
        if self.type == "yes_no":
            return ("yes", "no")
        return self.options if self.type == "choice" else None


@dataclass(frozen=True, slots=True)
class Survey:
    questions: tuple[Question, ...] = ()

    def index(self, qid: str) -> int:
        for i, q in enumerate(self.questions):
            if q.id == qid:
                return i
        raise KeyError(qid)

    def after(self, qid: str, answer: str | None) -> str | None:
        """The question after ``qid`` answered ``answer`` (None: the survey ends)."""
        i = self.index(qid)
        q = self.questions[i]
        target = dict(q.branches).get(answer) if answer is not None else None
        if target is None:
            target = q.next
        if target is None:
            return self.questions[i + 1].id if i + 1 < len(self.questions) else None
        return None if target == END else target

    def targets(self, i: int) -> list[tuple[str, str]]:
        """Where question ``i`` may lead: (the field naming the edge, the target id)."""
        q = self.questions[i]
        out = [(f"survey.{i}.branches.{a}", t) for a, t in q.branches]
        covered = q.answers() is not None and {a for a, _ in q.branches} >= set(q.answers() or ())
        if not covered:          # some answer (or a text one) takes next
            if q.next is not None:
                out.append((f"survey.{i}.next", q.next))
            elif i + 1 < len(self.questions):
                out.append((f"survey.{i}.next", self.questions[i + 1].id))
        return [(f, t) for f, t in out if t != END]


def _text(v: Any, where: str, most: int) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > most or _CONTROL.search(v):
        raise InvalidSurvey(where, f"a text of 1 to {most} characters, no control characters")
    return v


def _question(raw: Any, i: int) -> Question:
    where = f"survey.{i}"
    if not isinstance(raw, Mapping):
        raise InvalidSurvey(where, "a question {id, text, type, options, next, branches}")
    extra = set(raw) - {"id", "text", "type", "options", "next", "branches"}
    if extra:
        raise InvalidSurvey(f"{where}.{sorted(map(str, extra))[0]}",
                            "unknown field (id, text, type, options, next, branches)")
    qid = raw.get("id")
    if not isinstance(qid, str) or not _ID.match(qid) or qid == END:
        raise InvalidSurvey(f"{where}.id", f"a name: a-z, then a-z, 0-9, _ (32 at most; not {END!r})")
    text = _text(raw.get("text"), f"{where}.text", 300)
    kind = raw.get("type", "text")
    if kind not in TYPES:
        raise InvalidSurvey(f"{where}.type", "text, choice or yes_no")
    options = raw.get("options", [])
    if not isinstance(options, (list, tuple)):
        raise InvalidSurvey(f"{where}.options", "a list of answers")
    if kind == "choice":
        if not 2 <= len(options) <= MAX_OPTIONS:
            raise InvalidSurvey(f"{where}.options", f"a choice has 2 to {MAX_OPTIONS} options")
        for j, o in enumerate(options):
            _text(o, f"{where}.options.{j}", 100)
        if len(set(options)) != len(options):
            raise InvalidSurvey(f"{where}.options", "the options must be distinct")
    elif options:
        raise InvalidSurvey(f"{where}.options", f"only a choice has options (this is {kind})")
    nxt = raw.get("next")
    if nxt is not None and (not isinstance(nxt, str) or not (_ID.match(nxt) or nxt == END)):
        raise InvalidSurvey(f"{where}.next", f"a question id or {END!r}")
    branches = raw.get("branches", {})
    if not isinstance(branches, Mapping):
        raise InvalidSurvey(f"{where}.branches", "an object: answer -> question id")
    if branches and kind == "text":
        raise InvalidSurvey(f"{where}.branches", "a text question cannot branch (use next)")
    accepted = ("yes", "no") if kind == "yes_no" else tuple(options)
    pairs = []
    for answer, target in branches.items():
        if answer not in accepted:
            raise InvalidSurvey(f"{where}.branches", f"{str(answer)[:40]!r} is not an answer of this question"
                                                     f" ({', '.join(accepted)})")
        if not isinstance(target, str) or not (_ID.match(target) or target == END):
            raise InvalidSurvey(f"{where}.branches.{answer}", f"a question id or {END!r}")
        pairs.append((answer, target))
    return Question(qid, text, kind, tuple(options), nxt, tuple(pairs))


def parse_survey(obj: Any) -> Survey:
    """The checked ``Survey`` of a campaign's survey JSON (None or [] : no survey). Raises
    ``InvalidSurvey`` naming the first bad field."""
    if obj is None:
        return Survey()
    if not isinstance(obj, (list, tuple)) or len(obj) > MAX_QUESTIONS:
        raise InvalidSurvey("survey", f"a list of at most {MAX_QUESTIONS} questions")
    questions = tuple(_question(raw, i) for i, raw in enumerate(obj))
    seen: dict[str, int] = {}
    for i, q in enumerate(questions):
        if q.id in seen:
            raise InvalidSurvey(f"survey.{i}.id", f"{q.id!r} is already question {seen[q.id]}")
        seen[q.id] = i
    survey = Survey(questions)
    for i, q in enumerate(questions):
        refs = [(f"survey.{i}.branches.{a}", t) for a, t in q.branches]
        refs += [(f"survey.{i}.next", q.next)] if q.next is not None else []
        for where, target in refs:
            if target != END and target not in seen:
                raise InvalidSurvey(where, f"no question {target!r} in this survey")
    _check_acyclic(survey)
    _check_reachable(survey)
    return survey


def _check_acyclic(s: Survey) -> None:
    """Depth first from every question; an edge back to a question on the path is a cycle."""
    state = [0] * len(s.questions)          # 0 new, 1 on the path, 2 done
    for root in range(len(s.questions)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(s.targets(root)))]
        path = [root]
        while stack:
            i, edges = stack[-1]
            step = next(edges, None)
            if step is None:
                state[i] = 2
                stack.pop()
                path.pop()
                continue
            where, target = step
            j = s.index(target)
            if state[j] == 1:
                loop = [s.questions[k].id for k in path[path.index(j):]] + [target]
                raise InvalidSurvey(where, "a cycle: " + " -> ".join(loop) + " (a survey must always end)")
            if state[j] == 0:
                state[j] = 1
                stack.append((j, iter(s.targets(j))))
                path.append(j)


def _check_reachable(s: Survey) -> None:
    if not s.questions:
        return
    seen = {0}
    todo = [0]
    while todo:
        for _, target in s.targets(todo.pop()):
            j = s.index(target)
            if j not in seen:
                seen.add(j)
                todo.append(j)
    for i in range(len(s.questions)):
        if i not in seen:
            raise InvalidSurvey(f"survey.{i}", f"question {s.questions[i].id!r} is never asked"
                                               " (no path from the first question leads to it)")


def survey_to_json(s: Survey) -> list[dict[str, Any]]:
    """``s`` as JSON (``parse_survey`` reads it back equal); ``next`` and ``branches`` only when set."""
    out = []
    for q in s.questions:
        d: dict[str, Any] = {"id": q.id, "text": q.text, "type": q.type, "options": list(q.options)}
        if q.next is not None:
            d["next"] = q.next
        if q.branches:
            d["branches"] = dict(q.branches)
        out.append(d)
    return out


def path(s: Survey, answers: Mapping[str, str]) -> list[str]:
    """The questions shown, in order, given ``answers`` (by question id): from the first,
    each leads to the next by its answer. A question not answered yet whose answer would
    not change what follows (no branches) is passed over to the next; the walk stops at
    the end, or at the first unanswered question that branches (included: the one to ask
    now, whose answer says what comes after)."""
    out: list[str] = []
    qid = s.questions[0].id if s.questions else None
    while qid is not None and len(out) <= len(s.questions):
        out.append(qid)
        if qid not in answers and s.questions[s.index(qid)].branches:
            break
        qid = s.after(qid, answers.get(qid))
    return out


def asked(s: Survey, answers: Mapping[str, str]) -> list[tuple[Question, str]]:
    """The answered questions on the path ``answers`` take, with their answer, in order;
    answers off the path (to questions the branching skipped) are left out."""
    return [(s.questions[s.index(q)], answers[q]) for q in path(s, answers) if q in answers]


def questions_of(stored: Sequence[Mapping[str, Any]] | None) -> Survey:
    """A stored survey as a ``Survey``, leniently: one saved before branching (or written
    around the API) that does not check is read as a flat list of its questions."""
    try:
        return parse_survey(stored)
    except InvalidSurvey:
        flat = []
        for raw in stored or ():
            if isinstance(raw, Mapping) and isinstance(raw.get("id"), str) and isinstance(raw.get("text"), str):
                flat.append(Question(raw["id"], raw["text"], str(raw.get("type", "text"))))
        return Survey(tuple(flat))
