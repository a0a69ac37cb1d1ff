"""The ``cti`` command.

    cti serve          run the daemon (migrates the database first)
    cti api-node       an API node: /ws from the broker, the rest forwarded to the leader
                       (docs/scale-out.md)
    cti migrate        apply database migrations and exit
    cti check          validate the configuration and reach Asterisk and PostgreSQL
    cti check --production
                       also refuse default or weak secrets, plain HTTP off loopback, an
                       AMI user with system/command/config rights... (docs/deploy.md)
    cti calls          the latest calls in the database
    cti status [--cluster NAME]
                       the HA lease: leader, epoch, heartbeat age (docs/ha.md)
    cti handover [--cluster NAME] [--timeout S]
                       planned switch-over: the leader stops, releases the lease, a
                       standby takes over at once (docs/ha.md)
    cti demo-traffic   place simulated calls in the sandbox (demo only)
    cti demo-seed      the demo's users and customers (demo only)
    cti users ...      API users and API keys (docs/api.md; bootstrap the first admin)
    cti customers import FILE.csv
                       import customers from CSV, reporting the rows it rejects
    cti tickets import-list FILE --type TYPE
                       one ticket per listed customer, skipping those with one open
    cti pjsip [--write FILE]
                       the PJSIP sections of the agents' phones (docs/softphone.md)
    cti phones list|add|remove ...
                       agents' phones: devices and their secrets
    cti recordings sweep|sample
                       retention sweep, QA sampling (docs/recording.md)
    cti emergency on|off|list|report
                       emergency switches (docs/emergency.md)
    cti dialer import|dnc ...
                       campaign lead lists, the do-not-call list (docs/dialer.md)
    cti campaigns list|create|start|pause|stop|rules|export ...
                       outbound campaigns, their rules, their results as CSV (docs/dialer.md)
    cti kb fill-products [--customer ID]
                       the customers' products from tickets and product: tags (docs/knowledge.md)

Exit codes: 0 fine, 1 a check failed or the daemon failed, 2 invalid configuration.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from typing import Awaitable, Callable, Sequence

import asyncpg
import structlog

from cti import logs
from cti.config import Settings, load_settings
from cti.errors import ConfigError, CtiError
from cti.version import version
from server.check import check, refused_secrets
from server.database import open_database, release

log = structlog.get_logger("cti")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cti", description="CTI server for Asterisk")
    p.add_argument("--config", help="TOML configuration file (or set CTI_CONFIG)")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the daemon")
    sub.add_parser("api-node", help="an API node: /ws from the broker, the rest to the leader (docs/scale-out.md)")
    sub.add_parser("migrate", help="apply database migrations")
    ck = sub.add_parser("check", help="validate configuration and connectivity")
    ck.add_argument("--production", action="store_true",
                    help="also refuse what a production deployment must not have (docs/deploy.md)")
    c = sub.add_parser("calls", help="the latest calls in the database")
    c.add_argument("--last", type=int, default=20, help="how many (default 20)")
    st = sub.add_parser("status", help="the HA lease of each cluster: leader, epoch, heartbeat age")
    st.add_argument("--cluster", help="only this cluster (default: ha_cluster, else all)")
    ho = sub.add_parser("handover", help="planned switch-over: the HA leader hands over to a standby")
    ho.add_argument("--cluster", help="the cluster (default: ha_cluster, else the only one)")
    ho.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the new leader (default 30)")
    t = sub.add_parser("demo-traffic", help="place simulated calls in the sandbox")
    t.add_argument("--rate", type=float, default=0.5, help="calls per second (default 0.5)")
    t.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    t.add_argument("--talk", type=int, nargs=2, default=(3, 8), metavar=("MIN", "MAX"),
                   help="agents' talk time in seconds")
    sub.add_parser("demo-seed", help="the demo's users and customers (demo only; scripts/demo runs it)")
    # The API's accounts live in api/ (the command is a composition root, like serve).
    from api.users_cli import add_parser as add_users_parser

    add_users_parser(sub)
    from phone.cli import add_parsers as add_phone_parsers

    add_phone_parsers(sub)
    cu = sub.add_parser("customers", help="customer records").add_subparsers(dest="customers_command",
                                                                                required=True)
    ci = cu.add_parser("import", help="import customers from a CSV file (docs/customers.md)")
    ci.add_argument("file", help="CSV file with a header line (name,phones,... )")
    ci.add_argument("--country", metavar="CODE", help="country calling code for national numbers (e.g. 49)")
    ci.add_argument("--regions", metavar="A,B", help="the only regions allowed (default: any)")
    ci.add_argument("--report", metavar="FILE", help="also write the rejected rows as CSV (line,reason)")
    ci.add_argument("--dry-run", action="store_true", help="check and count, change nothing")
    tk = sub.add_parser("tickets", help="tickets (work orders)").add_subparsers(dest="tickets_command",
                                                                              required=True)
    tl = tk.add_parser("import-list", help="one ticket per listed customer id, skipping those with one open")
    tl.add_argument("file", help="customer ids, one per line ('-' for standard input; # starts a comment)")
    tl.add_argument("--type", required=True, help="ticket type (e.g. missed_upload)")
    tl.add_argument("--note", help="note on each new ticket (e.g. which upload was missed)")
    tl.add_argument("--types", metavar="FILE", help="ticket types file (TOML; default: the built-in types)")
    from recording.cli import add_parser as add_recordings_parser

    add_recordings_parser(sub)
    from emergency.cli import add_parser as add_emergency_parser

    add_emergency_parser(sub)
    from dialer.cli import add_parser as add_dialer_parser

    add_dialer_parser(sub)
    from dialer.campaigns_cli import add_parser as add_campaigns_parser

    add_campaigns_parser(sub)
    from kb.cli import add_parser as add_kb_parser

    add_kb_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"cti: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    production = args.command == "check" and args.production
    if args.command in ("serve", "check") and not production:
        problems = refused_secrets(settings, args.config or os.environ.get("CTI_CONFIG"))
        if problems:
            for problem in problems:
                print(f"cti: {problem}", file=sys.stderr)
            return 2
    try:
        if args.command == "serve":
            return asyncio.run(_serve(settings))
        if args.command == "api-node":
            return asyncio.run(_api_node(settings))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "check":
            return asyncio.run(check(settings, production, args.config or os.environ.get("CTI_CONFIG")))
        if args.command == "calls":
            return asyncio.run(_calls(settings, args.last))
        if args.command == "status":
            return asyncio.run(_status(settings, args.cluster or settings.ha_cluster))
        if args.command == "handover":
            return asyncio.run(_handover(settings, args.cluster or settings.ha_cluster, args.timeout))
        if args.command == "users":
            return asyncio.run(_users(settings, args))
        if args.command == "demo-seed":
            return asyncio.run(_demo_seed(settings))
        if args.command == "demo-traffic":
            return asyncio.run(_traffic(settings, args.rate, args.duration, tuple(args.talk)))
        if args.command == "customers":
            return asyncio.run(_customers_import(settings, args))
        if args.command == "tickets":
            return asyncio.run(_tickets_import_list(settings, args))
        if args.command in ("pjsip", "phones"):
            return asyncio.run(_phones(settings, args))
        if args.command == "recordings":
            return asyncio.run(_recordings(settings, args))
        if args.command == "emergency":
            from emergency import cli as emergency_cli

            return asyncio.run(_on_database(settings, lambda dsn: emergency_cli.run(args, settings, dsn)))
        if args.command == "dialer":
            from dialer import cli as dialer_cli

            return asyncio.run(_on_database(settings, lambda dsn: dialer_cli.run(args, dsn)))
        if args.command == "campaigns":
            from dialer import campaigns_cli

            return asyncio.run(_on_database(settings, lambda dsn: campaigns_cli.run(args, dsn)))
        if args.command == "kb":
            from kb import cli as kb_cli

            return asyncio.run(_on_database(settings, lambda dsn: kb_cli.run(args, dsn)))
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:      # found while starting (e.g. the hooks without their secret)
        print(f"cti: {exc}", file=sys.stderr)
        return 2
    except CtiError as exc:
        log.error("failed", error=str(exc))
        return 1
    return 2


async def _api_node(settings: Settings) -> int:
    from server import api_node

    try:
        api_node.check(settings)
    except api_node.NodeConfigError as exc:
        print(f"cti: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await api_node.serve(settings, stop)


async def _serve(settings: Settings) -> int:
    # The whole product: every feature on the core, wired by the composition root.
    from server.root import build
    from cti.daemon import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # 75 after an HA step-down: the service manager starts it again as a standby.
    return await serve(settings, stop, build)


async def _migrate(settings: Settings) -> int:
    from cti.migrate import migrate

    dsn, server = await open_database(settings)
    try:
        applied = await migrate(dsn)
        print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
        return 0
    finally:
        await release(server)


async def _status(settings: Settings, cluster: str | None) -> int:
    from cti.lease_pg import format_status, lease_status

    dsn, server = await open_database(settings)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            if not await conn.fetchval("SELECT to_regclass('leadership') IS NOT NULL"):
                print("the database has no leadership table yet: run cti migrate")
                return 1
            rows = await lease_status(conn, cluster)
        finally:
            await conn.close()
    finally:
        await release(server)
    for line in format_status(rows, settings.ha_ttl):
        print(line)
    return 0 if rows else 1


async def _handover(settings: Settings, cluster: str | None, timeout: float) -> int:
    """Ask the leader to hand over, then wait for a higher epoch to lead. 0 once it does;
    1 when nothing leads, the leader changed meanwhile, or no standby took over in time."""
    from cti.lease_pg import handover_progress, request_handover

    dsn, server = await open_database(settings)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            if not await conn.fetchval("SELECT to_regclass('leadership') IS NOT NULL"):
                print("the database has no leadership table yet: run cti migrate")
                return 1
            if cluster is None:
                names = [r["cluster"] for r in await conn.fetch("SELECT cluster FROM leadership")]
                if len(names) != 1:
                    print(f"name the cluster with --cluster (clusters: {', '.join(names) or 'none'})")
                    return 1
                cluster = names[0]
            read = "SELECT holder, epoch, released FROM leadership WHERE cluster = $1"
            row = await conn.fetchrow(read, cluster)
            if row is None or row["released"]:
                print(f"cluster {cluster}: {'no leader' if row is None else 'already released'}: nothing to hand over")
                return 1
            asked = dict(row)
            if not await request_handover(conn, cluster, asked["holder"], asked["epoch"]):
                print(f"cluster {cluster}: the leader changed while asking; run cti status and try again")
                return 1
            t0 = time.monotonic()
            state, text = "asked", ""
            while time.monotonic() - t0 < timeout:
                now = await conn.fetchrow(read, cluster)
                state, text = handover_progress(asked, None if now is None else dict(now))
                if state == "done":
                    print(f"cluster {cluster}: {text} in {time.monotonic() - t0:.2f}s")
                    return 0
                await asyncio.sleep(0.05)
            print(f"cluster {cluster}: not handed over within {timeout:.0f}s: {text}")
            return 1
        finally:
            await conn.close()
    finally:
        await release(server)


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    from api import users_cli
    from cti.migrate import migrate

    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)  # the first admin can be made on a fresh database
        agent_id = getattr(args, "agent_id", None)
        if agent_id and settings.acd_config is not None:
            known = await _known_agents(settings, dsn)
            if agent_id not in known:
                print(f"cti: {agent_id!r} is no agent of the ACD configuration ({settings.acd_config} or its "
                      f"newest stored version); known: {', '.join(sorted(known)) or 'none'}", file=sys.stderr)
                return 1
        return await users_cli.run(args, dsn)
    finally:
        await release(server)


async def _known_agents(settings: Settings, dsn: str) -> set[str]:
    """The agent ids of the ACD configuration file and of its newest stored version (read only)."""
    import asyncpg

    from acd.config import load_config, parse_config
    from acd.config_versions import newest_versions

    assert settings.acd_config is not None
    known = {a.id for a in load_config(settings.acd_config).agents}
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        newest = await newest_versions(pool, limit=1)
    finally:
        await pool.close()
    if newest:
        try:
            known |= {a.id for a in parse_config(newest[0].document).agents}
        except ConfigError:
            pass   # a stored version that no longer validates is not in force either
    return known


async def _demo_seed(settings: Settings) -> int:
    import asyncpg

    from cti.migrate import migrate
    from server.demo_seed import seed

    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            print("\n".join(await seed(conn)))
        finally:
            await conn.close()
        return 0
    finally:
        await release(server)


async def _phones(settings: Settings, args: argparse.Namespace) -> int:
    from cti.migrate import migrate
    from phone import cli as phone_cli

    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)
        if args.command == "phones":
            return await phone_cli.run_phones(args, dsn, settings.phone_realm)
        agents: list[tuple[str, str]] = []
        if settings.acd_config is not None:
            from acd.config import load_config

            agents = [(a.id, a.device) for a in load_config(settings.acd_config).agents]
        return await phone_cli.run_pjsip(args, dsn, settings.phone_realm, agents)
    finally:
        await release(server)


async def _recordings(settings: Settings, args: argparse.Namespace) -> int:
    from cti.migrate import migrate
    from recording import cli as recordings_cli

    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)
        return await recordings_cli.run(args, settings, dsn)
    finally:
        await release(server)


async def _on_database(settings: Settings, run: Callable[[str], Awaitable[int]]) -> int:
    """``run(dsn)`` on the migrated database (an embedded one is started and stopped around it)."""
    from cti.migrate import migrate

    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)
        return await run(dsn)
    finally:
        await release(server)


async def _calls(settings: Settings, last: int) -> int:
    dsn, server = await open_database(settings)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT call_id, state, started_at, caller_num, caller_name, queue, agent,"
                " round(duration_s, 1) AS dur, hangup_cause_txt FROM calls ORDER BY started_at DESC LIMIT $1", last)
            total = await conn.fetchval("SELECT count(*) FROM calls")
        finally:
            await conn.close()
    finally:
        await release(server)
    print(f"{'started (UTC)':19}  {'state':8}  {'caller':32}  {'agent':10}  {'secs':>6}  end")
    for r in reversed(rows):
        caller = f"{r['caller_name'] or ''} <{r['caller_num'] or '?'}>"
        print(f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['state']:8}  {caller[:32]!s:32}  "
              f"{(r['agent'] or '-')[:10]:10}  {r['dur'] if r['dur'] is not None else '':>6}  "
              f"{r['hangup_cause_txt'] or ''}")
    print(f"{total} calls in the database")
    return 0


async def _traffic(settings: Settings, rate: float, duration: float | None, talk: tuple[int, int]) -> int:
    from cti import demo
    from cti.ami import AmiClient

    ami = AmiClient(settings.ami_host, settings.ami_port, demo.DEMO_USER, demo.demo_secret())
    await ami.start()
    try:
        await ami.wait_connected(timeout=15)
        await demo.set_demo_times(ami, ring=(1, 3), talk=talk)
        print(f"placing simulated calls at {rate}/s (Ctrl-C to stop)")
        placed = await demo.run_traffic(ami, rate=rate, duration=duration)
        print(f"placed {placed} calls")
    finally:
        await ami.stop()
    return 0


async def _customers_import(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every row was imported, 1 when some were rejected (the others are
    imported), 2 when the file cannot be read at all (nothing is imported)."""
    import csv

    from cti.migrate import migrate
    from crm.customer_model import CustomerError, read_csv
    from crm.customer_store import import_customers

    country = args.country.lstrip("+") if args.country else None
    if country is not None and not (country.isdigit() and 1 <= len(country) <= 3):
        print(f"cti: --country {args.country!r} is not a country calling code (1 to 3 digits)", file=sys.stderr)
        return 2
    regions = frozenset(r.strip() for r in args.regions.split(",") if r.strip()) if args.regions else None
    try:
        with open(args.file, encoding="utf-8-sig", newline="") as fh:
            rows = read_csv(fh.read())
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cti: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    except CustomerError as exc:
        print(f"cti: {args.file}: {exc}", file=sys.stderr)
        return 2
    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            report = await import_customers(conn, rows, actor="cti customers import", country_code=country,
                                            regions=regions, dry_run=args.dry_run)
        finally:
            await conn.close()
    finally:
        await release(server)
    for r in report.rejected:
        print(f"rejected {r}")
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb} {report.imported} customers ({report.created} new, {report.updated} updated),"
          f" rejected {len(report.rejected)} rows of {len(rows)}")
    if args.report:
        with open(args.report, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["line", "reason"])
            w.writerows([r.line, r.reason] for r in report.rejected)
    return 1 if report.rejected else 0


async def _tickets_import_list(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every listed customer was found (created or skipped as already
    open), 1 when some were unknown, 2 for a bad file, type or note (nothing created)."""
    from cti.migrate import migrate
    from crm.ticket_store import import_list, load_ticket_types
    from crm.tickets import DEFAULT_TYPES, TicketError

    try:
        types = load_ticket_types(args.types) if args.types else DEFAULT_TYPES
        types.get(args.type)
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8-sig") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError, TicketError) as exc:
        print(f"cti: {exc}", file=sys.stderr)
        return 2
    ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    dsn, server = await open_database(settings)
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            result = await import_list(conn, ids, type=args.type, actor="cti tickets import-list",
                                       note=args.note, types=types)
        except TicketError as exc:
            print(f"cti: {exc}", file=sys.stderr)
            return 2
        finally:
            await conn.close()
    finally:
        await release(server)
    for cid in result.unknown:
        print(f"unknown customer {cid!r}")
    print(f"created {len(result.created)} {args.type} tickets, skipped {len(result.skipped_open)} already open,"
          f" {len(result.unknown)} unknown, {len(result.repeated)} repeated")
    return 1 if result.unknown else 0


if __name__ == "__main__":
    sys.exit(main())
