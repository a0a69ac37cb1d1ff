"""A day of blended work, seeded: inbound callers and a predictive campaign sharing the same
agents, the campaign paced by the runner's own decision (``dialer.runner.launch_count``:
``dialer.blending`` then ``dialer.pacing``), under several reserves for inbound.

The centre (defaults): ``--agents`` 20 agents from 09:00 to 17:00, serving an inbound queue of
``--inbound`` calls an hour (Poisson; 180 s mean handle time: gamma talk plus 20 s of wrap-up;
each caller waits at most an exponential patience of mean ``--patience`` s, then hangs up)
with a target of 80% answered within 20 s, and a predictive campaign (the customers of
``bench/dialer_sim.py``: 25% answered by a person, 12% machines...). A freed agent takes the
campaign's person waiting (2 s at most, priority 9) first, then the longest-waiting inbound
caller, as the ACD does.

Scenarios, on the same seeds:
- ``inbound only``: no campaign (the inbound queue's service level with the agents alone);
- ``waiting only``: the campaign blends by rule 1 only (no call while a caller waits: no
  reserve of its own, the default);
- ``reserve N agents`` (``--reserve-agents``, 2): a fixed reserve;
- ``service level``: the reserve Erlang C asks for the queue's target at the arrival rate
  measured over 15 minutes.

Each scenario with a campaign runs under both pacing rules (``--rule both``, the default):
``before``, inbound arrivals during the ring not counted (``PacingConfig.inbound_quantile``
None, the rule up to issue 21's blend fix), and ``inbound``, counted (the arrivals' upper
quantile ``--quantile`` taken out of the sure free agents, their law in the model).

Printed (JSON), per scenario: inbound service level (answered within 20 s / offered), mean
wait of the answered, inbound abandoned share; the campaign's talk minutes per agent hour,
dials, live answers, abandonment rate (the law's count) over the run and on its worst day (of
the days with 100 live answers or more), the days over 3%; the agents' occupancy. Pure: no
Asterisk, no database.

    .venv/bin/python bench/dialer_blend_sim.py [--inbound 120] [--agents 20] [--seed 1] [--days 5]
        [--rule both|before|inbound] [--quantile 0.99]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dialer_sim import DAY_S, WRAP_S, Day, drive  # noqa: E402
from dialer.blending import InboundQueue, ReserveConfig  # noqa: E402
from dialer.pacing import AbandonLedger, Measured, Mode, PacingConfig  # noqa: E402
from dialer.runner import AgentsView, launch_count  # noqa: E402

SL_S, SL_PERCENT = 20.0, 80.0


class BlendDay(Day):
    """``Day`` with an inbound queue served by the same agents (inbound after the campaign's
    person waiting: they have 2 s)."""

    def __init__(self, rng: random.Random, agents: int, live: float, aht: float, patience: float) -> None:
        super().__init__(rng, agents, live, aht)
        self.patience = patience
        self.inbound: deque[tuple[float, int]] = deque()     # (arrived, call) FIFO
        self.gone: set[int] = set()
        self.busy_inbound = 0
        self.arrivals: deque[float] = deque()
        self.ib = dict(offered=0, answered=0, within=0, abandoned=0, wait_total=0.0)
        self.outbound_talk = 0.0

    def connect(self, now: float) -> None:          # an outbound person: its talk counted apart
        before = self.talk_total
        super().connect(now)
        self.outbound_talk += self.talk_total - before

    def take_inbound(self, now: float) -> bool:
        while self.inbound:
            arrived, call = self.inbound.popleft()
            if call in self.gone:
                continue
            talk = self.rng.gammavariate(2.0, (self.aht - WRAP_S) / 2.0)
            handle = talk + WRAP_S
            self.free -= 1
            self.busy_inbound += 1
            self.handle_total += max(0.0, min(now + handle, DAY_S) - now)
            self.talk_total += max(0.0, min(now + talk, DAY_S) - now)
            wait = now - arrived
            self.ib["answered"] += 1
            self.ib["within"] += wait <= SL_S
            self.ib["wait_total"] += wait
            self.push(now + handle, "inbound_free", call)
            return True
        return False

    def step(self, event, ledger, at) -> str:
        t, _, kind, call = event
        if kind == "arrival":
            self.ib["offered"] += 1
            self.arrivals.append(t)
            self.inbound.append((t, call))
            self.push(t + self.rng.expovariate(1.0 / self.patience), "hang_up", call)
            if self.free > 0 and not self.waiting:
                self.take_inbound(t)
            return kind
        if kind == "hang_up":
            if any(c == call for _, c in self.inbound) and call not in self.gone:
                self.gone.add(call)
                self.ib["abandoned"] += 1
            return kind
        if kind == "inbound_free":
            self.busy_inbound -= 1
            self.free += 1
            if self.waiting:          # the campaign's person first (2 s), as in step()
                self.waiting.pop(0)
                self.connect(t)
                if ledger:
                    ledger.record(at, live=1)
            else:
                self.take_inbound(t)
            return kind
        kind = super().step(event, ledger, at)
        if kind == "agent_free" and self.free > 0 and not self.waiting:
            self.take_inbound(t)
        return kind

    def inbound_state(self, now: float, since: float) -> InboundQueue:
        while self.arrivals and self.arrivals[0] < now - 4 * 3600:
            self.arrivals.popleft()
        waiting = sum(1 for _, c in self.inbound if c not in self.gone)
        return InboundQueue("care", waiting, tuple(self.arrivals), since, self.aht, SL_PERCENT, SL_S,
                            self.busy_inbound, 0)


def run_day(args, seed: str, reserve: ReserveConfig | None, ledger: AbandonLedger, config: PacingConfig,
            mc: dict, day_index: int) -> dict:
    rng = random.Random(seed)
    day = BlendDay(rng, args.agents, args.live, args.aht, args.patience)
    arrivals = random.Random(seed + "-inbound")
    t, n = 0.0, 0
    while True:
        t += arrivals.expovariate(args.inbound / 3600.0)
        if t >= DAY_S:
            break
        n += 1
        day.push(t, "arrival", -n)
    base = datetime(2026, 12, 1, 9, tzinfo=timezone.utc) + timedelta(days=day_index)

    def act(now: float) -> None:
        if reserve is None:
            return
        measured = Measured.from_counts(mc["dials"], mc["live"], mc["delay"], mc["handled"], mc["handle"],
                                        config.amd_false_positive_share * mc["machines"])
        at = base + timedelta(seconds=now)
        staffed = day.free + day.busy + day.busy_inbound
        view = AgentsView(day.free, staffed, (day.inbound_state(now, 0.0),))
        for _ in range(launch_count("predictive", view, day.in_flight, ledger.headroom(at), measured, config,
                                    now=now, reserve=reserve)):
            day.dial(now)
            mc["dials"] += 1

    drive(day, act, ledger, base, mc, frees=("agent_free", "inbound_free"))
    c, ib = day.counts, day.ib
    est_fp = args.fp_share * c["machines"]
    logged_h = args.agents * DAY_S / 3600
    return {"offered": ib["offered"], "answered": ib["answered"], "within": ib["within"],
            "abandoned_in": ib["abandoned"], "wait_total": ib["wait_total"], "dials": c["dials"],
            "live": c["live"] + est_fp, "abandoned_out": c["abandoned"] + est_fp,
            "outbound_talk_min": day.outbound_talk / 60, "logged_h": logged_h, "handle_s": day.handle_total}


def scenario(args, name: str, reserve: ReserveConfig | None, rule: str) -> dict:
    config = PacingConfig(mode=Mode.PREDICTIVE, target=0.0175, amd_false_positive_share=args.fp_share,
                          inbound_quantile=None if rule == "before" else args.quantile)
    ledger = AbandonLedger(config)
    mc = dict(dials=0, live=0, delay=0.0, handled=0, handle=0.0, machines=0)
    days = [run_day(args, f"{args.seed}-{i}", reserve, ledger, config, mc, i) for i in range(args.days)]
    s = {k: sum(d[k] for d in days) for k in days[0]}
    # The law's count per day, for the days with 100 live answers or more.
    eligible = [d["abandoned_out"] / d["live"] for d in days if d["live"] >= 100]
    return {
        "scenario": name, "rule": rule if reserve is not None else None,
        "outbound_worst_day": round(max(eligible), 4) if eligible else None,
        "outbound_days_over_3pct": sum(1 for r in eligible if r > 0.03),
        "outbound_days_counted": len(eligible),
        "inbound_service_level": round(s["within"] / s["offered"], 4) if s["offered"] else None,
        "inbound_mean_wait_s": round(s["wait_total"] / s["answered"], 2) if s["answered"] else None,
        "inbound_abandoned": round(s["abandoned_in"] / s["offered"], 4) if s["offered"] else None,
        "outbound_talk_min_per_agent_hour": round(s["outbound_talk_min"] / s["logged_h"], 2),
        "outbound_dials": s["dials"], "outbound_live": round(s["live"], 1),
        "outbound_abandonment": round(s["abandoned_out"] / s["live"], 4) if s["live"] else 0.0,
        "occupancy": round(s["handle_s"] / (s["logged_h"] * 3600), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--inbound", type=float, default=120.0, help="inbound calls an hour")
    parser.add_argument("--patience", type=float, default=120.0, help="mean seconds an inbound caller waits")
    parser.add_argument("--live", type=float, default=0.25)
    parser.add_argument("--aht", type=float, default=180.0)
    parser.add_argument("--reserve-agents", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rule", choices=("both", "before", "inbound"), default="both",
                        help="the pacing rule: before (inbound arrivals during the ring not counted), inbound "
                             "(counted: PacingConfig.inbound_quantile), or both side by side")
    parser.add_argument("--quantile", type=float, default=PacingConfig().inbound_quantile,
                        help="the inbound rule's upper quantile")
    args = parser.parse_args()
    args.fp_share = args.live * 0.005 / (args.live * 0.005 + 0.12)
    rules = ("before", "inbound") if args.rule == "both" else (args.rule,)
    runs = [("inbound only", None, None)] + [
        (name, r, rule) for name, r in (
            ("waiting only", ReserveConfig()),
            (f"reserve {args.reserve_agents} agents", ReserveConfig(agents=args.reserve_agents)),
            ("service level", ReserveConfig(service_level=True, arrivals_min=15)))
        for rule in rules]
    print(json.dumps({"days": args.days, "agents": args.agents, "inbound_per_hour": args.inbound,
                      "patience_s": args.patience, "seed": args.seed, "target": f"{SL_PERCENT:.0f}% in {SL_S:.0f} s",
                      "quantile": args.quantile,
                      "scenarios": [scenario(args, name, r, rule) for name, r, rule in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
