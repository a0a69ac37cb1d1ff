"""The ACD's timer task stops when cancelled, whenever the cancel comes (no Asterisk)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from acd.routing_shell import AcdService
from cti.daemon import Core
from tests.unit.test_bus_order import CONFIG


async def test_the_timer_task_ends_on_cancel_even_right_after_a_wake_up():
    """On Python 3.11 ``wait_for`` swallowed a cancel that came while the wake-up was
    being delivered: the task ran on and ``AcdService.stop`` waited for it forever."""
    settings = SimpleNamespace(acd_default_queue="billing", acd_announce_every=0)
    for turns in range(8):      # every point of the wake-up's delivery, one loop turn apart
        service = AcdService(Core(settings), CONFIG)  # type: ignore[arg-type]
        task = asyncio.create_task(service._run_timers())
        for _ in range(3):
            await asyncio.sleep(0)          # now waiting for a wake-up
        service._wake.set()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        assert task in done and task.cancelled(), f"still running after a cancel {turns} turns after the wake-up"
