"""cti.connlimits: the connection cap per address and in all, and the fd plan."""
from __future__ import annotations

from cti.connlimits import FD_RESERVE, FD_WANTED, ConnectionCap, fd_plan


def test_one_address_beyond_its_cap_is_refused_and_others_are_not():
    cap = ConnectionCap(per_client=2, total=0)
    assert [cap.admit("10.0.0.1") for _ in range(3)] == [None, None, "client_max"]
    assert cap.admit("10.0.0.2") is None
    assert cap.refused == {"client_max": 1, "total_max": 0} and cap.count == 3


def test_a_released_connection_makes_room_and_the_books_stay_balanced():
    cap = ConnectionCap(per_client=1, total=0)
    assert cap.admit("::1") is None and cap.admit("::1") == "client_max"
    cap.release("::1")
    assert cap.open == {} and cap.count == 0
    assert cap.admit("::1") is None
    cap.release("::1")
    cap.release("::1")               # a second release of the same connection counts nothing
    assert cap.open == {} and cap.count == 0


def test_the_total_cap_holds_across_addresses_and_zero_means_no_cap():
    cap = ConnectionCap(per_client=0, total=2)
    assert [cap.admit(a) for a in ("a", "b", "c")] == [None, None, "total_max"]
    free = ConnectionCap(per_client=0, total=0)
    assert all(free.admit("a") is None for _ in range(10_000))


def test_the_fd_plan_raises_the_soft_limit_as_far_as_the_hard_one_allows():
    assert fd_plan(1024, 524288, 0) == (FD_WANTED, FD_WANTED - FD_RESERVE)
    assert fd_plan(1024, 4096, 0) == (4096, 4096 - FD_RESERVE)
    assert fd_plan(1024, 1024, 0) == (1024, 1024 - FD_RESERVE)
    assert fd_plan(1024, -1, 0) == (FD_WANTED, FD_WANTED - FD_RESERVE)        # RLIM_INFINITY
    assert fd_plan(200_000, 200_000, 0) == (200_000, 200_000 - FD_RESERVE)   # never lowered
    assert fd_plan(256, 256, 0) == (256, 64)                                  # a floor
    assert fd_plan(1024, 524288, 1000)[1] == 1000                            # the configured cap, if lower
