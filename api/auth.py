"""Who is asking, and may they: roles, principals, credentials, password hashing.

Pure except for ``Passwords`` (CPU-bound argon2, run in a thread by callers)
and the random source of ``new_session_token``/``new_api_key``.

Credentials, in this order of precedence:

- ``X-API-Key: ctk_...``: an API key (machine clients: CRM, hooks, scrapers).
- ``Authorization: Bearer cts_...``: a session token from ``POST /api/login``.
- ``Authorization: Bearer ctk_...``: an API key given as a bearer token.

The prefixes tell the kinds apart without a database look-up and make leaked
secrets easy to find with a scanner. Tokens and keys are 256-bit random
values: the database keeps their SHA-256 digest only (a slow hash protects
low-entropy secrets; these are not). Passwords are argon2id hashes
(argon2-cffi's defaults, RFC 9106's second recommended profile).

Roles: ``agent``, ``supervisor``, ``qa``, ``admin``. A route names the roles it
admits; nothing is implied (an admin route lists ``admin``), so the
authorisation matrix is what the registry says, and ``docs/api.md`` shows it.
A route that acts on one agent also names its ``AgentScope`` (``over_agent``):
whom among those roles it lets act on which agent.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal, Mapping

import argon2

Role = Literal["agent", "supervisor", "qa", "admin"]
ROLES: tuple[str, ...] = ("agent", "supervisor", "qa", "admin")
EVERYONE = frozenset(ROLES)
STAFF = frozenset({"supervisor", "admin"})
ADMIN = frozenset({"admin"})

SESSION_PREFIX = "cts_"
API_KEY_PREFIX = "ctk_"
API_KEY_HEADER = "X-API-Key"
# 32 random bytes in URL-safe base64: 43 characters.
_SECRET = re.compile(r"^(cts_|ctk_)[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request.

    ``kind`` is ``session`` (a user logged in) or ``api_key``. For a session,
    ``id`` is the user id and ``name`` the username; for a key, its id and name.
    ``agent_id`` is the ACD agent the user is (None for keys and non-agents).
    ``credential`` is the digest of the token or key used (to log out, or to
    re-check a long-lived WebSocket): never the secret itself.
    """

    kind: Literal["session", "api_key"]
    id: int
    name: str
    display_name: str
    role: str
    agent_id: str | None = None
    team: str | None = None
    credential: bytes = b""
    expires_at: float | None = None      # epoch seconds; None: until revoked

    def __repr__(self) -> str:  # never show the credential digest
        return f"Principal({self.kind} {self.name!r} role={self.role})"


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret as presented: ``kind`` says which table holds its digest."""

    kind: Literal["session", "api_key"]
    digest: bytes

    def __repr__(self) -> str:
        return f"Credential({self.kind})"


class BadCredential(ValueError):
    """A header that holds something that cannot be one of our secrets."""


def digest(secret: str) -> bytes:
    """The stored form of a token or key: its SHA-256 (32 bytes)."""
    return hashlib.sha256(secret.encode()).digest()


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _parse(secret: str) -> Credential:
    if not _SECRET.match(secret):
        raise BadCredential("not a session token (cts_...) or API key (ctk_...)")
    kind: Literal["session", "api_key"] = "session" if secret.startswith(SESSION_PREFIX) else "api_key"
    return Credential(kind, digest(secret))


def credential_from_headers(headers: Mapping[str, str]) -> Credential | None:
    """The credential a request carries, or None when it carries none.
    Raises ``BadCredential`` for a malformed one (answered 401 like a wrong one)."""
    key = headers.get(API_KEY_HEADER)
    if key is not None:
        cred = _parse(key.strip())
        if cred.kind != "api_key":
            raise BadCredential(f"{API_KEY_HEADER} takes an API key (ctk_...)")
        return cred
    auth = headers.get("Authorization")
    if auth is None:
        return None
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise BadCredential("use 'Authorization: Bearer <token>'")
    return _parse(value.strip())


def credential_from_text(secret: str) -> Credential:
    """A credential given as plain text (the WebSocket's auth message).
    Raises ``BadCredential``."""
    return _parse(secret.strip())


def admits(principal: Principal | None, roles: frozenset[str] | None) -> Literal["ok", "unauthenticated", "forbidden"]:
    """The authorisation decision for a route admitting ``roles`` (None: public)."""
    if roles is None:
        return "ok"
    if principal is None:
        return "unauthenticated"
    return "ok" if principal.role in roles else "forbidden"


AgentScope = Literal["self", "team"]
"""Who may call a route that acts on one agent (its path names ``{agent_id}``):
``self``: the agent alone; ``team``: the agent, a supervisor of the agent's team
(the team of the user whose ``agent_id`` it is) and admins. The same team rule
decides which recordings a supervisor sees (``api.recording_routes.scope_of``)."""


def needs_agent_team(principal: Principal, agent_id: str, scope: AgentScope) -> bool:
    """Whether ``over_agent`` needs the agent's team to decide (only for a
    supervisor acting on someone else), so the caller looks it up only then."""
    return scope == "team" and principal.role == "supervisor" and principal.agent_id != agent_id


def over_agent(principal: Principal, agent_id: str, scope: AgentScope,
               agent_team: str | None) -> Literal["self", "other"] | None:
    """May ``principal`` act on agent ``agent_id`` under ``scope``? ``self`` (it is
    their own agent), ``other`` (an admin, or a supervisor of the agent's team:
    the action is audited), or None: refused. ``agent_team`` is the agent's
    team (None: the agent has no user or no team, so no supervisor's)."""
    if principal.agent_id is not None and principal.agent_id == agent_id:
        return "self"
    if scope != "team":
        return None
    if principal.role == "admin":
        return "other"
    if principal.role == "supervisor" and principal.team is not None and principal.team == agent_team:
        return "other"
    return None


class Passwords:
    """argon2id hashing. ``verify`` takes about as long whether or not the user
    exists (a missing hash is checked against a dummy one), so timing does not
    tell which usernames exist. CPU- and memory-heavy (64 MiB, ~0.1 s): callers
    run it in a thread, a few at a time."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored`` (None or unreadable: False, same cost)."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except argon2.exceptions.InvalidHashError:
            self._burn(password)
            return False
        except argon2.exceptions.VerificationError:
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except argon2.exceptions.InvalidHashError:
            return True

    def _burn(self, password: str) -> None:
        try:
            self._hasher.verify(self._dummy, password)
        except argon2.exceptions.VerificationError:
            pass
