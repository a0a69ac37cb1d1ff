"""Days of predictive dialing, seeded: our pacing (dialer.pacing) beside the baseline's
adaptive dial level, on the same simulated customers.

The centre: ``--agents`` agents (20) logged in from 09:00 to 17:00, ``--days`` days (30).
Handle time: talk drawn from a gamma law (shape 2) of mean ``--aht`` minus 20 s, plus 20 s
of wrap-up (180 s in all on average). Each dial, drawn independently:

- a person answers (``--live``, 25%) after 3 to 20 s of ringing (uniform); AMD listens
  2.5 s, then the person waits for an agent: connected if one is free or frees within
  2 s, else abandoned (the law's definition: not connected within 2 s of the greeting);
  AMD takes a person for a machine 0.5% of the time (hung up on: a false positive);
- a machine (12%) answers after 3 to 20 s; AMD hangs up 3.5 s later;
- busy (10%) ends after 3 s; failed (5%) after 1 s; no answer (the rest) after 25 s
  of ringing (at least 15 s, the law).

Abandonment is counted as the law asks: abandoned plus AMD false positives, estimated
as ``fp_share x machines detected`` (``fp_share``: the calibrated share of AMD "machines"
that were people, here its true value), over live answers plus those.

**Ours**: ``dialer.pacing.decide`` in predictive mode, every second and whenever an
agent frees, with the measured live rate, answer delay and handle time
(``Measured.from_counts``), the caps' headroom from ``AbandonLedger`` (cap 3%, target
``--target``), the 30-day window carried across the days.

**Baseline**: the adaptive dial level of the best-known open dialer, from its published
description: lines = dial level x agents logged in (paused none; agents on a call
count, as its default ``available_only_ratio_tally=N`` does), calls placed each second
up to lines minus calls in progress; each minute the level moves by the ready-agents
differential (the minute's mean of ready agents minus people waiting for one) times
``--adapt-step``, between 1.0 and the maximum 3.0; the drop rate is checked since
midnight and over ``--drop-limit`` (3%) sets the level to 1.0 (its "hard limit"
method). Its drop count is the same law-counted figure as ours.

Printed (JSON): per dialer, talk minutes per agent hour, occupancy (handle time over
logged time), abandonment over the 30 days and the worst day (days with at least 100 live
answers), dials, live answers; ``--per-day`` adds the days.

    .venv/bin/python bench/dialer_sim.py [--days 30] [--agents 20] [--seed 1]
    .venv/bin/python bench/dialer_sim.py --cost      (one decision's cost, by campaign size)
"""
from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tables import median_time  # noqa: E402
from dialer.pacing import AbandonLedger, DialState, Measured, Mode, PacingConfig, decide  # noqa: E402

DAY_S = 8 * 3600
WRAP_S = 20.0
AMD_HUMAN_S = 2.5
AMD_MACHINE_S = 3.5
WAIT_S = 2.0
MACHINE, BUSY, FAILED = 0.12, 0.10, 0.05
AMD_FP = 0.005                      # people AMD takes for machines


class Day:
    """One day of one dialer: the event loop, the agents, the calls, the counts."""

    def __init__(self, rng: random.Random, agents: int, live: float, aht: float) -> None:
        self.rng, self.live, self.aht = rng, live, aht
        self.free = agents
        self.busy = 0
        self.in_flight = 0
        self.waiting: list[tuple[float, int]] = []        # (ready time, call id) FIFO
        self.events: list[tuple[float, int, str, int]] = []
        self.seq = 0
        self.handle_total = self.talk_total = 0.0
        self.counts = dict(dials=0, live=0, connected=0, abandoned=0, machines=0, fp=0, handled=0)
        self.answer_delay_total = 0.0
        self.handle_done_total = 0.0
        self.dialed_at: dict[int, float] = {}
        self.last_delay = self.last_handle = 0.0

    def push(self, t: float, kind: str, call: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, call))

    def dial(self, now: float) -> None:
        rng = self.rng
        self.counts["dials"] += 1
        self.in_flight += 1
        self.seq += 1
        call = self.seq
        self.dialed_at[call] = now
        r = rng.random()
        if r < self.live:
            ready = now + rng.uniform(3, 20) + AMD_HUMAN_S
            self.push(ready, "fp" if rng.random() < AMD_FP else "person", call)
        elif r < self.live + MACHINE:
            self.push(now + rng.uniform(3, 20) + AMD_MACHINE_S, "machine", call)
        elif r < self.live + MACHINE + BUSY:
            self.push(now + 3, "ended", call)
        elif r < self.live + MACHINE + BUSY + FAILED:
            self.push(now + 1, "ended", call)
        else:
            self.push(now + 25, "ended", call)

    def connect(self, now: float) -> None:
        talk = self.rng.gammavariate(2.0, (self.aht - WRAP_S) / 2.0)
        handle = talk + WRAP_S
        self.free -= 1
        self.busy += 1
        self.counts["connected"] += 1
        # Only the part of the call inside the day counts toward occupancy and talk.
        self.handle_total += max(0.0, min(now + handle, DAY_S) - now)
        self.talk_total += max(0.0, min(now + talk, DAY_S) - now)
        self.handle_done_total += handle
        self.counts["handled"] += 1
        self.push(now + handle, "agent_free", int(handle * 1000))

    def step(self, event: tuple[float, int, str, int], ledger: AbandonLedger | None, at: datetime) -> str:
        t, _, kind, call = event
        if kind == "person":
            self.in_flight -= 1
            self.counts["live"] += 1
            self.last_delay = t - self.dialed_at.pop(call)
            if self.free > 0:
                self.connect(t)
                if ledger:
                    ledger.record(at, live=1)
            else:
                self.waiting.append((t, call))
                self.push(t + WAIT_S, "give_up", call)
        elif kind == "give_up":
            if any(c == call for _, c in self.waiting):
                self.waiting = [(r, c) for r, c in self.waiting if c != call]
                self.counts["abandoned"] += 1
                if ledger:
                    ledger.record(at, live=1, abandoned=1)
        elif kind == "agent_free":
            self.last_handle = call / 1000
            self.busy -= 1
            self.free += 1
            if self.waiting:
                _, c = self.waiting.pop(0)
                self.connect(t)
                if ledger:
                    ledger.record(at, live=1)
        elif kind in ("machine", "fp"):
            self.dialed_at.pop(call)
            self.in_flight -= 1
            self.counts["machines"] += 1
            if kind == "fp":
                self.counts["fp"] += 1
            if ledger:
                ledger.record(at, machines=1)
        elif kind == "ended":
            self.dialed_at.pop(call)
            self.in_flight -= 1
        return kind


def run_ours(args, rng: random.Random, day_index: int, ledger: AbandonLedger, config: PacingConfig,
             measured_counts: dict) -> dict:
    day = Day(rng, args.agents, args.live, args.aht)
    base = datetime(2026, 12, 1, 9, tzinfo=timezone.utc) + timedelta(days=day_index)

    def act(now: float) -> None:
        at = base + timedelta(seconds=now)
        mc = measured_counts
        measured = Measured.from_counts(mc["dials"], mc["live"], mc["delay"], mc["handled"], mc["handle"],
                                        config.amd_false_positive_share * mc["machines"])
        d = decide(DialState(day.free, day.busy, day.in_flight), measured, config, ledger.headroom(at))
        for _ in range(d.launch):
            day.dial(now)
            mc["dials"] += 1

    drive(day, act, ledger, base, measured_counts)
    return summary(day, args)


def drive(day: Day, act, ledger: AbandonLedger, base: datetime, mc: dict, frees=("agent_free",)) -> None:
    """Run ``day`` to its end: ``act(now)`` every second and whenever an agent frees (an event of
    ``frees``), the campaign's measured counts ``mc`` fed as its calls go."""
    next_tick = 0.0
    while True:
        t_event = day.events[0][0] if day.events else float("inf")
        if next_tick <= t_event and next_tick < DAY_S:
            act(next_tick)
            next_tick += 1.0
            continue
        if not day.events:
            break
        event = heapq.heappop(day.events)
        kind = day.step(event, ledger, base + timedelta(seconds=event[0]))
        if kind == "person":
            mc["live"] += 1
            mc["delay"] += day.last_delay
        elif kind in ("machine", "fp"):
            mc["machines"] += 1
        elif kind == "agent_free":
            mc["handled"] += 1
            mc["handle"] += day.last_handle
        if kind in frees and event[0] < DAY_S:
            act(event[0])


def run_baseline(args, rng: random.Random) -> dict:
    day = Day(rng, args.agents, args.live, args.aht)
    level = 1.0
    diffs: list[int] = []
    t = 0.0
    while True:
        t_event = day.events[0][0] if day.events else float("inf")
        if t <= t_event and t < DAY_S:
            diffs.append(day.free - len(day.waiting))
            if int(t) % 60 == 59:
                c = day.counts
                answered = c["live"] + args.fp_share * c["machines"]
                dropped = c["abandoned"] + args.fp_share * c["machines"]
                if answered and dropped / answered > args.drop_limit:
                    level = 1.0
                else:
                    level = min(3.0, max(1.0, level + args.adapt_step * sum(diffs) / len(diffs)))
                diffs = []
            lines = int(level * args.agents)
            for _ in range(max(0, lines - day.in_flight - day.busy)):
                day.dial(t)
            t += 1.0
            continue
        if not day.events:
            break
        day.step(heapq.heappop(day.events), None, None)
    return summary(day, args)


def summary(day: Day, args) -> dict:
    c = day.counts
    est_fp = args.fp_share * c["machines"]
    live = c["live"] + est_fp      # people AMD passed, plus its mistakes estimated
    abandoned = c["abandoned"] + est_fp
    logged_s = args.agents * DAY_S
    return dict(c, live_counted=round(live, 2), abandoned_counted=round(abandoned, 2),
                rate=abandoned / live if live else 0.0, occupancy=day.handle_total / logged_s,
                talk_min_per_agent_hour=day.talk_total / 60 / (logged_s / 3600))


def total(days: list[dict], args) -> dict:
    live = sum(d["live_counted"] for d in days)
    abandoned = sum(d["abandoned_counted"] for d in days)
    eligible = [d["rate"] for d in days if d["live_counted"] >= 100]
    return {
        "talk_min_per_agent_hour": round(sum(d["talk_min_per_agent_hour"] for d in days) / len(days), 2),
        "occupancy": round(sum(d["occupancy"] for d in days) / len(days), 4),
        "abandonment_30d": round(abandoned / live, 4) if live else 0.0,
        "worst_day": round(max(eligible), 4) if eligible else None,
        "days_over_3pct": sum(1 for r in eligible if r > 0.03),
        "dials": sum(d["dials"] for d in days), "live": sum(d["live"] for d in days),
        "abandoned": sum(d["abandoned"] for d in days), "amd_false_positives": sum(d["fp"] for d in days),
    }


def decision_cost() -> dict:
    """What one predictive decision costs, by campaign size (median of 7 runs of 5, wall clock)."""
    m, config, out = Measured(0.25, 12.0, 180.0), PacingConfig(), {}
    for agents, free, in_flight in ((20, 2, 6), (200, 15, 60), (1000, 60, 300)):
        state = DialState(free, agents - free, in_flight)
        s = median_time(lambda: decide(state, m, config, 10 ** 6), 7, number=5, clock=time.perf_counter)
        out[f"{agents}_agents_ms"] = round(s * 1e3, 3)
        out[f"{agents}_agents_launch"] = decide(state, m, config, 10 ** 6).launch
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--live", type=float, default=0.25)
    parser.add_argument("--aht", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=float, default=0.0175)
    parser.add_argument("--adapt-step", type=float, default=0.05)
    parser.add_argument("--drop-limit", type=float, default=0.03)
    parser.add_argument("--per-day", action="store_true")
    parser.add_argument("--cost", action="store_true", help="only time one decision at 20, 200, 1000 agents")
    args = parser.parse_args()
    if args.cost:
        print(json.dumps(decision_cost(), indent=1))
        return 0
    # The calibrated share of AMD "machines" that are people (true value of this model).
    args.fp_share = args.live * AMD_FP / (args.live * AMD_FP + MACHINE)

    config = PacingConfig(mode=Mode.PREDICTIVE, target=args.target, amd_false_positive_share=args.fp_share)
    ledger = AbandonLedger(config)
    measured_counts = dict(dials=0, live=0, delay=0.0, handled=0, handle=0.0, machines=0)
    ours, base = [], []
    for i in range(args.days):
        ours.append(run_ours(args, random.Random(f"{args.seed}-{i}"), i, ledger, config, measured_counts))
        base.append(run_baseline(args, random.Random(f"{args.seed}-{i}")))
    result = {"days": args.days, "agents": args.agents, "live": args.live, "aht_s": args.aht, "seed": args.seed,
              "target": args.target, "ours": total(ours, args), "baseline": total(base, args)}
    if args.per_day:
        result["per_day"] = {"ours": ours, "baseline": base}
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
