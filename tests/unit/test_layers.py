"""Dependencies point inward: ``cti/`` (the Asterisk side and the daemon's core) imports
no feature package and not the composition root above them (docs/architecture.md); the
knowledge base (``kb/``) uses ``cti`` only, and its ranking core no I/O at all."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE_CTI = ("acd", "ivr", "recording", "phone", "api", "crm", "server", "kb", "dialer", "emergency", "messaging", "omni",
             "mail")
# What kb/ may not import: the API and the root sit above it, the other features beside it.
ABOVE_KB = ("acd", "ivr", "recording", "phone", "api", "crm", "server", "dialer")
IO_LIBRARIES = ("asyncio", "asyncpg", "aiohttp", "socket", "subprocess", "os", "time", "markdown_it")
#: The dialer's pure cores (time passed in) and what they must not import: I/O or a clock.
DIALER_CORES = ("leads", "windows", "pacing", "campaign_rules", "board", "blending", "survey", "live_lists")
IO_MODULES = ("asyncio", "asyncpg", "aiohttp", "socket", "time", "subprocess", "server", "api")


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in ``tree``, at any depth (lazy imports too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def reaching_up(source: str) -> list[tuple[int, str]]:
    return [(line, name) for line, name in _imported(ast.parse(source))
            if name.split(".")[0] in ABOVE_CTI]


def test_cti_imports_no_feature_and_not_the_root():
    files = sorted((ROOT / "cti").rglob("*.py"))
    assert len(files) > 10
    found = [f"{path.relative_to(ROOT)}:{line}: {name}"
             for path in files for line, name in reaching_up(path.read_text(encoding="utf-8"))]
    assert found == []


def test_the_check_sees_a_lazy_import_inside_a_function():
    assert reaching_up("def f():\n    from acd.core import Router\n") == [(2, "acd.core")]
    assert reaching_up("import server.root as r\nimport cti.calls\n") == [(1, "server.root")]


def test_kb_imports_only_cti_and_its_ranking_core_no_io():
    found = []
    for path in sorted((ROOT / "kb").rglob("*.py")):
        for line, name in _imported(ast.parse(path.read_text(encoding="utf-8"))):
            if name.split(".")[0] in ABOVE_KB:
                found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert found == []
    core = _imported(ast.parse((ROOT / "kb" / "ranking.py").read_text(encoding="utf-8")))
    assert [name for _, name in core if name.split(".")[0] in IO_LIBRARIES or name.startswith("kb.")] == []


def test_dialer_cores_import_no_io_and_nothing_above_them():
    found = []
    for name in DIALER_CORES:
        path = ROOT / "dialer" / f"{name}.py"
        assert path.is_file(), path
        found += [f"dialer/{name}.py:{line}: {mod}" for line, mod in _imported(ast.parse(path.read_text()))
                  if mod.split(".")[0] in IO_MODULES]
    assert found == []


def test_messaging_cores_import_no_io_and_nothing_above_them():
    """Signatures, the inbound shape, delivery states and the callback form's checks are pure."""
    found = []
    for name in ("core", "callback_form"):
        path = ROOT / "messaging" / f"{name}.py"
        found += [f"messaging/{name}.py:{line}: {mod}" for line, mod in _imported(ast.parse(path.read_text()))
                  if mod.split(".")[0] in IO_MODULES + ("acd", "crm")]
    assert found == []


def test_mail_cores_import_no_io_and_nothing_above_them():
    """mail.parse, mail.sanitize, mail.outbound and mail.transcript are pure: no I/O library,
    no API, no store."""
    found = []
    for name in ("parse", "sanitize", "outbound", "transcript"):
        path = ROOT / "mail" / f"{name}.py"
        found += [f"mail/{name}.py:{line}: {mod}" for line, mod in _imported(ast.parse(path.read_text()))
                  if mod.split(".")[0] in IO_MODULES + ("smtplib", "aiosmtpd", "crm")
                  or mod in ("mail.store", "mail.service", "mail.routes")]
    assert found == []


def test_every_test_file_has_a_name_of_its_own():
    """pytest imports test files by their base name (tests/unit and tests/integration are not
    packages): two files of one name fail the whole run at collection, but each alone passes."""
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        other = seen.setdefault(path.name, str(path.relative_to(ROOT)))
        if other != str(path.relative_to(ROOT)):
            clashes.append(f"{other} and {path.relative_to(ROOT)}")
    assert clashes == []


def test_the_omni_cores_import_no_io_and_nothing_above_them():
    """The chat's core and the channel report's aggregation are pure: no I/O library, no API,
    no store, no service."""
    found = []
    for name in ("chat", "channel_report", "tasks"):
        path = ROOT / "omni" / f"{name}.py"
        found += [f"omni/{name}.py:{line}: {mod}" for line, mod in _imported(ast.parse(path.read_text()))
                  if mod.split(".")[0] in IO_MODULES + ("api", "crm", "server")
                  or mod in ("omni.store", "omni.service", "omni.chat_service", "omni.routes")]
    assert found == []
