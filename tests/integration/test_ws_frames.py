"""The hub's ready-made WebSocket frames, read by a real aiohttp client.

``api.ws.text_frame`` writes frames straight to the socket (the fan-out
path), bypassing aiohttp's writer: this checks that a standard client reads
them, at each of the three length encodings and back to back in one write.
"""
from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from api.ws import text_frame

TEXTS = ["", "x" * 125, "é" * 63, "y" * 126, "z" * 65535, "w" * 65536, '{"seq":1,"type":"call.offered","n":"Zoë"}']


async def test_frames_written_directly_are_read_by_a_standard_client(unused_tcp_port):
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        request.transport.write(text_frame(TEXTS[0]))                     # one frame per write
        request.transport.write(b"".join(text_frame(t) for t in TEXTS[1:]))   # a burst in one write
        await ws.send_str("after")                                        # aiohttp's own writer still works
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"http://127.0.0.1:{unused_tcp_port}/ws", max_msg_size=0) as ws:
                got = []
                for _ in range(len(TEXTS) + 1):
                    msg = await asyncio.wait_for(ws.receive(), 5)
                    assert msg.type == aiohttp.WSMsgType.TEXT
                    got.append(msg.data)
                assert got == TEXTS + ["after"]
    finally:
        await runner.cleanup()
