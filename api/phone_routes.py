"""Phone routes (docs/softphone.md): devices, an agent's seat and options, browser phone credentials.

Roles: supervisors and admins see every device; admins create and remove
devices. An agent reads and changes their own seat and options and gets
their own browser phone's credentials; a supervisor of the agent's team and
an admin may change the first two (audited, ``api.audit``), QA may not. No
answer ever carries a stored digest; a password appears once, in the answer
that made it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from api import audit
from api.auth import ADMIN, EVERYONE, STAFF
from api.errors import ApiError
from api.static_files import StaticFiles
from api.registry import ApiRequest, setup_registry
from phone.model import DEVICE_ID, DeviceError
from phone.gateway import PHONES, PhoneError, PhoneService

_ID = DEVICE_ID.pattern


class DeviceView(BaseModel):
    device_id: str
    kind: str
    label: str
    provisioned: bool = Field(description="has a credential (an endpoint exists in Asterisk)")
    reachable: bool = Field(description="a registered contact answers")
    agent_id: str | None = Field(description="the agent seated at it")


class DeviceList(BaseModel):
    devices: list[DeviceView]


class NewDevice(BaseModel):
    device_id: str = Field(pattern=_ID)
    kind: Literal["sip", "webrtc"] = "sip"
    label: str = Field("", max_length=128, pattern=r"^[^\x00-\x1f]*$")
    password: str | None = Field(None, min_length=12, max_length=128, pattern=r"^[!-~]+$",
                                 description="omit for a random one")


class DeviceCreated(BaseModel):
    device_id: str
    password: str = Field(description="shown this once; only its digest is kept")


class AgentPhoneView(BaseModel):
    agent_id: str
    device: str | None = Field(description="the dial string offers ring")
    seat: str | None = Field(description="the device the agent sat down at (None: the configured device)")
    reachable: bool
    auto_answer: bool
    zip_tone: bool
    browser_phone: bool = Field(False, description="offers ring a browser phone (the agent desktop starts it)")


class SeatBody(BaseModel):
    device_id: str | None = Field(None, pattern=_ID, description="None: back to the configured device")


class OptionsBody(BaseModel):
    auto_answer: bool
    zip_tone: bool


class WebrtcReply(BaseModel):
    device_id: str
    uri: str
    password: str
    realm: str
    ws_url: str


def _service(req: ApiRequest[Any, Any]) -> PhoneService:
    service = req.app.get(PHONES)
    if service is None or service.pool is None:
        raise ApiError(404, "phones_disabled", "the phone gateway needs the database")
    return service


def _agent(req: ApiRequest[Any, Any]) -> str:
    """The agent of the path, known to the ACD. Who may change it is the route's
    agent scope; reading: the agent, or anyone but another agent."""
    agent_id = req.match_info["agent_id"]
    p = req.principal
    if req.over_agent is None and p is not None and p.role == "agent" and p.agent_id != agent_id:
        raise ApiError(403, "forbidden", "only the agent themselves may do this")
    acd = req.app[PHONES].acd
    if acd is None or agent_id not in {a.id for a in acd.config.agents}:
        raise ApiError(404, "unknown_agent", f"no agent {agent_id!r}")
    return agent_id


async def list_devices(req: ApiRequest[None, None]) -> DeviceList:
    return DeviceList(devices=[DeviceView(**v) for v in _service(req).device_views()])


async def add_device(req: ApiRequest[NewDevice, None]) -> DeviceCreated:
    s, b = _service(req), req.body
    password = await s.add_device(b.device_id, b.kind, b.password, b.label)
    return DeviceCreated(device_id=b.device_id, password=password)


async def remove_device(req: ApiRequest[None, None]) -> None:
    try:
        await _service(req).remove_device(req.match_info["device_id"])
    except (PhoneError, DeviceError) as exc:   # an id no device can have names none either
        raise ApiError(404, "unknown_device", str(exc)) from None


async def get_agent(req: ApiRequest[None, None]) -> AgentPhoneView:
    s = _service(req)
    return AgentPhoneView(**s.agent_view(_agent(req)))


async def _audit_other(req: ApiRequest[Any, Any], action: str, agent_id: str, before: dict[str, Any],
                       after: dict[str, Any], **kw: Any) -> None:
    """Someone else changed the agent's phone: one audit row with from and to."""
    if req.over_agent == "other" and req.principal is not None:
        await audit.record(req.app, req.principal, action, agent_id=agent_id,
                           details={"from": before, "to": after}, **kw)


def _seat(view: dict[str, Any]) -> dict[str, Any]:
    return {"seat": view["seat"], "device": view["device"]}


def _options(view: dict[str, Any]) -> dict[str, Any]:
    return {"auto_answer": view["auto_answer"], "zip_tone": view["zip_tone"]}


async def put_seat(req: ApiRequest[SeatBody, None]) -> AgentPhoneView:
    s = _service(req)
    agent_id = _agent(req)
    before = _seat(s.agent_view(agent_id))
    try:
        await s.bind(agent_id, req.body.device_id)
    except PhoneError as exc:
        await _audit_other(req, "seat", agent_id, before, {"seat": req.body.device_id}, result="refused",
                           error=str(exc))
        raise ApiError(404, "unknown_device", str(exc)) from None
    view = s.agent_view(agent_id)
    await _audit_other(req, "seat", agent_id, before, _seat(view))
    return AgentPhoneView(**view)


async def put_options(req: ApiRequest[OptionsBody, None]) -> AgentPhoneView:
    s = _service(req)
    agent_id = _agent(req)
    before = _options(s.agent_view(agent_id))
    await s.set_options(agent_id, req.body.auto_answer, req.body.zip_tone)
    view = s.agent_view(agent_id)
    await _audit_other(req, "phone_options", agent_id, before, _options(view))
    return AgentPhoneView(**view)


async def webrtc(req: ApiRequest[None, None]) -> WebrtcReply:
    s = _service(req)
    c = await s.webrtc_credentials(_agent(req))
    return WebrtcReply(device_id=c.device_id, uri=c.uri, password=c.password, realm=c.realm, ws_url=c.ws_url)


STATIC = Path(__file__).parent / "static" / "phone"


def setup_phone_routes(app: web.Application) -> None:
    api = setup_registry(app)
    tags = ("phone",)
    api.add("GET", "/api/phone/devices", list_devices, summary="Agents' phones and whether they can ring",
            roles=STAFF, response=DeviceList, tags=tags)
    api.add("POST", "/api/phone/devices", add_device, summary="Create a device, or give it a new secret",
            description="The answer holds the password once; only its digest is kept.", roles=ADMIN,
            body=NewDevice, response=DeviceCreated, status=201, tags=tags)
    api.add("DELETE", "/api/phone/devices/{device_id}", remove_device, summary="Remove a device", roles=ADMIN,
            status=204, tags=tags)
    api.add("GET", "/api/phone/agents/{agent_id}", get_agent, summary="An agent's phone: device, reachability, "
            "options", roles=EVERYONE, response=AgentPhoneView, tags=tags)
    mine = "The agent themselves; a supervisor of their team or an admin, audited (GET /api/supervisor/actions)."
    api.add("PUT", "/api/phone/agents/{agent_id}/seat", put_seat, summary="Hot-desking: sit the agent at a device",
            description=mine, roles=EVERYONE, body=SeatBody, response=AgentPhoneView, tags=tags,
            agent_scope="team")
    api.add("PUT", "/api/phone/agents/{agent_id}/options", put_options, summary="Auto-answer and zip tone",
            description=mine, roles=EVERYONE, body=OptionsBody, response=AgentPhoneView, tags=tags,
            agent_scope="team")
    api.add("POST", "/api/phone/agents/{agent_id}/webrtc", webrtc, summary="Credentials for the agent's browser "
            "phone", description="The agent themselves only. A new secret each time; the browser phone becomes "
            "the agent's seat.", roles=EVERYONE, response=WebrtcReply, tags=tags, agent_scope="self")
    files = StaticFiles(STATIC)   # compressed, ETag and Cache-Control (api/static_files.py)
    app.router.add_get("/phone/", files.handler("index.html"))
    app.router.add_get("/phone/{path:.+}", files.handler(key="path"))
