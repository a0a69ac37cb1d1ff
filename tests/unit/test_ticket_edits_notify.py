"""Ticket edits outside the cycle, who may give which command, the dispatch rule for
engineers, and the dispatch notification (message, log line, senders)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from api.ticket_routes import commands_for, may_command, may_edit
from crm.engineers import Engineer, check_dispatch, validate
from crm.ticket_notify import LogSender, dispatch_notification, log_fields
from crm.tickets import (
    TRANSITIONS, Dispatch, FailureCause, InvalidCommand, State, VisitFailed, VisitSucceeded, apply, edit,
    new_ticket,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def fresh(**kw):
    t, _ = new_ticket(type="repair", customer_id="C-1", source="call", actor="ada", now=T0, region="north", **kw)
    return t.__class__(**{**{f: getattr(t, f) for f in t.__dataclass_fields__}, "ticket_id": 7})


def test_an_edit_changes_only_the_given_fields_keeps_the_state_and_is_audited_with_before_and_after():
    t = fresh()
    after, entry = edit(t, {"title": "Router dead", "priority": "high", "notes": t.notes}, actor="ada",
                        now=T0 + timedelta(minutes=5), note="customer called again")
    assert (after.title, after.priority, after.state, after.revision) == ("Router dead", "high", State.OPEN, 2)
    assert entry.command == "edit" and entry.from_state is entry.to_state is State.OPEN
    assert entry.data == {"title": ["Repair", "Router dead"], "priority": ["normal", "high"]}
    assert (entry.seq, entry.actor, entry.note) == (2, "ada", "customer called again")


@pytest.mark.parametrize("changes, field", [
    ({"state": "closed"}, "state"),
    ({"engineer": "eng1"}, "engineer"),
    ({"priority": "asap"}, "priority"),
    ({"title": "  "}, "title"),
    ({"due_at": T0 - timedelta(hours=1)}, "due_at"),
    ({"due_at": datetime(2026, 12, 1)}, "due_at"),
    ({"title": "Repair"}, "body"),
])
def test_a_bad_or_empty_edit_is_refused_naming_the_field(changes, field):
    with pytest.raises(InvalidCommand) as exc:
        edit(fresh(), changes, actor="ada", now=T0)
    assert exc.value.field == field


def test_a_closed_ticket_keeps_its_due_time_but_takes_notes():
    from crm.tickets import ResolveByPhone
    closed, _ = apply(fresh(), ResolveByPhone(actor="ada"), T0)
    with pytest.raises(InvalidCommand, match="closed"):
        edit(closed, {"due_at": T0 + timedelta(days=9)}, actor="sam", now=T0)
    after, _ = edit(closed, {"notes": "reset explained"}, actor="ada", now=T0)
    assert after.notes == "reset explained" and after.state is State.CLOSED


def test_agents_give_every_command_but_cancel_and_never_move_the_due_time():
    kinds = {k for _, k in TRANSITIONS}
    assert {k for k in kinds if not may_command("agent", k)} == {"cancel"}
    assert all(may_command(r, k) for r in ("supervisor", "admin") for k in kinds)
    assert not may_edit("agent", "due_at") and may_edit("agent", "notes") and may_edit("supervisor", "due_at")
    assert "cancel" not in commands_for("agent", State.DISPATCHED)
    assert commands_for("supervisor", State.DISPATCHED)[-1] == "cancel"


NORTH = Engineer("eng-n1", "Nora", "north", "nora@example.test", True)


@pytest.mark.parametrize("engineer, message", [
    (None, "unknown engineer"),
    (Engineer("eng-n1", "Nora", "north", "", False), "not active"),
    (Engineer("eng-n1", "Nora", "south", "", True), "works region 'south'"),
])
def test_a_dispatch_needs_a_known_active_engineer_of_the_tickets_region(engineer, message):
    with pytest.raises(InvalidCommand, match=message) as exc:
        check_dispatch(fresh(), engineer, "eng-n1")
    assert exc.value.field == "engineer"


def test_a_ticket_without_a_region_goes_to_any_active_engineer():
    t = fresh()
    check_dispatch(t.__class__(**{**{f: getattr(t, f) for f in t.__dataclass_fields__}, "region": None}),
                   Engineer("e", "E", "south", "", True), "e")
    check_dispatch(t, NORTH, "eng-n1")


@pytest.mark.parametrize("args, field", [
    (("bad id", "N", "north", ""), "engineer_id"), (("e1", "", "north", ""), "name"),
    (("e1", "N", "no rth", ""), "region"), (("e1", "N", "north", "a\nb"), "contact")])
def test_an_engineer_with_a_bad_field_is_refused_naming_it(args, field):
    with pytest.raises(InvalidCommand) as exc:
        validate(*args)
    assert exc.value.field == field


CUSTOMER = {"customer_id": "C-1", "name": "Grace Hopper", "phones": ["+4930555077"],
            "address": {"line1": "Main St 1", "city": "Berlin", "region": "north"}}


def test_a_dispatch_and_a_revisit_call_for_a_message_other_changes_do_not():
    t = fresh()
    sent, e1 = apply(t, Dispatch(actor="lead", engineer="eng-n1", note="bring a modem"), T0)
    n = dispatch_notification(sent, e1, NORTH, CUSTOMER)
    assert n is not None and (n.id, n.reason, n.event, n.note) == ("ticket-7:2", "dispatch", "ticket.dispatched",
                                                                   "bring a modem")
    assert n.engineer["contact"] == "nora@example.test" and n.customer["address"]["city"] == "Berlin"
    again, e2 = apply(sent, VisitFailed(actor="eng-n1", cause=FailureCause.ENGINEER, reason="no part"), T0)
    assert dispatch_notification(again, e2, NORTH, CUSTOMER).reason == "revisit"
    done, e3 = apply(again, VisitSucceeded(actor="eng-n1"), T0)
    assert dispatch_notification(done, e3, NORTH, CUSTOMER) is None
    freed, e4 = apply(sent, VisitFailed(actor="eng-n1", cause=FailureCause.CUSTOMER, reason="away"), T0)
    assert dispatch_notification(freed, e4, NORTH, CUSTOMER) is None


async def test_the_log_sender_logs_ids_only_never_the_customer_or_the_contact():
    sent, entry = apply(fresh(), Dispatch(actor="lead", engineer="eng-n1"), T0)
    n = dispatch_notification(sent, entry, NORTH, CUSTOMER)
    with capture_logs() as logs:
        await LogSender().send(n)
    assert logs == [{"event": "ticket notification", "log_level": "info", **log_fields(n)}]
    text = repr(logs)
    for secret in ("Grace", "+4930555077", "Main St", "nora@example.test"):
        assert secret not in text
    assert logs[0]["engineer_id"] == "eng-n1" and logs[0]["ticket_id"] == 7
