"""A standby's shadow follows the leader's callback requests and configuration versions
(acd/follow.py ``callback_steps``, ``config_to_follow``; the shell in acd/shadow.py), so
that a takeover keeps them: callbacks offered in their place, the leader's configuration."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from acd import follow
from acd.callbacks import CONNECTED, DIALING, FAILED, PENDING, Callback
from acd.follow import CallbackStep, HeldCallback, callback_steps
from tests.unit.test_acd_shadow import CONFIG, RowsPool, _chan, _shadow, _sr, queued

NOW = 1_700_000_000.0


def cb(status: str = PENDING, attempts: int = 0, agent: str | None = None, not_before: float | None = None,
       cid: str = "cb1") -> Callback:
    return Callback(cid, "+3312345678", "q", since=NOW - 100, requested_at=NOW - 90, status=status,
                    attempts=attempts, agent_id=agent, not_before=not_before)


def kinds(steps: list[CallbackStep]) -> list[tuple[str, str | None]]:
    return [(s.kind, s.agent) for s in steps]


def test_a_new_request_waits_now_or_until_its_time_and_a_waiting_caller_hands_it_its_place():
    assert kinds(callback_steps(cb(), None, NOW)) == [("enter", None)]
    assert kinds(callback_steps(cb(not_before=NOW + 60), None, NOW)) == [("later", None)]
    assert kinds(callback_steps(cb(), HeldCallback("caller"), NOW)) == [("convert", None)]
    assert kinds(callback_steps(cb(), HeldCallback("waiting"), NOW)) == [("update", None)]


def test_the_leaders_offer_reserves_its_agent_and_what_became_of_it_follows():
    ringing = HeldCallback("ringing", "a1", 0)
    assert kinds(callback_steps(cb(DIALING, agent="a1"), HeldCallback("waiting"), NOW)) == [("offered", "a1")]
    assert callback_steps(cb(DIALING, agent="a1"), ringing, NOW) == []               # already known
    # Offered again: to another agent; to the same one after a try that failed (it took it).
    assert kinds(callback_steps(cb(DIALING, agent="a2"), ringing, NOW)) == [("offered", "a2")]
    assert kinds(callback_steps(cb(DIALING, 1, "a1"), ringing, NOW)) == [("answered", "a1"), ("offered", "a1")]
    # Pending again with as many tries: the agent missed it; one more try: the agent took it.
    assert kinds(callback_steps(cb(PENDING), ringing, NOW)) == [("missed", "a1")]
    assert kinds(callback_steps(cb(PENDING, 1, not_before=NOW + 300), ringing, NOW)) == [("answered", "a1"),
                                                                                          ("later", None)]
    assert kinds(callback_steps(cb(CONNECTED, 1, "a1"), ringing, NOW)) == [("answered", "a1"), ("leave", None)]


def test_a_dialing_row_never_seen_waiting_enters_first_and_an_end_never_seen_ringing_is_offered_first():
    assert kinds(callback_steps(cb(DIALING, agent="a2"), None, NOW)) == [("enter", None), ("offered", "a2")]
    assert kinds(callback_steps(cb(FAILED, 3, "a2"), HeldCallback("waiting", None, 2), NOW)) == [
        ("offered", "a2"), ("answered", "a2"), ("leave", None)]
    assert callback_steps(cb(CONNECTED, 1, "a2"), None, NOW) == []     # over before this node saw it
    assert kinds(callback_steps(cb("cancelled"), HeldCallback("waiting"), NOW)) == [("leave", None)]


def _apply(held: HeldCallback | None, row: Callback, steps: list[CallbackStep]) -> HeldCallback | None:
    """What the shell holds after the steps (the shell's rules, without a router)."""
    for s in steps:
        if s.kind in ("enter", "later", "update", "convert"):
            held = HeldCallback("waiting", None, row.attempts)
        elif s.kind == "offered":
            held = HeldCallback("ringing", s.agent, row.attempts)
        elif s.kind in ("missed", "answered"):
            held = HeldCallback("waiting", None, row.attempts)
        elif s.kind == "leave":
            held = None
    return held


_MOVES = st.lists(st.sampled_from(["offer_a1", "offer_a2", "miss", "try_fails", "try_connects", "try_gives_up"]),
                  max_size=12)


@given(moves=_MOVES, reads=st.lists(st.booleans(), min_size=13, max_size=13), caller=st.booleans())
def test_a_follower_reading_any_of_the_leaders_rows_holds_the_request_as_the_leader_has_it(moves, reads, caller):
    """The leader's request goes through random attempts; the table keeps only its latest
    row, and the follower reads some of them (always the last): it then holds it as the
    leader does: waiting with the leader's tries, ringing the leader's agent, or gone."""
    rows = [cb()]
    for m in moves:
        last = rows[-1]
        if last.status in (CONNECTED, FAILED):
            break
        if m.startswith("offer") and last.status == PENDING:
            rows.append(replace(last, status=DIALING, agent_id=m[-2:]))
        elif m == "miss" and last.status == DIALING:
            rows.append(replace(last, status=PENDING, agent_id=None))
        elif m.startswith("try") and last.status == DIALING:
            n = last.attempts + 1
            status = {"try_fails": PENDING, "try_connects": CONNECTED, "try_gives_up": FAILED}[m]
            rows.append(replace(last, status=status, attempts=n,
                                not_before=NOW + 60 if status == PENDING else None))
    held: HeldCallback | None = HeldCallback("caller") if caller else None
    read = [r for r, keep in zip(rows, reads) if keep] + [rows[-1]]
    for row in read:
        held = _apply(held, row, callback_steps(row, held, NOW))
    final = rows[-1]
    if final.status == PENDING:
        assert held == HeldCallback("waiting", None, final.attempts)
    elif final.status == DIALING:
        assert held == HeldCallback("ringing", final.agent_id, final.attempts)
    else:
        assert held is None


def test_only_a_newer_version_saved_through_the_api_is_followed():
    assert follow.config_to_follow(3, [(4, "api:boss"), (6, "api:ann"), (7, "file:/etc/acd.toml")]) == 6
    assert follow.config_to_follow(6, [(5, "api:boss")]) is None
    assert follow.config_to_follow(None, [(2, "api:boss")]) == 2
    assert follow.config_to_follow(3, [(9, "file:/x")]) is None


# -- the shell --------------------------------------------------------------------


def _utc(x: float) -> datetime:
    return datetime.fromtimestamp(x, timezone.utc)


def _row(c: Callback, at: float) -> dict[str, Any]:
    row = {k: getattr(c, k) for k in ("callback_id", "number", "queue", "skills", "priority", "customer_id",
                                      "status", "attempts", "agent_id", "last_leg", "last_result")}
    for k in ("since", "requested_at", "not_before"):
        row[k] = None if getattr(c, k) is None else _utc(getattr(c, k))
    return {**row, "updated_at": _utc(at)}


async def test_a_callback_the_leader_holds_is_offered_first_in_its_place_at_the_takeover():
    service = await _shadow()
    s = service.core.settings
    s.acd_callback_dial, s.acd_callback_ring_s, s.acd_callback_caller_id = "PJSIP/{number}@out", 30, "+100"
    t = time.time()
    service.on_shadow_event(queued("c1", t))
    request = replace(cb(), since=t - 100, requested_at=t - 90)
    service.core.pool = RowsPool([{"agent_id": "a2", "at": _utc(t), "state": "not_ready", "reason": "lunch"}], [],
                                 callbacks=[_row(request, t)])
    assert await service.follow_once() == 2
    assert [w.call_id for w in service.router.waiting_calls()] == ["cb1", "c1"]     # its place, before c1
    assert service.core.ami.written == []                                          # the leader's to offer
    service.core.pool = None
    service.core.ami.channels = [{"Channel": _chan("c1"), "Context": "cti-acd-wait", "Linkedid": "c1",
                                  "Uniqueid": "c1"}]
    service.may_act = lambda: True
    try:
        await service.take_over()
        originated = [h for a, h in service.core.ami.written if a == "Originate" and "cti-acd-callback" in str(h)]
        assert len(originated) == 1 and "CTI_CALLBACK=cb1" in str(originated[0]["Variable"])
        assert service.calls["cb1"].agent == "a1" and service.calls["c1"].agent is None
    finally:
        await service.stop()
        await service.stop_shadow()


async def test_the_leaders_callback_offers_reserve_the_agent_and_its_end_frees_it():
    service = await _shadow()
    t = time.time()
    try:
        for i, row in enumerate([cb(), cb(DIALING, agent="a1"), cb(PENDING), cb(DIALING, agent="a2"),
                                 cb(CONNECTED, 1, "a2")]):
            service.follow_callback(replace(row, since=t - 50), t + i, t + i)
            if i == 1:
                assert _sr(service, "a1")[0] == "reserved" and service.calls["cb1"].agent == "a1"
            if i == 2:      # a1 missed it: not ready, the request waits again
                assert _sr(service, "a1") == ("not_ready", "missed")
                assert [w.call_id for w in service.router.waiting_calls()] == ["cb1"]
        assert _sr(service, "a2")[0] == "on_call"                 # took it; its wrap-up row follows
        assert "cb1" not in service.calls and service.router.waiting_calls() == []
        assert service.core.ami.written == []
    finally:
        await service.stop_shadow()


async def test_the_leaders_new_configuration_is_put_in_force_in_the_shadow_and_keeps_it_following():
    service = await _shadow()
    t = time.time()
    try:
        service.on_shadow_event(queued("c1", t))
        doc = CONFIG.model_dump(mode="json")
        doc["agents"].append({"id": "a3", "name": "Cy", "device": "PJSIP/a3", "queues": {"q": {}},
                              "auto_login": True})
        service.config_version = 5
        service.core.pool = RowsPool([], [], versions=[
            {"version": 6, "source": "api:boss", "document": json.dumps(doc)},
            {"version": 7, "source": "file:/etc/cti/acd.toml", "document": json.dumps(CONFIG.model_dump(mode="json"))}])
        await service.follow_once()
        assert service.config_version == 6 and "a3" in {a.id for a in service.config.agents}
        assert service.router.following                              # still the leader's follower
        assert [w.call_id for w in service.router.waiting_calls()] == ["c1"]   # the caller kept
        assert service.core.ami.written == []
        assert await service.follow_config() is False                   # nothing newer from the API
    finally:
        service.core.pool = None
        await service.stop_shadow()


async def test_at_the_takeover_a_followed_callback_offer_is_settled_from_its_agent_leg_in_the_listing():
    service = await _shadow()
    t = time.time()
    one = replace(cb(DIALING, agent="a1"), since=t - 60, last_leg="cb1-cb3")
    two = replace(cb(DIALING, agent="a2", cid="cb2"), since=t - 30, last_leg="cb2-cb1")
    service.follow_callback(one, t, t)
    service.follow_callback(two, t, t)
    assert [_sr(service, a)[0] for a in ("a1", "a2")] == ["reserved", "reserved"]
    # a1 answered its leg (the customer is being dialled); a2's leg is gone unanswered.
    service.core.ami.channels = [{"Channel": "PJSIP/a1-00000007", "Context": "cti-acd-callback",
                                  "Uniqueid": "cb1-cb3", "Linkedid": "cb1-cb3"}]
    service.may_act = lambda: True
    try:
        await service.take_over()
        assert _sr(service, "a1")[0] == "on_call" and service.calls["cb1"].answered
        assert _sr(service, "a2") == ("not_ready", "missed")
        assert service.calls["cb2"].agent is None and "cb2-cb1" not in service.legs
        assert [w.call_id for w in service.router.waiting_calls()] == ["cb2"]
        assert not [h for a, h in service.core.ami.written if a == "Originate" and "cti-acd-callback" in str(h)]
    finally:
        await service.stop()
        await service.stop_shadow()


async def test_a_scheduled_callback_of_the_leader_waits_for_its_time_in_the_shadow_and_then_its_place():
    service = await _shadow()
    t = time.time()
    try:
        service.on_shadow_event(queued("c1", t))
        later = replace(cb(), since=t + 600, not_before=t + 600)         # the customer's preferred time
        service.follow_callback(later, t, t)
        assert service.retries["cb1"] == later and "cb1" in service.calls
        assert [w.call_id for w in service.router.waiting_calls()] == ["c1"]
        service._retry_callbacks(t + 601)                                  # the shadow's own timer
        assert [w.call_id for w in service.router.waiting_calls()] == ["c1", "cb1"]
        assert "cb1" not in service.retries and service.core.ami.written == []
    finally:
        await service.stop_shadow()


async def test_a_scheduled_callback_offered_by_the_leader_before_the_shadows_timer_is_reserved_all_the_same():
    service = await _shadow()
    t = time.time()
    try:
        later = replace(cb(), since=t + 1, not_before=t + 1)
        service.follow_callback(later, t, t)
        assert "cb1" in service.retries
        service.follow_callback(replace(later, status=DIALING, agent_id="a2", last_leg="cb1-cb1"), t + 1.2, t + 1.2)
        assert "cb1" not in service.retries and _sr(service, "a2")[0] == "reserved"
        assert [w.offered_to for w in service.router.waiting_calls()] == ["a2"]
    finally:
        await service.stop_shadow()
