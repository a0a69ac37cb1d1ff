"""The floor under a fan-out: the least a Python server can do to put one
message on N sockets, measured on the machine the daemon's fan-out runs on.

``bench/load.py --fanout`` times a call event from Asterisk to the last of N
WebSocket clients. How much of that is the daemon? This baseline does only
what cannot be avoided: the message is one ready-made WebSocket frame, written
to N connected loopback TCP sockets in a tight loop (one ``send`` each), and
read by the same lean client code (``bench.wsclient.FrameReader``) in the same
number of processes as the daemon's clients. Its "to the last client" is the
time from before the first ``send`` to the last arrival: the kernel's loopback
work, the readers' wake-ups and their Python, on the same cores.

    .venv/bin/python bench/fanout_floor.py --clients 2000 --size 1500 --rounds 40

``bench/load.py --fanout`` runs it first with the same N, processes and the
mean size of the call events it then measures, and prints both side by side.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _reader(pipe: Any) -> None:
    """A process accepting connections on a port it reports; records, per round
    (the first 8 bytes of each message, in digits), the latest arrival."""
    from bench.wsclient import FrameReader

    _raise_fd_limit()

    async def main() -> None:
        last: dict[int, float] = {}
        count: dict[int, int] = {}

        class Client(asyncio.Protocol):
            def __init__(self) -> None:
                self.frames = FrameReader()

            def data_received(self, data: bytes) -> None:
                now = time.time()
                for _, payload in self.frames.feed(data):
                    r = int(payload[:8])
                    last[r] = now if now > last.get(r, 0.0) else last[r]
                    count[r] = count.get(r, 0) + 1

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Client, "127.0.0.1", 0, backlog=4096)
        pipe.send(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, pipe.recv)
        me = resource.getrusage(resource.RUSAGE_SELF)
        pipe.send({"last": last, "count": count, "cpu": me.ru_utime + me.ru_stime})
        server.close()

    asyncio.run(main())


def run_floor(clients: int, size: int, rounds: int = 40, processes: int = 2, gap_s: float = 0.25) -> dict[str, Any]:
    """Write one ``size``-byte frame to ``clients`` sockets, ``rounds`` times."""
    from api.ws import text_frame

    _raise_fd_limit()
    ctx = multiprocessing.get_context("spawn")
    pipes, procs, ports = [], [], []
    for _ in range(processes):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_reader, args=(child,), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
        ports.append(parent.recv())
    socks = []
    try:
        for i in range(clients):
            s = socket.create_connection(("127.0.0.1", ports[i % processes]))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as aiohttp's server sockets
            s.setblocking(False)
            socks.append(s)
        time.sleep(1.0)
        starts, loops = [], []
        cpu0 = time.process_time()
        for r in range(rounds):
            frame = text_frame(f"{r:08d}" + "x" * max(0, size - 8))
            t0 = time.time()
            for s in socks:
                s.send(frame)
            loops.append(time.time() - t0)
            starts.append(t0)
            time.sleep(gap_s)
        cpu = time.process_time() - cpu0
        time.sleep(1.0)
        results = []
        for pipe in pipes:
            pipe.send("stop")
            results.append(pipe.recv())
    finally:
        for s in socks:
            s.close()
        for p in procs:
            p.join(5)
    to_last, complete = [], 0
    for r, t0 in enumerate(starts):
        n = sum(res["count"].get(r, 0) for res in results)
        if n == clients:
            complete += 1
            to_last.append(max(res["last"][r] for res in results if r in res["last"]) - t0)
    to_last.sort()
    return {"clients": clients, "size": size, "rounds": rounds, "processes": processes,
            "rounds_complete": complete,
            "send_loop_p50_s": statistics.median(loops),
            "sender_cpu_us_per_send": round(cpu / (clients * rounds) * 1e6, 2),
            "to_last_client_p50_s": to_last[len(to_last) // 2] if to_last else None,
            "to_last_client_p99_s": to_last[min(len(to_last) - 1, int(len(to_last) * 0.99))] if to_last else None,
            "readers_cpu_us_per_message": round(sum(res["cpu"] for res in results) / (clients * rounds) * 1e6, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1500, help="message bytes")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--processes", type=int, default=2, help="reader processes")
    a = ap.parse_args()
    print(json.dumps(run_floor(a.clients, a.size, a.rounds, a.processes), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
