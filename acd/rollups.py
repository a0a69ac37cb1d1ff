"""Interval reports from PostgreSQL, fast on a year of calls: 15-minute rollups.

A report over a long range does not read every call again. Each local
15-minute interval (the same instants in every zone whose offset is a whole
quarter hour) is rolled up once its calls are settled (``SETTLE_S`` after it
ends: answered, abandoned or timed out, talk and wrap-up over): the additive
``QueueCounts`` per queue (``report_queue_15min``) and the agents' seconds per
state and reason with their handled calls (``report_agent_15min``), marked done
under the queues' thresholds (``report_intervals_done``). A report adds the
rows of done intervals into 30/60-minute, day and week intervals
(``acd.wallboard.report_rows``), and reads the calls of the intervals not done
yet (recent ones, or all of them after a threshold change) from the call
tables, through the very same functions (``acd.reports`` and
``acd.figures.count_calls``). So a figure is the same whichever way it came:
tested by reading a range both ways. Intervals are rolled up by the daemon
(``roll_up``: at start the last 400 days not done yet, then the last two days
every few minutes); a report never writes, it reads the calls of what is not
rolled up yet.

``db`` is an asyncpg pool or connection.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from acd import reports
from acd.figures import ANSWERED, QueueCall, QueueCounts, bucket_start, count_calls
from acd.wallboard import BoardConfig, split_agent_seconds

QUARTER = 900.0
ALL, TOTAL = "", "*"         # interval_counts(agents=...): every agent, the sum over agents
SETTLE_S = 2 * 3600.0        # an interval is rolled up this long after it ended
_UTC = timezone.utc

_Q_COLS = ("arrived", "short_abandoned", "answered", "abandoned", "timed_out", "waiting", "answered_within",
           "abandoned_within", "answered_wait_s", "abandon_wait_s", "handled", "talk_s", "hold_s", "wrapup_s",
           "longest_wait_s")


def quarter(t: float) -> float:
    """The 15-minute interval holding ``t`` (UTC multiples of 900 s: the same in
    every zone with a whole quarter-hour offset)."""
    return float(int(t // QUARTER) * QUARTER)


def policy_key(config: BoardConfig, queues: Iterable[str]) -> str:
    """The thresholds the rollups of ``queues`` were made under, as text."""
    return ";".join(f"{q}:{config.of(q).policy.threshold_s:g}:{config.of(q).policy.short_abandon_s:g}"
                    for q in sorted(queues))


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, _UTC)


def _by_quarter(calls: Iterable[QueueCall], config: BoardConfig, now: float) -> dict[tuple[str, float], QueueCounts]:
    groups: dict[tuple[str, float], list[QueueCall]] = {}
    for c in calls:
        groups.setdefault((c.queue, quarter(c.arrived_at)), []).append(c)
    return {k: count_calls(v, config.of(k[0]).policy, now=now) for k, v in groups.items()}


def _handled_by_quarter(calls: Iterable[QueueCall]) -> dict[tuple[str, float], tuple[int, float]]:
    out: dict[tuple[str, float], tuple[int, float]] = {}
    for c in calls:
        if c.outcome == ANSWERED and c.agent and c.handle_s is not None:
            key = (c.agent, quarter(c.arrived_at))
            n, s = out.get(key, (0, 0.0))
            out[key] = (n + 1, s + c.handle_s)
    return out


async def _done(db: Any, start: float, end: float, key: str) -> set[float]:
    rows = await db.fetch("SELECT start_at FROM report_intervals_done WHERE policies = $1 "
                          "AND start_at >= $2 AND start_at < $3", key, _dt(start), _dt(end))
    return {r["start_at"].timestamp() for r in rows}


def _ranges(quarters: list[float]) -> list[tuple[float, float]]:
    """Sorted quarter starts -> maximal [start, end) ranges."""
    out: list[tuple[float, float]] = []
    for q in quarters:
        if out and out[-1][1] == q:
            out[-1] = (out[-1][0], q + QUARTER)
        else:
            out.append((q, q + QUARTER))
    return out


async def _raw(db: Any, lo: float, hi: float, config: BoardConfig, now: float, *, agents: bool = True
               ) -> tuple[dict[tuple[str, float], QueueCounts], dict, dict]:
    calls = await reports.queue_calls(db, _dt(lo), _dt(hi), now=_dt(now))
    if not agents:
        return _by_quarter(calls, config, now), {}, {}
    spans = await reports.agent_spans(db, _dt(lo), _dt(hi), now=_dt(now))
    bounds = [(q, q + QUARTER) for q in _quarters(lo, hi)]
    return _by_quarter(calls, config, now), split_agent_seconds(spans, bounds), _handled_by_quarter(calls)


def _quarters(lo: float, hi: float) -> list[float]:
    out, q = [], quarter(lo)
    while q < hi:
        out.append(q)
        q += QUARTER
    return out


async def interval_counts(db: Any, start: float, end: float, config: BoardConfig, queues: Iterable[str], *,
                          now: float, agents: str | None = None
                          ) -> tuple[dict[tuple[str, float], QueueCounts], dict, dict, dict[str, int]]:
    """Per 15-minute interval of [start, end) (``start``/``end`` on quarter
    boundaries): queue counts by ``(queue, start)``, agent seconds by
    ``(agent, start)`` and agent handled calls by ``(agent, start)``, from the
    rollups where done, else from the calls. Also says how many intervals came
    each way (``{"rollup": n, "raw": m}``).

    ``agents`` says which agent figures to read: None none, ``ALL`` every
    agent's, ``TOTAL`` the sum over agents (keyed ``TOTAL``), else that agent's.
    A year of every agent is 200 x 35,040 rows: ask for one agent or the total."""
    queues = list(queues)
    key = policy_key(config, queues)
    done = await _done(db, start, end, key)
    qcounts: dict[tuple[str, float], QueueCounts] = {}
    aseconds: dict = {}
    ahandled: dict = {}
    if done:
        rows = await db.fetch(f"SELECT queue, start_at, threshold_s, short_abandon_s, {', '.join(_Q_COLS)} FROM report_queue_15min "
                              "WHERE start_at >= $1 AND start_at < $2", _dt(start), _dt(end))
        for r in rows:
            t = r["start_at"].timestamp()
            if t in done and r["queue"] in queues and _matches(config, r):
                qcounts[(r["queue"], t)] = QueueCounts(*(r[c] for c in _Q_COLS))
        rows = []
        if agents == ALL:
            rows = await db.fetch("SELECT agent_id, start_at, seconds, not_ready, handled, handle_s "
                                  "FROM report_agent_15min WHERE start_at >= $1 AND start_at < $2 AND agent_id <> $3",
                                  _dt(start), _dt(end), TOTAL)
        elif agents is not None:
            rows = await db.fetch("SELECT agent_id, start_at, seconds, not_ready, handled, handle_s "
                                  "FROM report_agent_15min WHERE agent_id = $3 AND start_at >= $1 AND start_at < $2",
                                  _dt(start), _dt(end), agents)
        for r in rows:
            t = r["start_at"].timestamp()
            if t in done:
                aseconds[(r["agent_id"], t)] = (json.loads(r["seconds"]), json.loads(r["not_ready"]))
                if r["handled"]:
                    ahandled[(r["agent_id"], t)] = (r["handled"], r["handle_s"])
    missing = [q for q in _quarters(start, end) if q not in done]
    for lo, hi in _ranges(missing):
        q, a, h = await _raw(db, lo, hi, config, now, agents=agents is not None)
        qcounts.update({k: v for k, v in q.items() if k[0] in queues})
        if agents == TOTAL:
            a = _totals(a)
            h = {}
        elif agents is None:
            a, h = {}, {}
        elif agents != ALL:
            a = {k: v for k, v in a.items() if k[0] == agents}
            h = {k: v for k, v in h.items() if k[0] == agents}
        aseconds.update(a)
        ahandled.update(h)
    return qcounts, aseconds, ahandled, {"rollup": len(done), "raw": len(missing)}


def _totals(seconds: Mapping[tuple[str, float], tuple[Mapping[str, float], Mapping[str, float]]]) -> dict:
    """Agent seconds summed over agents, keyed ``(TOTAL, start)``."""
    out: dict[tuple[str, float], tuple[dict[str, float], dict[str, float]]] = {}
    for (agent, t), (secs, reasons) in seconds.items():
        tot = out.setdefault((TOTAL, t), ({}, {}))
        for k, v in secs.items():
            tot[0][k] = tot[0].get(k, 0.0) + v
        for k, v in reasons.items():
            tot[1][k] = tot[1].get(k, 0.0) + v
    return out


def _matches(config: BoardConfig, r: Mapping[str, Any]) -> bool:
    p = config.of(r["queue"]).policy
    return r["threshold_s"] == p.threshold_s and r["short_abandon_s"] == p.short_abandon_s


async def roll_up(db: Any, start: float, end: float, config: BoardConfig, queues: Iterable[str], *,
                  now: float, settle_s: float = SETTLE_S, chunk_s: float = 86_400.0) -> int:
    """Roll up the settled 15-minute intervals of [start, end) not done yet (under the
    current thresholds); returns how many were done now. Reads a day of calls at a time."""
    queues = list(queues)
    key = policy_key(config, queues)
    last = min(end, quarter(now - settle_s))
    done_now = 0
    lo = quarter(start)
    while lo < last:
        hi = min(last, lo + chunk_s)
        done = await _done(db, lo, hi, key)
        todo = [q for q in _quarters(lo, hi) if q not in done]
        for a, b in _ranges(todo):
            qc, asec, ahand = await _raw(db, a, b, config, now)
            await _store(db, a, b, key, config, qc, asec, ahand)
            done_now += int((b - a) // QUARTER)
        lo = hi
    return done_now


async def _store(db: Any, lo: float, hi: float, key: str, config: BoardConfig, qc: Mapping, asec: Mapping,
                 ahand: Mapping) -> None:
    qrows = [(queue, _dt(t), config.of(queue).policy.threshold_s, config.of(queue).policy.short_abandon_s,
              *(getattr(k, c) for c in _Q_COLS)) for (queue, t), k in qc.items()]
    arows = []
    for (agent, t), (secs, reasons) in {**asec, **_totals(asec)}.items():
        n, s = ahand.get((agent, t), (0, 0.0))
        arows.append((agent, _dt(t), json.dumps(secs), json.dumps(reasons), n, s))
    for (agent, t), (n, s) in ahand.items():
        if (agent, t) not in asec:
            arows.append((agent, _dt(t), "{}", "{}", n, s))
    cols = ("queue", "start_at", "threshold_s", "short_abandon_s") + _Q_COLS
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))

    async def write(conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("DELETE FROM report_queue_15min WHERE start_at >= $1 AND start_at < $2",
                               _dt(lo), _dt(hi))
            await conn.execute("DELETE FROM report_agent_15min WHERE start_at >= $1 AND start_at < $2",
                               _dt(lo), _dt(hi))
            if qrows:
                await conn.executemany(f"INSERT INTO report_queue_15min ({', '.join(cols)}) VALUES ({marks})", qrows)
            if arows:
                await conn.executemany("INSERT INTO report_agent_15min (agent_id, start_at, seconds, not_ready, "
                                       "handled, handle_s) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6)", arows)
            await conn.executemany("INSERT INTO report_intervals_done (start_at, policies) VALUES ($1, $2) "
                                   "ON CONFLICT DO NOTHING", [(_dt(q), key) for q in _quarters(lo, hi)])

    if hasattr(db, "acquire"):
        async with db.acquire() as conn:
            await write(conn)
    else:
        await write(db)


def day_bounds(day_start_local: datetime) -> tuple[float, float]:
    """[local midnight, next local midnight) of a zone-aware datetime's day."""
    start = day_start_local.replace(hour=0, minute=0, second=0, microsecond=0)
    tz = start.tzinfo
    nxt = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
    return start.timestamp(), nxt.timestamp()


def aligned(start: float, end: float, granularity: str, tz: Any) -> tuple[float, float]:
    """[start, end) widened to whole intervals of ``granularity``."""
    from acd.figures import next_bucket
    lo = bucket_start(start, granularity, tz)
    last = bucket_start(max(start, end - 1e-6), granularity, tz)
    return lo, next_bucket(last, granularity, tz)
