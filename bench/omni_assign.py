"""A million task assignments through the omnichannel router, every invariant checked.

A seeded random centre: ``--agents`` agents in four capacity profiles (voice +
3 chats, chat blocks voice, e-mail allowed on a call; voice + 2 chats that do
not block voice; chat/e-mail/message only; voice + 1 message), all members of
one voice, two chat, one e-mail and one message queue. Random inputs: calls
arrive, are answered, end, wrap-ups end; tasks of the four task queues arrive,
are closed or abandoned; agents take breaks and come back. Every decision goes
through ``acd.omni_check.Shadow`` (no agent over capacity in any channel, no
call offered to an agent a task blocks or a call holds, least-loaded eligible
agent at every assignment, every task dequeued once) and after every input the
*stable* check (no waiting task with an eligible agent). The run stops at the
first violation.

Printed: assignments, offers, inputs, seconds, assignments/s (checks included),
fairness: per profile, the most- over the least-assigned agent's count of
tasks (1.0 is perfectly even); and the time inside the router (checks excluded)
of a task arrival beside a call arrival, p50 and p99 in microseconds, split by
whether it was given to an agent at once or queued.

    .venv/bin/python bench/omni_assign.py [--assignments 1000000] [--agents 40] [--seed 7]
"""
from __future__ import annotations

import argparse
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acd.config import parse_config  # noqa: E402
from acd.decisions import Offer, TaskAssigned  # noqa: E402
from acd.omni import OmniRouter  # noqa: E402
from acd.omni_check import Shadow  # noqa: E402

PROFILES = {
    "voice+3chat(blocks)": ({"chat": 3, "email": 2, "voice_blocked_by": ["chat"], "while_on_voice": ["email"]},
                            ["v", "c1", "c2", "e"]),
    "voice+2chat": ({"chat": 2}, ["v", "c1", "c2"]),
    "text-only": ({"voice": 0, "chat": 3, "email": 3, "message": 3}, ["c1", "c2", "e", "m"]),
    "voice+1msg": ({"message": 1, "voice_blocked_by": ["message"]}, ["v", "m"]),
}


def build(n_agents: int):
    agents = []
    names = list(PROFILES)
    for i in range(n_agents):
        prof = names[i % len(names)]
        cap, queues = PROFILES[prof]
        agents.append({"id": f"a{i}", "name": prof, "device": f"PJSIP/a{i}", "skills": {"s": 5},
                       "queues": {q: {} for q in queues}, "capacity": cap})
    return parse_config({"skills": ["s"], "agents": agents, "queues": [
        {"id": "v", "wrapup_s": 5},
        {"id": "c1", "channel": "chat", "priority": 1, "sl_seconds": 30},
        {"id": "c2", "channel": "chat", "sl_seconds": 60},
        {"id": "e", "channel": "email", "sl_seconds": 14400},
        {"id": "m", "channel": "message", "aging_weight": 2.0, "sl_seconds": 600},
    ]})


def run(target: int, n_agents: int, seed: int) -> dict:
    cfg = build(n_agents)
    rng = random.Random(seed)
    r = OmniRouter(cfg)
    sh = Shadow(cfg)
    agent_ids = [a.id for a in cfg.agents]
    now = 1_700_000_000.0
    n = inputs = 0
    ringing: dict[str, str] = {}
    open_tasks: list[str] = []
    on_break: list[str] = []
    talking: list[tuple[str, str]] = []
    # Seconds inside the router only (the shadow's checks excluded): arrivals offered or
    # assigned at once, and arrivals that queued.
    task_lat: list[float] = []
    task_q: list[float] = []
    call_lat: list[float] = []
    call_q: list[float] = []

    def feed(ds):
        sh.apply(ds)
        for d in ds:
            if isinstance(d, Offer):
                ringing[d.call_id] = d.agent_id
            elif isinstance(d, TaskAssigned):
                open_tasks.append(d.task_id)
        sh.stable()

    for a in agent_ids:
        feed(r.voice_input("login", a, now))
    t0 = time.perf_counter()
    while sh.assigned < target:
        inputs += 1
        now += rng.random()
        x = rng.random()
        if x < 0.37:
            n += 1
            q = rng.choice(("c1", "c2", "c2", "e", "m"))
            sh.accepted(f"t{n}", q)
            prio = rng.choice((None, None, None, 3))
            t = time.perf_counter()
            ds = r.task_waiting(f"t{n}", q, now, priority=prio)
            (task_lat if any(isinstance(d, TaskAssigned) for d in ds) else task_q).append(time.perf_counter() - t)
            feed(ds)
        elif x < 0.78:
            if open_tasks:
                i = rng.randrange(len(open_tasks))
                open_tasks[i], open_tasks[-1] = open_tasks[-1], open_tasks[i]
                feed(r.task_closed(open_tasks.pop(), now))
        elif x < 0.80:
            if sh.waiting:
                feed(r.task_abandoned(next(iter(sh.waiting)), now))
        elif x < 0.86:
            n += 1
            t = time.perf_counter()
            ds = r.voice_input("call_waiting", f"c{n}", "v", now)
            (call_lat if any(isinstance(d, Offer) for d in ds) else call_q).append(time.perf_counter() - t)
            feed(ds)
        elif x < 0.94:
            if talking:
                i = rng.randrange(len(talking))
                talking[i], talking[-1] = talking[-1], talking[i]
                cid, a = talking.pop()
                feed(r.voice_input("call_finished", cid, a, now))
        elif x < 0.955:     # a short break: the agent longest on one comes back first
            a = rng.choice(agent_ids)
            if sh.state[a] == "available":
                on_break.append(a)
                feed(r.voice_input("set_not_ready", a, "break", now))
        elif x < 0.975:
            if on_break:
                feed(r.voice_input("set_ready", on_break.pop(0), now))
        else:
            feed(r.tick(now))
        while ringing:      # offers are answered at once
            cid, a = ringing.popitem()
            talking.append((cid, a))
            feed(r.voice_input("offer_answered", cid, a, now))
        if inputs % 50_000 == 0:
            sh.check_router(r)
    elapsed = time.perf_counter() - t0
    sh.check_router(r)
    fairness = {}
    for prof in PROFILES:
        counts = [sh.per_agent[a.id] for a in cfg.agents if a.name == prof and a.capacity.chat + a.capacity.email
                  + a.capacity.message]
        if counts and min(counts):
            fairness[prof] = round(max(counts) / min(counts), 3)
    return {"assignments": sh.assigned, "offers": sh.offers, "inputs": inputs, "seconds": round(elapsed, 1),
            "per_s": round(sh.assigned / elapsed), "fairness_max_over_min": fairness,
            "waiting_at_end": len(sh.waiting),
            "task arrival assigned at once, us p50/p99": _pct(task_lat), "task arrival queued": _pct(task_q),
            "call arrival offered at once, us p50/p99": _pct(call_lat), "call arrival queued": _pct(call_q)}


def _pct(xs: list[float]) -> str:
    if not xs:
        return "none"
    xs = sorted(xs)
    return (f"{xs[len(xs) // 2] * 1e6:.1f} / {xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e6:.1f} "
            f"(n={len(xs)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assignments", type=int, default=1_000_000)
    ap.add_argument("--agents", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(f"omni_assign: commit {commit}, python {platform.python_version()}, seed {args.seed}, "
          f"{args.agents} agents")
    res = run(args.assignments, args.agents, args.seed)
    for k, v in res.items():
        print(f"  {k}: {v}")
    print("  invariants: all held")


if __name__ == "__main__":
    main()
