"""The cost of rebuilding a campaign's abandonment ledger from its stored attempts: what a
restarted runner (or a new HA leader) does for each campaign before its first call.

A seeded history of ``--days`` days with a dialing minute every minute of an 8-hour day
(``MinuteCounts``: people, abandoned, machines, as ``campaign_store.ledger_history`` gives
them), rebuilt ``--repeat`` times by ``dialer.campaign_rules.rebuild_ledger``. Checked:
the rebuilt ledger's rates and headroom equal those of a ledger fed the same minutes live
(status 1 otherwise). Pure: no database (the query's cost is not in this figure).

    .venv/bin/python bench/dialer_rebuild.py [--days 30] [--repeat 20] [--seed 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.campaign_rules import MinuteCounts, rebuild_ledger  # noqa: E402
from dialer.pacing import AbandonLedger, PacingConfig  # noqa: E402


def history(days: int, now: datetime, rng: random.Random) -> list[MinuteCounts]:
    out = []
    for d in range(days, 0, -1):
        start = (now - timedelta(days=d)).replace(hour=9, minute=0, second=0, microsecond=0)
        for m in range(8 * 60):
            live = rng.randint(0, 6)
            out.append(MinuteCounts(start + timedelta(minutes=m), live, 1 if rng.random() < 0.02 * live else 0,
                                    rng.randint(0, 3)))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    now = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    rows = history(a.days, now, random.Random(a.seed))
    config = PacingConfig(amd_false_positive_share=0.005)
    t0 = time.perf_counter()
    for _ in range(a.repeat):
        ledger = rebuild_ledger(config, rows, now)
    per = (time.perf_counter() - t0) / a.repeat
    live = AbandonLedger(config)
    for m in rows:
        if m.at > now - timedelta(days=30):
            live.record(m.at, live=m.live, abandoned=m.abandoned, machines=m.machines)
    same = live.rates(now) == ledger.rates(now) and live.headroom(now) == ledger.headroom(now)
    rates = ledger.rates(now)
    print(json.dumps({"days": a.days, "minutes": len(rows), "rebuild_ms": round(per * 1000, 2),
                      "per_minute_us": round(per / max(1, len(rows)) * 1e6, 3),
                      "rate_24h": round(rates["24h"].rate, 5), "rate_30d": round(rates["30d"].rate, 5),
                      "headroom": ledger.headroom(now), "same_as_live": same,
                      "python": platform.python_version()}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
