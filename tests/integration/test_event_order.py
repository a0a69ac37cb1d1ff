"""One call's events reach a WebSocket client and a webhook receiver in ``seq`` order,
through a real call routed by the daemon's ACD (the bus queues the ACD's reactions
behind the event they follow; docs/architecture.md, "The bus")."""
from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from api.webhook_service import WEBHOOKS
from cti.demo import set_demo_times
from tests.integration.conftest import daemon_settings, eventually, http_receiver, hangup_all, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, read_until, sales_call, url, ws_open


async def test_a_websocket_client_and_a_webhook_get_one_calls_events_in_seq_order(
        asterisk, database, tmp_path, demo_ami):
    hangup_all()
    hooked: list[dict] = []

    async def receive(request: web.Request) -> web.Response:
        hooked.append(json.loads(await request.read()))
        return web.Response(status=204)

    runner, port = await http_receiver("/hook", receive)
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0,
                                           # the webhook receiver listens on loopback
                                           webhook_allow="127.0.0.0/8"))
    try:
        await eventually(lambda: d.acd is not None and d.acd.heartbeats > 0, timeout=10)
        await set_demo_times(demo_ami, ring=(0, 1), talk=(1, 2))
        for agent in ("a2", "a3", "a4", "a5"):
            d.acd.agent_request(agent, "set_not_ready", "test")
        await add_user(database, "root", "admin")
        await add_user(database, "sam", "supervisor")
        async with aiohttp.ClientSession() as http:
            admin = bearer(await login(http, d, "root"))
            body = {"url": f"http://127.0.0.1:{port}/hook", "events": ["*"]}
            async with http.post(url(d, "/api/webhooks"), json=body, headers=admin) as r:
                assert r.status == 201, await r.text()
            await eventually(lambda: len(d.runner.app[WEBHOOKS].subs) == 1, 5, what="the subscription live")
            ws = await ws_open(http, d, await login(http, d, "sam"))
            await read_until(ws, lambda m: m["type"] == "hello", 5, [])

            placed = await sales_call(demo_ami, 7)
            cid = placed.channel_id
            seen = await read_until(ws, lambda m: m.get("call_id") == cid and m["type"] == "call.ended", 40, [])
            await ws.close()
            await eventually(lambda: any(p["call_id"] == cid and p["type"] == "call.ended" for p in hooked), 20,
                             what="call.ended delivered to the webhook")

        # Call events (a screen-pop names the call too, but is the desktop's message, not numbered).
        pushed = [(m["call_seq"], m["type"]) for m in seen if m.get("call_id") == cid and "call_seq" in m]
        posted = [(p["call_seq"], p["type"]) for p in hooked if p["call_id"] == cid]
        kinds = [k for _, k in pushed]
        # Routed by the ACD: its offer follows the queueing that caused it.
        assert kinds.index("call.queued") < kinds.index("acd.offer") < kinds.index("call.connected")
        assert [s for s, _ in pushed] == sorted({s for s, _ in pushed})      # strictly rising
        assert [s for s, _ in posted] == sorted({s for s, _ in posted})
        # The same events in the same order (webhooks leave out call.state).
        assert posted == [(s, k) for s, k in pushed if k != "call.state"]
    finally:
        await d.stop()
        await runner.cleanup()
        await set_demo_times(demo_ami)
