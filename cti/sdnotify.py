"""systemd's readiness protocol (sd_notify(3)), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and waits for ``READY=1`` on it before it calls the service started;
``STOPPING=1`` says the stop has begun. Outside systemd the variable is unset and
``notify`` does nothing.
"""
from __future__ import annotations

import os
import socket
from typing import Mapping


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd's notification socket.

    Returns True when sent, False when there is no socket to send to. Raises ``OSError``
    when the socket is named but cannot be reached (the caller logs it: readiness is
    then never reported and systemd's start timeout says so).
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        raise OSError(f"NOTIFY_SOCKET {address[:80]!r} is neither a path nor @name")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message.encode("utf-8"))
    return True
