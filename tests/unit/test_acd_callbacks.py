"""Callback requests (acd.callbacks) and which routing configuration starts (acd.config_versions.choose_config)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd import callbacks
from acd.callbacks import CallbackError, after_attempt, agent_missed, dial_string
from acd.config_versions import ConfigVersion, choose_config
from cti import ami_inputs

from tests.transcripts import events

# The dialplan's side of callbacks, captured from the sandbox (scripts/capture-ami.py callback):
# a request from context cti-callback whose wait began 30 s before, and three agent legs.
CAPTURED = events("callback")
REQUEST = next(dict(f.headers) for f in CAPTURED if f.headers.get("UserEvent") == "CtiCallbackRequest")
NOW = float(REQUEST["Since"]) + 30


def parse_request(headers: dict[str, str], now: float, default_queue: str) -> callbacks.Callback:
    """The request's headers through the typed edge (``cti.ami_inputs``), then the rules."""
    typed = ami_inputs.parse(headers)
    assert isinstance(typed, ami_inputs.CallbackRequest)
    return callbacks.parse_request(typed, now, default_queue)


def test_a_request_keeps_the_time_its_wait_began():
    cb = parse_request(REQUEST, NOW, "support")
    assert (cb.callback_id, cb.number, cb.queue, cb.skills, cb.priority, cb.customer_id) == \
        ("capreq", "+442071000001", "care", "", None, None)
    assert REQUEST["Skills"] == ""  # QUOTE() of an unset variable is empty
    assert (cb.since, cb.requested_at, cb.status, cb.attempts) == (NOW - 30, NOW, "pending", 0)


def test_a_request_from_the_ivr_has_no_wait_yet_and_may_name_no_queue():
    cb = parse_request({**REQUEST, "Since": "", "Queue": "", "CtiPriority": "5", "Customer": "C-17",
                        "Skills": '"care:3"'}, NOW, "support")
    assert (cb.since, cb.queue, cb.priority, cb.customer_id, cb.skills) == (NOW, "support", 5, "C-17", "care:3")


@pytest.mark.parametrize("since", [str(NOW + 60), str(NOW - 200_000), "soon"])
def test_a_wait_start_in_the_future_too_old_or_garbled_is_taken_as_now(since):
    assert parse_request({**REQUEST, "Since": since}, NOW, "support").since == NOW


@pytest.mark.parametrize("headers, message", [
    ({"Number": ""}, "callback number must be 3 to 20 digits"),
    ({"Number": "12"}, "callback number must be 3 to 20 digits"),
    ({"Number": "+44 20 7100"}, "callback number must be 3 to 20 digits"),
    ({"Number": "123;Dial(x)"}, "callback number must be 3 to 20 digits"),
    ({"Queue": "care\r\nAction: Hangup"}, "bad queue name"),
    ({"CtiPriority": "high"}, "priority must be an integer"),
    ({"Customer": "x'; DROP TABLE customers;--"}, "bad customer id"),
    ({"Linkedid": "", "Uniqueid": ""}, "without a usable call id"),
])
def test_a_bad_request_is_refused_saying_what_is_wrong(headers, message):
    with pytest.raises(CallbackError, match=message):
        parse_request({**REQUEST, **headers}, NOW, "support")


@given(st.text(max_size=40))
def test_any_number_either_parses_to_digits_or_is_refused(number):
    try:
        cb = parse_request({**REQUEST, "Number": number}, NOW, "support")
    except CallbackError:
        return
    assert cb.number.lstrip("+").isdigit() and cb.number.isascii()


def test_the_dial_string_takes_the_number_and_refuses_anything_else():
    assert dial_string("Local/{number}@cti-outbound", "+4420") == "Local/+4420@cti-outbound"
    with pytest.raises(CallbackError):
        dial_string("Local/{number}@cti-outbound", "4420&PJSIP/evil")


def test_an_answered_attempt_connects():
    cb = after_attempt(parse_request(REQUEST, NOW, "s"), "ANSWER", NOW + 5, max_attempts=3, retry_s=60)
    assert (cb.status, cb.attempts, cb.last_result, cb.not_before) == ("connected", 1, "ANSWER", None)


def test_unanswered_attempts_wait_to_try_again_until_the_last_one():
    cb = parse_request(REQUEST, NOW, "s")
    cb = after_attempt(cb, "NOANSWER", NOW + 5, max_attempts=2, retry_s=60)
    assert (cb.status, cb.attempts, cb.not_before) == ("pending", 1, NOW + 65)
    cb = after_attempt(cb, "BUSY", NOW + 70, max_attempts=2, retry_s=60)
    assert (cb.status, cb.attempts, cb.last_result, cb.not_before) == ("failed", 2, "BUSY", None)


def test_an_agent_who_misses_a_callback_costs_it_no_attempt():
    cb = after_attempt(parse_request(REQUEST, NOW, "s"), "NOANSWER", NOW, max_attempts=3, retry_s=0)
    missed = agent_missed(cb)
    assert (missed.status, missed.attempts, missed.agent_id) == ("pending", 1, None)


# -- which configuration starts -----------------------------------------------------

def version(n: int, doc: dict, source: str) -> ConfigVersion:
    return ConfigVersion(n, doc, source, datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_the_file_starts_and_is_recorded_the_first_time():
    assert choose_config({"a": 1}, None, None) == "file"


def test_an_edited_file_wins_over_changes_made_through_the_api():
    api = version(3, {"a": 3}, "api:admin")
    assert choose_config({"a": 2}, api, version(1, {"a": 1}, "file:x.toml")) == "file"


def test_changes_made_through_the_api_outlive_a_restart_while_the_file_is_unchanged():
    api = version(3, {"a": 3}, "api:admin")
    assert choose_config({"a": 1}, api, version(1, {"a": 1}, "file:x.toml")) == "stored"


def test_an_unchanged_file_that_is_also_the_newest_version_is_not_recorded_again():
    v = version(1, {"a": 1}, "file:x.toml")
    assert choose_config({"a": 1}, v, v) == "file-recorded"


def test_agent_legs_report_as_the_service_expects():
    """What acd.callback_shell matches on: OriginateResponse by our ChannelId with Reason 3 for
    an agent who never answered; CtiCallbackResult naming the request with the Dial status."""
    responses = {f.headers["Uniqueid"]: (f.headers["Response"], f.headers["Reason"])
                 for f in CAPTURED if f.headers.get("Event") == "OriginateResponse"}
    assert responses["capreq-cb1"] == ("Success", "4")
    assert responses["capreq-cb2"] == ("Failure", "3")
    results = [(f.headers["Callback"], f.headers["Status"], f.headers["Uniqueid"]) for f in CAPTURED
               if f.headers.get("UserEvent") == "CtiCallbackResult"]
    assert ("capreq", "ANSWER", "capreq-cb1") in results
    assert all(leg != "capreq-cb2" for _, _, leg in results)  # never answered: never in the dialplan
