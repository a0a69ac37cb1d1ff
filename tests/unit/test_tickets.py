"""The ticket machine: every (state, command) pair against the one table, random
command sequences with their invariants, due times and command validation."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from crm import tickets as tk
from crm.tickets import (
    DEFAULT_TYPES, DONE, TRANSITIONS, AuditEntry, Cancel, CallbackNoAnswer, Confirm, Dispatch,
    FailureCause, InvalidCommand, Reopen, ResolveByPhone, SendToLead, State, Ticket, TransitionRefused,
    Unsatisfied, UnknownTicketType, VisitFailed, VisitSucceeded, apply, command_from, is_overdue,
    new_ticket, parse_ticket_types,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)

# One example of every command kind the machine knows (visit_failed once per cause).
EXAMPLES: dict[str, tk.Command] = {
    "resolve_by_phone": ResolveByPhone(actor="agent1", note="reset the box"),
    "send_to_lead": SendToLead(actor="agent1", lead="lead-north"),
    "dispatch": Dispatch(actor="lead-north", engineer="eng7"),
    "visit_succeeded": VisitSucceeded(actor="eng7"),
    "visit_failed:engineer": VisitFailed(actor="eng7", cause=FailureCause.ENGINEER, reason="part missing"),
    "visit_failed:customer": VisitFailed(actor="eng7", cause=FailureCause.CUSTOMER, reason="nobody home"),
    "visit_failed:other": VisitFailed(actor="eng7", cause=FailureCause.OTHER, reason="road closed"),
    "callback_no_answer": CallbackNoAnswer(actor="agent2"),
    "confirm": Confirm(actor="agent2", note="works"),
    "unsatisfied": Unsatisfied(actor="agent2", reason="still broken"),
    "cancel": Cancel(actor="agent1", reason="duplicate"),
    "reopen": Reopen(actor="agent1", reason="broke again"),
}


def ticket_in(state: State, **kw) -> Ticket:
    """A plausible ticket already in ``state``."""
    values = dict(ticket_id=42, type="repair", customer_id="C1", source=tk.Source.CALL, state=state,
                  title="Repair", region="north", created_at=T0, due_at=T0 + timedelta(days=2))
    if state in (State.DISPATCHED,):
        values["engineer"] = "eng1"
    if state is State.WITH_LEAD:
        values["lead"] = "lead-north"
    if state is State.AWAITING_CALLBACK:
        values["callback_due_at"] = T0 + timedelta(hours=24)
    if state in DONE:
        values["closed_at"] = T0
    values.update(kw)
    return Ticket(**values)


def test_every_kind_in_the_table_is_one_a_command_can_have():
    assert {kind for _, kind in TRANSITIONS} == set(EXAMPLES)
    assert {c.kind for c in EXAMPLES.values()} == set(EXAMPLES)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_state_and_command_pair_does_what_the_table_says(state: State, kind: str):
    ticket = ticket_in(state)
    command = EXAMPLES[kind]
    target = TRANSITIONS.get((state, kind))
    if target is None:
        with pytest.raises(TransitionRefused) as refused:
            apply(ticket, command, T0 + timedelta(hours=1))
        text = str(refused.value)
        assert f"'{state.value}'" in text and f"'{kind}'" in text and "ticket 42" in text
        assert refused.value.state is state and refused.value.command == kind
    else:
        after, entry = apply(ticket, command, T0 + timedelta(hours=1))
        assert after.state is target
        assert (entry.from_state, entry.to_state, entry.command) == (state, target, kind)
        assert entry.seq == after.revision == ticket.revision + 1


def test_every_state_is_reachable_from_open_and_every_live_state_can_still_close():
    edges: dict[State, set[State]] = {}
    for (src, _), dst in TRANSITIONS.items():
        edges.setdefault(src, set()).add(dst)

    def reach(start: State) -> set[State]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reach(State.OPEN) == set(State)
    for state in set(State) - DONE:
        assert State.CLOSED in reach(state), state
    assert edges[State.CLOSED] == {State.OPEN}      # only reopen leaves closed
    assert State.CANCELLED not in edges             # cancelled is terminal


def test_refusal_lists_what_the_state_allows():
    with pytest.raises(TransitionRefused, match=r"it allows: reopen"):
        apply(ticket_in(State.CLOSED), EXAMPLES["confirm"], T0)
    with pytest.raises(TransitionRefused, match=r"it allows: nothing"):
        apply(ticket_in(State.CANCELLED), EXAMPLES["reopen"], T0)


# -- random commands on random tickets -------------------------------------------------

ids = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(str.strip)
notes = st.none() | texts

commands = st.one_of(
    st.builds(ResolveByPhone, actor=ids, note=notes),
    st.builds(SendToLead, actor=ids, lead=ids, note=notes),
    st.builds(Dispatch, actor=ids, engineer=ids, note=notes),
    st.builds(VisitSucceeded, actor=ids, note=notes),
    st.builds(VisitFailed, actor=ids, cause=st.sampled_from(FailureCause), reason=texts, note=notes),
    st.builds(CallbackNoAnswer, actor=ids, note=notes),
    st.builds(Confirm, actor=ids, note=notes),
    st.builds(Unsatisfied, actor=ids, reason=texts, note=notes),
    st.builds(Cancel, actor=ids, reason=texts, note=notes),
    st.builds(Reopen, actor=ids, reason=texts, note=notes),
)


@given(state=st.sampled_from(State), command=commands, later=st.timedeltas(timedelta(0), timedelta(days=30)))
def test_a_command_is_applied_exactly_when_the_table_has_it(state, command, later):
    ticket = ticket_in(state)
    now = T0 + later
    key = (state, command.kind)
    if key not in TRANSITIONS:
        with pytest.raises(TransitionRefused):
            apply(ticket, command, now)
        return
    after, entry = apply(ticket, command, now)
    assert after.state is TRANSITIONS[key]
    assert entry == AuditEntry(ticket_id=42, seq=ticket.revision + 1, at=now, actor=command.actor,
                               command=command.kind, from_state=state, to_state=after.state,
                               note=command.note, data=command.data())
    # what a command must not touch
    assert (after.ticket_id, after.customer_id, after.type, after.created_at) == \
           (ticket.ticket_id, ticket.customer_id, ticket.type, ticket.created_at)


class TicketLife(RuleBasedStateMachine):
    """Any sequence of commands, allowed or not, on one ticket; the audit trail replayed."""

    @initialize(type_=st.sampled_from(sorted(DEFAULT_TYPES.types)), source=st.sampled_from(tk.Source))
    def create(self, type_, source):
        self.now = T0
        self.ticket, entry = new_ticket(type=type_, customer_id="C9", source=source, actor="agent1",
                                        now=T0, region="north")
        self.audit = [entry]
        self.refused = 0

    @rule(wait=st.timedeltas(timedelta(0), timedelta(days=3)))
    def time_passes(self, wait):
        self.now += wait

    @rule(command=commands)
    def act(self, command):
        before = self.ticket
        key = (before.state, command.kind)
        try:
            after, entry = apply(before, command, self.now)
        except TransitionRefused as exc:
            assert key not in TRANSITIONS
            assert exc.state is before.state
            self.refused += 1
            return
        assert key in TRANSITIONS and after.state is TRANSITIONS[key]
        if command.kind == "visit_failed:engineer":
            assert after.engineer == before.engineer is not None and after.state is State.DISPATCHED
        if isinstance(command, (VisitSucceeded, VisitFailed)):
            assert after.visits == before.visits + 1
        if before.state is State.CLOSED:
            assert isinstance(command, (Reopen,)) and after.state is State.OPEN
        self.ticket = after
        self.audit.append(entry)

    @invariant()
    def audit_trail_is_complete_and_ordered(self):
        assert [e.seq for e in self.audit] == list(range(1, len(self.audit) + 1))
        assert self.audit[0].from_state is None and self.audit[0].command == "create"
        for prev, nxt in zip(self.audit, self.audit[1:]):
            assert nxt.from_state is prev.to_state
            assert nxt.at >= prev.at
            assert TRANSITIONS[(nxt.from_state, nxt.command)] is nxt.to_state
        assert self.audit[-1].to_state is self.ticket.state
        assert self.ticket.revision == len(self.audit)

    @invariant()
    def fields_agree_with_the_state(self):
        t = self.ticket
        assert (t.state is State.DISPATCHED) <= (t.engineer is not None)
        assert (t.state is State.WITH_LEAD) <= (t.lead is not None)
        assert (t.callback_due_at is not None) == (t.state is State.AWAITING_CALLBACK)
        assert (t.closed_at is not None) == (t.state in DONE)
        assert (t.resolution is not None) == (t.state in DONE)
        assert t.visits == sum(e.command.startswith("visit_") for e in self.audit)
        assert (t.state is State.CANCELLED) <= (self.audit[-1].command == "cancel")
        assert is_overdue(t, self.now) == (t.state not in DONE and self.now > tk.due_by(t))


TicketLife.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestTicketLife = TicketLife.TestCase


def test_engineers_own_failure_returns_to_the_same_engineer_and_others_free_the_ticket():
    t, _ = new_ticket(type="repair", customer_id="C1", source="manual", actor="a", now=T0)
    t, _ = apply(t, SendToLead(actor="a", lead="lead-north"), T0)
    t, _ = apply(t, Dispatch(actor="lead-north", engineer="eng3"), T0)
    t, _ = apply(t, VisitFailed(actor="eng3", cause="engineer", reason="forgot the ladder"), T0)
    assert (t.state, t.engineer, t.visits) == (State.DISPATCHED, "eng3", 1)
    t, _ = apply(t, VisitFailed(actor="eng3", cause="customer", reason="nobody home"), T0)
    assert (t.state, t.engineer, t.visits) == (State.TO_REDISPATCH, None, 2)
    with pytest.raises(TransitionRefused):
        apply(t, VisitSucceeded(actor="eng3"), T0)
    t, _ = apply(t, Dispatch(actor="a", engineer="eng4"), T0)
    t, _ = apply(t, VisitSucceeded(actor="eng4"), T0)
    t, _ = apply(t, Unsatisfied(actor="a", reason="noise again"), T0)
    assert (t.state, t.engineer) == (State.TO_REDISPATCH, None)


# -- due times ----------------------------------------------------------------------


def test_due_time_comes_from_the_type_and_the_callback_has_its_own():
    t, _ = new_ticket(type="missed_upload", customer_id="C1", source="import", actor="import", now=T0)
    assert t.due_at == T0 + timedelta(days=1)
    assert not is_overdue(t, T0 + timedelta(days=1)) and is_overdue(t, T0 + timedelta(days=1, seconds=1))
    t, _ = apply(t, Dispatch(actor="a", engineer="e1"), T0)
    visit = T0 + timedelta(days=3)
    t, _ = apply(t, VisitSucceeded(actor="e1"), visit)
    assert t.callback_due_at == visit + DEFAULT_TYPES.callback_due
    assert not is_overdue(t, visit + timedelta(hours=1))          # the callback's own time counts now
    assert is_overdue(t, visit + timedelta(hours=25))
    t, _ = apply(t, Confirm(actor="a"), visit + timedelta(hours=30))
    assert not is_overdue(t, visit + timedelta(days=100))         # closed is never overdue
    t, _ = apply(t, Reopen(actor="a", reason="again"), visit + timedelta(days=10))
    assert t.due_at == visit + timedelta(days=11) and t.resolution is None and t.closed_at is None


def test_configured_types_and_their_errors():
    types = parse_ticket_types({"callback_due_hours": 4,
                                "types": {"repair": {"label": "Repair", "due_hours": 8}}})
    t, _ = new_ticket(type="repair", customer_id="C1", source="manual", actor="a", now=T0, types=types)
    assert t.due_at == T0 + timedelta(hours=8)
    with pytest.raises(UnknownTicketType, match=r"'installation'.*known: repair"):
        new_ticket(type="installation", customer_id="C1", source="manual", actor="a", now=T0, types=types)
    for doc, field_name in [({"types": {}}, "types"),
                            ({"types": {"Bad Name": {"due_hours": 1}}}, "types.Bad Name"),
                            ({"types": {"x": {"due_hours": 0}}}, "types.x.due_hours"),
                            ({"types": {"x": {"due_hours": True}}}, "types.x.due_hours"),
                            ({"types": {"x": {"due_hours": 1, "colour": 1}}}, "types.x"),
                            ({"types": {"x": {"due_hours": 1}}, "callback_due_hours": -1}, "callback_due_hours"),
                            ({"types": {"x": {"due_hours": 1}}, "extra": 1}, "extra")]:
        with pytest.raises(InvalidCommand) as err:
            parse_ticket_types(doc)
        assert err.value.field == field_name


# -- command data ------------------------------------------------------------------


@pytest.mark.parametrize("build, field_name", [
    (lambda: Dispatch(actor="a", engineer=""), "engineer"),
    (lambda: Dispatch(actor="a", engineer="eng 1; DROP TABLE tickets"), "engineer"),
    (lambda: SendToLead(actor="a", lead="x\r\nInjected: 1"), "lead"),
    (lambda: VisitFailed(actor="e", cause="weather", reason="rain"), "cause"),
    (lambda: VisitFailed(actor="e", cause="customer", reason="   "), "reason"),
    (lambda: Unsatisfied(actor="a", reason=""), "reason"),
    (lambda: Cancel(actor="a", reason="x\x00y"), "reason"),
    (lambda: Confirm(actor=""), "actor"),
    (lambda: Confirm(actor="a\nb"), "actor"),
    (lambda: Confirm(actor="a", note="x" * 5000), "note"),
])
def test_commands_refuse_bad_data_naming_the_field(build, field_name):
    with pytest.raises(InvalidCommand) as err:
        build()
    assert err.value.field == field_name


def test_notes_may_hold_quotes_and_line_breaks():
    c = Confirm(actor="agent1", note="O'Brien said \"fine\";\nline two\ttab")
    after, entry = apply(ticket_in(State.AWAITING_CALLBACK), c, T0)
    assert entry.note == c.note and after.state is State.CLOSED


def test_command_from_builds_commands_and_names_what_is_wrong():
    assert command_from("dispatch", {"actor": "a", "engineer": "e1"}) == Dispatch(actor="a", engineer="e1")
    assert command_from("visit_failed", {"actor": "e", "cause": "other", "reason": "r"}).kind == "visit_failed:other"
    for name, fields, field_name in [("teleport", {"actor": "a"}, "command"),
                                     ("dispatch", {"actor": "a"}, "engineer"),
                                     ("confirm", {"actor": "a", "engineer": "e"}, "engineer")]:
        with pytest.raises(InvalidCommand) as err:
            command_from(name, fields)
        assert err.value.field == field_name


def test_new_ticket_checks_its_fields():
    with pytest.raises(InvalidCommand, match="source"):
        new_ticket(type="repair", customer_id="C1", source="fax", actor="a", now=T0)
    with pytest.raises(InvalidCommand, match="now"):
        new_ticket(type="repair", customer_id="C1", source="call", actor="a", now=datetime(2026, 1, 1))
    with pytest.raises(InvalidCommand, match="region"):
        new_ticket(type="repair", customer_id="C1", source="call", actor="a", now=T0, region="north\r\n")


def test_the_documented_table_is_the_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "tickets.md").read_text(encoding="utf-8")
    section = doc.split("## Transitions", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip().strip("`") for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    assert {(State(s), k): State(t) for s, k, t in rows} == dict(TRANSITIONS)
    assert len(rows) == len(TRANSITIONS)


def test_ticket_types_load_from_a_toml_file_and_errors_name_the_file(tmp_path):
    from cti.errors import ConfigError
    from crm.ticket_store import load_ticket_types

    good = tmp_path / "types.toml"
    good.write_text('callback_due_hours = 6\n[types.fibre_install]\nlabel = "Fibre"\ndue_hours = 240\n')
    types = load_ticket_types(good)
    assert types.get("fibre_install").due == timedelta(days=10) and types.callback_due == timedelta(hours=6)
    bad = tmp_path / "bad.toml"
    bad.write_text('[types.repair]\ndue_hours = "soon"\n')
    with pytest.raises(ConfigError, match=r"bad.toml.*types.repair.due_hours"):
        load_ticket_types(bad)
    with pytest.raises(ConfigError, match="missing.toml"):
        load_ticket_types(tmp_path / "missing.toml")
