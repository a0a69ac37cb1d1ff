"""The campaign runner in a high-availability pair (docs/dialer.md, "High availability"): two
real daemons on one Asterisk and one PostgreSQL, the dialer on in both. Only the leader runs
the runner (the standby's is not started and closes nothing); the leader is killed, and the
new leader starts its runner, rebuilds the campaign's ledger from PostgreSQL and closes the
attempt the dead leader left open."""
from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.harness import DaemonProcess, daemon_env, free_port
from cti.migrate import migrate
from dialer import store
from dialer.lead_import import parse_leads
from tests.integration.conftest import eventually
from tests.integration.test_omni_ha import ROUTING, _leading, _part


def _node(database: str, tmp: Path, name: str, routing: Path) -> DaemonProcess:
    state = tmp / name
    state.mkdir()
    env = daemon_env(database, state, acd_config=routing, ha_cluster="dialer-pair", ha_node=name,
                     acd_announce_every=0, agi_port=free_port(), dialer_enabled=True, dialer_tick_s=0.5)
    return DaemonProcess(env, tmp / f"{name}.log")


async def _orphan(conn: asyncpg.Connection, cid: int, phone: str) -> int:
    """A lead ``dialing`` with a runner attempt opened 20 minutes ago and never closed."""
    lead = await conn.fetchval("SELECT lead_id FROM dialer_leads WHERE campaign_id = $1 AND phone = $2", cid, phone)
    await conn.execute("UPDATE dialer_leads SET state = 'dialing', attempts = 1 WHERE lead_id = $1", lead)
    return await conn.fetchval("INSERT INTO dialer_attempts (lead_id, campaign_id, started_at) VALUES ($1, $2, $3)"
                               " RETURNING attempt_id", lead, cid, datetime.now(timezone.utc) - timedelta(minutes=20))


@pytest.fixture
async def pair(asterisk, database, tmp_path, demo_ami):
    tmp_path.chmod(0o755)
    await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    routing = tmp_path / "acd.toml"
    routing.write_text(ROUTING)
    n1, n2 = _node(database, tmp_path, "n1", routing), _node(database, tmp_path, "n2", routing)
    try:
        yield n1, n2
    finally:
        for d in (n1, n2):
            if d.proc is not None and d.proc.returncode is None:
                d.send_signal(signal.SIGCONT)
            await d.stop(timeout=20)
        await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")


async def test_only_the_leader_runs_campaigns_and_a_new_leader_takes_them_up(pair, database):
    n1, n2 = pair
    await migrate(database)
    conn = await asyncpg.connect(database)
    try:
        # Nobody is logged in to "sales": the campaign places no call, but its runner meets it.
        cid = await store.create_campaign(conn, "pair", mode="predictive", queue="sales", caller_id="+442079460000")
        valid, _ = parse_leads("phone\n+442079460131\n+442079460132\n+442079460133\n")
        assert (await store.import_leads(conn, cid, valid)).created == 3
        assert await store.set_campaign_state(conn, cid, "running")
        first = await _orphan(conn, cid, "+442079460131")

        await n1.start()
        await eventually(lambda: _leading(n1), timeout=20, what="n1 leading")
        await n2.start()

        async def standing_by() -> bool:
            ha = await _part(n2, "ha")
            return ha.get("role") == "standby" and ha.get("holder") == "n1"

        await eventually(standing_by, timeout=10, what="n2 a standby that has read n1's lease")

        async def dialer(d, **want: Any) -> dict | None:
            got = await _part(d, "dialer")
            return got if got and all(got.get(k) == v for k, v in want.items()) else None


        async def leading_runner() -> dict | None:
            got = await dialer(n1, running=True, orphans_closed=1)
            return got if got and got["ledgers_rebuilt"] >= 1 else None

        await eventually(leading_runner, timeout=20, what="n1's runner running, the ledger rebuilt, the orphan closed")
        standby = await _part(n2, "dialer")
        assert (standby["running"], standby["orphans_closed"], standby["ledgers_rebuilt"]) == (False, 0, 0)
        assert await conn.fetchval("SELECT outcome FROM dialer_attempts WHERE attempt_id = $1", first) == "failed"

        n1.send_signal(signal.SIGSTOP)      # frozen first: the attempt below is the dead leader's to leave
        second = await _orphan(conn, cid, "+442079460132")
        await n1.kill()
        await eventually(lambda: _leading(n2), timeout=20, what="n2 took over")

        async def taken_up() -> dict | None:
            got = await dialer(n2, running=True, orphans_closed=1)
            return got if got and got["ledgers_rebuilt"] >= 1 else None

        # The sweep (the orphan) comes first in a tick, the campaigns (the ledger) after it.
        await eventually(taken_up, timeout=30, what="n2's runner running, the ledger rebuilt, the orphan closed")
        assert await conn.fetchval("SELECT outcome FROM dialer_attempts WHERE attempt_id = $1", second) == "failed"
        assert await conn.fetchval("SELECT state FROM dialer_leads WHERE phone = '+442079460132'") == "retry"
    finally:
        await conn.close()
