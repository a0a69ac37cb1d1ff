"""What a production deployment must not have: ``cti check --production``.

Pure: the settings and the facts the shell gathered (the config file's mode and
text, the AMI user's rights as ``ListCommands`` shows them, pending migrations,
the sandbox's secrets when this machine has them) go in; a list of ``Finding``
comes out, each one line naming the setting and the fix. ``refuse`` findings make
the command exit 2; ``warn`` findings are printed and left to the operator.

Why ``ListCommands``: Asterisk answers it with only the actions the logged-in
user may run, each with ``(Priv: ...)``, so a dangerous write right shows
without trying a dangerous action (manager.c, ``action_listcommands``).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping
from urllib.parse import parse_qs, urlsplit

from cti.config import (
    KNOWN_DEFAULT_SECRETS,
    Settings,
    config_file_problem,
    default_secret_problems,
    secret_file_problems,
)

# Write rights that turn an AMI login into a shell or a config editor (docs/security.md).
DANGEROUS_RIGHTS = ("system", "command", "config", "all")
# The sandbox's own AMI users (asterisk-config/demo/manager-demo.conf).
SANDBOX_USERS = frozenset({"cti-demo", "cti-load"})
MIN_SECRET_LEN = 16


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``level`` refuse (exit 2) or warn; ``text`` says it and the fix."""

    level: Literal["refuse", "warn"]
    text: str


@dataclass(frozen=True, slots=True)
class Facts:
    """What the shell found beside the settings; None means "not known" (no finding).

    ``config_file``: (path, permission bits, text) of the TOML file, if any.
    ``secret_files``: (path, permission bits) of the files in ``CTI_SECRETS_DIR``.
    ``ami_dangerous_actions``: the actions only a dangerous right admits that
    ``ListCommands`` listed for the daemon's AMI user (``dangerous_actions``).
    ``pending_migrations``: versions not yet applied.
    ``sandbox_secrets``: the values in this machine's sandbox secrets file.
    """

    config_file: tuple[str, int, str] | None = None
    secret_files: tuple[tuple[str, int], ...] = ()
    ami_dangerous_actions: tuple[str, ...] | None = None
    pending_migrations: tuple[str, ...] | None = None
    sandbox_secrets: frozenset[str] = frozenset()


def dangerous_actions(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The actions in a ``ListCommands`` reply (``Action: synopsis (Priv: a,b,all)``
    headers) that only a dangerous write right admits, sorted. Asterisk lists an
    action when the user holds any one of its privileges, so an action that also
    admits a harmless one (``CoreShowChannels``: system or reporting) proves
    nothing; ``Command`` (command) or ``UpdateConfig`` (config) does. Pure."""
    found = []
    for action, value in headers.items():
        m = re.search(r"\(Priv:\s*([^)]*)\)\s*$", value)
        if not m:
            continue
        privs = {p.strip().lower() for p in m.group(1).split(",") if p.strip()} - {"all"}
        if privs and privs <= set(DANGEROUS_RIGHTS):
            found.append(action)
    return tuple(sorted(found))


def _address_kind(host: str) -> Literal["loopback", "any", "private", "public", "name"]:
    name = host.strip("[]")
    if name.lower() == "localhost":
        return "loopback"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return "name"
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "any"
    return "public" if ip.is_global else "private"


def _weak(value: str) -> bool:
    return len(value) < MIN_SECRET_LEN or len(set(value)) < 6


def production_findings(settings: Settings, facts: Facts = Facts()) -> list[Finding]:
    """Every finding for ``settings`` and ``facts``, refusals first. Pure."""
    out: list[Finding] = []

    def refuse(text: str) -> None:
        out.append(Finding("refuse", text))

    def warn(text: str) -> None:
        out.append(Finding("warn", text))

    # Secrets: known defaults, then weak ones, then the sandbox's.
    for problem in default_secret_problems(settings):
        refuse(problem)
    ami = settings.ami_secret.get_secret_value()
    if ami.strip().lower() not in KNOWN_DEFAULT_SECRETS and _weak(ami):
        refuse(f"ami_secret (CTI_AMI_SECRET) is weak (under {MIN_SECRET_LEN} characters or few distinct ones): "
               "use e.g. `openssl rand -hex 24`")
    hook = settings.hook_secret.get_secret_value() if settings.hook_secret is not None else ""
    if settings.hooks and not hook:
        refuse("hooks are on but hook_secret (CTI_HOOK_SECRET) is not set: set a random one "
               "(and the same in cti-hook-secret.conf), or CTI_HOOKS=false")
    elif settings.hooks and hook.strip().lower() not in KNOWN_DEFAULT_SECRETS and _weak(hook):
        refuse(f"hook_secret (CTI_HOOK_SECRET) is weak (under {MIN_SECRET_LEN} characters): "
               "use e.g. `openssl rand -hex 24`")
    msg_secret = settings.messaging_secret.get_secret_value() if settings.messaging_secret is not None else ""
    if msg_secret and _weak(msg_secret):
        refuse(f"messaging_secret (CTI_MESSAGING_SECRET) is weak (under {MIN_SECRET_LEN} characters or few "
               "distinct ones): anyone who guesses it can write as any customer; use e.g. `openssl rand -hex 24`")
    if settings.ami_user in SANDBOX_USERS:
        refuse(f"ami_user (CTI_AMI_USER) {settings.ami_user!r} is a sandbox user (demo/load traffic): "
               "use the daemon's own user ('cti' in asterisk-config/manager.conf)")
    used = {ami, hook}
    if settings.database_url is not None:
        try:
            used.add(urlsplit(settings.database_url.get_secret_value()).password or "")
        except ValueError:
            pass
    if (used - {""}) & facts.sandbox_secrets:
        refuse("a secret in use is one of this machine's sandbox secrets "
               "(/var/cache/cti/sandbox-secrets.env): give production its own")

    if facts.config_file is not None:
        problem = config_file_problem(*facts.config_file)
        if problem:
            refuse(problem)
    for problem in secret_file_problems(list(facts.secret_files)):
        refuse(problem)

    # AMI rights: what the login could do if its secret leaked or the daemon were subverted.
    if facts.ami_dangerous_actions:
        shown = ", ".join(facts.ami_dangerous_actions[:5]) + (", ..." if len(facts.ami_dangerous_actions) > 5 else "")
        refuse(f"AMI user {settings.ami_user!r} may run {shown} (write system, command or config: a shell, CLI or "
               "config editor on Asterisk): give it only write = call,agent,originate,reporting "
               "(asterisk-config/manager.conf)")

    # Network exposure: the daemon speaks plain HTTP; TLS belongs to the proxy in front.
    kind = _address_kind(settings.http_host)
    if kind in ("any", "public"):
        refuse(f"http_host (CTI_HTTP_HOST) {settings.http_host} serves plain HTTP on "
               f"{'every interface' if kind == 'any' else 'a public address'}: bind 127.0.0.1 and put "
               "the TLS proxy in front (deploy/Caddyfile, docs/deploy.md)")
    elif kind in ("private", "name"):
        warn(f"http_host (CTI_HTTP_HOST) {settings.http_host} is plain HTTP off this host: "
             "make sure only the TLS proxy can reach it (firewall), or bind 127.0.0.1")
    agi = _address_kind(settings.agi_host)
    if len(settings.ami_nodes) > 1 and agi in ("private", "any"):
        # Several Asterisk nodes: the others reach the IVR across their link; a session is
        # served only from a node's own address, for a live leg of that node's call.
        warn(f"agi_host (CTI_AGI_HOST) {settings.agi_host}: FastAGI has no authentication: sessions are "
             "taken only from the Asterisk nodes' addresses; keep the port closed to anything else (firewall)")
    elif agi != "loopback":
        refuse(f"agi_host (CTI_AGI_HOST) {settings.agi_host}: FastAGI has no authentication: bind 127.0.0.1"
               + (" (with several ami_nodes: a private address)" if len(settings.ami_nodes) > 1 else ""))
    if not settings.ami_nodes and _address_kind(settings.ami_host) != "loopback":
        warn(f"ami_host (CTI_AMI_HOST) {settings.ami_host}: AMI is plain text (secret, caller numbers) "
             "across the network: run the daemon on Asterisk's host, or tunnel it")
    for node in settings.ami_nodes:
        if _address_kind(node.host) != "loopback":
            warn(f"ami_nodes ({node.name}) host {node.host}: AMI is plain text (secret, caller numbers) "
                 "across the network: tunnel it (WireGuard, ssh), or keep the nodes on a private link")
    ws = urlsplit(settings.phone_ws_url)
    if ws.scheme == "ws" and _address_kind(ws.hostname or "") != "loopback":
        refuse(f"phone_ws_url (CTI_PHONE_WS_URL) {settings.phone_ws_url}: browsers only let phones use "
               "wss:// from an https page: use wss://HOST/ws through the TLS proxy")
    if settings.mail_listen is not None:
        mail_host = settings.mail_listen.rpartition(":")[0].strip("[]")
        if _address_kind(mail_host) != "loopback":
            warn(f"mail_listen (CTI_MAIL_LISTEN) {settings.mail_listen}: the mail receiver takes every recipient, "
                 "with no TLS and no spam filtering: bind 127.0.0.1 behind the site's MTA (docs/mail.md)")
    if settings.metrics_access == "open":
        warn("metrics_access (CTI_METRICS_ACCESS) is open: anyone who reaches the port reads /metrics: "
             "use loopback or auth")
    allowed = [n for n in settings.webhook_allow if not ipaddress.ip_network(n).is_global]
    if allowed:
        warn(f"webhook_allow (CTI_WEBHOOK_ALLOW) lets webhooks reach internal networks {', '.join(allowed)}: "
             "an admin's webhook URL can then probe them; list only the CRM's address")

    # Logging: debug lines carry AMI frames and request details.
    if settings.log_level == "debug":
        warn("log_level (CTI_LOG_LEVEL) is debug: lines carry caller numbers and AMI traffic "
             "(secrets are masked, personal data is not): use info")

    # Database.
    if settings.database_url is None:
        warn("database_url (CTI_DATABASE_URL) is unset: the embedded PostgreSQL in state_dir/pg serves one "
             "host only; back it up, or use a managed PostgreSQL")
    else:
        try:
            parts = urlsplit(settings.database_url.get_secret_value())
            host, query = parts.hostname or "", parse_qs(parts.query)
        except ValueError:
            host, query = "", {}
        sslmode = (query.get("sslmode") or [""])[0]
        if host and not host.startswith("/") and _address_kind(host) != "loopback" \
                and sslmode not in ("require", "verify-ca", "verify-full"):
            warn(f"database_url (CTI_DATABASE_URL) reaches {host} without sslmode=require (or verify-full): "
                 "add it unless the network is private to the two hosts")
    if facts.pending_migrations:
        warn(f"{len(facts.pending_migrations)} database migration(s) pending "
             f"({', '.join(facts.pending_migrations)}): run `cti migrate` before the release")

    return [f for f in out if f.level == "refuse"] + [f for f in out if f.level == "warn"]


def render(findings: Iterable[Finding]) -> list[str]:
    """One line per finding, ``REFUSED:`` or ``warning:`` first."""
    return [f"{'REFUSED' if f.level == 'refuse' else 'warning'}: {f.text}" for f in findings]
