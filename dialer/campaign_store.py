"""A campaign's settings, history and results in PostgreSQL (migrations 0016 to 0032): its
calling window, retry rules and inbound reserve, what its stored attempts say (the abandonment ledger
rebuilt, the measured pacing inputs), the supervisors' board, the results export, and
the attempt awaiting an agent's result. The decisions are pure (``dialer.campaign_rules``,
``dialer.board``); this module reads and writes.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, AsyncIterator

from crm.customer_store import Db, connection
from dialer.campaign_rules import AttemptTotals, MinuteCounts
from dialer.store import DialerStoreError, attempt_card


def _id_ok(n: int) -> bool:
    return 0 < n < 2 ** 63


def _json(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) else text


async def get_rules(db: Db, campaign_id: int) -> dict | None:
    """The campaign's stored ``windows`` and ``retry`` JSON (None each: the defaults), its
    ``ring_s`` and ``machine_action``; None if there is no such campaign."""
    if not _id_ok(campaign_id):
        return None
    async with connection(db) as conn:
        r = await conn.fetchrow("SELECT campaign_id, windows::text AS windows, retry::text AS retry, ring_s,"
                                " machine_action FROM dialer_campaigns WHERE campaign_id = $1", campaign_id)
    return None if r is None else dict(r, windows=_json(r["windows"]), retry=_json(r["retry"]))


async def set_rules(db: Db, campaign_id: int, windows: dict | None, retry: dict | None) -> bool:
    """Store the campaign's window and rules (checked by the caller; None: the defaults).
    False if there is no such campaign."""
    if not _id_ok(campaign_id):
        return False
    async with connection(db) as conn:
        return await conn.execute(
            "UPDATE dialer_campaigns SET windows = $2::jsonb, retry = $3::jsonb WHERE campaign_id = $1", campaign_id,
            None if windows is None else json.dumps(windows), None if retry is None else json.dumps(retry)
        ) == "UPDATE 1"


async def get_reserve(db: Db, campaign_id: int) -> tuple[bool, dict | None]:
    """(the campaign exists, its stored ``reserve`` JSON: None for none of its own)."""
    if not _id_ok(campaign_id):
        return False, None
    async with connection(db) as conn:
        r = await conn.fetchrow("SELECT reserve::text AS reserve FROM dialer_campaigns WHERE campaign_id = $1",
                                campaign_id)
    return (False, None) if r is None else (True, _json(r["reserve"]))


async def set_reserve(db: Db, campaign_id: int, reserve: dict | None) -> bool:
    """Store the campaign's reserve for inbound (checked by the caller; None: none of its own).
    False if there is no such campaign."""
    if not _id_ok(campaign_id):
        return False
    async with connection(db) as conn:
        return await conn.execute("UPDATE dialer_campaigns SET reserve = $2::jsonb WHERE campaign_id = $1",
                                  campaign_id, None if reserve is None else json.dumps(reserve)) == "UPDATE 1"


async def rules_of(db: Db, *, lead_id: int | None = None, attempt_id: int | None = None) -> dict | None:
    """``get_rules`` of the campaign of a lead or an attempt; None if it does not exist."""
    async with connection(db) as conn:
        if lead_id is not None:
            cid = await conn.fetchval("SELECT campaign_id FROM dialer_leads WHERE lead_id = $1",
                                      lead_id) if _id_ok(lead_id) else None
        else:
            cid = await conn.fetchval("SELECT campaign_id FROM dialer_attempts WHERE attempt_id = $1",
                                      attempt_id) if attempt_id is not None and _id_ok(attempt_id) else None
    return None if cid is None else await get_rules(db, cid)


async def ledger_history(db: Db, campaign_id: int, since: datetime) -> list[MinuteCounts]:
    """The campaign's attempts closed after ``since``, by minute, as the runner's ledger
    counts them: a person (AMD ``HUMAN`` or ``NOTSURE``), abandoned, a machine."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            """SELECT date_trunc('minute', ended_at) AS at,
                      count(*) FILTER (WHERE amd_status IN ('HUMAN', 'NOTSURE')) AS live,
                      count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
                      count(*) FILTER (WHERE amd_status = 'MACHINE') AS machines
               FROM dialer_attempts
               WHERE campaign_id = $1 AND ended_at > $2 AND (amd_status IS NOT NULL OR outcome = 'abandoned')
               GROUP BY 1 ORDER BY 1""", campaign_id, since)
    return [MinuteCounts(r["at"], r["live"], r["abandoned"], r["machines"]) for r in rows]


async def attempt_totals(db: Db, campaign_id: int, since: datetime) -> AttemptTotals:
    """The campaign's runner calls (``dialer-`` call ids) closed after ``since`` in totals:
    dials, live answers and their ring time, connected calls with a result and the time
    from connection to result, the calls AMD called machines."""
    async with connection(db) as conn:
        r = await conn.fetchrow(
            """SELECT count(*) AS dials,
                      count(*) FILTER (WHERE amd_status IN ('HUMAN', 'NOTSURE')) AS live,
                      coalesce(sum(rang_ms) FILTER (WHERE amd_status IN ('HUMAN', 'NOTSURE')), 0)::float8 / 1000
                          AS answer_delay_s,
                      count(*) FILTER (WHERE outcome = 'answered' AND result_at IS NOT NULL
                                       AND disposition IS DISTINCT FROM 'answered_no_result') AS handled,
                      coalesce(sum(extract(epoch FROM result_at - ended_at))
                               FILTER (WHERE outcome = 'answered' AND result_at IS NOT NULL
                                       AND disposition IS DISTINCT FROM 'answered_no_result'), 0)::float8
                          AS handle_s,
                      count(*) FILTER (WHERE amd_status = 'MACHINE') AS machines
               FROM dialer_attempts
               WHERE campaign_id = $1 AND ended_at > $2 AND call_id LIKE 'dialer-%'""", campaign_id, since)
    return AttemptTotals(r["dials"], r["live"], r["answer_delay_s"], r["handled"], r["handle_s"], r["machines"])


async def orphaned_attempts(db: Db, before: datetime) -> list[dict]:
    """Runner attempts (no agent yet) still open, started before ``before``, whose lead is
    still ``dialing``, with their campaign's rules (``windows``, ``retry`` as JSON text,
    ``ring_s``, ``machine_action``)."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            """SELECT a.attempt_id, a.campaign_id, c.windows::text AS windows, c.retry::text AS retry, c.ring_s,
                      c.machine_action
               FROM dialer_attempts a JOIN dialer_leads l USING (lead_id)
               JOIN dialer_campaigns c ON c.campaign_id = a.campaign_id
               WHERE a.ended_at IS NULL AND a.agent_id IS NULL AND a.started_at < $1 AND l.state = 'dialing'
               ORDER BY a.attempt_id LIMIT 500""", before)
    return [dict(r) for r in rows]


async def board(db: Db, today: datetime) -> list[dict]:
    """Every campaign with what the board shows of it: its state, mode, queue, cap, leads
    left (new, retry, dialing), and its attempts started since ``today``: dialed,
    connected (answered), abandoned."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            """SELECT c.campaign_id, c.name, c.mode, c.state, c.queue, c.abandon_cap::float8 AS abandon_cap,
                      coalesce(a.dialed, 0) AS dialed, coalesce(a.connected, 0) AS connected,
                      coalesce(a.abandoned, 0) AS abandoned,
                      (SELECT count(*) FROM dialer_leads l WHERE l.campaign_id = c.campaign_id
                         AND l.state IN ('new', 'retry', 'dialing')) AS leads_left
               FROM dialer_campaigns c
               LEFT JOIN LATERAL (
                   SELECT count(*) AS dialed, count(*) FILTER (WHERE outcome = 'answered') AS connected,
                          count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned
                   FROM dialer_attempts WHERE campaign_id = c.campaign_id AND started_at >= $1) a ON true
               ORDER BY c.campaign_id LIMIT 200""", today)
    return [dict(r) for r in rows]


async def get_survey(db: Db, campaign_id: int) -> list | None:
    """The campaign's stored survey (a list of questions); None if there is no such campaign."""
    if not _id_ok(campaign_id):
        return None
    async with connection(db) as conn:
        survey = await conn.fetchval("SELECT survey::text FROM dialer_campaigns WHERE campaign_id = $1", campaign_id)
    return None if survey is None else json.loads(survey)


async def set_survey(db: Db, campaign_id: int, survey: list) -> bool:
    """Store the campaign's survey (checked by the caller). False if there is no such campaign."""
    if not _id_ok(campaign_id):
        return False
    async with connection(db) as conn:
        return await conn.execute("UPDATE dialer_campaigns SET survey = $2::jsonb WHERE campaign_id = $1",
                                  campaign_id, json.dumps(survey)) == "UPDATE 1"


async def survey_ids(db: Db, campaign_id: int) -> list[str] | None:
    """The ids of the campaign's survey questions, in order; None if there is no such campaign."""
    if not _id_ok(campaign_id):
        return None
    async with connection(db) as conn:
        survey = await conn.fetchval("SELECT survey::text FROM dialer_campaigns WHERE campaign_id = $1", campaign_id)
    if survey is None:
        return None
    return [q["id"] for q in json.loads(survey) if isinstance(q, dict) and isinstance(q.get("id"), str)]


RESULT_BATCH = 1000


async def results(db: Db, campaign_id: int) -> AsyncIterator[list[dict]]:
    """Every attempt of the campaign with its lead and result, oldest first, in batches
    (a cursor: a long campaign is never held in memory whole)."""
    async with connection(db) as conn:
        async with conn.transaction():
            cur = conn.cursor(
                """SELECT a.attempt_id, a.lead_id, l.phone, l.name, l.customer_id, l.state AS lead_state,
                          a.started_at, a.ended_at, a.outcome, a.disposition, a.answers::text AS answers,
                          a.agent_id, a.amd_status, a.rang_ms, a.call_id, a.result_at
                   FROM dialer_attempts a JOIN dialer_leads l USING (lead_id)
                   WHERE a.campaign_id = $1 ORDER BY a.attempt_id""", campaign_id, prefetch=RESULT_BATCH)
            batch: list[dict] = []
            async for r in cur:
                batch.append(dict(r, answers=_json(r["answers"]) or {}))
                if len(batch) >= RESULT_BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch


async def pending_result(db: Db, agent: str, agent_id: str | None) -> dict | None:
    """The attempt awaiting ``agent``'s result (the user; ``agent_id`` their ACD agent id):
    a campaign call connected to them with no result yet and its lead still ``answered``
    (``kind`` ``connected``), or their own preview dial not closed (``preview``); the latest
    if several. ``{"attempt_id", "call_id", "kind", "card"}``; None if there is none."""
    names = [agent] + ([agent_id] if agent_id and agent_id != agent else [])
    async with connection(db) as conn:
        r = await conn.fetchrow(
            """SELECT a.attempt_id, a.call_id, a.outcome FROM dialer_attempts a JOIN dialer_leads l USING (lead_id)
               WHERE a.agent_id = ANY($1::text[]) AND a.result_at IS NULL
                 AND ((a.outcome = 'answered' AND l.state = 'answered')
                      OR (a.ended_at IS NULL AND l.state = 'dialing'))
                 AND NOT EXISTS (SELECT 1 FROM dialer_attempts b WHERE b.lead_id = a.lead_id
                                 AND b.attempt_id > a.attempt_id)
               ORDER BY a.attempt_id DESC LIMIT 1""", names)
    if r is None:
        return None
    card = await attempt_card(db, r["attempt_id"])
    if card is None:        # deleted meanwhile
        return None
    return {"attempt_id": r["attempt_id"], "call_id": r["call_id"],
            "kind": "connected" if r["outcome"] == "answered" else "preview", "card": card}


__all__ = ["DialerStoreError", "attempt_totals", "board", "get_rules", "ledger_history", "orphaned_attempts",
           "pending_result", "results", "rules_of", "set_rules", "survey_ids"]
