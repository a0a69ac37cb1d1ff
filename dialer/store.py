"""Campaigns, leads, attempts and the do-not-call list in PostgreSQL (migration 0016).
The decisions are pure (``dialer.leads``, ``dialer.windows``, ``dialer.lead_import``);
this module reads, locks and writes.

``take_for_dialing`` is where the do-not-call list is checked: at dial time, in the same
transaction that marks the lead ``dialing``, so a number added to the list after the
import (or a second before the dial) is never called; such a lead goes to
``do_not_call``. The calling window is checked there too, from the zones resolved at import.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

import asyncpg

from crm.customer_model import Rejected
from crm.customer_store import Db, connection
from crm.phones import normalise_e164
from dialer.lead_import import LeadRow
from dialer.leads import (NO_RESULT, Answered, Dial, DoNotCall, Ended, InvalidRule, Lead, NoResult, Outcome,
                          RetryRules, Skip, State, Withdraw, agent_result, apply)
from dialer.live_lists import is_live, parse_source
from dialer.live_store import OFF_LIST, ticket_write_back
from dialer.windows import WindowChecker
from dialer.writeback import write_back


class DialerStoreError(ValueError):
    """A request the store refuses (an unknown campaign, a malformed number)."""


class LiveSource(DialerStoreError):
    """The campaign's leads come from a live list (the tickets), not from an import (409)."""


@dataclass
class ImportReport:
    created: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Taken:
    """A lead taken for dialing: the lead as it now is (``dialing``) and its attempt's id."""
    lead: Lead
    attempt_id: int
    zones: frozenset[str]


async def create_campaign(db: Db, name: str, *, mode: str = "preview", caller_id: str | None = None,
                          queue: str | None = None, abandon_cap: float = 0.03, machine_action: str = "retry",
                          ring_s: int = 25, abandon_prompt: str | None = None, voicemail_prompt: str | None = None,
                          skills: str | None = None, script: str = "", survey: list | None = None,
                          windows: dict | None = None, retry: dict | None = None,
                          reserve: dict | None = None, source: str = "csv") -> int:
    """A new campaign's id. ``windows`` and ``retry``: its calling window and retry rules
    as JSON (``dialer.campaign_rules``), ``reserve`` its reserve for inbound
    (``dialer.blending``), checked by the caller; None: the defaults. ``source``: ``csv`` (leads
    imported) or a live list (``dialer.live_lists.SOURCES``; ``dialer.live_store.sync_campaign``
    fills it; ``dialer.live_lists.InvalidSource`` for another). Raises
    ``asyncpg.UniqueViolationError`` for a name in use."""
    source = parse_source(source)
    async with connection(db) as conn:
        return await conn.fetchval(
            "INSERT INTO dialer_campaigns (name, mode, caller_id, queue, abandon_cap, machine_action, ring_s,"
            " abandon_prompt, voicemail_prompt, skills, script, survey, windows, retry, reserve, source)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14::jsonb, $15::jsonb,"
            " $16) RETURNING campaign_id", name, mode, caller_id, queue, abandon_cap, machine_action, ring_s,
            abandon_prompt, voicemail_prompt, skills, script, json.dumps(survey or []),
            None if windows is None else json.dumps(windows), None if retry is None else json.dumps(retry),
            None if reserve is None else json.dumps(reserve), source)


CAMPAIGN_STATES = ("stopped", "running", "paused")


async def running_campaigns(db: Db) -> list[dict]:
    """The campaigns in state ``running``, with what the runner needs of them (``windows``
    and ``retry`` as JSON text, None for the defaults)."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT campaign_id, name, mode, caller_id, queue, abandon_cap::float8 AS abandon_cap, machine_action,"
            " ring_s, abandon_prompt, voicemail_prompt, skills, windows::text AS windows, retry::text AS retry,"
            " reserve::text AS reserve FROM dialer_campaigns WHERE state = 'running' ORDER BY campaign_id")
    return [dict(r) for r in rows]


async def set_campaign_state(db: Db, campaign_id: int, state: str) -> bool:
    """Start (``running``), pause or stop a campaign; False if there is no such campaign."""
    if state not in CAMPAIGN_STATES:
        raise DialerStoreError(f"state must be one of {', '.join(CAMPAIGN_STATES)}")
    if not 0 < campaign_id < 2 ** 63:
        return False
    async with connection(db) as conn:
        return await conn.execute("UPDATE dialer_campaigns SET state = $2 WHERE campaign_id = $1",
                                  campaign_id, state) == "UPDATE 1"


async def pause_all(db: Db) -> list[int]:
    """The emergency stop: every running campaign paused, in one statement. Returns their ids."""
    async with connection(db) as conn:
        rows = await conn.fetch("UPDATE dialer_campaigns SET state = 'paused' WHERE state = 'running'"
                                " RETURNING campaign_id")
    return sorted(r["campaign_id"] for r in rows)


async def attempts(db: Db, campaign_id: int) -> list[dict]:
    """Every attempt of a campaign with its lead's number, oldest first."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT a.attempt_id, a.lead_id, l.phone, a.started_at, a.ended_at, a.outcome, a.call_id, a.amd_status,"
            " a.amd_cause, a.rang_ms, a.agent_id FROM dialer_attempts a JOIN dialer_leads l USING (lead_id)"
            " WHERE a.campaign_id = $1 ORDER BY a.attempt_id", campaign_id)
    return [dict(r) for r in rows]


async def import_leads(db: Db, campaign_id: int, rows: Iterable[LeadRow],
                       rejected: Iterable[Rejected] = ()) -> ImportReport:
    """Add the rows (already checked by ``dialer.lead_import``) to the campaign in one
    transaction; a number already in the campaign is rejected with its line. Returns the
    count created and every rejection (``rejected`` first, merged by line)."""
    rows = list(rows)
    report = ImportReport(rejected=list(rejected))
    async with connection(db) as conn:
        async with conn.transaction():
            source = await conn.fetchval("SELECT source FROM dialer_campaigns WHERE campaign_id = $1 FOR UPDATE",
                                         campaign_id) if 0 < campaign_id < 2 ** 63 else None
            if source is None:
                raise DialerStoreError(f"no campaign {campaign_id}")
            if is_live(source):
                raise LiveSource(f"campaign {campaign_id}'s leads come from its live list ({source}): nothing is"
                                 " imported into it")
            present = {r["phone"] for r in await conn.fetch(
                "SELECT phone FROM dialer_leads WHERE campaign_id = $1 AND phone = ANY($2::text[])",
                campaign_id, [r.phone for r in rows])}
            fresh = []
            for r in rows:
                if r.phone in present:
                    report.rejected.append(Rejected(r.line, f"phone: {r.phone} is already in the campaign"))
                else:
                    fresh.append(r)
            await conn.executemany(
                "INSERT INTO dialer_leads (campaign_id, phone, name, customer_id, tz, zones, source_line)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [(campaign_id, r.phone, r.name, r.customer_id, r.tz, sorted(r.zones), r.line) for r in fresh])
            report.created = len(fresh)
    report.rejected.sort(key=lambda r: r.line)
    return report


def normalised(raw: str) -> str:
    """``raw`` in E.164; ``DialerStoreError`` if it is not a number."""
    phone = normalise_e164(raw)
    if phone is None:
        raise DialerStoreError(f"{raw[:40]!r} is not a phone number in E.164 (+ and digits)")
    return phone


_phone = normalised


async def is_dnc(db: Db, raw_phone: str) -> bool:
    async with connection(db) as conn:
        return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM dialer_dnc WHERE phone = $1)", _phone(raw_phone))


async def list_campaigns(db: Db) -> list[dict]:
    """Every campaign with its leads counted by state, by id."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            """SELECT c.campaign_id, c.name, c.mode, c.state, c.caller_id, c.queue, c.abandon_cap::float8 AS abandon_cap,
                      c.source,
                      coalesce((SELECT jsonb_object_agg(state, n) FROM
                                (SELECT state, count(*) AS n FROM dialer_leads l
                                 WHERE l.campaign_id = c.campaign_id GROUP BY state) s), '{}') AS leads
               FROM dialer_campaigns c ORDER BY c.campaign_id""")
    return [dict(r, leads=json.loads(r["leads"])) for r in rows]


async def add_dnc(db: Db, raw_phone: str, *, reason: str | None = None, source: str = "manual",
                  added_by: str | None = None) -> str:
    """Put a number on the do-not-call list (again: keeps the first entry). Returns it in E.164."""
    phone = _phone(raw_phone)
    async with connection(db) as conn:
        await conn.execute("INSERT INTO dialer_dnc (phone, reason, source, added_by) VALUES ($1, $2, $3, $4)"
                           " ON CONFLICT (phone) DO NOTHING", phone, reason, source, added_by)
    return phone


async def remove_dnc(db: Db, raw_phone: str) -> bool:
    """Take a number off the list; False if it was not on it."""
    async with connection(db) as conn:
        return await conn.execute("DELETE FROM dialer_dnc WHERE phone = $1", _phone(raw_phone)) == "DELETE 1"


def _lead(r: asyncpg.Record) -> Lead:
    return Lead(r["lead_id"], r["phone"], r["tz"], State(r["state"]), r["attempts"],
                {Outcome(k): v for k, v in json.loads(r["outcomes"]).items()}, r["retry_at"], r["last_outcome"],
                r["revision"])


async def _write(conn: asyncpg.Connection, lead: Lead) -> None:
    await conn.execute(
        "UPDATE dialer_leads SET state = $2, attempts = $3, outcomes = $4::jsonb, retry_at = $5, last_outcome = $6,"
        " revision = $7 WHERE lead_id = $1",
        lead.lead_id, lead.state.value, lead.attempts, json.dumps({k.value: v for k, v in lead.outcomes.items()}),
        lead.retry_at, lead.last_outcome, lead.revision)


async def take_for_dialing(db: Db, campaign_id: int, now: datetime, limit: int, *, rules: RetryRules,
                           windows: WindowChecker) -> list[Taken]:
    """Up to ``limit`` leads dialable at ``now`` (new, or retry due), inside their calling
    window, not on the do-not-call list: each marked ``dialing`` with a new attempt, in one
    transaction (leads other sessions hold are skipped). A lead found on the list is moved
    to ``do_not_call`` and never returned."""
    taken: list[Taken] = []
    async with connection(db) as conn:
        async with conn.transaction():
            rows = await conn.fetch(
                f"""SELECT l.*, EXISTS (SELECT 1 FROM dialer_dnc d WHERE d.phone = l.phone) AS on_dnc,
                          {OFF_LIST} AS off_list
                   FROM dialer_leads l
                   WHERE l.campaign_id = $1 AND (l.state = 'new' OR (l.state = 'retry' AND l.retry_at <= $2))
                   ORDER BY l.retry_at NULLS FIRST, l.lead_id
                   LIMIT $3 FOR UPDATE OF l SKIP LOCKED""", campaign_id, now, max(limit * 4, limit + 50))
            for r in rows:
                lead = _lead(r)
                if r["off_list"]:           # its ticket left the live list since the last sync
                    await _write(conn, apply(lead, Withdraw(), rules, now))
                    continue
                if r["on_dnc"]:
                    await _write(conn, apply(lead, DoNotCall(), rules, now))
                    continue
                if len(taken) >= limit:
                    continue
                zones = frozenset(r["zones"])
                if not windows.check(zones, now).allowed:
                    continue
                lead = apply(lead, Dial(), rules, now)
                await _write(conn, lead)
                attempt = await conn.fetchval(
                    "INSERT INTO dialer_attempts (lead_id, campaign_id, started_at) VALUES ($1, $2, $3)"
                    " RETURNING attempt_id", lead.lead_id, campaign_id, now)
                taken.append(Taken(lead, attempt, zones))
    return taken


async def record_outcome(db: Db, attempt_id: int, outcome: str, now: datetime, *, rules: RetryRules,
                         rang: timedelta | None = None, call_id: str | None = None,
                         amd_status: str | None = None, agent_id: str | None = None,
                         amd_cause: str | None = None) -> Lead:
    """Close an attempt with its ``outcome`` (``answered`` or an ``Outcome``) and move its
    lead on (``dialer.leads.apply``). Returns the lead as written."""
    async with connection(db) as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT l.* FROM dialer_attempts a JOIN dialer_leads l USING (lead_id) WHERE a.attempt_id = $1"
                " FOR UPDATE OF l", attempt_id)
            if row is None:
                raise DialerStoreError(f"no attempt {attempt_id}")
            command = Answered() if outcome == "answered" else Ended(Outcome(outcome), rang)
            lead = apply(_lead(row), command, rules, now)
            await _write(conn, lead)
            await conn.execute(
                "UPDATE dialer_attempts SET ended_at = $2, outcome = $3, call_id = $4, amd_status = $5, agent_id = $6,"
                " amd_cause = $7, rang_ms = $8 WHERE attempt_id = $1", attempt_id, now,
                lead.last_outcome if outcome != "answered" else "answered", call_id, amd_status, agent_id,
                amd_cause, None if rang is None else int(rang.total_seconds() * 1000))
    return lead


# -- preview mode (the agent desktop) ------------------------------------------------------

#: How long a lead shown to an agent stays theirs before another agent may be given it.
PREVIEW_HOLD = timedelta(minutes=5)


class PreviewRefused(DialerStoreError):
    """The lead or attempt is not this agent's to act on now (409)."""


class OnDncList(PreviewRefused):
    """The number joined the do-not-call list: the lead is closed, nothing is dialed."""


class TicketLeftList(PreviewRefused):
    """The lead's ticket left its live list: the lead is withdrawn, nothing is dialed."""


async def preview_campaigns(db: Db) -> list[dict]:
    """The running preview campaigns, for agents to pick from."""
    async with connection(db) as conn:
        rows = await conn.fetch("SELECT campaign_id, name FROM dialer_campaigns WHERE state = 'running'"
                                " AND mode = 'preview' ORDER BY campaign_id")
    return [dict(r) for r in rows]


def _card(r: asyncpg.Record, c: asyncpg.Record, ticket: dict | None = None) -> dict:
    return {"lead_id": r["lead_id"], "phone": r["phone"], "name": r["name"], "customer_id": r["customer_id"],
            "attempts": r["attempts"], "last_outcome": r["last_outcome"], "campaign_id": c["campaign_id"],
            "campaign": c["name"], "script": c["script"], "survey": json.loads(c["survey"]), "ticket": ticket}


async def ticket_brief(conn: asyncpg.Connection, ticket_id: int | None) -> dict | None:
    """What a lead card shows of the lead's ticket (a live list's lead), or None."""
    if ticket_id is None:
        return None
    t = await conn.fetchrow("SELECT ticket_id, type, title, state, visits, callback_attempts, engineer"
                            " FROM tickets WHERE ticket_id = $1", ticket_id)
    return dict(t) if t is not None else None


async def take_preview(db: Db, campaign_id: int, agent: str, now: datetime, *, rules: RetryRules,
                       windows: WindowChecker) -> dict | None:
    """The next lead of a running preview campaign for ``agent``: due, inside its window, not
    on the do-not-call list now (a listed one is closed on the way), held for the agent
    ``PREVIEW_HOLD`` (the same lead again while the agent holds it). None: no lead now."""
    async with connection(db) as conn:
        async with conn.transaction():
            c = await conn.fetchrow("SELECT campaign_id, name, mode, state, script, survey FROM dialer_campaigns"
                                    " WHERE campaign_id = $1", campaign_id) if 0 < campaign_id < 2 ** 63 else None
            if c is None:
                raise DialerStoreError(f"no campaign {campaign_id}")
            if c["mode"] != "preview" or c["state"] != "running":
                raise PreviewRefused(f"campaign {campaign_id} is not a running preview campaign")
            rows = await conn.fetch(
                f"""SELECT l.*, EXISTS (SELECT 1 FROM dialer_dnc d WHERE d.phone = l.phone) AS on_dnc,
                          {OFF_LIST} AS off_list
                   FROM dialer_leads l
                   WHERE l.campaign_id = $1 AND (l.state = 'new' OR (l.state = 'retry' AND l.retry_at <= $2))
                     AND (l.reserved_until IS NULL OR l.reserved_until <= $2 OR l.reserved_by = $3)
                   ORDER BY (l.reserved_by = $3 AND l.reserved_until > $2) DESC NULLS LAST,
                            l.retry_at NULLS FIRST, l.lead_id
                   LIMIT 50 FOR UPDATE OF l SKIP LOCKED""", campaign_id, now, agent)
            for r in rows:
                if r["off_list"]:           # its ticket left the live list since the last sync
                    await _write(conn, apply(_lead(r), Withdraw(), rules, now))
                    await conn.execute("UPDATE dialer_leads SET reserved_by = NULL, reserved_until = NULL"
                                       " WHERE lead_id = $1", r["lead_id"])
                    continue
                if r["on_dnc"]:
                    await _write(conn, apply(_lead(r), DoNotCall(), rules, now))
                    continue
                if not windows.check(frozenset(r["zones"]), now).allowed:
                    continue
                await conn.execute("UPDATE dialer_leads SET reserved_by = $2, reserved_until = $3 WHERE lead_id = $1",
                                   r["lead_id"], agent, now + PREVIEW_HOLD)
                return _card(r, c, await ticket_brief(conn, r["ticket_id"]))
    return None


async def _held(conn: asyncpg.Connection, lead_id: int, agent: str, now: datetime) -> asyncpg.Record:
    r = await conn.fetchrow(
        "SELECT l.*, EXISTS (SELECT 1 FROM dialer_dnc d WHERE d.phone = l.phone) AS on_dnc,"
        f" {OFF_LIST} AS off_list FROM dialer_leads l"
        " WHERE l.lead_id = $1 FOR UPDATE", lead_id) if 0 < lead_id < 2 ** 63 else None
    if r is None:
        raise DialerStoreError(f"no lead {lead_id}")
    if r["reserved_by"] != agent or r["reserved_until"] is None or r["reserved_until"] <= now:
        raise PreviewRefused(f"lead {lead_id} is not held for you: take the next lead first")
    return r


async def preview_dial(db: Db, lead_id: int, agent: str, now: datetime, *, rules: RetryRules) -> tuple[int, str]:
    """The agent dials the lead they hold: the do-not-call list checked again, the lead
    ``dialing`` with a new attempt (the agent's). Returns the attempt's id and the number."""
    async with connection(db) as conn:
        async with conn.transaction():
            r = await _held(conn, lead_id, agent, now)
            if r["off_list"]:
                await _write(conn, apply(_lead(r), Withdraw(), rules, now))
                await conn.execute("UPDATE dialer_leads SET reserved_by = NULL, reserved_until = NULL"
                                   " WHERE lead_id = $1", lead_id)
                refused: PreviewRefused | None = TicketLeftList(
                    f"lead {lead_id}'s ticket {r['ticket_id']} left the campaign's list: withdrawn, not dialed")
            elif r["on_dnc"]:
                await _write(conn, apply(_lead(r), DoNotCall(), rules, now))
                await conn.execute("UPDATE dialer_leads SET reserved_by = NULL, reserved_until = NULL"
                                   " WHERE lead_id = $1", lead_id)
                refused = OnDncList("the number is on the do-not-call list: not dialed")
            else:
                refused = None
                lead = apply(_lead(r), Dial(), rules, now)
                await _write(conn, lead)
                attempt = await conn.fetchval(
                    "INSERT INTO dialer_attempts (lead_id, campaign_id, started_at, agent_id) VALUES ($1, $2, $3, $4)"
                    " RETURNING attempt_id", lead_id, r["campaign_id"], now, agent)
    if refused is not None:
        raise refused
    return attempt, r["phone"]


async def preview_skip(db: Db, lead_id: int, agent: str, reason: str, now: datetime, *, rules: RetryRules) -> Lead:
    """The agent passes on the lead they hold, with a reason: it waits ``skip_delay``."""
    async with connection(db) as conn:
        async with conn.transaction():
            r = await _held(conn, lead_id, agent, now)
            lead = apply(_lead(r), Skip(reason), rules, now)
            await _write(conn, lead)
            await conn.execute("UPDATE dialer_leads SET reserved_by = NULL, reserved_until = NULL,"
                               " last_outcome = $2 WHERE lead_id = $1", lead_id, "skipped: " + reason[:180])
    return lead


class NotYourCall(DialerStoreError):
    """The attempt's call was connected to another agent (403)."""


class ResultRecorded(PreviewRefused):
    """The attempt's result is already recorded, or its lead has moved on (409)."""


async def preview_result(db: Db, attempt_id: int, agent: str, now: datetime, *, rules: RetryRules, outcome: str,
                         disposition: str | None = None, answers: dict | None = None,
                         callback_at: datetime | None = None, opt_out: bool = False,
                         call_id: str | None = None, agent_id: str | None = None,
                         new_phone: str | None = None) -> Lead:
    """What the agent recorded for an attempt: their own preview dial (``agent`` the user
    who dialed it), or a campaign call the runner connected to them (``agent_id`` their ACD
    agent id, or ``agent``). ``answered`` (then done with the disposition, a callback at a
    time, or an opt-out that puts the number on the do-not-call list) or, for a preview
    dial only, how the dial ended (busy, no_answer, machine, failed). Accepted once. The
    result is written on the lead's customer record as well (``dialer.writeback``; with
    ``new_phone``, E.164, a number the person gave)."""
    async with connection(db) as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT l.*, a.agent_id AS a_agent, a.ended_at AS a_ended, a.started_at AS a_started, a.call_id AS a_call,"
                " a.outcome AS a_outcome, a.result_at AS a_result,"
                " NOT EXISTS (SELECT 1 FROM dialer_attempts b WHERE b.lead_id = a.lead_id"
                "             AND b.attempt_id > a.attempt_id) AS a_latest"
                " FROM dialer_attempts a JOIN dialer_leads l USING (lead_id) WHERE a.attempt_id = $1"
                " FOR UPDATE OF l, a", attempt_id) if 0 < attempt_id < 2 ** 63 else None
            if row is None:
                raise DialerStoreError(f"no attempt {attempt_id}")
            lead = _lead(row)
            connected = row["a_ended"] is not None and row["a_outcome"] == "answered" and row["a_agent"] is not None
            if connected:
                # A call connected to an agent (by the runner, or a preview dial already closed).
                if row["a_agent"] not in (agent, agent_id):
                    raise NotYourCall(f"attempt {attempt_id}'s call was connected to another agent")
                if row["a_result"] is not None or lead.state is not State.ANSWERED or not row["a_latest"]:
                    raise ResultRecorded(f"attempt {attempt_id}'s result is already recorded")
                if outcome != "answered":
                    raise InvalidRule("outcome", "this call was answered and connected to you: 'answered'")
            elif row["a_agent"] != agent or row["a_ended"] is not None:
                raise PreviewRefused(f"attempt {attempt_id} is not yours to close, or is closed")
            if outcome == "answered":
                if not connected:
                    lead = apply(lead, Answered(), rules, now)
                lead = apply(lead, agent_result(disposition, callback_at, opt_out), rules, now)
                if opt_out:
                    await conn.execute("INSERT INTO dialer_dnc (phone, reason, source, added_by) VALUES"
                                       " ($1, 'opted out on a campaign call', 'opt_out', $2) ON CONFLICT DO NOTHING",
                                       lead.phone, agent)
            else:
                lead = apply(lead, Ended(Outcome(outcome), now - row["a_started"]), rules, now)
            await _write(conn, lead)
            await conn.execute("UPDATE dialer_leads SET reserved_by = NULL, reserved_until = NULL WHERE lead_id = $1",
                               lead.lead_id)
            answers_json = json.dumps(answers) if answers is not None else None
            # What the attempt records: a "no answer" that rang under 15 s is a failure (dialer.leads).
            recorded = "answered" if outcome == "answered" else lead.last_outcome
            if connected:
                await conn.execute(
                    "UPDATE dialer_attempts SET result_at = $2, disposition = $3, answers = $4::jsonb,"
                    " call_id = coalesce(call_id, $5) WHERE attempt_id = $1", attempt_id, now, disposition,
                    answers_json, call_id)
            else:
                await conn.execute(
                    "UPDATE dialer_attempts SET ended_at = $2, outcome = $3, call_id = $4, disposition = $5,"
                    " answers = $6::jsonb, result_at = $2 WHERE attempt_id = $1", attempt_id, now, recorded, call_id,
                    disposition, answers_json)
            # The customer's record gets the result too (dialer.writeback), or nothing does.
            await write_back(conn, attempt_id, campaign_id=row["campaign_id"], customer_id=row["customer_id"],
                             phone=lead.phone, author=agent, outcome=recorded or outcome, disposition=disposition,
                             callback_at=callback_at, opt_out=opt_out, answers=answers,
                             call_id=call_id or row["a_call"], lead_state=lead.state.value, new_phone=new_phone)
            # A live list's lead: its ticket gets the result too (dialer.live_store), or nothing does.
            if row["ticket_id"] is not None:
                c = await conn.fetchrow("SELECT name, source FROM dialer_campaigns WHERE campaign_id = $1",
                                        row["campaign_id"])
                await ticket_write_back(conn, ticket_id=row["ticket_id"], entry=row["ticket_entry"],
                                        source=c["source"], outcome=recorded or outcome, disposition=disposition,
                                        actor=agent, campaign=c["name"], attempt_id=attempt_id,
                                        call_id=call_id or row["a_call"], now=now)
    return lead


async def attempt_card(db: Db, attempt_id: int) -> dict | None:
    """The lead card (``_card``: the lead, the campaign's script and survey) of an attempt."""
    async with connection(db) as conn:
        r = await conn.fetchrow("SELECT l.* FROM dialer_attempts a JOIN dialer_leads l USING (lead_id)"
                                " WHERE a.attempt_id = $1", attempt_id)
        if r is None:
            return None
        c = await conn.fetchrow("SELECT campaign_id, name, script, survey FROM dialer_campaigns"
                                " WHERE campaign_id = $1", r["campaign_id"])
        return _card(r, c, await ticket_brief(conn, r["ticket_id"]))


async def call_hung_up(db: Db, attempt_id: int, now: datetime) -> None:
    """The connected call of ``attempt_id`` ended at ``now`` (the "no result" clock starts)."""
    async with connection(db) as conn:
        await conn.execute("UPDATE dialer_attempts SET hung_up_at = $2 WHERE attempt_id = $1 AND hung_up_at IS NULL",
                           attempt_id, now)


async def awaiting_result(db: Db, before: datetime) -> list[dict]:
    """Answered attempts with no result whose lead is still ``answered``, connected before
    ``before``: attempt_id, connected_at (``ended_at``: the attempt closed when connected),
    hung_up_at."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT a.attempt_id, a.ended_at AS connected_at, a.hung_up_at FROM dialer_attempts a"
            " JOIN dialer_leads l USING (lead_id)"
            " WHERE a.outcome = 'answered' AND a.result_at IS NULL AND a.ended_at < $1 AND l.state = 'answered'"
            " ORDER BY a.ended_at LIMIT 500", before)
    return [dict(r) for r in rows]


async def close_no_result(db: Db, attempt_id: int, now: datetime, *, rules: RetryRules) -> Lead | None:
    """Close the lead of an answered attempt that got no result (``NoResult``: done,
    ``answered_no_result``). None when a result came meanwhile (or the lead moved on)."""
    async with connection(db) as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT l.*, a.result_at AS a_result, a.outcome AS a_outcome FROM dialer_attempts a"
                " JOIN dialer_leads l USING (lead_id) WHERE a.attempt_id = $1 FOR UPDATE OF l, a", attempt_id)
            if row is None or row["a_result"] is not None or row["a_outcome"] != "answered" \
                    or row["state"] != State.ANSWERED.value:
                return None
            lead = apply(_lead(row), NoResult(), rules, now)
            await _write(conn, lead)
            await conn.execute("UPDATE dialer_attempts SET result_at = $2, disposition = $3 WHERE attempt_id = $1",
                               attempt_id, now, NO_RESULT)
    return lead
