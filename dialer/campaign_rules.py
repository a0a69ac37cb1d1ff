"""A campaign's own calling window and retry rules, as stored (JSON) and as used (pure).

The runner and the preview routes dial by ``CallingWindow`` and ``RetryRules``
(``dialer.windows``, ``dialer.leads``); a campaign keeps them in two JSON columns
(migration 0029), ``NULL`` meaning the defaults. This module turns the JSON into those
objects and back, checking every field and naming the bad one, and rebuilds the
figures the runner keeps in memory (the abandonment ledger, the measured pacing
inputs) from the stored attempts. No I/O: rows and ``now`` come in.

The JSON::

    windows: {"hours": {"mon": ["09:00", "20:00"], ..., "sat": ["10:00", "14:00"]},
              "closed_dates": ["2026-12-25"]}           a weekday absent is closed
    retry:   {"busy": {"delay_min": 15, "max_times": 3}, "no_answer": {...}, "machine": {...},
              "failed": {...}, "abandoned": {...},        an outcome absent keeps its default
              "max_attempts": 6, "skip_delay_min": 60, "max_callback_ahead_days": 30}

Exceptions: ``dialer.windows.InvalidWindow`` and ``dialer.leads.InvalidRule``, each with
``field`` the dotted path of the bad field (``windows.hours.mon``, ``retry.busy.delay_min``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable, Mapping

from dialer.leads import InvalidRule, Outcome, RetryRule, RetryRules
from dialer.pacing import MONTH, AbandonLedger, Measured, PacingConfig
from dialer.windows import CallingWindow, InvalidWindow, WindowChecker

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
#: "24:00" closes a window at the day's end (a ``time`` cannot say it: 23:59:59.999999).
_END_OF_DAY = "24:00"
MAX_CLOSED_DATES = 400


def _clock(value: Any, where: str, *, end: bool) -> time:
    if end and value == _END_OF_DAY:
        return time.max
    m = _HHMM.match(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidWindow(where, "a local time HH:MM (00:00 to 23:59" + (", or 24:00)" if end else ")"))
    return time(int(m.group(1)), int(m.group(2)))


def window_from_json(obj: Mapping[str, Any] | None) -> CallingWindow:
    """The ``CallingWindow`` of a campaign's ``windows`` JSON (None: the default one).
    Raises ``InvalidWindow`` naming the field."""
    if obj is None:
        return CallingWindow()
    if not isinstance(obj, Mapping):
        raise InvalidWindow("windows", "an object with hours and closed_dates")
    extra = set(obj) - {"hours", "closed_dates"}
    if extra:
        raise InvalidWindow(f"windows.{sorted(extra)[0]}", "unknown field (hours, closed_dates)")
    raw_hours = obj.get("hours", {})
    if not isinstance(raw_hours, Mapping):
        raise InvalidWindow("windows.hours", "an object by weekday (mon to sun)")
    hours: dict[int, tuple[time, time]] = {}
    for day, pair in raw_hours.items():
        where = f"windows.hours.{day}"
        if day not in WEEKDAYS:
            raise InvalidWindow(where, "not a weekday: mon, tue, wed, thu, fri, sat, sun")
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InvalidWindow(where, 'a pair of local times ["09:00", "20:00"]')
        start, end = _clock(pair[0], f"{where}.0", end=False), _clock(pair[1], f"{where}.1", end=True)
        if start >= end:
            raise InvalidWindow(where, "the start must be before the end (a window does not cross midnight)")
        hours[WEEKDAYS.index(day)] = (start, end)
    if not hours:
        raise InvalidWindow("windows.hours", "at least one weekday must be open (a campaign that may never"
                                             " call is paused, not windowed shut)")
    raw_dates = obj.get("closed_dates", [])
    if not isinstance(raw_dates, (list, tuple)) or len(raw_dates) > MAX_CLOSED_DATES:
        raise InvalidWindow("windows.closed_dates", f"a list of at most {MAX_CLOSED_DATES} dates (YYYY-MM-DD)")
    closed = set()
    for i, d in enumerate(raw_dates):
        try:
            if not isinstance(d, str) or len(d) != 10:
                raise ValueError
            closed.add(date.fromisoformat(d))
        except ValueError:
            raise InvalidWindow(f"windows.closed_dates.{i}", "a date YYYY-MM-DD") from None
    return CallingWindow(hours=hours, closed_dates=frozenset(closed))


def _hhmm(t: time, *, end: bool) -> str:
    return _END_OF_DAY if end and t == time.max else t.strftime("%H:%M")


def window_to_json(w: CallingWindow) -> dict[str, Any]:
    """``w`` as the ``windows`` JSON (``window_from_json`` reads it back equal)."""
    return {"hours": {WEEKDAYS[d]: [_hhmm(s, end=False), _hhmm(e, end=True)] for d, (s, e) in sorted(w.hours.items())},
            "closed_dates": sorted(d.isoformat() for d in w.closed_dates)}


def _int(obj: Mapping[str, Any], key: str, where: str, lo: int, hi: int, default: int) -> int:
    v = obj.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise InvalidRule(f"{where}.{key}", f"an integer from {lo} to {hi}")
    return v


def rules_from_json(obj: Mapping[str, Any] | None, *, ring_s: int = 25, machine_voicemail: bool = False) -> RetryRules:
    """The ``RetryRules`` of a campaign's ``retry`` JSON (None: the defaults), with the
    campaign's ring time and machine action. Raises ``InvalidRule`` naming the field."""
    base = RetryRules()
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise InvalidRule("retry", "an object: one rule per outcome, max_attempts")
    known = {o.value for o in Outcome} | {"max_attempts", "skip_delay_min", "max_callback_ahead_days"}
    extra = set(obj) - known
    if extra:
        raise InvalidRule(f"retry.{sorted(extra)[0]}", "unknown field (" + ", ".join(sorted(known)) + ")")
    per: dict[Outcome, RetryRule] = {}
    for o in Outcome:
        default = base.per_outcome[o]
        raw = obj.get(o.value)
        if raw is None:
            per[o] = default
            continue
        where = f"retry.{o.value}"
        if not isinstance(raw, Mapping) or set(raw) - {"delay_min", "max_times"}:
            raise InvalidRule(where, "an object {delay_min, max_times}")
        delay = _int(raw, "delay_min", where, 1, 30 * 24 * 60, int(default.delay.total_seconds() // 60))
        times = _int(raw, "max_times", where, 0, 100, default.max_times)
        per[o] = RetryRule(timedelta(minutes=delay), times)
    return RetryRules(
        per_outcome=per, max_attempts=_int(obj, "max_attempts", "retry", 1, 100, base.max_attempts),
        machine_voicemail=machine_voicemail,
        skip_delay=timedelta(minutes=_int(obj, "skip_delay_min", "retry", 1, 30 * 24 * 60,
                                          int(base.skip_delay.total_seconds() // 60))),
        max_callback_ahead=timedelta(days=_int(obj, "max_callback_ahead_days", "retry", 1, 365,
                                               base.max_callback_ahead.days)),
        ring_timeout=timedelta(seconds=ring_s))


def rules_to_json(r: RetryRules) -> dict[str, Any]:
    """``r`` as the ``retry`` JSON (ring time and machine action live in their own columns)."""
    out: dict[str, Any] = {o.value: {"delay_min": int(r.per_outcome[o].delay.total_seconds() // 60),
                                     "max_times": r.per_outcome[o].max_times} for o in Outcome}
    out.update(max_attempts=r.max_attempts, skip_delay_min=int(r.skip_delay.total_seconds() // 60),
               max_callback_ahead_days=r.max_callback_ahead.days)
    return out


# -- what the stored attempts say ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """One minute of a campaign's attempts as the ledger counts them: ``live`` (a person
    answered: AMD said HUMAN or NOTSURE), ``abandoned``, ``machines`` (AMD said MACHINE)."""
    at: datetime
    live: int = 0
    abandoned: int = 0
    machines: int = 0


def rebuild_ledger(config: PacingConfig, history: Iterable[MinuteCounts], now: datetime) -> AbandonLedger:
    """The ledger the runner would hold at ``now`` had it seen ``history`` (the stored
    attempts, by minute) live: older than 30 days dropped, later than ``now`` (a clock ahead)
    counted at ``now``. What a restarted daemon, or a new leader, starts from."""
    ledger = AbandonLedger(config)
    oldest = now - MONTH
    for m in sorted(history, key=lambda m: m.at):
        if m.at <= oldest:
            continue
        ledger.record(min(m.at, now), live=m.live, abandoned=m.abandoned, machines=m.machines)
    ledger.rates(now)           # rolled to now
    return ledger


@dataclass(frozen=True, slots=True)
class AttemptTotals:
    """A campaign's recent dials in totals: ``dials`` (runner calls closed), ``live`` (a person
    answered) with ``answer_delay_s`` their total ring time, ``handled`` (connected calls with
    the agent's result) with ``handle_s`` their total connection-to-result time (talk plus
    wrap-up)."""
    dials: int = 0
    live: int = 0
    answer_delay_s: float = 0.0
    handled: int = 0
    handle_s: float = 0.0
    machines: int = 0


def measured_from(totals: AttemptTotals, prior: Measured, *, amd_seconds: float = 2.5,
                  amd_false_positive_share: float = 0.0) -> Measured:
    """The pacing inputs measured from ``totals``, blended with ``prior`` (worth 50 calls,
    ``Measured.from_counts``). A live answer's delay is its ring plus AMD's listening
    (``amd_seconds``: a person is handed over once AMD decides). The AMD false positives
    estimated: ``amd_false_positive_share`` (calibrated) of the calls AMD called machines."""
    return Measured.from_counts(totals.dials, totals.live, totals.answer_delay_s + amd_seconds * totals.live,
                                totals.handled, totals.handle_s, amd_false_positive_share * totals.machines,
                                prior=prior)


class RulesCache:
    """Window checkers and retry rules of campaigns as stored (JSON text), built once per
    distinct value: a checker keeps its verdicts across ticks, and a campaign with no window
    of its own shares ``default`` (with the zone map). ``base``: the rules of a campaign
    with none of its own (the defaults), taking the campaign's ring time and machine action."""

    def __init__(self, default: WindowChecker | None = None, base: RetryRules | None = None) -> None:
        self.default = default or WindowChecker(CallingWindow())
        self.base = base or RetryRules()
        self._checkers: dict[str, WindowChecker] = {}
        self._rules: dict[tuple[str | None, int, str], RetryRules] = {}

    def windows(self, windows_json: str | None) -> WindowChecker:
        """Raises ``InvalidWindow`` for an unusable stored value."""
        if windows_json is None:
            return self.default
        checker = self._checkers.get(windows_json)
        if checker is None:
            checker = WindowChecker(window_from_json(json.loads(windows_json)), self.default.zones)
            if len(self._checkers) > 1000:      # campaigns come and go: never grows without bound
                self._checkers.clear()
            self._checkers[windows_json] = checker
        return checker

    def rules(self, retry_json: str | None, ring_s: int, machine_action: str) -> RetryRules:
        """Raises ``InvalidRule`` for an unusable stored value."""
        key = (retry_json, int(ring_s), machine_action)
        rules = self._rules.get(key)
        if rules is None:
            voicemail = machine_action == "voicemail"
            if retry_json is None:
                b = self.base
                rules = RetryRules(per_outcome=b.per_outcome, max_attempts=b.max_attempts, skip_delay=b.skip_delay,
                                   max_callback_ahead=b.max_callback_ahead, machine_voicemail=voicemail,
                                   ring_timeout=timedelta(seconds=int(ring_s)))
            else:
                rules = rules_from_json(json.loads(retry_json), ring_s=int(ring_s), machine_voicemail=voicemail)
            if len(self._rules) > 1000:
                self._rules.clear()
            self._rules[key] = rules
        return rules

    def of(self, campaign: Mapping[str, Any]) -> tuple[WindowChecker, RetryRules]:
        """A campaign row's (``windows``, ``retry`` as JSON text, ``ring_s``, ``machine_action``)
        window checker and rules."""
        return (self.windows(campaign.get("windows")),
                self.rules(campaign.get("retry"), campaign.get("ring_s") or 25,
                           campaign.get("machine_action") or "retry"))
