"""``cti emergency ...``: switches from the command line (docs/emergency.md).

    cti emergency on --scope SCOPE [--value V] --action ACTION [--target T]
                     [--prompt SOUND | --say TEXT] --reason TEXT [--starts ISO] [--ends ISO]
                     [--preset DIGITS] --yes
    cti emergency off ID --reason TEXT --yes
    cti emergency list [--all]
    cti emergency report --since ISO --until ISO

Written to the database; a running daemon puts a change in force at its next
read (``emergency_poll_s``, 1 s by default). ``--yes`` is the confirmation the
web pages ask for. Recorded as declared by ``cli:<OS user>``.
Exit codes: 0 done, 1 refused (bad switch, no such switch), 2 usage.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime
from typing import Any

import asyncpg

from emergency import store
from emergency.prompts import PromptError, speak
from emergency.switches import ACTIONS, SCOPES, SwitchError


def _when(text: str) -> float:
    try:
        v = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date and time: {text!r}") from None
    if v.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. {text}+00:00)")
    return v.timestamp()


def add_parser(sub: Any) -> None:
    em = sub.add_parser("emergency", help="emergency switches (docs/emergency.md)").add_subparsers(
        dest="emergency_command", required=True)
    on = em.add_parser("on", help="declare a switch")
    on.add_argument("--scope", choices=SCOPES, required=True)
    on.add_argument("--value", default="", help="node, queue, DID, number prefix or IVR branch")
    on.add_argument("--action", choices=ACTIONS, required=True)
    on.add_argument("--target", default="", help="queue (queue), number (number), mailbox (voicemail)")
    on.add_argument("--prompt", default="", help="a sound Asterisk has (name or path without extension)")
    on.add_argument("--say", default="", help="announcement text, spoken by espeak-ng")
    on.add_argument("--reason", required=True)
    on.add_argument("--starts", type=_when, help="ISO time with zone (default: now)")
    on.add_argument("--ends", type=_when, help="ISO time with zone (default: until switched off)")
    on.add_argument("--preset", help="digits the phone feature code toggles it by")
    on.add_argument("--yes", action="store_true", help="confirm")
    off = em.add_parser("off", help="switch one off")
    off.add_argument("id", type=int)
    off.add_argument("--reason", required=True)
    off.add_argument("--yes", action="store_true", help="confirm")
    ls = em.add_parser("list", help="switches on or to come (--all: also ended)")
    ls.add_argument("--all", action="store_true")
    rp = em.add_parser("report", help="switches on in a period, calls reached and what happened")
    rp.add_argument("--since", type=_when, required=True)
    rp.add_argument("--until", type=_when, required=True)


def _show(row: Any) -> str:
    d = store.as_dict(row)
    when = f"from {d['starts_at']:%Y-%m-%d %H:%M:%S%z}" + (f" to {d['ends_at']:%Y-%m-%d %H:%M:%S%z}"
                                                           if d["ends_at"] else "")
    ended = f" ENDED {d['ended_at']:%Y-%m-%d %H:%M:%S%z} by {d['ended_by']}" if d["ended_at"] else ""
    scope = d["scope"] + (f" {d['value']}" if d["value"] else "")
    action = d["action"] + (f" {d['target']}" if d["target"] else "")
    return f"{d['id']}\t{scope}\t{action}\t{when}\tby {d['declared_by']}: {d['reason']}{ended}"


async def run(args: argparse.Namespace, settings: Any, dsn: str) -> int:
    cmd = args.emergency_command
    if cmd in ("on", "off") and not args.yes:
        print(f"cti emergency {cmd}: add --yes to confirm", file=sys.stderr)
        return 2
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        by = f"cli:{getpass.getuser()}"
        if cmd == "on":
            prompt = args.prompt
            if args.say:
                try:
                    prompt = await speak(args.say, settings.emergency_prompt_dir)
                except PromptError as exc:
                    print(f"cti emergency on: {exc}", file=sys.stderr)
                    return 1
            try:
                row = await store.declare(conn, scope=args.scope, value=args.value, action=args.action,
                                          target=args.target, prompt=prompt, reason=args.reason, by=by,
                                          starts_at=args.starts, ends_at=args.ends, announcement=args.say,
                                          preset=args.preset)
            except (SwitchError, asyncpg.CheckViolationError) as exc:
                print(f"cti emergency on: {exc}", file=sys.stderr)
                return 1
            print(_show(row))
        elif cmd == "off":
            row = await store.end(conn, args.id, by=by, reason=args.reason)
            if row is None:
                print(f"cti emergency off: no switch {args.id} is on", file=sys.stderr)
                return 1
            print(_show(row))
        elif cmd == "list":
            for row in await store.listing(conn, include_ended=args.all):
                print(_show(row))
        else:
            for r in await store.report(conn, since=args.since, until=args.until):
                print(json.dumps(r, default=str))
        return 0
    finally:
        await conn.close()
