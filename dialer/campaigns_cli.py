"""``cti campaigns ...``: campaigns from the command line (docs/dialer.md, "Command line").

    cti campaigns list
    cti campaigns create NAME [--mode M] [--queue Q] [--caller-id +E164] [--cap 0.03]
                         [--ring SECONDS] [--machine retry|voicemail] [--rules FILE.json]
                         [--source csv|tickets_callback|tickets_visit]
    cti campaigns start|pause|stop ID
    cti campaigns sync ID                        bring a live list's leads in step with the tickets now
    cti campaigns rules ID [--set FILE.json]     print (or set) its calling window and retry rules
    cti campaigns export ID [--out FILE.csv]     its attempts and results as CSV (stdout by default)
    cti campaigns reserve ID [--agents N] [--service-level] [--arrivals-min M] [--none]
                                                 print (or set) its reserve of agents for inbound

A rules file is JSON ``{"windows": {...}, "retry": {...}}`` as the API takes it (either
may be null or left out: the defaults). Exit 0 done, 1 no such campaign, 2 bad input
(the message names the field) or a name already taken.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import aclosing
from datetime import datetime, timezone
from typing import Any, TextIO

import asyncpg

from dialer import campaign_store, live_store, store
from dialer.live_lists import SOURCES, is_live
from dialer.blending import InvalidReserve, reserve_from_json, reserve_to_json
from dialer.board import result_lines
from dialer.campaign_rules import rules_from_json, rules_to_json, window_from_json, window_to_json
from dialer.leads import InvalidRule
from dialer.windows import InvalidWindow

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
STATES = {"start": "running", "pause": "paused", "stop": "stopped"}


def add_parser(sub: Any) -> None:
    c = sub.add_parser("campaigns", help="outbound campaigns: create, list, start, pause, stop, export (docs/dialer.md)")
    cs = c.add_subparsers(dest="campaigns_command", required=True)
    cs.add_parser("list", help="every campaign with its leads by state")
    n = cs.add_parser("create", help="a new campaign (stopped)")
    n.add_argument("name")
    n.add_argument("--mode", choices=("preview", "progressive", "predictive"), default="preview")
    n.add_argument("--queue", help="the ACD queue whose agents work it")
    n.add_argument("--caller-id", help="the number shown to the called party (E.164)")
    n.add_argument("--cap", type=float, default=0.03, help="abandonment cap, at most 0.03 (default)")
    n.add_argument("--ring", type=int, default=25, help="seconds to ring before no answer (15 to 120)")
    n.add_argument("--machine", choices=("retry", "voicemail"), default="retry")
    n.add_argument("--rules", metavar="FILE", help='JSON {"windows": ..., "retry": ...}')
    n.add_argument("--source", choices=SOURCES, default="csv",
                   help="where its leads come from: csv (imported lists, the default) or a live list of tickets:"
                        " tickets_callback (awaiting the confirmation callback), tickets_visit (a visit to"
                        " arrange again)")
    cs.add_parser("sync", help="bring a live list's leads in step with the tickets now (idempotent)") \
        .add_argument("id", type=int)
    for verb, what in (("start", "start dialing (running)"), ("pause", "pause"), ("stop", "stop")):
        cs.add_parser(verb, help=what).add_argument("id", type=int)
    r = cs.add_parser("rules", help="print a campaign's window and retry rules, or --set them from a file")
    r.add_argument("id", type=int)
    r.add_argument("--set", metavar="FILE", help='JSON {"windows": ..., "retry": ...} (null: the defaults)')
    v = cs.add_parser("reserve", help="print a campaign's reserve of agents for inbound, or set it (docs/dialer.md,"
                                      " \"Blending\"): the options given, the others' defaults")
    v.add_argument("id", type=int)
    v.add_argument("--agents", type=int, help="free agents always kept for the inbound queues (0 to 500)")
    v.add_argument("--service-level", action="store_true",
                   help="also keep what Erlang C says the inbound queues need for their service level")
    v.add_argument("--arrivals-min", type=int, help="the arrival rate is measured over this many minutes (1 to 240)")
    v.add_argument("--none", action="store_true", help="no reserve of its own")
    e = cs.add_parser("export", help="a campaign's attempts and results as CSV")
    e.add_argument("id", type=int)
    e.add_argument("--out", metavar="FILE", help="write here (default: standard output)")


class BadInput(ValueError):
    pass


def read_rules(path: str, *, ring_s: int, machine_action: str) -> tuple[dict | None, dict | None]:
    """A rules file checked and made canonical: (windows, retry), None each for the defaults.
    Raises ``BadInput`` naming the file and the field."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from None
    if not isinstance(obj, dict) or set(obj) - {"windows", "retry"}:
        raise BadInput(f'{path}: an object {{"windows": ..., "retry": ...}}')
    try:
        w = obj.get("windows")
        r = obj.get("retry")
        return (None if w is None else window_to_json(window_from_json(w)),
                None if r is None else rules_to_json(rules_from_json(r, ring_s=ring_s,
                                                                     machine_voicemail=machine_action == "voicemail")))
    except (InvalidWindow, InvalidRule) as exc:
        raise BadInput(f"{path}: {exc}") from None


def reserve_of(args: argparse.Namespace) -> tuple[bool, dict | None]:
    """(whether ``cti campaigns reserve`` sets something, the reserve to store: None for none).
    Raises ``BadInput`` naming the option."""
    given = {k: v for k, v in (("agents", args.agents), ("arrivals_min", args.arrivals_min)) if v is not None}
    if args.service_level:
        given["service_level"] = True
    if args.none:
        if given:
            raise BadInput("--none: alone (no reserve of its own)")
        return True, None
    if not given:
        return False, None
    try:
        return True, reserve_to_json(reserve_from_json(given))
    except InvalidReserve as exc:
        raise BadInput("--" + exc.field.split(".")[-1].replace("_", "-") + ": " + str(exc).split(": ", 1)[-1]) \
            from None


def _print_sync(r: live_store.SyncReport, out: TextIO) -> None:
    print(f"campaign {r.campaign_id} ({r.source}): {r.on_list} tickets on the list, {len(r.added)} leads added,"
          f" {len(r.withdrawn)} withdrawn", file=out)
    for what, ids in (("no number", r.no_phone), ("no time zone for the number", r.no_zone)):
        if ids:
            print(f"# {what}: tickets {', '.join(map(str, ids))}", file=out)


def _print_list(rows: list[dict], out: TextIO) -> None:
    print(f"{'id':>5}  {'name':<30} {'mode':<12} {'state':<8} {'queue':<12} leads", file=out)
    for c in rows:
        leads = ", ".join(f"{k} {v}" for k, v in sorted(c["leads"].items())) or "none"
        print(f"{c['campaign_id']:>5}  {c['name'][:30]:<30} {c['mode']:<12} {c['state']:<8} "
              f"{(c['queue'] or '-')[:12]:<12} {leads}", file=out)


async def run(args: argparse.Namespace, dsn: str) -> int:
    cmd = args.campaigns_command
    try:
        if cmd == "create":
            if args.caller_id is not None and not E164.match(args.caller_id):
                raise BadInput(f"--caller-id {args.caller_id!r}: a number in E.164 (+ and digits)")
            if not 0.001 <= args.cap <= 0.03:
                raise BadInput("--cap: from 0.001 to 0.03 (the law's 3%)")
            if not 15 <= args.ring <= 120:
                raise BadInput("--ring: from 15 to 120 seconds (the law: 15 s at least)")
            if not 1 <= len(args.name) <= 100:
                raise BadInput("name: 1 to 100 characters")
            windows, retry = (read_rules(args.rules, ring_s=args.ring, machine_action=args.machine)
                              if args.rules else (None, None))
        if cmd == "reserve":
            setting, reserve = reserve_of(args)
    except BadInput as exc:
        print(f"cti: {exc}", file=sys.stderr)
        return 2
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if cmd == "list":
            _print_list(await store.list_campaigns(conn), sys.stdout)
            return 0
        if cmd == "create":
            try:
                cid = await store.create_campaign(conn, args.name, mode=args.mode, caller_id=args.caller_id,
                                                  queue=args.queue, abandon_cap=args.cap,
                                                  machine_action=args.machine, ring_s=args.ring,
                                                  windows=windows, retry=retry, source=args.source)
            except asyncpg.UniqueViolationError:
                print(f"cti: a campaign is already called {args.name!r}", file=sys.stderr)
                return 2
            except asyncpg.CheckViolationError as exc:
                print(f"cti: refused: {exc.constraint_name or exc}", file=sys.stderr)
                return 2
            print(f"campaign {cid} created ({args.mode}, stopped)")
            if is_live(args.source):
                _print_sync(await live_store.sync_campaign(conn, cid, datetime.now(timezone.utc)), sys.stdout)
            return 0
        if cmd == "sync":
            try:
                report = await live_store.sync_campaign(conn, args.id, datetime.now(timezone.utc))
            except live_store.NotLive as exc:
                print(f"cti: {exc}", file=sys.stderr)
                return 1 if str(exc).startswith("no campaign") else 2
            _print_sync(report, sys.stdout)
            return 0
        if cmd in STATES:
            if not await store.set_campaign_state(conn, args.id, STATES[cmd]):
                print(f"cti: no campaign {args.id}", file=sys.stderr)
                return 1
            print(f"campaign {args.id} {STATES[cmd]}")
            return 0
        if cmd == "rules":
            stored = await campaign_store.get_rules(conn, args.id)
            if stored is None:
                print(f"cti: no campaign {args.id}", file=sys.stderr)
                return 1
            if args.set:
                try:
                    windows, retry = read_rules(args.set, ring_s=stored["ring_s"],
                                                machine_action=stored["machine_action"])
                except BadInput as exc:
                    print(f"cti: {exc}", file=sys.stderr)
                    return 2
                await campaign_store.set_rules(conn, args.id, windows, retry)
                stored = dict(stored, windows=windows, retry=retry)
            print(json.dumps({"windows": window_to_json(window_from_json(stored["windows"])),
                              "retry": rules_to_json(rules_from_json(stored["retry"], ring_s=stored["ring_s"])),
                              "own_windows": stored["windows"] is not None, "own_retry": stored["retry"] is not None},
                             indent=2))
            return 0
        if cmd == "reserve":
            found, stored = await campaign_store.get_reserve(conn, args.id)
            if not found:
                print(f"cti: no campaign {args.id}", file=sys.stderr)
                return 1
            if setting:
                await campaign_store.set_reserve(conn, args.id, reserve)
                stored = reserve
            print(json.dumps({"reserve": reserve_to_json(reserve_from_json(stored)), "own_reserve": stored is not None},
                             indent=2))
            return 0
        # export
        survey = await campaign_store.survey_ids(conn, args.id)
        if survey is None:
            print(f"cti: no campaign {args.id}", file=sys.stderr)
            return 1
        out = open(args.out, "w", encoding="utf-8", newline="") if args.out else sys.stdout
        try:
            out.write(result_lines([], survey, header=True))
            n = 0
            async with aclosing(campaign_store.results(conn, args.id)) as batches:
                async for batch in batches:
                    out.write(result_lines(batch, survey, header=False))
                    n += len(batch)
        finally:
            if args.out:
                out.close()
        if args.out:
            print(f"{n} attempts written to {args.out}")
        return 0
    finally:
        await conn.close()
