"""Several Asterisk nodes (issue 20 item 1): two sandbox Asterisks in separate network
namespaces joined by a veth pair and the inter-node PJSIP trunk (scripts/asterisk-cluster),
one daemon following both. Callers on node a are answered by agents whose phones
(baresip) are registered on node b, through the trunk: one call each in our records.
Then node b's Asterisk is killed: b's agents go not ready "unreachable", node a's calls
(one across the trunk, one with an agent whose phone is on a, one waiting) go on
untouched; node b started again: it is followed again and its agents come back.

Runs only in a private sandbox (scripts/test-isolated: it adds a veth pair to the
namespace it runs in)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
from pathlib import Path

import asyncpg
import pytest

from cti import sandbox as sandbox_secrets
from cti.demo import place_call
from cti.ami_inputs import ContactStatus
from cti.events import CallEvent
from ivr.service import IVR
from phone.gateway import PHONES
from tests.integration.conftest import daemon_settings, eventually, hangup_all, start_daemon
from tests.integration.sipphones import BARESIP, Baresip

HERE = Path(__file__).parent
CLUSTER = HERE.parents[1] / "scripts" / "asterisk-cluster"
ACD_NODES = HERE / "acd-nodes.toml"
NET = "10.77.0"
PHONE_SECRET = secrets.token_hex(12)

pytestmark = pytest.mark.skipif(
    not os.environ.get("CTI_SANDBOX_ROOT") or os.environ["CTI_SANDBOX_ROOT"] == "/var/cache/cti/asterisk-root"
    or not Path(BARESIP).exists() or os.geteuid() != 0,
    reason="needs a private sandbox (scripts/test-isolated), root and baresip")


def cluster(*args: str) -> None:
    # A long media timeout on the trunk: a phone whose media went astray must not end the call.
    env = {**os.environ, "CTI_CLUSTER_PHONES_B": "nb1 nb2", "CTI_CLUSTER_PHONES_A": "na1",
           "CTI_CLUSTER_PHONE_SECRET": PHONE_SECRET,
           "CTI_CLUSTER_NET": NET, "CTI_CLUSTER_RTP_TIMEOUT": "300"}
    subprocess.run([str(CLUSTER), *args], check=True, timeout=300, env=env)


def cli_b(command: str) -> str:
    return subprocess.run([str(CLUSTER), "cli-b", command], capture_output=True, text=True, timeout=30).stdout


@contextlib.asynccontextmanager
async def running_cluster(database, tmp_path, b_node: dict | None = None, **overrides):
    """Both nodes up, the daemon following them, the three test phones registering."""
    hangup_all()
    secret = sandbox_secrets.secret(sandbox_secrets.DAEMON)
    settings = daemon_settings(
        database, tmp_path, acd_config=ACD_NODES, ami_node_dead_after=3.0,
        ami_nodes=[{"name": "a", "host": "127.0.0.1", "port": 5038, "user": "cti", "secret": secret},
                   {"name": "b", "host": f"{NET}.2", "port": 5038, "user": "cti", "secret": secret, **(b_node or {})}],
        **overrides)
    phones = [Baresip(tmp_path / f"baresip-{dev}", dev, PHONE_SECRET, registrar=f"{NET}.{host}", listen=f"{NET}.3",
                      regint=10, interface="cti-va") for dev, host in (("nb1", 2), ("nb2", 2), ("na1", 1))]
    d = None
    try:
        cluster("up")
        d = await start_daemon(settings)
        for p in phones:
            await p.start()
        yield d, phones
    finally:
        for p in phones:
            await p.stop()
        if d is not None:
            await d.stop()
        hangup_all()
        cli_b("channel request hangup all")
        cluster("down")


@pytest.fixture
async def two_nodes(asterisk, database, tmp_path):
    async with running_cluster(database, tmp_path) as running:
        yield running


def _raw(headers: dict[str, str]) -> bytes:
    """An event frame as Asterisk writes it (a repeated key's values were joined by newlines)."""
    lines = [f"{k}: {v}" for k, vs in headers.items() for v in vs.split("\n")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def agent(d, agent_id):
    return d.acd.router.agent_state(agent_id)


def node_state(d, name):
    return d.core.watch.state(name) if d.core.watch is not None else None


async def _answered(d, demo_ami, number: str, queue: str = "remote") -> str:
    placed = await place_call(demo_ami, caller_num=number, caller_name="Across", patience=120,
                              context="cti-demo-direct", caller_context="cti-demo-talker",
                              variables={"CTI_QUEUE": queue})
    call_id = f"a-{placed.channel_id}"
    agents = {"remote": ("nb1", "nb2"), "local": ("na1",)}.get(queue)
    if agents:
        await eventually(lambda: (c := d.core.model.calls.get(call_id)) is not None and c.agent in agents
                         and c.state == "talking", timeout=30, what=f"{call_id} answered by one of {agents}")
    return call_id


async def test_callers_on_a_answered_on_b_one_call_each_then_b_dies_and_comes_back(two_nodes, demo_ami, database):
    d, phones = two_nodes
    seen: list[CallEvent] = []
    d.core.bus.subscribe(seen.append)
    # What each node sent while the first two calls ran, as Asterisk wrote it: with
    # CTI_CAPTURE_AMI=DIR, kept as transcripts (tests/fixtures/ami/trunk-a.ami, trunk-b.ami).
    captured: dict[str, list[bytes]] = {"a": [], "b": []}
    for name in captured:
        d.core.nodes[name].add_listener(lambda f, name=name: captured[name].append(_raw(f.headers)))
    service = d.runner.app[PHONES]
    await eventually(lambda: d.core.nodes["b"].connected, timeout=30, what="node b followed")
    await eventually(lambda: service.reach.nodes_of("nb1") == {"b"} and service.reach.nodes_of("nb2") == {"b"},
                     timeout=30, what=f"both phones registered on node b: {[p.output() for p in phones]}")
    await eventually(lambda: service.reach.nodes_of("na1") == {"a"}, timeout=30,
                     what=f"na1's phone registered on node a: {phones[2].output()}")
    await eventually(lambda: agent(d, "nb1").state == agent(d, "nb2").state == agent(d, "na1").state == "available",
                     timeout=10, what="nb1, nb2 and na1 available")

    # Two callers on a, each answered by one of b's agents through the trunk.
    first = await _answered(d, demo_ami, "+442000000101")
    second = await _answered(d, demo_ami, "+442000000102")
    assert {d.core.model.calls[first].agent, d.core.model.calls[second].agent} == {"nb1", "nb2"}
    assert d.core.model.calls[first].node == "a" and d.core.model.trunk_legs >= 2
    assert all(not cid.startswith("b-") for cid in d.core.model.calls)
    hangup_all()
    await eventually(lambda: first not in d.core.model.calls and second not in d.core.model.calls, timeout=20,
                     what="both calls ended")
    # One call each in the records: offered and connected to the agent, no call of node b's.
    for cid in (first, second):
        offers = [e for e in seen if e.call_id == cid and e.kind == "call.offered"]
        assert len(offers) == 1 and offers[0].data["agent"] in ("nb1", "nb2")
        assert offers[0].data["device"].startswith("PJSIP/cti-trunk-b-")
        assert [e.data["agent"] for e in seen if e.call_id == cid and e.kind == "call.connected"] == \
            [offers[0].data["agent"]]
    assert not [e for e in seen if e.call_id.startswith("b-")]
    if os.environ.get("CTI_CAPTURE_AMI"):
        for name, frames in captured.items():
            Path(os.environ["CTI_CAPTURE_AMI"], f"trunk-{name}.ami").write_bytes(
                b"Asterisk Call Manager/11.0.0\r\n" + b"".join(frames))
    assert await d.core.writer.drain(timeout=10)
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT call_id, agent, ended_at FROM calls WHERE call_id = ANY($1::text[])",
                                [first, second])
        assert len(rows) == 2 and all(r["agent"] in ("nb1", "nb2") and r["ended_at"] is not None for r in rows)
        assert await conn.fetchval("SELECT count(*) FROM calls WHERE call_id LIKE 'b-%'") == 0
    finally:
        await conn.close()
    await eventually(lambda: agent(d, "nb1").state == agent(d, "nb2").state == "available", timeout=15,
                     what="both agents free again")

    # A call talking across the trunk, one talking on a alone (na1's phone is on a), and a
    # caller waiting on a; then node b dies.
    talking = await _answered(d, demo_ami, "+442000000103")
    busy = d.core.model.calls[talking].agent
    idle = "nb2" if busy == "nb1" else "nb1"
    local = await _answered(d, demo_ami, "+442000000106", queue="local")
    assert d.core.model.calls[local].agent == "na1"
    waiting = await _answered(d, demo_ami, "+442000000104", queue="nobody")
    await eventually(lambda: (c := d.core.model.calls.get(waiting)) is not None and c.state == "queued",
                     timeout=15, what="the caller waits on node a")
    seen.clear()
    await asyncio.to_thread(cluster, "kill-b")     # the daemon runs on meanwhile
    await eventually(lambda: node_state(d, "b") == "dead", timeout=15, what="node b dead")
    await eventually(lambda: (agent(d, idle).state, agent(d, idle).reason) == ("not_ready", "unreachable"),
                     timeout=10, what=f"{idle} (idle on b) unreachable")
    assert agent(d, busy).state == "on_call" and agent(d, busy).pending == "unreachable"
    # Node a's calls are untouched: nothing ended, the same states.
    assert d.core.model.calls[talking].state == "talking" and d.core.model.calls[waiting].state == "queued"
    assert d.core.model.calls[local].state == "talking" and d.core.model.calls[local].agent == "na1"
    assert (agent(d, "na1").state, agent(d, "na1").pending) == ("on_call", None)
    assert not [e for e in seen if e.kind == "call.ended"]
    assert node_state(d, "a") == "up" and d.core.ami.connected
    hangup_all()
    await eventually(lambda: (agent(d, busy).state, agent(d, busy).reason) == ("not_ready", "unreachable"),
                     timeout=15, what=f"{busy} unreachable once its call ended")

    # Node b returns: followed again, its phones register again, its agents are back.
    await asyncio.to_thread(cluster, "start-b")
    await eventually(lambda: node_state(d, "b") == "up", timeout=30, what="node b back")
    await eventually(lambda: agent(d, "nb1").state == agent(d, "nb2").state == "available", timeout=60,
                     what=f"b's agents back: {[p.output()[-400:] for p in phones]}")
    again = await _answered(d, demo_ami, "+442000000105")
    assert d.core.model.calls[again].agent in ("nb1", "nb2")
    hangup_all()


def _pjsip_d(root: str) -> Path:
    return Path(root) / "etc/asterisk/pjsip.d"


async def test_node_b_s_ivr_sessions_and_phones_are_served_there(asterisk, database, tmp_path):
    """A caller entering on node b walks the IVR over FastAGI across the link, under the
    model's id for b's call; a phone the daemon provisions is written to each node's file
    and reloaded on both: it registers on node b with its new credentials."""
    root_a = os.environ["CTI_SANDBOX_ROOT"]
    conf_a, conf_b = _pjsip_d(root_a) / "cti-phones.conf", _pjsip_d(root_a + "-b") / "cti-phones.conf"
    try:
        async with running_cluster(database, tmp_path, b_node={"phone_pjsip_conf": str(conf_b)},
                                   agi_host="0.0.0.0", phone_pjsip_conf=conf_a) as (d, _):
            seen: list[CallEvent] = []
            d.core.bus.subscribe(seen.append)
            await eventually(lambda: d.core.nodes["b"].connected, timeout=30, what="node b followed")
            service = d.runner.app[PHONES]
            await eventually(lambda: service.listed, timeout=30, what="contacts listed")

            # The IVR on node b: its session comes from b's address with b's raw ids.
            placed = await place_call(d.core.nodes["b"], caller_num="+442000000201", caller_name="On B",
                                      did="5000", patience=60, context="cti-inbound")
            call_id = f"b-{placed.channel_id}"
            await eventually(lambda: any(e.call_id == call_id and e.kind == "call.ivr" for e in seen), timeout=30,
                             what=f"an IVR step of {call_id}")
            ivr = d.runner.app[IVR].service
            assert ivr is not None and ivr.refused == 0
            assert not [e for e in seen if e.kind == "call.ivr" and e.call_id != call_id]

            # A phone provisioned by the daemon registers on node b with its new credentials (its
            # contact created there). Whether b can then ring it is the test bed's: a provisioned
            # device has no transport of its own, and b's default one is on loopback (the
            # static test phones name the trunk's), so b's qualify finds it unreachable.
            contacts: list[ContactStatus] = []
            d.core.bus.subscribe_to(ContactStatus, contacts.append)
            password = await service.add_device("nb3", "sip", label="on b")
            assert "[nb3]" in conf_a.read_text() and "[nb3]" in conf_b.read_text()
            phone = Baresip(tmp_path / "baresip-nb3", "nb3", password, registrar=f"{NET}.2", listen=f"{NET}.3",
                            regint=10, interface="cti-va")
            await phone.start()
            try:
                # Any contact of nb3's on b: only a registration there makes one.
                await eventually(lambda: any(c.aor == "nb3" and c.node == "b" for c in contacts), timeout=30,
                                 what=f"nb3 registered on node b: {phone.output()[-400:]}")
                assert not [c for c in contacts if c.aor == "nb3" and c.node != "b"]
            finally:
                await phone.stop()
            hangup_all()
            cli_b("channel request hangup all")
    finally:
        conf_a.unlink(missing_ok=True)
        conf_b.unlink(missing_ok=True)
