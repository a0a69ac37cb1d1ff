"""Every name the code uses is defined: a merge that drops an import fails here,
not as a 500 on the one route that needed it."""
from __future__ import annotations

from pathlib import Path

from pyflakes import api as flakes
from pyflakes import messages
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cti", "crm", "acd", "api", "ivr", "recording", "phone", "server", "bench", "scripts")
FATAL = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)


class _Collect(Reporter):
    def __init__(self) -> None:
        self.found: list[str] = []

    def unexpectedError(self, filename, msg):  # noqa: N802 (pyflakes' interface)
        self.found.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        if isinstance(message, FATAL):
            self.found.append(str(message))


def test_no_undefined_names_in_the_code():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50
    out = _Collect()
    for path in files:
        flakes.checkPath(str(path), out)
    assert out.found == []
