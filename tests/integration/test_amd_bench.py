"""The AMD bench through the sandbox (bench/amd_greetings.py): greetings of people and of
answering machines, made with espeak-ng, answered on calls into the dialer's own context;
every call gets AMD's verdict; with CTI_BENCH_RESULTS=1 the figures are written to bench/results/
for BENCHMARKS.md ("Dialer: AMD's false positives")."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path

from bench.amd_greetings import as_rows, make, run, summarise
from tests.integration.conftest import hangup_all

SANDBOX_ROOT = Path(os.environ.get("CTI_SANDBOX_ROOT", "/var/cache/cti/asterisk-root"))
SOUNDS = "/var/lib/asterisk/sounds/amd-bench"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


async def test_amd_verdicts_on_spoken_greetings(asterisk, demo_ami):
    hangup_all()
    samples = await make(str(SANDBOX_ROOT / SOUNDS.lstrip("/")), SOUNDS)
    try:
        verdicts = await run(demo_ami, samples, concurrency=6)
    finally:
        hangup_all()
    summary = summarise(verdicts)
    # The figures go to bench/results/ only when asked (CTI_BENCH_RESULTS=1, as for BENCHMARKS.md):
    # a test run leaves the checkout as it found it.
    if os.environ.get("CTI_BENCH_RESULTS") == "1":
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=RESULTS.parent.parent).stdout.strip() or "unknown"
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"amd-{date.today().isoformat()}-{commit}.json"
        out.write_text(json.dumps({"summary": summary, "verdicts": as_rows(verdicts)}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "by_greeting"}, indent=1))
    # Every call answered and judged: a call AMD never judged would be a broken bench, not a figure.
    assert summary["no_verdict"] == 0, [v for v in verdicts if v.status is None]
    assert summary["people"] == 30 and summary["machines"] == 21
    # The long machine messages (several seconds of speech) are machines to any AMD setting.
    long_ones = [v for v in verdicts if v.kind == "machine" and v.label in ("family, leave a message",
                                                                          "not available", "office closed")]
    assert all(v.status == "MACHINE" for v in long_ones), long_ones
