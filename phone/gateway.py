"""The phone gateway's asyncio shell: devices to Asterisk, bindings and reachability to the ACD.

What it does (docs/softphone.md has the why):

- Provisioning: the devices in PostgreSQL (``phone.phone_db``) are rendered by
  ``phone.model.render_pjsip`` into ``phone_pjsip_conf`` (written whole,
  atomically, mode 0600), then the dialplan reloads ``res_pjsip``: the daemon
  originates ``Local/pjsip@cti-phone-reload/n``, whose extension runs
  ``Reload(res_pjsip)`` and answers only once it went through. The daemon's AMI
  user has no ``system`` or ``config`` right, so no ``Reload`` action of its
  own. Done at start, after every change and after every AMI (re)connect
  (Asterisk may have restarted); changes that come while a reload runs share
  the next one.
- Hot-desking: an agent's seat (``phone_agents.device_id``) is given to the
  ACD with ``AcdService.bind_device``; offers and callbacks ring it.
- Options: auto-answer and zip tone go to the global ``CTI_PHONE_OPTS_<agent>``
  (Setvar without a channel; AstDB's ``DBPut`` needs ``system``), where the offer
  dialplan reads them; set again after every (re)connect.
- Reachability: ``ContactStatus`` events, and after every (re)connect each
  device's contacts read with ``Getvar`` of ``PJSIP_AOR``/``PJSIP_CONTACT``
  (``PJSIPShowContacts`` needs ``system``), feed ``phone.model.Reachability``; every agent whose
  device is ``PJSIP/<id>`` is told to the ACD as reachable or not
  (``AcdService.device_reachable``): an agent whose phone cannot ring is not
  ready with the reason ``unreachable`` and is offered nothing.
- Several Asterisk nodes (docs/scale-out.md): every device is written to each
  node's file (its ``phone_pjsip_conf`` in ``ami_nodes``, else the shared one:
  ``cti.nodes.provision_targets``) and ``res_pjsip`` reloaded on each node
  connected (a node away at its resync), since a phone may register on any
  node and which one is known only once it has. A contact is a node's. Each
  node's contacts are listed after its resync (``Core.node_hooks``); a dead node's
  are dropped (``cti.nodes.NodeDead`` on the bus), so the agents whose phones
  were there go not ready ``unreachable``, and come back as the node's listing
  (or their phones' new registrations) shows them again. ``route_device`` gives
  the ACD the dial string that reaches a phone from a caller's node: through the
  trunk (``PJSIP/<aor>@cti-trunk-<node>``) when the phone is on another.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from cti.ami_inputs import ContactStatus
from cti.daemon import run_with_app
from cti.errors import AmiActionFailed, AmiError, CtiError
from cti.nodes import NodeDead, node_specs, provision_targets, route_device
from phone import phone_db
from phone.model import (
    ContactChange, Device, Reachability, check_device_id, contact_state, contacts_of, device_of_dial, dial_string,
    ha1, options_value, render_pjsip, webrtc_device_id,
)
from phone.phone_db import AgentPhone

if TYPE_CHECKING:
    from acd.routing_shell import AcdService
    from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

OPTIONS_VAR = "CTI_PHONE_OPTS_"           # + agent id: a global the offer dialplan reads
RELOAD_CHANNEL = "Local/pjsip@cti-phone-reload/n"


class PhoneError(CtiError):
    """A phone request that cannot be carried out (unknown device, no database)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a browser phone needs to register (given once, to its own agent)."""

    device_id: str
    uri: str
    password: str
    realm: str
    ws_url: str


@dataclass
class PhoneService:
    core: CoreServices
    acd: AcdService | None = None               # seats agents at their devices, told reachability
    pool: Any = None
    devices: dict[str, Device] = field(default_factory=dict)
    agents: dict[str, AgentPhone] = field(default_factory=dict)
    reach: Reachability = field(default_factory=Reachability)
    listed: bool = False                        # a contact listing came in (before it, nobody is unreachable)
    reloads: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _generation: int = 0                        # changes asked for
    _reloaded: int = 0                          # changes Asterisk has read
    _unsubscribe: Any = None                    # from the contacts on the bus
    _unsubscribe_dead: Any = None               # from the nodes' deaths on the bus

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self.core.pool is not None:   # the daemon's shared pool (none in unit tests)
            self.pool = self.core.db("phones")
            async with asyncio.timeout(10):
                self.devices = {d.device_id: d for d in await phone_db.devices(self.pool)}
                self.agents = {a.agent_id: a for a in await phone_db.agents(self.pool)}
        acd = self.acd
        for a in self.agents.values():
            if acd is not None and a.device_id is not None:
                acd.bind_device(a.agent_id, dial_string(a.device_id))
        await asyncio.to_thread(self._write_conf)
        self._unsubscribe = self.core.bus.subscribe_to(ContactStatus, self.on_contact)
        self._unsubscribe_dead = self.core.bus.subscribe_to(NodeDead, self.on_node_dead)
        self.core.resync_hooks.append(self.on_resync)
        node_hooks = getattr(self.core, "node_hooks", None)
        if node_hooks is not None:
            node_hooks.append(self.on_node_resync)
        if acd is not None and getattr(self.core, "multi", False):
            acd.route_device = self.route_device
        if self.core.ami.connected:  # the first resync ran before we were here
            await self.on_resync([])

    async def stop(self) -> None:
        if self.on_resync in self.core.resync_hooks:
            self.core.resync_hooks.remove(self.on_resync)
        node_hooks = getattr(self.core, "node_hooks", None)
        if node_hooks is not None and self.on_node_resync in node_hooks:
            node_hooks.remove(self.on_node_resync)
        for unsubscribe in (self._unsubscribe, self._unsubscribe_dead):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._unsubscribe_dead = None

    # -- Asterisk side ---------------------------------------------------------

    def on_contact(self, ev: ContactStatus) -> None:
        """Bus subscriber: a contact's reachability changed (``cti.ami_inputs``)."""
        change = contact_state(ev.aor, ev.uri, ev.status)
        if change is None:
            return
        now_up = self.reach.feed(change, ev.node if ev.node is not None else self._primary_node())
        if now_up is not None:
            log.info("phone reachability", device=change.aor, reachable=now_up, uri=change.uri)
            self._tell_acd()

    async def on_resync(self, _items: list[Any]) -> None:
        """After every AMI (re)connect of the primary: configuration, options and contacts again."""
        try:
            await self._reload(only=node_specs(self.core.settings)[0].name)
            for a in self.agents.values():
                await self._put_options(a)
            changes = await self._contacts(self.core.ami)
        except AmiError as exc:
            log.warning("phones not synchronised with Asterisk", error=str(exc))
            return
        self.reach.replace(changes, self._primary_node())
        self.listed = True
        log.info("phone contacts listed", devices_up=sorted(self.reach.devices_up()))
        self._tell_acd()

    async def on_node_resync(self, node: str, ami: Any, _channels: list[Any] | None = None) -> None:
        """After a node other than the primary (re)connected: the agents' phone options
        and its contacts again."""
        try:
            await self._reload(only=node)         # its phones' file (when it has one), read again
        except AmiError:
            pass                                  # logged; its contacts are listed all the same
        try:
            for a in self.agents.values():
                await self._put_options(a, ami)
            changes = await self._contacts(ami)
        except AmiError as exc:
            log.warning("phones of a node not listed", node=node, error=str(exc))
            return
        changed = self.reach.replace(changes, node)
        self.listed = True
        log.info("phone contacts listed", node=node, changed=changed)
        self._tell_acd()

    def on_node_dead(self, ev: NodeDead) -> None:
        """Bus subscriber: a node died; the phones registered there cannot ring."""
        down = self.reach.drop_node(ev.node)
        log.warning("phones of a dead node unreachable", node=ev.node, devices=sorted(down))
        self._tell_acd()

    def _primary_node(self) -> str | None:
        """The node name contacts of the primary node are kept under (None: one node)."""
        nodes = getattr(self.core, "nodes", None)
        if not nodes or not getattr(self.core, "multi", False):
            return None
        return next(iter(nodes))

    def route_device(self, call_id: str, device: str) -> str:
        """The dial string that rings ``device`` from the node of ``call_id`` (through
        the trunk when the phone is registered on another node only)."""
        node_of = getattr(self.core, "ami_node_of", None)
        caller = node_of(call_id) if node_of is not None else None
        aor = device_of_dial(device)
        return route_device(device, caller, self.reach.nodes_of(aor) if aor else set())

    async def _getvar(self, ami: Any, name: str) -> str:
        reply = await ami.send("Getvar", {"Variable": name}, shape="single", timeout=10)
        return reply.response.headers.get("Value", "") or ""

    async def _contacts(self, ami: Any) -> list[ContactChange]:
        """Every contact of our devices and of the ACD's PJSIP devices, read one by one."""
        ids = set(self.devices)
        acd = self.acd
        if acd is not None:
            ids |= {d for d in (device_of_dial(acd.device_of(a.id)) for a in acd.config.agents) if d}
        out: list[ContactChange] = []
        for aor in sorted(ids):
            try:
                listed = await self._getvar(ami, f"PJSIP_AOR({aor},contact)")
            except AmiActionFailed:
                continue        # no such AOR on this node (several nodes): no contact here
            for contact in contacts_of(aor, listed):
                uri = await self._getvar(ami, f"PJSIP_CONTACT({contact},uri)")
                status = await self._getvar(ami, f"PJSIP_CONTACT({contact},status)")
                change = contact_state(aor, uri, status)
                if change is not None:
                    out.append(change)
        return out

    def _targets(self) -> dict[str, str]:
        """Each provisioned node's file (``cti.nodes.provision_targets``)."""
        return provision_targets(node_specs(self.core.settings), self.core.settings.phone_pjsip_conf)

    def _write_conf(self) -> None:
        """Every file, each whole or not at all; one that cannot be written (a node's mount
        away) does not keep the others from theirs: its error is raised after them."""
        text = render_pjsip(self.devices.values(), self.core.settings.phone_realm)
        failed: OSError | None = None
        for name in sorted(set(self._targets().values())):
            path = Path(name)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                # The digests let a phone register: readable by the owner only.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("phones' file not written", path=name, error=str(exc))
                failed = failed or exc
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        if failed is not None:
            raise failed

    def _ami_of(self, node: str) -> Any:
        nodes = getattr(self.core, "nodes", None) or {}
        return nodes.get(node) or (self.core.ami if node == node_specs(self.core.settings)[0].name else None)

    async def _reload(self, only: str | None = None) -> None:
        """``res_pjsip`` reloaded on each provisioned node connected now (or on ``only``);
        a node away reloads at its resync. Raises the first node's ``AmiError`` after
        trying them all."""
        failed: AmiError | None = None
        for node in self._targets():
            ami = self._ami_of(node)
            if (only is not None and node != only) or ami is None or not ami.connected:
                continue
            # The dialplan reloads res_pjsip and answers once it is done (a failed reload
            # hangs up unanswered: the Originate fails).
            try:
                await ami.send("Originate", {"Channel": RELOAD_CHANNEL, "Application": "Hangup",
                                             "Timeout": "15000"}, shape="single", timeout=20)
                self.reloads += 1
            except AmiError as exc:
                log.warning("pjsip reload failed on a node", node=node, error=str(exc))
                failed = failed or exc
        if failed is not None:
            raise failed

    async def _provision(self) -> None:
        """Write the devices' sections and have Asterisk read them. Changes that come
        while a reload runs are written and read by the next one, not one each."""
        self._generation += 1
        wanted = self._generation
        async with self._lock:
            if self._reloaded >= wanted:
                return                          # a reload that began after this change read it
            current = self._generation
            await asyncio.to_thread(self._write_conf)
            try:
                await self._reload()
                self._reloaded = current
            except AmiError as exc:  # the next (re)connect reloads again
                log.warning("pjsip reload failed", error=str(exc))

    async def _put_options(self, a: AgentPhone, ami: Any = None) -> None:
        # A global (Setvar without a channel): an empty value clears it. On the primary
        # (or ``ami``), and on every other node connected now (several Asterisk nodes:
        # an offer rings from the caller's node; a node away gets them at its resync).
        value = options_value(a.auto_answer, a.zip_tone)
        await (ami or self.core.ami).send("Setvar", {"Variable": OPTIONS_VAR + a.agent_id, "Value": value},
                                          shape="single")
        if ami is not None:
            return
        for other in (getattr(self.core, "nodes", None) or {}).values():
            if other is not self.core.ami and getattr(self.core, "multi", False) and other.connected:
                try:
                    await other.send("Setvar", {"Variable": OPTIONS_VAR + a.agent_id, "Value": value},
                                     shape="single")
                except AmiError as exc:
                    log.warning("phone options not given to a node", agent=a.agent_id, error=str(exc))

    def _tell_acd(self) -> None:
        """Give the ACD every agent's reachability (a no-op where it did not change)."""
        acd = self.acd
        if acd is None or not self.listed:
            return
        for agent in acd.config.agents:
            device = device_of_dial(acd.device_of(agent.id))
            acd.device_reachable(agent.id, True if device is None else self.reach.up(device))

    # -- requests --------------------------------------------------------------

    def _need_db(self) -> Any:
        if self.pool is None:
            raise PhoneError("phones need the database")
        return self.pool

    async def add_device(self, device_id: str, kind: str = "sip", password: str | None = None,
                         label: str = "") -> str:
        """Create (or give a new secret to) a device. Returns its password: the
        one given, or a new random one. Only its digest is kept."""
        pool = self._need_db()
        password = password or secrets.token_urlsafe(18)
        device = Device(check_device_id(device_id), kind, ha1(device_id, self.core.settings.phone_realm, password),
                        label)
        await phone_db.save_device(pool, device, self.core.settings.phone_realm)
        self.devices[device_id] = device
        await self._provision()
        log.info("phone device saved", device=device_id, kind=kind)
        return password

    async def remove_device(self, device_id: str) -> None:
        if not await phone_db.delete_device(self._need_db(), device_id):
            raise PhoneError(f"no device {device_id!r}")
        self.devices.pop(device_id, None)
        for a in list(self.agents.values()):
            if a.device_id == device_id:
                await self.bind(a.agent_id, None)
        await self._provision()

    async def bind(self, agent_id: str, device_id: str | None) -> None:
        """Seat the agent at ``device_id`` (None: back to its configured device).
        Whoever sat there goes back to their configured device."""
        if device_id is not None and device_id not in self.devices:
            raise PhoneError(f"no device {device_id!r}")
        previous = await phone_db.bind(self._need_db(), agent_id, device_id)
        acd = self.acd
        if previous is not None:
            self.agents[previous] = _with(self.agents.get(previous), previous, device_id=None)
            if acd is not None:
                acd.bind_device(previous, None)
        self.agents[agent_id] = _with(self.agents.get(agent_id), agent_id, device_id=device_id)
        if acd is not None:
            acd.bind_device(agent_id, None if device_id is None else dial_string(device_id))
        log.info("phone binding", agent=agent_id, device=device_id, unseated=previous)
        self._tell_acd()

    async def set_options(self, agent_id: str, auto_answer: bool, zip_tone: bool) -> AgentPhone:
        await phone_db.set_options(self._need_db(), agent_id, auto_answer, zip_tone)
        a = self.agents[agent_id] = _with(self.agents.get(agent_id), agent_id, auto_answer=auto_answer,
                                          zip_tone=zip_tone)
        try:
            await self._put_options(a)
        except AmiError as exc:  # stored: the next (re)connect puts it
            log.warning("phone options not given to Asterisk yet", agent=agent_id, error=str(exc))
        return a

    async def webrtc_credentials(self, agent_id: str) -> Credentials:
        """A fresh secret for the agent's browser phone, which becomes the agent's seat.
        Every call replaces the secret: a browser phone elsewhere stops at its next registration."""
        device_id = webrtc_device_id(agent_id)
        password = await self.add_device(device_id, "webrtc", label=f"browser phone of {agent_id}")
        await self.bind(agent_id, device_id)
        s = self.core.settings
        return Credentials(device_id, f"sip:{device_id}@{s.phone_sip_domain}", password, s.phone_realm,
                           s.phone_ws_url)

    # -- queries ---------------------------------------------------------------

    def device_of(self, agent_id: str) -> str | None:
        """The dial string the agent's phone rings at now (what click-to-dial
        originates to), or None without the ACD or for an unknown agent."""
        acd = self.acd
        try:
            return acd.device_of(agent_id) if acd is not None else None
        except CtiError:
            return None

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        a = self.agents.get(agent_id) or AgentPhone(agent_id)
        dial = self.device_of(agent_id)
        device = device_of_dial(dial) if dial else None
        known = self.devices.get(device) if device else None
        return {"agent_id": agent_id, "device": dial, "seat": a.device_id,
                "reachable": True if device is None or not self.listed else self.reach.up(device),
                "auto_answer": a.auto_answer, "zip_tone": a.zip_tone,
                "browser_phone": known is not None and known.kind == "webrtc"}

    def device_views(self) -> list[dict[str, Any]]:
        seated = {a.device_id: a.agent_id for a in self.agents.values() if a.device_id}
        return [{"device_id": d.device_id, "kind": d.kind, "label": d.label, "provisioned": d.ha1 is not None,
                 "reachable": self.reach.up(d.device_id), "agent_id": seated.get(d.device_id)}
                for d in sorted(self.devices.values(), key=lambda d: d.device_id)]


def _with(a: AgentPhone | None, agent_id: str, **changes: Any) -> AgentPhone:
    from dataclasses import replace
    return replace(a or AgentPhone(agent_id), **changes)


PHONES = web.AppKey("phones", PhoneService)


def setup_phones(app: web.Application, core: CoreServices, acd: AcdService | None) -> PhoneService:
    """Run the phone gateway in the daemon (after the ACD, so it can bind agents)."""
    service = PhoneService(core, acd)
    app[PHONES] = service
    run_with_app(app, service)
    return service
