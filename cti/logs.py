"""Logging: structlog, JSON in production, readable in a terminal.

Every line logged while handling a call carries ``call_id`` (bound with
``structlog.contextvars.bound_contextvars``). ``redact_secrets`` is the last
guard: any key that names a secret is masked whatever its value.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, MutableMapping

import structlog

_SECRET_WORDS = ("secret", "password", "passwd", "token", "database_url", "dsn", "authorization")
MASK = "**********"


def redact_secrets(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask the value of every key that names a secret."""
    for key in event_dict:
        low = key.lower()
        if any(word in low for word in _SECRET_WORDS):
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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write per line (PrintLogger writes the line and its newline apart: two system
        # calls per call event on stderr, at info level).
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
