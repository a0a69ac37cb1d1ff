"""What the benchmarks report: percentiles of a sample, the median time of a repeated call, and
markdown tables ready for BENCHMARKS.md. Plain functions; no I/O.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Iterable, Sequence


def pct(values: Iterable[float], p: float) -> float | None:
    """The ``p``-th percentile (0..100) of ``values`` by nearest rank, or None when empty."""
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def percentiles(values: Iterable[float], ps: Sequence[float] = (50, 99), *, scale: float = 1.0,
                digits: int | None = 0) -> dict[str, float | None]:
    """``{"p50": ..., "p99": ..., "max": ...}`` of ``values`` times ``scale`` (1e3: seconds to
    ms), rounded to ``digits`` (None: not rounded); each None when there are none."""
    v = sorted(values)

    def shown(x: float | None) -> float | None:
        if x is None:
            return None
        x *= scale
        return x if digits is None else round(x, digits) if digits else round(x)

    out = {f"p{p:g}": shown(pct(v, p)) for p in ps}
    out["max"] = shown(v[-1] if v else None)
    return out


def median_time(fn: Callable[[], Any], repeat: int, *, number: int = 1,
                clock: Callable[[], float] = time.process_time) -> float:
    """The median over ``repeat`` runs of the seconds one call of ``fn`` takes (each run
    calls it ``number`` times), by ``clock`` (CPU time of the process by default)."""
    runs = []
    for _ in range(repeat):
        t0 = clock()
        for _ in range(number):
            fn()
        runs.append((clock() - t0) / number)
    return statistics.median(runs)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int = 1) -> str:
    """A markdown table: the first ``left`` columns aligned left, the others right."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
