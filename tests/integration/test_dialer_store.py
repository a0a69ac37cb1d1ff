"""The dialer's tables in the real PostgreSQL: a CSV list imported with its line-numbered
report, the do-not-call list checked at dial time, calling windows, retries at their time."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import asyncpg
import pytest

from crm.customer_model import Rejected
from cti.migrate import migrate
from dialer import store
from dialer.lead_import import parse_leads
from dialer.leads import RetryRules, State
from dialer.windows import CallingWindow, WindowChecker

RULES = RetryRules()
WINDOWS = WindowChecker(CallingWindow())
# Tuesday 2026-07-07 16:00 UTC: 12:00 in New York, 09:00 in Phoenix, 01:00 (next day) in Sydney.
NOON_NY = datetime(2026, 7, 7, 16, tzinfo=timezone.utc)

CSV = """phone,name,customer_id
+13175550100,Ann,C1
+13175550101,Bob,C2
+61212345678,Cy,C3
+13175550102,Di,C4
nonsense,Ed,C5
"""


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(database)
    c = await asyncpg.connect(database)
    try:
        yield c
    finally:
        await c.close()


async def campaign_with_leads(conn) -> int:
    cid = await store.create_campaign(conn, "renewals", mode="progressive", caller_id="+13175550000")
    valid, rejected = parse_leads(CSV)
    report = await store.import_leads(conn, cid, valid, rejected)
    assert report.created == 4
    assert report.rejected == [Rejected(6, "phone: 'nonsense' is not a phone number")]
    return cid


async def test_a_number_already_in_the_campaign_is_reported_with_its_line(conn):
    cid = await campaign_with_leads(conn)
    valid, _ = parse_leads("phone\n+13175550199\n+13175550101\n")
    report = await store.import_leads(conn, cid, valid)
    assert report.created == 1
    assert report.rejected == [Rejected(3, "phone: +13175550101 is already in the campaign")]
    zones = await conn.fetchval("SELECT zones FROM dialer_leads WHERE phone = '+61212345678'")
    assert "Australia/Sydney" in zones


async def test_the_do_not_call_list_is_checked_at_dial_time_not_only_at_import(conn):
    cid = await campaign_with_leads(conn)
    # Bob joins the list after the import.
    assert await store.add_dnc(conn, "+1 317 555 0101", reason="asked on another campaign") == "+13175550101"
    taken = await store.take_for_dialing(conn, cid, NOON_NY, 10, rules=RULES, windows=WINDOWS)
    phones = [t.lead.phone for t in taken]
    assert phones == ["+13175550100", "+13175550102"]          # Sydney is asleep, Bob is on the list
    assert all(t.lead.state is State.DIALING and t.lead.attempts == 1 for t in taken)
    assert await conn.fetchval("SELECT state FROM dialer_leads WHERE phone = '+13175550101'") == "do_not_call"
    assert await conn.fetchval("SELECT count(*) FROM dialer_attempts WHERE campaign_id = $1", cid) == 2
    # Sydney's turn comes in its own morning: Wednesday 10:00 there.
    later = datetime(2026, 7, 8, 0, tzinfo=timezone.utc)
    assert [t.lead.phone for t in await store.take_for_dialing(conn, cid, later, 10, rules=RULES, windows=WINDOWS)] \
        == ["+61212345678"]


async def test_a_busy_lead_comes_back_at_its_retry_time_and_not_before(conn):
    cid = await campaign_with_leads(conn)
    first = await store.take_for_dialing(conn, cid, NOON_NY, 1, rules=RULES, windows=WINDOWS)
    assert [t.lead.phone for t in first] == ["+13175550100"]
    lead = await store.record_outcome(conn, first[0].attempt_id, "busy", NOON_NY + timedelta(seconds=5),
                                      rules=RULES, call_id="1700000000.1")
    assert lead.state is State.RETRY and lead.retry_at == NOON_NY + timedelta(minutes=15, seconds=5)
    row = await conn.fetchrow("SELECT outcome, call_id, ended_at FROM dialer_attempts WHERE attempt_id = $1",
                              first[0].attempt_id)
    assert (row["outcome"], row["call_id"]) == ("busy", "1700000000.1")
    rest = await store.take_for_dialing(conn, cid, NOON_NY + timedelta(minutes=10), 10, rules=RULES, windows=WINDOWS)
    assert "+13175550100" not in [t.lead.phone for t in rest]
    again = await store.take_for_dialing(conn, cid, NOON_NY + timedelta(minutes=16), 10, rules=RULES, windows=WINDOWS)
    assert [t.lead.phone for t in again] == ["+13175550100"] and again[0].lead.attempts == 2


async def test_an_opt_out_number_on_the_list_stops_a_retry_too(conn):
    cid = await campaign_with_leads(conn)
    first = await store.take_for_dialing(conn, cid, NOON_NY, 1, rules=RULES, windows=WINDOWS)
    await store.record_outcome(conn, first[0].attempt_id, "no_answer", NOON_NY + timedelta(seconds=30),
                               rules=RULES, rang=timedelta(seconds=25))
    await store.add_dnc(conn, "+13175550100", source="opt_out")
    due = NOON_NY + timedelta(hours=3)
    assert "+13175550100" not in [t.lead.phone for t in
                                  await store.take_for_dialing(conn, cid, due, 10, rules=RULES, windows=WINDOWS)]
    assert await conn.fetchval("SELECT state FROM dialer_leads WHERE phone = '+13175550100'") == "do_not_call"
    assert await store.remove_dnc(conn, "+13175550100") is True
    assert await store.remove_dnc(conn, "+13175550100") is False


async def test_the_tables_refuse_what_the_law_refuses(conn):
    with pytest.raises(asyncpg.CheckViolationError):
        await store.create_campaign(conn, "too aggressive", abandon_cap=0.05)
    with pytest.raises(store.DialerStoreError):
        await store.add_dnc(conn, "call me maybe")
