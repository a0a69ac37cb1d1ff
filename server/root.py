"""The composition root: the whole daemon, the core (``cti.daemon``) with every feature on it.

Every part is built here with what it uses passed in (the core as ``CoreServices``,
the ACD as an ``AcdService`` or None); nothing else decides what runs. Each part
adds its routes and long-lived tasks to one aiohttp app as a ``cleanup_ctx``:
they start in the order ``build`` sets them up and stop in reverse, so a part
always starts after what it uses and stops before it. Dependencies point inward:
features use ``cti``; ``cti`` knows none of them, nor this module
(tests/unit/test_layers.py). docs/architecture.md ("Composition root") draws it.
"""
from __future__ import annotations

from aiohttp import web

from acd.setup import setup_acd
from api.acd_routes import setup_acd_routes
from api.customer_routes import setup_customer_routes
from api.dialer_routes import setup_dialer_routes, setup_dialer_runner
from api.desktop import setup_desktop
from api.dialplan_hooks import setup_hooks
from api.engineer_routes import setup_engineer_routes
from api.hygiene import setup_hygiene
from api.kb_routes import setup_kb_routes
from api.observe import setup_metrics
from api.phone_routes import setup_phone_routes
from api.recording_routes import setup_recording_routes
from api.session_routes import setup_auth
from api.ticket_routes import setup_ticket_routes
from api.wallboard_routes import setup_wallboard
from api.webhook_service import setup_webhooks
from api.follow import setup_follow, setup_follow_ws, tell_desktops
from api.ws import setup_ws
from cti.config import Settings
from cti.daemon import CORE, build_app, run_with_app
from cti.ha import HA, HaNode, run_while_leading
from cti.leadership import LeaseConfig
from emergency.routes import setup_emergency
from ivr.service import setup_ivr
from omni.links import MailTasks, MessageTasks
from omni.routes import CHAT, setup_omni
from messaging.service import file_as_task, setup_messaging
from mail.routes import setup_mail_routes
from mail.service import IntoAcd, MailConfig, MailService, MarkWaiting
from phone.gateway import setup_phones
from recording.recorder import setup_recording


def build(settings: Settings) -> web.Application:
    """The daemon for ``settings``, ready to serve (nothing runs until the app starts)."""
    # 1. The core first: the database (embedded when no URL; migrations; the one
    #    pool every feature queries through), the writer, the call model and its
    #    bus, the AMI client. Everything below uses it.
    app = build_app(settings)
    core = app[CORE]
    # High availability (docs/ha.md): with ha_cluster set, this process is one of a pair
    # and starts as a standby; what acts on calls (the ACD, recording policy) runs only
    # while it leads, the API is read-only meanwhile. Without it: a lone leader, epoch 1.
    ha = None
    if settings.ha_cluster:
        ha = HaNode(core, settings.ha_cluster, settings.ha_node,
                    LeaseConfig(ttl=settings.ha_ttl, renew_within=settings.ha_renew_within,
                                renew_every=settings.ha_renew_every, poll_every=settings.ha_poll_every))
        app[HA] = ha
        core.timeline = False       # a standby upserts call rows; the leader writes timelines
        core.health_parts["ha"] = ha.health
        # Clients follow the leader: a standby forwards the API to it (with a broker) or
        # names it in a 503; CORS for the pair's origins (docs/ha.md, api/follow.py).
        setup_follow(app, settings, ha)
    # 2. The Asterisk-facing features. The IVR and the dialplan hooks answer the
    #    dialplan; they need only the core.
    setup_ivr(app, core)
    setup_hooks(app, core)
    # 3. The ACD before everything that reads agents and queues from it: phones,
    #    the hub, the wallboard, /metrics, the desktop, the ACD routes.
    acd = setup_acd(app, core, ha)
    core.health_parts["acd"] = acd.health if acd is not None else (lambda: None)
    setup_phones(app, core, acd)      # seats agents at their devices, reports reachability
    setup_recording(app, core, ha)
    # 4. The API: the route registry (/openapi.json, /docs) and auth with the pool,
    #    then the routes and services that use them.
    setup_auth(app, core)
    setup_hygiene(app)                # headers on every answer; /healthz's versions for staff only
    setup_acd_routes(app)
    setup_phone_routes(app)
    setup_wallboard(app, core, acd)
    setup_recording_routes(app)
    setup_metrics(app)
    # In a pair with a broker every node's /ws is the broker's stream (seq survives a takeover).
    pair_stream = ha is not None and settings.broker_url is not None
    setup_ws(app, core, acd, route=not pair_stream)
    if pair_stream:
        setup_follow_ws(app, settings)
    if ha is not None:
        tell_desktops(app, settings, ha)
    setup_emergency(app)              # moves the ACD's waiting callers; pushes on the hub: after both
    setup_desktop(app, core)          # screen-pops go out on the hub: after it
    omni = setup_omni(app)            # tasks of chat, e-mail, message: the ACD's router, offers on the hub
    setup_webhooks(app, core, ha)
    setup_ticket_routes(app)          # dispatch notifications may go out as webhooks: after them
    setup_customer_routes(app)
    setup_dialer_routes(app, ha=ha)    # live lists follow the tickets: after the ticket routes
    # The campaign runner places calls: only when asked, with the ACD; in a pair on the leader only.
    setup_dialer_runner(app, acd, enabled=settings.dialer_enabled, ha=ha)
    setup_engineer_routes(app)
    setup_kb_routes(app)
    # Messaging and the web callback form (docs/messaging.md): the form files into the ACD;
    # a new conversation becomes a message task of the ACD (omni), offered like a chat.
    messaging = setup_messaging(app, on_new=file_as_task(omni.file_task))
    messaging.tasks = MessageTasks(omni)      # a conversation and its task kept in step
    # E-mail (docs/mail.md): the routes always (threads stay readable), the receiver only
    # with mail_listen. A new thread is listed as waiting and filed as an e-mail task of the
    # ACD (omni) when mail_queue is an email queue there.
    mail = MailService(MailConfig(listen=settings.mail_listen, max_bytes=settings.mail_max_bytes,
                                  smtp=settings.mail_smtp, sender=settings.mail_from,
                                  sender_name=settings.mail_from_name, queue=settings.mail_queue,
                                  hostname=(settings.mail_from or "cti@localhost").rpartition("@")[2]),
                       pool=lambda: core.pool, file_task=IntoAcd(omni.file_task, MarkWaiting(lambda: core.pool)))
    mail.tasks = MailTasks(omni)              # a thread and its task kept in step (omni/links.py)
    if mail.can_send:                         # a chat's transcript to its customer, when asked
        app[CHAT].mail_transcript = mail.send_transcript
    setup_mail_routes(app, mail)
    if ha is None:
        run_with_app(app, mail)
    else:   # in an HA pair only the leader receives mail (its tasks are filed there); the site's
        # mail server tries the next address of the pair when the standby refuses the connection
        async def receive_mail(epoch: int) -> None:
            await mail.start()

        run_while_leading(app, ha, receive_mail, mail.stop)
    if settings.mail_listen is not None:
        core.health_parts["mail"] = mail.health
    # The event broker (docs/broker.md), only when broker_url is set: a fresh single-node
    # install needs none, and does not even import its client library.
    if settings.broker_url is not None:
        from api.broker import setup_broker
        setup_broker(app, settings.broker_url.get_secret_value(),
                     cluster=settings.broker_cluster or settings.ha_cluster or "main",
                     stream=settings.broker_stream, buffer_max=settings.broker_buffer_max,
                     window=settings.broker_window, max_age_s=settings.broker_max_age_s,
                     max_bytes=settings.broker_max_bytes, ha=ha)
    # Where each subscribes to the bus does not change what it sees, nor in which
    # order: every subscriber gets every event in seq order (cti.events.Bus).
    # 5. The lease last: every part is up before this node may lead, and it is
    #    released first when the app stops.
    if ha is not None:
        run_with_app(app, ha)
    return app
