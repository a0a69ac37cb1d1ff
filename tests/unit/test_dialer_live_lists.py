"""dialer.live_lists: the diff that keeps a live list's leads in step with the tickets, and the
ticket command an agent's result becomes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.tickets import CallbackNoAnswer, Confirm, ResolveByPhone, Unsatisfied
from dialer.leads import State
from dialer.live_lists import (LIST_STATE, SOURCES, WITHDRAWABLE, Diff, InvalidSource, LinkedLead, ListEntry, diff,
                               dial_number, parse_source, safe_actor, ticket_command)


def entry(ticket: int, seq: int = 3, phones=("+4930555001",)) -> ListEntry:
    return ListEntry(ticket, seq, f"C-{ticket}", f"Customer {ticket}", tuple(phones))


def lead(lead_id: int, ticket: int, seq: int = 3, state: State = State.NEW) -> LinkedLead:
    return LinkedLead(lead_id, ticket, seq, state)


def test_a_ticket_on_the_list_without_a_lead_becomes_one_with_its_customers_first_number():
    d = diff([entry(7, phones=("+4930555002", "+4930555001"))], [])
    assert [(a.entry.ticket_id, a.phone) for a in d.adds] == [(7, "+4930555001")]
    assert d.withdrawals == () and d.no_phone == ()


def test_a_ticket_with_a_lead_for_its_stay_gets_none_whatever_the_leads_state():
    for state in State:
        assert diff([entry(7)], [lead(1, 7, state=state)]).empty, state


def test_a_new_stay_gets_a_new_lead_and_the_old_stays_undialed_lead_is_withdrawn():
    d = diff([entry(7, seq=9)], [lead(1, 7, seq=3, state=State.RETRY), lead(2, 7, seq=1, state=State.DONE)])
    assert [a.entry.stay for a in d.adds] == [(7, 9)]
    assert d.withdrawals == (1,)


def test_a_ticket_that_left_withdraws_only_leads_not_yet_dialed():
    leads = [lead(i, 10 + i, state=s) for i, s in enumerate(State, start=1)]
    d = diff([], leads)
    assert d.adds == ()
    assert set(d.withdrawals) == {x.lead_id for x in leads if x.state in WITHDRAWABLE}
    assert {State.NEW, State.RETRY} == WITHDRAWABLE


def test_a_customer_without_a_number_is_reported_not_added():
    d = diff([entry(7, phones=())], [])
    assert d.adds == () and d.no_phone == (7,)
    assert dial_number(["", "+1"]) == "+1" and dial_number([]) is None


def test_the_same_stay_listed_twice_is_added_once():
    assert len(diff([entry(7), entry(7)], []).adds) == 1


def test_sources_and_their_ticket_states():
    assert SOURCES == ("csv", "tickets_callback", "tickets_visit")
    assert {k: v.value for k, v in LIST_STATE.items()} == {"tickets_callback": "awaiting_callback",
                                                           "tickets_visit": "to_redispatch"}
    assert parse_source("tickets_visit") == "tickets_visit"
    for bad in ("", "CSV", "tickets", None, 3, ["csv"]):
        with pytest.raises(InvalidSource) as err:
            parse_source(bad)
        assert err.value.field == "source"


@settings(deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=3)))
def test_the_source_parser_reads_a_source_or_refuses_naming_the_field(value):
    try:
        assert parse_source(value) in SOURCES
    except InvalidSource as exc:
        assert exc.field == "source" and value not in SOURCES


def test_results_on_the_callback_list_become_the_ticket_machines_commands():
    def cmd(outcome, disposition=None):
        return ticket_command("tickets_callback", outcome=outcome, disposition=disposition, actor="ann", note="n")
    assert isinstance(cmd("answered", "confirmed"), Confirm)
    u = cmd("answered", "unsatisfied")
    assert isinstance(u, Unsatisfied) and u.reason and u.actor == "ann" and u.note == "n"
    for o in ("busy", "no_answer", "machine"):
        assert isinstance(cmd(o), CallbackNoAnswer)
    assert cmd("failed") is None and cmd("answered", "sale") is None and cmd("answered") is None


def test_results_on_the_visit_list_and_on_csv_campaigns():
    assert isinstance(ticket_command("tickets_visit", outcome="answered", disposition="resolved", actor="a"),
                      ResolveByPhone)
    assert ticket_command("tickets_visit", outcome="answered", disposition="confirmed", actor="a") is None
    assert ticket_command("tickets_visit", outcome="no_answer", disposition=None, actor="a") is None
    assert ticket_command("csv", outcome="answered", disposition="confirmed", actor="a") is None


def test_an_actor_the_ticket_machine_would_refuse_becomes_the_dialers_name():
    assert safe_actor("ann") == "ann"
    assert safe_actor("a\nb") == "dialer" and safe_actor("x" * 200) == "dialer" and safe_actor("") == "dialer"


# -- the diff's properties, over any list and any leads ------------------------------------------

stays = st.tuples(st.integers(1, 8), st.integers(1, 4))
numbers = st.lists(st.sampled_from(["+4930555001", "+4930555002"]), max_size=2)
# A ticket's customer has the same numbers wherever the ticket is listed.
entries = st.tuples(st.lists(stays, max_size=12), st.lists(numbers, min_size=8, max_size=8)).map(
    lambda t: [ListEntry(tk, seq, f"C{tk}", None, tuple(t[1][tk - 1])) for tk, seq in t[0]])
leads_of = st.lists(st.tuples(stays, st.sampled_from(list(State))), max_size=12)


def applied(leads: list[LinkedLead], d: Diff) -> list[LinkedLead]:
    """The campaign's leads once the shell wrote ``d``: adds are new leads, withdrawals done."""
    gone = set(d.withdrawals)
    out = [LinkedLead(x.lead_id, x.ticket_id, x.entry, State.DONE if x.lead_id in gone else x.state) for x in leads]
    nxt = max((x.lead_id for x in leads), default=0)
    for a in d.adds:
        nxt += 1
        out.append(LinkedLead(nxt, a.entry.ticket_id, a.entry.entry, State.NEW))
    return out


@settings(max_examples=400, deadline=None)
@given(entries, leads_of)
def test_the_diff_keeps_the_leads_in_step_and_a_second_pass_changes_nothing(es, raw):
    # One lead per stay at most, as the table's unique index keeps it.
    seen, leads = set(), []
    for i, (stay, state) in enumerate(raw, start=1):
        if stay not in seen:
            seen.add(stay)
            leads.append(LinkedLead(i, stay[0], stay[1], state))
    d = diff(es, leads)
    after = applied(leads, d)
    on_list = {e.stay for e in es}
    with_phone = {e.stay for e in es if e.phones}
    by_stay = {x.stay: x for x in after}
    # every stay on the list with a number has exactly one lead; no stay ever gets two
    assert len(by_stay) == len(after)
    assert with_phone <= set(by_stay)
    # no lead not yet dialed is left for a stay off the list
    assert not [x for x in after if x.state in WITHDRAWABLE and x.stay not in on_list]
    # leads dialing, answered or closed are never touched; only withdrawable ones are withdrawn
    before = {x.lead_id: x.state for x in leads}
    for x in after:
        if x.lead_id in before and x.lead_id not in d.withdrawals:
            assert x.state == before[x.lead_id]
    assert all(before[i] in WITHDRAWABLE for i in d.withdrawals)
    # a stay on the list never loses its undialed lead
    assert not set(d.withdrawals) & {x.lead_id for x in leads if x.stay in on_list}
    # idempotent: taking the diff again gives nothing to do
    assert diff(es, after).empty
