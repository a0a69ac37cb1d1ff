"""The recording jobs: the retention sweep and QA sampling.

Run by the daemon every ``recording_sweep_every`` seconds and by
``cti recordings sweep|sample``. The decisions are pure
(``recording.policy.expired``, ``recording.policy.sample``); this module reads
the candidates, carries the decisions out and reports what it did.

The sweep deletes each expired file, then marks its row ``deleted`` (the row
stays: who, when, how long, checksum). A file already gone is reported as
missing and its row marked all the same; a file that cannot be deleted is
reported as failed and its row left as it was, to be tried again next time.
"""
from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from recording import recording_db as rec_db
from recording.files import RecordingDirs, resolve
from recording.policy import RecordingConfig, expired, retention_days, sample as pick_sample

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class SweepReport:
    checked: int = 0
    deleted: list[tuple[int, str]] = field(default_factory=list)
    missing: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {"checked": self.checked, "deleted": len(self.deleted), "missing": len(self.missing),
                "failed": len(self.failed)}


@dataclass(frozen=True, slots=True)
class SampleReport:
    considered: int
    picked: int


async def sweep(pool: Any, config: RecordingConfig, read_dir: Path | RecordingDirs, now: datetime,
                dry_run: bool = False) -> SweepReport:
    """Delete the recordings whose retention is over at ``now``; report each one."""
    shortest = min([retention_days(config, None)] + [retention_days(config, q) for q in config.queues])
    candidates = await rec_db.kept_before(pool, now - timedelta(days=shortest))
    report = SweepReport(checked=len(candidates))
    by_id = {r["recording_id"]: r for r in candidates}
    for rid in expired(config, ((r["recording_id"], r["queue"], r["started_at"]) for r in candidates), now):
        name = by_id[rid]["file_name"]
        try:
            path = resolve(read_dir, name)
        except ValueError as exc:
            report.failed.append((rid, name, str(exc)))
            continue
        if dry_run:
            (report.deleted if path.exists() else report.missing).append((rid, name))
            continue
        try:
            await asyncio.to_thread(os.unlink, path)
            note = None
            report.deleted.append((rid, name))
        except FileNotFoundError:
            note = "file missing at the retention sweep"
            report.missing.append((rid, name))
            log.warning("recording file missing at sweep", recording_id=rid, file=name)
        except OSError as exc:
            report.failed.append((rid, name, str(exc)))
            log.error("recording file not deleted", recording_id=rid, file=name, error=str(exc))
            continue
        await rec_db.mark_deleted(pool, rid, now, note)
    return report


async def sample(pool: asyncpg.Pool, config: RecordingConfig, rng: random.Random) -> SampleReport:
    """Put a share of each agent's new saved recordings on the review list."""
    rows = await rec_db.unsampled(pool)
    if not rows:
        return SampleReport(0, 0)
    picked = pick_sample(((r["agent"], r["recording_id"]) for r in rows), config.qa.share, rng)
    async with pool.acquire() as conn:
        added = await rec_db.record_sample(conn, [r["recording_id"] for r in rows], picked)
    return SampleReport(len(rows), added)
