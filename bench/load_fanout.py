"""The fan-out run (``bench/load.py --fanout N``): N supervisor clients on lean clients in
worker processes, a few calls, and the delivery of every call event to all of them,
beside the floor of one ready-made frame written to as many sockets
(``bench/fanout_floor.py``).
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from array import array
from typing import Any

from bench.load_callers import traffic
from bench.load_desktops import ClientProcesses, make_sessions
from bench.load_figures import diff, hist_quantile, lag_buckets, pct, raise_fd_limit, rss_kb
from bench.load_run import Bed, Options, Sampler, conditions


async def run_fanout(opts: Options, clients: int, workers: int) -> dict[str, Any]:
    raise_fd_limit(clients + 2000)
    agents_n = opts.agent_count()
    async with Bed(opts, agents_n) as bed:
        tokens = await make_sessions(bed.dsn, clients)
        await asyncio.sleep(max(0.0, bed.started + opts.settle_s - time.monotonic()))
        rss_before = rss_kb(bed.daemon.pid)[0]
        procs = ClientProcesses(bed.daemon.url.replace("http", "ws") + "/ws", tokens, workers)
        t_conn = time.monotonic()
        connected = await procs.connected()
        connect_s = time.monotonic() - t_conn
        await asyncio.sleep(2)
        rss_connected = rss_kb(bed.daemon.pid)[0]
        sampler = Sampler(bed, 1.0)
        sampling = asyncio.create_task(sampler.run())
        m0 = await bed.daemon.metrics(bed.http)
        cpu0, t0 = bed.cpu.read(), time.monotonic()
        bed.profile_window()
        rng = random.Random(opts.seed)
        placed = await traffic(bed.ami, rng, opts.mix, opts.rate, opts.duration, [0, 0])
        await bed.drain(0, timeout=max(opts.mix.patience) + 60)
        await asyncio.sleep(2)
        cpu1, window = bed.cpu.read(), time.monotonic() - t0
        bed.profile_window()
        m1 = await bed.daemon.metrics(bed.http)
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        results = await procs.results()
    # Merge: for each call event, its arrival at the last client of all.
    at: dict[Any, float] = {}
    last: dict[Any, float] = {}
    count: dict[Any, int] = {}
    lat = array("d")
    client_cpu = 0.0
    call_bytes = 0
    first: dict[Any, float] = {}
    kinds: dict[Any, str] = {}
    others: dict[str, list[int]] = {}
    for r in results:
        client_cpu += r["cpu"]
        call_bytes += r["call_bytes"]
        kinds.update(r["kinds"])
        for t, (n, size) in r["others"].items():
            tally = others.setdefault(t, [0, 0])
            tally[0] += n
            tally[1] += size
        for k, v in r["at"].items():
            at[k] = v
            last[k] = max(last.get(k, 0.0), r["last"][k])
            first[k] = min(first.get(k, math.inf), r["first"][k])
            count[k] = count.get(k, 0) + r["count"][k]
        part = array("d")
        part.frombytes(r["lat"])
        lat.extend(part)
    complete = [k for k in at if count[k] == connected]
    to_last = [last[k] - at[k] for k in complete]
    to_first = [first[k] - at[k] for k in complete]
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for k in complete:
        by_kind.setdefault(kinds[k], []).append((first[k] - at[k], last[k] - at[k]))
    kind_figures = {kind: {"events": len(v), "to_first_p50_s": pct([a for a, _ in v], 0.5),
                           "to_last_p50_s": pct([b for _, b in v], 0.5), "to_last_max_s": max(b for _, b in v)}
                    for kind, v in sorted(by_kind.items())}
    events = m1.get("cti_ws_events_total", 0) - m0.get("cti_ws_events_total", 0)
    deliveries = m1.get("cti_ws_deliveries_total", 0) - m0.get("cti_ws_deliveries_total", 0)
    cpu = diff(cpu0, cpu1)
    # The baseline: one ready-made frame of the same mean size written to as many
    # sockets, read by the same client code in as many processes (bench/fanout_floor.py).
    from bench.fanout_floor import run_floor
    mean_size = int(call_bytes / max(1, len(lat)))
    floor = await asyncio.to_thread(run_floor, connected, max(100, mean_size), 40, workers)
    return {
        "mode": "fanout", "floor": floor, "call_event_mean_bytes": mean_size, "conditions": conditions(opts), "rate_asked": opts.rate, "clients": clients,
        "connected": connected,
        "client_processes": workers, "connect_s": round(connect_s, 1), "calls_placed": placed,
        "call_events_seen": len(at), "events_reaching_every_client": len(complete),
        "events_published": events, "deliveries": deliveries, "window_s": round(window, 1),
        "delivery_p50_s": pct(lat, 0.5), "delivery_p99_s": pct(lat, 0.99),
        "to_last_client_p50_s": pct(to_last, 0.5), "to_last_client_p99_s": pct(to_last, 0.99),
        "to_last_client_max_s": max(to_last) if to_last else None,
        "to_first_client_p50_s": pct(to_first, 0.5), "to_first_client_p99_s": pct(to_first, 0.99),
        "by_kind": kind_figures,
        # What else each client received, per client: the wallboard snapshots above all.
        "call_event_bytes_per_client": int(call_bytes / max(1, connected)),
        "other_messages_per_client": {t: {"messages": round(n / max(1, connected), 1),
                                          "bytes": int(size / max(1, connected))}
                                      for t, (n, size) in sorted(others.items())},
        "flush_rounds": m1.get("cti_ws_flush_seconds_count", 0) - m0.get("cti_ws_flush_seconds_count", 0),
        "flush_p50_le_s": hist_quantile(lag_buckets(m0, "cti_ws_flush_seconds"),
                                        lag_buckets(m1, "cti_ws_flush_seconds"), 0.5),
        "flush_p99_le_s": hist_quantile(lag_buckets(m0, "cti_ws_flush_seconds"),
                                        lag_buckets(m1, "cti_ws_flush_seconds"), 0.99),
        "direct_writes": m1.get("cti_ws_direct_writes_total", 0) - m0.get("cti_ws_direct_writes_total", 0),
        "cpu_s": cpu, "client_processes_cpu_s": round(client_cpu, 2),
        "daemon_cpu_us_per_event": round(cpu["daemon"] / max(1, events) * 1e6, 1),
        "daemon_cpu_us_per_delivery": round(cpu["daemon"] / max(1, deliveries) * 1e6, 2),
        "daemon_rss_mb": {"before_clients": round(rss_before / 1024, 1),
                          "connected": round(rss_connected / 1024, 1),
                          "peak": round(sampler.rss_peak / 1024, 1)},
        "daemon_kb_per_connection": round((rss_connected - rss_before) / max(1, connected), 1),
        "slow_drops": m1.get("cti_ws_slow_drops_total", 0) - m0.get("cti_ws_slow_drops_total", 0),
    }
