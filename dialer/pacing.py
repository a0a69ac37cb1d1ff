"""Pacing: how many calls a campaign starts now. Pure: state, measurements and ``now`` in,
a decision out (docs/dialer.md has the model with its reasoning).

Modes:

- **preview**: the dialer starts nothing; the agent starts the call (or skips the lead).
- **progressive**: one call per free agent: calls in flight never exceed free agents,
  so nobody who answers waits for an agent (abandonment only through AMD mistakes, and,
  blended, inbound callers taking an agent during the ring: then no more calls than the
  guard and the model below allow).
- **predictive**: more calls than free agents, so that agents freeing during the ring
  find a person. The model, per decision, over the horizon ``H`` (a live answer's mean
  delay plus the 2 s it may wait for an agent):

  - ``X``, the people who will answer, is ``Binomial(k + n, p)``: ``k`` calls in
    flight, ``n`` new ones, ``p`` the measured share of dials a person answers;
  - ``Y``, the agents there for them, is ``F + Binomial(B, q)``: ``F`` free agents,
    ``B`` busy ones each freeing within ``H`` with ``q = 1 - exp(-H / AHT)``
    (handle time measured: talk plus wrap-up);
  - expected abandoned ``E[max(0, X - Y)]``, expected answered ``(k + n) p``.

  ``n`` is the largest number whose expected abandoned stays under ``target`` times
  its expected answered (the two binomials' law is exact: no normal approximation),
  the target lowered by the AMD false positives measured per live answer.

Whatever the model says, a **hard guard** holds the caps: with ``a`` abandoned
(AMD false positives estimated included) and ``L`` live answers in a window, the
worst case of a decision is that every call in flight beyond the free agents is
answered by a person and abandoned; calls are started only while
``(a + e) / (L + e) <= cap`` for that excess ``e``, i.e. ``e <= (cap L - a) / (1 - cap)``,
for the 24-hour and for the 30-day window alike (``AbandonLedger.headroom``). So a
campaign with no history dials progressively until its live answers pay for an excess.

**Inbound on the same agents** (a blended campaign): an inbound caller who arrives while a
campaign call rings takes a free agent that call was counted on. ``DialState`` carries the
inbound arrival rate ``r`` of the queues the agents also serve and ``s``, the free agents kept
for inbound (its reserve: arrivals take those first). Over the horizon ``H`` the arrivals are
``N ~ Poisson(r H)``; the agents they take from the campaign ``D = max(0, N - s)``. The model
counts ``Z = max(0, Y - D)`` agents for its people (``E[max(0, X - Z)]``), and the hard guard
counts only ``max(0, F - m)`` free agents as sure, ``m`` the ``inbound_quantile`` (99%) upper
quantile of ``D``: the calls beyond them are excess the headroom must pay for, whatever mode.
Without inbound (``r = 0``, or ``inbound_quantile`` None: the rule before, kept for the
benchmark's side by side) the decision is exactly as above.

Blending (how many free agents a campaign that shares them with inbound may count on)
is ``dialer.blending``.

Exceptions (all ``cti.errors.CtiError``)::

    PacingError        a configuration or measurement out of range (names the field)
"""
from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from cti.errors import CtiError

#: The law's ceiling on the abandonment rate (FTC TSR, Ofcom): a campaign may set less.
LEGAL_CAP = 0.03
DAY = timedelta(hours=24)
MONTH = timedelta(days=30)
#: The highest inbound quantile a campaign may ask for (the Poisson law is cut at 1e-12).
MAX_QUANTILE = 0.999999


class PacingError(CtiError, ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class Mode(str, enum.Enum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """A campaign's pacing settings. ``cap``: the abandonment rate neither window may pass
    (at most 3%); ``target``: what the model aims for per decision (at most ``cap``);
    ``amd_false_positive_share``: of calls AMD calls machines, the share that were people
    (measured by calibration; they count as abandoned); ``max_lines_per_agent``: calls in
    flight at most per agent on the campaign; ``roll_guard``: answers leaving a window
    within this time do not pay for new excess (a rate cannot rise by roll-off alone
    just after a dial)."""
    mode: Mode = Mode.PREDICTIVE
    cap: float = LEGAL_CAP
    target: float = 0.0175
    amd_false_positive_share: float = 0.0
    max_lines_per_agent: float = 4.0
    answer_wait_s: float = 2.0
    roll_guard: timedelta = timedelta(hours=1)
    #: The upper quantile of the inbound arrivals over the horizon the hard guard takes as
    #: taking free agents; None: inbound arrivals during the ring are not counted at all (the
    #: rule before, for the benchmark's side by side only).
    inbound_quantile: float | None = 0.99

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", _enum(Mode, self.mode, "mode"))
        if not 0 < self.cap <= LEGAL_CAP:
            raise PacingError("cap", f"must be above 0 and at most {LEGAL_CAP:.0%}")
        if not 0 <= self.target <= self.cap:
            raise PacingError("target", "must be between 0 and the cap")
        if not 0 <= self.amd_false_positive_share < 1:
            raise PacingError("amd_false_positive_share", "must be in [0, 1)")
        if not 1 <= self.max_lines_per_agent <= 10:
            raise PacingError("max_lines_per_agent", "must be between 1 and 10")
        if not 0 <= self.answer_wait_s <= 2:
            raise PacingError("answer_wait_s", "must be between 0 and 2 s (the law's wait)")
        if not timedelta(0) <= self.roll_guard <= timedelta(hours=12):
            raise PacingError("roll_guard", "must be between 0 and 12 hours")
        if self.inbound_quantile is not None and not (
                isinstance(self.inbound_quantile, (int, float)) and 0.5 <= self.inbound_quantile <= MAX_QUANTILE):
            raise PacingError("inbound_quantile", f"must be None or between 0.5 and {MAX_QUANTILE}")


def _enum(kind, value, name):
    try:
        return kind(value)
    except ValueError:
        raise PacingError(name, f"must be one of {', '.join(m.value for m in kind)}") from None


@dataclass(frozen=True, slots=True)
class Measured:
    """What the campaign measured: ``live_rate`` (people answering per dial),
    ``answer_delay_s`` (dial to a person's answer, AMD included), ``handle_s`` (talk plus
    wrap-up), ``false_positives_per_live`` (AMD false positives estimated per live answer:
    they count as abandoned, so the model aims that much lower). ``from_counts`` blends the counts with a prior worth ``prior_weight`` calls,
    so a new campaign starts from sane figures and its own figures take over."""
    live_rate: float
    answer_delay_s: float
    handle_s: float
    false_positives_per_live: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.false_positives_per_live < 1:
            raise PacingError("false_positives_per_live", "must be in [0, 1)")
        if not 0 < self.live_rate <= 1:
            raise PacingError("live_rate", "must be in (0, 1]")
        if not 0 < self.answer_delay_s <= 120:
            raise PacingError("answer_delay_s", "must be in (0, 120] s")
        if not 1 <= self.handle_s <= 36000:
            raise PacingError("handle_s", "must be in [1, 36000] s")

    @classmethod
    def from_counts(cls, dials: int, live: int, answer_delay_total_s: float, handled: int,
                    handle_total_s: float, false_positives: float = 0.0, prior: Measured | None = None,
                    prior_weight: int = 50) -> Measured:
        prior = prior or Measured(0.2, 10.0, 240.0)
        w = prior_weight
        return cls(live_rate=min(1.0, max(1e-3, (live + prior.live_rate * w) / (dials + w))),
                   answer_delay_s=min(120.0, max(0.5, (answer_delay_total_s + prior.answer_delay_s * w) / (live + w))),
                   handle_s=max(1.0, (handle_total_s + prior.handle_s * w) / (handled + w)),
                   false_positives_per_live=min(0.5, false_positives / (live + false_positives)) if live else 0.0)


@dataclass(frozen=True, slots=True)
class DialState:
    """The campaign now: agents ``free`` for it (after blending), ``busy`` on its calls
    (talking or wrapping up), and its calls ``in_flight`` (started, not yet answered or ended).
    Blended: ``inbound_per_s``, the arrival rate of the inbound queues its agents also serve,
    and ``inbound_spare``, the free agents kept for inbound beyond ``free`` (its reserve),
    which inbound arrivals take before the campaign's."""
    free: int
    busy: int
    in_flight: int
    inbound_per_s: float = 0.0
    inbound_spare: int = 0

    def __post_init__(self) -> None:
        for name in ("free", "busy", "in_flight", "inbound_spare"):
            if getattr(self, name) < 0:
                raise PacingError(name, "must not be negative")
        if not (math.isfinite(self.inbound_per_s) and self.inbound_per_s >= 0):
            raise PacingError("inbound_per_s", "must be a finite rate, not negative")


@dataclass(frozen=True, slots=True)
class Decision:
    launch: int                     # calls to start now
    reason: str                     # preview | progressive | model | guard | lines | no_agents
    expected_abandoned: float       # by the model, for the calls then in flight
    expected_answered: float
    headroom: int | None            # excess calls the caps allow (None: not computed)


def decide(state: DialState, measured: Measured, config: PacingConfig, headroom: int) -> Decision:
    """How many calls to start now. ``headroom``: ``AbandonLedger.headroom(...)``, the
    excess over free agents the caps allow."""
    agents = state.free + state.busy
    if config.mode is Mode.PREVIEW:
        return Decision(0, "preview", 0.0, 0.0, headroom)
    if agents == 0:
        return Decision(0, "no_agents", 0.0, 0.0, headroom)
    p = measured.live_rate
    horizon = measured.answer_delay_s + config.answer_wait_s
    d_pmf = inbound_takers(state, horizon, config)
    if len(d_pmf) == 1 and config.mode is Mode.PROGRESSIVE:
        progressive = max(0, state.free - state.in_flight)        # no inbound: as it always was
        return Decision(progressive, "progressive", 0.0, (state.in_flight + progressive) * p, headroom)
    # The free agents sure to be there (inbound's upper quantile taken out), and the most calls
    # the caps allow in flight: the sure ones, plus the excess the headroom pays for.
    sure = max(0, state.free - quantile(d_pmf, config.inbound_quantile or 1.0))
    room = sure + max(0, headroom)
    if config.mode is Mode.PROGRESSIVE:
        limit = min(state.free, room) - state.in_flight           # one call per free agent at most
    else:
        limit = min(math.floor(config.max_lines_per_agent * agents), room) - state.in_flight
    target = max(0.0, config.target - measured.false_positives_per_live)
    q = 1.0 - math.exp(-horizon / measured.handle_s)
    z_pmf = _less(_shifted_binomial(state.free, state.busy, q), d_pmf)

    def within(n: int) -> bool:
        k = state.in_flight + n
        return _expected_excess(_binomial(k, p), z_pmf) <= target * k * p

    # At least a call per sure free agent not already covered (abandoned only if inbound takes
    # more than its upper quantile; none at all without inbound). One more call adds
    # p x P(X >= Z) to the expected excess, a share that only grows with the calls: the excess
    # is convex in n and the target line straight, so the n within the target form one interval
    # from 0, and its end is found by bisection (log n evaluations, the same answer as trying n
    # one by one: tests/unit/test_dialer_pacing.py).
    n = max(0, sure - state.in_flight)
    if n < limit and within(n + 1):
        lo, hi = n + 1, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if within(mid):
                lo = mid
            else:
                hi = mid - 1
        n = lo
    n = max(0, min(n, limit))
    if config.mode is Mode.PROGRESSIVE:
        reason = "progressive"
    elif n < limit:
        reason = "model"
    else:
        reason = "guard" if room < math.floor(config.max_lines_per_agent * agents) else "lines"
    k = state.in_flight + n
    return Decision(n, reason, _expected_excess(_binomial(k, p), z_pmf), k * p, headroom)


# -- inbound arrivals during the ring ---------------------------------------------------


def inbound_takers(state: DialState, horizon_s: float, config: PacingConfig) -> list[float]:
    """P(D = j): the law of the free agents counted as the campaign's that inbound arrivals take
    within ``horizon_s``: ``D = max(0, N - spare)``, ``N ~ Poisson(rate x horizon)``. Values at
    or above every agent the campaign has (``free + busy``) are gathered on that one (beyond
    it nothing changes: no agent is left). ``[1.0]`` (none) without inbound, or with
    ``inbound_quantile`` None."""
    if config.inbound_quantile is None or state.inbound_per_s <= 0:
        return [1.0]
    top = state.free + state.busy
    n_pmf = _poisson(state.inbound_per_s * horizon_s, top + state.inbound_spare)
    spare = state.inbound_spare
    out = [sum(n_pmf[:spare + 1])] + n_pmf[spare + 1:]
    while len(out) > 1 and out[-1] == 0.0:
        out.pop()
    return out


def quantile(pmf: list[float], level: float) -> int:
    """The smallest ``m`` with P(value <= m) >= ``level`` (the last value when float sums fall
    short of it)."""
    total = 0.0
    for m, v in enumerate(pmf):
        total += v
        if total >= level - 1e-12:
            return m
    return len(pmf) - 1


def _poisson(mean: float, top: int, tail: float = 1e-12) -> list[float]:
    """P(N = i) for i up to ``top`` (the mass beyond it gathered on ``top``), N ~ Poisson(mean),
    in logs (no underflow for a large mean); cut where less than ``tail`` is left."""
    if mean <= 0 or top <= 0:
        return [1.0]
    log_mean = math.log(mean)
    log_p = -mean
    pmf: list[float] = []
    total = 0.0
    for i in range(top):
        if i:
            log_p += log_mean - math.log(i)
        v = math.exp(log_p)
        pmf.append(v)
        total += v
        if i > mean and 1.0 - total < tail:
            return pmf
    pmf.append(max(0.0, 1.0 - total))
    return pmf


def _less(y_pmf: list[float], d_pmf: list[float]) -> list[float]:
    """P(Z = j) for Z = max(0, Y - D), Y and D independent."""
    if len(d_pmf) == 1:
        return y_pmf
    z = [0.0] * len(y_pmf)
    for y, py in enumerate(y_pmf):
        if py == 0.0:
            continue
        for d, pd in enumerate(d_pmf[:y + 1]):
            z[y - d] += py * pd
        z[0] += py * sum(d_pmf[y + 1:])
    return z


# -- the binomial pieces ----------------------------------------------------------------


def _binomial(n: int, p: float) -> list[float]:
    """P(X = i) for i in 0..n, X ~ Binomial(n, p), by the ratio recurrence in logs."""
    if n == 0:
        return [1.0]
    if p >= 1.0:
        return [0.0] * n + [1.0]
    if p <= 0.0:
        return [1.0] + [0.0] * n
    log_q, log_p = math.log1p(-p), math.log(p)
    logs = [n * log_q]
    for i in range(1, n + 1):
        logs.append(logs[-1] + math.log((n - i + 1) / i) + log_p - log_q)
    top = max(logs)
    pmf = [math.exp(v - top) for v in logs]
    total = sum(pmf)
    return [v / total for v in pmf]


def _shifted_binomial(shift: int, n: int, p: float) -> list[float]:
    """P(Y = j) for Y = shift + Binomial(n, p), as a list indexed by j."""
    return [0.0] * shift + _binomial(n, p)


def _expected_excess(x_pmf: list[float], y_pmf: list[float]) -> float:
    """E[max(0, X - Y)] for independent X and Y, in O(len(x) + len(y))."""
    # tail[j] = sum_{x > j} P(x), tail_x[j] = sum_{x > j} x P(x)
    size = len(x_pmf)
    tail = [0.0] * (size + 1)
    tail_x = [0.0] * (size + 1)
    for x in range(size - 1, -1, -1):
        tail[x] = tail[x + 1] + (x_pmf[x + 1] if x + 1 < size else 0.0)
        tail_x[x] = tail_x[x + 1] + ((x + 1) * x_pmf[x + 1] if x + 1 < size else 0.0)
    total = 0.0
    for y, py in enumerate(y_pmf):
        if y >= size - 1:
            break
        total += py * (tail_x[y] - y * tail[y])
    return total


# -- the caps ---------------------------------------------------------------------------


class _Window:
    """Counts per minute over a sliding window of ``length``: running sums, O(1) amortised."""

    def __init__(self, length: timedelta) -> None:
        self.length_min = int(length.total_seconds() // 60)
        self.buckets: deque[list[float]] = deque()       # [minute, live, abandoned, machines]
        self.live = self.abandoned = self.machines = 0.0

    def add(self, minute: int, live: float, abandoned: float, machines: float) -> None:
        if self.buckets and self.buckets[-1][0] == minute:
            b = self.buckets[-1]
            b[1] += live
            b[2] += abandoned
            b[3] += machines
        else:
            self.buckets.append([minute, live, abandoned, machines])
        self.live += live
        self.abandoned += abandoned
        self.machines += machines

    def advance(self, minute: int) -> None:
        """Drop the buckets older than the window ending at ``minute`` (included)."""
        oldest = minute - self.length_min + 1
        while self.buckets and self.buckets[0][0] < oldest:
            _, live, abandoned, machines = self.buckets.popleft()
            self.live -= live
            self.abandoned -= abandoned
            self.machines -= machines


@dataclass(frozen=True, slots=True)
class Rates:
    live: float
    abandoned: float            # abandoned by the dialer plus AMD false positives estimated
    rate: float


class AbandonLedger:
    """A campaign's abandonment over the last 24 hours and 30 days, by the minute. No I/O
    and no clock: ``now`` comes with every call (it must not go backwards)."""

    def __init__(self, config: PacingConfig) -> None:
        self.config = config
        guard = config.roll_guard
        self._windows = {DAY: _Window(DAY), MONTH: _Window(MONTH)}
        # The same windows, shortened by the roll guard: the answers that stay in them.
        self._staying = {DAY: _Window(DAY - guard), MONTH: _Window(MONTH - guard)}
        self._minute = None

    @staticmethod
    def _minute_of(now: datetime) -> int:
        return int(now.timestamp() // 60)

    def _advance(self, now: datetime) -> int:
        minute = self._minute_of(now)
        if self._minute is not None and minute < self._minute:
            raise PacingError("now", "went backwards")
        self._minute = minute
        for w in (*self._windows.values(), *self._staying.values()):
            w.advance(minute)
        return minute

    def record(self, now: datetime, *, live: int = 0, abandoned: int = 0, machines: int = 0) -> None:
        """Count ``live`` answers by a person (abandoned ones included), ``abandoned`` ones
        (a person not connected to an agent within 2 s) and ``machines`` (AMD said so)."""
        minute = self._advance(now)
        for w in (*self._windows.values(), *self._staying.values()):
            w.add(minute, live, abandoned, machines)

    def _counts(self, w: _Window) -> tuple[float, float]:
        fp = self.config.amd_false_positive_share * w.machines
        # An AMD false positive is a person hung up on: a live answer, and abandoned.
        return w.live + fp, w.abandoned + fp

    def rates(self, now: datetime) -> dict[str, Rates]:
        """``{"24h": Rates, "30d": Rates}`` at ``now``."""
        self._advance(now)
        out = {}
        for name, span in (("24h", DAY), ("30d", MONTH)):
            live, abandoned = self._counts(self._windows[span])
            out[name] = Rates(live, abandoned, abandoned / live if live else 0.0)
        return out

    def headroom(self, now: datetime) -> int:
        """The most calls in flight beyond the free agents that keep both windows at or under
        the cap even if every one of them is answered by a person and abandoned."""
        self._advance(now)
        cap = self.config.cap
        room = None
        for span in (DAY, MONTH):
            _, abandoned = self._counts(self._windows[span])
            live, _ = self._counts(self._staying[span])
            # (a + e) / (L + e) <= cap  <=>  e <= (cap L - a) / (1 - cap); a tiny epsilon
            # keeps a float that lands exactly on an integer from losing it.
            e = math.floor((cap * live - abandoned) / (1 - cap) + 1e-9)
            room = e if room is None else min(room, e)
        return max(0, room)
