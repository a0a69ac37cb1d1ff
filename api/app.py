"""The whole daemon: the core (cti.daemon) with every feature mounted on it.

``cti.daemon.build_app`` is the core (database, writer, call model, AMI); the
features add their routes and long-lived tasks to the same aiohttp app, each
with its own ``cleanup_ctx`` (started after the core's, stopped before it).
Dependencies point inward: features use ``cti``; ``cti`` knows none of them.
"""
from __future__ import annotations

from aiohttp import web

from acd.service import setup_acd
from api.hooks import setup_hooks
from cti.config import Settings
from cti.daemon import build_app
from ivr.service import setup_ivr


def build(settings: Settings) -> web.Application:
    app = build_app(settings)
    setup_ivr(app)
    setup_hooks(app)
    setup_acd(app)
    return app
