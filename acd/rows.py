"""The ACD's rows for the batching writer (``cti.rows.Row``): agents and their state log."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from cti.rows import TableRow


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRow(TableRow):
    """An agent (a stable id apart from the device they sit at); a newer ``updated_at`` wins."""

    table: ClassVar[str] = "agents"
    columns: ClassVar[tuple[str, ...]] = ("agent_id", "name", "device", "updated_at")
    key_column: ClassVar[str | None] = "agent_id"
    ident_columns: ClassVar[tuple[str, ...]] = ("agent_id",)
    statement: ClassVar[str] = """
        INSERT INTO agents AS a (agent_id, name, device, updated_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (agent_id) DO UPDATE SET
            name = EXCLUDED.name, device = EXCLUDED.device, updated_at = EXCLUDED.updated_at
        WHERE a.updated_at <= EXCLUDED.updated_at"""

    agent_id: str
    name: str
    device: str | None = None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateRow(TableRow):
    """One change of an agent's state (the agent state log, for reports); written once."""

    table: ClassVar[str] = "agent_states"
    columns: ClassVar[tuple[str, ...]] = ("agent_id", "at", "state", "previous", "reason")
    ident_columns: ClassVar[tuple[str, ...]] = ("agent_id",)
    statement: ClassVar[str] = """
        INSERT INTO agent_states (agent_id, at, state, previous, reason) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (agent_id, at, state) DO NOTHING"""

    agent_id: str
    at: datetime
    state: str                       # logged_out, available, reserved, on_call, wrapup, not_ready
    previous: str | None = None
    reason: str | None = None        # not-ready reason code, or why the router changed it
