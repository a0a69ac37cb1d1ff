"""Report inputs from PostgreSQL: the calls and agent states of a time range, as the
records ``acd.figures`` computes figures from.

The queries are plain and few (calls by queue entry, their events of a few kinds,
the agent state log); turning rows into records is ``build_queue_calls``, a pure
function of the rows (unit-tested without a database). ``db`` is anything with
asyncpg's ``fetch`` (a pool or a connection). Times in are timezone-aware
datetimes; records carry epoch seconds.

It lives in ``acd`` (not ``cti``) because it speaks ``acd.figures``: ``cti``
uses nothing outside itself.

How a stored call becomes queue calls (docs/metrics.md, "The records"):

- arrival: ``queue_joined_at``; each ``acd.maxwait`` event with ``action``
  ``overflow``, and each ``acd.moved`` event (a supervisor's move) naming
  another queue, ends the stay in its ``queue_id`` (timed out) and starts one
  in its ``target`` at the event's time;
- the last stay ends: answered at ``agent_answered_at``; timed out at an
  ``acd.dequeued`` event with reason ``max_wait`` (voicemail or call-back: the
  caller hanging up there is not an abandon); abandoned at ``queue_left_at``
  (or ``ended_at``) when ``abandoned``; timed out when it left the queue or
  ended otherwise (a transfer out, an end guessed after an outage); else waiting;
- talk: from the answer to the first ``call.agent_left`` after it (or the call's
  end), minus hold (``call.held`` to ``call.resumed`` inside that span);
  wrap-up: ``acd.figures.attach_wrapup`` over the agent's state log.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from acd.figures import (
    ABANDONED, ANSWERED, TIMED_OUT, WAITING, AgentSpan, QueueCall, StateChange, attach_wrapup,
    spans_from_changes,
)

# The call events the figures read (``call_events`` fetches them).
EVENT_KINDS = ("call.agent_left", "call.held", "call.resumed", "acd.maxwait", "acd.dequeued", "acd.moved")

# Calls whose queue stay starts in [$1, $2): by queue entry, or by an overflow or a
# supervisor's move into a queue (indexes: migration 0011).
_CALLS = """
SELECT call_id, queue, queue_joined_at, queue_left_at, agent, agent_answered_at, ended_at, abandoned
FROM calls
WHERE call_id IN (
    SELECT call_id FROM calls
    WHERE queue IS NOT NULL AND queue_joined_at >= $1 AND queue_joined_at < $2
    UNION
    SELECT call_id FROM call_events
    WHERE kind IN ('acd.maxwait', 'acd.moved') AND at >= $1 AND at < $2
      AND (kind = 'acd.moved' OR data->>'action' = 'overflow')
)
"""

_EVENTS = """
SELECT call_id, seq, at, kind, data FROM call_events
WHERE call_id = ANY($1::text[]) AND kind = ANY($2::text[])
ORDER BY call_id, seq
"""

# The state each agent was in at $1 (its last change before), then every change in [$1, $2).
# One index probe per agent (agent_states' primary key starts with agent_id, at).
_STATE_CHANGES = """
SELECT s.agent_id, s.at, s.state, s.reason
FROM agents a
CROSS JOIN LATERAL (
    SELECT agent_id, at, state, reason FROM agent_states
    WHERE agent_id = a.agent_id AND at < $1
    ORDER BY at DESC LIMIT 1
) s
UNION ALL
SELECT agent_id, at, state, reason FROM agent_states WHERE at >= $1 AND at < $2
"""


async def queue_calls(db: Any, start: datetime, end: datetime, *, now: datetime,
                      wrapup_margin: timedelta = timedelta(hours=1)) -> list[QueueCall]:
    """The queue calls arriving in [start, end), their wrap-up attached from the agent
    state log (looked at up to ``wrapup_margin`` past the last talk end, and ``now``)."""
    rows = await db.fetch(_CALLS, start, end)
    events = await call_events(db, [r["call_id"] for r in rows])
    calls = [c for c in build_queue_calls(rows, events, now=now.timestamp())
             if start.timestamp() <= c.arrived_at < end.timestamp()]
    talk_ends = [c.left_at + c.talk_s + c.hold_s for c in calls
                 if c.outcome == ANSWERED and c.talk_s is not None and c.left_at is not None]
    if not talk_ends:
        return calls
    lo = datetime.fromtimestamp(min(talk_ends), start.tzinfo) - timedelta(seconds=5)
    hi = min(now, datetime.fromtimestamp(max(talk_ends), start.tzinfo) + wrapup_margin)
    spans = await agent_spans(db, lo, max(lo, hi), now=now)
    return attach_wrapup(calls, spans)


async def call_events(db: Any, call_ids: Sequence[str]) -> list[Any]:
    """The events of ``EVENT_KINDS`` of these calls, by call then ``seq`` (none for no calls)."""
    if not call_ids:
        return []
    return list(await db.fetch(_EVENTS, list(call_ids), list(EVENT_KINDS)))


async def state_changes(db: Any, start: datetime, end: datetime) -> list[StateChange]:
    """Each agent's state at ``start`` (its last change before it) and every change in
    [start, end)."""
    rows = await db.fetch(_STATE_CHANGES, start, end)
    return [StateChange(r["agent_id"], r["at"].timestamp(), r["state"], r["reason"]) for r in rows]


async def agent_spans(db: Any, start: datetime, end: datetime, *, now: datetime) -> list[AgentSpan]:
    """Agent spans covering [start, end): the last ones last until ``end`` or ``now``,
    whichever comes first (the first ones may begin before ``start``)."""
    changes = await state_changes(db, start, end)
    return spans_from_changes(changes, until=min(end, now).timestamp())


# -- rows to records (pure) ---------------------------------------------------------------


def build_queue_calls(calls: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]], *,
                      now: float) -> list[QueueCall]:
    """Queue calls from ``calls`` rows and their ``call_events`` rows (any order; the
    kinds in ``EVENT_KINDS`` matter), as the module doc says. Rows with no queue or
    no queue entry are skipped. Times may be datetimes or epoch seconds."""
    by_call: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        by_call.setdefault(e["call_id"], []).append(e)
    out: list[QueueCall] = []
    for row in calls:
        joined = epoch_seconds(row["queue_joined_at"])
        if row["queue"] is None or joined is None:
            continue
        evs = sorted(by_call.get(row["call_id"], []), key=lambda e: e["seq"])
        out.extend(_visits(row, joined, evs, now))
    return out


def _visits(row: Mapping[str, Any], joined: float, events: Sequence[Mapping[str, Any]],
            now: float) -> list[QueueCall]:
    call_id = row["call_id"]
    queue, arrived = row["queue"], joined
    visits: list[QueueCall] = []
    max_wait_at: float | None = None
    for e in events:
        data = _data(e)
        at = epoch_seconds(e["at"])
        moved = (e["kind"] == "acd.maxwait" and data.get("action") == "overflow") or (
            e["kind"] == "acd.moved" and data.get("target") != data.get("queue_id"))
        if moved and data.get("target"):
            left = max(arrived, at)
            visits.append(QueueCall(call_id=call_id, queue=data.get("queue_id") or queue, arrived_at=arrived,
                                    outcome=TIMED_OUT, left_at=left))
            queue, arrived = str(data["target"]), left
        elif e["kind"] == "acd.dequeued" and data.get("reason") == "max_wait":
            max_wait_at = at
    answered_at, ended_at = epoch_seconds(row["agent_answered_at"]), epoch_seconds(row["ended_at"])
    left_queue = epoch_seconds(row["queue_left_at"])
    if answered_at is not None and answered_at >= arrived - 1.0:
        talk, hold = _talk_and_hold(answered_at, ended_at, events, now)
        visits.append(QueueCall(call_id=call_id, queue=queue, arrived_at=arrived, outcome=ANSWERED,
                                left_at=max(arrived, answered_at), agent=row["agent"], talk_s=talk, hold_s=hold))
    elif max_wait_at is not None:
        visits.append(QueueCall(call_id=call_id, queue=queue, arrived_at=arrived, outcome=TIMED_OUT,
                                left_at=max(arrived, max_wait_at)))
    elif row["abandoned"]:
        left = left_queue if left_queue is not None else ended_at if ended_at is not None else now
        visits.append(QueueCall(call_id=call_id, queue=queue, arrived_at=arrived, outcome=ABANDONED,
                                left_at=max(arrived, left)))
    elif left_queue is not None or ended_at is not None:
        left = left_queue if left_queue is not None else ended_at
        visits.append(QueueCall(call_id=call_id, queue=queue, arrived_at=arrived, outcome=TIMED_OUT,
                                left_at=max(arrived, left)))  # type: ignore[type-var]
    else:
        visits.append(QueueCall(call_id=call_id, queue=queue, arrived_at=arrived, outcome=WAITING))
    return visits


def _talk_and_hold(answered: float, ended: float | None, events: Sequence[Mapping[str, Any]],
                   now: float) -> tuple[float | None, float]:
    """Talk (connected minus hold) and hold seconds of the agent's part of the call;
    talk None while the agent is still connected."""
    talk_end = next((epoch_seconds(e["at"]) for e in events if e["kind"] == "call.agent_left" and epoch_seconds(e["at"]) >= answered),
                    ended)
    until = talk_end if talk_end is not None else now
    hold = 0.0
    held_since: float | None = None
    for e in events:
        at = min(max(epoch_seconds(e["at"]), answered), until)
        if e["kind"] == "call.held" and held_since is None:
            held_since = at
        elif e["kind"] == "call.resumed" and held_since is not None:
            hold += at - held_since
            held_since = None
    if held_since is not None:
        hold += until - held_since
    if talk_end is None:
        return None, hold
    return max(0.0, talk_end - answered - hold), hold


def epoch_seconds(value: Any) -> float | None:
    """A row's time (a datetime or epoch seconds) in epoch seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event["data"]
    if isinstance(data, str):            # asyncpg hands jsonb over as text
        try:
            data = json.loads(data)
        except ValueError:
            return {}
    return data if isinstance(data, Mapping) else {}
