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

Under jemalloc (``LD_PRELOAD=.../libjemalloc.so.2``) glibc's ``mallinfo2`` says nothing; the
same lines then also carry jemalloc's own figures (read through ``mallctl`` after an
``epoch`` refresh): ``stats.allocated`` (bytes the program holds through malloc: every C
extension's and Python's large objects), ``stats.active`` (pages those sit on),
``stats.resident`` (what jemalloc keeps in RAM: active, its dirty pages not yet purged, its
metadata) and ``stats.retained`` (virtual memory kept unmapped, not RSS). When ``allocated``
is level and ``resident`` climbs, the allocator keeps pages; when ``allocated`` climbs,
something holds more; RSS minus ``resident`` minus pymalloc's arenas is the rest (code,
thread stacks, mappings outside malloc). Empty columns when jemalloc is not loaded.
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


JEMALLOC_STATS = ("allocated", "active", "resident", "mapped", "retained")


class _Jemalloc:
    """jemalloc's statistics, when it is the process's malloc (``LD_PRELOAD``); else ``None`` figures."""

    def __init__(self) -> None:
        try:
            self._mallctl = ctypes.CDLL(None).mallctl
        except (AttributeError, OSError):
            self._mallctl = None
            return
        self._mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                  ctypes.c_void_p, ctypes.c_size_t]
        self._mallctl.restype = ctypes.c_int

    def figures(self) -> tuple[int | None, ...]:
        if self._mallctl is None:
            return tuple(None for _ in JEMALLOC_STATS)
        epoch = ctypes.c_uint64(1)
        size = ctypes.c_size_t(ctypes.sizeof(epoch))
        self._mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), ctypes.sizeof(epoch))
        out: list[int | None] = []
        for name in JEMALLOC_STATS:
            value = ctypes.c_size_t(0)
            size = ctypes.c_size_t(ctypes.sizeof(value))
            rc = self._mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0)
            out.append(value.value if rc == 0 else None)
        return tuple(out)


def _sample(out: Path, every: float, trim: bool, stop: threading.Event) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    jemalloc = _Jemalloc()
    t0 = time.monotonic()
    with open(out / "malloc.csv", "a", buffering=1) as csv:
        csv.write("t,rss_kb,arena,hblkhd,uordblks,fordblks,keepcost,py_blocks,rss_after_trim_kb,"
                  "pymalloc_arenas,pymalloc_used,pymalloc_free,"
                  + ",".join(f"je_{name}" for name in JEMALLOC_STATS) + "\n")
        while not stop.wait(every):
            m = libc.mallinfo2()
            rss = _rss_kb()
            after = ""
            if trim:
                libc.malloc_trim(0)
                after = str(_rss_kb())
            csv.write(f"{time.monotonic() - t0:.1f},{rss},{m.arena},{m.hblkhd},{m.uordblks},{m.fordblks},"
                      f"{m.keepcost},{sys.getallocatedblocks()},{after},{','.join(map(str, _pymalloc()))},"
                      + ",".join("" if v is None else str(v) for v in jemalloc.figures()) + "\n")


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
