"""Run a module and note, at intervals, what glibc's malloc holds beside RSS.

When RSS grows and the Python heap (``tracemalloc``, ``bench/memtrace.py``) does not, the
difference is in the allocators: memory malloc keeps free inside its heaps (fragmentation,
``fordblks``), pymalloc arenas kept for a few live objects, or allocations outside
Python. ``mallinfo2`` (glibc 2.33+) tells the first apart, cheaply, without tracing.

    python bench/mallocstats.py DIR EVERY_S [--trim] -m cti.cli serve

Writes ``DIR/malloc.csv``: seconds since start, VmRSS (KiB), malloc's ``arena`` (bytes in
its heaps, from the system), ``hblkhd`` (in mmapped blocks), ``uordblks`` (in use),
``fordblks`` (free in the heaps), ``keepcost`` (releasable at the top), Python's allocated
blocks (``sys.getallocatedblocks``), and with ``--trim`` VmRSS after ``malloc_trim(0)``,
called after each line (to measure what a periodic trim would give back).
"""
from __future__ import annotations

import ctypes
import runpy
import signal
import sys
import threading
import time
from pathlib import Path


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _sample(out: Path, every: float, trim: bool, stop: threading.Event) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    t0 = time.monotonic()
    with open(out / "malloc.csv", "a", buffering=1) as csv:
        csv.write("t,rss_kb,arena,hblkhd,uordblks,fordblks,keepcost,py_blocks,rss_after_trim_kb\n")
        while not stop.wait(every):
            m = libc.mallinfo2()
            rss = _rss_kb()
            after = ""
            if trim:
                libc.malloc_trim(0)
                after = str(_rss_kb())
            csv.write(f"{time.monotonic() - t0:.1f},{rss},{m.arena},{m.hblkhd},{m.uordblks},{m.fordblks},"
                      f"{m.keepcost},{sys.getallocatedblocks()},{after}\n")


def main() -> None:
    args = sys.argv[1:]
    trim = "--trim" in args
    if trim:
        args.remove("--trim")
    out, every, flag, module, *rest = args
    if flag != "-m":
        raise SystemExit("usage: mallocstats.py DIR EVERY_S [--trim] -m MODULE [ARGS...]")
    Path(out).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    threading.Thread(target=_sample, args=(Path(out), float(every), trim, stop), daemon=True,
                     name="mallocstats").start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
