"""Interval figures for a year of calls: bucketing on the local clock beside a plain UTC floor.

``--calls`` queue calls spread over 2026 (seeded; answered, abandoned, timed out),
grouped into 15-minute intervals of Europe/Paris and summed per interval
(``acd.figures.by_bucket`` + ``queue_figures``). The baseline groups by
``t - t % 900`` (right only for zones whose offset is a whole number of quarter
hours, and blind to what a day is): the difference is what local-clock intervals
cost. Both must give the same offered total.

    .venv/bin/python bench/metrics.py [--calls 1000000]
"""
from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd.figures import ABANDONED, ANSWERED, TIMED_OUT, QueueCall, SlPolicy, by_bucket, queue_figures  # noqa: E402


def year_of_calls(n: int, seed: int) -> list[QueueCall]:
    rnd = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    out = []
    for i in range(n):
        at = start + rnd.uniform(0, 365 * 86400)
        kind = rnd.random()
        if kind < 0.85:
            out.append(QueueCall(call_id=str(i), queue="q", arrived_at=at, outcome=ANSWERED,
                                 left_at=at + rnd.expovariate(1 / 15), agent="a", talk_s=rnd.expovariate(1 / 170),
                                 hold_s=0.0, wrapup_s=10.0))
        elif kind < 0.97:
            out.append(QueueCall(call_id=str(i), queue="q", arrived_at=at, outcome=ABANDONED,
                                 left_at=at + rnd.expovariate(1 / 40)))
        else:
            out.append(QueueCall(call_id=str(i), queue="q", arrived_at=at, outcome=TIMED_OUT, left_at=at + 300))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    print(f"# python {platform.python_version()} on {platform.machine()}, {time.strftime('%Y-%m-%d')}")
    calls = year_of_calls(args.calls, args.seed)
    policy, now, paris = SlPolicy(short_abandon_s=5), 2e9, ZoneInfo("Europe/Paris")

    t0 = time.process_time()
    naive: dict[float, list[QueueCall]] = defaultdict(list)
    for c in calls:
        naive[c.arrived_at - c.arrived_at % 900].append(c)
    t1 = time.process_time()
    naive_figs = [queue_figures(cs, policy, now=now) for cs in naive.values()]
    t2 = time.process_time()
    local = by_bucket(calls, "15min", paris)
    t3 = time.process_time()
    local_figs = [queue_figures(cs, policy, now=now) for cs in local.values()]
    t4 = time.process_time()
    assert sum(f.offered for f in naive_figs) == sum(f.offered for f in local_figs)

    print(f"\n{len(calls):,} calls over a year; {len(local):,} intervals of 15 minutes\n")
    print("| grouping | group | figures per interval | total | calls/s |")
    print("|---|---:|---:|---:|---:|")
    for name, g, f in (("UTC floor `t - t % 900` (baseline)", t1 - t0, t2 - t1),
                       ("local clock, Europe/Paris (`by_bucket`)", t3 - t2, t4 - t3)):
        print(f"| {name} | {g:.2f} s | {f:.2f} s | {g + f:.2f} s | {len(calls) / (g + f):,.0f} |")


if __name__ == "__main__":
    main()
