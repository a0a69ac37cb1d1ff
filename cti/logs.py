"""Logging: structlog, JSON in production, readable in a terminal.

Every line logged while handling a call carries ``call_id`` (bound with
``structlog.contextvars.bound_contextvars``). ``redact_secrets`` is the last
guard: any key that names a secret is masked whatever its value.

One line is one event, always: the standard library's loggers (aiohttp's
server and access loggers, asyncio, asyncpg) go through the same processors
and renderer, so a malformed request's traceback becomes the ``exception``
field of one JSON object instead of lines of text in the log.
"""
from __future__ import annotations

import functools
import logging
import sys
from typing import Any, MutableMapping

import structlog

_SECRET_WORDS = ("secret", "password", "passwd", "token", "database_url", "dsn", "authorization")
MASK = "**********"


@functools.lru_cache(maxsize=4096)
def names_secret(key: str) -> bool:
    """Whether a log field named ``key`` holds a secret. Cached: the daemon's lines
    use a few dozen field names, and this ran for every field of every line (a tenth
    of the leader's logging time under load)."""
    low = key.lower()
    return any(word in low for word in _SECRET_WORDS)


def redact_secrets(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask the value of every key that names a secret."""
    for key in event_dict:
        if names_secret(key):
            event_dict[key] = MASK
    return event_dict


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog once for the process."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*chain, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write per line (PrintLogger writes the line and its newline apart: two system
        # calls per call event on stderr, at info level).
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(stream, level, chain, renderer)


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours on the root logger (replaced, not added, when configured again)."""


def _route_stdlib(stream: Any, level: str, chain: list[Any], renderer: Any) -> None:
    """Send the standard library's records (aiohttp, asyncio, asyncpg) through
    ``chain`` and ``renderer``: one line per record, in the same format."""
    handler = _StdlibHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(), *chain],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
