"""The daemon's version, written in one place: ``pyproject.toml``'s ``version``.

Read from the installed distribution's metadata (an editable install has it too),
so a release changes the number there and nowhere else.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed_version

DISTRIBUTION = "open-cti"


def version() -> str:
    """The installed version ("0.1.0"), or "0+unknown" from a tree that was never installed."""
    try:
        return _installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
