"""Load harness: real calls through the sandbox's IVR, ACD and simulated agents.

One command drives Poisson arrivals of simulated callers (``cti.demo``: Originate
of Local channels) into the sandbox, a share of them through the IVR pressing
keys (``cti-demo-dtmf``), a share with a short patience (they abandon), onto N
simulated agents of an ACD configuration written for the run. Every agent has a WebSocket
client logged in through the API as that agent, beside a few supervisors. The
daemon runs as its own process (``cti serve``), so its CPU and memory are read
from /proc apart from this generator's, next to Asterisk's (the sandbox's pid).

    scripts/run-isolated load .venv/bin/python bench/load.py --rate 2 --duration 120
    scripts/run-isolated load .venv/bin/python bench/load.py --ramp 1,2,4,8 --duration 60
    scripts/run-isolated load .venv/bin/python bench/load.py --soak --duration 1800 --rate 1
    scripts/run-isolated soak .venv/bin/python bench/load.py --day --csv day.csv --json day.json
    scripts/run-isolated load .venv/bin/python bench/load.py --fanout 2000 --duration 60

(``scripts/run-isolated`` gives the run a private sandbox and network namespace;
against an already running sandbox, run ``bench/load.py`` directly.)

What is measured, and from where:

- **screen-pop latency**: from the Asterisk event that offers the call to the
  agent (``DialBegin``: its ``Timestamp`` header, ``timestampevents = yes``;
  the card's ``offered_at`` carries it) to the ``screenpop`` message's arrival
  at that agent's WebSocket client in this process (same host clock). It
  includes the daemon's customer look-up in PostgreSQL, which the card waits
  for, and this process's own scheduling.
- **routing latency**: the caller's queue entry (``UserEvent CtiAcdWait``) to
  the caller's ``DialBegin`` towards an agent, both Asterisk timestamps; shown
  for callers who found an agent free (no agent leg up for all N agents at
  entry) and for all.
- **event lag**: the daemon's own ``cti_event_lag_seconds`` histogram over the
  run (Asterisk timestamp to its bus); quantiles are bucket bounds.
- **CPU**: utime + stime of the daemon's process, of Asterisk's, of
  PostgreSQL's processes, over the same window (first call placed to the last
  call gone); per call placed.
- **integrity** (``bench/integrity.py``): every call Asterisk accepted is in the
  database exactly once, closed, its timestamps in order; every offer
  (``DialBegin`` to an agent) gave a screen-pop at that agent's client, and
  none reached another agent.

``--ramp`` steps the rate up on one daemon and reports each step; it stops
after the first step the sandbox does not sustain (Originates refused, calls
lost, event lag p99 over 1 s, or arrivals below 90% of the rate asked).
``--soak`` samples the daemon's RSS, asyncio tasks, open fds and WebSocket
send-queue depths every ``--sample-every`` seconds into a CSV and gives a
verdict from the growth slopes; with ``--memtrace DIR`` the daemon runs under
``tracemalloc`` (``bench/memtrace.py``) and the JSON also says where its heap grew over
the second half. ``--fanout N`` connects N supervisor clients
(sessions made in the store) and measures delivery of the call events to all.

Each mode prints JSON (``--json FILE`` writes it) and a markdown table.

The parts: ``bench/load_callers.py`` (the call generator), ``bench/load_daemon.py`` (the
daemon's configuration and readiness), ``bench/load_desktops.py`` (users and WebSocket
clients), ``bench/load_checks.py`` (what Asterisk offered; integrity and screen-pop
checks), ``bench/load_figures.py`` (percentiles, histograms, /proc), ``bench/load_run.py``
(a run and its steps), ``bench/load_fanout.py`` (the fan-out run), ``bench/load_report.py``
(the tables); the daemon process and the scratch database: ``bench/harness.py``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load_callers import Mix  # noqa: E402
from bench.load_fanout import run_fanout  # noqa: E402
from bench.load_report import fanout_table, load_table  # noqa: E402
from bench.load_run import Options, run_load  # noqa: E402


def pair(text: str) -> tuple[int, int]:
    a, _, b = text.partition(",")
    return int(a), int(b or a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, help="calls per second (Poisson; default 1, with --fanout 0.2)")
    ap.add_argument("--duration", type=float, help="seconds of traffic (per ramp step)")
    ap.add_argument("--agents", type=int, help="simulated agents (default: enough for the rate)")
    ap.add_argument("--supervisors", type=int)
    ap.add_argument("--ring", type=pair, default=(0, 1), help="agents ring MIN,MAX seconds")
    ap.add_argument("--talk", type=pair, help="agents talk MIN,MAX seconds")
    ap.add_argument("--ivr-share", type=float, default=0.3)
    ap.add_argument("--abandon-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--database-url", help="a server to make a scratch database on (default: 127.0.0.1:5432, "
                                           "else an embedded one)")
    ap.add_argument("--ramp", type=lambda s: [float(x) for x in s.split(",")], help="rates to step through")
    ap.add_argument("--soak", action="store_true")
    ap.add_argument("--day", action="store_true",
                    help="a center's day in an hour (a soak): 8.3 calls/s, 200 agents, 5 supervisors, talk 4-12 s, "
                         "recordings, callbacks, tickets, webhooks (bench/load_day.py); each default can be overridden")
    ap.add_argument("--warmup", type=float, help="a soak's growth is measured after this many seconds (default: "
                                                 "the second half; with --day 1920: the wallboard's 31-minute "
                                                 "window and a minute)")
    ap.add_argument("--callback-share", type=float, help="of the IVR's callers, those asking for a callback "
                                                         "(default 0, with --day 0.1)")
    ap.add_argument("--sample-every", type=float)
    ap.add_argument("--csv", type=Path, default=Path("soak.csv"))
    ap.add_argument("--fanout", type=int, help="connect this many supervisor clients and measure delivery")
    ap.add_argument("--fanout-processes", type=int, default=2)
    ap.add_argument("--extra-clients", type=int, default=0,
                    help="load runs: connect this many more WebSocket clients (lean, in 2 processes)")
    ap.add_argument("--extra-supervisors", type=int, default=0,
                    help="of the extra clients, how many are supervisors (the rest: idle agent desktops)")
    ap.add_argument("--api-nodes", type=int, default=0,
                    help="the daemon publishes to a NATS JetStream of the run's own and this many `cti api-node` "
                         "processes serve the WebSockets (bench/load_nodes.py): the leader's CPU without the fan-out")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument("--ws-replay-max", type=int, default=1000,
                    help="the daemon's ws_replay_max: a soak with a small one tells the replay rings' growth apart")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                    help="the daemon's log level (default: info, the daemon's own default)")
    ap.add_argument("--memtrace", type=Path, help="run the daemon under tracemalloc (bench/memtrace.py), "
                                              "snapshots in this folder; the JSON says where the heap grew")
    ap.add_argument("--profile", type=Path, help="run the daemon under cProfile timed by CPU (bench/cpuprofile.py); its stats are written here")
    ap.add_argument("--mallocstats", type=Path, help="note glibc's malloc figures every minute "
                                                     "(bench/mallocstats.py) into this folder")
    ap.add_argument("--malloc-trim", action="store_true", help="with --mallocstats: malloc_trim(0) after each")
    ap.add_argument("--daemon-log", type=Path, help="keep the daemon's log here after the run")
    ap.add_argument("--daemon-env", action="append", default=[], metavar="NAME=VALUE",
                    help="more environment for the daemon's process (MALLOC_ARENA_MAX=2, LD_PRELOAD=...)")
    a = ap.parse_args()
    defaults = (dict(rate=8.3, duration=3600.0, agents=200, supervisors=5, talk=(4, 12), sample_every=60.0,
                     callback_share=0.1, warmup=1920.0) if a.day else
                dict(rate=0.2 if a.fanout else 1.0, duration=60.0, supervisors=2, talk=(2, 6), sample_every=10.0,
                     callback_share=0.0, warmup=None))
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.soak = a.soak or a.day
    if not (0 <= a.ivr_share <= 1 and 0 <= a.abandon_share <= 1) or a.rate <= 0 or a.duration <= 0:
        ap.error("shares are between 0 and 1; rate and duration are positive")
    opts = Options(rate=a.rate, duration=a.duration, agents=a.agents, supervisors=a.supervisors, ring=a.ring,
                   talk=a.talk, mix=Mix(ivr_share=a.ivr_share, abandon_share=a.abandon_share,
                                                          callback_share=a.callback_share), seed=a.seed,
                   database_url=a.database_url, sample_every=a.sample_every,
                   soak_csv=a.csv if a.soak else None, profile=a.profile, memtrace=a.memtrace,
                   log_level=a.log_level, ws_replay_max=a.ws_replay_max,
                   extra_clients=a.extra_clients, extra_supervisors=a.extra_supervisors,
                   daemon_env=dict(kv.split("=", 1) for kv in a.daemon_env), day=a.day, api_nodes=a.api_nodes,
                   warmup_s=a.warmup, mallocstats=a.mallocstats, malloc_trim=a.malloc_trim,
                   daemon_log=a.daemon_log)
    if a.fanout:
        out = asyncio.run(run_fanout(opts, a.fanout, a.fanout_processes))
        table = fanout_table(out)
    else:
        out = asyncio.run(run_load(opts, ramp=a.ramp, soak=a.soak,
                                   partial=a.json.with_suffix(".partial.json") if a.json else None))
        table = load_table(out)
    text = json.dumps(out, indent=1, default=str)
    if a.json:
        a.json.write_text(text)
    print(text)
    print()
    print(table)
    if out.get("mode") in ("load", "soak"):
        return 0 if all(s["integrity"]["ok"] and s["screenpop"]["missing"] == 0 for s in out["steps"]) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
