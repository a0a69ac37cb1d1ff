"""Reading the recording file (``recording_config``, TOML) into a ``RecordingConfig``.

The shape (docs/recording.md explains each field)::

    mode = "queues"            # "all", "queues" or "on_demand" (the default)
    start_at = "agent_answer"  # or "call_answer": IVR and hold music recorded too
    sides = "mixed"            # or "agent" / "caller": one party only
    retention_days = 90

    [queues.billing]
    record = true
    sides = "agent"
    retention_days = 30

    [qa]
    share = 0.1
    [[qa.criteria]]
    id = "greeting"
    label = "Greeting"
    weight = 1
    max = 5
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cti.config import read_toml
from cti.errors import ConfigError
from recording.policy import RecordingConfig


def parse_config(data: Any, source: str = "recording config") -> RecordingConfig:
    """Validate a parsed document. Raises ``ConfigError`` naming every bad entry."""
    try:
        return RecordingConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"]) or "(top)"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | os.PathLike[str] | None) -> RecordingConfig:
    """The recording configuration in ``path`` (None: the defaults).
    Raises ``ConfigError`` for a missing, unreadable or invalid file."""
    if path is None:
        return RecordingConfig()
    data = read_toml(path, "recording config")
    return parse_config(data, source=f"recording config {str(Path(path))!r}")
