"""Routing core decisions: our Router beside a naive linear scan, in one run.

A seeded random contact center: 200 skills, 50 queues (each needing one or two
skills at a level), agents with five skills at random levels and membership of
the queues whose base requirements they meet (and a few more). Two decisions:

- *agent frees up*: 1,000 calls wait and nobody is available; one agent at a
  time becomes ready and must get the best call it may take (then answers it,
  and a new caller arrives, so 1,000 keep waiting);
- *call arrives*: every agent is available and nobody waits; a caller arrives
  and must get the best agent (who then answers, so fewer stay available).

The naive router takes the same decisions by scanning every call / every agent:
member of the queue, meets the requirements, then priority and arrival (calls)
or longest idle (agents). Times are per decision (perf_counter), p50/p99.

    .venv/bin/python bench/routing.py [--agents 500 2000 5000] [--decisions 2000]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd.config import parse_config  # noqa: E402
from acd.core import Offer, Router  # noqa: E402

SKILLS = [f"s{i}" for i in range(200)]
T0 = 1_700_000_000.0


def build(n_agents: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    queues = []
    for q in range(50):
        reqs = [{"skill": s, "min_level": rng.randint(1, 5)} for s in rng.sample(SKILLS[:60], rng.choice([1, 1, 2]))]
        queues.append({"id": f"q{q}", "requirements": reqs, "priority": rng.choice([0, 0, 0, 5]),
                       "wrapup_s": 0, "preferred_agent_s": 0})
    agents = []
    for a in range(n_agents):
        skills = {s: rng.randint(1, 10) for s in rng.sample(SKILLS[:60], 4) + rng.sample(SKILLS, 1)}
        member = {q["id"]: {} for q in queues
                  if all(skills.get(r["skill"], 0) >= r["min_level"] for r in q["requirements"])}
        for q in rng.sample(queues, 2):
            member.setdefault(q["id"], {})
        agents.append({"id": f"a{a}", "name": f"A{a}", "device": f"PJSIP/a{a}", "skills": skills,
                       "queues": member})
    return {"skills": SKILLS, "agents": agents, "queues": queues}


class Naive:
    """The same rules, by scanning everything each time."""

    def __init__(self, cfg: dict) -> None:
        self.agents = {a["id"]: a for a in cfg["agents"]}
        self.queues = {q["id"]: q for q in cfg["queues"]}
        self.available: dict[str, float] = {}     # agent -> idle since
        self.waiting: dict[str, tuple[str, float]] = {}  # call -> (queue, arrival)

    def _ok(self, agent: dict, queue_id: str) -> bool:
        q = self.queues[queue_id]
        return queue_id in agent["queues"] and all(
            agent["skills"].get(r["skill"], 0) >= r["min_level"] for r in q["requirements"])

    def agent_ready(self, agent_id: str, now: float) -> str | None:
        agent = self.agents[agent_id]
        best, key = None, None
        for call_id, (queue_id, arrived) in self.waiting.items():
            if self._ok(agent, queue_id):
                k = (-self.queues[queue_id]["priority"], arrived)
                if key is None or k < key:
                    best, key = call_id, k
        if best is None:
            self.available[agent_id] = now
        else:
            del self.waiting[best]
        return best

    def call_arrives(self, call_id: str, queue_id: str, now: float) -> str | None:
        best, since = None, None
        for agent_id, idle in self.available.items():
            if self._ok(self.agents[agent_id], queue_id) and (since is None or idle < since):
                best, since = agent_id, idle
        if best is None:
            self.waiting[call_id] = (queue_id, now)
        else:
            del self.available[best]
        return best


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def run(n_agents: int, decisions: int, waiting: int = 1000) -> dict[str, list[float]]:
    raw = build(n_agents)
    rng = random.Random(2)
    queue_ids = [q["id"] for q in raw["queues"]]
    out: dict[str, list[float]] = {k: [] for k in ("ours_free", "naive_free", "ours_arrive", "naive_arrive")}

    # -- agent frees up, 1,000 callers waiting ---------------------------------------------
    router, naive = Router(parse_config(raw)), Naive(raw)
    now = T0
    for a in raw["agents"]:
        router.login(a["id"], now)
        router.set_not_ready(a["id"], "bench", now)
    n = 0
    for _ in range(waiting):
        q = rng.choice(queue_ids)
        router.call_waiting(f"c{n}", q, now)
        naive.call_arrives(f"c{n}", q, now)
        n += 1
        now += 0.001
    order = [a["id"] for a in raw["agents"]]
    rng.shuffle(order)
    for agent_id in order[:decisions]:
        now += 0.01
        t0 = time.perf_counter()
        ds = router.set_ready(agent_id, now)
        out["ours_free"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        naive.agent_ready(agent_id, now)
        out["naive_free"].append(time.perf_counter() - t0)
        for d in ds:
            if isinstance(d, Offer):
                router.offer_answered(d.call_id, d.agent_id, now)
        q = rng.choice(queue_ids)  # a new caller keeps the queue full
        router.call_waiting(f"c{n}", q, now)
        naive.call_arrives(f"c{n}", q, now)
        n += 1

    # -- a caller arrives, every agent available ----------------------------------------------
    router, naive = Router(parse_config(raw)), Naive(raw)
    now = T0
    for a in raw["agents"]:
        router.login(a["id"], now)
        naive.agent_ready(a["id"], now)
        now += 0.001
    for i in range(decisions):
        now += 0.01
        q = rng.choice(queue_ids)
        t0 = time.perf_counter()
        ds = router.call_waiting(f"x{i}", q, now)
        out["ours_arrive"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        naive.call_arrives(f"x{i}", q, now)
        out["naive_arrive"].append(time.perf_counter() - t0)
        for d in ds:
            if isinstance(d, Offer):
                router.offer_answered(d.call_id, d.agent_id, now)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, nargs="+", default=[500, 2000, 5000])
    ap.add_argument("--decisions", type=int, default=2000)
    args = ap.parse_args()
    print(f"200 skills, 50 queues, 1,000 callers waiting for 'agent frees up'; {args.decisions} decisions each\n")
    print("| agents | decision | ours p50 | ours p99 | naive p50 | naive p99 | ours decisions/s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in args.agents:
        r = run(n, min(args.decisions, n))
        for label, key in (("agent frees up", "free"), ("call arrives", "arrive")):
            ours, naive = r[f"ours_{key}"], r[f"naive_{key}"]
            print(f"| {n:,} | {label} | {statistics.median(ours) * 1e6:.0f} µs | {pct(ours, 0.99) * 1e6:.0f} µs "
                  f"| {statistics.median(naive) * 1e6:.0f} µs | {pct(naive, 0.99) * 1e6:.0f} µs "
                  f"| {len(ours) / sum(ours):,.0f} |")


if __name__ == "__main__":
    main()
