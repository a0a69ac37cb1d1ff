"""``bench/load.py --api-nodes N``: the run's daemon publishes its events to a NATS JetStream
server of the run's own, and N ``cti api-node`` processes serve the desktops' and supervisors'
WebSockets from it (docs/scale-out.md), so the leader's CPU per call is measured without the
WebSocket fan-out, beside Asterisk's and the nodes' own (issue 20, item 4).

Logins and commands still go to the leader (a node forwards them); only ``/ws`` is on the
nodes, the clients spread over them in turn. The broker is started here (``nats-server -js`` on
a free port, its store in the run's folder), so the run works inside ``scripts/run-isolated``.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp

from bench.harness import ROOT, free_port
from bench.load_figures import cpu_seconds

STREAM, CLUSTER = "CTI_LOAD", "load"


class Broker:
    """A ``nats-server`` with JetStream for one run."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = workdir / "nats"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("nats-server")
        if exe is None:
            raise SystemExit("--api-nodes needs nats-server on PATH (Debian: apt install nats-server)")
        self.proc = subprocess.Popen([exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def leader_env(self) -> dict[str, str]:
        """What the daemon needs to publish to this broker."""
        return {"CTI_BROKER_URL": self.url, "CTI_BROKER_STREAM": STREAM, "CTI_BROKER_CLUSTER": CLUSTER}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class ApiNodes:
    """N ``cti api-node`` processes reading ``broker``'s stream and forwarding to ``leader_url``."""

    def __init__(self, n: int, broker: Broker, leader_url: str, dsn: str, workdir: Path) -> None:
        self.n, self.broker, self.leader_url, self.dsn, self.workdir = n, broker, leader_url, dsn, workdir
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def start(self, http: aiohttp.ClientSession, timeout: float = 60) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        for i, port in enumerate(self.ports):
            env = {**base, **self.broker.leader_env(), "CTI_HTTP_PORT": str(port),
                   "CTI_NODE_LEADER_URL": self.leader_url, "CTI_DATABASE_URL": self.dsn,
                   "CTI_LOG_LEVEL": "warning", "CTI_HTTP_CLIENT_MAX": "0", "PYTHONPATH": str(ROOT)}
            log = open(self.workdir / f"api-node-{i}.log", "ab")
            self.procs.append(subprocess.Popen([sys.executable, "-m", "server.cli", "api-node"], cwd=ROOT, env=env,
                                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        deadline = asyncio.get_running_loop().time() + timeout
        for url, proc in zip(self.urls, self.procs):
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"api node {url} exited ({proc.returncode}); see {self.workdir}")
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise SystemExit(f"api node {url} not ready within {timeout:g} s")
                await asyncio.sleep(0.2)

    def ws_url(self, i: int) -> str:
        """The i-th client's node, in turn."""
        return self.urls[i % self.n].replace("http", "ws") + "/ws"

    def cpu(self) -> dict[str, float]:
        return {"api_nodes": sum(cpu_seconds(p) for p in self.pids),
                "broker": cpu_seconds(self.broker.proc.pid) if self.broker.proc else 0.0}

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
