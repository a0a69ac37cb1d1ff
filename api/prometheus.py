"""Prometheus text exposition (format 0.0.4) of the daemon's figures. Pure.

``render(families)`` writes metric families; ``LagHistogram`` counts how late
call events reach the bus (Asterisk's event ``Timestamp`` to delivery, same
host clock). The shell (``api.observe``) reads the core and fills them.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class Sample:
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    suffix: str = ""            # "_bucket", "_sum", "_count" for histograms


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    kind: str                   # gauge, counter, histogram
    help: str
    samples: Sequence[Sample]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for s in f.samples:
            labels = ""
            if s.labels:
                labels = "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in s.labels.items()) + "}"
            lines.append(f"{f.name}{s.suffix}{labels} {_number(s.value)}")
    return "\n".join(lines) + "\n"


def gauge(name: str, help: str, value: float | Mapping[tuple[tuple[str, str], ...], float]) -> Family:
    """A gauge with one value, or one per label set (``{(("state", "queued"),): 3}``)."""
    if isinstance(value, Mapping):
        return Family(name, "gauge", help, [Sample(v, dict(k)) for k, v in value.items()])
    return Family(name, "gauge", help, [Sample(float(value))])


def counter(name: str, help: str, value: float) -> Family:
    """A counter; its name ends in ``_total`` (text format 0.0.4 keeps it in TYPE)."""
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in _total")
    return Family(name, "counter", help, [Sample(float(value))])


class LagHistogram:
    """A cumulative histogram of seconds (negative lags, from clock skew, count as 0)."""

    def __init__(self, buckets: Sequence[float] = LAG_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def family(self, name: str, help: str) -> Family:
        samples = []
        running = 0
        for le, n in zip(self.buckets, self.counts):
            running += n
            samples.append(Sample(running, {"le": _number(le)}, "_bucket"))
        samples.append(Sample(self.count, {"le": "+Inf"}, "_bucket"))
        samples.append(Sample(self.sum, suffix="_sum"))
        samples.append(Sample(self.count, suffix="_count"))
        return Family(name, "histogram", help, samples)
