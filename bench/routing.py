"""Routing decisions per second: the indexed core beside a naive linear-scan router, same run.

A seeded random contact centre: 200 skills (the last 10 are languages), 100
queues (a primary skill at a minimum level, a fifth also a second skill; four
selection policies; some high priority, some faster aging; a fifth borrow from
another queue). Each agent is a member of 3 random queues (membership priority
0-1; a fifth with a 10 or 30 s delay) and mostly has the skills they need
(a fifth of the time one level short), plus 3 other skills and 0-2 languages.
Calls go to random queues; 5% carry a priority, 10% a language level from
the IVR.

Setup: 1,000 calls arrive with everyone logged out; agents log in one by one
and each takes (and answers) the best call it may, and a new call arrives for
each one taken; then calls arrive until 1,000 wait again. So nearly every
agent talks, and 1,000 calls wait.

Measured, alternating, on both routers fed the same inputs:
- *arrival*: ``call_waiting`` of a new call (offered at once, or queued);
- *agent free*: ``call_finished`` of a random talking agent (no wrap-up): the
  agent takes the best waiting call it may, if any.
Offers are answered at once (not measured). Then, on a fresh pair with every
agent logged in and nobody waiting:
- *arrival, agents idle*: ``call_waiting`` picks among thousands of available
  agents (each caller answers, so fewer stay available).
After every input the two routers' offers must be identical, or the run stops.

    .venv/bin/python bench/routing.py [--agents 500,2000,5000] [--events 4000] [--seed 7]

``NaiveRouter`` is the reference: the same rules as ``acd.core.Router`` for
logins, readiness, arrivals, answers, failures, abandons and call ends (no
timers, no preferred agents, no ``skip_if_nobody``), written as plainly as
possible: every decision scans every agent or every waiting call.
"""
from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.config import AcdConfig, parse_config  # noqa: E402
from acd.core import Offer, Router  # noqa: E402
from acd.index import merge_requirements, qualifies  # noqa: E402

SKILLS = 200
LANGUAGES = 10
QUEUES = 100
WAITING = 1000
POLICIES = ("longest_idle", "best_proficiency", "fewest_calls", "round_robin")


# -- the reference ----------------------------------------------------------------

@dataclass(eq=False)
class _NAgent:
    id: str
    ord: int
    skills: dict[str, int]
    queues: dict[str, tuple[int, float]]          # queue -> (membership priority, delay)
    state: str = "logged_out"
    idle_since: float = 0.0
    calls_today: int = 0
    rr: dict[str, int] = field(default_factory=dict)
    call: "_NCall | None" = None


@dataclass(eq=False)
class _NCall:
    id: str
    queue: str
    prio: int
    reqs: tuple
    arrived: float
    seq: int
    agent: _NAgent | None = None


class NaiveRouter:
    """Linear scans, no indexes. Returns the offers as ``(call_id, agent_id)`` pairs."""

    def __init__(self, cfg: AcdConfig) -> None:
        self.q = {q.id: q for q in cfg.queues}
        self.agents = [_NAgent(a.id, i, dict(a.skills), {k: (m.priority, m.delay_s) for k, m in a.queues.items()})
                       for i, a in enumerate(cfg.agents)]
        self.by_id = {a.id: a for a in self.agents}
        self.calls: list[_NCall] = []           # waiting or ringing
        self.sl = {q: [0, 0] for q in self.q}   # offered, answered within sl_seconds
        self.lending = {q: True for q in self.q}
        self.borrowers = {q: [b.id for b in cfg.queues if q in b.borrow_from] for q in self.q}
        self.seq = 0
        self.turn = 0

    # inputs
    def login(self, agent_id: str, now: float) -> list[tuple[str, str]]:
        a = self.by_id[agent_id]
        if a.state != "logged_out":
            return []
        return self._free(a, now)

    def set_not_ready(self, agent_id: str, now: float) -> list[tuple[str, str]]:
        a = self.by_id[agent_id]
        if a.state in ("available", "not_ready"):
            a.state = "not_ready"
        return []

    def set_ready(self, agent_id: str, now: float) -> list[tuple[str, str]]:
        a = self.by_id[agent_id]
        return self._free(a, now) if a.state == "not_ready" else []

    def call_waiting(self, call_id: str, queue_id: str, now: float, priority: int | None = None,
                     skills: dict[str, int] | None = None) -> list[tuple[str, str]]:
        q = self.q[queue_id]
        reqs = merge_requirements([(r.skill, r.min_level) for r in q.requirements], (skills or {}).items())
        call = _NCall(call_id, queue_id, q.priority if priority is None else priority, reqs, now, self.seq)
        self.seq += 1
        self.calls.append(call)
        return self._place(call, now)

    def offer_answered(self, call_id: str, agent_id: str, now: float) -> list[tuple[str, str]]:
        call = next(c for c in self.calls if c.id == call_id)
        a = call.agent
        assert a is not None and a.id == agent_id
        a.state, a.call = "on_call", None
        a.calls_today += 1
        self.calls.remove(call)
        recovered = self._outcome(call.queue, now - call.arrived <= self.q[call.queue].sl_seconds)
        return self._lend(call.queue, recovered, now)

    def offer_failed(self, call_id: str, agent_id: str, now: float) -> list[tuple[str, str]]:
        call = next(c for c in self.calls if c.id == call_id)
        a = call.agent
        a.state, a.call, call.agent = "not_ready", None, None
        return self._place(call, now)

    def call_abandoned(self, call_id: str, now: float) -> list[tuple[str, str]]:
        call = next(c for c in self.calls if c.id == call_id)
        self.calls.remove(call)
        recovered = self._outcome(call.queue, False)
        out = []
        a = call.agent
        if a is not None:   # the agent it rang is free again, and chooses first
            a.call = None
            out += self._free(a, now)
        return out + self._lend(call.queue, recovered, now)

    def call_finished(self, agent_id: str, now: float) -> list[tuple[str, str]]:
        return self._free(self.by_id[agent_id], now)

    # decisions
    def _ways(self, a: _NAgent, call: _NCall, now: float) -> list[tuple[bool, int]]:
        """(borrowed, membership priority) for each way the agent may take the call now."""
        if call.queue in a.queues:
            prio, delay = a.queues[call.queue]
            return [(False, prio)] if call.arrived + delay <= now else []
        ways = []
        for lender in self.q[call.queue].borrow_from:
            if lender in a.queues and self.lending[lender]:
                prio, delay = a.queues[lender]
                if call.arrived + delay <= now:
                    ways.append((True, prio))
        return ways

    def _policy(self, call: _NCall, a: _NAgent) -> tuple:
        sel = self.q[call.queue].selection
        if sel == "longest_idle":
            return (a.idle_since, a.ord)
        if sel == "best_proficiency":
            return (-sum(a.skills.get(s, 0) for s, _ in call.reqs), a.idle_since, a.ord)
        if sel == "fewest_calls":
            return (a.calls_today, a.idle_since, a.ord)
        return (a.rr.get(call.queue, -1), a.ord)

    def _place(self, call: _NCall, now: float) -> list[tuple[str, str]]:
        best = None
        for a in self.agents:
            if a.state != "available" or not qualifies(a.skills, call.reqs):
                continue
            ways = self._ways(a, call, now)
            if ways:
                k = (min(ways), self._policy(call, a))
                if best is None or k < best[0]:
                    best = (k, a)
        return [] if best is None else [self._offer(call, best[1])]

    def _free(self, a: _NAgent, now: float) -> list[tuple[str, str]]:
        a.state, a.idle_since = "available", now
        best = None
        for call in self.calls:
            if call.agent is not None or not qualifies(a.skills, call.reqs):
                continue
            w = self.q[call.queue].aging_weight
            for borrowed, mprio in self._ways(a, call, now):
                k = (borrowed, -call.prio, mprio, (call.arrived - now) * w, call.seq)
                if best is None or k < best[0]:
                    best = (k, call)
        return [] if best is None else [self._offer(best[1], a)]

    def _offer(self, call: _NCall, a: _NAgent) -> tuple[str, str]:
        a.state, a.call, call.agent = "reserved", call, a
        a.rr[call.queue] = self.turn
        self.turn += 1
        return (call.id, a.id)

    def _outcome(self, queue: str, within: bool) -> bool:
        """Count a call that left the queue; True when the queue lends again."""
        counts = self.sl[queue]
        counts[0] += 1
        counts[1] += within
        cfg = self.q[queue]
        threshold = cfg.sl_percent if cfg.lend_while_sl_above is None else cfg.lend_while_sl_above
        lending = 100.0 * counts[1] / counts[0] >= threshold
        recovered = lending and not self.lending[queue]
        self.lending[queue] = lending
        return recovered

    def _lend(self, queue: str, recovered: bool, now: float) -> list[tuple[str, str]]:
        """A queue lends again: its borrowers' waiting calls may take its agents."""
        out: list[tuple[str, str]] = []
        if recovered:
            for b in self.borrowers[queue]:
                for call in sorted((c for c in self.calls if c.queue == b and c.agent is None),
                                   key=lambda c: (-c.prio, c.arrived, c.seq)):
                    out += self._place(call, now)
        return out


# -- the contact centre -----------------------------------------------------------------

def build_config(agents: int, seed: int, n_skills: int = SKILLS, n_queues: int = QUEUES) -> dict:
    """The contact centre as a config mapping (``parse_config`` validates it)."""
    rnd = random.Random(seed)
    skills = [f"sk{i:03d}" for i in range(n_skills)]
    languages = skills[-LANGUAGES:]
    queues = []
    for i in range(n_queues):
        primary = skills[i * (n_skills - LANGUAGES) // n_queues]
        reqs = [{"skill": primary, "min_level": rnd.randint(1, 4)}]
        if rnd.random() < 0.2:
            other = rnd.choice([s for s in skills[:-LANGUAGES] if s != primary])
            reqs.append({"skill": other, "min_level": rnd.randint(1, 3)})
        q = {"id": f"q{i:03d}", "requirements": reqs, "priority": 5 if rnd.random() < 0.1 else 0,
             "aging_weight": rnd.choice([1.0, 1.0, 1.5]), "selection": POLICIES[i % 4], "wrapup_s": 0,
             "steps": [{"after_s": 60, "requirements": [{"skill": primary, "min_level": 1}]}]}
        if rnd.random() < 0.2:
            q["borrow_from"] = [f"q{rnd.randrange(n_queues):03d}"]
            if q["borrow_from"] == [q["id"]]:
                del q["borrow_from"]
        queues.append(q)
    people = []
    for i in range(agents):
        sk: dict[str, int] = {s: rnd.randint(1, 10) for s in rnd.sample(skills[:-LANGUAGES], 3)}
        member = {}
        for q in rnd.sample(queues, 3):
            # Mostly qualified for the queue's requirements; a fifth fall one level short.
            for r in q["requirements"]:
                level = rnd.randint(r["min_level"], 10) if rnd.random() < 0.8 else r["min_level"] - 1
                if level >= 1:
                    sk[r["skill"]] = max(sk.get(r["skill"], 0), level)
            m: dict = {"priority": rnd.randint(0, 1)}
            if rnd.random() < 0.2:
                m["delay_s"] = rnd.choice([10.0, 30.0])
            member[q["id"]] = m
        for lang in rnd.sample(languages, rnd.choice([0, 1, 1, 2])):
            sk[lang] = rnd.randint(1, 5)
        people.append({"id": f"ag{i:05d}", "name": f"Agent {i}", "device": f"PJSIP/{1000 + i}",
                       "skills": sk, "queues": member})
    return {"skills": skills, "agents": people, "queues": queues}


class Traffic:
    def __init__(self, seed: int, n_skills: int = SKILLS, n_queues: int = QUEUES) -> None:
        self.rnd = random.Random(seed + 1)
        self.n = 0
        self.n_skills, self.n_queues = n_skills, n_queues

    def call(self) -> tuple[str, str, int | None, dict[str, int] | None]:
        self.n += 1
        rnd = self.rnd
        prio = rnd.randint(1, 3) if rnd.random() < 0.05 else None
        extra = {f"sk{self.n_skills - LANGUAGES + rnd.randrange(LANGUAGES):03d}": rnd.randint(1, 2)} \
            if rnd.random() < 0.1 else None
        return f"call{self.n}", f"q{rnd.randrange(self.n_queues):03d}", prio, extra


def offers(ds: list) -> list[tuple[str, str]]:
    return [(d.call_id, d.agent_id) for d in ds if isinstance(d, Offer)]


@dataclass
class Result:
    agents: int
    arrival: dict[str, list[int]]
    free: dict[str, list[int]]
    free_found: int
    arrival_found: int
    waiting: int
    setup_s: float
    idle: dict[str, list[int]]
    idle_found: int


def run(agents: int, events: int, seed: int) -> Result:
    t_setup = time.perf_counter()
    cfg = parse_config(build_config(agents, seed))
    fast, naive = Router(cfg), NaiveRouter(cfg)
    traffic = Traffic(seed)
    now = 1_700_000_000.0
    talking: list[str] = []

    def answer(pairs: list[tuple[str, str]], at: float) -> None:
        for call_id, agent_id in pairs:
            fast.offer_answered(call_id, agent_id, at)
            naive.offer_answered(call_id, agent_id, at)
            talking.append(agent_id)

    def same(a: list[tuple[str, str]], b: list[tuple[str, str]], what: str) -> list[tuple[str, str]]:
        if a != b:
            raise SystemExit(f"{agents} agents, {what}: the routers disagree: {a} != {b}")
        return a

    for _ in range(WAITING):
        cid, q, prio, extra = traffic.call()
        same(offers(fast.call_waiting(cid, q, now, priority=prio, skills=extra)),
             naive.call_waiting(cid, q, now, priority=prio, skills=extra), "setup arrival")
    for a in cfg.agents:
        now += 0.01
        got = same(offers(fast.login(a.id, now)), naive.login(a.id, now), "setup login")
        answer(got, now)
        if got:
            cid, q, prio, extra = traffic.call()
            answer(same(offers(fast.call_waiting(cid, q, now, priority=prio, skills=extra)),
                        naive.call_waiting(cid, q, now, priority=prio, skills=extra), "setup arrival"), now)
    # Then calls until WAITING wait again: nearly every agent who can serve a queue talks.
    while sum(1 for c in naive.calls if c.agent is None) < WAITING:
        now += 0.01
        cid, q, prio, extra = traffic.call()
        answer(same(offers(fast.call_waiting(cid, q, now, priority=prio, skills=extra)),
                    naive.call_waiting(cid, q, now, priority=prio, skills=extra), "setup arrival"), now)
    setup_s = time.perf_counter() - t_setup

    rnd = random.Random(seed + 2)
    lat = {"arrival": {"indexed": [], "naive": []}, "free": {"indexed": [], "naive": []}}
    found = {"arrival": 0, "free": 0}
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for i in range(events):
            now += 0.05
            if i % 2 == 0 and talking:
                agent_id = talking.pop(rnd.randrange(len(talking)))
                call_id = fast.agent_state(agent_id).call_id
                what = "free"
                t0 = clock()
                a = offers(fast.call_finished(call_id, agent_id, now))
                t1 = clock()
                b = naive.call_finished(agent_id, now)
                t2 = clock()
            else:
                cid, q, prio, extra = traffic.call()
                what = "arrival"
                t0 = clock()
                a = offers(fast.call_waiting(cid, q, now, priority=prio, skills=extra))
                t1 = clock()
                b = naive.call_waiting(cid, q, now, priority=prio, skills=extra)
                t2 = clock()
            lat[what]["indexed"].append(t1 - t0)
            lat[what]["naive"].append(t2 - t1)
            found[what] += bool(same(a, b, what))
            answer(a, now)
    finally:
        gc.enable()
    waiting = sum(1 for c in fast.waiting_calls() if c.status == "waiting")

    # Arrivals among idle agents: everyone logged in, nobody waiting; each caller is
    # offered (and answers), so fewer agents stay available.
    fast, naive = Router(cfg), NaiveRouter(cfg)
    for a in cfg.agents:
        same(offers(fast.login(a.id, now)), naive.login(a.id, now), "login")
    idle = {"indexed": [], "naive": []}
    idle_found = 0
    gc.collect()
    gc.disable()
    try:
        for _ in range(min(events // 2, agents // 2)):
            now += 0.05
            cid, q, prio, extra = traffic.call()
            t0 = clock()
            a = offers(fast.call_waiting(cid, q, now, priority=prio, skills=extra))
            t1 = clock()
            b = naive.call_waiting(cid, q, now, priority=prio, skills=extra)
            t2 = clock()
            idle["indexed"].append(t1 - t0)
            idle["naive"].append(t2 - t1)
            got = same(a, b, "arrival among idle agents")
            idle_found += bool(got)
            for call_id, agent_id in got:
                fast.offer_answered(call_id, agent_id, now)
                naive.offer_answered(call_id, agent_id, now)
    finally:
        gc.enable()
    return Result(agents, lat["arrival"], lat["free"], found["free"], found["arrival"], waiting, setup_s,
                  idle, idle_found)


def pct(xs: list[int], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="500,2000,5000")
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    sizes = [int(x) for x in args.agents.split(",")]
    print(f"{SKILLS} skills, {QUEUES} queues, {WAITING} calls waiting at the start, {args.events} measured "
          f"inputs per size (half arrivals, half agents freed), then up to {args.events // 2} arrivals among "
          f"idle agents; seed {args.seed}; wall time per input, "
          f"GC off while measuring; Python {platform.python_version()} on {platform.machine()}")
    print()
    print("| agents | input | router | p50 | p99 | max | decisions/s | offers made |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        r = run(n, args.events, args.seed)
        for what, lat, found in (("arrival, agents busy", r.arrival, r.arrival_found),
                                 ("agent free, calls waiting", r.free, r.free_found),
                                 ("arrival, agents idle", r.idle, r.idle_found)):
            for name in ("indexed", "naive"):
                xs = lat[name]
                rate = len(xs) / (sum(xs) / 1e9)
                label = "acd.core.Router" if name == "indexed" else "naive scan (reference)"
                print(f"| {n:,} | {what} | {label} | {pct(xs, 0.5):.1f} µs | {pct(xs, 0.99):.1f} µs "
                      f"| {max(xs) / 1000:.1f} µs | {rate:,.0f} | {found}/{len(xs)} |")
        print(f"<!-- {n} agents: setup {r.setup_s:.1f}s, {r.waiting} calls waiting at the end; "
              f"decisions identical -->", file=sys.stderr)


if __name__ == "__main__":
    main()
