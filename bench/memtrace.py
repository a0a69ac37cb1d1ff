"""Run a module under ``tracemalloc`` and snapshot its Python heap at intervals.

RSS says that memory grew; a comparison of two heap snapshots says where. A
soak that ends "growing" is only useful with the second.

    python bench/memtrace.py DIR EVERY_S FRAMES -m server.cli serve
    python bench/memtrace.py compare DIR [TOP]

The first form writes ``DIR/snap-NNN.pickle`` every EVERY_S seconds (from a
thread: each snapshot holds the interpreter for a moment, well under a second
for the daemon's heap) and a line per snapshot to ``DIR/traced.csv``: seconds
since start, the traced heap now and its peak, in bytes. The second compares
the snapshot at the middle of the run with the last one (the first half warms
up, as in ``bench/load.py``'s soak verdict) and prints where the heap grew,
grouped by the allocating traceback.
"""
from __future__ import annotations

import json
import runpy
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

# Frames of tracemalloc and of this file are not the program's memory.
_IGNORE = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__))


def _snapshots(out: Path, every: float, stop: threading.Event) -> None:
    t0 = time.monotonic()
    n = 0
    with open(out / "traced.csv", "a", buffering=1) as csv:
        csv.write("t,traced,peak\n")
        while not stop.wait(every):
            snap = tracemalloc.take_snapshot().filter_traces(_IGNORE)
            snap.dump(str(out / f"snap-{n:03d}.pickle"))
            now, peak = tracemalloc.get_traced_memory()
            csv.write(f"{time.monotonic() - t0:.1f},{now},{peak}\n")
            n += 1


def run(out: Path, every: float, frames: int, module: str, args: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(frames)
    stop = threading.Event()
    snapper = threading.Thread(target=_snapshots, args=(out, every, stop), daemon=True, name="memtrace")
    snapper.start()
    # SIGTERM ends the daemon through its own handler; if it is not installed yet, exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        stop.set()
        # A snapshot being written as the program ends gets its line in traced.csv too
        # (compare counts the pickles; the CSV must name each of them).
        snapper.join(timeout=30)


def compare(out: Path, top: int = 12) -> dict[str, Any]:
    """Where the heap grew between the middle snapshot and the last."""
    snaps = sorted(out.glob("snap-*.pickle"))
    if len(snaps) < 2:
        return {"snapshots": len(snaps), "growth": []}
    first, last = snaps[len(snaps) // 2], snaps[-1]
    a, b = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(last))
    stats = b.compare_to(a, "traceback")
    total = sum(s.size_diff for s in stats)
    growth = []
    for s in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:top]:
        growth.append({"kib": round(s.size_diff / 1024, 1), "blocks": s.count_diff,
                       "where": [f"{f.filename.rsplit('/site-packages/', 1)[-1]}:{f.lineno}"
                                 for f in s.traceback]})
    return {"snapshots": len(snaps), "from": first.name, "to": last.name,
            "net_kib": round(total / 1024, 1), "growth": growth}


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        print(json.dumps(compare(Path(sys.argv[2]), *(int(x) for x in sys.argv[3:4])), indent=1))
        return
    out, every, frames, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: memtrace.py DIR EVERY_S FRAMES -m MODULE [ARGS...] | memtrace.py compare DIR [TOP]")
    run(Path(out), float(every), int(frames), module, args)


if __name__ == "__main__":
    main()
