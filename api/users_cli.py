"""``cti users ...``: manage API users and keys from the command line (bootstrap the first admin).

    cti users add NAME --role admin [--display-name "..."] [--agent-id a1] [--team t] [--no-password]
    cti users passwd NAME            set a new password (ends the user's sessions)
    cti users set NAME [--role R] [--display-name D] [--agent-id A|--no-agent-id] [--team T]
    cti users disable NAME | enable NAME
    cti users list
    cti users api-key NAME --role R  create an API key; printed once, never stored
    cti users api-keys               list keys (never the keys themselves)
    cti users revoke-key NAME

Passwords are read from the terminal (asked twice) or, when standard input is
not a terminal, from its first line: never from the command line, where
``ps`` and shell history would keep them.
"""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, Callable

import asyncpg

from api import accounts
from api.auth import ROLES, Passwords, digest, new_api_key

MIN_PASSWORD = 8


def add_parser(sub: Any) -> None:
    u = sub.add_parser("users", help="API users and API keys (bootstrap the first admin)")
    us = u.add_subparsers(dest="users_command", required=True)
    a = us.add_parser("add", help="add a user (asks for the password)")
    a.add_argument("username")
    a.add_argument("--role", choices=ROLES, required=True)
    a.add_argument("--display-name", help="default: the username")
    a.add_argument("--agent-id", help="the ACD agent this user is (agents)")
    a.add_argument("--team")
    a.add_argument("--no-password", action="store_true", help="no password login (set one later with passwd)")
    p = us.add_parser("passwd", help="set a user's password (ends their sessions)")
    p.add_argument("username")
    s = us.add_parser("set", help="change a user's role, name, agent id or team (ends their sessions on a role change)")
    s.add_argument("username")
    s.add_argument("--role", choices=ROLES)
    s.add_argument("--display-name")
    s.add_argument("--agent-id")
    s.add_argument("--no-agent-id", action="store_true")
    s.add_argument("--team")
    for name, what in (("disable", "disable a user (ends their sessions)"), ("enable", "enable a user again")):
        x = us.add_parser(name, help=what)
        x.add_argument("username")
    us.add_parser("list", help="list users")
    k = us.add_parser("api-key", help="create an API key (printed once)")
    k.add_argument("name")
    k.add_argument("--role", choices=ROLES, required=True)
    us.add_parser("api-keys", help="list API keys")
    r = us.add_parser("revoke-key", help="revoke an API key for good")
    r.add_argument("name")


def read_password(prompt: Callable[[str], str] = getpass.getpass, stdin: Any = None) -> str:
    """A new password from the terminal (asked twice) or stdin's first line.
    Raises ``ValueError`` (too short, mismatch, empty input)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = prompt("new password: ")
        if prompt("again: ") != first:
            raise ValueError("the passwords differ")
    else:
        first = stdin.readline().rstrip("\r\n")
    if len(first) < MIN_PASSWORD:
        raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
    if len(first) > 1024:
        raise ValueError("a password has at most 1024 characters")
    return first


def _when(dt: Any) -> str:
    return "-" if dt is None else f"{dt:%Y-%m-%d %H:%M}"


async def run(args: argparse.Namespace, dsn: str, out: Any = None) -> int:
    """Carry out one ``cti users`` command. Returns the exit code (1: refused, with why on stderr)."""
    out = out or sys.stdout
    cmd = args.users_command
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if cmd == "add":
            hashed = None
            if not args.no_password:
                hashed = Passwords().hash(read_password())
            u = await accounts.create_user(conn, username=args.username.strip().lower(),
                                           display_name=args.display_name or args.username, role=args.role,
                                           password_hash=hashed, agent_id=args.agent_id, team=args.team)
            print(f"added user {u.username} ({u.role}{', agent ' + u.agent_id if u.agent_id else ''})", file=out)
        elif cmd == "passwd":
            u = await accounts.update_user(conn, args.username.lower(), password_hash=Passwords().hash(read_password()))
            print(f"password set for {u.username}; their sessions ended", file=out)
        elif cmd == "set":
            changes: dict[str, Any] = {}
            if args.role:
                changes["role"] = args.role
            if args.display_name:
                changes["display_name"] = args.display_name
            if args.agent_id:
                changes["agent_id"] = args.agent_id
            if args.no_agent_id:
                changes["agent_id"] = None
            if args.team:
                changes["team"] = args.team
            u = await accounts.update_user(conn, args.username.lower(), **changes)
            print(f"updated {u.username}: {u.role}, agent {u.agent_id or '-'}, team {u.team or '-'}", file=out)
        elif cmd in ("disable", "enable"):
            u = await accounts.update_user(conn, args.username.lower(), disabled=cmd == "disable")
            print(f"{u.username} {cmd}d", file=out)
        elif cmd == "list":
            print(f"{'username':20}  {'role':10}  {'agent':10}  {'team':10}  {'state':8}  name", file=out)
            for u in await accounts.list_users(conn):
                state = "disabled" if u.disabled else ("active" if u.has_password else "no-pass")
                print(f"{u.username:20}  {u.role:10}  {u.agent_id or '-':10}  {u.team or '-':10}  {state:8}  "
                      f"{u.display_name}", file=out)
        elif cmd == "api-key":
            key = new_api_key()
            k = await accounts.create_api_key(conn, args.name, args.role, digest(key))
            print(f"API key {k.name} ({k.role}); shown once, store it now:\n{key}", file=out)
        elif cmd == "api-keys":
            print(f"{'name':24}  {'role':10}  {'created':16}  {'last used':16}  revoked", file=out)
            for k in await accounts.list_api_keys(conn):
                print(f"{k.name:24}  {k.role:10}  {_when(k.created_at):16}  {_when(k.last_used_at):16}  "
                      f"{_when(k.revoked_at)}", file=out)
        elif cmd == "revoke-key":
            k = await accounts.revoke_api_key(conn, args.name)
            print(f"API key {k.name} revoked at {_when(k.revoked_at)}", file=out)
        else:
            print(f"cti users: unknown command {cmd}", file=sys.stderr)
            return 2
    except (accounts.AccountError, ValueError) as exc:
        print(f"cti users {cmd}: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    return 0
