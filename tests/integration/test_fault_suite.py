"""The fault suite's short version (bench/faults.py, docs/faults.md): each fault under
continuous traffic, the daemon a real process; afterwards every call Asterisk created
is in the database once, closed, in order, and each scenario's own checks hold."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import SHORT, run_scenario


@pytest.mark.parametrize("scenario", ["asterisk", "daemon", "pg", "storm"])
async def test_fault_under_load_loses_nothing(scenario: str, asterisk: None, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # the embedded PostgreSQL runs as another user when we are root
    outcome = await run_scenario(scenario, SHORT, tmp_path)
    print(outcome.render())
    assert outcome.report is not None and outcome.report.placed > 0
    assert outcome.ok, "\n".join(outcome.failures())
