"""Run a module under cProfile timed by CPU, not by the wall clock.

``python -m cProfile`` charges a function with the wall time spent in it: on
a busy machine a ``send`` that wakes another process and is preempted looks
hundreds of microseconds long. With ``time.process_time`` as the timer, the
figures add up to the process's CPU, which is what the load run compares.

    python bench/cpuprofile.py OUT.prof -m server.cli serve

With ``CTI_PROFILE_WINDOW=1`` profiling starts at the first SIGUSR1 and stops at
the next (``bench/load.py --profile`` sends them around each measured step).
"""
from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
import time


def main() -> None:
    out, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: cpuprofile.py OUT.prof -m MODULE [ARGS...]")
    sys.argv = [module, *args]
    prof = cProfile.Profile(time.process_time)
    # SIGTERM ends the daemon through its own handler; if it is not installed yet, exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.environ.get("CTI_PROFILE_WINDOW"):
        # Profile only between two SIGUSR1s (the load run's measuring window).
        on = [False]

        def toggle(*_: object) -> None:
            on[0] = not on[0]
            prof.enable() if on[0] else prof.disable()

        signal.signal(signal.SIGUSR1, toggle)
    else:
        prof.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        prof.disable()
        prof.dump_stats(out)


if __name__ == "__main__":
    main()
