"""``cti check`` (what works and what does not; with ``--production`` every finding of
``cti.prodcheck``) and what keeps ``serve`` and ``check`` from starting (docs/security.md)."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from cti.config import Settings
from server.database import open_database, release


def refused_secrets(settings: Settings, config_file: str | None) -> list[str]:
    """What keeps ``serve`` and ``check`` from starting: a known default or empty
    secret, a world-readable config file holding one (docs/security.md)."""
    from cti.config import config_file_problem, default_secret_problems, secret_file_problems, secret_files

    problems = default_secret_problems(settings) + secret_file_problems(secret_files())
    if config_file:
        try:
            mode = os.stat(config_file).st_mode
            problem = config_file_problem(config_file, mode, Path(config_file).read_text(encoding="utf-8"))
        except OSError:
            problem = None       # load_settings already read it; a race is not ours to judge
        if problem:
            problems.append(problem)
    return problems


async def check(settings: Settings, production: bool = False, config_file: str | None = None) -> int:
    """Say clearly what works and what does not; with ``production``, also every
    finding of ``cti.prodcheck`` (exit 2 when one refuses)."""
    from cti.migrate import migrations
    from cti.ami import AmiClient

    ok = True
    dangerous: tuple[str, ...] | None = None
    pending: tuple[str, ...] | None = None
    print("configuration: ok")
    from cti.nodes import node_specs

    nodes = node_specs(settings)
    for node in nodes:
        # One line per Asterisk node (docs/scale-out.md), named when there are several.
        name = f" {node.name}" if len(nodes) > 1 else ""
        ami = AmiClient(node.host, node.port, node.user, node.secret.get_secret_value(),
                        action_timeout=settings.ami_action_timeout)
        await ami.start()
        try:
            await ami.wait_connected(timeout=10)
            reply = await ami.send("CoreShowChannels", shape="list")
            print(f"asterisk{name}: ok ({node.host}:{node.port}, version "
                  f"{ami.health.asterisk_version}, {len(reply.events) - 1} channels up)")
            if production:
                from cti.prodcheck import dangerous_actions

                found = dangerous_actions((await ami.send("ListCommands", shape="single")).response.headers)
                dangerous = tuple(sorted(set(dangerous or ()) | set(found)))
        except Exception as exc:
            ok = False
            print(f"asterisk{name}: FAILED at {node.host}:{node.port} as {node.user!r}: "
                  f"{exc or type(exc).__name__}")
        finally:
            await ami.stop()
    try:
        dsn, server = await open_database(settings)
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                applied = set()
                if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
                    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                pending = tuple(v for v, _ in migrations() if v not in applied)
                version = await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()
            where = "embedded" if server is not None else "configured URL"
            print(f"database: ok ({where}, PostgreSQL {version}; "
                  f"{len(pending)} migrations pending{': run cti migrate' if pending else ''})")
        finally:
            await release(server)
    except Exception as exc:
        ok = False
        print(f"database: FAILED: {type(exc).__name__}: {_without_secrets(str(exc), settings)}")
    if production:
        from cti.prodcheck import Facts, production_findings, render

        from cti.config import secret_files

        facts = Facts(config_file=_config_file_facts(config_file), secret_files=tuple(secret_files()),
                      ami_dangerous_actions=dangerous,
                      pending_migrations=pending, sandbox_secrets=_sandbox_secrets())
        findings = production_findings(settings, facts)
        for line in render(findings):
            print(line)
        refused = sum(f.level == "refuse" for f in findings)
        print(f"production: {'REFUSED' if refused else 'ok'} ({refused} refused, "
              f"{len(findings) - refused} warnings)")
        if refused:
            return 2
    return 0 if ok else 1


def _config_file_facts(path: str | None) -> tuple[str, int, str] | None:
    if not path:
        return None
    try:
        return path, os.stat(path).st_mode, Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def _sandbox_secrets() -> frozenset[str]:
    """This machine's sandbox secrets (none when it has no sandbox), so production can refuse them."""
    from cti import sandbox

    try:
        return frozenset(v for v in sandbox.parse(sandbox.path().read_text(encoding="utf-8")).values() if v)
    except (OSError, UnicodeDecodeError):
        return frozenset()


def _without_secrets(text: str, settings: Settings) -> str:
    secrets = [settings.ami_secret.get_secret_value()]
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        secrets.append(url)
        password = urlsplit(url).password
        if password:
            secrets.append(password)
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "**********")
    return text
