"""The short versions of the benchmarks that guard the product's promises, in about
three minutes, each beside its baseline in the same run and beside the figure
last recorded in BENCHMARKS.md (``bench/recorded.json``, kept in step with its
tables). A figure is flagged when it is worse than the recorded one by more than
the noise this run measured for it (the two halves of its samples apart) or the
recorded noise floor, whichever is larger. A p99 of a few dozen samples on a shared 2-core
machine can double by chance: p99s are recorded with a floor of 100% (flagged past twice the
record), their p50s with 30%.

    scripts/bench-quick            (runs this in a private sandbox: scripts/run-isolated)

Figures (``recorded.json`` names them; "lower" or "higher" is better):

- ``ami.model_vs_panoramisk``: CPU per event of our parser + call model over
  panoramisk's bare parsing (``bench/ami_throughput.py``), median of rounds.
- ``routing.free_p50_us`` / ``_p99_us``, ``routing.arrival_idle_p50_us`` / ``_p99_us``: the
  routing core's time per decision at 2,000 agents (``bench/routing.py``), beside the naive scan's.
- ``acd.redirect_p99_ms``: queue entry to our Redirect taken by Asterisk (the wait's music
  stops), callers who found an agent free: the daemon's part of the arrival path.
- ``acd.arrival_p50_ms`` / ``acd.arrival_p99_ms``: queue entry to agent ringing for callers
  who found an agent free, our daemon in its own process (``bench/acd_latency.py``),
  beside app_queue's; ``acd.freed_p50_ms``: agent free to the next caller ringing.
- ``load.daemon_vs_asterisk_cpu``: the daemon's CPU per call over Asterisk's, and
  ``load.screenpop_p50_ms`` / ``_p99_ms`` with agents' desktops connected (``bench/load.py``, a
  short run at a modest rate), with nothing lost (integrity, pops).

Exit status: 0, or 1 when a figure is flagged or a run lost something.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "bench" / "recorded.json"


# -- the comparison (pure) ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of this run. ``baseline``: the same measure of the baseline in this
    run (None: none); ``noise``: the relative spread this run measured for it."""

    name: str
    value: float
    baseline: float | None = None
    noise: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    value: float
    baseline: float | None
    recorded: float | None
    change: float | None       # relative, in the worse direction positive
    allowed: float             # the noise allowed before a flag
    worse: bool
    commit: str | None


def spread(a: float, b: float) -> float:
    """Relative distance between two measures of one figure (0 when both are 0)."""
    mean = (abs(a) + abs(b)) / 2
    return abs(a - b) / mean if mean else 0.0


def compare(figures: list[Figure], recorded: dict[str, Any]) -> list[Verdict]:
    """Each figure against its recorded one: worse when it moved the bad way by
    more than ``max(this run's noise, the recorded noise floor)``. A figure with
    no record is never flagged."""
    out = []
    for f in figures:
        rec = recorded.get(f.name)
        if rec is None:
            out.append(Verdict(f.name, f.value, f.baseline, None, None, f.noise, False, None))
            continue
        old = float(rec["value"])
        lower_better = rec.get("better", "lower") == "lower"
        if old == 0:
            change = 0.0 if f.value == old else float("inf")
        else:
            change = (f.value - old) / abs(old) if lower_better else (old - f.value) / abs(old)
        allowed = max(f.noise, float(rec.get("noise_floor", 0.0)))
        out.append(Verdict(f.name, f.value, f.baseline, old, change, allowed, change > allowed, rec.get("commit")))
    return out


def table(verdicts: list[Verdict], recorded: dict[str, Any]) -> str:
    lines = ["| figure | this run | baseline (same run) | ratio | recorded (commit) | change | noise allowed | |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for v in verdicts:
        unit = recorded.get(v.name, {}).get("unit", "")
        base = "-" if v.baseline is None else f"{v.baseline:.3g}{unit}"
        ratio = "-" if not v.baseline else f"{v.value / v.baseline:.3g}x"
        rec = "-" if v.recorded is None else f"{v.recorded:.3g}{unit} ({(v.commit or '?')[:7]})"
        change = "-" if v.change is None else f"{v.change:+.0%}"
        lines.append(f"| {v.name} | {v.value:.3g}{unit} | {base} | {ratio} | {rec} | {change} "
                     f"| {v.allowed:.0%} | {'WORSE' if v.worse else 'ok'} |")
    return "\n".join(lines)


# -- the runs ------------------------------------------------------------------------

def halves(xs: list[float]) -> tuple[list[float], list[float]]:
    return xs[0::2], xs[1::2]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_ami(rounds: int = 8, repeat: int = 15) -> list[Figure]:
    from bench import ami_throughput as at

    stream, _ = at.load_stream(repeat)
    pieces = at.chunks(stream)
    rows = [("panoramisk", at.run_panoramisk), ("model", at.run_model)]
    times = at.measure(rows, pieces, rounds)
    ratios = [m / p for m, p in zip(times["model"], times["panoramisk"])]
    a, b = halves(ratios)
    return [Figure("ami.model_vs_panoramisk", statistics.median(ratios), 1.0,
                   spread(statistics.median(a), statistics.median(b)))]


def run_routing(agents: int = 2000, events: int = 4000) -> list[Figure]:
    from bench import routing

    r = routing.run(agents, events, 7)
    out = []
    for name, lat in (("routing.free", r.free), ("routing.arrival_idle", r.idle)):
        ours = [x / 1000 for x in lat["indexed"]]
        naive = [x / 1000 for x in lat["naive"]]
        a, b = halves(ours)
        for q in (0.5, 0.99):
            out.append(Figure(f"{name}_p{round(q * 100)}_us", pct(ours, q), pct(naive, q), spread(pct(a, q), pct(b, q))))
    return out


def run_acd(calls: int, workdir: Path) -> list[Figure]:
    out_json = workdir / "acd.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "acd_latency.py"), "--calls", str(calls), "--burst", "15",
                    "--json", str(out_json)], check=True, stdout=subprocess.DEVNULL)
    s = json.loads(out_json.read_text())
    figs = []
    for name, key, q in (("acd.redirect_p99_ms", "redirect", "p99"), ("acd.arrival_p50_ms", "free", "p50"),
                         ("acd.arrival_p99_ms", "free", "p99"), ("acd.freed_p50_ms", "busy_free", "p50")):
        ours, base = s[f"ours.{key}"], s.get(f"app_queue.{key}", {})
        halves_ms = s.get(f"ours.{key}.halves") or []
        noise = spread(*(h[q] for h in halves_ms)) if len(halves_ms) == 2 else 0.0
        figs.append(Figure(name, ours.get(q, float("nan")), base.get(q), noise))
    return figs


def run_load(rate: float, duration: float, agents: int, workdir: Path) -> tuple[list[Figure], bool]:
    out_json = workdir / "load.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--rate", str(rate), "--duration",
                    str(duration), "--agents", str(agents), "--json", str(out_json)],
                   stdout=subprocess.DEVNULL)
    s = json.loads(out_json.read_text())["steps"][0]
    cpu = s["cpu_ms_per_call"]
    ok = s["integrity"]["ok"] and s["screenpop"]["missing"] == 0 and s["originate_failed"] == 0
    pops = s["screenpop"]
    return [Figure("load.daemon_vs_asterisk_cpu", cpu["daemon"] / cpu["asterisk"], 1.0),
            Figure("load.screenpop_p50_ms", (pops["p50_s"] or 0) * 1000),
            Figure("load.screenpop_p99_ms", (pops["p99_s"] or 0) * 1000)], ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="ami,routing,acd,load", help="which parts, comma-separated")
    ap.add_argument("--calls", type=int, default=60, help="callers of the ACD latency run")
    ap.add_argument("--load-rate", type=float, default=2.0)
    ap.add_argument("--load-duration", type=float, default=30.0)
    ap.add_argument("--load-agents", type=int, default=20)
    ap.add_argument("--json", type=Path, help="also write the figures and verdicts here")
    args = ap.parse_args()
    parts = {p.strip() for p in args.only.split(",")}
    recorded = json.loads(RECORDED.read_text())["figures"]
    figures: list[Figure] = []
    lost = False
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cti-bench-quick-") as tmp:
        if "ami" in parts:
            figures += run_ami()
        if "routing" in parts:
            figures += run_routing()
        if "acd" in parts:
            figures += run_acd(args.calls, Path(tmp))
        if "load" in parts:
            figs, ok = run_load(args.load_rate, args.load_duration, args.load_agents, Path(tmp))
            figures += figs
            lost = not ok
    verdicts = compare(figures, recorded)
    load = Path("/proc/loadavg").read_text().split()[:3]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    print(f"bench-quick at {commit}, {time.monotonic() - started:.0f} s, load average {' '.join(load)}\n")
    print(table(verdicts, recorded))
    if lost:
        print("\nthe load run lost something (integrity, screen-pops or Originates): see its JSON")
    flagged = [v.name for v in verdicts if v.worse]
    print(f"\n{'WORSE than recorded: ' + ', '.join(flagged) if flagged else 'nothing worse than recorded'}")
    if args.json:
        args.json.write_text(json.dumps({"commit": commit, "figures": [vars_of(v) for v in verdicts],
                                         "lost": lost}, indent=1))
    return 1 if flagged or lost else 0


def vars_of(v: Verdict) -> dict[str, Any]:
    return {k: getattr(v, k) for k in v.__dataclass_fields__}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
