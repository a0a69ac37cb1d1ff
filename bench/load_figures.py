"""The figures a load run computes: percentiles, the daemon's histograms between two reads
of ``/metrics``, soak growth slopes, and CPU, memory and fds of the processes from /proc.

Pure functions first (the unit tests' ground), then the /proc readers.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import resource
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: Iterable[float], q: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def lag_buckets(metrics: dict[str, float], name: str = "cti_event_lag_seconds") -> list[tuple[float, float]]:
    """A histogram's (by default the event lag's) ``(upper bound, cumulative count)``, in order."""
    rows = []
    for k, v in metrics.items():
        m = re.fullmatch(name + r'_bucket\{le="([^"]+)"\}', k)
        if m:
            rows.append((math.inf if m.group(1) == "+Inf" else float(m.group(1)), v))
    return sorted(rows)


def hist_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of what was counted between two reads."""
    prev = dict(before)
    rows = [(le, n - prev.get(le, 0.0)) for le, n in after]
    if not rows or rows[-1][1] <= 0:
        return None
    want = q * rows[-1][1]
    for le, n in rows:
        if n >= want:
            return le
    return math.inf


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den * 3600


def soak_verdict(rows: list[dict[str, float]], *, rss_mb_per_h: float = 8.0, tasks_per_h: float = 30.0,
                 fds_per_h: float = 30.0, warmup_s: float | None = None) -> dict[str, Any]:
    """Growth over the samples after ``warmup_s`` (default: the second half; the rest
    warms up): a leak is a steady climb, so a slope above the bound is flagged."""
    half = rows[len(rows) // 2:] if warmup_s is None else [r for r in rows if r["t"] >= warmup_s]
    t0 = half[0]["t"] if half else 0.0
    slopes = {
        "rss_mb_per_h": slope_per_hour([(r["t"] - t0, r["rss_kb"] / 1024) for r in half]),
        "tasks_per_h": slope_per_hour([(r["t"] - t0, r["tasks"]) for r in half]),
        "fds_per_h": slope_per_hour([(r["t"] - t0, r["fds"]) for r in half]),
    }
    bounds = {"rss_mb_per_h": rss_mb_per_h, "tasks_per_h": tasks_per_h, "fds_per_h": fds_per_h}
    growing = [k for k, v in slopes.items() if v > bounds[k]]
    return {"samples": len(rows), "measured_from_s": half[0]["t"] if half else None, "slopes": {k: round(v, 2) for k, v in slopes.items()}, "bounds": bounds,
            "verdict": "growing: " + ", ".join(growing) if growing else "stable"}


def ms(v: float | None) -> str:
    return "-" if v is None else ("> 5 s" if math.isinf(v) else f"{v * 1000:.1f} ms")


# -- /proc -----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def open_fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


def children_of(ppid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{d}/stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == ppid:
                    out.append(int(d))
    return out


def asterisk_pid() -> int | None:
    root = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root"))
    with contextlib.suppress(OSError, ValueError):
        pid = int((root / "run/asterisk/sandbox.pid").read_text().split()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() == "asterisk":
            return pid
        for c in children_of(pid):
            if Path(f"/proc/{c}/comm").read_text().strip() == "asterisk":
                return c
    return None


class Cpu:
    """CPU seconds of the daemon, Asterisk, PostgreSQL (server and backends) and this process."""

    def __init__(self, daemon: int, asterisk: int | None, postmaster: int | None,
                 more: Callable[[], dict[str, float]] | None = None) -> None:
        self.daemon, self.asterisk, self.postmaster, self.more = daemon, asterisk, postmaster, more
        # Backends come and go: count each backend's CPU at its last sight.
        self._pg_seen: dict[int, float] = {}

    def pg(self) -> float:
        if self.postmaster is None:
            return 0.0
        for pid in [self.postmaster, *children_of(self.postmaster)]:
            c = cpu_seconds(pid)
            if c:
                self._pg_seen[pid] = max(self._pg_seen.get(pid, 0.0), c)
        return sum(self._pg_seen.values())

    def read(self) -> dict[str, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return {"daemon": cpu_seconds(self.daemon),
                "asterisk": cpu_seconds(self.asterisk) if self.asterisk else 0.0,
                "postgres": self.pg(), "generator": me.ru_utime + me.ru_stime, **(self.more() if self.more else {})}


def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a[k], 2) for k in a}


def raise_fd_limit(want: int = 20000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY else max(soft, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new
