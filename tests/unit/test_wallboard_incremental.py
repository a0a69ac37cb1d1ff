"""The live board from counts kept as calls change (acd/board_sums.py, acd/ledger.py):
on any sequence of inputs, at any instant, the same board as the full rebuild over
every call of the day."""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from acd.board_sums import BLOCK_S, StaySums, total
from acd.figures import ABANDONED, ANSWERED, TIMED_OUT, WAITING, QueueCall, QueueCounts, SlPolicy, count_calls
from acd.ledger import BoardLedger
from acd.wallboard import WINDOWS
from bench.wallboard import synthetic_day
from tests.unit.test_wallboard_ledger import DAY, QUEUES, Everything, config, feed

TICK = 1 / 64          # times in whole ticks: sums of times are exact in floats, so boards compare equal


def ticks(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.integers(int(lo / TICK), int(hi / TICK)).map(lambda n: n * TICK)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), calls=st.integers(5, 120), seconds=ticks(300, 4000),
       agents=st.integers(2, 14), push_every=ticks(0.5, 90), before_midnight=ticks(0, 3600),
       checks=st.lists(st.floats(0, 1), min_size=1, max_size=6), drop=st.sets(st.integers(0, 3000), max_size=40),
       listed=st.integers(0, 8))
def test_the_board_kept_up_to_date_is_the_board_rebuilt_from_every_call(seed, calls, seconds, agents, push_every,
                                                                       before_midnight, checks, drop, listed):
    """A day of random calls and agents (some inputs left out: a call's later event,
    an agent's change), boards at random intervals folding what settled, and at random
    instants (before, during and long after the traffic) the same board as over every
    input, to the last digit and line."""
    cfg = config(listed)
    start = DAY - before_midnight
    ledger, ref = BoardLedger(cfg, DAY), Everything()
    end = start + seconds + 2 * 1860
    instants = sorted(round((start - 600 + f * (end - start + 600)) / TICK) * TICK for f in checks)
    callbacks = {f"c{i:06d}.{seed}": "pending" for i in range(0, calls, 3)}
    next_push = start - 7200
    compared = 0
    inputs = [item for n, item in enumerate(synthetic_day(calls, start=start, seconds=seconds, agents=agents,
                                                          seed=seed)) if n not in drop]
    for item in [*inputs, None]:
        at = item.at if item is not None else end + 1
        while min(next_push, instants[0] if instants else next_push) <= at:
            if instants and instants[0] <= next_push:
                now = instants.pop(0)
                assert ledger.board(now, queues=QUEUES, callbacks=callbacks) == \
                    ref.board(cfg, now, DAY, callbacks), f"boards differ at {now}"
                compared += 1
            else:
                ledger.board(next_push, queues=QUEUES, callbacks=callbacks)
                next_push += push_every
        if item is not None:
            feed(ledger, ref, item)
    assert compared == len(checks)


stays = st.builds(
    lambda cid, queue, arrived, outcome, wait, talk, wrap: QueueCall(
        call_id=cid, queue=queue, arrived_at=arrived, outcome=outcome,
        left_at=None if outcome == WAITING else arrived + wait,
        agent="a1" if outcome == ANSWERED else None,
        talk_s=talk if outcome == ANSWERED else None, wrapup_s=wrap if outcome == ANSWERED else None),
    st.sampled_from([f"c{i}" for i in range(12)]), st.sampled_from(["q1", "q2"]),
    ticks(DAY - 2500, DAY + 4000), st.sampled_from([WAITING, ANSWERED, ABANDONED, TIMED_OUT]), ticks(0, 200),
    st.none() | ticks(0, 300), st.none() | ticks(0, 60))


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from([f"c{i}" for i in range(12)]), st.lists(stays, max_size=3)),
                      max_size=40),
       now=ticks(DAY - 100, DAY + 6000), day_start=st.sampled_from([DAY - 86_400, DAY - 1000, DAY, DAY + 8]))
def test_counts_kept_per_block_are_the_counts_of_the_stays_in_each_range(steps, now, day_start):
    """Any calls' stays set, changed and removed in any order: each queue's counts today,
    in each window and waiting are ``count_calls`` over exactly the stays in range."""
    policies = {"q1": SlPolicy(threshold_s=20, short_abandon_s=5), "q2": SlPolicy(threshold_s=60)}
    sums = StaySums(policies.__getitem__)
    held: dict[str, list[QueueCall]] = {}
    for cid, of_call in steps:
        of_call = [QueueCall(call_id=cid, queue=s.queue, arrived_at=s.arrived_at, outcome=s.outcome,
                             left_at=s.left_at, agent=s.agent, talk_s=s.talk_s, wrapup_s=s.wrapup_s)
                   for s in of_call]
        sums.set(cid, of_call)
        held[cid] = of_call
    every = [s for ss in held.values() for s in ss]
    assert sums.queues() == {s.queue for s in every}
    for q in ("q1", "q2"):
        mine = [s for s in every if s.queue == q]
        p = sums.parts(q, now=now, day_start=day_start, windows=WINDOWS)
        assert p.today == count_calls([s for s in mine if s.arrived_at >= day_start], policies[q], now=now)
        for name, w in WINDOWS.items():
            assert p.windows[name] == count_calls([s for s in mine if now - w < s.arrived_at <= now], policies[q],
                                                  now=now)
        waiting = [s for s in mine if s.outcome == WAITING]
        assert p.waiting == len(waiting)
        assert p.longest_waiting_s == max((now - s.arrived_at for s in waiting), default=None)


def test_a_stay_on_a_blocks_bound_counts_in_the_window_it_is_in():
    """Arrivals exactly on a block's bound that is a window's lower bound too, and on
    the window's upper bound: the window is ``(now - w, now]``, today ``[day_start, ...)``."""
    k = 110_000_000
    now = k * BLOCK_S + 4.0                            # now - 900 = (k - 56) blocks: a block's first instant
    lo = now - WINDOWS["last_15"]
    assert lo % BLOCK_S == 0
    sums = StaySums(lambda q: SlPolicy())
    on = [lo, lo + TICK, lo + BLOCK_S - TICK, lo + BLOCK_S, now, now + TICK, lo - TICK]
    for i, at in enumerate(on):
        sums.set(f"c{i}", [QueueCall(call_id=f"c{i}", queue="q", arrived_at=at, outcome=ABANDONED, left_at=at + 1)])
    p = sums.parts("q", now=now, day_start=lo, windows=WINDOWS)
    assert p.windows["last_15"].arrived == 4           # not the one at now - 900, nor before, nor after now
    assert p.windows["last_30"].arrived == 6
    assert p.today.arrived == 6                        # from day_start on, after now too
    sums.remove("c0")
    assert sums.parts("q", now=now, day_start=lo, windows=WINDOWS).today.arrived == 5


def test_counts_add_up_as_plus_does():
    a = QueueCounts(arrived=2, answered=1, answered_wait_s=3.5, longest_wait_s=4.0)
    b = QueueCounts(arrived=1, abandoned=1, abandon_wait_s=2.0, longest_wait_s=9.0, longest_waiting_s=1.0)
    c = QueueCounts(arrived=3, waiting=1)
    assert total([a, b, c]) == a + b + c
    assert total([]) == QueueCounts() and total([a]) == a
