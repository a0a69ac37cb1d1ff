"""The load run's call generator: simulated callers placed into the sandbox at Poisson
arrivals (``cti.demo``: Originate of Local channels), a share of them through the IVR
pressing keys (``cti-demo-dtmf``), a share with a short patience (they abandon).
"""
from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass

from cti.ami import AmiClient
from cti.demo import place_call

QUEUES = ("sales", "support", "billing")
IVR_DID = "7001"
CALL_ID = re.compile(r"^l[dv]-[0-9a-f]{16}$")       # the callers this harness places


@dataclass
class Mix:
    ivr_share: float = 0.3
    abandon_share: float = 0.1
    patience: tuple[int, int] = (120, 180)     # callers who wait for an agent
    abandon_patience: tuple[int, int] = (2, 6)  # callers who give up
    callback_share: float = 0.0                 # of the IVR's callers, those asking to be called back (key 4)


async def place_one(ami: AmiClient, rng: random.Random, mix: Mix, n: int) -> None:
    abandon = rng.random() < mix.abandon_share
    patience = rng.randint(*(mix.abandon_patience if abandon else mix.patience))
    number = f"+4930{rng.randrange(1_000_000, 9_999_999)}"
    name = f"Load {n}"
    if rng.random() < mix.ivr_share:
        key = rng.choice("123")
        if mix.callback_share and rng.random() < mix.callback_share:
            key = "4"
        await place_call(ami, caller_num=number, caller_name=name, did=IVR_DID, patience=patience,
                         variables={"__DIGITS": "W" + key}, caller_context="cti-demo-dtmf", id_prefix="lv")
    else:
        await place_call(ami, caller_num=number, caller_name=name, patience=patience, context="cti-demo-direct",
                         variables={"CTI_QUEUE": rng.choice(QUEUES)}, id_prefix="ld")


async def _placed(ami: AmiClient, rng: random.Random, mix: Mix, counter: list[int]) -> None:
    """Place one call; an Originate Asterisk refuses or does not answer in time is counted
    (``counter[1]``): a sign the sandbox is saturated, never a reason to stop."""
    try:
        await place_one(ami, rng, mix, counter[0])
    except Exception:
        counter[1] += 1


async def traffic(ami: AmiClient, rng: random.Random, mix: Mix, rate: float, duration: float,
                  counter: list[int]) -> int:
    """Poisson arrivals at ``rate`` for ``duration`` seconds (scheduled on the clock,
    so a slow Originate does not lower the rate). Returns the calls placed."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    due = start
    placed = 0
    pending: set[asyncio.Task[None]] = set()
    while True:
        due += rng.expovariate(rate)
        if due - start >= duration:
            break
        await asyncio.sleep(max(0.0, due - loop.time()))
        counter[0] += 1
        t = asyncio.create_task(_placed(ami, rng, mix, counter))
        pending.add(t)
        t.add_done_callback(pending.discard)
        placed += 1
    await asyncio.gather(*pending, return_exceptions=True)
    return placed
