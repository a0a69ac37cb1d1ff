"""Calling windows over a million leads: the cost of a lead check, and nobody called
outside their window.

A seeded list of ``--leads`` numbers across zones: Indiana (split and Eastern-only
area codes), Arizona (Phoenix and 928), New York, California, Alaska, Hawaii, Canada,
toll-free, the UK, France, Australia (landlines and mobiles), Russia (landlines and
mobiles), Mexico, Brazil, China, plus a share with a zone of their own (from the
customer record) and a few numbers of no country. Each lead's zone set is resolved once
(``ZoneMap.for_lead``: a parse; what an import does), then a day of dialing runs over
the list: the clock starts on Tuesday 00:00 UTC and moves so that the list is swept
once in 24 hours; every lead is checked (``WindowChecker.check`` with its zone set)
and, when allowed, dialed. Every dial is verified against the reference definition
(``CallingWindow.allowed``: the local time in each zone, computed from scratch); a
dial outside the window stops the run with status 1.

Printed: resolve cost per lead, check cost per lead (ours, cached per zone set) beside
the reference check on the same leads and instants, distinct zone sets, leads dialed,
refused, with no zone, and dialed outside their window (must be 0).

    .venv/bin/python bench/dialer_windows.py [--leads 1000000] [--seed 7]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.windows import CallingWindow, UnknownZone, WindowChecker, ZoneMap  # noqa: E402

# (share, number prefix, total digits after '+'), or own-zone leads below.
MIX = [
    (8, "1317", 11), (6, "1219", 11), (4, "1812", 11), (3, "1574", 11),      # Indiana
    (5, "1602", 11), (4, "1928", 11), (3, "1480", 11),                       # Arizona
    (8, "1212", 11), (8, "1415", 11), (2, "1907", 11), (2, "1808", 11),
    (3, "1416", 11), (2, "1604", 11), (2, "1800", 11),                       # Canada, toll-free
    (5, "4420", 12), (3, "447", 12), (5, "331", 11), (3, "336", 11),         # UK, France
    (4, "612", 11), (4, "614", 11), (2, "618", 11),                          # Australia
    (3, "7495", 11), (3, "7916", 11), (2, "7383", 11),                       # Russia
    (3, "5255", 12), (3, "5511", 13), (3, "86138", 13), (1, "999", 10),     # Mexico, Brazil, China, none
]
OWN_ZONES = ["America/Chicago", "America/Indiana/Knox", "America/Phoenix", "Europe/Moscow", "Asia/Vladivostok",
             "Australia/Perth", "America/Sao_Paulo"]
OWN_SHARE = 0.05


def make_leads(n: int, rng: random.Random) -> list[tuple[str, str | None]]:
    shares = [s for s, _, _ in MIX]
    picks = rng.choices(range(len(MIX)), weights=shares, k=n)
    out = []
    for i in picks:
        _, prefix, length = MIX[i]
        rest = length - len(prefix)
        number = "+" + prefix + str(rng.randrange(2 * 10 ** (rest - 1), 10 ** rest))
        own = rng.choice(OWN_ZONES) if rng.random() < OWN_SHARE else None
        out.append((number, own))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    leads = make_leads(args.leads, rng)
    zmap = ZoneMap()
    window = CallingWindow()                            # Monday to Saturday, 09:00-20:00 local

    started = time.perf_counter()
    zone_sets: list[frozenset[str] | None] = []
    interned: dict[frozenset[str], frozenset[str]] = {}
    for phone, own in leads:
        try:
            z = zmap.for_lead(phone, own)
            zone_sets.append(interned.setdefault(z, z))
        except UnknownZone:
            zone_sets.append(None)
    resolve_s = time.perf_counter() - started

    checker = WindowChecker(window, zmap)
    start = datetime(2026, 12, 8, tzinfo=timezone.utc)            # a Tuesday
    step = timedelta(days=1) / len(leads)
    dialed = refused = no_zone = outside = 0
    by_hour: Counter[int] = Counter()
    check_s = 0.0
    clock = time.perf_counter
    for i, z in enumerate(zone_sets):
        now = start + step * i
        if z is None:
            no_zone += 1
            continue
        t0 = clock()
        ok = checker.check(z, now).allowed
        check_s += clock() - t0
        if ok:
            dialed += 1
            by_hour[now.hour] += 1
            if not window.allowed(z, now):
                outside += 1
        else:
            refused += 1

    # The reference on a sample of the same leads and instants, for its cost.
    sample = range(0, len(zone_sets), max(1, len(zone_sets) // 100_000))
    ref_s, ref_n = 0.0, 0
    for i in sample:
        z = zone_sets[i]
        if z is None:
            continue
        now = start + step * i
        t0 = clock()
        window.allowed(z, now)
        ref_s += clock() - t0
        ref_n += 1

    checked = len(leads) - no_zone
    result = {
        "leads": len(leads), "seed": args.seed, "python": platform.python_version(),
        "distinct_zone_sets": len(interned),
        "resolve_us_per_lead": round(resolve_s / len(leads) * 1e6, 2),
        "check_us_per_lead": round(check_s / checked * 1e6, 3),
        "reference_check_us_per_lead": round(ref_s / ref_n * 1e6, 3),
        "dialed": dialed, "refused_outside_window": refused, "no_zone": no_zone,
        "dialed_outside_window": outside,
        "dialed_by_utc_hour": dict(sorted(by_hour.items())),
    }
    print(json.dumps(result, indent=1))
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
