"""Login throttling and the hash queue (api/throttle.py): pure, the clock is an argument."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.throttle import HashQueue, LoginThrottle, Policy


def throttle(**kw) -> LoginThrottle:
    return LoginThrottle(pair=Policy(free=3, window=60, base=1, cap=8), address=Policy(free=10, window=60, base=1, cap=8),
                         user=Policy(free=6, window=60, base=1, cap=8), **kw)


def fail(t: LoginThrottle, user: str, address: str, now: float) -> float:
    """One attempt that fails; the wait it met (0: it went ahead)."""
    wait = t.attempt(user, address, now)
    if wait == 0:
        t.failed(user, address, now)
    return wait


def test_free_failures_cost_nothing_then_waits_double_up_to_the_cap():
    t = throttle()
    now, waits = 0.0, []
    for _ in range(8):
        wait, _ = t.check("ada", "10.0.0.1", now)
        waits.append(wait)
        now += wait                                              # come back when told
        assert fail(t, "ada", "10.0.0.1", now) == 0.0
    assert waits == [0.0] * 4 + [1.0, 2.0, 4.0, 8.0]
    assert t.check("ada", "10.0.0.1", now) == (8.0, "pair")       # capped
    assert t.attempt("ada", "10.0.0.1", now + 0.5) == 7.5         # refused, not counted
    assert t.check("ada", "10.0.0.1", now + 0.5) == (7.5, "pair")


def test_a_concurrent_burst_is_counted_before_any_password_is_checked():
    """40 attempts at once, none answered yet: only the free ones go ahead."""
    t = throttle()
    let_through = [t.attempt("ada", "10.0.0.1", 0.0) for _ in range(40)]
    assert let_through.count(0.0) == 3
    assert all(w >= 1.0 for w in let_through[3:])                 # each told to come back later
    for _ in range(3):
        t.failed("ada", "10.0.0.1", 0.1)
    assert t.attempt("ada", "10.0.0.1", 0.2) == 0.0              # one more, as if sequential
    assert t.attempt("ada", "10.0.0.1", 0.2) > 0                 # but only one in flight past the free ones


def test_an_unknown_username_is_throttled_like_a_known_one():
    t = throttle()
    assert [t.attempt("nobody-at-all", "10.0.0.1", 0.0) for _ in range(100)].count(0.0) == 3


def test_a_stranger_failing_from_one_address_cannot_lock_the_owner_out():
    t = throttle()
    now = 0.0
    for _ in range(300):                 # an attempt every second for five minutes
        now += 1.0
        fail(t, "root", "203.0.113.9", now)
    wait, blocker = t.check("root", "203.0.113.9", now)
    assert wait > 0 and blocker != ""
    assert t.check("root", "10.0.0.7", now) == (0.0, "")         # the owner's own address goes ahead
    assert t.attempt("root", "10.0.0.7", now) == 0.0
    t.succeeded("root", "10.0.0.7", now)
    assert t.check("root", "203.0.113.9", now)[0] > 0            # the stranger stays blocked


def test_guesses_spread_over_addresses_get_one_per_address_once_the_username_waits():
    t = throttle()
    for n in range(6):                                           # the username's free failures
        fail(t, "root", f"198.51.100.{n}", 0.0)
    fail(t, "root", "198.51.100.50", 0.0)                         # the seventh: root now waits
    assert t.check("root", "198.51.100.1", 0.1)[1] == "user"      # an address that failed waits
    assert t.check("root", "198.51.100.99", 0.1) == (0.0, "")     # a fresh one may try once
    fail(t, "root", "198.51.100.99", 0.1)
    assert t.check("root", "198.51.100.99", 0.2)[1] == "user"


def test_success_clears_the_user_but_takes_back_only_its_own_attempt_from_the_address():
    t = throttle()
    for n in range(12):
        fail(t, f"user{n}", "10.0.0.9", 0.0)
    assert t.check("someone-else", "10.0.0.9", 0.0) == (1.0, "address")   # the 12th was not counted
    t2 = throttle()
    for n in range(100):                                          # agents behind one NAT, all logging in
        assert t2.attempt(f"agent{n}", "10.0.0.1", float(n)) == 0.0
        t2.succeeded(f"agent{n}", "10.0.0.1", float(n))
    assert t2.check("late", "10.0.0.1", 100.0) == (0.0, "")


def test_an_abandoned_attempt_is_not_counted():
    t = throttle()
    for _ in range(20):
        assert t.attempt("ada", "a", 0.0) == 0.0
        t.abandoned("ada", "a")
    assert t.check("ada", "a", 0.0) == (0.0, "")


def test_old_failures_fall_out_of_the_window():
    t = throttle()
    for _ in range(3):
        fail(t, "ada", "a", 0.0)
    fail(t, "ada", "a", 100.0)   # the window (60 s) began afresh: this is failure 1
    assert t.check("ada", "a", 100.0) == (0.0, "")


def test_memory_is_bounded_by_max_keys():
    t = throttle(max_keys=100)
    for n in range(10_000):
        fail(t, f"made-up-{n}", f"10.{n // 256 % 256}.{n % 256}.1", float(n))
    assert len(t.pairs) == 100 and len(t.users) == 100 and len(t.addresses) <= 100


@given(st.lists(st.tuples(st.sampled_from(["ada", "bob"]), st.sampled_from(["a", "b"]),
                          st.sampled_from(["ok", "fail", "in flight", "abandon"]), st.floats(0, 5)), max_size=60))
def test_a_wait_never_exceeds_the_cap_and_never_goes_negative(steps):
    t = throttle()
    now = 0.0
    flying: list[tuple[str, str]] = []
    for user, addr, outcome, dt in steps:
        now += dt
        wait = t.attempt(user, addr, now)
        assert 0.0 <= wait <= 8.0
        if wait > 0:
            continue
        if outcome == "ok":
            t.succeeded(user, addr, now)
        elif outcome == "fail":
            t.failed(user, addr, now)
        elif outcome == "abandon":
            t.abandoned(user, addr)
        else:
            flying.append((user, addr))
    for user, addr in flying:
        t.failed(user, addr, now)
        assert 0.0 <= t.check(user, addr, now)[0] <= 8.0


def test_the_hash_queue_bounds_all_and_each_address():
    q = HashQueue(size=4, per_address=2)
    assert [q.enter("burst") for _ in range(5)] == [0, 1, None, None, None]
    assert q.enter("honest") == 2                   # behind the burst's two only
    assert q.enter("other") == 3
    assert q.enter("late") is None                  # full
    q.leave("burst")
    assert q.enter("late") == 3
    assert q.peak == 4 and q.inside == 4 and q.refused == 4
