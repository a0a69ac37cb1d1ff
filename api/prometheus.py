"""The daemon's figures as ``prometheus_client`` metric families. No I/O.

Values are read when Prometheus scrapes, not kept twice: a ``FamiliesCollector``
calls a function that reads the live counters and returns families made by
``gauge``, ``counter`` and ``LagHistogram.family``; ``render`` writes a
registry's families in the text format 0.0.4 (``prometheus_client``'s own
exposition). Each app has its own ``CollectorRegistry`` (``registry``), never
the library's global one, so two apps in one process do not collide.

``LagHistogram`` counts how late call events reach the bus (Asterisk's event
``Timestamp`` to delivery, same host clock) and how long a WebSocket flush
takes. The shell (``api.observe``) reads the core and fills the families.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Labels = tuple[tuple[str, str], ...]      # (("state", "queued"),)


def _labelled(family: GaugeMetricFamily | CounterMetricFamily, values: Mapping[Labels, float]) -> Metric:
    for key, v in values.items():
        family.add_metric([str(val) for _, val in key], float(v))
    return family


def _label_names(values: Mapping[Labels, float], default: Sequence[str]) -> list[str]:
    for key in values:
        return [k for k, _ in key]
    return list(default)


def gauge(name: str, help: str, value: float | Mapping[Labels, float], labels: Sequence[str] = ()) -> Metric:
    """A gauge with one value, or one per label set (``{(("state", "queued"),): 3}``;
    ``labels`` names them when the mapping may be empty)."""
    if isinstance(value, Mapping):
        return _labelled(GaugeMetricFamily(name, help, labels=_label_names(value, labels)), value)
    return GaugeMetricFamily(name, help, value=float(value))


def counter(name: str, help: str, value: float | Mapping[Labels, float], labels: Sequence[str] = ()) -> Metric:
    """A counter; its name ends in ``_total``, as exposed (the library keeps the
    family's name without it and writes it back on every line; no ``_created``)."""
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in _total")
    if isinstance(value, Mapping):
        return _labelled(CounterMetricFamily(name, help, labels=_label_names(value, labels)), value)
    return CounterMetricFamily(name, help, value=float(value))


def _le(bound: float) -> str:
    # The bucket labels as they were first exposed ("1", not "1.0"): a series keeps its name.
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


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

    def family(self, name: str, help: str) -> Metric:
        rows: list[tuple[str, float]] = []
        running = 0
        for le, n in zip(self.buckets, self.counts):
            running += n
            rows.append((_le(le), float(running)))
        rows.append(("+Inf", float(self.count)))
        return HistogramMetricFamily(name, help, buckets=rows, sum_value=self.sum)


class FamiliesCollector(Collector):
    """Families from ``read()`` at each scrape. ``describe`` is empty so that
    registering does not scrape (the app's sources may not exist yet)."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.read()


def registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own holding ``collectors`` (not the library's global one)."""
    reg = CollectorRegistry(auto_describe=False)
    for c in collectors:
        reg.register(c)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    """The text format 0.0.4 (``CONTENT_TYPE``) of every family in ``reg``."""
    return generate_latest(reg)
