"""Authentication and the session routes: ``setup_auth``.

    POST /api/login    username + password -> a session token (public)
    POST /api/logout   end the session of the token given (any role)
    GET  /api/me       who the credential stands for (any role)

Login answers the same ``invalid_credentials`` whether the user is unknown,
disabled, has no password or gave a wrong one, and checks a password (a dummy
one for unknown users) in every case, so neither the answer nor its timing
tells which usernames exist. Every attempt is counted before its password is
hashed, and failed ones slow further attempts for that username from that
address, from that address, and for that username from addresses that failed
for it (``api/throttle.py``: 429 with Retry-After, answered before any
hashing). argon2 runs in a thread, at most ``HASH_CONCURRENCY`` at a time
(64 MiB each), off the event loop; at most ``HASH_QUEUE`` attempts hash or wait
to, ``HASH_QUEUE_PER_ADDRESS`` of them from one address, and the others are
answered 503 ``busy`` with Retry-After at once.

``setup_auth`` also sets up the API's pool (``api.db``) and the registry
(``app[API]``) the later routes use; see docs/api.md.
"""
from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Annotated, Any, AsyncIterator, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StringConstraints

from api import accounts
from api.client_address import client_address, networks
from api.auth import EVERYONE, Passwords, Principal, BadCredential, credential_from_headers, digest, new_session_token
from api.db import db, query, setup_db
from api.errors import ApiError, unauthenticated
from api.registry import ApiRequest, setup_registry
from api.throttle import HashQueue, LoginThrottle
from cti.daemon import CoreServices

log = structlog.get_logger(__name__)

HASH_CONCURRENCY = 2
HASH_QUEUE = 16                # attempts hashing or waiting to, in all
HASH_QUEUE_PER_ADDRESS = 4     # ... from one client address (a call centre's NAT logs in a few at once)

# Trimmed and lower-cased before the pattern is checked: usernames are case-insensitive.
Username = Annotated[str, BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
                     StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.@-]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    username: Username = Field(description="case-insensitive; letters, digits, _ . @ -")
    password: SecretStr = Field(min_length=1, max_length=1024)


class UserView(BaseModel):
    """A user as the API shows it (never the password hash)."""

    user_id: int
    username: str
    display_name: str
    role: Literal["agent", "supervisor", "qa", "admin"]
    agent_id: str | None = Field(None, description="the ACD agent this user is")
    team: str | None = None


class LoginReply(BaseModel):
    token: str = Field(description="send as 'Authorization: Bearer <token>'; shown once")
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: UserView


class MeReply(BaseModel):
    kind: Literal["session", "api_key"]
    id: int
    name: str = Field(description="the username, or the API key's name")
    display_name: str
    role: Literal["agent", "supervisor", "qa", "admin"]
    agent_id: str | None = None
    team: str | None = None
    expires_at: datetime | None = Field(None, description="when the session ends; null for API keys")


class _Holder:
    """The password hasher (made in ``cleanup_ctx``), the login throttle, and the core
    whose settings login reads at each attempt (trusted proxies, a session's lifetime)."""

    def __init__(self, core: CoreServices) -> None:
        self.core = core
        self.passwords: Passwords | None = None
        self.hashing = asyncio.Semaphore(HASH_CONCURRENCY)
        self.throttle = LoginThrottle()
        self.queue = HashQueue(HASH_QUEUE, HASH_QUEUE_PER_ADDRESS)


AUTH = web.AppKey("api_auth", _Holder)


async def principal_of(app: web.Application, headers: Any) -> Principal | None:
    """The principal of the credential in ``headers``; None without one.
    Raises ``ApiError`` 401 for a bad, unknown, expired or revoked one, 503."""
    try:
        cred = credential_from_headers(headers)
    except BadCredential as exc:
        raise unauthenticated(str(exc)) from None
    if cred is None:
        return None
    principal = await query(accounts.principal_for(db(app), cred))
    if principal is None:
        raise unauthenticated("the session expired or ended, or the API key is revoked or unknown")
    return principal


async def _hash_work(app: web.Application, fn: Any, *args: Any) -> Any:
    holder = app[AUTH]
    async with holder.hashing:
        return await asyncio.to_thread(fn, *args)


def _user_view(u: accounts.User) -> UserView:
    return UserView(user_id=u.user_id, username=u.username, display_name=u.display_name, role=u.role,
                    agent_id=u.agent_id, team=u.team)


async def login(req: ApiRequest[LoginBody, None]) -> LoginReply:
    app = req.app
    holder = app[AUTH]
    assert holder.passwords is not None
    password = req.body.password.get_secret_value()
    username = req.body.username
    request = req.request
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"),
                             networks(holder.core.settings.http_trusted_proxies))
    wait = holder.throttle.attempt(username, address, time.monotonic())
    if wait > 0:
        log.info("login throttled", username=username, address=address, wait_s=round(wait, 1))
        raise ApiError(429, "too_many_attempts", "too many failed logins; try again later",
                       headers={"Retry-After": str(math.ceil(wait))})
    # Counted: from here every way out says what became of the attempt.
    ahead = holder.queue.enter(address)
    if ahead is None:
        holder.throttle.abandoned(username, address)
        log.info("login refused: hash queue full", username=username, address=address)
        raise ApiError(503, "busy", "too many logins at once; try again in a moment",
                       headers={"Retry-After": "1"})
    outcome = "abandoned"
    try:
        candidate = await query(accounts.login_candidate(db(app), username))
        stored = candidate.password_hash if candidate is not None else None
        ok = await _hash_work(app, holder.passwords.verify, stored, password)
        if not ok or candidate is None or candidate.user.disabled:
            outcome = "failed"
            log.info("login refused", username=username, address=address, hashes_ahead=ahead)
            raise ApiError(401, "invalid_credentials", "invalid username or password")
        outcome = "succeeded"
        user = candidate.user
        assert stored is not None
        if holder.passwords.needs_rehash(stored):
            new = await _hash_work(app, holder.passwords.hash, password)
            await query(accounts.set_password_hash_if_unchanged(db(app), user.user_id, stored, new))
    finally:
        holder.queue.leave(address)
        if outcome == "failed":
            holder.throttle.failed(username, address, time.monotonic())
        elif outcome == "succeeded":
            holder.throttle.succeeded(username, address, time.monotonic())
        else:
            holder.throttle.abandoned(username, address)
    token = new_session_token()
    expires = await query(accounts.create_session(db(app), user.user_id, digest(token),
                                                  holder.core.settings.session_ttl))
    log.info("logged in", username=user.username, role=user.role, hashes_ahead=ahead)
    return LoginReply(token=token, expires_at=expires, user=_user_view(user))


async def logout(req: ApiRequest[None, None]) -> None:
    p = req.principal
    assert p is not None
    if p.kind != "session":
        raise ApiError(400, "not_a_session", "an API key does not log out; revoke it with `cti users revoke-key`")
    await query(accounts.end_session(db(req.app), p.credential))
    log.info("logged out", username=p.name)


async def me(req: ApiRequest[None, None]) -> MeReply:
    p = req.principal
    assert p is not None
    expires = datetime.fromtimestamp(p.expires_at, timezone.utc) if p.expires_at is not None else None
    return MeReply(kind=p.kind, id=p.id, name=p.name, display_name=p.display_name, role=p.role,  # type: ignore[arg-type]
                   agent_id=p.agent_id, team=p.team, expires_at=expires)


def setup_auth(app: web.Application, core: CoreServices) -> None:
    """The registry (``/openapi.json``, ``/docs``), the API's pool (``core``'s share),
    authentication, and the login routes. Call after ``build_app`` (the core's database first)."""
    api = setup_registry(app)
    setup_db(app, core)
    holder = _Holder(core)
    app[AUTH] = holder

    async def authenticate(request: web.Request) -> Principal | None:
        return await principal_of(request.app, request.headers)

    api.authenticate = authenticate

    async def team_of(app: web.Application, agent_id: str) -> str | None:
        return await query(db(app).fetchval("SELECT team FROM users WHERE agent_id = $1", agent_id))

    api.team_of = team_of

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        holder.passwords = await asyncio.to_thread(Passwords)
        yield

    app.cleanup_ctx.append(ctx)
    api.add("POST", "/api/login", login, summary="Log in: a session token for a username and password",
            roles=None, body=LoginBody, response=LoginReply, tags=("auth",),
            description="Wrong username and wrong password give the same 401 invalid_credentials. "
                        "After repeated failures for a username or from an address, 429 too_many_attempts "
                        "with Retry-After until the wait is over; 503 busy with Retry-After when too many "
                        "logins are being checked at once. The body must be sent as application/json "
                        "(415 otherwise). docs/api.md, 'Authentication'.")
    api.add("POST", "/api/logout", logout, summary="Log out: end this session", roles=EVERYONE,
            status=204, tags=("auth",))
    api.add("GET", "/api/me", me, summary="Who the credential stands for", roles=EVERYONE,
            response=MeReply, tags=("auth",))
    api.document("GET", "/healthz", summary="AMI, database, model and bus health (503 when unhealthy)",
                 roles=None, operation_id="healthz", tags=("meta",))
