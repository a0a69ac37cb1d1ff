"""HTTP hygiene on the real daemon: page policies, no caching of credentials, no versions
for strangers (api/hygiene.py; docs/security.md, "HTTP hygiene")."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import add_user, bearer, login, url

PAGES = ("/wallboard/", "/wallboard/reports.html", "/wallboard/staffing.html", "/phone/", "/agent/")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def daemon(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path))
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "sam", "supervisor")
    try:
        yield d
    finally:
        await d.stop()


async def test_every_page_forbids_framing_inline_code_and_sniffing(daemon, http):
    for path in PAGES:
        async with http.get(url(daemon, path)) as r:
            assert r.status == 200 and r.content_type == "text/html", path
            csp = r.headers.get("Content-Security-Policy", "")
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (path, csp)
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (path, csp)
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path
    async with http.get(url(daemon, "/phone/")) as r:     # the browser phone reaches Asterisk's WebSocket
        assert "connect-src 'self' ws://127.0.0.1:8088;" in r.headers["Content-Security-Policy"]
    async with http.get(url(daemon, "/wallboard/wallboard.js")) as r:
        assert r.headers.get("X-Content-Type-Options") == "nosniff" and "javascript" in r.content_type


async def test_answers_carrying_credentials_are_not_stored(daemon, http):
    async with http.post(url(daemon, "/api/login"), json={"username": "ada", "password": "correct horse battery"}) as r:
        assert r.status == 200 and "token" in await r.json()
        assert r.headers.get("Cache-Control") == "no-store"
    async with http.post(url(daemon, "/api/login"), json={"username": "ada", "password": "wrong"}) as r:
        assert r.status == 401 and r.headers.get("Cache-Control") == "no-store"
    token = await login(http, daemon, "ada")
    async with http.get(url(daemon, "/api/me"), headers=bearer(token)) as r:
        assert r.status == 200 and r.headers.get("Cache-Control") == "no-store"


async def test_strangers_learn_no_versions(daemon, http):
    for path in ("/healthz", "/api/me", "/no/such/page", "/wallboard/"):
        async with http.get(url(daemon, path)) as r:
            assert r.headers.get("Server") == "open-cti", (path, r.headers.get("Server"))
    async with http.get(url(daemon, "/healthz")) as r:
        body = await r.json()
        assert body["ami"]["logged_in"] is True and "asterisk_version" not in body["ami"]
        assert "aiohttp" not in str(body) and "Python" not in str(body)
    agent = await login(http, daemon, "ada")
    async with http.get(url(daemon, "/healthz"), headers=bearer(agent)) as r:
        assert "asterisk_version" not in (await r.json())["ami"]
    supervisor = await login(http, daemon, "sam")
    async with http.get(url(daemon, "/healthz"), headers=bearer(supervisor)) as r:
        assert (await r.json())["ami"]["asterisk_version"]
    # A malformed request: aiohttp answers it itself, before any route.
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.settings.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n")
    await writer.drain()
    answer = (await asyncio.wait_for(reader.read(), 10)).decode(errors="replace")
    writer.close()
    assert answer.split(" ")[1] == "400"
    assert "Server: open-cti\r\n" in answer and "aiohttp" not in answer and "Python" not in answer


STATIC = {   # a file of each web client, and the Cache-Control it gets (api/static_files.py)
    "/agent/app.js": "no-cache", "/agent/": "no-cache", "/wallboard/wallboard.js": "no-cache",
    "/wallboard/vendor/uPlot-1.6.32.min.js": "public, max-age=31536000, immutable",
    "/phone/phone.js": "no-cache", "/phone/vendor/jssip-3.13.8.min.js": "public, max-age=31536000, immutable",
    "/docs": "no-cache", "/docs/vendor/swagger-ui-bundle-5.36.0.js": "public, max-age=31536000, immutable",
}


async def test_web_client_files_are_compressed_and_cached_by_their_rules(daemon):
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for path, cache in STATIC.items():
            async with http.get(url(daemon, path), headers={"Accept-Encoding": "gzip, deflate, br"}) as r:
                raw = await r.read()
                assert r.status == 200, path
                assert r.headers.get("Content-Encoding") == "br", path
                assert r.headers.get("Cache-Control") == cache, path
                assert r.headers.get("Vary") == "Accept-Encoding", path
                etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
            async with http.get(url(daemon, path), headers={"Accept-Encoding": "identity"}) as plain:
                assert len(raw) < len(await plain.read()) / 2, path     # text: brotli at least halves it
            async with http.get(url(daemon, path), headers={"If-None-Match": etag}) as again:
                assert again.status == 304 and await again.read() == b"", path
            async with http.get(url(daemon, path), headers={"If-Modified-Since": modified}) as again:
                assert again.status == 304, path
        async with http.get(url(daemon, "/phone/vendor/jssip-3.13.8.min.js"),
                            headers={"Accept-Encoding": "gzip"}) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            print("jssip bytes over the wire, gzip:", len(await r.read()))
