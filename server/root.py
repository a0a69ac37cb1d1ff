"""The composition root: the whole daemon, the core (``cti.daemon``) with every feature on it.

``cti.daemon.build_app`` is the core (database, writer, call model, AMI); the
features add their routes and long-lived tasks to the same aiohttp app, each
with its own ``cleanup_ctx`` (started after the core's, stopped before it, in
the order ``build`` sets them up). Dependencies point inward: features use
``cti``; ``cti`` knows none of them, nor this module (tests/unit/test_layers.py).
"""
from __future__ import annotations

from aiohttp import web

from acd.routing_shell import setup_acd
from api.acd_routes import setup_acd_routes
from api.customer_routes import setup_customer_routes
from api.desktop import setup_desktop
from api.dialplan_hooks import setup_hooks
from api.engineer_routes import setup_engineer_routes
from api.hygiene import setup_hygiene
from api.observe import setup_metrics
from api.phone_routes import setup_phone_routes
from api.wallboard_routes import setup_wallboard
from api.recording_routes import setup_recording_routes
from api.session_routes import setup_auth
from api.ticket_routes import setup_ticket_routes
from api.webhook_service import setup_webhooks
from api.ws import setup_ws
from cti.config import Settings
from cti.daemon import build_app
from ivr.service import setup_ivr
from phone.gateway import setup_phones
from recording.recorder import setup_recording


def build(settings: Settings) -> web.Application:
    app = build_app(settings)
    setup_ivr(app)
    setup_hooks(app)
    setup_acd(app)
    setup_phones(app)  # after the ACD: it seats agents at their devices
    setup_recording(app)
    # The API: registry (/openapi.json, /docs), auth and its pool, then what uses them.
    # Each starts after the ACD, so the hub and the wallboard find it (agent states).
    # The bus order of subscribers does not change what or in which order each one sees.
    setup_auth(app)
    setup_hygiene(app)      # headers on every answer; /healthz's versions for staff only
    setup_acd_routes(app)
    setup_phone_routes(app)
    setup_wallboard(app)
    setup_recording_routes(app)
    setup_metrics(app)
    setup_ws(app)
    setup_desktop(app)      # screen-pops go out on the hub, after the event they follow
    setup_webhooks(app)
    setup_ticket_routes(app)   # dispatch notifications may go out as webhooks
    setup_customer_routes(app)
    setup_engineer_routes(app)
    return app
