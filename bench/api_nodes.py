"""Kill an API node with hundreds of desktops on it: they move to another and resume (issue 20).

A nats-server of the run's own (free port, its own store), a fresh database on the
PostgreSQL at 127.0.0.1:5432 (migrated; ``--desktops`` agent users and ``--supervisors``
supervisor users, each with a session made in the store), two ``cti api-node`` processes,
and the publisher of the leader (``api.broker.BrokerPublisher``) in this process, fed
synthetic messages at ``--rate`` a second, each for one desktop's agent, numbered per
agent (``k``). The clients (aiohttp) live in ``--workers`` processes, all on node 1.
After ``--before`` seconds node 1 is killed (SIGKILL); each client, when its socket
closes, reconnects to node 2 with its stream and last ``seq``. Publishing goes on for
``--after`` seconds, then stops, and the run waits until every client has the last message.

Checked for every client (the run fails otherwise): the ``hello`` on node 2 says
``resumed``; an agent's ``k`` runs 1, 2, 3... to its last with no gap and no repeat, its
``seq`` rising; a supervisor's ``seq`` runs without a hole from its first event to the
stream's last. Measured: from the kill to each client's resumed hello (p50/p99/max); the
CPU per message of the publisher's process (the leader's share) and of each node.

    .venv/bin/python bench/api_nodes.py [--desktops 500] [--supervisors 10] [--rate 100]
                                                   [--before 10] [--after 10] [--workers 2]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import free_port  # noqa: E402
from bench.tables import percentiles  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the clients (in worker processes) ------------------------------------------------

def _worker(node1: str, node2: str, tokens: list[str], pipe) -> None:
    asyncio.run(_clients(node1, node2, tokens, pipe))


async def _clients(node1: str, node2: str, tokens: list[str], pipe) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    killed_at = [0.0]
    state = [{"seqs": [], "ks": [], "last": 0, "stream": None, "hello1": False, "resumed": None,
              "moved_at": None, "closed": False} for _ in tokens]

    async def one(i: int, token: str, http: aiohttp.ClientSession) -> None:
        st = state[i]
        for url, resume in ((node1, False), (node2, True)):
            try:
                ws = await http.ws_connect(f"{url}/ws", heartbeat=None)
                auth = {"type": "auth", "token": token}
                if resume:
                    auth.update(stream=st["stream"], last_seq=st["last"])
                await ws.send_json(auth)
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    m = json.loads(msg.data)
                    if m["type"] == "hello":
                        st["stream"] = st["stream"] or m["stream"]
                        if resume:
                            st["resumed"] = m["resumed"]
                            st["moved_at"] = time.time()
                        else:
                            st["hello1"] = True
                    elif m["type"] not in ("pong", "wallboard", "resync", "error"):
                        st["seqs"].append(m["seq"])
                        if "k" in m:
                            st["ks"].append(m["k"])
                    if m["type"] == "resync":
                        st["resumed"] = False
                    st["last"] = m["seq"]
            except (aiohttp.ClientError, OSError):
                pass
            if resume:
                break
            while not killed_at[0]:           # only node 1's death moves a client
                await asyncio.sleep(0.05)
        st["closed"] = True

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        tasks = [asyncio.create_task(one(i, t, http)) for i, t in enumerate(tokens)]
        while True:
            cmd = await loop.run_in_executor(None, pipe.recv)
            if cmd == "hellos":
                pipe.send(sum(s["hello1"] for s in state))
            elif cmd[0] == "killed":
                killed_at[0] = cmd[1]
                pipe.send(True)
            elif cmd == "heads":
                pipe.send([s["last"] for s in state])
            elif cmd == "report":
                pipe.send(state)
                break
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the run ------------------------------------------------------------------------------

async def run(desktops: int, supervisors: int, rate: float, before: float, after: float, workers: int) -> dict:
    import asyncpg

    from api.broker import BrokerPublisher
    from api.broker_core import agent_subject
    from bench.load_desktops import make_sessions
    from cti.events import Bus
    from cti.migrate import migrate

    run_id = secrets.token_hex(4)
    dbname = f"cti_bench_nodes_{run_id}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    await admin.close()
    dsn = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    store = Path(tempfile.mkdtemp(prefix="cti-bench-js-"))
    nport = free_port()
    nats_url = f"nats://127.0.0.1:{nport}"
    broker = subprocess.Popen([shutil.which("nats-server") or "nats-server", "-js", "-a", "127.0.0.1",
                               "-p", str(nport), "-sd", str(store)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes: list[subprocess.Popen] = []
    procs, pipes = [], []
    pub = None
    stream, cluster = "CTI_BENCH_NODES", "bench"
    try:
        await migrate(dsn)
        agents = await make_sessions(dsn, desktops, prefix="desk", role="agent", agents=True)
        sups = await make_sessions(dsn, supervisors, prefix="sup")
        bus = Bus()
        pub = BrokerPublisher(bus, nats_url, cluster=cluster, stream=stream, buffer_max=1_000_000)
        await pub.start()
        while not pub.connected:
            await asyncio.sleep(0.05)
        ports = [free_port(), free_port()]
        for p in ports:
            env = {**os.environ, "CTI_HTTP_PORT": str(p), "CTI_BROKER_URL": nats_url,
                   "CTI_NODE_LEADER_URL": "http://127.0.0.1:9", "CTI_DATABASE_URL": dsn,
                   "CTI_BROKER_STREAM": stream, "CTI_BROKER_CLUSTER": cluster, "CTI_LOG_LEVEL": "warning",
                   "CTI_HTTP_CLIENT_MAX": "0"}
            nodes.append(subprocess.Popen([sys.executable, "-m", "server.cli", "api-node"], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import aiohttp
        async with aiohttp.ClientSession() as http:
            for p in ports:
                for _ in range(300):
                    try:
                        async with http.get(f"http://127.0.0.1:{p}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"node on {p} not ready")
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        tokens = agents + sups
        ctx = multiprocessing.get_context("spawn")
        for w in range(workers):
            parent, child = ctx.Pipe()
            pr = ctx.Process(target=_worker, args=(urls[0], urls[1], tokens[w::workers], child), daemon=True)
            pr.start()
            procs.append(pr)
            pipes.append(parent)
        loop = asyncio.get_running_loop()

        async def ask(msg) -> list:
            out = []
            for pp in pipes:
                pp.send(msg)
                out.append(await loop.run_in_executor(None, pp.recv))
            return out

        t0 = time.monotonic()
        while sum(await ask("hellos")) < len(tokens):
            if time.monotonic() - t0 > 120:
                raise SystemExit("clients did not all connect")
            await asyncio.sleep(0.5)
        connect_s = time.monotonic() - t0

        rng = random.Random(7)
        ks = {f"desk-{i}": 0 for i in range(desktops)}
        sent = [0]

        async def publish(seconds: float) -> None:
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                agent = f"desk-{rng.randrange(desktops)}"
                ks[agent] += 1
                pub._offer(agent_subject(cluster, agent), {"type": "bench.tick", "agent": agent, "k": ks[agent],
                                                            "at": time.time(), "pad": "x" * 400},
                           frozenset({agent}))
                sent[0] += 1
                await asyncio.sleep(max(0.0, start + sent_in(start) / rate - time.monotonic()))

        def sent_in(start: float) -> int:
            return sent[0] - sent_at_start[0]

        sent_at_start = [0]
        cpu0 = {"leader": time.process_time(), "node1": cpu_s(nodes[0].pid), "node2": cpu_s(nodes[1].pid)}
        n0 = sent[0]
        await publish(before)
        cpu_node1 = cpu_s(nodes[0].pid) - cpu0["node1"]
        n_before = sent[0] - n0
        killed = time.time()
        nodes[0].send_signal(signal.SIGKILL)
        nodes[0].wait(10)
        await ask(("killed", killed))
        sent_at_start[0] = sent[0]
        await publish(after)
        while len(pub.outbox):
            await asyncio.sleep(0.01)
        leader_cpu = time.process_time() - cpu0["leader"]
        head = pub.last_stream_seq
        t1 = time.monotonic()
        while True:
            heads = [h for part in await ask("heads") for h in part]
            if min(heads) >= head or time.monotonic() - t1 > 60:
                break
            await asyncio.sleep(0.5)
        cpu_node2 = cpu_s(nodes[1].pid) - cpu0["node2"]
        parts = await ask("report")
        states: list[dict] = [{} for _ in tokens]
        for w, part in enumerate(parts):          # worker w held tokens[w::workers]
            for j, st in enumerate(part):
                states[w + j * workers] = st
        n = sent[0] - n0
        moved = [s["moved_at"] - killed for s in states if s["moved_at"] is not None]
        bad = []
        for i, s in enumerate(states):
            if s["resumed"] is not True:
                bad.append((i, "not resumed", s["resumed"]))
                continue
            seqs = s["seqs"]
            if any(b <= a for a, b in zip(seqs, seqs[1:])):
                bad.append((i, "seq not rising"))
            if i < desktops:
                if s["ks"] != list(range(1, len(s["ks"]) + 1)) or len(s["ks"]) != ks[f"desk-{i}"]:
                    bad.append((i, "k", len(s["ks"]), ks[f"desk-{i}"]))
            elif seqs and seqs != list(range(seqs[0], head + 1)):
                bad.append((i, "supervisor seq not contiguous", seqs[0], seqs[-1], len(seqs)))
        return {
            "clients": len(tokens), "desktops": desktops, "supervisors": supervisors, "connect_s": round(connect_s, 2),
            "messages": n, "rate": rate, "stream_head": head,
            "resumed": sum(s["resumed"] is True for s in states), "bad": bad[:10], "bad_count": len(bad),
            "kill_to_resumed_ms": percentiles(moved, scale=1e3),
            "cpu_us_per_message": {"leader_publisher": round(leader_cpu / n * 1e6, 1),
                                   "node1_before_kill": round(cpu_node1 / max(1, n_before) * 1e6, 1),
                                   "node2_whole_run": round(cpu_node2 / n * 1e6, 1)},
            "publisher": pub.stats(),
        }
    finally:
        for pp in procs:
            pp.kill()
        for nd in nodes:
            if nd.poll() is None:
                nd.kill()
                nd.wait(10)
        if pub is not None:
            await pub.stop()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(store, ignore_errors=True)
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--desktops", type=int, default=500)
    ap.add_argument("--supervisors", type=int, default=10)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--before", type=float, default=10.0)
    ap.add_argument("--after", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    out = asyncio.run(run(a.desktops, a.supervisors, a.rate, a.before, a.after, a.workers))
    print(json.dumps(out, indent=2))
    if out["bad_count"] or out["resumed"] != out["clients"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
