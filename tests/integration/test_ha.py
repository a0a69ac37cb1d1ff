"""A pair of real daemons (``cti serve`` processes, ``ha_cluster`` set) on one Asterisk and one
PostgreSQL (docs/ha.md): the standby takes over a leader killed with SIGKILL and offers the
caller who was waiting; a leader paused past its lease and resumed offers nothing and exits
to start again as a standby; a leader whose own path to PostgreSQL is cut (``bench/pgcut.py``)
steps down before the standby takes over, and nothing is lost."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import pytest

from bench.harness import DaemonProcess, daemon_env, free_port
from bench.pgcut import Link
from cti.demo import set_demo_times
from cti.ha import EXIT_STEPPED_DOWN
from tests.integration.conftest import eventually, hangup_all
from tests.integration.test_acd import call, ended_rows

AGENT1 = "Local/agent1@cti-demo-agents"
ROUTING = """skills = ["sales"]
[[agents]]
id = "a1"
name = "Ada"
device = "Local/agent1@cti-demo-agents/n"
skills = { sales = 5 }
queues = { sales = {} }
auto_login = true

[[queues]]
id = "sales"
ring_timeout_s = 15
wrapup_s = 1
"""


def _node(database: str, tmp: Path, name: str, routing: Path) -> DaemonProcess:
    state = tmp / name
    state.mkdir()
    # Two processes on one host: the FastAGI ports must differ (these callers skip the IVR).
    env = daemon_env(database, state, acd_config=routing, ha_cluster="it-pair", ha_node=name,
                     acd_announce_every=0, agi_port=free_port())
    return DaemonProcess(env, tmp / f"{name}.log")


async def _ha(d: DaemonProcess) -> dict[str, Any]:
    got = await d.health()
    return {} if got is None else got[1].get("ha") or {}


async def _role(d: DaemonProcess, role: str) -> dict[str, Any] | None:
    ha = await _ha(d)
    return ha if ha.get("role") == role else None


def _dial_begins(events: list[dict[str, Any]], call_id: str, since: int = 0) -> list[dict[str, Any]]:
    return [e for e in events[since:] if e.get("Event") == "DialBegin" and e.get("Linkedid") == call_id
            and e.get("DestChannel", "").startswith(AGENT1)]


def _answered(events: list[dict[str, Any]], call_id: str) -> bool:
    return any(e.get("Event") == "DialEnd" and e.get("Linkedid") == call_id and e.get("DialStatus") == "ANSWER"
               for e in events)


def _waiting(events: list[dict[str, Any]], call_id: str) -> bool:
    return any(e.get("Event") == "UserEvent" and e.get("UserEvent") == "CtiAcdWait"
               and e.get("Linkedid") == call_id for e in events)


async def _asterisk_epoch(demo_ami) -> str:
    reply = await demo_ami.send("Getvar", {"Variable": "CTI_ACD_EPOCH"}, shape="single")
    return reply.response.headers.get("Value") or ""


async def _epoch_in_force(demo_ami, epoch: int) -> bool:
    return await _asterisk_epoch(demo_ami) == str(epoch)


@contextlib.asynccontextmanager
async def running_pair(database: str, tmp_path: Path, demo_ami, routing_text: str, *, talk: int,
                       standby_ready: Callable[[DaemonProcess], Awaitable[bool]], what: str,
                       n1_database: str | None = None):
    """n1 leading, then n2 started and ``standby_ready``; every AMI event seen by the demo user
    in ``events``. Asterisk's epoch is cleared before and after (later tests' lone daemons lead
    with epoch 1); paused daemons are resumed before they are stopped. ``n1_database``: n1's
    own DSN for the same database (a path that can be cut)."""
    tmp_path.chmod(0o755)
    hangup_all()
    await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    routing = tmp_path / "acd.toml"
    routing.write_text(routing_text)
    events: list[dict[str, Any]] = []
    demo_ami.add_listener(lambda frame: events.append(dict(frame.headers)))
    await set_demo_times(demo_ami, ring=(1, 1), talk=(talk, talk))
    n1, n2 = _node(n1_database or database, tmp_path, "n1", routing), _node(database, tmp_path, "n2", routing)
    try:
        await n1.start()
        await eventually(lambda: _role(n1, "leader"), timeout=20, what="n1 leading")
        await n2.start()
        await eventually(lambda: standby_ready(n2), timeout=15, what=what)
        yield n1, n2, events
    finally:
        for d in (n1, n2):
            if d.proc is not None and d.proc.returncode is None:
                d.send_signal(signal.SIGCONT)
            await d.stop(timeout=20)
        hangup_all()
        await set_demo_times(demo_ami)
        await demo_ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")


@pytest.fixture
async def pair(asterisk, database, tmp_path, demo_ami):
    """n1 leading, n2 its warm standby; one agent (a1) and one queue; every AMI event seen
    by the demo user in ``events``."""
    async def standing_by(n2: DaemonProcess) -> bool:
        ha = await _role(n2, "standby")
        return ha is not None and ha["holder"] == "n1"

    async with running_pair(database, tmp_path, demo_ami, ROUTING, talk=8, standby_ready=standing_by,
                            what="n2 a standby that has read n1's lease") as nodes:
        yield nodes


async def _busy_agent_and_a_waiting_caller(demo_ami, events: list[dict[str, Any]], n: int):
    """a1 talking to one caller (8 s), a second caller waiting in the ACD."""
    first = await call(demo_ami, "sales", n)
    await eventually(lambda: _answered(events, first.channel_id), timeout=20, what="a1 talking")
    second = await call(demo_ami, "sales", n + 1)
    await eventually(lambda: _waiting(events, second.channel_id), timeout=15, what="the second caller waiting")
    return first, second


async def test_the_standby_takes_over_a_killed_leader_and_offers_the_waiting_caller(pair, demo_ami, database):
    n1, n2, events = pair
    epoch1 = (await _ha(n1))["epoch"]
    await eventually(lambda: _epoch_in_force(demo_ami, epoch1), timeout=10, what="Asterisk holds n1's epoch")
    # The standby's API is read-only: a command is sent to the leader.
    async with aiohttp.ClientSession() as http:
        async with http.post(n2.url + "/api/agents/a1/ready") as r:
            assert r.status == 503 and (await r.json())["error_id"] == "standby"
    first, second = await _busy_agent_and_a_waiting_caller(demo_ami, events, 1)
    mark = len(events)

    killed_at = time.monotonic()
    await n1.kill()
    ha = await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over")
    took = time.monotonic() - killed_at
    assert ha["epoch"] > epoch1 and ha["takeovers"] == 1
    assert took < 10, f"takeover took {took:.1f}s"
    await eventually(lambda: _epoch_in_force(demo_ami, ha["epoch"]), timeout=10,
                     what="Asterisk holds the new epoch")
    # a1 was adopted talking; when that call ends the new leader offers the waiting caller.
    await eventually(lambda: _dial_begins(events, second.channel_id, mark), timeout=30,
                     what="the waiting caller offered to a1 by the new leader")
    assert not _dial_begins(events, first.channel_id, mark)

    rows = await ended_rows(database, [first.channel_id, second.channel_id], timeout=40)
    assert rows[first.channel_id]["agent"] == "a1" and rows[second.channel_id]["agent"] == "a1"
    assert not rows[second.channel_id]["abandoned"]
    metrics = await n2.metrics()
    assert metrics["cti_leader"] == 1 and metrics["cti_ha_takeovers_total"] == 1
    assert 0 <= metrics["cti_ha_lease_age_seconds"] < 3 and metrics["cti_ha_leaderless_seconds"] == 0
    # The operator's view of the pair, from the database.
    status = subprocess.run([sys.executable, "-m", "server.cli", "status"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "CTI_DATABASE_URL": database,
                                             "CTI_HA_CLUSTER": "it-pair"})
    assert status.returncode == 0, status.stderr
    assert f"cluster it-pair: leader n2, epoch {ha['epoch']}, heartbeat" in status.stdout


async def test_a_leader_paused_past_its_lease_offers_nothing_and_steps_down(pair, demo_ami):
    n1, n2, events = pair
    epoch1 = (await _ha(n1))["epoch"]
    first, second = await _busy_agent_and_a_waiting_caller(demo_ami, events, 11)
    log_size = n1.log_path.stat().st_size

    n1.send_signal(signal.SIGSTOP)
    ha = await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over the paused leader")
    assert ha["epoch"] > epoch1
    # The new leader offers the waiting caller once a1's call ends; then the old one wakes up
    # with every AMI event of the pause to read, a1 freed among them.
    await eventually(lambda: _dial_begins(events, second.channel_id), timeout=30,
                     what="the waiting caller offered by the new leader")
    mark = len(events)
    n1.send_signal(signal.SIGCONT)
    assert n1.proc is not None
    await eventually(lambda: n1.proc.returncode is not None, timeout=20, what="the old leader exited")
    assert n1.proc.returncode == EXIT_STEPPED_DOWN

    refused = [e for e in events[mark:] if e.get("Event") == "UserEvent" and e.get("UserEvent") == "CtiOfferRefused"]
    assert refused == []                                 # it did not even try: its gate was shut
    assert len(_dial_begins(events, second.channel_id)) == 1
    resumed = n1.log_path.read_bytes()[log_size:].decode(errors="replace")
    assert "ha stepped down" in resumed
    assert "acd not leading: decisions dropped" in resumed   # a1 freed during the pause: its router wanted to act
    assert '"acd.offer"' not in resumed
    assert (await _role(n2, "leader"))["epoch"] == ha["epoch"]


async def test_a_planned_handover_moves_leadership_and_the_waiting_caller_is_offered_by_the_new_leader(
        pair, demo_ami, database):
    n1, n2, events = pair
    epoch1 = (await _ha(n1))["epoch"]
    await eventually(lambda: _epoch_in_force(demo_ami, epoch1), timeout=10, what="Asterisk holds n1's epoch")
    first, second = await _busy_agent_and_a_waiting_caller(demo_ami, events, 21)
    mark = len(events)

    handover = subprocess.run([sys.executable, "-m", "server.cli", "handover", "--timeout", "20"],
                              capture_output=True, text=True, timeout=90,
                              env={**os.environ, "CTI_DATABASE_URL": database, "CTI_HA_CLUSTER": "it-pair"})
    assert handover.returncode == 0, handover.stdout + handover.stderr
    assert f"leadership moved from n1 (epoch {epoch1}) to n2" in handover.stdout
    assert n1.proc is not None
    await eventually(lambda: n1.proc.returncode is not None, timeout=20, what="the old leader exited")
    assert n1.proc.returncode == EXIT_STEPPED_DOWN
    log = n1.log_path.read_text(errors="replace")
    assert "ha handing over" in log and '"released": true' in log
    ha = await eventually(lambda: _role(n2, "leader"), timeout=10, what="n2 leading")
    assert ha["epoch"] > epoch1 and ha["takeovers"] == 1
    await eventually(lambda: _epoch_in_force(demo_ami, ha["epoch"]), timeout=10,
                     what="Asterisk holds the new epoch")
    # Nothing handed to app_queue: a1's call goes on, and the waiting caller is offered by n2.
    await eventually(lambda: _dial_begins(events, second.channel_id, mark), timeout=30,
                     what="the waiting caller offered to a1 by the new leader")
    assert not [e for e in events[mark:] if e.get("Event") == "QueueCallerJoin"]
    rows = await ended_rows(database, [first.channel_id, second.channel_id], timeout=40)
    assert rows[first.channel_id]["agent"] == "a1" and rows[second.channel_id]["agent"] == "a1"
    assert not rows[second.channel_id]["abandoned"]
    status = subprocess.run([sys.executable, "-m", "server.cli", "status"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "CTI_DATABASE_URL": database,
                                             "CTI_HA_CLUSTER": "it-pair"})
    assert f"cluster it-pair: leader n2, epoch {ha['epoch']}, heartbeat" in status.stdout
    assert "RELEASED" not in status.stdout


async def test_a_leader_cut_off_from_postgresql_steps_down_and_the_standby_takes_over(asterisk, database, tmp_path,
                                                                                     demo_ami):
    """Only n1's path to the database is cut (nothing passes, no reset: a partition). n1 steps
    down by itself before n2 takes over (rule 3), n2 evicts the silent session and offers the
    waiting caller; after the restore n1 exits to start again as a standby; both calls are in
    the database, ended, answered by a1, and n1's late rows changed nothing."""
    link = Link(database)
    await link.start()

    async def standing_by(n2: DaemonProcess) -> bool:
        ha = await _role(n2, "standby")
        return ha is not None and ha["holder"] == "n1"

    try:
        async with running_pair(database, tmp_path, demo_ami, ROUTING, talk=8, standby_ready=standing_by,
                                what="n2 a standby that has read n1's lease", n1_database=link.dsn) as pair:
            n1, n2, events = pair
            epoch1 = (await _ha(n1))["epoch"]
            await eventually(lambda: _epoch_in_force(demo_ami, epoch1), timeout=10, what="Asterisk holds n1's epoch")
            first, second = await _busy_agent_and_a_waiting_caller(demo_ami, events, 31)
            mark = len(events)

            link.cut()
            ha = await eventually(lambda: _role(n2, "leader"), timeout=20, what="n2 took over the cut-off leader")
            assert ha["epoch"] > epoch1 and ha["takeovers"] == 1
            await eventually(lambda: _dial_begins(events, second.channel_id, mark), timeout=30,
                             what="the waiting caller offered to a1 by the new leader")
            # n1 stepped down by itself, strictly before n2 led (the same host's clock).
            down = [json.loads(line) for line in n1.log_path.read_text(errors="replace").splitlines()
                    if '"lease.step_down"' in line]
            led = [json.loads(line) for line in n2.log_path.read_text(errors="replace").splitlines()
                   if '"ha leading"' in line]
            assert down and led and down[0]["epoch"] == epoch1
            assert down[0]["timestamp"] < led[-1]["timestamp"]
            assert "lease.evicted" in n2.log_path.read_text(errors="replace")   # its session was still there

            link.restore()
            assert n1.proc is not None
            await eventually(lambda: n1.proc.returncode is not None, timeout=30, what="the old leader exited")
            assert n1.proc.returncode == EXIT_STEPPED_DOWN
            rows = await ended_rows(database, [first.channel_id, second.channel_id], timeout=40)
            assert rows[first.channel_id]["agent"] == "a1" and rows[second.channel_id]["agent"] == "a1"
            assert not rows[second.channel_id]["abandoned"]
            assert len(_dial_begins(events, second.channel_id)) == 1
            refused = [e for e in events[mark:] if e.get("Event") == "UserEvent"
                       and e.get("UserEvent") in ("CtiOfferRefused", "CtiActionRefused")]
            assert refused == []
            assert (await _role(n2, "leader"))["epoch"] == ha["epoch"]
    finally:
        await link.stop()
