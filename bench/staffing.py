"""Required agents for a day's plan: our Erlang C beside the textbook factorial formula, same run.

A seeded centre: ``--queues`` queues, each with a peak load drawn between 1 and
``--max-erlangs`` erlangs and an AHT between 120 and 600 s, spread over
``--intervals`` intervals of 15 minutes along a two-hump daily curve (the peak at
10:00 and 15:00, a tenth of it at night). For every (queue, interval): the fewest
agents giving 80% in 20 s (``acd.staffing.required_agents``).

The baseline (``naive_required``) is the formula as printed in textbooks:
``C = (A^n / n!) (n / (n - A)) / (sum_{k<n} A^k / k! + (A^n / n!) (n / (n - A)))``,
evaluated from scratch for n = floor(A)+1, floor(A)+2, ... until the target is met.
In doubles ``A^n`` or ``n!`` leaves the float range past about 170 agents
(``OverflowError``): those intervals are counted, not timed. Where both finish,
their answers must be equal, or the run stops.

Then, per load, the cost of one required-agents search (median of ``--repeat``),
ours and the baseline; and ours for Erlang A (patience 120 s).

    .venv/bin/python bench/staffing.py [--queues 50] [--intervals 96] [--max-erlangs 900]
"""
from __future__ import annotations

import argparse
import math
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd.staffing import required_agents, required_agents_a  # noqa: E402
from bench.tables import markdown_table, median_time  # noqa: E402

TARGET, THRESHOLD = 0.8, 20.0


def naive_erlang_c(n: int, a: float) -> float:
    top = a ** n / math.factorial(n) * n / (n - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(n)) + top)


def naive_required(calls: float, aht: float, interval: float) -> int:
    a = calls * aht / interval
    if a == 0:
        return 0
    n = math.floor(a) + 1
    while True:
        c = naive_erlang_c(n, a)
        if 1 - c * math.exp(-(n - a) * THRESHOLD / aht) >= TARGET:
            return n
        n += 1


def day_plan(queues: int, intervals: int, max_erlangs: float, seed: int) -> list[tuple[float, float]]:
    """(calls per interval, AHT) for every queue and interval."""
    rnd = random.Random(seed)
    out = []
    for _ in range(queues):
        peak, aht = rnd.uniform(1, max_erlangs), rnd.uniform(120, 600)
        for i in range(intervals):
            hour = 24 * i / intervals
            shape = 0.1 + 0.9 * max(math.exp(-((hour - 10) / 2) ** 2), math.exp(-((hour - 15) / 2.5) ** 2))
            erlangs = peak * shape
            out.append((erlangs * 900 / aht, aht))
    return out


def cpu(fn) -> tuple[float, object]:
    t0 = time.process_time()
    result = fn()
    return time.process_time() - t0, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queues", type=int, default=50)
    p.add_argument("--intervals", type=int, default=96)
    p.add_argument("--max-erlangs", type=float, default=900.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=8)
    args = p.parse_args()
    print(f"# python {platform.python_version()} on {platform.machine()}, {time.strftime('%Y-%m-%d')}")

    plan = day_plan(args.queues, args.intervals, args.max_erlangs, args.seed)
    ours_s, ours = cpu(lambda: [required_agents(c, aht, 900, sl_target=TARGET, sl_seconds=THRESHOLD).agents
                               for c, aht in plan])
    naive_s = 0.0
    overflow = done = 0
    for (c, aht), n in zip(plan, ours):
        t0 = time.process_time()
        try:
            m = naive_required(c, aht, 900)
        except OverflowError:
            overflow += 1
            continue
        naive_s += time.process_time() - t0
        done += 1
        if m != n:
            sys.exit(f"answers differ at {c:.1f} calls, AHT {aht:.0f}: ours {n}, naive {m}")
    print(f"\n{len(plan):,} intervals ({args.queues} queues x {args.intervals}), agents up to {max(ours):,}, "
          f"{sum(ours):,} agent-intervals in all\n")
    print(markdown_table(
        ["Erlang C, 80% in 20 s", "intervals done", "overflowed", "CPU time", "per interval"],
        [["textbook formula (baseline)", f"{done:,}", f"{overflow:,}", f"{naive_s:.2f} s (done only)",
          f"{naive_s / max(done, 1) * 1e3:.2f} ms"],
         ["ours (log Erlang B recursion)", f"{len(plan):,}", 0, f"{ours_s:.2f} s", f"{ours_s / len(plan) * 1e3:.3f} ms"]]))

    print("\nOne required-agents search (AHT 180 s, 15-minute interval), median of", args.repeat)
    rows = []
    for erlangs in (10, 50, 100, 150, 300, 600, 1000):
        calls = erlangs * 900 / 180
        n = required_agents(calls, 180, 900, sl_target=TARGET, sl_seconds=THRESHOLD).agents
        ours_t = median_time(lambda: required_agents(calls, 180, 900, sl_target=TARGET, sl_seconds=THRESHOLD),
                             args.repeat)
        try:
            naive_t = f"{median_time(lambda: naive_required(calls, 180, 900), args.repeat) * 1e3:.2f} ms"
        except OverflowError:
            naive_t = "OverflowError"
        a_n = required_agents_a(calls, 180, 900, patience_s=120, sl_target=TARGET, sl_seconds=THRESHOLD).agents
        a_t = median_time(lambda: required_agents_a(calls, 180, 900, patience_s=120, sl_target=TARGET,
                                                    sl_seconds=THRESHOLD), args.repeat)
        rows.append([f"{erlangs:,}", f"{n:,}", naive_t, f"{ours_t * 1e3:.3f} ms", f"{a_t * 1e3:.1f} ms", f"{a_n:,}"])
    print()
    print(markdown_table(["erlangs", "agents", "textbook (baseline)", "ours, Erlang C",
                          "ours, Erlang A (patience 120 s)", "Erlang A agents"], rows, left=0))


if __name__ == "__main__":
    main()
