"""An API node forwards every request it does not serve to the leader, as the client sent it (api.node)."""
from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.node import setup_forward


async def leader_app() -> tuple[web.Application, list[web.Request]]:
    seen: list[web.Request] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request)
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path_qs, "body": body.decode(),
                                  "auth": request.headers.get("Authorization"),
                                  "xff": request.headers.get("X-Forwarded-For"),
                                  "upgrade": request.headers.get("Upgrade")},
                                 status=201 if request.method == "POST" else 200,
                                 headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app, seen


async def test_a_request_reaches_the_leader_with_its_credential_body_and_the_clients_address():
    leader, _ = await leader_app()
    async with TestServer(leader) as ls:
        node = web.Application()
        setup_forward(node, str(ls.make_url("/")))
        async with TestClient(TestServer(node)) as c:
            r = await c.post("/api/acd/agents/a1/state?x=1", json={"action": "ready"},
                             headers={"Authorization": "Bearer t0k", "Upgrade": "h2c", "X-Forwarded-For": "10.0.0.9"})
            got = await r.json()
            assert r.status == 201 and r.headers["Retry-After"] == "3"
            assert got["method"] == "POST" and got["path"] == "/api/acd/agents/a1/state?x=1"
            assert got["body"] == '{"action": "ready"}' and got["auth"] == "Bearer t0k"
            assert got["xff"] == "10.0.0.9, 127.0.0.1"       # the client's chain, then who connected here
            assert got["upgrade"] is None                      # hop-by-hop headers stay on this hop


async def test_a_leader_that_does_not_answer_is_a_502_with_a_reason():
    node = web.Application()
    setup_forward(node, "http://127.0.0.1:9")      # discard port: nothing listens
    async with TestClient(TestServer(node)) as c:
        r = await c.get("/api/acd/state")
        assert r.status == 502 and (await r.json())["error_id"] == "leader_unreachable"


async def test_a_large_answer_streams_through_as_the_leader_encoded_it():
    blob = bytes(range(256)) * 8192          # 2 MiB, larger than a request body may be
    gz = b"\x1f\x8b" + blob[:1000]            # not decompressed on the way: passed on as is

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=blob, content_type="audio/wav")

    async def encoded(request: web.Request) -> web.Response:
        return web.Response(body=gz, headers={"Content-Encoding": "gzip", "Content-Type": "text/csv"})

    leader = web.Application()
    leader.router.add_get("/big", big)
    leader.router.add_get("/gz", encoded)
    async with TestServer(leader) as ls:
        node = web.Application()
        setup_forward(node, str(ls.make_url("/")))
        async with TestClient(TestServer(node)) as c:
            r = await c.get("/big")
            assert r.status == 200 and await r.read() == blob and r.headers["Content-Type"] == "audio/wav"
            r = await c.get("/gz", auto_decompress=False)
            assert r.headers["Content-Encoding"] == "gzip" and await r.read() == gz
