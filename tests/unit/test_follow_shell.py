"""The pair's middlewares (api/follow.py) on a real aiohttp app, with a lease row stood in for:
a standby with a broker forwards the API to the leader with the client's credential; without
one it refuses commands naming the leader's address; CORS answers the pair's origins only."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.follow import setup_follow
from cti.config import Settings


class Lease:
    """What ``api.follow`` reads of an ``HaNode``: its name, ``may_act`` and the row's holder."""

    def __init__(self, node: str, holder: str | None, leading: bool = False) -> None:
        self.node = node
        self.leading = leading
        self.lease = SimpleNamespace(lease=SimpleNamespace(row=SimpleNamespace(holder=holder)))

    def may_act(self) -> bool:
        return self.leading

    def health(self) -> dict[str, Any]:
        return {"holder": self.lease.lease.row.holder}


NAME = web.AppKey("name", str)


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"served_by": request.app[NAME], "path": request.path,
                              "auth": request.headers.get("Authorization"),
                              "forwarded_by": request.headers.get("Cti-Forwarded-By")})


def node_app(name: str, ha: Lease, settings: Settings) -> web.Application:
    app = web.Application()
    app[NAME] = name
    setup_follow(app, settings, ha)      # type: ignore[arg-type]
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def test_a_standby_with_a_broker_forwards_a_command_to_the_leader_with_the_clients_credential():
    async with TestServer(node_app("a", Lease("a", "a", leading=True), Settings())) as leader:
        peers = f"a=http://127.0.0.1:{leader.port},b=http://127.0.0.1:9"
        settings = Settings(ha_peers=peers, broker_url="nats://127.0.0.1:4222")
        async with TestClient(TestServer(node_app("b", Lease("b", "a"), settings))) as c:
            r = await c.post("/api/acd/agents/a1/state", json={}, headers={"Authorization": "Bearer t0k"})
            got = await r.json()
            assert r.status == 200 and got == {"served_by": "a", "path": "/api/acd/agents/a1/state",
                                               "auth": "Bearer t0k", "forwarded_by": "b"}
            r = await c.get("/healthz")          # its own
            assert (await r.json())["served_by"] == "b"


async def test_a_standby_without_a_broker_refuses_a_command_naming_the_leaders_address():
    settings = Settings(ha_peers="a=http://10.0.0.1:8765,b=http://10.0.0.2:8765")
    async with TestClient(TestServer(node_app("b", Lease("b", "a"), settings))) as c:
        r = await c.post("/api/acd/agents/a1/state", json={})
        body = await r.json()
        assert r.status == 503 and body["error_id"] == "standby"
        assert r.headers["Cti-Leader-Url"] == "http://10.0.0.1:8765" and r.headers["Retry-After"] == "1"
        assert "http://10.0.0.1:8765" in body["message"] and "(a)" in body["message"]
        r = await c.get("/api/calls")
        assert (await r.json())["served_by"] == "b"        # reads from its own warm model


async def test_a_command_forwarded_to_a_node_that_does_not_lead_is_refused_not_sent_back():
    settings = Settings(ha_peers="a=http://10.0.0.1:8765,b=http://10.0.0.2:8765", broker_url="nats://x:1")
    async with TestClient(TestServer(node_app("b", Lease("b", "a"), settings))) as c:
        r = await c.post("/api/acd/agents/a1/state", json={}, headers={"Cti-Forwarded-By": "a"})
        assert r.status == 503 and (await r.json())["error_id"] == "standby"


async def test_cors_answers_the_pairs_origins_only():
    settings = Settings(ha_peers="a=http://10.0.0.1:8765,b=http://10.0.0.2:8765")
    async with TestClient(TestServer(node_app("b", Lease("b", "b", leading=True), settings))) as c:
        r = await c.options("/api/acd/state", headers={"Origin": "http://10.0.0.1:8765",
                                                        "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "authorization"})
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "http://10.0.0.1:8765"
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        r = await c.get("/api/acd/state", headers={"Origin": "http://10.0.0.1:8765"})
        assert r.headers["Access-Control-Allow-Origin"] == "http://10.0.0.1:8765"
        r = await c.get("/api/acd/state", headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in r.headers


def test_a_deposed_leaders_publisher_takes_no_event_and_lets_held_ones_go():
    """A leader paused past its lease and resumed must not add its stale events to the stream
    the new leader publishes (api.broker.BrokerPublisher.may_publish, set by setup_broker)."""
    from api.broker import BrokerPublisher
    from cti.events import Bus

    pub = BrokerPublisher(Bus(), "nats://127.0.0.1:9", cluster="east")
    leading = True
    pub.may_publish = lambda: leading
    pub.on_push({"type": "screenpop", "agent_id": "a1"}, frozenset({"a1"}))
    assert len(pub.outbox) == 1 and pub.bus_seq == 1
    leading = False
    pub.on_push({"type": "screenpop", "agent_id": "a1"}, frozenset({"a1"}))
    assert len(pub.outbox) == 1 and pub.fenced == 1 and pub.bus_seq == 1    # not taken, not numbered
    assert pub.outbox.discard() == 1 and len(pub.outbox) == 0


def test_a_new_leader_publishes_only_the_ends_the_stream_never_told():
    """The stream (NodeState.live) still shows c2 and c3 live: the old leader died before
    publishing their ends; c1's end it published (not live any more): not sent twice."""
    from types import SimpleNamespace as E

    from api.broker import missed_ends
    from api.node_core import NodeState

    state = NodeState()
    for kind, cid in (("call.started", "c1"), ("call.started", "c2"), ("call.started", "c3"), ("call.ended", "c1"),
                      ("acd.offer", "c4")):
        state.feed({"type": kind, "call_id": cid, "data": {}})
    assert list(state.live) == ["c2", "c3"]          # an ACD decision alone makes no live call
    ended = [E(kind="call.ended", call_id=c) for c in ("c1", "c3", "c2", "c9")]
    assert [e.call_id for e in missed_ends(ended, state.live)] == ["c3", "c2"]      # in the model's order


def test_the_live_calls_a_node_keeps_are_bounded():
    from api.node_core import NodeState

    state = NodeState()
    state.LIVE_MAX = 3
    for n in range(5):
        state.feed({"type": "call.started", "call_id": f"c{n}", "data": {}})
    assert list(state.live) == ["c2", "c3", "c4"]
