"""Demo and test traffic: simulated callers through the sandbox's demo context.

A simulated caller is an Originate of ``Local/p<patience>@cti-demo-caller/n``
into the inbound entry: the Local channel's ``;1`` half enters ``cti-inbound``
with the caller ID we give; the ``;2`` half waits ``patience`` seconds (the
caller's patience) and hangs up. The demo agents in ``cti-demo-agents`` ring,
answer and talk for the times set by the ``DEMO_*`` globals.

Used by ``cti demo-traffic`` and by the integration tests. Demo only: it needs
the ``cti-demo`` AMI user from ``asterisk-config/demo``.
"""
from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from cti.ami import AmiClient

log = structlog.get_logger(__name__)

DEMO_USER = "cti-demo"
DEMO_SECRET = "cti-demo-secret"


@dataclass(frozen=True, slots=True)
class PlacedCall:
    channel_id: str      # the Uniqueid we asked for: the call's id (Linkedid)
    caller_num: str
    caller_name: str
    did: str


async def set_demo_times(ami: AmiClient, *, ring: tuple[int, int] = (1, 2), talk: tuple[int, int] = (3, 6)) -> None:
    """Set how long demo agents ring and talk (seconds, min and max)."""
    for name, value in (("DEMO_RING_MIN", ring[0]), ("DEMO_RING_MAX", ring[1]),
                        ("DEMO_TALK_MIN", talk[0]), ("DEMO_TALK_MAX", talk[1])):
        await ami.send("Setvar", {"Variable": name, "Value": str(value)}, shape="single")


async def place_call(ami: AmiClient, *, caller_num: str, caller_name: str, did: str = "5000",
                     patience: int = 120, context: str = "cti-inbound",
                     variables: dict[str, str] | None = None, caller_context: str = "cti-demo-caller",
                     id_prefix: str = "demo") -> PlacedCall:
    """Originate one simulated inbound call; returns once Asterisk queued it.

    The caller's channel gets a Uniqueid we choose, so the caller knows the
    call id before any event arrives. An inbound entry (``cti-inbound``,
    ``cti-inbound-curl``) is entered at the DID; ``context="cti-demo-direct"``
    (exten ``s``) skips the IVR; ``variables`` are set on the caller's channel
    (e.g. ``CTI_QUEUE``, ``CTI_SKILLS``, ``CTI_PRIORITY`` for the ACD);
    ``caller_context`` runs the caller's side (``cti-demo-dtmf`` presses keys).
    """
    channel_id = f"{id_prefix}-{uuid.uuid4().hex[:16]}"
    extra: dict[str, Any] = {}
    if variables:
        extra["Variable"] = [f"{k}={v}" for k, v in variables.items()]
    await ami.send("Originate", {
        **extra,
        "Channel": f"Local/p{int(patience)}@{caller_context}/n",
        "Context": context,
        "Exten": did if context.startswith("cti-inbound") else "s",
        "Priority": "1",
        "CallerID": '"{}" <{}>'.format(caller_name.replace("\\", "\\\\").replace('"', '\\"'), caller_num),
        "ChannelId": channel_id,
        "OtherChannelId": channel_id + "-2",
        "Timeout": "30000",
        "Async": "true",
    }, shape="single")
    return PlacedCall(channel_id, caller_num, caller_name, did)


async def run_traffic(ami: AmiClient, *, rate: float, duration: float | None = None,
                      patience: tuple[int, int] = (20, 90), seed: int | None = None) -> int:
    """Place calls at ``rate`` per second (Poisson arrivals) until ``duration`` or cancelled.

    Returns the number of calls placed.
    """
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    end = None if duration is None else loop.time() + duration
    placed = 0
    while end is None or loop.time() < end:
        n = rng.randrange(100_000, 999_999)
        try:
            # Half the callers meet the IVR (DID 5000 routes them to support);
            # the other half arrive with a queue already chosen.
            if rng.random() < 0.5:
                await place_call(ami, caller_num=f"+4930{n}", caller_name=rng.choice(_NAMES),
                                 patience=rng.randint(*patience))
            else:
                await place_call(ami, caller_num=f"+4930{n}", caller_name=rng.choice(_NAMES),
                                 patience=rng.randint(*patience), context="cti-demo-direct",
                                 variables={"CTI_QUEUE": rng.choice(["sales", "sales", "billing", "vip"])})
            placed += 1
        except Exception as exc:  # keep generating; the daemon's job is to cope
            log.warning("demo call not placed", error=str(exc))
        await asyncio.sleep(rng.expovariate(rate))
    return placed


_NAMES = ["Jürgen Müller", "Ana Souza", "Chloé Dubois", "Søren Kierkegaard", "Li Wei",
          "O'Brien, Pat", "Zoë \"Z\" Adams", "Nguyễn Văn An", "Ольга Петрова", "محمد علي"]
