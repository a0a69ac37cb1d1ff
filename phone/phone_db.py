"""The phone tables in PostgreSQL (migration 0012): devices, bindings, options.

Every query is bounded by ``timeout``. The digest column is read only to
render Asterisk's configuration; nothing here returns it to the API.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from phone.model import Device, check_device_id


@dataclass(frozen=True, slots=True)
class AgentPhone:
    agent_id: str
    device_id: str | None = None
    auto_answer: bool = False
    zip_tone: bool = False


async def devices(pool: asyncpg.Pool, timeout: float = 10.0) -> list[Device]:
    async with pool.acquire(timeout=timeout) as conn:
        rows = await conn.fetch("SELECT device_id, kind, ha1, label FROM phone_devices ORDER BY device_id",
                                timeout=timeout)
    return [Device(r["device_id"], r["kind"], r["ha1"], r["label"]) for r in rows]


async def save_device(pool: asyncpg.Pool, device: Device, realm: str, timeout: float = 10.0) -> None:
    """Create or replace a device (its kind, label and digest)."""
    async with pool.acquire(timeout=timeout) as conn:
        await conn.execute(
            "INSERT INTO phone_devices (device_id, kind, label, ha1, realm) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (device_id) DO UPDATE SET kind = EXCLUDED.kind, label = EXCLUDED.label, "
            "ha1 = EXCLUDED.ha1, realm = EXCLUDED.realm, updated_at = now()",
            device.device_id, device.kind, device.label, device.ha1, realm, timeout=timeout)


async def delete_device(pool: asyncpg.Pool, device_id: str, timeout: float = 10.0) -> bool:
    async with pool.acquire(timeout=timeout) as conn:
        done = await conn.execute("DELETE FROM phone_devices WHERE device_id = $1", check_device_id(device_id),
                                  timeout=timeout)
    return done.endswith(" 1")


async def agents(pool: asyncpg.Pool, timeout: float = 10.0) -> list[AgentPhone]:
    async with pool.acquire(timeout=timeout) as conn:
        rows = await conn.fetch("SELECT agent_id, device_id, auto_answer, zip_tone FROM phone_agents",
                                timeout=timeout)
    return [AgentPhone(r["agent_id"], r["device_id"], r["auto_answer"], r["zip_tone"]) for r in rows]


async def bind(pool: asyncpg.Pool, agent_id: str, device_id: str | None, timeout: float = 10.0) -> str | None:
    """Seat ``agent_id`` at ``device_id`` (None: back to the configured device).
    A device holds one agent: whoever sat there is unbound. Returns that agent's id."""
    async with pool.acquire(timeout=timeout) as conn:
        async with conn.transaction():
            previous = None
            if device_id is not None:
                previous = await conn.fetchval(
                    "UPDATE phone_agents SET device_id = NULL, bound_at = NULL, updated_at = now() "
                    "WHERE device_id = $1 AND agent_id <> $2 RETURNING agent_id", device_id, agent_id,
                    timeout=timeout)
            await conn.execute(
                "INSERT INTO phone_agents (agent_id, device_id, bound_at) VALUES ($1, $2, now()) "
                "ON CONFLICT (agent_id) DO UPDATE SET device_id = EXCLUDED.device_id, bound_at = now(), "
                "updated_at = now()", agent_id, device_id, timeout=timeout)
    return previous


async def set_options(pool: asyncpg.Pool, agent_id: str, auto_answer: bool, zip_tone: bool,
                      timeout: float = 10.0) -> None:
    async with pool.acquire(timeout=timeout) as conn:
        await conn.execute(
            "INSERT INTO phone_agents (agent_id, auto_answer, zip_tone) VALUES ($1, $2, $3) "
            "ON CONFLICT (agent_id) DO UPDATE SET auto_answer = EXCLUDED.auto_answer, "
            "zip_tone = EXCLUDED.zip_tone, updated_at = now()", agent_id, auto_answer, zip_tone, timeout=timeout)
