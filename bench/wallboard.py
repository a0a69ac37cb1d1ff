"""The live wallboard over a long day: build time per push and memory held, with
20,000 and 80,000 queued calls in the day.

A synthetic day (``synthetic_day``, also the unit tests' long day): ``--calls``
callers arriving over ``--hours`` of traffic from 08:00 UTC into three queues
(sales overflows to support after 60 s, billing sends to voicemail after 150 s,
a supervisor moves 2% of the waiting calls), answered first come first served
by enough agents for about 85% occupancy, with ringing, hold, wrap-up (5% none),
breaks, logins and logouts, and callers abandoning after an exponential patience.
It is a stream of what the daemon sees: each call event with the call as the
model shows it (every ``CallView`` field) and each agent state change.

The stream drives the real ``api.wallboard_service.WallboardService`` (a fake core: the
ACD's router answers the agent states, no database, no WebSocket), building the
board every ``--push-every`` simulated seconds as the push task would. At the end
of the traffic (the rolling windows full at the day's rate) it times builds with
10 calls changed before each (median of ``--repeat``), then feeds the same day
again under ``tracemalloc`` for the memory the service holds at that instant.

    .venv/bin/python bench/wallboard.py [--calls 20000 80000] [--hours 12] [--push-every 10]
"""
from __future__ import annotations

import argparse
import gc
import heapq
import itertools
import math
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.decisions import AgentView  # noqa: E402
from acd.events import AgentStateChanged  # noqa: E402
from acd.figures import StateChange  # noqa: E402

QUEUES = ("sales", "support", "billing")
_WEIGHTS = (0.5, 0.3, 0.2)
_TICK = 1 / 64        # every time is a whole number of ticks: sums of times are exact in floats


def _q(t: float) -> float:
    return round(t / _TICK) * _TICK


@dataclass(frozen=True, slots=True)
class CallInput:
    """A call event as the bus carries it: kind, seq, time, data, and the call as
    the model shows it after the event (``row``: the ``CallView`` fields)."""

    at: float
    call_id: str
    kind: str
    seq: int
    row: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentInput:
    """An agent state change as the router reports it."""

    at: float
    change: StateChange


TALK_MEAN = 160.0


def agent_names(calls: int, seconds: float, agents: int | None = None) -> list[str]:
    """The agents of ``synthetic_day``: given, or enough for about 85% occupancy."""
    if agents is None:
        agents = max(2, math.ceil(calls / seconds * (TALK_MEAN + 40.0) / 0.85) + 2)
    return [f"ag{i:03d}" for i in range(agents)]


def synthetic_day(calls: int, *, start: float, seconds: float, agents: int | None = None,
                  seed: int = 1) -> Iterator[CallInput | AgentInput]:
    """The inputs of a day, in time order (see the module doc): ``calls`` arrivals
    spread uniformly over [start, start + seconds); agents log in before ``start``
    (each has a ``logged_out`` change two hours before it) and out after the
    traffic, once free. Every time is a multiple of 1/64 s. Deterministic per ``seed``."""
    rng = random.Random(seed)
    talk_mean, hold_share, wrap_mean = TALK_MEAN, 0.15, 30.0
    names = agent_names(calls, seconds, agents)
    heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
    order = itertools.count()
    out: list[CallInput | AgentInput] = []
    rows: dict[str, dict[str, Any]] = {}
    seqs: dict[str, int] = {}
    where: dict[str, str] = {}                   # call -> the queue it waits in now
    waiting: dict[str, None] = {}                # FIFO of the calls waiting
    free: deque[str] = deque()                   # agents available, longest free first
    state: dict[str, str] = {}
    leaving: set[str] = set()                    # agents to log out once free

    def at(t: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(heap, (_q(t), next(order), fn, args))

    def agent(t: float, a: str, st: str, reason: str = "") -> None:
        state[a] = st
        out.append(AgentInput(t, StateChange(a, t, st, reason)))

    def emit(t: float, cid: str, kind: str, data: dict[str, Any] | None = None, **changes: Any) -> None:
        row = rows[cid]
        row.update(changes)
        seqs[cid] += 1
        out.append(CallInput(t, cid, kind, seqs[cid], dict(row), data or {}))

    def dispatch(t: float) -> None:
        while waiting and free:
            cid = next(iter(waiting))
            del waiting[cid]
            a = free.popleft()
            agent(t, a, "reserved")
            emit(t, cid, "call.offered", {"agent": a}, state="offered")
            at(t + rng.uniform(0.5, 4.0), answer, cid, a)

    def arrive(t: float, i: int) -> None:
        cid = f"c{i:06d}.{seed}"
        q = rng.choices(QUEUES, _WEIGHTS)[0]
        rows[cid] = {"call_id": cid, "state": "queued", "direction": "inbound", "caller_num": f"+4420{i:07d}",
                     "caller_name": f"Caller {i}", "exten": "100", "started_at": _q(t - rng.uniform(0, 20)),
                     "answered_at": None, "queue": q, "queue_joined_at": t, "queue_left_at": None, "agent": None,
                     "agent_answered_at": None, "ended_at": None, "hangup_cause": None, "hangup_cause_txt": None,
                     "end_estimated": False, "abandoned": False, "legs": 1}
        seqs[cid] = 0
        where[cid] = q
        waiting[cid] = None
        emit(t, cid, "call.queued", {"queue": q})
        at(t + min(900.0, 1.0 + rng.expovariate(1 / 90)), abandon, cid)
        if q == "sales":
            at(t + 60, overflow, cid)
        elif q == "billing":
            at(t + 150, max_wait, cid)
        if rng.random() < 0.02:
            at(t + 20, move, cid)
        dispatch(t)

    def abandon(t: float, cid: str) -> None:
        if cid in waiting:
            del waiting[cid]
            emit(t, cid, "call.abandoned", {"queue": where[cid]}, abandoned=True, queue_left_at=t)
            end(t, cid)

    def overflow(t: float, cid: str) -> None:
        if cid in waiting:
            emit(t, cid, "acd.maxwait", {"queue_id": where[cid], "action": "overflow", "target": "support"})
            where[cid] = "support"

    def move(t: float, cid: str) -> None:
        if cid in waiting:
            target = "billing" if where[cid] != "billing" else "sales"
            emit(t, cid, "acd.moved", {"queue_id": where[cid], "target": target})
            where[cid] = target

    def max_wait(t: float, cid: str) -> None:
        if cid in waiting and where[cid] == "billing":
            del waiting[cid]
            emit(t, cid, "acd.dequeued", {"queue_id": "billing", "reason": "max_wait"}, queue_left_at=t,
                 state="ivr")
            at(t + rng.uniform(10, 40), end, cid)

    def answer(t: float, cid: str, a: str) -> None:
        agent(t, a, "on_call")
        emit(t, cid, "call.connected", {"agent": a, "uniqueid": f"{cid}-{a}"}, agent=a, agent_answered_at=t,
             answered_at=t, queue_left_at=t, state="talking", legs=2)
        talk = 20 + rng.expovariate(1 / (talk_mean - 20))
        hold = 0.0
        if rng.random() < hold_share:
            hold = rng.uniform(10, 60)
            h = _q(t + talk * 0.4)
            at(h, lambda t, cid: emit(t, cid, "call.held", state="held"), cid)
            at(h + hold, lambda t, cid: emit(t, cid, "call.resumed", state="talking"), cid)
        at(t + talk + hold, agent_left, cid, a)

    def agent_left(t: float, cid: str, a: str) -> None:
        emit(t, cid, "call.agent_left", {"agent": a, "uniqueid": f"{cid}-{a}"}, legs=1)
        at(t + rng.uniform(0, 1.5), end, cid)
        r = rng.random()
        if r < 0.05:                                   # no wrap-up
            at(t + rng.uniform(0, 0.5), ready, a)
        else:
            at(t + rng.uniform(0, 0.75), lambda t, a: agent(t, a, "wrapup"), a)
            after = ready if r < 0.97 else pause
            at(t + 0.75 + rng.uniform(5, 2 * wrap_mean - 5), after, a)

    def end(t: float, cid: str) -> None:
        emit(t, cid, "call.ended", {"cause": 16}, ended_at=t, state="ended", hangup_cause=16,
             hangup_cause_txt="Normal Clearing", legs=0)
        del rows[cid], seqs[cid], where[cid]

    def ready(t: float, a: str) -> None:
        if a in leaving:
            if state[a] != "logged_out":
                agent(t, a, "logged_out")
            return
        agent(t, a, "available")
        free.append(a)
        dispatch(t)

    def pause(t: float, a: str) -> None:
        agent(t, a, "not_ready", "break")
        at(t + rng.uniform(300, 900), ready, a)

    def log_out(t: float, a: str) -> None:
        leaving.add(a)
        if state[a] in ("available", "not_ready"):
            if a in free:
                free.remove(a)
            agent(t, a, "logged_out")

    for a in names:
        at(start - 7200, lambda t, a: agent(t, a, "logged_out"), a)
        at(start - rng.uniform(0, 900), ready, a)
        at(start + seconds + rng.uniform(0, 1800), log_out, a)
    arrivals = sorted(_q(start + rng.uniform(0, seconds)) for _ in range(calls))
    for i, t in enumerate(arrivals):
        at(t, arrive, i)
    while heap:
        t, _, fn, args = heapq.heappop(heap)
        fn(t, *args)
        yield from out
        out.clear()


# -- driving the real service -------------------------------------------------------------


class _Router:
    def __init__(self, agents: list[str]) -> None:
        self.views = {a: AgentView(a, "logged_out", "", 0.0, None, None) for a in agents}

    def agent_state(self, agent_id: str) -> AgentView:
        return self.views[agent_id]

    def waiting_calls(self) -> list[Any]:
        return []


def make_service(agents: list[str]) -> Any:
    """A ``WallboardService`` on a fake core: no database, no WebSocket; the ACD's
    router answers the agent states the stream sets."""
    from aiohttp import web

    from api.wallboard_service import WallboardService
    from cti.daemon import CORE

    acd = SimpleNamespace(
        config=SimpleNamespace(agents=[SimpleNamespace(id=a, name=a.upper()) for a in agents],
                               queues=[SimpleNamespace(id=q, name=q, sl_seconds=20.0, sl_percent=80.0, channel="voice") for q in QUEUES]),
        router=_Router(agents), calls={})
    core = SimpleNamespace(settings=SimpleNamespace(timezone="UTC", wallboard_push_s=0.5, wallboard_config=None),
                           acd=acd, bus=None, dsn=None, model=None)
    app = web.Application()
    app[CORE] = core  # type: ignore[assignment]
    return WallboardService(app, core, acd)  # type: ignore[arg-type]


def feed(service: Any, item: CallInput | AgentInput) -> None:
    """One input into the service, as the bus hands it over."""
    from cti.events import CallEvent, CallView

    if isinstance(item, AgentInput):
        c = item.change
        view = AgentView(c.agent_id, c.state, c.reason or "", c.at, None, None)
        previous = service.acd.router.views.get(c.agent_id)
        service.acd.router.views[c.agent_id] = view
        service.agent_changed(AgentStateChanged(c.agent_id, c.at, view, previous))
    else:
        service.on_call_event(CallEvent.from_record(item.kind, item.call_id, item.at, item.seq, CallView(**item.row),
                                                    item.data))


def _ledger_calls(service: Any) -> int:
    ledger = getattr(service, "ledger", None)
    return len(ledger.rows) if ledger is not None else len(service.rows)


def run(calls: int, hours: float, push_every: float, repeat: int, trace: bool) -> dict[str, Any]:
    day = 1_767_225_600.0                       # 2026-01-01 00:00 UTC
    start, seconds = day + 8 * 3600, hours * 3600
    until = start + seconds                     # the end of the traffic: the windows are full
    agents = agent_names(calls, seconds)
    service = make_service(agents)
    service.day_start = day
    if trace:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    builds: list[float] = []
    next_push = start - 7200 + push_every if push_every > 0 else math.inf
    n_in = 0
    recent: dict[str, CallInput] = {}            # the latest input of the calls seen last
    t_feed = time.perf_counter()
    for item in synthetic_day(calls, start=start, seconds=seconds):
        if item.at > until:
            break
        while next_push <= item.at:
            t0 = time.perf_counter()
            service.build(next_push)
            builds.append(time.perf_counter() - t0)
            next_push += push_every
        feed(service, item)
        n_in += 1
        if not trace and isinstance(item, CallInput):
            recent.pop(item.call_id, None)
            recent[item.call_id] = item
            if len(recent) > 400:
                for cid in list(recent)[:200]:
                    del recent[cid]
    t_feed = time.perf_counter() - t_feed
    service.build(until)
    out: dict[str, Any] = {"calls": calls, "inputs": n_in, "agents": len(agents), "feed_s": t_feed,
                           "ledger_calls": _ledger_calls(service)}
    if trace:
        gc.collect()
        out["held_mb"] = (tracemalloc.get_traced_memory()[0] - base) / 1e6
        tracemalloc.stop()
        return out
    times = []
    latest = list(recent.values())
    for k in range(repeat):
        for item in latest[-10 * (k + 1):len(latest) - 10 * k]:    # 10 calls changed since the last push
            feed(service, CallInput(item.at, item.call_id, "call.state", item.seq, item.row, {}))
        t0 = time.perf_counter()
        snap = service.build(until)
        times.append(time.perf_counter() - t0)
    out["push_ms"] = statistics.median(times) * 1000
    out["during_ms"] = (statistics.mean(builds) * 1000, max(builds) * 1000) if builds else None
    out["offered"] = sum(q["today"]["offered"] for q in snap["queues"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, nargs="+", default=[20_000, 80_000])
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--push-every", type=float, default=10.0, help="simulated seconds between builds (0: none)")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    print(f"# {date.today()} {platform.node()} Python {platform.python_version()}; {args.hours:g} h of traffic, "
          f"a build every {args.push_every:g} simulated s")
    print("| calls in the day | agents | calls in the ledger at the end | build per push (10 changed) | "
          "builds during the day: mean / max | memory held | feed |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.calls:
        r = run(n, args.hours, args.push_every, args.repeat, trace=False)
        m = run(n, args.hours, args.push_every, args.repeat, trace=True)
        during = f"{r['during_ms'][0]:.1f} / {r['during_ms'][1]:.0f} ms" if r["during_ms"] else "-"
        print(f"| {n:,} ({r['offered']:,} offered today at the end) | {r['agents']} | {r['ledger_calls']:,} | "
              f"{r['push_ms']:.1f} ms | {during} | {m['held_mb']:.1f} MB | {r['feed_s']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
