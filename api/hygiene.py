"""HTTP hygiene: the headers every answer gets, and what /healthz tells whom.

One ``on_response_prepare`` hook, run for every answer of the app just before
its headers go out (static files, WebSockets and streamed answers included):

- ``X-Content-Type-Options: nosniff`` everywhere;
- ``Server: open-cti``, with no version (also aiohttp's default, so that the
  answers it writes itself to malformed requests say no more);
- HTML pages without a policy of their own (``/wallboard/``, ``/phone/``) get
  ``PAGE_CSP``: scripts, styles and connections from this origin only, no
  framing (``frame-ancestors 'none'``, and ``X-Frame-Options`` for old
  browsers), no ``<base>``, no form posts; ``/phone/`` may also connect to the
  browser phones' WebSocket (the origin of ``phone_ws_url``);
- answers under ``/api/`` that say nothing about caching get
  ``Cache-Control: no-store``: tokens (``/api/login``), API keys, phone
  passwords and personal data stay out of browser and proxy caches.

``/healthz`` leaves out versions (Asterisk's) unless the caller shows a
supervisor's or admin's credential (``HEALTH_DETAIL``).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web, web_response

from api.errors import ApiError
from api.follow_core import connect_sources
from api.registry import API
from cti.daemon import CORE, HEALTH_DETAIL

SERVER = "open-cti"
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'{connect}; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")


def page_csp(path: str, phone_ws_url: str, peers: str = "") -> str:
    """The Content-Security-Policy of an HTML page at ``path``; ``peers``: an HA pair's nodes
    (``api.follow_core.connect_sources``), which the wallboard may move to."""
    connect = ""
    if path.startswith("/phone/"):
        u = urlsplit(phone_ws_url)
        connect = f" {u.scheme}://{u.netloc}"
    elif path.startswith("/wallboard/"):
        connect = peers
    return PAGE_CSP.format(connect=connect)


def security_headers(path: str, content_type: str, headers: Any, phone_ws_url: str, peers: str = "") -> None:
    """Add the headers above to ``headers`` (a mutable mapping) of an answer to
    ``path`` with ``content_type``; what a route set itself stays."""
    headers["Server"] = SERVER
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if content_type == "text/html":
        headers.setdefault("Content-Security-Policy", page_csp(path, phone_ws_url, peers))
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
    if path == "/api" or path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")


def setup_hygiene(app: web.Application) -> None:
    """Add the hook to ``app`` and the credential check behind ``/healthz``'s details."""
    # The answers aiohttp writes before any route is found (a malformed request)
    # take their Server header from this default: no version there either.
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]

    peers = connect_sources([url for _, url in app[CORE].settings.ha_peers])

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        security_headers(request.path, response.content_type, response.headers,
                         request.app[CORE].settings.phone_ws_url, peers)

    async def staff(request: web.Request) -> bool:
        if API not in request.app:
            return False
        try:
            who = await request.app[API].authenticate(request)
        except ApiError:
            return False
        return who is not None and who.role in ("supervisor", "admin")

    app.on_response_prepare.append(on_prepare)
    app[HEALTH_DETAIL] = staff
