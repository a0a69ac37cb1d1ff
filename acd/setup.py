"""The ACD in the app (server/root.py builds it): started with the app when ``acd_config`` is
set, or, in an HA pair, shadowing the leader and routing only while the node leads
(docs/acd.md, docs/ha.md)."""
from __future__ import annotations

from typing import Any, AsyncIterator

import structlog
from aiohttp import web

from acd import config as acd_config
from acd.config_versions import config_in_force
from acd.routing_shell import ACD, AcdService
from cti.daemon import CoreServices

log = structlog.get_logger(__name__)


def setup_acd(app: web.Application, core: CoreServices, ha: Any = None) -> AcdService | None:
    """The ACD when ``acd_config`` is set (None otherwise: the dialplan routes every
    call to app_queue). Built now from the file (a bad file stops the start); when
    the app starts (after the core: it needs the pool and the AMI client), the
    configuration in force is chosen (``config_in_force``) and the ACD starts.

    ``ha`` (a ``cti.ha.HaNode``, in a pair): the ACD routes only while the node leads,
    with the lease's epoch, and stops when it steps down or the app stops, in both
    cases without handing waiting callers to app_queue (the next leader adopts them;
    docs/ha.md). Meanwhile, with ``ha_warm`` (the default), it shadows the leader
    (acd/shadow.py) and takes over from memory; without it, it starts cold as after
    a restart."""
    path = core.settings.acd_config
    if path is None:
        log.info("acd disabled: no acd_config; the dialplan routes every call to app_queue")
        return None
    service = AcdService(core, acd_config.load_config(path))
    app[ACD] = service

    if ha is not None:
        return _setup_led(app, core, service, path, ha)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config, version = await config_in_force(core.pool, path)
        service.use_config(config, version)
        await service.start()
        log.info("acd started", agents=len(service.config.agents), queues=len(service.config.queues))
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)
    return service


def _setup_led(app: web.Application, core: CoreServices, service: AcdService, path: Any, ha: Any) -> AcdService:
    from cti.ha import run_while_leading

    service.may_act = ha.may_act
    service.handover = False
    service.gate_redirects = True       # a deposed leader's late Redirect moves nobody (docs/ha.md)
    warm = core.settings.ha_warm

    async def lead(epoch: int) -> None:
        service.set_epoch(epoch)
        if service.shadowing:
            await service.take_over()       # from the shadow's memory (acd/shadow.py)
        else:
            await service.start()
        log.info("acd started: leading", epoch=epoch, agents=len(service.config.agents), warm=warm)

    async def configure(app: web.Application) -> AsyncIterator[None]:
        config, version = await config_in_force(core.pool, path)
        service.use_config(config, version)     # read-only views on a standby see the configuration
        if warm:
            await service.start_shadow(ha.config.poll_every)
        try:
            yield
        finally:
            await service.stop_shadow()

    app.cleanup_ctx.append(configure)
    run_while_leading(app, ha, lead, service.stop)
    return service
