"""The web clients' files: encoding chosen by Accept-Encoding, cache rules by name, and the
answers (compressed bodies, ETag, 304) through a real aiohttp server on loopback."""
from __future__ import annotations

import gzip

import aiohttp
import brotli
from aiohttp import web

from api.static_files import IMMUTABLE, REVALIDATE, StaticFiles, cache_control, pick_encoding


def test_versioned_vendor_files_are_immutable_and_the_rest_revalidates():
    assert cache_control("vendor/jssip-3.13.8.min.js") == IMMUTABLE
    assert cache_control("vendor/uPlot-1.6.32.min.css") == IMMUTABLE
    assert cache_control("app.js") == REVALIDATE
    assert cache_control("index.html") == REVALIDATE
    assert cache_control("vendor/LICENSES.txt") == REVALIDATE


def test_the_smallest_admitted_encoding_wins_and_q0_refuses():
    sizes = {"br": 10, "gzip": 12}
    assert pick_encoding("gzip, deflate, br", sizes) == "br"
    assert pick_encoding("gzip", sizes) == "gzip"
    assert pick_encoding("br;q=0, gzip;q=0.5", sizes) == "gzip"
    assert pick_encoding("", sizes) is None
    assert pick_encoding("identity", sizes) is None


async def test_answers_are_compressed_tagged_and_revalidated(tmp_path):
    (tmp_path / "app.js").write_text("console.log('hello');\n" * 200)
    (tmp_path / "lib-1.2.3.min.js").write_text("x" * 1000)
    (tmp_path / ".secret").write_text("no")
    files = StaticFiles(tmp_path)
    app = web.Application()
    app.router.add_get("/s/{path:.+}", files.handler(key="path"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}/s/"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            async with s.get(base + "app.js", headers={"Accept-Encoding": "gzip, br"}) as r:
                assert r.status == 200 and r.headers["Content-Encoding"] == "br"
                assert brotli.decompress(await r.read()).startswith(b"console.log")
                assert r.headers["Cache-Control"] == "no-cache" and r.headers["Vary"] == "Accept-Encoding"
                assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
                etag = r.headers["ETag"]
            async with s.get(base + "app.js", headers={"Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Encoding"] == "gzip" and r.headers["ETag"] == etag
                assert gzip.decompress(await r.read()).startswith(b"console.log")
            async with s.get(base + "app.js", headers={"Accept-Encoding": "identity"}) as r:
                assert "Content-Encoding" not in r.headers and len(await r.read()) == 22 * 200
            async with s.get(base + "app.js", headers={"If-None-Match": etag}) as r:
                assert r.status == 304 and await r.read() == b""
            async with s.get(base + "app.js", headers={"If-Modified-Since": r.headers["Last-Modified"]}) as r:
                assert r.status == 304
            async with s.get(base + "lib-1.2.3.min.js") as r:
                assert r.headers["Cache-Control"] == IMMUTABLE
            for bad in (".secret", "../etc/passwd", "nope.js", "%2e%2e/app.js"):
                async with s.get(base + bad) as r:
                    assert r.status == 404, bad
        (tmp_path / "app.js").write_text("changed")   # a deploy: a new tag at once
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "app.js", headers={"If-None-Match": etag}) as r:
                assert r.status == 200 and await r.text() == "changed" and r.headers["ETag"] != etag
    finally:
        await runner.cleanup()
