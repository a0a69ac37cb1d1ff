"""The database a ``cti`` command works on: the configured one, or the embedded server
(started for the command, stopped after it unless a running daemon owns it)."""
from __future__ import annotations

import sys
from pathlib import Path

from cti.config import Settings


async def open_database(settings: Settings):
    """The database DSN and, for the embedded server, the handle to stop it."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value(), None
    from cti import embedded_pg

    # Say which database: a command run beside the demo's (./var, scripts/demo) would
    # otherwise read an empty one of its own without a word.
    where = settings.state_dir / "pg"
    hint = ""
    demo = Path.cwd() / "var" / "pg"
    if demo.is_dir() and demo.resolve() != where.resolve():
        hint = f" (the demo's is {demo}: set CTI_STATE_DIR={demo.parent})"
    print(f"cti: database: the embedded PostgreSQL in {where}{hint}", file=sys.stderr)
    server = await embedded_pg.start_embedded(settings)
    return server.dsn, server


async def release(server) -> None:
    """Stop the embedded server we started; leave one a running daemon owns."""
    if server is not None and not server.adopted:
        await server.stop()
