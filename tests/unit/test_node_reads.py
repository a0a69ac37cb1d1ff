"""The reads an API node answers itself (api/node_reads.py, api/node_routes.py): the leader's
board and routing picture of one instant, aged to the asking time; none yet: the leader's."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.routing_shell import ACD
from api.acd_routes import acd_state
from api.auth import ROLES, STAFF, Principal
from api.broker import Pictures, with_acd_state
from api.db import API_DB
from api.desktop import HISTORY
from api.errors import unauthenticated
from api.node import NODE
from api.node_reads import ACD_AT_KEY, ACD_KEY, NodeReads
from api.node_routes import setup_node_reads
from api.registry import API
from mail.routes import LIST_THREADS
from tests.unit.test_acd_adopt import WAITING, _service

T0 = 1_800_000_000.0
PICTURE = {"config_version": 3,
           "agents": [{"agent_id": "a4", "name": "Dev", "state": "available", "reason": "", "since": T0 - 50,
                       "call_id": None, "queue_id": None, "pending": None}],
           "waiting": [{"call_id": "c1", "queue_id": "billing", "status": "waiting", "priority": 0, "waited_s": 12.5,
                        "step": 0, "offered_to": None, "callback": False}],
           "queues": [{"queue_id": "billing", "waiting": 1, "ringing": 0, "longest_wait_s": 12.5, "offered": 4,
                       "answered": 3, "abandoned": 0, "service_level": 1.0, "target": 0.8, "agents_logged_in": 1,
                       "agents_available": 1},
                      {"queue_id": "sales", "waiting": 0, "ringing": 0, "longest_wait_s": 0.0, "offered": 0,
                       "answered": 0, "abandoned": 0, "service_level": None, "target": 0.8, "agents_logged_in": 0,
                       "agents_available": 0},
                      {"queue_id": "vip", "waiting": 0, "ringing": 1, "longest_wait_s": 3.0, "offered": 1,
                       "answered": 0, "abandoned": 0, "service_level": None, "target": 0.8, "agents_logged_in": 1,
                       "agents_available": 0}]}
BOARD = {"type": "wallboard", "at": T0, "queues": [], "agents": [], "alerts": []}


def test_the_board_supervisors_get_is_the_leaders_without_the_routing_picture():
    reads = NodeReads()
    board = reads.take({**BOARD, ACD_KEY: PICTURE})
    assert board == BOARD and reads.board == BOARD
    assert reads.acd == PICTURE and reads.at == T0


def test_the_picture_is_aged_to_the_asking_time_only_in_its_waits():
    reads = NodeReads()
    reads.take({**BOARD, ACD_KEY: PICTURE})
    picture, age = reads.acd_state(T0 + 7.25)
    assert age == 7.25
    assert picture["waiting"][0]["waited_s"] == 19.75
    # no caller waits in sales; vip's one rings, and its wait goes on
    assert [q["longest_wait_s"] for q in picture["queues"]] == [19.75, 0.0, 10.25]
    assert picture["agents"] == PICTURE["agents"] and picture["config_version"] == 3
    assert PICTURE["waiting"][0]["waited_s"] == 12.5          # what was read is not changed


def test_the_leader_makes_the_picture_at_most_every_few_seconds_and_asks_for_a_board_after():
    made: list[float] = []
    owed: list[float] = []
    pictures = Pictures(lambda at: made.append(at) or {**PICTURE, "made": at}, lambda: owed.append(1), every_s=2.0)
    first = pictures({**BOARD, "at": T0})
    assert first[ACD_KEY]["made"] == T0 and ACD_AT_KEY not in first and made == [T0] and not owed
    # Boards sooner carry that picture, with when it was made, and another board is asked for.
    again = pictures({**BOARD, "at": T0 + 0.5})
    assert again[ACD_KEY]["made"] == T0 and again[ACD_AT_KEY] == T0 and again["at"] == T0 + 0.5
    pictures({**BOARD, "at": T0 + 1.75})
    assert made == [T0] and len(owed) == 2
    # Once due, a new one; a board's clock stepped back makes one too.
    assert pictures({**BOARD, "at": T0 + 2})[ACD_KEY]["made"] == T0 + 2
    assert pictures({**BOARD, "at": T0 + 1})[ACD_KEY]["made"] == T0 + 1
    assert made == [T0, T0 + 2, T0 + 1] and len(owed) == 2
    # Without an ACD: the board alone, every time.
    none = Pictures(lambda at: None, lambda: owed.append(1))
    assert none({**BOARD, "at": T0}) == {**BOARD, "at": T0} and none({**BOARD, "at": T0 + 1}) == {**BOARD, "at": T0 + 1}


def test_a_picture_made_before_its_board_is_aged_from_when_it_was_made():
    reads = NodeReads()
    board = reads.take({**BOARD, "at": T0 + 1.5, ACD_KEY: PICTURE, ACD_AT_KEY: T0})
    assert board == {**BOARD, "at": T0 + 1.5}                  # supervisors get neither key
    picture, age = reads.acd_state(T0 + 2)
    assert age == 2.0 and picture["waiting"][0]["waited_s"] == 14.5
    # One said to be made after its board is not the leader's: refused, the read forwarded.
    reads.take({**BOARD, "at": T0 + 3, ACD_KEY: PICTURE, ACD_AT_KEY: T0 + 4})
    assert reads.acd_state(T0 + 5) is None and reads.refused == 1


def test_a_clock_behind_the_leaders_gives_no_age():
    reads = NodeReads()
    reads.take({**BOARD, ACD_KEY: PICTURE})
    picture, age = reads.acd_state(T0 - 3)
    assert age == 0.0 and picture["waiting"][0]["waited_s"] == 12.5


def test_no_picture_before_a_board_or_from_a_board_without_one():
    reads = NodeReads()
    assert reads.acd_state(T0) is None and reads.board is None
    reads.take({**BOARD, ACD_KEY: PICTURE})
    reads.take({**BOARD, "at": T0 + 1})           # a leader without an ACD: the older picture goes too
    assert reads.acd_state(T0 + 2) is None and reads.refused == 0
    assert reads.board == {**BOARD, "at": T0 + 1}


@pytest.mark.parametrize("bad", [
    [], "x", {"agents": [], "waiting": []},
    {**PICTURE, "waiting": [{**PICTURE["waiting"][0], "waited_s": "12"}]},
    {**PICTURE, "queues": [{"queue_id": "q", "longest_wait_s": float("nan")}]},
    {**PICTURE, "agents": ["a4"]},
])
def test_a_picture_not_of_the_leaders_shape_is_refused_and_the_older_one_dropped(bad):
    reads = NodeReads()
    reads.take({**BOARD, ACD_KEY: PICTURE})
    board = reads.take({**BOARD, "at": T0 + 1, ACD_KEY: bad})
    assert ACD_KEY not in board and reads.acd_state(T0 + 2) is None and reads.refused == 1


def test_a_board_without_a_time_is_kept_for_nothing():
    reads = NodeReads()
    reads.take({**BOARD, ACD_KEY: PICTURE})
    reads.take({**BOARD, "at": "soon", ACD_KEY: PICTURE})
    assert reads.acd_state(T0) is None and reads.board is None and reads.refused == 1


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3))


_json = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5), _nested,
                     max_leaves=12)
# The leader's picture with one of its waits or lists replaced by anything.
_near = st.builds(lambda key, value: {**PICTURE, key: value} if key in PICTURE else
                  {**PICTURE, "waiting": [{**PICTURE["waiting"][0], "waited_s": value}]},
                  st.sampled_from(["agents", "waiting", "queues", "waited_s"]), _json)


@settings(max_examples=300, deadline=None)
@given(published=st.dictionaries(st.sampled_from(["type", "at", ACD_KEY, ACD_AT_KEY, "queues", "x"]), _json, max_size=6)
       | st.builds(lambda picture, at: {**BOARD, "at": at, ACD_KEY: picture}, _near, _json | st.just(T0)),
       now=st.floats(min_value=0, max_value=4e9))
def test_whatever_the_broker_hands_a_node_it_never_raises_and_serves_only_the_leaders_shape(published, now):
    reads = NodeReads()
    board = reads.take(published)
    assert ACD_KEY not in board and ACD_AT_KEY not in board
    found = reads.acd_state(now)
    if found is not None:
        picture, age = found
        assert age >= 0 and all(isinstance(w["waited_s"], float) for w in picture["waiting"])


# -- the leader's side ----------------------------------------------------------------


async def test_what_the_leader_publishes_aged_by_a_node_is_the_leaders_own_answer_later():
    """Nothing changes between the board and the asking: the node's answer is the leader's."""
    service = _service({WAITING["Channel"]: {"CTI_QUEUE": "billing", "CTI_WAIT_START": str(int(T0) - 5)}})
    service.core.model.resync([WAITING], [], T0)
    await service.adopt([WAITING])
    app = web.Application()
    app[ACD] = service
    published = with_acd_state(app, {**BOARD})
    assert published[ACD_KEY]["waiting"], "the adopted caller waits"
    reads = NodeReads()
    reads.take(published)
    picture, _ = reads.acd_state(T0 + 30)
    assert picture == acd_state(service, T0 + 30).model_dump(mode="json")


def test_a_leader_without_an_acd_publishes_the_board_alone():
    assert with_acd_state(web.Application(), {**BOARD}) == BOARD


# -- the routes -------------------------------------------------------------------------

def _principal(role: str) -> Principal:
    return Principal(kind="session", id=7, name=f"u-{role}", display_name=role.title(), role=role,
                     agent_id="a4" if role == "agent" else None, credential=b"d")


async def _authenticate(request: web.Request) -> Principal | None:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not token:
        return None
    if token not in ROLES:
        raise unauthenticated("unknown")
    return _principal(token)


def _app(reads: NodeReads, forwarded: list[str]) -> web.Application:
    async def leader(request: web.Request) -> web.StreamResponse:
        forwarded.append(request.path)
        return web.json_response({"from": "leader"})

    app = web.Application()
    app[NODE] = SimpleNamespace(reads=reads)    # type: ignore[assignment]
    app[API_DB] = SimpleNamespace(pool=None)    # type: ignore[assignment]  # no database: 503
    setup_node_reads(app, _authenticate, leader, clock=lambda: T0 + 2)
    return app


async def _get(client: TestClient, path: str, role: str | None) -> tuple[int, Any, Any]:
    r = await client.get(path, headers={"Authorization": f"Bearer {role}"} if role else {})
    return r.status, await r.json(), r.headers


async def test_each_read_admits_exactly_the_roles_the_leaders_route_names():
    reads = NodeReads()
    reads.take({**BOARD, ACD_KEY: PICTURE})
    app = _app(reads, [])
    roles = {r.path: r.roles for r in app[API].routes}
    assert roles == {"/api/wallboard": STAFF, "/api/acd/state": STAFF, "/api/me": frozenset(ROLES),
                     "/api/agent/calls": HISTORY["roles"], "/api/mail/threads": LIST_THREADS["roles"]}
    async with TestClient(TestServer(app)) as client:
        for path, admitted in roles.items():
            assert (await _get(client, path, None))[0] == 401
            assert (await _get(client, path, "nobody"))[0] == 401
            for role in ROLES:
                status, body, _ = await _get(client, path, role)
                # The database's reads reach their handler (here: no database, 503).
                served = 503 if path in ("/api/agent/calls", "/api/mail/threads") else 200
                assert status == (served if role in admitted else 403), (path, role, body)


async def test_the_reads_come_from_the_board_and_the_leader_answers_while_there_is_none():
    reads = NodeReads()
    forwarded: list[str] = []
    async with TestClient(TestServer(_app(reads, forwarded))) as client:
        for path in ("/api/wallboard", "/api/acd/state"):
            status, body, _ = await _get(client, path, "supervisor")
            assert (status, body) == (200, {"from": "leader"})
        assert forwarded == ["/api/wallboard", "/api/acd/state"] and reads.forwarded == 2
        reads.take({**BOARD, ACD_KEY: PICTURE})
        status, body, _ = await _get(client, "/api/wallboard", "supervisor")
        assert (status, body) == (200, BOARD)
        status, body, headers = await _get(client, "/api/acd/state", "admin")
        assert status == 200 and headers["Age"] == "2"
        assert body["waiting"][0]["waited_s"] == 14.5 and body["agents"][0]["agent_id"] == "a4"
        status, body, _ = await _get(client, "/api/me", "agent")
        assert status == 200 and (body["role"], body["agent_id"], body["name"]) == ("agent", "a4", "u-agent")
        assert forwarded == ["/api/wallboard", "/api/acd/state"] and reads.served == 3


async def test_a_board_or_picture_that_does_not_validate_is_the_leaders_to_answer():
    reads = NodeReads()
    # Shaped, but not an AgentItem; a board whose type is no text.
    reads.take({**BOARD, "type": 7, ACD_KEY: {**PICTURE, "agents": [{"agent_id": "a4"}]}})
    forwarded: list[str] = []
    async with TestClient(TestServer(_app(reads, forwarded))) as client:
        for path in ("/api/acd/state", "/api/wallboard"):
            status, body, _ = await _get(client, path, "supervisor")
            assert (status, body) == (200, {"from": "leader"})
    assert forwarded == ["/api/acd/state", "/api/wallboard"] and reads.served == 0



def test_a_board_too_big_with_its_picture_is_published_without_it():
    import json

    from api.broker import BOARD_MAX, BrokerPublisher
    from cti.events import Bus

    pub = BrokerPublisher(Bus(), "nats://127.0.0.1:9", cluster="east")
    pub.offer_board({**BOARD, ACD_KEY: PICTURE})
    assert json.loads(pub._board) == {**BOARD, ACD_KEY: PICTURE} and pub.pictures_dropped == 0
    big = {**PICTURE, "agents": PICTURE["agents"] * (BOARD_MAX // 50)}
    pub.offer_board({**BOARD, ACD_KEY: big})
    assert json.loads(pub._board) == BOARD and pub.stats()["pictures_dropped"] == 1


def _waiting_acd(offsets: list[float], ready: bool, now: float) -> Any:
    """An ACD of two agents in queue q, its callers having waited ``offsets`` seconds at
    ``now``; with ``ready`` one agent is ready, so the first caller rings."""
    from acd.config import AcdConfig
    from acd.routing_shell import AcdService
    from cti.daemon import Core
    from cti.events import CallQueued, CallView
    from tests.wireami import WireAmi

    config = AcdConfig.model_validate({
        "skills": ["any"], "queues": [{"id": "q", "ring_timeout_s": 600}, {"id": "idle"}],
        "agents": [{"id": a, "name": a, "device": f"PJSIP/{a}", "queues": {"q": {}}, "auto_login": True}
                   for a in ("x1", "x2")]})
    ami = WireAmi()
    ami.connected = True
    core = Core(SimpleNamespace(acd_default_queue="q", acd_announce_every=0), ami=ami)  # type: ignore[arg-type]
    service = AcdService(core, config)
    service._apply(service.router.auto_login(now))
    service.agent_request("x2", "set_not_ready", "test")
    if not ready:
        service.agent_request("x1", "set_not_ready", "test")
    for n, offset in enumerate(sorted(offsets, reverse=True)):
        at = now - offset
        view = CallView(call_id=f"c{n}", state="queued", direction="inbound", caller_num="+100", caller_name="x",
                        exten="s", started_at=at, answered_at=at, queue="q", queue_joined_at=at, queue_left_at=None,
                        agent=None, agent_answered_at=None, ended_at=None, hangup_cause=None, hangup_cause_txt=None,
                        end_estimated=False, abandoned=False, legs=1)
        service.on_call_event(CallQueued(f"c{n}", at, 3, view, queue="q", acd=True, channel=f"PJSIP/c-{n}",
                                         uniqueid=f"c{n}"))
    return service


@settings(max_examples=25, deadline=None)
@given(offsets=st.lists(st.integers(0, 600_000).map(lambda ms: ms / 1000), max_size=5), ready=st.booleans(),
       age=st.integers(0, 120_000).map(lambda ms: ms / 1000))
def test_whatever_waits_and_rings_a_node_s_aged_picture_is_the_leader_s_answer_then(offsets, ready, age):
    """The leader's picture published at T, aged by a node to T + age, is what the leader
    itself answers at T + age when nothing happened in between (waits to the rounding)."""
    import asyncio

    async def check() -> None:
        service = _waiting_acd(offsets, ready, T0)
        reads = NodeReads()
        app = web.Application()
        app[ACD] = service
        reads.take(with_acd_state(app, {**BOARD}))
        picture, _ = reads.acd_state(T0 + age)
        leader = acd_state(service, T0 + age).model_dump(mode="json")
        waits = [(w.pop("waited_s"), v.pop("waited_s")) for w, v in zip(picture["waiting"], leader["waiting"])]
        longest = [(q.pop("longest_wait_s"), v.pop("longest_wait_s")) for q, v in zip(picture["queues"], leader["queues"])]
        assert picture == leader
        assert all(abs(a - b) <= 0.0015 for a, b in waits + longest), (waits, longest)
        assert not ready or not offsets or any(w["status"] == "ringing" for w in leader["waiting"])

    asyncio.run(check())
