"""Leadership core, one behaviour per test (the random interleavings are in test_lease_properties)."""
from __future__ import annotations

from typing import Callable

import pytest

from cti.leadership import (
    Connect,
    Evict,
    HandoverAsked,
    Lease,
    LeaseConfig,
    LeaseRow,
    ReadLease,
    Release,
    Renew,
    Role,
    StartLeading,
    StepDown,
    TakeOver,
    TryLock,
)

CONFIG = LeaseConfig(ttl=3.0, renew_within=2.0, renew_every=0.5, poll_every=0.5)


def leader_at(now: float = 0.0) -> Lease:
    """A lease that took over an empty table at ``now`` + ttl, epoch 1."""
    lease = Lease("a", CONFIG, now)
    assert lease.next_request(now) == Connect()
    lease.on_connected(now)
    assert lease.next_request(now) == ReadLease()
    lease.on_lease_read(now, None)
    assert lease.next_request(now) == TryLock()
    lease.on_lock(now, True)
    assert lease.role is Role.CANDIDATE
    assert lease.next_request(now) is None          # the absent row, too, waits a ttl
    t = now + CONFIG.ttl
    assert lease.next_request(t) == ReadLease()
    lease.on_lease_read(t, None)
    assert lease.next_request(t) == TakeOver(None, 0)
    assert lease.on_took_over(t, LeaseRow("a", 1, "hb1")) == [StartLeading(1, t)]
    return lease


@pytest.mark.parametrize("timing", [(2.0, 2.0, 3.0), (0.5, 3.0, 3.0), (0.0, 1.0, 3.0)])
def test_config_refuses_a_renewal_window_not_inside_the_ttl(timing: tuple) -> None:
    every, within, ttl = timing
    with pytest.raises(ValueError):
        LeaseConfig(ttl=ttl, renew_within=within, renew_every=every)


def test_leader_renews_and_keeps_leading() -> None:
    lease = leader_at()
    t = CONFIG.ttl + CONFIG.renew_every
    req = lease.next_request(t)
    assert isinstance(req, Renew) and req.epoch == 1 and req.timeout == pytest.approx(1.5)
    assert lease.on_renewed(t + 0.1, "hb2") == []
    assert lease.deadline == t + CONFIG.renew_within
    assert lease.leading(t + 1.9) and not lease.leading(t + 2.0)


def test_paused_leader_steps_down_on_resume_with_the_deadline_as_end() -> None:
    lease = leader_at()
    resumed = CONFIG.ttl + 20.0
    assert not lease.leading(resumed)
    assert lease.tick(resumed) == [StepDown(1, CONFIG.ttl + CONFIG.renew_within, "renewal overdue")]
    assert lease.role is Role.STEPPED_DOWN
    assert lease.next_request(resumed) == Connect()      # drop the session and its lock


def test_late_renewal_reply_does_not_extend_an_expired_lease() -> None:
    lease = leader_at()
    t = CONFIG.ttl + CONFIG.renew_every
    assert isinstance(lease.next_request(t), Renew)
    out = lease.on_renewed(CONFIG.ttl + CONFIG.renew_within + 0.01, "hb2")
    assert [d.reason for d in out if isinstance(d, StepDown)] == ["renewal overdue"]


def test_connection_lost_steps_the_leader_down_at_once() -> None:
    lease = leader_at()
    assert lease.on_connection_lost(3.2) == [StepDown(1, 3.2, "connection lost")]


def test_deposed_leader_steps_down() -> None:
    lease = leader_at()
    assert isinstance(lease.next_request(3.5), Renew)
    assert lease.on_renew_refused(3.6) == [StepDown(1, 3.6, "deposed")]


def answer_with(lease: Lease, now: float, db: Callable[[object], object]) -> object:
    """Run every request due at ``now`` against ``db`` (a plain function); the last one."""
    req = last = lease.next_request(now)
    while req is not None:
        result = db(req)
        if isinstance(req, Connect):
            lease.on_connected(now)
        elif isinstance(req, ReadLease):
            lease.on_lease_read(now, result)
        elif isinstance(req, TryLock):
            lease.on_lock(now, result)
        else:
            return req
        req = lease.next_request(now)
        last = req or last
    return last


def test_follower_waits_a_ttl_after_the_last_change_it_saw() -> None:
    lease = Lease("b", CONFIG, 0.0)
    row = LeaseRow("a", 4, "hb1")
    answer_with(lease, 0.0, lambda req: row if req == ReadLease() else True)
    assert lease.role is Role.CANDIDATE             # the old leader's session is gone
    row = LeaseRow("a", 4, "hb2")                   # but it renewed meanwhile
    answer_with(lease, 1.0, lambda req: row)
    assert answer_with(lease, 1.0 + CONFIG.ttl - 0.01, lambda req: row) == ReadLease()
    assert answer_with(lease, 1.0 + CONFIG.ttl, lambda req: row) == TakeOver(row, 4)


def test_follower_evicts_a_lock_holder_that_stopped_renewing() -> None:
    lease = Lease("b", CONFIG, 0.0)
    lease.next_request(0.0)
    lease.on_connected(0.0)
    row = LeaseRow("a", 2, "hb")
    t = 0.0
    while True:
        req = lease.next_request(t)
        if req == ReadLease():
            lease.on_lease_read(t, row)
        elif req == TryLock():
            lease.on_lock(t, False)
        elif req == Evict():
            break
        t += 0.25
    assert t >= CONFIG.evict_after


def test_takeover_that_does_not_raise_the_epoch_never_starts_leading() -> None:
    lease = leader_at()
    lease.on_connection_lost(4.0)
    row = LeaseRow("a", 1, "hb1")
    answer_with(lease, 4.5, lambda req: row if req == ReadLease() else True)
    assert answer_with(lease, 4.5 + CONFIG.ttl, lambda req: row) == TakeOver(row, 1)
    assert lease.on_took_over(7.5, LeaseRow("a", 1, "hb9")) == []      # a database that went back
    assert lease.role is Role.STEPPED_DOWN and not lease.leading(7.5)


def test_a_result_nobody_asked_for_is_ignored() -> None:
    lease = Lease("a", CONFIG, 0.0)
    assert lease.on_lock(0.0, True) == []
    assert lease.role is Role.FOLLOWER


def test_a_takeover_goes_above_the_epoch_asterisk_holds() -> None:
    """An epoch seen outside the row (Asterisk's CTI_ACD_EPOCH) raises the takeover's floor;
    a lower one changes nothing; the epoch handed back must be above it to lead."""
    lease = Lease("b", CONFIG, 0.0)
    lease.next_request(0.0)
    lease.on_connected(0.0)
    lease.next_request(0.0)
    lease.on_lease_read(0.0, LeaseRow("a", 3, "hb"))
    lease.observe_epoch(7)
    lease.observe_epoch(5)
    assert lease.next_request(0.0) == TryLock()
    lease.on_lock(0.0, True)
    t = CONFIG.ttl
    assert lease.next_request(t) == TakeOver(LeaseRow("a", 3, "hb"), 7)
    assert lease.on_took_over(t, LeaseRow("b", 8, "hb2")) == [StartLeading(8, t)]


def test_an_epoch_handed_back_not_above_asterisks_does_not_lead() -> None:
    lease = Lease("b", CONFIG, 0.0)
    lease.next_request(0.0)
    lease.on_connected(0.0)
    lease.next_request(0.0)
    lease.on_lease_read(0.0, None)
    lease.next_request(0.0)
    lease.on_lock(0.0, True)
    lease.observe_epoch(4)
    assert lease.next_request(CONFIG.ttl) == TakeOver(None, 4)
    assert lease.on_took_over(CONFIG.ttl, LeaseRow("b", 4, "hb")) == []
    assert lease.role is Role.STEPPED_DOWN


def test_heartbeat_age_counts_from_when_the_row_last_changed() -> None:
    lease = Lease("b", CONFIG, 0.0)
    assert lease.heartbeat_age(1.0) is None
    lease.next_request(0.0)
    lease.on_connected(0.0)
    lease.next_request(1.0)
    lease.on_lease_read(1.0, LeaseRow("a", 1, "hb1"))
    assert lease.heartbeat_age(2.5) == pytest.approx(1.5)


# -- planned handover (cti handover) ------------------------------------------------


def test_a_handover_request_is_told_once_and_the_release_steps_down_before_it_is_sent() -> None:
    lease = leader_at()
    t = CONFIG.ttl + CONFIG.renew_every
    assert isinstance(lease.next_request(t), Renew)
    assert lease.on_renewed(t, "hb2", handover=True) == [HandoverAsked(1, t)]
    assert isinstance(lease.next_request(t + 0.5), Renew)
    assert lease.on_renewed(t + 0.5, "hb3", handover=True) == []           # told once
    assert lease.leading(t + 0.6)
    assert lease.release(t + 0.6) == [StepDown(1, t + 0.6, "handover")]
    assert not lease.leading(t + 0.6) and lease.releasing
    assert lease.next_request(t + 0.6) == Release(1)                       # on the open session, then
    lease.on_released(t + 0.7, True)
    assert lease.next_request(t + 0.7) == Connect()                        # the session (and the lock) go
    lease.on_connected(t + 0.8)
    assert lease.next_request(t + 0.8) == ReadLease()
    lease.on_lease_read(t + 0.8, LeaseRow("a", 1, "hb4", released=True))
    # Out of the contest for a ttl, so the standby gets the row: reads, never tries the lock.
    now, seen = t + 0.8, []
    while now < t + 0.6 + CONFIG.ttl + 1.0:
        req = lease.next_request(now)
        seen.append((round(now, 1), req))
        if req == ReadLease():
            lease.on_lease_read(now, LeaseRow("a", 1, "hb4", released=True))
        elif req == TryLock():
            break
        now += 0.1
    assert [r for at, r in seen if r == TryLock()] == [TryLock()]
    assert next(at for at, r in seen if r == TryLock()) >= round(t + 0.6 + CONFIG.ttl, 1)
    assert lease.release(t + 5) == []                                      # not leading: nothing


def test_a_candidate_takes_a_released_row_at_once() -> None:
    lease = Lease("b", CONFIG, 0.0)
    lease.next_request(0.0)
    lease.on_connected(0.0)
    assert lease.next_request(0.0) == ReadLease()
    released = LeaseRow("a", 7, "hb9", released=True)
    lease.on_lease_read(0.1, released)
    assert lease.next_request(0.1) == TryLock()
    lease.on_lock(0.1, True)
    assert lease.next_request(0.1) == TakeOver(released, 7)                 # no ttl to wait
    assert lease.on_took_over(0.2, LeaseRow("b", 8, "hb10")) == [StartLeading(8, 0.2)]


def test_an_unreleased_row_still_waits_a_ttl() -> None:
    lease = Lease("b", CONFIG, 0.0)
    lease.next_request(0.0)
    lease.on_connected(0.0)
    lease.next_request(0.0)
    lease.on_lease_read(0.1, LeaseRow("a", 7, "hb9"))
    lease.next_request(0.1)
    lease.on_lock(0.1, True)
    assert lease.next_request(0.1) is None


def test_a_release_on_a_lost_session_is_dropped_and_the_node_reconnects() -> None:
    lease = leader_at()
    lease.release(4.0)
    assert lease.next_request(4.0) == Release(1)
    lease.on_connection_lost(4.1)
    assert not lease.releasing
    assert lease.next_request(4.7) == Connect()
