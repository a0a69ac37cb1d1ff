"""What supervisors see of campaigns: the board's row per campaign and the results as CSV.
Pure: rows and rates in, rows and text out.

The CSV is safe to open in a spreadsheet: a text cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading apostrophe, so it is shown and never run
as a formula (a number in E.164 starts with ``+``: it comes out as ``'+4930...``).
"""
from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from dialer.pacing import Rates

RESULT_COLUMNS = ("attempt_id", "lead_id", "phone", "name", "customer_id", "lead_state", "started_at", "ended_at",
                  "outcome", "disposition", "agent_id", "amd_status", "rang_ms", "call_id", "result_at")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v: Any) -> Any:
    """One cell: None empty, a time in ISO 8601, a text that a spreadsheet would read as a
    formula with an apostrophe first."""
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, str) and v.startswith(_FORMULA):
        return "'" + v
    return v


def result_header(survey: Sequence[str]) -> list[str]:
    """The columns of the results export: the attempt and its lead, then one ``answer.<id>``
    per survey question, in the survey's order."""
    return [*RESULT_COLUMNS, *(f"answer.{q}" for q in survey)]


def result_lines(rows: Iterable[Mapping[str, Any]], survey: Sequence[str], *, header: bool) -> str:
    """``rows`` (``dialer.campaign_store.results``) as CSV lines (CRLF), the header first if
    ``header``. Answers to questions the survey no longer has are left out."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow(result_header(survey))
    for r in rows:
        answers = r.get("answers") or {}
        w.writerow([csv_cell(r.get(c)) for c in RESULT_COLUMNS]
                   + [csv_cell(answers.get(q) if isinstance(answers, Mapping) else None) for q in survey])
    return buf.getvalue()


PACING_FIELDS = ("dial_level", "pacing_reason", "free_for_campaign", "measured_live_rate",
                 "measured_answer_delay_s", "measured_handle_s", "paced_at")


def board_row(campaign: Mapping[str, Any], rates: Mapping[str, Rates], agents: int | None,
              in_flight: int | None = None, pacing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A campaign's row on the board: ``campaign`` (``dialer.campaign_store.board``), its
    abandonment ``rates`` (``{"24h", "30d"}``, AMD false positives estimated included), the
    agents logged in to its queue and its calls ringing or in AMD now (None: not known on this
    node), and the runner's last ``pacing`` (``dialer.runner.Pacing.view``: the dial level,
    why, the measured inputs; None: not paced on this node, every field then None).
    ``over_cap``: a window's rate is over the campaign's cap (the runner then dials
    progressively only); ``connect_rate``: today's connected per dialed (None before a dial)."""
    cap = float(campaign["abandon_cap"])
    row = {k: campaign[k] for k in ("campaign_id", "name", "mode", "state", "queue", "dialed", "connected",
                                    "abandoned", "leads_left")}
    dialed = int(campaign["dialed"])
    row.update(abandon_cap=cap, agents=agents, in_flight=in_flight,
               connect_rate=round(int(campaign["connected"]) / dialed, 4) if dialed else None,
               abandon_24h=round(rates["24h"].rate, 5), abandon_30d=round(rates["30d"].rate, 5),
               live_24h=int(rates["24h"].live), live_30d=int(rates["30d"].live),
               over_cap=rates["24h"].rate > cap or rates["30d"].rate > cap)
    row.update({k: (pacing or {}).get(k) for k in PACING_FIELDS})
    return row
