"""Messaging's pure core (signatures, the inbound shape, numbers, delivery states, the
rate limit, the callback form's checks) and the public routes fuzzed without a database."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.db import API_DB, ApiDb
from cti.config import load_settings
from cti.daemon import CORE
from messaging import callback_form as form
from messaging import core
from messaging.service import MESSAGING, setup_messaging

SECRET = "s3cret-shared-with-the-provider"
NOW = 1_767_225_600.0


def body(**over) -> bytes:
    data = {"message_id": "SM1", "from": "+442079460001", "to": "+442079460999", "text": "Hello",
            "timestamp": "2026-01-01T00:00:00Z"}
    data.update(over)
    return json.dumps(data).encode()


def headers(raw: bytes, ts: int = int(NOW), secret: str = SECRET) -> dict[str, str]:
    return core.signed_headers(secret, ts, raw)


# -- signatures ---------------------------------------------------------------------------


def test_a_signed_body_verifies_and_returns_its_timestamp():
    raw = body()
    assert core.verify(SECRET, headers(raw), raw, NOW) == int(NOW)


def test_the_signature_covers_the_timestamp_so_a_fresh_timestamp_on_an_old_signature_fails():
    raw = body()
    h = headers(raw, int(NOW) - 1000)
    h[core.TIMESTAMP_HEADER] = str(int(NOW))
    with pytest.raises(core.Refused, match="does not match"):
        core.verify(SECRET, h, raw, NOW)


@pytest.mark.parametrize("change, error_id, reason", [
    (lambda h: h.pop(core.SIGNATURE_HEADER), "bad_signature", "X-CTI-Signature header is missing"),
    (lambda h: h.pop(core.TIMESTAMP_HEADER), "bad_signature", "X-CTI-Timestamp header is missing"),
    (lambda h: h.update({core.TIMESTAMP_HEADER: "soon"}), "bad_signature", "whole epoch seconds"),
    (lambda h: h.update({core.TIMESTAMP_HEADER: str(int(NOW) - 301)}), "stale_request", "more than 300 s"),
    (lambda h: h.update({core.TIMESTAMP_HEADER: str(int(NOW) + 301)}), "stale_request", "more than 300 s"),
    (lambda h: h.update({core.SIGNATURE_HEADER: "md5=abc"}), "bad_signature", "sha256=<64 hex digits>"),
    (lambda h: h.update({core.SIGNATURE_HEADER: "sha256=" + "0" * 64}), "bad_signature", "does not match"),
])
def test_each_bad_signature_is_refused_with_its_reason(change, error_id, reason):
    raw = body()
    h = headers(raw)
    change(h)
    with pytest.raises(core.Refused) as exc:
        core.verify(SECRET, h, raw, NOW)
    assert (exc.value.status, exc.value.error_id) == (401, error_id)
    assert reason in exc.value.message and SECRET not in exc.value.message


def test_a_changed_body_or_another_secret_does_not_verify():
    raw = body()
    with pytest.raises(core.Refused, match="does not match"):
        core.verify(SECRET, headers(raw), body(text="Hellp"), NOW)
    with pytest.raises(core.Refused, match="does not match"):
        core.verify(SECRET, headers(raw, secret="other"), raw, NOW)


# -- the inbound shape and numbers -----------------------------------------------------------------


def test_an_inbound_message_is_parsed_with_its_numbers_in_e164():
    msg = core.parse_inbound(body(**{"from": "020 7946 0001"}), "GB")
    assert msg == core.Inbound("SM1", "+442079460001", "+442079460999", "Hello", NOW)


def test_a_sender_name_is_kept_as_our_number_but_the_customer_needs_a_real_number():
    assert core.parse_inbound(body(to="ACME")).our_number == "ACME"
    with pytest.raises(core.Refused, match="from: give the number in international form"):
        core.parse_inbound(body(**{"from": "020 7946 0001"}))
    with pytest.raises(core.Refused, match="from: this number does not exist"):
        core.parse_inbound(body(**{"from": "+44 20 1234"}))


@pytest.mark.parametrize("raw, status, reason", [
    (b"not json", 400, "not JSON"),
    (b"[1]", 422, "a JSON object"),
    (body(message_id=""), 422, "message_id"),
    (body(message_id="a b"), 422, "message_id"),
    (body(text=""), 422, "text"),
    (body(text="x" * 4097), 422, "text"),
    (body(timestamp="2026-01-01T00:00:00"), 422, "time zone"),
    (body(timestamp="yesterday"), 422, "timestamp"),
    (body(text="a\x00b"), 422, "NUL"),
])
def test_a_bad_inbound_body_is_refused_naming_the_field(raw, status, reason):
    with pytest.raises(core.Refused) as exc:
        core.parse_inbound(raw, "GB")
    assert exc.value.status == status and reason in exc.value.message


def test_premium_rate_numbers_are_not_callable():
    assert core.normalise_number("+44 7911 123456") == "+447911123456"
    with pytest.raises(core.NumberError, match="premium-rate"):
        core.normalise_number("+44 909 8790000", callable_only=True)


_text = st.text(max_size=80)
_headers = st.dictionaries(st.sampled_from([core.SIGNATURE_HEADER, core.TIMESTAMP_HEADER, "X-Other"]),
                           st.one_of(_text, st.just("sha256=" + "a" * 64), st.integers().map(str)), max_size=3)


@settings(max_examples=500, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=300), st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["message_id", "from", "to", "text", "timestamp", "x"]),
    st.one_of(_text, st.integers(), st.none(), st.floats(allow_nan=False), st.lists(st.integers()))))),
    h=_headers, signed=st.booleans())
def test_random_bodies_and_headers_are_either_accepted_or_refused_with_a_4xx(raw, h, signed):
    if signed:
        h = {**h, **headers(raw)}
    try:
        core.verify(SECRET, h, raw, NOW)
        msg = core.parse_inbound(raw, "GB")
    except core.Refused as exc:
        assert 400 <= exc.status < 500 and exc.error_id and exc.message
        return
    assert signed and msg.number.startswith("+") and msg.text


# -- delivery states and the rate limit ------------------------------------------------------------


def test_a_reply_is_sent_on_2xx_retried_with_backoff_then_failed():
    d = core.after_attempt(0, 500, None, NOW, max_attempts=3, retry_s=2)
    assert (d.state, d.attempts, d.next_at, d.error) == ("pending", 1, NOW + 2, "http_500")
    d = core.after_attempt(1, None, "connect_failed", NOW, max_attempts=3, retry_s=2)
    assert (d.state, d.attempts, d.next_at, d.error) == ("pending", 2, NOW + 4, "connect_failed")
    d = core.after_attempt(2, 503, None, NOW, max_attempts=3, retry_s=2)
    assert (d.state, d.attempts, d.next_at) == ("failed", 3, None)
    assert core.after_attempt(2, 204, None, NOW, max_attempts=3, retry_s=2) == core.Delivery("sent", 3, None, None)


@given(times=st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=200))
def test_a_key_never_gets_more_than_its_burst_plus_its_rate(times):
    limit = core.RateLimit(rate=0.5, burst=3)
    times = sorted(times)
    granted = sum(1 for t in times if limit.take("a", t) == 0.0)
    assert granted <= 3 + (times[-1] - times[0]) * 0.5 + 1e-9


def test_a_refused_request_is_told_how_long_to_wait_and_keys_are_bounded():
    limit = core.RateLimit(rate=1 / 60, burst=1, max_keys=2)
    assert limit.take("a", 0) == 0.0
    assert limit.take("a", 30) == pytest.approx(30)
    limit.take("b", 0)
    limit.take("c", 0)
    assert len(limit) == 2


# -- the callback form ---------------------------------------------------------------------------


def fill(**over) -> form.CallbackFormBody:
    return form.CallbackFormBody(**{"name": "Ada  Lovelace", "number": "020 7946 0001", **over})


def test_a_callback_request_is_planned_with_its_number_in_e164():
    wanted = form.plan(fill(), NOW, region="GB")
    assert (wanted.name, wanted.number, wanted.not_before, wanted.bot) == ("Ada Lovelace", "+442079460001", None, False)
    assert wanted.callback_id.startswith("web-")


def test_a_preferred_time_holds_the_callback_back_and_must_be_within_a_week():
    at = datetime.fromtimestamp(NOW, timezone.utc) + timedelta(hours=3)
    assert form.plan(fill(preferred=at.isoformat()), NOW, region="GB").not_before == NOW + 3 * 3600
    past = datetime.fromtimestamp(NOW, timezone.utc) - timedelta(hours=3)
    assert form.plan(fill(preferred=past.isoformat()), NOW, region="GB").not_before is None
    with pytest.raises(form.FormError, match="preferred: at most 7 days"):
        form.plan(fill(preferred=(at + timedelta(days=7)).isoformat()), NOW, region="GB")
    with pytest.raises(form.FormError, match="time zone"):
        form.plan(fill(preferred="2026-01-01T10:00:00"), NOW, region="GB")


@pytest.mark.parametrize("over, field", [
    ({"number": "12"}, "number"), ({"number": "+44 909 8790000"}, "number"), ({"name": "<script>"}, "name"),
    ({"number": "+33 1 42 68 53 00"}, "number"), ({"preferred": "tomorrow"}, "preferred"),
])
def test_a_bad_form_names_its_field(over, field):
    with pytest.raises(form.FormError) as exc:
        form.plan(fill(**over), NOW, region="GB", countries=("GB",))
    assert exc.value.field == field


def test_a_filled_honeypot_is_a_bot():
    assert form.plan(fill(website="http://spam"), NOW).bot


# -- the public routes, fuzzed (no database: a valid request gets 503) ------------------------------


class Harness:
    """The messaging routes on a bare app with no database, driven from sync hypothesis tests."""

    def __init__(self, **over) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        values = dict(messaging_secret=SECRET, messaging_region="GB", callback_form_queue="support", hooks=False,
                      database_url="postgresql://nobody@127.0.0.1:1/none")
        values.update(over)
        app[CORE] = SimpleNamespace(settings=load_settings(**values))   # the one part of the core used
        app[API_DB] = ApiDb()
        setup_messaging(app)
        self.client = TestClient(TestServer(app, host="127.0.0.1"), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def post(self, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        async def go():
            async with self.client.post(path, data=data, headers=headers) as r:
                return r.status, await r.json()
        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


def test_the_inbound_route_refuses_a_bad_signature_with_its_reason(harness):
    raw = body()
    h = headers(raw, int(time.time()), secret="wrong")
    status, answer = harness.post("/api/messaging/inbound", raw, h)
    assert (status, answer["error_id"]) == (401, "bad_signature") and "does not match" in answer["message"]
    status, answer = harness.post("/api/messaging/inbound", raw, headers(raw, int(time.time())))
    assert (status, answer["error_id"]) == (503, "unavailable")      # valid: it got as far as the database
    status, answer = harness.post("/api/messaging/inbound", b"x" * (core.BODY_MAX + 1), h)
    assert status == 413


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=400), h=_headers, signed=st.booleans(),
       ctype=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_random_inbound_requests_never_get_a_5xx_other_than_no_database(harness, raw, h, signed, ctype):
    h = {k: v for k, v in h.items() if v.isprintable() and v.isascii()}
    if signed:
        h = {**h, **headers(raw, int(time.time()))}
    h["Content-Type"] = ctype
    harness.client.server.app[MESSAGING].inbound_limit = core.RateLimit(rate=1e6, burst=10**6)
    status, answer = harness.post("/api/messaging/inbound", raw, h)
    assert 400 <= status < 500 or (status, answer["error_id"]) == (503, "unavailable"), (status, answer)
    assert answer["error_id"] and answer["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=st.dictionaries(st.sampled_from(["name", "number", "preferred", "website", "x"]),
                           st.one_of(_text, st.integers(), st.none(), st.booleans()), max_size=5))
def test_random_callback_forms_get_a_clear_4xx_or_reach_the_acd(harness, doc):
    service = harness.client.server.app[MESSAGING]
    service.form_limit = core.RateLimit(rate=1e6, burst=10**6)
    service.form_total = core.RateLimit(rate=1e6, burst=10**6)
    status, answer = harness.post("/api/callback-requests", json.dumps(doc).encode(),
                                  {"Content-Type": "application/json"})
    # No ACD on this bare app: a request that passes every check gets 503; a honeypot one 202.
    assert status in (202, 400, 409, 413, 415, 422, 503), (status, answer)
    if status != 202:
        assert answer["error_id"] and answer["message"]


def test_the_callback_form_is_rate_limited_per_address(harness):
    service = harness.client.server.app[MESSAGING]
    service.form_limit = core.RateLimit(rate=1 / 120, burst=3)
    service.form_total = core.RateLimit(rate=1.0, burst=60)
    answers = [harness.post("/api/callback-requests", json.dumps({"name": "A", "number": "12"}).encode(),
                            {"Content-Type": "application/json"}) for _ in range(4)]
    assert [s for s, _ in answers] == [422, 422, 422, 429]
    assert answers[0][1]["details"][0]["field"] == "body.number"
    assert "try again in" in answers[3][1]["message"]


async def test_a_new_conversation_is_filed_as_a_message_task_of_its_queue():
    from messaging.service import ConversationOpened, file_as_task
    filed: list[tuple[str, ...]] = []

    async def file_task(channel: str, queue: str, customer_ref: str, subject: str, ref: str) -> str:
        filed.append((channel, queue, customer_ref, subject, ref))
        return "message-1"

    filer = file_as_task(file_task)
    opened = ConversationOpened(conversation_id=7, number="+447700900123", our_number="+441234567890",
                                customer_id=None, text="  my\\nrouter   is down " + "x" * 200, queue="sms")
    assert await filer(opened) == "message-1"
    channel, queue, customer, subject, ref = filed[0]
    assert (channel, queue, customer, ref) == ("message", "sms", "+447700900123", "conversation-7")
    assert subject.startswith("my\\nrouter is down x") and len(subject) == 80
    await filer(ConversationOpened(conversation_id=8, number="+447700900123", our_number="+441234567890",
                                   customer_id="c-42", text="hi", queue="sms"))
    assert filed[1][2] == "c-42"              # the customer when the number is known
