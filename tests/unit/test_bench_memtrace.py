"""bench/memtrace.py: a program whose heap grows in one place is caught in that place."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import memtrace

ROOT = Path(__file__).resolve().parents[2]

LEAKY = """
import os, pathlib, time
kept = []
def leak():
    kept.append(bytearray(20_000))   # the line the comparison must name
# Until five snapshots are written (not for a fixed time: a loaded machine may
# start the interpreter late and take fewer snapshots in a given second).
snaps, t_end = pathlib.Path(os.environ["LEAKY_SNAPS"]), time.monotonic() + 25
while time.monotonic() < t_end and len(list(snaps.glob("snap-*.pickle"))) < 5:
    leak()
    steady = [bytes(100) for _ in range(50)]   # allocated and freed every turn: no growth
    time.sleep(0.01)
"""


def test_a_growing_heap_is_traced_to_its_line(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(LEAKY)
    out = tmp_path / "snaps"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "LEAKY_SNAPS": str(out)}
    subprocess.run([sys.executable, str(ROOT / "bench" / "memtrace.py"), str(out), "0.3", "4", "-m", "leaky"],
                   env=env, check=True, timeout=60)
    rows = (out / "traced.csv").read_text().splitlines()
    assert rows[0] == "t,traced,peak" and len(rows) >= 4
    traced = [int(r.split(",")[1]) for r in rows[1:]]
    assert traced[-1] > traced[0] + 20_000 * 10          # the list kept growing between snapshots
    report = memtrace.compare(out, top=3)
    assert report["snapshots"] == len(rows) - 1
    top = report["growth"][0]
    assert any(w.endswith("leaky.py:5") for w in top["where"]), top
    assert top["kib"] > 100 and report["net_kib"] > 100


def test_fewer_than_two_snapshots_compare_to_nothing(tmp_path: Path) -> None:
    assert memtrace.compare(tmp_path) == {"snapshots": 0, "growth": []}
