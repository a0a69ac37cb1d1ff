"""``cti recordings ...``: the retention sweep and QA sampling from the command line.

    cti recordings sweep [--dry-run] [--now ISO]   delete expired recordings; report each one
    cti recordings sample                          put a share of each agent's new recordings up for review

Both read ``recording_config`` (retention days, QA share) and
``recording_read_dir`` (where the files are) like the daemon. The sweep exits
0 when every expired file was deleted or already gone, 1 when some could not be.
"""
from __future__ import annotations

import argparse
import random
from datetime import datetime, timezone
from typing import Any

import asyncpg

from cti.config import Settings
from recording import jobs
from recording.config import load_config
from recording.files import recording_dirs


def add_parser(sub: Any) -> None:
    r = sub.add_parser("recordings", help="call recordings: retention sweep, QA sampling (docs/recording.md)")
    rs = r.add_subparsers(dest="recordings_command", required=True)
    s = rs.add_parser("sweep", help="delete recordings whose retention is over; report each one")
    s.add_argument("--dry-run", action="store_true", help="report what would be deleted, change nothing")
    s.add_argument("--now", type=_when, help="sweep as of this time (ISO 8601; default: now)")
    rs.add_parser("sample", help="sample each agent's new recordings into the review list")


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


async def run(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    config = load_config(settings.recording_config)
    read_dir = recording_dirs(settings)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, timeout=10, command_timeout=60)
    try:
        if args.recordings_command == "sample":
            report = await jobs.sample(pool, config, random.SystemRandom())
            print(f"sampled {report.picked} of {report.considered} new recordings for review "
                  f"(share {config.qa.share:g} per agent)")
            return 0
        now = args.now or datetime.now(timezone.utc)
        sweep = await jobs.sweep(pool, config, read_dir, now, dry_run=args.dry_run)
    finally:
        await pool.close()
    verb = "would delete" if args.dry_run else "deleted"
    for rid, name in sweep.deleted:
        print(f"{verb} {rid} {name}")
    for rid, name in sweep.missing:
        print(f"missing {rid} {name}: the file was not on disk{'' if args.dry_run else '; row marked deleted'}")
    for rid, name, error in sweep.failed:
        print(f"failed {rid} {name}: {error}")
    print(f"checked {sweep.checked}, {verb} {len(sweep.deleted)}, missing {len(sweep.missing)}, "
          f"failed {len(sweep.failed)} (as of {now:%Y-%m-%d %H:%M:%S} UTC)")
    return 1 if sweep.failed else 0
