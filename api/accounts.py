"""Users, sessions and API keys in PostgreSQL (migration 0005).

Small queries, each one statement or one transaction. Secrets never come
here: callers pass digests (``api.auth.digest``) and argon2 hashes. Times are
the database's (``now()``), so expiry has one clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

import asyncpg

from api.auth import Credential, Principal
from cti.pg import is_pool

Db = Union[asyncpg.Pool, asyncpg.Connection]

# A session's last_seen_at is written at most this often (not on every request).
TOUCH_EVERY_S = 60


class AccountError(ValueError):
    """A change the database refuses: a duplicate name, an unknown user, a bad value.
    The message says which, without any secret."""


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    username: str
    display_name: str
    role: str
    agent_id: str | None
    team: str | None
    disabled: bool
    created_at: datetime
    has_password: bool


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    user: User
    password_hash: str | None

    def __repr__(self) -> str:
        return f"LoginCandidate({self.user.username!r})"


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


_USER_COLUMNS = ("user_id, username, display_name, role, agent_id, team, disabled, created_at, "
                 "password_hash IS NOT NULL AS has_password")


def _user(row: Any) -> User:
    return User(row["user_id"], row["username"], row["display_name"], row["role"], row["agent_id"],
                row["team"], row["disabled"], row["created_at"], row["has_password"])


def _refused(exc: asyncpg.PostgresError) -> AccountError:
    if isinstance(exc, asyncpg.UniqueViolationError):
        column = (exc.constraint_name or "").split("_")[1:-1]
        return AccountError(f"{'_'.join(column) or 'value'} already taken")
    if isinstance(exc, asyncpg.CheckViolationError):
        return AccountError(f"invalid value ({exc.constraint_name})")
    return AccountError(str(exc).splitlines()[0])


# -- users ---------------------------------------------------------------------

async def create_user(db: Db, *, username: str, display_name: str, role: str, password_hash: str | None,
                      agent_id: str | None = None, team: str | None = None) -> User:
    """Add a user. Raises ``AccountError`` (username or agent id taken, bad value)."""
    try:
        row = await db.fetchrow(
            f"""INSERT INTO users (username, display_name, role, password_hash, agent_id, team)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_USER_COLUMNS}""",
            username, display_name, role, password_hash, agent_id, team)
    except (asyncpg.UniqueViolationError, asyncpg.CheckViolationError) as exc:
        raise _refused(exc) from None
    return _user(row)


async def update_user(db: Db, username: str, **changes: Any) -> User:
    """Change ``display_name``, ``role``, ``agent_id``, ``team``, ``disabled`` or
    ``password_hash``. Disabling a user or setting a password ends their sessions.
    Raises ``AccountError`` (unknown user, value refused)."""
    allowed = {"display_name", "role", "agent_id", "team", "disabled", "password_hash"}
    unknown = set(changes) - allowed
    if unknown:
        raise AccountError(f"cannot change {', '.join(sorted(unknown))}")
    if not changes:
        raise AccountError("nothing to change")
    names = sorted(changes)
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    async with _conn(db) as conn:
        async with conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"UPDATE users SET {sets}, updated_at = now() WHERE username = $1 RETURNING {_USER_COLUMNS}",
                    username, *(changes[n] for n in names))
            except (asyncpg.UniqueViolationError, asyncpg.CheckViolationError) as exc:
                raise _refused(exc) from None
            if row is None:
                raise AccountError(f"no user {username!r}")
            if changes.get("disabled") or "password_hash" in changes or "role" in changes:
                await conn.execute("DELETE FROM sessions WHERE user_id = $1", row["user_id"])
    return _user(row)


async def list_users(db: Db) -> list[User]:
    return [_user(r) for r in await db.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")]


async def get_user(db: Db, username: str) -> User | None:
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
    return None if row is None else _user(row)


async def login_candidate(db: Db, username: str) -> LoginCandidate | None:
    """The user and password hash to check a login against (disabled users too:
    the caller checks the password first, so both failures cost the same)."""
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = $1", username)
    return None if row is None else LoginCandidate(_user(row), row["password_hash"])


async def set_password_hash_if_unchanged(db: Db, user_id: int, old: str, new: str) -> None:
    """Store a rehashed password (new parameters) unless it changed meanwhile.
    Sessions stay: it is the same password."""
    await db.execute("UPDATE users SET password_hash = $3 WHERE user_id = $1 AND password_hash = $2",
                     user_id, old, new)


# -- sessions ------------------------------------------------------------------

async def create_session(db: Db, user_id: int, token_digest: bytes, ttl_s: float) -> datetime:
    """Store a new session; returns when it expires. Expired sessions of the
    same user are swept on the way."""
    async with _conn(db) as conn:
        async with conn.transaction():
            await conn.execute("DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()", user_id)
            return await conn.fetchval(
                """INSERT INTO sessions (token_hash, user_id, expires_at)
                   VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at""",
                token_digest, user_id, float(ttl_s))


async def end_session(db: Db, token_digest: bytes) -> bool:
    """Delete a session; True when it existed."""
    return await db.fetchval("DELETE FROM sessions WHERE token_hash = $1 RETURNING true", token_digest) is True


async def sweep_sessions(db: Db) -> int:
    """Delete every expired session; returns how many."""
    result = await db.execute("DELETE FROM sessions WHERE expires_at <= now()")
    return int(result.split()[-1])


# -- API keys ------------------------------------------------------------------

_KEY_COLUMNS = "key_id, name, role, created_at, revoked_at, last_used_at"


def _key(row: Any) -> ApiKey:
    return ApiKey(row["key_id"], row["name"], row["role"], row["created_at"], row["revoked_at"],
                  row["last_used_at"])


async def create_api_key(db: Db, name: str, role: str, key_digest: bytes) -> ApiKey:
    """Store a new key's digest. Raises ``AccountError`` (name taken, bad value)."""
    try:
        row = await db.fetchrow(f"INSERT INTO api_keys (name, role, key_hash) VALUES ($1, $2, $3) "
                                f"RETURNING {_KEY_COLUMNS}", name, role, key_digest)
    except (asyncpg.UniqueViolationError, asyncpg.CheckViolationError) as exc:
        raise _refused(exc) from None
    return _key(row)


async def revoke_api_key(db: Db, name: str) -> ApiKey:
    """Revoke a key for good (already revoked: unchanged). Raises ``AccountError`` (unknown)."""
    row = await db.fetchrow(f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1 "
                            f"RETURNING {_KEY_COLUMNS}", name)
    if row is None:
        raise AccountError(f"no API key {name!r}")
    return _key(row)


async def list_api_keys(db: Db) -> list[ApiKey]:
    return [_key(r) for r in await db.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY name")]


# -- who is this ---------------------------------------------------------------

async def principal_for(db: Db, cred: Credential) -> Principal | None:
    """The principal a credential stands for, or None when it is unknown,
    expired, revoked, or its user disabled."""
    if cred.kind == "session":
        row = await db.fetchrow(
            """SELECT u.user_id, u.username, u.display_name, u.role, u.agent_id, u.team,
                      extract(epoch FROM s.expires_at)::float8 AS expires,
                      s.last_seen_at < now() - make_interval(secs => $2) AS stale
                 FROM sessions s JOIN users u USING (user_id)
                WHERE s.token_hash = $1 AND s.expires_at > now() AND NOT u.disabled""",
            cred.digest, TOUCH_EVERY_S)
        if row is None:
            return None
        if row["stale"]:
            await db.execute("UPDATE sessions SET last_seen_at = now() WHERE token_hash = $1", cred.digest)
        return Principal("session", row["user_id"], row["username"], row["display_name"], row["role"],
                         row["agent_id"], row["team"], cred.digest, row["expires"])
    row = await db.fetchrow(
        """SELECT key_id, name, role, last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2) AS stale
             FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL""", cred.digest, TOUCH_EVERY_S)
    if row is None:
        return None
    if row["stale"]:
        await db.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = $1", row["key_id"])
    return Principal("api_key", row["key_id"], row["name"], row["name"], row["role"], None, None, cred.digest)


async def still_valid(db: Db, creds: list[Credential]) -> dict[tuple[str, bytes], tuple[str, str | None]]:
    """Which of ``creds`` still stand for someone, in two queries whatever their
    number: ``(kind, digest) -> (role, agent_id)`` for each session not expired
    (its user not disabled) and each key not revoked. Marks them seen, as
    ``principal_for`` does (at most every ``TOUCH_EVERY_S``)."""
    out: dict[tuple[str, bytes], tuple[str, str | None]] = {}
    sessions = [c.digest for c in creds if c.kind == "session"]
    keys = [c.digest for c in creds if c.kind == "api_key"]
    if sessions:
        for r in await db.fetch(
                """SELECT s.token_hash, u.role, u.agent_id FROM sessions s JOIN users u USING (user_id)
                    WHERE s.token_hash = ANY($1::bytea[]) AND s.expires_at > now() AND NOT u.disabled""", sessions):
            out[("session", r["token_hash"])] = (r["role"], r["agent_id"])
        await db.execute("""UPDATE sessions SET last_seen_at = now() WHERE token_hash = ANY($1::bytea[])
                              AND last_seen_at < now() - make_interval(secs => $2)""", sessions, TOUCH_EVERY_S)
    if keys:
        for r in await db.fetch("SELECT key_hash, role FROM api_keys WHERE key_hash = ANY($1::bytea[]) "
                                "AND revoked_at IS NULL", keys):
            out[("api_key", r["key_hash"])] = (r["role"], None)
        await db.execute("""UPDATE api_keys SET last_used_at = now() WHERE key_hash = ANY($1::bytea[]) AND revoked_at
                              IS NULL AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))""",
                         keys, TOUCH_EVERY_S)
    return out


class _conn:
    """``async with _conn(db) as conn``: a connection from a pool, or the connection given."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._ctx: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        if is_pool(self._db):
            self._ctx = self._db.acquire()
            return await self._ctx.__aenter__()
        return self._db

    async def __aexit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            await self._ctx.__aexit__(*exc)
