"""The note a campaign result leaves on the customer record (dialer.writeback.result_note, pure)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from dialer.writeback import NOTE_MAX, result_note

SURVEY = [{"id": "happy", "text": "Happy with your router?", "type": "yes_no", "branches": {"no": "why"}},
          {"id": "plan", "text": "Which plan?", "type": "choice", "options": ["fibre", "copper"], "next": "end"},
          {"id": "why", "text": "What is wrong?"}]


def note(**kw):
    base = dict(outcome="answered", disposition="sale", callback_at=None, opt_out=False, survey=SURVEY,
                answers={}, lead_state="done")
    return result_note("Router survey", **{**base, **kw})


def test_the_note_says_the_campaign_outcome_disposition_and_the_answers_on_their_path():
    text = note(answers={"happy": "no", "why": "drops at night", "plan": "fibre"})
    assert text.splitlines() == ["Campaign 'Router survey': answered, disposition sale (lead now done).",
                                 "Survey:", "- Happy with your router? no", "- What is wrong? drops at night"]


def test_a_callback_and_an_opt_out_are_said():
    at = datetime(2026, 12, 8, 11, 30, tzinfo=timezone(timedelta(hours=1)))
    text = note(disposition=None, callback_at=at, lead_state="retry")
    assert "Callback asked for 2026-12-08 10:30 UTC." in text and "(lead now retry)" in text
    assert "Opted out: the number is on the do-not-call list." in note(opt_out=True, lead_state="do_not_call")


def test_answers_to_questions_not_in_the_survey_are_kept_under_their_id():
    assert note(survey=None, answers={"legacy": "kept"}).endswith("Survey:\n- legacy: kept")


def test_a_preview_dial_that_did_not_connect_says_how_it_ended():
    assert note(outcome="no_answer", disposition=None, lead_state="retry").startswith(
        "Campaign 'Router survey': no answer (lead now retry).")


@given(answers=st.dictionaries(st.sampled_from(["happy", "plan", "why", "x"]), st.text(max_size=500)),
       disposition=st.one_of(st.none(), st.text(max_size=64)), name=st.text(max_size=100))
def test_an_answer_cannot_fake_a_line_and_the_note_fits(answers, disposition, name):
    text = result_note(name, outcome="answered", disposition=disposition, callback_at=None, opt_out=False,
                       survey=SURVEY, answers=answers, lead_state="done")
    assert len(text) <= NOTE_MAX
    # One line for the head, one per answer listed, and "Survey:": no answer adds a line of its own.
    listed = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(text.splitlines()) == 1 + (1 + len(listed) if answers else 0)


def test_a_long_survey_is_cut_to_what_a_note_holds():
    survey = [{"id": f"q{i}", "text": "Q" * 300} for i in range(50)]
    text = note(survey=survey, answers={f"q{i}": "A" * 500 for i in range(50)})
    assert len(text) == NOTE_MAX and text.endswith("…")


def test_a_new_number_is_said_with_what_became_of_it():
    assert "New number given: +442079460999, added to the record." in note(new_phone="+442079460999")
    assert "already on the record." in note(new_phone="+442079460999", phone_status="already")
    assert "not added: it is another customer's number." in note(new_phone="+442079460999", phone_status="other")
    assert "New number" not in note()
