"""An AMI client stand-in for pure shell tests: what the ACD writes, without a socket."""
from __future__ import annotations

import asyncio
from typing import Any

from cti.errors import AmiNotConnected


class WireAmi:
    """``submit`` records each action as written (the moment it is called); replies
    are futures the test settles. ``down`` makes every write refuse as with no connection."""

    def __init__(self) -> None:
        self.written: list[tuple[str, dict[str, Any]]] = []
        self.replies: list[asyncio.Future[Any]] = []
        self.down = False

    def submit(self, action: str, headers: dict[str, Any] | None = None, *, shape: str,
               timeout: float | None = None) -> asyncio.Future[Any]:
        if self.down:
            raise AmiNotConnected(f"{action}: no logged-in AMI connection")
        self.written.append((action, dict(headers or {})))
        fut = asyncio.get_running_loop().create_future()
        self.replies.append(fut)
        return fut
