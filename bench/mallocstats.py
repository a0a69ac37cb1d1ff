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
called after each line (to measure what a periodic trim would give back); then pymalloc's
own arenas (``sys._debugmallocstats``, read through a moment's redirect of fd 2): bytes
in arenas, in allocated blocks, and free in them (available blocks and unused pools), the
small objects' side of the same question.
"""
from __future__ import annotations

import ctypes
import os
import re
import runpy
import tempfile
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


def _pymalloc() -> tuple[int, int, int]:
    """(bytes in pymalloc arenas, in allocated blocks, free in available blocks and unused pools)."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")

    def figure(pattern: str) -> int:
        m = re.search(pattern + r"\s*=\s*([\d,]+)", text)
        return int(m.group(1).replace(",", "")) if m else -1

    unused = figure(r"unused pools \* \d+ bytes")
    return (figure(r"arenas \* \d+ bytes/arena"), figure(r"# bytes in allocated blocks"),
            figure(r"# bytes in available blocks") + max(0, unused))


def _sample(out: Path, every: float, trim: bool, stop: threading.Event) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    t0 = time.monotonic()
    with open(out / "malloc.csv", "a", buffering=1) as csv:
        csv.write("t,rss_kb,arena,hblkhd,uordblks,fordblks,keepcost,py_blocks,rss_after_trim_kb,"
                  "pymalloc_arenas,pymalloc_used,pymalloc_free\n")
        while not stop.wait(every):
            m = libc.mallinfo2()
            rss = _rss_kb()
            after = ""
            if trim:
                libc.malloc_trim(0)
                after = str(_rss_kb())
            csv.write(f"{time.monotonic() - t0:.1f},{rss},{m.arena},{m.hblkhd},{m.uordblks},{m.fordblks},"
                      f"{m.keepcost},{sys.getallocatedblocks()},{after},{','.join(map(str, _pymalloc()))}\n")


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
