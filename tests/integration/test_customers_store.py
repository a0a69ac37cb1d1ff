"""The customer record in the real PostgreSQL: CSV import with its report, merges,
the 360-degree view, and ``cti customers import`` as an admin runs it."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import asyncpg
import pytest

from crm import ticket_store as ts
from crm.customer_lookup import find_by_phone, save_customer
from crm.customer_model import Address, InvalidCustomer, MergeRefused, Rejected, read_csv
from crm.customer_store import (
    add_address, add_note, customer_view, import_customers, link_call, merge_customers, tag,
)
from cti.migrate import migrate
from tests.integration.test_cli import cti

CSV = """customer_id,name,phones,language,vip,tags,address,postcode,city,country,region,note
A1,Ann Alpha,"030 1111111; +49 30 2222222",de,yes,"VIP, Lang:de",Hauptstr. 1,10115,Berlin,de,north,first
A2,Bob Beta,0049 30 3333333,,no,,,,,,,
A3,,+49304444444,,,,,,,,,
A4,Cy Gamma,"+49305555555, not-a-number",,,,,,,,,
A5,Di Delta,+49302222222,,,,,,,,,
A6,Ed Eps,+49306666666,,,,,,,,mars,
,Fay Zeta,+49307777777,en,,,,,,,,
A8,Gil Eta,+49308888888,,,,,,,,,
"""


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(database)
    c = await asyncpg.connect(database)
    try:
        yield c
    finally:
        await c.close()


async def test_import_creates_valid_rows_and_reports_each_rejected_one(conn):
    await save_customer(conn, "OTHER", "Someone Else", ["+49308888888"])
    ids = iter(["GEN1"])
    report = await import_customers(conn, read_csv(CSV), actor="test", country_code="49",
                                    regions=frozenset({"north", "south"}), new_id=lambda: next(ids))
    assert (report.created, report.updated) == (3, 0)
    assert report.rejected == [
        Rejected(4, "name: is required"),
        Rejected(5, "phones: 'not-a-number' is not a phone number"),
        Rejected(6, "phones: +49302222222 already on line 2"),
        Rejected(7, "region: unknown region 'mars' (known: north, south)"),
        Rejected(9, "phones: +49308888888 belongs to customer 'OTHER'"),
    ]
    ann = await find_by_phone(conn, "+49301111111")
    assert (ann.customer_id, ann.name, ann.vip, ann.language) == ("A1", "Ann Alpha", True, "de")
    assert (await find_by_phone(conn, "+49302222222")).customer_id == "A1"
    assert (await find_by_phone(conn, "+49303333333")).customer_id == "A2"
    assert (await find_by_phone(conn, "+49307777777")).customer_id == "GEN1"
    assert (await find_by_phone(conn, "+49308888888")).customer_id == "OTHER"   # never stolen by an import
    view = await customer_view(conn, "A1")
    assert view["tags"] == ["lang:de", "vip"] and [n["body"] for n in view["notes"]] == ["first"]
    assert [(a["line1"], a["city"], a["country"], a["region"], a["is_primary"]) for a in view["addresses"]] == \
           [("Hauptstr. 1", "Berlin", "DE", "north", True)]
    # the same file again: updates, no second address, no new customer
    again = await import_customers(conn, read_csv(CSV.replace("Ann Alpha", "Ann Alpha-Omega")), actor="test",
                                   country_code="49", regions=frozenset({"north", "south"}),
                                   new_id=lambda: "GEN2")
    assert (again.created, again.updated) == (0, 3)      # the id-less row found its customer by number
    assert len(again.rejected) == 5
    assert (await find_by_phone(conn, "+49301111111")).name == "Ann Alpha-Omega"
    assert len((await customer_view(conn, "A1"))["addresses"]) == 1


async def test_a_dry_run_changes_nothing(conn):
    report = await import_customers(conn, read_csv(CSV), actor="test", country_code="49", dry_run=True)
    assert report.created == 5 and len(report.rejected) == 3
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_merge_moves_phones_tags_addresses_notes_calls_and_tickets(conn):
    await save_customer(conn, "KEEP", "Ann Alpha", ["+49301"], language=None, vip=False)
    await save_customer(conn, "DUP", "A. Alpha", ["+49302", "+49303"], language="de", vip=True)
    await tag(conn, "KEEP", add=["reseller"])
    await tag(conn, "DUP", add=["VIP", "reseller"])
    await add_address(conn, "KEEP", Address(line1="Hauptstr. 1", city="Berlin", region="north"), primary=True)
    same = await add_address(conn, "DUP", Address(line1="hauptstr 1", city="BERLIN"), primary=True)
    other = await add_address(conn, "DUP", Address(line1="Site 9", city="Potsdam", region="south"))
    await add_note(conn, "DUP", "agent1", "prefers mornings")
    await link_call(conn, "DUP", "call-1")
    await link_call(conn, "KEEP", "call-1")
    await link_call(conn, "DUP", "call-2")
    t, _ = await ts.create_ticket(conn, type="repair", customer_id="DUP", source="call", actor="a")
    plan = await merge_customers(conn, "KEEP", "DUP", actor="supervisor1")
    assert plan.addresses_moved == (other,) and plan.addresses_dropped == (same,)
    assert plan.extra == {"notes": 1, "calls": 1, "tickets": [t.ticket_id]}
    view = await customer_view(conn, "KEEP")
    assert (view["name"], view["language"], view["vip"]) == ("Ann Alpha", "de", True)
    assert [p["phone"] for p in view["phones"]] == ["+49301", "+49302", "+49303"]
    assert view["tags"] == ["reseller", "vip"]
    assert [(a["line1"], a["is_primary"]) for a in view["addresses"]] == [("Hauptstr. 1", True), ("Site 9", False)]
    assert [n["body"] for n in view["notes"]] == ["prefers mornings"]
    assert sorted(c["call_id"] for c in view["calls"]) == ["call-1", "call-2"]
    assert [x["ticket_id"] for x in view["tickets"]] == [t.ticket_id]
    assert await customer_view(conn, "DUP") is None
    assert (await find_by_phone(conn, "+49303")).customer_id == "KEEP"
    merged = await conn.fetchrow("SELECT into_customer_id, from_customer_id, actor, moved FROM customer_merges")
    assert (merged["into_customer_id"], merged["from_customer_id"], merged["actor"]) == ("KEEP", "DUP", "supervisor1")
    assert '"addresses_dropped": [%d]' % same in merged["moved"]


async def test_a_refused_merge_changes_nothing(conn):
    await save_customer(conn, "KEEP", "Ann", ["+49301"])
    for keep, dup, words in [("KEEP", "KEEP", "into itself"), ("KEEP", "ghost", "unknown customer 'ghost'")]:
        with pytest.raises(MergeRefused, match=words):
            await merge_customers(conn, keep, dup, actor="x")
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1
    assert await conn.fetchval("SELECT count(*) FROM customer_merges") == 0


async def test_bad_tags_notes_and_regions_are_refused_with_the_field(conn):
    await save_customer(conn, "C1", "Ann", ["+49301"])
    with pytest.raises(InvalidCustomer) as err:
        await tag(conn, "C1", add=["ok", "not ok!"])
    assert err.value.field == "tags" and await tag(conn, "C1") == []
    with pytest.raises(InvalidCustomer, match="body"):
        await add_note(conn, "C1", "agent1", "   ")
    with pytest.raises(InvalidCustomer, match="region"):
        await add_address(conn, "C1", Address(line1="x", region="north\r\nX: y"))


def test_the_cli_imports_a_file_and_prints_the_report(database: str, tmp_path: Path):
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    report = tmp_path / "rejected.csv"
    out = cti("customers", "import", str(path), "--country", "49", "--report", str(report),
              CTI_DATABASE_URL=database)
    assert out.returncode == 1, out.stdout + out.stderr                # some rows were rejected
    assert "rejected line 4: name: is required" in out.stdout
    assert "imported 5 customers (5 new, 0 updated), rejected 3 rows of 8" in out.stdout
    assert report.read_text().splitlines()[:2] == ["line,reason", "4,name: is required"]
    clean = tmp_path / "clean.csv"
    clean.write_text("name,phones\nZed,+49309999\n", encoding="utf-8")
    ok = cti("customers", "import", str(clean), CTI_DATABASE_URL=database)
    assert ok.returncode == 0 and "imported 1 customers (1 new, 0 updated), rejected 0 rows of 1" in ok.stdout
    bad = cti("customers", "import", str(tmp_path / "missing.csv"), CTI_DATABASE_URL=database)
    assert bad.returncode == 2 and "cannot read" in bad.stderr
    clean.write_text("name,phone\nZed,+49309999\n", encoding="utf-8")
    wrong = cti("customers", "import", str(clean), CTI_DATABASE_URL=database)
    assert wrong.returncode == 2 and "unknown column 'phone'" in wrong.stderr


def test_the_cli_imports_a_ticket_list_skipping_open_ones(database: str, tmp_path: Path):
    path = tmp_path / "missed.txt"
    path.write_text("# missed the upload of 2026-11-29\nZ1\nZ2\n\nghost\nZ1\n", encoding="utf-8")
    customers = tmp_path / "c.csv"
    customers.write_text("customer_id,name,phones\nZ1,Zed One,+49301\nZ2,Zed Two,+49302\n", encoding="utf-8")
    assert cti("customers", "import", str(customers), CTI_DATABASE_URL=database).returncode == 0
    first = cti("tickets", "import-list", str(path), "--type", "missed_upload", "--note", "no upload 11-29",
                CTI_DATABASE_URL=database)
    assert first.returncode == 1, first.stdout + first.stderr      # 'ghost' is unknown
    assert "unknown customer 'ghost'" in first.stdout
    assert "created 2 missed_upload tickets, skipped 0 already open, 1 unknown, 1 repeated" in first.stdout
    path.write_text("Z1\nZ2\n", encoding="utf-8")
    again = cti("tickets", "import-list", str(path), "--type", "missed_upload", CTI_DATABASE_URL=database)
    assert again.returncode == 0 and "created 0 missed_upload tickets, skipped 2 already open" in again.stdout
    wrong = cti("tickets", "import-list", str(path), "--type", "teleport", CTI_DATABASE_URL=database)
    assert wrong.returncode == 2 and "unknown ticket type 'teleport'" in wrong.stderr
