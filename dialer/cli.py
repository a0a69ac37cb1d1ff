"""``cti dialer ...``: lead lists and the do-not-call list from the command line.

    cti dialer import CAMPAIGN_ID FILE.csv [--country CODE]
                       add a CSV list to a campaign, reporting each rejected line
    cti dialer dnc add NUMBER [--reason TEXT] | remove NUMBER | check NUMBER

``import`` exits 0 when every row was added, 1 when some were rejected (the others are
added), 2 when the file cannot be read or the campaign does not exist (nothing added).
``dnc check`` exits 0 when the number is listed, 1 when not; ``remove`` 1 when it was not.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import asyncpg

from dialer import store
from dialer.lead_import import BadLeadFile, parse_leads


def add_parser(sub: Any) -> None:
    d = sub.add_parser("dialer", help="outbound campaigns: lead lists, the do-not-call list (docs/dialer.md)")
    ds = d.add_subparsers(dest="dialer_command", required=True)
    i = ds.add_parser("import", help="add a CSV lead list (phone[,name,customer_id,tz]) to a campaign")
    i.add_argument("campaign", type=int, help="the campaign's id")
    i.add_argument("file", help="CSV file with a header line")
    i.add_argument("--country", metavar="CODE", help="country calling code for national numbers (e.g. 49)")
    n = ds.add_parser("dnc", help="the do-not-call list").add_subparsers(dest="dnc_command", required=True)
    a = n.add_parser("add", help="put a number on the list")
    a.add_argument("number")
    a.add_argument("--reason", help="why (kept with the entry)")
    n.add_parser("remove", help="take a number off the list").add_argument("number")
    n.add_parser("check", help="is a number on the list? (exit 0: yes, 1: no)").add_argument("number")


async def run(args: argparse.Namespace, dsn: str) -> int:
    if args.dialer_command == "import":
        country = args.country.lstrip("+") if args.country else None
        if country is not None and not (country.isdigit() and 1 <= len(country) <= 3):
            print(f"cti: --country {args.country!r} is not a country calling code (1 to 3 digits)", file=sys.stderr)
            return 2
        try:
            with open(args.file, encoding="utf-8-sig", newline="") as fh:
                valid, rejected = parse_leads(fh.read(), country_code=country)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"cti: cannot read {args.file}: {exc}", file=sys.stderr)
            return 2
        except BadLeadFile as exc:
            print(f"cti: {args.file}: {exc}", file=sys.stderr)
            return 2
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if args.dialer_command == "import":
            try:
                report = await store.import_leads(conn, args.campaign, valid, rejected)
            except store.DialerStoreError as exc:
                print(f"cti: {exc}", file=sys.stderr)
                return 2
            for r in report.rejected:
                print(f"rejected {r}")
            print(f"added {report.created} leads to campaign {args.campaign},"
                  f" rejected {len(report.rejected)} rows of {report.created + len(report.rejected)}")
            return 1 if report.rejected else 0
        try:
            if args.dnc_command == "add":
                phone = await store.add_dnc(conn, args.number, reason=args.reason, added_by="cti dialer dnc")
                print(f"{phone} is on the do-not-call list")
                return 0
            if args.dnc_command == "remove":
                removed = await store.remove_dnc(conn, args.number)
                print(f"{store.normalised(args.number)} {'taken off' if removed else 'was not on'} the do-not-call list")
                return 0 if removed else 1
            listed = await store.is_dnc(conn, args.number)
            print(f"{store.normalised(args.number)} is {'' if listed else 'not '}on the do-not-call list")
            return 0 if listed else 1
        except store.DialerStoreError as exc:
            print(f"cti: {exc}", file=sys.stderr)
            return 2
    finally:
        await conn.close()
