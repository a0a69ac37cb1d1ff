"""The audit of actions on other people: ``supervisor_actions`` (migration 0011).

One row per action a supervisor or an admin takes on an agent or a call: who
(``actor_kind``, ``actor_id``, ``actor_name``), whom (``agent_id``, ``call_id``),
what (``action``; ``details`` holds its ``from`` and ``to`` where it changes
something), when (``at``, the database's clock) and how it ended (``result``:
done, refused or failed, with ``error``). The wallboard's live actions write
here, and so does every change of another agent's state, seat or phone options
(routes with an agent scope, when ``ApiRequest.over_agent`` is ``other``).
"""
from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from api.auth import Principal
from api.db import db, query
from api.errors import ApiError

log = structlog.get_logger(__name__)


async def record(app: web.Application, p: Principal, action: str, *, agent_id: str | None = None,
                 call_id: str | None = None, details: dict[str, Any] | None = None, result: str = "done",
                 error: str | None = None) -> int | None:
    """Write one audit row; its id, or None when the database is away (then the
    row goes to the log instead, so the action is never unaccounted for)."""
    try:
        return await query(db(app).fetchval(
            "INSERT INTO supervisor_actions (actor_kind, actor_id, actor_name, action, agent_id, call_id, details, "
            "result, error) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) RETURNING id",
            p.kind, p.id, p.name, action, agent_id, call_id, json.dumps(details or {}), result, error))
    except ApiError:
        log.error("action not audited: database away", action=action, actor=p.name, agent=agent_id,
                  call_id=call_id, result=result, details=details)
        return None
