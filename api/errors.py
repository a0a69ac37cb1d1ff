"""API errors: one exception, rendered as one JSON shape.

Every error the API answers has a status, a stable ``error_id`` a client can
branch on, a human ``message``, and optional ``details`` (for ``invalid_body``:
one entry per bad field, ``{"field": "username", "message": ..., "type": ...}``)::

    {"error_id": "forbidden", "message": "this needs the role admin or supervisor", "details": []}

Error ids used by the API core (routes add their own):

====================== ====== ====================================================
unauthenticated        401    no credentials, or unknown, expired or revoked ones
invalid_credentials    401    login: wrong username or password (never says which)
forbidden              403    authenticated, but the route needs another role
not_found              404    no such route (or resource)
method_not_allowed     405    the route exists with other methods
invalid_json           400    the body is not JSON
invalid_body           422    the body (or query) does not match the model: see details
payload_too_large      413    the body is larger than the route allows
unsupported_media_type 415    a public route's body not sent as application/json
upgrade_required       426    /ws asked without a WebSocket Upgrade
unavailable            503    the database did not answer in time
internal               500    a bug; the log has the traceback, the answer nothing more
====================== ====== ====================================================
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    field: str = Field(description="dotted path of the bad field, e.g. 'body.username'")
    message: str
    type: str = Field(description="pydantic's error type, e.g. 'missing', 'string_too_long'")


class ErrorReply(BaseModel):
    """The body of every error answer."""

    error_id: str = Field(description="stable id to branch on")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ApiError(Exception):
    """An answer other than success; raise it from a handler."""

    def __init__(self, status: int, error_id: str, message: str,
                 details: list[ErrorDetail] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def reply(self) -> ErrorReply:
        return ErrorReply(error_id=self.error_id, message=self.message, details=self.details)

    def response(self) -> web.Response:
        return web.json_response(self.reply().model_dump(mode="json"), status=self.status,
                                 headers=self.headers)


def unauthenticated(message: str = "log in first: give a session token or an API key") -> ApiError:
    # RFC 9110: a 401 names the scheme the client should use.
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": 'Bearer realm="cti"'})


def forbidden(roles: Any) -> ApiError:
    return ApiError(403, "forbidden", f"this needs the role {' or '.join(sorted(roles))}")


def validation_details(exc: Any, prefix: str) -> list[ErrorDetail]:
    """``ErrorDetail``s of a pydantic ``ValidationError``, fields prefixed (``body.``, ``query.``)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"])
        out.append(ErrorDetail(field=f"{prefix}.{path}" if path else prefix, message=err["msg"], type=err["type"]))
    return out
