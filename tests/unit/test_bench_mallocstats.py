"""bench/mallocstats.py: the allocator's figures beside RSS, glibc's or jemalloc's."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")

# 20 MB held through malloc (bytearray's buffer) while the sampler writes a few lines.
HOLDER = textwrap.dedent("""
    import time
    held = [bytearray(100_000) for _ in range(200)]
    time.sleep(0.8)
""")


def _run(tmp_path: Path, env_extra: dict[str, str]) -> list[dict[str, str]]:
    (tmp_path / "holder.py").write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), **env_extra}
    subprocess.run([sys.executable, str(ROOT / "bench" / "mallocstats.py"), str(tmp_path / "out"), "0.2",
                    "-m", "holder"], env=env, check=True, timeout=60)
    with open(tmp_path / "out" / "malloc.csv") as f:
        return list(csv.DictReader(f))


def test_glibc_figures_and_no_jemalloc_columns_without_it(tmp_path: Path) -> None:
    rows = _run(tmp_path, {})
    assert rows
    last = rows[-1]
    assert int(last["uordblks"]) >= 20_000_000          # the 20 MB held, in glibc's bytes in use
    assert last["je_allocated"] == "" and last["je_resident"] == ""


@pytest.mark.skipif(not JEMALLOC.exists(), reason="libjemalloc2 is not installed")
def test_jemalloc_figures_when_it_is_preloaded(tmp_path: Path) -> None:
    rows = _run(tmp_path, {"LD_PRELOAD": str(JEMALLOC)})
    assert rows
    last = rows[-1]
    allocated, active, resident = (int(last[f"je_{k}"]) for k in ("allocated", "active", "resident"))
    assert allocated >= 20_000_000                      # the 20 MB held, now jemalloc's
    assert active >= allocated and resident >= active
    assert int(last["uordblks"]) < 1_000_000            # glibc's malloc holds nothing of it
