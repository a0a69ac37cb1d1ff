"""The ACD's AMI actions, written the moment they are decided (``AmiClient.submit``:
Asterisk runs one session's actions in order, so none waits for an earlier
one's reply); each reply is seen to by a callback on its future."""
from __future__ import annotations

import asyncio
from typing import Any

import structlog

from acd.epoch import EPOCH_GLOBAL
from cti.errors import AmiError

log = structlog.get_logger(__name__)


def submit(ami: Any, action: str, headers: dict[str, Any]) -> asyncio.Future[Any]:
    """Write ``action`` now and return its reply's future.
    One that cannot be written (no connection) comes back already failed, so
    a failure is always handled after the decision that caused it, never
    inside it."""
    try:
        return ami.submit(action, headers, shape="single")
    except AmiError as exc:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_exception(exc)
        return fut


def failure(fut: asyncio.Future[Any]) -> BaseException | None:
    """The future's error (None: it succeeded; cancelled counts as an error)."""
    if fut.cancelled():
        return asyncio.CancelledError()
    return fut.exception()


def submit_all(ami: Any, actions: list[tuple[str, dict[str, Any]]]) -> asyncio.Future[Any]:
    """Write ``actions`` now, in order (one AMI session runs them in that order);
    one future for all their replies (failed if any failed)."""
    return asyncio.gather(*(submit(ami, name, headers) for name, headers in actions))


def setvar(ami: Any, channel: str, name: str, value: str) -> None:
    """Set a channel variable; a failure is logged."""
    fut = submit(ami, "Setvar", {"Channel": channel, "Variable": name, "Value": value})

    def done(f: asyncio.Future[Any]) -> None:
        exc = failure(f)
        if exc is not None:
            log.warning("setvar failed", channel=channel, variable=name, error=str(exc))

    fut.add_done_callback(done)


async def heartbeat_in_force(ami: Any) -> str:
    """The heartbeat global the dialplan reads now: the one of the epoch Asterisk
    holds (``CTI_ACD_HEARTBEAT_`` alone while it holds none). For tools and tests
    that stand in for the ACD, or send callers to the fallback, without leading."""
    reply = await ami.send("Getvar", {"Variable": EPOCH_GLOBAL}, shape="single")
    return f"CTI_ACD_HEARTBEAT_{reply.response.headers.get('Value') or ''}"
