"""What the ticket, customer and engineer routes share: their roles, the strict body base,
the id field, the acting user's name, the 422 for a bad field, and recording ids of links."""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.errors import ApiError, ErrorDetail
from api.registry import ApiRequest
from crm.tickets import InvalidCommand

#: Who works tickets, customers and engineers: agents, supervisors, admins (QA reviewers do not).
CRM_ROLES = frozenset({"agent", "supervisor", "admin"})

Id = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")


class StrictBody(BaseModel):
    """A body or query that refuses fields it does not name."""

    model_config = ConfigDict(extra="forbid")


def invalid_field(exc: InvalidCommand) -> ApiError:
    """The 422 ``invalid_body`` naming the body field ``exc`` names."""
    return ApiError(422, "invalid_body", str(exc),
                    [ErrorDetail(field=f"body.{exc.field}", message=str(exc), type="value_error")])


def actor_of(req: ApiRequest[Any, Any]) -> str:
    """The user (or API key) a change is made by: it goes on the audit trail."""
    assert req.principal is not None
    return req.principal.name


def recording_id(value: Any) -> int | None:
    """A linked recording's id as the recordings table has it (links keep text), or None."""
    text = str(value)
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None
