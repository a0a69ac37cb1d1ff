"""A campaign attempt's result written back to the customer record (docs/dialer.md,
"Results on the customer record").

When an agent records a result (``store.preview_result``: a preview dial, or a campaign call
connected to them), the customer the lead is about gets, in the same transaction:

- a **note** (``customer_notes``, by the agent) saying the campaign, the outcome, the
  disposition, a callback asked for, an opt-out, and the survey's answers with their
  questions, in the order the branching asked them (``result_note``, pure);
- the **call** linked to the customer (``customer_calls``), when the attempt has one;
- a **new number** the person gave (``new_phone``, E.164) added to the customer's phones
  (label ``campaign``) unless it is another customer's; the note says which.

The customer is the lead's ``customer_id`` when it names one, else the customer owning the
lead's number; a lead matching none changes no customer record. The attempt keeps the note's
id (``dialer_attempts.customer_note_id``, migration 0032).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Mapping

import asyncpg

from crm.customer_store import add_note, link_call
from dialer.survey import asked, questions_of

NOTE_MAX = 10_000
#: What became of a new number the person gave, as the note says it.
PHONE_STATUS = {"added": "added to the record", "already": "already on the record",
                "other": "not added: it is another customer's number"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")   # every character splitlines breaks at


def _line(text: Any) -> str:
    """One line of a note: control characters and line separators (a line it would fake) as spaces."""
    return _CONTROL.sub(" ", str(text)).strip()


def result_note(campaign: str, *, outcome: str, disposition: str | None, callback_at: datetime | None,
                opt_out: bool, survey: Any, answers: Mapping[str, str] | None, lead_state: str,
                new_phone: str | None = None, phone_status: str = "added") -> str:
    """The note a result leaves on the customer record (at most ``NOTE_MAX`` characters).
    ``survey``: the campaign's stored survey (answers are listed on the path they took, with
    their question; answers to questions not in it, under their id)."""
    head = f"Campaign {_line(campaign)!r}: {outcome.replace('_', ' ')}"
    if disposition:
        head += f", disposition {_line(disposition)}"
    lines = [head + f" (lead now {lead_state.replace('_', ' ')})."]
    if callback_at is not None:
        lines.append(f"Callback asked for {callback_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC.")
    if opt_out:
        lines.append("Opted out: the number is on the do-not-call list.")
    if new_phone:
        lines.append(f"New number given: {_line(new_phone)}, " + PHONE_STATUS.get(phone_status, phone_status) + ".")
    answers = dict(answers or {})
    if answers:
        s = questions_of(survey)
        on_path = asked(s, answers)
        known = {q.id for q in s.questions}
        lines.append("Survey:")
        lines += [f"- {_line(q.text)} {_line(a)}" for q, a in on_path]
        lines += [f"- {_line(k)}: {_line(v)}" for k, v in sorted(answers.items()) if k not in known]
    note = "\n".join(lines)
    return note if len(note) <= NOTE_MAX else note[:NOTE_MAX - 1] + "…"


async def customer_of(conn: asyncpg.Connection, customer_id: str | None, phone: str) -> str | None:
    """The customer a lead is about: its ``customer_id`` when it names one, else the owner of ``phone``."""
    if customer_id:
        found = await conn.fetchval("SELECT customer_id FROM customers WHERE customer_id = $1", customer_id)
        if found is not None:
            return found
    return await conn.fetchval("SELECT customer_id FROM customer_phones WHERE phone = $1", phone)


async def write_back(conn: asyncpg.Connection, attempt_id: int, *, campaign_id: int, customer_id: str | None,
                     phone: str, author: str, outcome: str, disposition: str | None, callback_at: datetime | None,
                     opt_out: bool, answers: Mapping[str, str] | None, call_id: str | None,
                     lead_state: str, new_phone: str | None = None) -> str | None:
    """Write the result on the customer's record (in the caller's transaction). Returns the
    customer written to (None: the lead matches no customer)."""
    customer = await customer_of(conn, customer_id, phone)
    if customer is None:
        return None
    c = await conn.fetchrow("SELECT name, survey FROM dialer_campaigns WHERE campaign_id = $1", campaign_id)
    survey = c["survey"] if c is not None else None
    survey = json.loads(survey) if isinstance(survey, str) else survey
    status = "added"
    if new_phone:
        added = await conn.fetchval("INSERT INTO customer_phones (phone, customer_id, label)"
                                    " VALUES ($1, $2, 'campaign') ON CONFLICT (phone) DO NOTHING RETURNING phone",
                                    new_phone, customer)
        if added is None:
            owner = await conn.fetchval("SELECT customer_id FROM customer_phones WHERE phone = $1", new_phone)
            status = "already" if owner == customer else "other"
    note = result_note(c["name"] if c is not None else str(campaign_id), outcome=outcome, disposition=disposition,
                       callback_at=callback_at, opt_out=opt_out, survey=survey, answers=answers,
                       lead_state=lead_state, new_phone=new_phone, phone_status=status)
    note_id = await add_note(conn, customer, author[:128] or "dialer", note)
    await conn.execute("UPDATE dialer_attempts SET customer_note_id = $2 WHERE attempt_id = $1", attempt_id, note_id)
    if call_id:
        await link_call(conn, customer, call_id)
    return customer
