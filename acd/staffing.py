"""Staffing: Erlang C, Erlang A, required agents, and the forecast they plan from. Pure.

No I/O, no clock: counts and seconds in, figures out. docs/metrics.md ("Staffing") has
the formulas and their sources; in short:

- **Erlang C** (M/M/n: Poisson arrivals, exponential handle times, ``n`` agents,
  callers who never give up). Traffic ``A = calls x AHT / interval`` erlangs.
  ``P(wait) = C(n, A)``, ``SL(t) = 1 - C e^{-(n - A) t / AHT}``,
  ``ASA = C AHT / (n - A)``, occupancy ``A / n``. Computed through the Erlang B
  recursion kept in logarithms (``log 1/B``), so hundreds or thousands of agents
  neither overflow nor lose precision: no factorial, no power of ``A``.
- **Erlang A** (M/M/n+M, Palm's model: each waiting caller abandons after an
  exponential patience of mean ``patience_s``). The birth-death chain's
  stationary law is summed in logarithms (states beyond ``n`` until their
  weight is negligible). A caller who finds ``j`` waiting ahead is served with
  probability ``nmu / (nmu + (j+1)theta)``, after a wait distributed as a sum of
  exponentials of rates ``nmu + i theta`` (``i = 1..j+1``), whose distribution
  function is ``P(Poisson(nmu t) >= Binomial(j+1, e^{-theta t}))`` (a sum of
  positive terms: no alternating series).
- **Required agents**: the fewest ``n`` meeting the service-level target (and,
  if asked, a maximum ASA and a maximum occupancy); with shrinkage ``s``,
  ``ceil(n / (1 - s))`` agents are scheduled.
- **Forecast**: volume and AHT of an interval from the same interval (same
  local weekday and time) over the last weeks, weighted toward the newest;
  AHT is a ratio of sums (total handle time / handled calls), never an average
  of averages.

    CtiError
    └── StaffingError      a bad argument (negative calls, target outside (0, 1), ...)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Mapping, Sequence

from cti.errors import CtiError

__all__ = [
    "StaffingError", "ErlangC", "ErlangA", "Staffing", "SlotCounts", "SlotForecast", "IntervalPlan",
    "traffic", "erlang_b", "erlang_c", "erlang_c_figures", "erlang_a_figures", "required_agents",
    "required_agents_a", "scheduled", "default_weights", "forecast_slot", "same_slot_history", "plan_interval",
]

# Agents searched at most (a target that needs more is refused, not looped on).
MAX_AGENTS = 100_000
# Erlang A: queue lengths summed at most, and the relative weight below which the
# tail of the stationary law is dropped (e^-40 ~ 4e-18).
MAX_QUEUE_STATES = 200_000
_TAIL_LOG = -40.0


class StaffingError(CtiError, ValueError):
    """A staffing input that cannot be used; the message names the argument."""


# -- Erlang B and C ---------------------------------------------------------------


def traffic(calls: float, aht_s: float, interval_s: float) -> float:
    """Offered traffic in erlangs: ``calls x aht_s / interval_s``."""
    _check_nonneg("calls", calls)
    _check_pos("aht_s", aht_s)
    _check_pos("interval_s", interval_s)
    return calls * aht_s / interval_s


def _log_inv_b(n: int, a: float) -> float:
    """``log(1 / B(n, a))`` by the Erlang B recursion ``1/B(k) = 1 + (k/a) / B(k-1)``,
    in logarithms (``1/B`` itself overflows for n in the hundreds when a is small)."""
    log_a = math.log(a)
    x = 0.0                                  # log 1/B(0) = log 1
    for k in range(1, n + 1):
        y = math.log(k) - log_a + x          # log((k/a) / B(k-1))
        x = y + math.log1p(math.exp(-y)) if y > -700 else math.log1p(math.exp(y))
    return x


def _step_log_inv_b(k: int, log_a: float, x: float) -> float:
    y = math.log(k) - log_a + x
    return y + math.log1p(math.exp(-y)) if y > -700 else math.log1p(math.exp(y))


def erlang_b(n: int, a: float) -> float:
    """Blocking probability of ``n`` servers offered ``a`` erlangs (Erlang B)."""
    _check_agents(n)
    _check_nonneg("traffic", a)
    if a == 0:
        return 0.0 if n > 0 else 1.0
    return math.exp(-_log_inv_b(n, a))


def _c_from_log_inv_b(n: int, a: float, log_inv_b: float) -> float:
    # 1/C = rho + (1 - rho)/B, rho = a/n < 1.
    rho = a / n
    if log_inv_b > 700:                      # 1/B beyond floats: C is 0 to double precision
        return 0.0
    return 1.0 / (rho + (1.0 - rho) * math.exp(log_inv_b))


def erlang_c(n: int, a: float) -> float:
    """Probability that a caller waits (Erlang C); 1.0 when ``n <= a`` (the queue grows)."""
    _check_agents(n)
    _check_nonneg("traffic", a)
    if a == 0:
        return 0.0
    if n <= a:
        return 1.0
    return _c_from_log_inv_b(n, a, _log_inv_b(n, a))


@dataclass(frozen=True, slots=True)
class ErlangC:
    """Erlang C figures for ``agents`` answering ``traffic`` erlangs.

    ``service_level`` is the share of callers answered within ``sl_seconds``;
    with ``agents <= traffic`` the queue grows without bound: ``p_wait`` 1,
    ``service_level`` 0, ``asa_s`` infinite, ``occupancy`` 1.
    """

    agents: int
    traffic: float
    p_wait: float
    service_level: float
    asa_s: float
    occupancy: float


def _figures_c(n: int, a: float, c: float, aht_s: float, sl_seconds: float) -> ErlangC:
    if n <= a:
        return ErlangC(n, a, 1.0, 0.0, math.inf, 1.0 if n else 0.0)
    sl = 1.0 - c * math.exp(-(n - a) * sl_seconds / aht_s)
    return ErlangC(n, a, c, min(1.0, max(0.0, sl)), c * aht_s / (n - a), a / n)


def erlang_c_figures(n: int, a: float, aht_s: float, sl_seconds: float) -> ErlangC:
    """Erlang C figures of ``n`` agents offered ``a`` erlangs of calls lasting ``aht_s``
    on average, for a service-level threshold of ``sl_seconds``."""
    _check_pos("aht_s", aht_s)
    _check_nonneg("sl_seconds", sl_seconds)
    c = erlang_c(n, a)
    if a == 0:                               # nobody calls: nobody waits
        return ErlangC(n, 0.0, 0.0, 1.0, 0.0, 0.0)
    return _figures_c(n, a, c, aht_s, sl_seconds)


@dataclass(frozen=True, slots=True)
class Staffing:
    """Agents needed: ``agents`` on the phones, ``scheduled`` with shrinkage;
    ``figures`` at ``agents`` (ErlangC or ErlangA)."""

    agents: int
    scheduled: int
    figures: ErlangC | ErlangA


def scheduled(agents: int, shrinkage: float) -> int:
    """Agents to schedule so that ``agents`` remain after ``shrinkage`` (breaks, training,
    absence: a share of paid time in [0, 1)): ``ceil(agents / (1 - shrinkage))``."""
    _check_agents(agents)
    if not 0.0 <= shrinkage < 1.0:
        raise StaffingError(f"shrinkage must be in [0, 1), got {shrinkage!r}")
    # A hair below the exact quotient: 14 / 0.7 is 20.000000000000004 in floats.
    return math.ceil(agents / (1.0 - shrinkage) - 1e-9)


def required_agents(calls: float, aht_s: float, interval_s: float, *, sl_target: float,
                    sl_seconds: float, shrinkage: float = 0.0, max_asa_s: float | None = None,
                    max_occupancy: float | None = None) -> Staffing:
    """The fewest agents for which Erlang C meets every goal: service level at least
    ``sl_target`` (a share in (0, 1)) within ``sl_seconds``, ASA at most ``max_asa_s``,
    occupancy at most ``max_occupancy``. No calls need no agents.

    Raises: ``StaffingError`` for a bad argument or a goal needing over ``MAX_AGENTS``.
    """
    a = traffic(calls, aht_s, interval_s)
    _check_share("sl_target", sl_target)
    _check_nonneg("sl_seconds", sl_seconds)
    if max_occupancy is not None and not 0.0 < max_occupancy <= 1.0:
        raise StaffingError(f"max_occupancy must be in (0, 1], got {max_occupancy!r}")
    if max_asa_s is not None:
        _check_nonneg("max_asa_s", max_asa_s)
    if a == 0:
        return Staffing(0, 0, ErlangC(0, 0.0, 0.0, 1.0, 0.0, 0.0))
    log_a = math.log(a)
    n = math.floor(a)
    x = _log_inv_b(n, a)                     # 1/B(n) for the first n not above a
    while True:
        n += 1
        if n > MAX_AGENTS:
            raise StaffingError(f"more than {MAX_AGENTS} agents needed for {a:.1f} erlangs")
        x = _step_log_inv_b(n, log_a, x)
        if n <= a:
            continue
        f = _figures_c(n, a, _c_from_log_inv_b(n, a, x), aht_s, sl_seconds)
        if (f.service_level >= sl_target and (max_asa_s is None or f.asa_s <= max_asa_s)
                and (max_occupancy is None or f.occupancy <= max_occupancy)):
            return Staffing(n, scheduled(n, shrinkage), f)


# -- Erlang A ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErlangA:
    """Erlang A (M/M/n+M) figures for ``agents``; shares are of all callers.

    ``service_level``: answered within ``sl_seconds`` / all callers (abandons
    counted against). ``service_level_answered``: answered within / answered
    (abandons ignored). ``asa_s``: mean wait of answered callers; ``avg_wait_s``:
    mean time in queue of every caller (answered or not). ``occupancy``: answered
    traffic / agents.
    """

    agents: int
    traffic: float
    p_wait: float
    p_abandon: float
    service_level: float
    service_level_answered: float
    asa_s: float
    avg_wait_s: float
    occupancy: float


def erlang_a_figures(n: int, calls: float, aht_s: float, interval_s: float, *, patience_s: float,
                     sl_seconds: float) -> ErlangA:
    """Erlang A figures of ``n`` agents for ``calls`` per ``interval_s`` lasting ``aht_s``,
    callers giving up after ``patience_s`` on average (exponential patience).

    Raises: ``StaffingError`` for a bad argument, or when the queue's law does not
    settle within ``MAX_QUEUE_STATES`` states (patience far too long for an
    overloaded queue: Erlang C's answer, an unbounded queue, is the one then).
    """
    a = traffic(calls, aht_s, interval_s)
    _check_agents(n)
    _check_pos("patience_s", patience_s)
    _check_nonneg("sl_seconds", sl_seconds)
    if a == 0:
        return ErlangA(n, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    lam, mu, theta = calls / interval_s, 1.0 / aht_s, 1.0 / patience_s
    if n == 0:                               # nobody answers: everyone waits and gives up
        return ErlangA(0, a, 1.0, 1.0, 0.0, 0.0, math.inf, patience_s, 0.0)
    s = n * mu                               # service rate while every agent is busy

    # Stationary law, relative to state n: log weights of n+j callers (j waiting).
    logw = [0.0]
    peak = 0.0
    j = 0
    while True:
        j += 1
        if j > MAX_QUEUE_STATES:
            raise StaffingError(f"Erlang A did not settle within {MAX_QUEUE_STATES} queue states: "
                                f"patience {patience_s:g} s is too long for {a:.1f} erlangs on {n} agents")
        w = logw[-1] + math.log(lam / (s + j * theta))
        logw.append(w)
        peak = max(peak, w)
        if lam < s + j * theta and w < peak + _TAIL_LOG:
            break
    x = _log_inv_b(n, a)                     # log(sum_{k<=n} pi_k / pi_n)
    log_below = x + math.log(-math.expm1(-x)) if x > 0 else -math.inf   # states k < n
    log_z = _logsumexp([log_below, *logw])
    p_below = math.exp(log_below - log_z)
    weights = [math.exp(v - log_z) for v in logw]

    q = math.exp(-theta * sl_seconds)
    pois = _poisson_tail(s * sl_seconds, len(weights) + 1)
    served = p_below
    served_within = p_below
    answered_wait = 0.0                      # sum of P(j) P(served | j) E[wait | j]
    queue_len = 0.0
    harmonic = 0.0                           # sum_{i=1}^{j+1} 1/(s + i theta)
    for j, w in enumerate(weights):
        harmonic += 1.0 / (s + (j + 1) * theta)
        p_served = s / (s + (j + 1) * theta)
        served += w * p_served
        answered_wait += w * p_served * harmonic
        queue_len += w * j
        served_within += w * p_served * _pois_ge_binom(pois, j + 1, q)
    p_wait = 1.0 - p_below
    p_abandon = max(0.0, 1.0 - served)
    return ErlangA(
        agents=n, traffic=a, p_wait=p_wait, p_abandon=p_abandon,
        service_level=min(1.0, served_within),
        service_level_answered=min(1.0, served_within / served) if served > 0 else 0.0,
        asa_s=answered_wait / served if served > 0 else math.inf,
        avg_wait_s=queue_len / lam,          # Little's law over every caller
        occupancy=min(1.0, a * (1.0 - p_abandon) / n),
    )


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def _poisson_tail(mean: float, kmax: int) -> list[float]:
    """``P(Poisson(mean) >= k)`` for k = 0..kmax (pmf in logarithms: no e^-mean underflow)."""
    tail = [1.0] * (kmax + 1)
    if mean == 0:
        return [1.0] + [0.0] * kmax
    log_mean = math.log(mean)
    cdf = 0.0
    for k in range(1, kmax + 1):
        cdf += math.exp(-mean + (k - 1) * log_mean - math.lgamma(k))
        tail[k] = max(0.0, 1.0 - cdf)
    return tail


def _pois_ge_binom(pois_tail: list[float], m: int, q: float) -> float:
    """``P(Poisson >= Binomial(m, q))``: the Binomial's pmf over the window where it
    has mass (10 standard deviations), in logarithms."""
    if q >= 1.0:
        return pois_tail[m]
    if q <= 0.0:
        return 1.0
    mean, sd = m * q, math.sqrt(m * q * (1 - q))
    lo, hi = max(0, int(mean - 10 * sd) - 2), min(m, int(mean + 10 * sd) + 2)
    log_q, log_p = math.log(q), math.log1p(-q)
    lg_m = math.lgamma(m + 1)
    total = 0.0
    for k in range(lo, hi + 1):
        if pois_tail[k] == 0.0:
            break
        log_pmf = lg_m - math.lgamma(k + 1) - math.lgamma(m - k + 1) + k * log_q + (m - k) * log_p
        total += math.exp(log_pmf) * pois_tail[k]
    return total


def required_agents_a(calls: float, aht_s: float, interval_s: float, *, patience_s: float,
                      sl_target: float, sl_seconds: float, shrinkage: float = 0.0) -> Staffing:
    """The fewest agents for which Erlang A answers at least ``sl_target`` of all callers
    within ``sl_seconds`` (abandons counted against). The service level grows with
    agents, so the search doubles, then bisects.

    Raises: ``StaffingError`` for a bad argument or a target needing over ``MAX_AGENTS``.
    """
    _check_share("sl_target", sl_target)
    a = traffic(calls, aht_s, interval_s)
    if a == 0:
        return Staffing(0, 0, erlang_a_figures(0, 0, aht_s, interval_s, patience_s=patience_s,
                                               sl_seconds=sl_seconds))

    def figures(n: int) -> ErlangA:
        return erlang_a_figures(n, calls, aht_s, interval_s, patience_s=patience_s, sl_seconds=sl_seconds)

    lo, hi = 0, max(1, math.ceil(a))         # lo fails (nobody answers); hi is tried
    found = figures(hi)
    while found.service_level < sl_target:
        lo, hi = hi, hi * 2
        if hi > MAX_AGENTS:
            raise StaffingError(f"more than {MAX_AGENTS} agents needed for {a:.1f} erlangs")
        found = figures(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        f = figures(mid)
        if f.service_level >= sl_target:
            hi, found = mid, f
        else:
            lo = mid
    return Staffing(hi, scheduled(hi, shrinkage), found)


# -- forecast ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotCounts:
    """What one past interval saw: calls offered, calls handled, their total handle time."""

    offered: int
    handled: int
    handle_s: float

    def __post_init__(self) -> None:
        _check_nonneg("offered", self.offered)
        _check_nonneg("handled", self.handled)
        _check_nonneg("handle_s", self.handle_s)


@dataclass(frozen=True, slots=True)
class SlotForecast:
    """Expected ``volume`` (calls offered) and ``aht_s`` (None: no handled call in the
    history) of an interval, from ``weeks_used`` past weeks."""

    volume: float
    aht_s: float | None
    weeks_used: int


def default_weights(weeks: int) -> list[float]:
    """Newest week heaviest, falling linearly: ``weeks, weeks-1, ..., 1``."""
    return [float(weeks - i) for i in range(weeks)]


def forecast_slot(history: Sequence[SlotCounts | None], weights: Sequence[float] | None = None) -> SlotForecast:
    """Weighted forecast of one interval from the same interval of past weeks.

    ``history[0]`` is last week, ``history[1]`` the week before, ...; None marks a
    week with no data (skipped, the other weights renormalised, so a day the
    system was down does not read as a day without calls). Volume is the weighted
    mean of ``offered``; AHT is weighted total handle time / weighted handled calls.
    ``weights`` default to ``default_weights``.

    Raises: ``StaffingError`` for weights of another length or negative weights.
    """
    if weights is None:
        weights = default_weights(len(history))
    if len(weights) != len(history):
        raise StaffingError(f"weights has {len(weights)} entries for {len(history)} weeks of history")
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise StaffingError("weights must be finite and not negative")
    total_w = volume = handled = handle = 0.0
    used = 0
    for counts, w in zip(history, weights):
        if counts is None or w == 0:
            continue
        used += 1
        total_w += w
        volume += w * counts.offered
        handled += w * counts.handled
        handle += w * counts.handle_s
    if total_w == 0:
        return SlotForecast(0.0, None, 0)
    return SlotForecast(volume / total_w, handle / handled if handled else None, used)


def same_slot_history(counts: Mapping[float, SlotCounts], slot_start: float, weeks: int,
                      tz: tzinfo) -> list[SlotCounts | None]:
    """The counts of the interval starting at ``slot_start`` (epoch seconds) one, two,
    ... ``weeks`` weeks earlier: the same local weekday and wall-clock time in ``tz``
    (so a week across a DST change still lines 9:00 up with 9:00). ``counts`` is
    keyed by interval start, as ``acd.figures.bucket_start`` gives it."""
    local = datetime.fromtimestamp(slot_start, tz).replace(tzinfo=None)
    out: list[SlotCounts | None] = []
    for k in range(1, weeks + 1):
        then = (local - timedelta(weeks=k)).replace(tzinfo=tz, fold=0).timestamp()
        out.append(counts.get(then))
    return out


@dataclass(frozen=True, slots=True)
class IntervalPlan:
    """One interval of a staffing plan: the forecast and the agents each model asks for
    (``erlang_a`` None when no patience was given)."""

    volume: float
    aht_s: float | None
    traffic: float
    erlang_c: Staffing
    erlang_a: Staffing | None


def plan_interval(forecast: SlotForecast, interval_s: float, *, sl_target: float, sl_seconds: float,
                  shrinkage: float = 0.0, patience_s: float | None = None,
                  default_aht_s: float = 180.0) -> IntervalPlan:
    """Required agents for a forecast interval, by Erlang C and (with ``patience_s``) Erlang A.
    An interval with calls but no handled-call history plans with ``default_aht_s``."""
    aht = forecast.aht_s if forecast.aht_s is not None else default_aht_s
    c = required_agents(forecast.volume, aht, interval_s, sl_target=sl_target, sl_seconds=sl_seconds,
                        shrinkage=shrinkage)
    a = None
    if patience_s is not None:
        a = required_agents_a(forecast.volume, aht, interval_s, patience_s=patience_s, sl_target=sl_target,
                              sl_seconds=sl_seconds, shrinkage=shrinkage)
    return IntervalPlan(forecast.volume, forecast.aht_s, traffic(forecast.volume, aht, interval_s), c, a)


# -- checks --------------------------------------------------------------------------


def _check_nonneg(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise StaffingError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_pos(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise StaffingError(f"{name} must be a finite number > 0, got {value!r}")


def _check_share(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise StaffingError(f"{name} must be a share in (0, 1), got {value!r}")


def _check_agents(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise StaffingError(f"agents must be an integer >= 0, got {n!r}")
