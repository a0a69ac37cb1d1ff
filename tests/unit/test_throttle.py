"""Login throttling (api/throttle.py): pure, the clock is an argument."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.throttle import LoginThrottle, Policy


def throttle(**kw) -> LoginThrottle:
    return LoginThrottle(user=Policy(free=3, window=60, base=1, cap=8), address=Policy(free=10, window=60, base=1, cap=8), **kw)


def test_free_failures_cost_nothing_then_waits_double_up_to_the_cap():
    t = throttle()
    waits = []
    for _ in range(8):
        waits.append(t.check("ada", "10.0.0.1", 0.0))
        t.failed("ada", "10.0.0.1", 0.0)
    assert waits[:4] == [0.0] * 4
    assert waits[4:] == [1.0, 2.0, 4.0, 8.0]
    assert t.check("ada", "10.0.0.1", 0.0) == 8.0   # capped


def test_the_wait_runs_out_and_usernames_are_case_folded():
    t = throttle()
    for _ in range(5):
        t.failed("Ada", "a", 0.0)
    assert t.check("ADA", "b", 1.0) == 1.0
    assert t.check("ada", "b", 2.5) == 0.0


def test_success_clears_the_user_but_not_the_address():
    t = throttle()
    for n in range(12):
        t.failed(f"user{n}", "10.0.0.9", 0.0)
    assert t.check("someone-else", "10.0.0.9", 0.0) == 2.0
    t.succeeded("user0", 0.0)
    assert t.check("user0", "10.0.0.8", 0.0) == 0.0
    assert t.check("user0", "10.0.0.9", 0.0) == 2.0


def test_old_failures_fall_out_of_the_window():
    t = throttle()
    for _ in range(3):
        t.failed("ada", "a", 0.0)
    t.failed("ada", "a", 100.0)   # the window (60 s) began afresh: this is failure 1
    assert t.check("ada", "a", 100.0) == 0.0


def test_memory_is_bounded_by_max_keys():
    t = throttle(max_keys=100)
    for n in range(10_000):
        t.failed(f"made-up-{n}", f"10.{n // 256 % 256}.{n % 256}.1", float(n))
    assert len(t.users) == 100 and len(t.addresses) <= 100


@given(st.lists(st.tuples(st.sampled_from(["ada", "bob"]), st.sampled_from(["a", "b"]),
                          st.booleans(), st.floats(0, 5)), max_size=60))
def test_a_wait_never_exceeds_the_cap_and_never_goes_negative(steps):
    t = throttle()
    now = 0.0
    for user, addr, ok, dt in steps:
        now += dt
        wait = t.check(user, addr, now)
        assert 0.0 <= wait <= 8.0
        if wait == 0.0:
            (t.succeeded(user, now) if ok else t.failed(user, addr, now))
