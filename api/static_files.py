"""The web clients' files (/agent/, /wallboard/, /phone/, /docs/): compressed once, cached right.

Each file is read once per change (its size and mtime), its ETag made from its content, and
its gzip and brotli forms made beside it when it is text and they are smaller; a request gets
the smallest its ``Accept-Encoding`` admits, with ``Vary: Accept-Encoding``. Caching
(``cache_control``, pure):

- a file whose name carries a version (``jssip-3.13.8.min.js``, ``uPlot-1.6.32.min.css``,
  vendored and never changed in place) is ``immutable`` for a year;
- everything else (the pages, ``app.js``) is ``no-cache``: the browser revalidates with the
  ETag (``If-None-Match``) or ``Last-Modified`` (``If-Modified-Since``) and gets a 304 with no
  body while it did not change, so a deploy is seen at the next load.

Names are looked up inside the directory only (no ``..``, no hidden files, no directories).
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Callable, Mapping

import brotli
from aiohttp import web

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
         ".svg": "image/svg+xml", ".ico": "image/x-icon", ".png": "image/png", ".txt": "text/plain",
         ".map": "application/json", ".md": "text/plain"}
_TEXT = {".html", ".js", ".css", ".json", ".svg", ".txt", ".map", ".md"}
_VERSIONED = re.compile(r"[-.@]\d+\.\d+(\.\d+)?[.-]")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def cache_control(name: str) -> str:
    """The Cache-Control of the file ``name`` (pure)."""
    return IMMUTABLE if _VERSIONED.search(name.rsplit("/", 1)[-1]) else REVALIDATE


def pick_encoding(accept: str, available: Mapping[str, int]) -> str | None:
    """The smallest of ``available`` (encoding -> size) that ``accept`` (an Accept-Encoding
    value) admits, or None for the identity (pure). ``q=0`` refuses an encoding."""
    admitted = set()
    for part in accept.lower().split(","):
        token, _, params = part.strip().partition(";")
        q = re.search(r"q\s*=\s*([0-9.]+)", params)
        if token and not (q and float(q.group(1) or 0) == 0):
            admitted.add(token.strip())
    choices = [(size, enc) for enc, size in available.items() if enc in admitted]
    return min(choices)[1] if choices else None


@dataclass(frozen=True, slots=True)
class _Entry:
    stamp: tuple[int, int]
    body: bytes
    encoded: dict[str, bytes]
    etag: str
    modified: float


class StaticFiles:
    """Serves ``root``'s files (names matching ``allowed`` if given) with the rules above."""

    def __init__(self, root: Path, *, allowed: frozenset[str] | None = None) -> None:
        self.root = root.resolve()
        self.allowed = allowed
        self._cache: dict[str, _Entry] = {}

    def _fresh(self, name: str, entry: _Entry) -> bool:
        try:
            st = (self.root / name).stat()
        except OSError:
            return False
        return entry.stamp == (st.st_mtime_ns, st.st_size)

    def _load(self, name: str) -> _Entry | None:
        if not _NAME.match(name) or (self.allowed is not None and name not in self.allowed):
            return None
        path = (self.root / name).resolve()
        if self.root not in path.parents or not path.is_file():
            return None
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(name)
        if hit is not None and hit.stamp == stamp:
            return hit
        body = path.read_bytes()
        encoded: dict[str, bytes] = {}
        if path.suffix in _TEXT and len(body) > 256:
            # Brotli's best quality costs seconds on a megabyte (Swagger UI): 9 there, about 10% larger.
            quality = 11 if len(body) <= 65536 else 9
            for enc, data in (("br", brotli.compress(body, quality=quality)), ("gzip", gzip.compress(body, 9, mtime=0))):
                if len(data) < len(body):
                    encoded[enc] = data
        entry = _Entry(stamp, body, encoded, '"' + hashlib.sha256(body).hexdigest()[:20] + '"', st.st_mtime)
        self._cache[name] = entry
        return entry

    async def response(self, request: web.Request, name: str,
                       headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """The answer for ``name`` (404 when there is no such file). A file read and
        compressed anew is so in a thread: the event loop goes on meanwhile."""
        hit = self._cache.get(name)
        entry = hit if hit is not None and self._fresh(name, hit) else await asyncio.to_thread(self._load, name)
        if entry is None:
            raise web.HTTPNotFound()
        suffix = Path(name).suffix
        ctype = TYPES.get(suffix, "application/octet-stream")
        common = {"ETag": entry.etag, "Last-Modified": formatdate(entry.modified, usegmt=True),
                  "Cache-Control": cache_control(name), "Vary": "Accept-Encoding", **(headers or {})}
        if _not_modified(request, entry):
            return web.Response(status=304, headers=common)
        enc = pick_encoding(request.headers.get("Accept-Encoding", ""),
                            {k: len(v) for k, v in entry.encoded.items()})
        body = entry.encoded[enc] if enc else entry.body
        if enc:
            common["Content-Encoding"] = enc
        charset = "utf-8" if suffix in _TEXT else None
        resp = web.Response(body=body, headers=common, content_type=ctype, charset=charset)
        return resp

    def handler(self, name: str | None = None, *, key: str = "name",
                headers: Callable[[web.Request], Mapping[str, str]] | None = None):
        """A GET handler serving ``name``, or the path's ``{key}`` part."""
        async def serve(request: web.Request) -> web.StreamResponse:
            return await self.response(request, name or request.match_info.get(key, ""),
                                 headers(request) if headers else None)
        return serve


def _not_modified(request: web.Request, entry: _Entry) -> bool:
    tags = request.headers.get("If-None-Match")
    if tags is not None:
        return entry.etag in [t.strip().removeprefix("W/") for t in tags.split(",")] or tags.strip() == "*"
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            return int(entry.modified) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False
