"""Failover of an HA pair under load: the leader SIGKILLed again and again (docs/ha.md).

    python -m bench.failover --kills 10 [--rate 3] [--gap 12] [--json out.json]
    python -m bench.failover --kills 5 --pause 20     # SIGSTOP 20 s, then SIGCONT, instead
    python -m bench.failover --kills 10 --handover    # planned handovers (cti handover) instead
    python -m bench.failover --kills 5 --pgcut 12     # the leader's path to PostgreSQL cut 12 s instead
    python -m bench.failover --kills 5 --compare --wrapup 15   # warm standby, then cold, one command
    python -m bench.failover --kills 20 --rate 8 --agents 50     # the issue's load

Two ``cti serve`` processes (``ha_cluster``, bench/harness.py ``DaemonProcess``) on one
embedded PostgreSQL of the run's own and the sandbox's Asterisk, with the routing of
bench/faults-acd.toml (sixteen simulated agents, two queues). Callers arrive at ``--rate``
(Poisson) for the whole run. Every ``--gap`` seconds the leader is killed with SIGKILL; the
standby must take over; the killed node is started again (a fresh standby) before the next
kill. For each kill:

- **takeover**: from the kill to the standby's ``/healthz`` saying ``leader`` (polled every
  0.1 s);
- **first offer**: from the kill to the new leader's first ``acd.offer`` (its timeline in
  ``call_events``; only a leader writes timelines, and the old one is dead);
- the epoch rose;
- **after takeover**: from the standby leading to that first offer (first offer - takeover);
- **ACD work**: the new leader's own account of its ACD's start (``/healthz`` ``acd.takeover``
  ``total_s``: a warm one's reconciliation, a cold one's stored states and adoption);
- **agents' states** as the old leader's router held them just before the kill and as the new
  leader's holds them once its ACD has started (``/healthz`` ``acd.agents``: how many in each
  state), and how many agents changed state across it (half the sum of the differences: at
  least that many). A warm standby (``ha_warm``, the default: docs/ha.md "Warm standby")
  keeps wrap-ups and breaks; a cold one (``--cold``) starts agents from the stored log.

``--compare`` runs the whole bench twice in one command, warm standbys then cold ones, and
prints both rows. ``--wrapup S`` gives the queues ``wrapup_s = S`` (the routing's is 1 s), so
that agents are in wrap-up at a kill.

With ``--pause S`` the leader is not killed but stopped (SIGSTOP) for S seconds and then
resumed (SIGCONT): the standby must take over meanwhile, and the resumed node must step down
and exit with 75 having offered nothing (no ``CtiOfferRefused`` from the dialplan after it
resumed: its gate kept its offers off the wire).

With ``--pgcut S`` each node reaches PostgreSQL through a path of its own (``bench/pgcut.py``:
a loopback TCP link to the embedded server's socket) and the leader is not killed but its
path is cut for S seconds (nothing passes either way, no reset), then restored: the leader
must step down and exit with 75, the standby take over (evicting the cut-off session), and no
call be lost; offers refused by the dialplan after the cut are counted (the old leader's late
actions).

With ``--handover`` each "kill" is a planned handover, as ``cti handover`` asks it (the
lease row's ``handover_requested``): the leader stops acting, releases its lease and exits
with 75; **takeover** is then from the request to the standby leading, and the callers
waiting at the request must all be answered or hang up of their own patience, none sent to
the app_queue fallback (``QueueCallerJoin``).

**Desktops** (on by default, ``--no-desktops`` to leave them out): the pair publishes
through a ``nats-server`` of the run's own (docs/ha.md "Clients follow the leader"), and an
agent desktop per simulated agent plus ``--supervisors`` supervisors stay connected for the
whole run, half on each node (``bench/failover_desktops.py``). A client whose node is killed
moves to the other one with its ``stream`` and ``last_seq``. After the run the stream is read
back and each client's ``seq`` compared with the messages meant for it from its first hello
(``bench/failover_checks.py``): contiguous means each once, in order; a resume's replay
fills a gap, a ``resync`` leaves it (reported as missing).

**The waiting callers' order**: at each kill the callers the database holds as waiting, in
the ACD's order for this routing (one priority, every agent in both queues: arrival); after
the run, for each of them the ACD's offer its agent answered (``acd.offer`` naming that agent);
a pair served the other way round is a violation (``order_violations``). Callers answered with
no offer on their timeline (the
old leader's last rows, lost with it), answered before the kill (the row lagged) or never
answered are counted apart. The order of the rings and of the answers is shown too (a pair's
gated offers of one batch ring in any order; the simulated ring of 0 or 1 s reorders answers).

After the last kill the traffic stops, every call ends, and ``bench.integrity`` checks every
call Asterisk created: in the database once, closed, timestamps in order; no agent answered a
call while still on another. The exit status is 1 when that fails, a desktop's ``seq`` is not
contiguous or a waiting caller was overtaken. Prints JSON and a markdown table for BENCHMARKS.md. Run as root
with the sandbox up, e.g. ``scripts/run-isolated ha .venv/bin/python -m bench.failover``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from acd.config import load_config
from bench.harness import (Database, DaemonProcess, HarnessError, Traffic, daemon_env, demo_times, free_port,
                           integrity, sandbox, wait_quiet)
from bench.pgcut import Link
from bench.failover_checks import answering_offer, order_violations
from bench.failover_desktops import Broker, Desktop, caught_up, connect_all, make_sessions, read_stream
from bench.failover_desktops import report as desktops_report
from cti.lease_pg import ASK_HANDOVER

ACD_CONFIG = Path(__file__).with_name("faults-acd.toml")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


async def _ha(d: DaemonProcess, http: aiohttp.ClientSession) -> dict[str, Any]:
    try:
        async with http.get(d.url + "/healthz") as r:
            return (await r.json()).get("ha") or {}
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return {}


async def _until(check: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(every)
    raise HarnessError(f"not within {timeout}s: {what}")


async def double_booked(db: Database, prefix: str, agents: list[str]) -> list[str]:
    """Calls an agent answered while still on an earlier one (the ACD's agents only)."""
    rows = await db.fetch(
        "SELECT call_id, agent, agent_answered_at, ended_at FROM calls WHERE call_id LIKE $1"
        " AND agent = ANY($2) AND agent_answered_at IS NOT NULL ORDER BY agent, agent_answered_at",
        prefix + "%", agents)
    return [f"{n['agent']}: {n['call_id']} during {p['call_id']}" for p, n in zip(rows, rows[1:])
            if p["agent"] == n["agent"] and p["ended_at"] is not None and n["agent_answered_at"] < p["ended_at"]]


def routing_text(wrapup: float | None = None, agents: int | None = None) -> str:
    """bench/faults-acd.toml's text, with every queue's ``wrapup_s`` set to ``wrapup`` and
    ``agents`` agents (``f01``.., ``Local/agent21@``.. onwards, each like the file's first)
    when given (pure)."""
    text = ACD_CONFIG.read_text()
    if wrapup is not None:
        text = re.sub(r"(?m)^wrapup_s = .*$", f"wrapup_s = {wrapup:g}", text)
    if agents is not None:
        if agents < 1:
            raise ValueError(f"agents must be at least 1, not {agents}")
        first = text.index("[[agents]]")
        end = text.index("[[queues]]")
        template = text[first:text.index("[[agents]]", first + 1)]
        blocks = [re.sub(r'(?m)^device = "Local/agent\d+@', f'device = "Local/agent{20 + n}@',
                         re.sub(r'(?m)^name = ".*"$', f'name = "Agent {n}"',
                                re.sub(r'(?m)^id = ".*"$', f'id = "f{n:02d}"', template)))
                  for n in range(1, agents + 1)]
        text = text[:first] + "".join(blocks) + text[end:]
    return text


def acd_config(workdir: Path, wrapup: float | None, agents: int | None = None) -> Path:
    """The routing file: bench/faults-acd.toml as it is, or ``routing_text`` of it."""
    if wrapup is None and agents is None:
        return ACD_CONFIG
    path = workdir / "failover-acd.toml"
    path.write_text(routing_text(wrapup, agents))
    return path


async def _acd(d: DaemonProcess, http: aiohttp.ClientSession) -> dict[str, Any]:
    try:
        async with http.get(d.url + "/healthz") as r:
            return (await r.json()).get("acd") or {}
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return {}


def changed(before: dict[str, int], after: dict[str, int]) -> int:
    """At least how many agents changed state between two counts by state."""
    keys = set(before) | set(after)
    return sum(abs(before.get(k, 0) - after.get(k, 0)) for k in keys) // 2


async def run(kills: int, rate: float, gap: float, workdir: Path, ttl: float,
              pause: float | None = None, handover: bool = False, warm: bool = True,
              wrapup: float | None = None, agents: int | None = None, desktops: bool = True,
              supervisors: int = 2, pgcut: float | None = None) -> dict[str, Any]:
    await asyncio.to_thread(sandbox, "up")
    await asyncio.to_thread(sandbox, "cli", "channel request hangup all")
    await wait_quiet(30)
    db = Database(workdir / "db")
    dsn = await db.start()
    traffic = Traffic(rate=rate, prefix=f"fo{uuid.uuid4().hex[:8]}", patience=(20, 60))
    ami = await traffic.connect()
    refused: list[float] = []
    ami.add_listener(lambda f: refused.append(time.time()) if f.headers.get("Event") == "UserEvent"
                     and f.headers.get("UserEvent") in ("CtiOfferRefused", "CtiActionRefused") else None)
    fallback: list[float] = []
    ami.add_listener(lambda f: fallback.append(time.time()) if f.headers.get("Event") == "QueueCallerJoin" else None)
    await ami.send("Setvar", {"Variable": "CTI_ACD_EPOCH", "Value": ""}, shape="single")
    nodes = []
    routing = acd_config(workdir, wrapup, agents)
    agent_ids = [a.id for a in load_config(routing).agents]
    broker = Broker(workdir) if desktops else None
    ports = {"n1": free_port(), "n2": free_port()}
    # With desktops: the events go through a broker of the run's own, both nodes serve its
    # stream on /ws (docs/ha.md "Clients follow the leader"), and each knows the other's address.
    shared: dict[str, Any] = {}
    if broker is not None:
        shared = {**broker.settings(), "ha_peers": ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in ports.items()),
                  "http_client_max": 0}
    links: dict[str, Link] = {}
    for name in ("n1", "n2"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
        node_dsn = dsn
        if pgcut:
            links[name] = Link(dsn)
            await links[name].start()
            node_dsn = links[name].dsn
        env = daemon_env(node_dsn, workdir / name, acd_config=routing, ha_cluster="bench", ha_node=name, ha_warm=warm,
                         agi_port=free_port(), ha_ttl=ttl, ha_renew_within=ttl * 2 / 3, http_port=ports[name],
                         ha_renew_every=min(0.5, ttl / 6), log_level="warning", **shared)
        nodes.append(DaemonProcess(env, workdir / f"{name}.log"))

    def link_of(d: DaemonProcess) -> Link:
        return links[d.env["CTI_HA_NODE"]]

    kills_out: list[dict[str, Any]] = []
    clients: list[Desktop] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
    ws_http = aiohttp.ClientSession()
    try:
        if broker is not None:
            await broker.start()
        await nodes[0].start()
        await _until(lambda: _leader(nodes[0], http), 30, "n1 leading")
        await nodes[1].start()
        if broker is not None:
            for d in nodes:
                await _until(lambda d=d: _stream_ready(d, http), 30, f"{d.url}: /ws read the stream")
            people = await make_sessions(dsn, agent_ids, supervisors)
            urls = [d.url.replace("http", "ws") + "/ws" for d in nodes]
            # Half on each node: the leader's move at its kill, the standby's stay.
            clients = [Desktop(name, agent_id, token, urls, at=i % 2)
                       for i, (name, agent_id, token) in enumerate(people)]
            await connect_all(clients, ws_http)
        await demo_times(traffic, ring=(0, 1), talk=(3, 8))
        t0 = time.time()
        traffic.start()
        await asyncio.sleep(gap)
        leader, standby = nodes
        for n in range(kills):
            before = await _ha(leader, http)
            states_before = (await _acd(leader, http)).get("agents") or {}
            # Their order: the ACD's, as this routing makes it (one priority, every agent in both
            # queues, aging weight 1): arrival, whatever the queue.
            queued = [r["call_id"] for r in await db.fetch(
                "SELECT call_id FROM calls WHERE call_id LIKE $1 AND state = 'queued'"
                " ORDER BY queue_joined_at, call_id", traffic.prefix + "%")]
            on_leader = sum(1 for c in clients if c.urls[c.at].startswith(leader.url.replace("http", "ws")))
            killed_at, killed_mono = time.time(), time.monotonic()
            if pause:
                leader.send_signal(signal.SIGSTOP)
            elif pgcut:
                link_of(leader).cut()
            elif handover:
                asked = await db.fetch(ASK_HANDOVER, "bench", before.get("node"), before.get("epoch"))
                if not asked:
                    raise HarnessError(f"handover {n + 1}: the leader's row was not the one asked")
            else:
                await leader.kill()
            ha = await _until(lambda: _leader(standby, http), 30, f"kill {n + 1}: the standby took over", every=0.05)
            takeover = time.monotonic() - killed_mono

            async def acd_started() -> dict[str, Any] | None:
                got = await _acd(standby, http)
                return got if got.get("epoch") == ha["epoch"] and got.get("takeover") else None

            try:
                started = await _until(acd_started, 10, f"kill {n + 1}: the new leader's ACD started", every=0.05)
            except HarnessError:
                started = {}
            states_after = started.get("agents") or {}
            work = (started.get("takeover") or {}).get("total_s")
            kills_out.append({"kill": n + 1, "killed_at": killed_at, "takeover_s": round(takeover, 3),
                              "waiting": queued, "desktops_on_leader": on_leader,
                              "epoch_before": before.get("epoch"), "epoch_after": ha["epoch"],
                              "agents_before": states_before, "agents_after": states_after, "acd_work_s": work,
                              "agents_changed": changed(states_before, states_after) if states_after else None})
            if handover:
                proc = leader.proc

                async def handed_over() -> bool:
                    return proc is not None and proc.returncode is not None

                await _until(handed_over, 30, f"handover {n + 1}: the old leader exited", every=0.05)
                kills_out[-1]["exit_status"] = proc.returncode if proc is not None else None
                kills_out[-1]["exited_after_s"] = round(time.monotonic() - killed_mono, 3)
                kills_out[-1]["old_leader"] = (await asyncio.to_thread(_handover_line, leader.log_path))
            if pause:
                await asyncio.sleep(max(0.0, pause - (time.monotonic() - killed_mono)))
                resumed_at = time.time()
                leader.send_signal(signal.SIGCONT)
                proc = leader.proc

                async def exited() -> bool:
                    return proc is not None and proc.returncode is not None

                await _until(exited, 30, f"pause {n + 1}: the resumed leader exited", every=0.1)
                kills_out[-1]["exit_status"] = proc.returncode if proc is not None else None
                kills_out[-1]["exited_after_s"] = round(time.time() - resumed_at, 2)
                kills_out[-1]["refused_after_resume"] = sum(1 for t in refused if t >= resumed_at)
            if pgcut:
                await asyncio.sleep(max(0.0, pgcut - (time.monotonic() - killed_mono)))
                proc = leader.proc
                kills_out[-1]["exited_before_restore"] = proc is not None and proc.returncode is not None
                restored_at, restored_mono = time.time(), time.monotonic()
                link_of(leader).restore()

                async def stepped_down() -> bool:
                    return proc is not None and proc.returncode is not None

                try:
                    await _until(stepped_down, 30, f"cut {n + 1}: the cut-off leader exited", every=0.1)
                    kills_out[-1]["exited_after_restore_s"] = round(time.monotonic() - restored_mono, 2)
                except HarnessError:
                    await leader.kill()
                kills_out[-1]["exit_status"] = proc.returncode if proc is not None else None
                kills_out[-1]["exit_note"] = await asyncio.to_thread(_step_down_line, leader.log_path)
                kills_out[-1]["refused_after_cut"] = sum(1 for t in refused if t >= killed_at)
                kills_out[-1]["restored_after_s"] = round(restored_at - killed_at, 2)
            await leader.start()        # back as a standby (its node name again; a new epoch if it leads)
            leader, standby = standby, leader
            await asyncio.sleep(gap)
        await traffic.stop()
        left = await wait_quiet(60 + 8 + 30)

        async def flushed() -> bool:
            got = await leader.health()
            return bool(got and got[1]["database"]["buffered"] == 0 and got[1]["model"]["calls"] == 0)

        try:
            await _until(flushed, 60, "the leader's model empty and writer flushed", every=0.5)
        except HarnessError:
            pass
        await asyncio.sleep(2)
        report = await integrity(dsn, traffic, t0, time.time())
        desk: dict[str, Any] | None = None
        if broker is not None:
            stream = await read_stream(broker.url)
            await caught_up(clients, stream, 20)
            desk = desktops_report(clients, stream, traffic.real_ids())
            # Where each node's /ws stood at the end (a client behind its node's reading shows here).
            nodes_end = {}
            for d in (leader, standby):
                got = await d.health()
                nodes_end[d.log_path.stem] = None if got is None else got[1].get("stream")
            desk["nodes_at_end"] = nodes_end
        double = await double_booked(db, traffic.prefix, agent_ids)
        offers = await db.fetch("SELECT at FROM call_events WHERE kind = 'acd.offer' ORDER BY at")
        at = [r["at"].timestamp() for r in offers]
        for i, k in enumerate(kills_out):
            end = kills_out[i + 1]["killed_at"] if i + 1 < len(kills_out) else float("inf")
            first = next((a for a in at if k["killed_at"] < a < end), None)
            k["first_offer_s"] = None if first is None else round(first - k["killed_at"], 3)
            k["after_takeover_s"] = None if first is None else round(k["first_offer_s"] - k["takeover_s"], 3)
        orders = [k.pop("waiting") for k in kills_out]
        waited = sorted({c for order in orders for c in order})
        fates = {r["call_id"]: r for r in await db.fetch(
            "SELECT call_id, agent, agent_answered_at, abandoned FROM calls WHERE call_id = ANY($1)", waited)}
        offered: dict[str, list[tuple[float, str]]] = {}
        rang: dict[str, list[tuple[float, str]]] = {}
        for r in await db.fetch("SELECT call_id, at, kind, data->>'agent' AS agent FROM call_events"
                                " WHERE kind IN ('acd.offer', 'call.offered') AND call_id = ANY($1)", waited):
            (offered if r["kind"] == "acd.offer" else rang).setdefault(r["call_id"], []).append(
                (r["at"].timestamp(), r["agent"] or ""))
        for k, order in zip(kills_out, orders):
            k.update(waiting_order(order, k["killed_at"], fates, offered, rang))
        answered = sum(1 for c in waited if fates.get(c) and fates[c]["agent_answered_at"] is not None)
        abandoned = sum(1 for c in waited if fates.get(c) and fates[c]["abandoned"])
        takeovers = [k["takeover_s"] for k in kills_out]
        firsts = [k["first_offer_s"] for k in kills_out if k["first_offer_s"] is not None]
        afters = [k["after_takeover_s"] for k in kills_out if k["after_takeover_s"] is not None]
        changes = [k["agents_changed"] for k in kills_out if k["agents_changed"] is not None]
        works = [k["acd_work_s"] for k in kills_out if k["acd_work_s"] is not None]
        epochs_rise = all(k["epoch_after"] > (k["epoch_before"] or 0) for k in kills_out)
        return {
            "kills": kills, "rate": rate, "gap_s": gap, "ttl_s": ttl, "agents": len(agent_ids),
            "takeover_p50_s": round(percentile(takeovers, 50), 2), "takeover_p99_s": round(percentile(takeovers, 99), 2),
            "takeover_max_s": round(max(takeovers), 2),
            "first_offer_p50_s": round(percentile(firsts, 50), 2) if firsts else None,
            "first_offer_p99_s": round(percentile(firsts, 99), 2) if firsts else None,
            "first_offer_max_s": round(max(firsts), 2) if firsts else None,
            "kills_without_offer": len(kills_out) - len(firsts),
            "warm": warm, "wrapup_s": wrapup,
            "after_takeover_p50_s": round(percentile(afters, 50), 3) if afters else None,
            "after_takeover_p99_s": round(percentile(afters, 99), 3) if afters else None,
            "acd_work_p50_s": round(percentile(works, 50), 3) if works else None,
            "acd_work_max_s": round(max(works), 3) if works else None,
            "agents_changed_total": sum(changes), "agents_changed_max": max(changes) if changes else None,
            "wrapup_before_total": sum(k["agents_before"].get("wrapup", 0) for k in kills_out),
            "wrapup_after_total": sum(k["agents_after"].get("wrapup", 0) for k in kills_out),
            "epochs_rose": epochs_rise, "channels_left": left,
            # Callers the database held as waiting when a leader was killed (as last written):
            # answered by an agent afterwards, or hung up (patience 20-60 s), or neither.
            "waiting_at_kills": len(waited), "of_them_answered": answered, "of_them_abandoned": abandoned,
            # Their order (waiting_order): answered in the order they waited, by the offer taken.
            "order_compared": sum(k["order_compared"] for k in kills_out),
            "order_violations": sum(k["order_violations"] for k in kills_out),
            "order_overtaken": sum(k["order_overtaken"] for k in kills_out),
            "order_by_ring_violations": sum(k["order_by_ring_violations"] for k in kills_out),
            "order_by_answer_time_violations": sum(k["order_by_answer_time_violations"] for k in kills_out),
            "order_offered_before_kill": sum(k["order_offered_before_kill"] for k in kills_out),
            "order_not_answered": sum(k["order_not_answered"] for k in kills_out),
            "order_offer_not_recorded": sum(k["order_offer_not_recorded"] for k in kills_out),
            "desktops": desk, "supervisors": supervisors if desk else 0,
            "calls_created": len(traffic.real_ids()), "integrity": report.summary(), "integrity_ok": report.ok,
            "integrity_detail": "" if report.ok else report.explain(),
            "double_booked": double[:5], "per_kill": kills_out, "pause_s": pause,
            "offers_refused": len(refused),
            "resumed_exits_75": None if not pause else all(k.get("exit_status") == 75 for k in kills_out),
            "handover": handover, "pgcut_s": pgcut,
            "cut_exits_75": None if not pgcut else all(k.get("exit_status") == 75 for k in kills_out),
            "handed_over_exits_75": None if not handover else all(k.get("exit_status") == 75 for k in kills_out),
            "sent_to_fallback": len(fallback),
            "abandoned_total": (await db.fetch("SELECT count(*) AS n FROM calls WHERE call_id LIKE $1 AND abandoned",
                                               traffic.prefix + "%"))[0]["n"],
        }
    finally:
        for c in clients:
            await c.stop()
        await ws_http.close()
        await http.close()
        await traffic.close()
        for d in nodes:
            await d.stop(timeout=20)
        if broker is not None:
            broker.stop()
        for link in links.values():
            await link.stop()
        await db.stop()
        await asyncio.to_thread(sandbox, "cli", "channel request hangup all")


def waiting_order(order: list[str], killed_at: float, fates: dict[str, Any],
                  offered: dict[str, list[tuple[float, str]]],
                  rang: dict[str, list[tuple[float, str]]]) -> dict[str, Any]:
    """The callers waiting at one kill (``order``: the ACD's order then) against when the ACD
    offered each to the agent who answered it (``answering_offer`` of its ``acd.offer``
    events); callers whose answered offer came before the kill (the database's row lagged the
    router), answered with no offer on their timeline (the old leader's last rows, lost with
    it) or never answered are left out and counted. Also the order of the rings answered
    (``call.offered``, Asterisk's: a pair's gate runs each offer's Originate on a thread of its
    own, so one batch of offers rings in any order) and of the answers (the simulated ring of
    0 or 1 s shuffles them)."""
    offer_at: dict[str, float | None] = {}
    ring_at: dict[str, float | None] = {}
    answer_at: dict[str, float | None] = {}
    before = 0
    unrecorded: list[float] = []
    for c in order:
        row = fates.get(c)
        agent = row["agent"] if row and row["agent_answered_at"] is not None else None
        taken = answering_offer(offered.get(c, []), agent)
        if taken is not None and taken < killed_at:
            before += 1
            continue
        answered = row["agent_answered_at"].timestamp() if agent is not None else None
        if agent is not None and taken is None:
            unrecorded.append(round(answered - killed_at, 3))        # type: ignore[operator]
            continue
        offer_at[c], answer_at[c] = taken, answered
        rings = [t for t, _ in rang.get(c, []) if answered is not None and t <= answered]
        ring_at[c] = max(rings) if rings else None
    kept = [c for c in order if c in offer_at]
    by_offer = order_violations(kept, offer_at)
    return {"order_compared": by_offer.compared, "order_violations": len(by_offer.violations),
            "order_overtaken": len(by_offer.overtaken), "order_examples": by_offer.violations[:3],
            "order_by_ring_violations": len(order_violations(kept, ring_at).violations),
            "order_by_answer_time_violations": len(order_violations(kept, answer_at).violations),
            "order_offered_before_kill": before, "order_not_answered": len(by_offer.unserved),
            "order_offer_not_recorded": len(unrecorded), "order_offer_not_recorded_answered_after_s": unrecorded[:10]}


async def _stream_ready(d: DaemonProcess, http: aiohttp.ClientSession) -> bool:
    try:
        async with http.get(d.url + "/healthz") as r:
            return bool(((await r.json()).get("stream") or {}).get("ready"))
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return False


def _step_down_line(path: Path) -> str | None:
    """The node's last log line about leadership ending (``ha ...`` with ``step`` in it)."""
    found = None
    for line in path.read_text(errors="replace").splitlines():
        if '"ha ' in line and "step" in line:
            try:
                found = json.loads(line).get("event")
            except ValueError:
                continue
    return found


def _handover_line(path: Path) -> dict[str, Any] | None:
    """The old leader's own account of its handover (its last ``ha handed over`` log line):
    how long stopping its features and releasing the lease took."""
    found = None
    for line in path.read_text(errors="replace").splitlines():
        if "ha handed over" in line:
            try:
                got = json.loads(line)
            except ValueError:
                continue
            found = {k: got.get(k) for k in ("stop_s", "drain_s", "drained", "release_s", "released")}
    return found


async def _leader(d: DaemonProcess, http: aiohttp.ClientSession) -> dict[str, Any] | None:
    ha = await _ha(d, http)
    return ha if ha.get("role") == "leader" else None


def render(r: dict[str, Any]) -> str:
    s = r["integrity"]
    extra = []
    if r.get("pause_s"):
        exits = [k.get("exited_after_s") for k in r["per_kill"] if k.get("exited_after_s") is not None]
        extra = [f"\nEach leader paused {r['pause_s']} s (SIGSTOP, then SIGCONT): resumed leaders exited with 75: "
                 f"{'all' if r['resumed_exits_75'] else 'NOT ALL'}, "
                 f"{max(exits) if exits else '-'} s after SIGCONT at most; offers refused by the dialplan after "
                 f"a resume: {sum(k.get('refused_after_resume', 0) for k in r['per_kill'])}."]
    if r.get("pgcut_s"):
        extra = [f"\nEach leader's path to PostgreSQL cut {r['pgcut_s']} s, then restored: cut-off leaders exited "
                 f"with 75: {'all' if r['cut_exits_75'] else 'NOT ALL'}; actions refused by the dialplan after a cut: "
                 f"{sum(k.get('refused_after_cut', 0) for k in r['per_kill'])}."]
    if r.get("handover"):
        stops = [k["old_leader"]["stop_s"] for k in r["per_kill"] if k.get("old_leader")]
        drains = [k["old_leader"].get("drain_s") or 0 for k in r["per_kill"] if k.get("old_leader")]
        released = sum(1 for k in r["per_kill"] if (k.get("old_leader") or {}).get("released"))
        extra = [f"\nPlanned handovers (`cti handover`'s request): old leaders exited with 75: "
                 f"{'all' if r['handed_over_exits_75'] else 'NOT ALL'}; lease released by the old leader: "
                 f"{released} of {len(r['per_kill'])}; stopping its features took at most "
                 f"{max(stops) if stops else '-'} s, emptying its writer at most {max(drains) if drains else '-'} s; "
                 f"callers sent to the app_queue fallback: {r['sent_to_fallback']}; "
                 f"calls abandoned in the whole run: {r['abandoned_total']}."]
    extra.append(f"\nCallers waiting at a kill, answered afterwards: {r['order_compared']} compared in the order they "
                 f"waited (by the offer their agent answered): {r['order_violations']} pairs served the other way "
                 f"round ({r['order_overtaken']} callers overtaken); by the ring answered (a batch of gated "
                 f"offers rings in any order): {r.get('order_by_ring_violations')} pairs; by the answer's own time "
                 f"(the simulated ring of 0 or 1 s shuffles it): {r['order_by_answer_time_violations']} pairs; "
                 f"left out: "
                 f"{r['order_offered_before_kill']} already offered at the kill, {r['order_not_answered']} never "
                 f"answered, {r.get('order_offer_not_recorded', 0)} answered with no offer on their timeline "
                 f"(the old leader's last rows).")
    d = r.get("desktops")
    if d:
        extra.append(f"\nDesktops ({d['desktops'] - d['supervisors']} agents, {d['supervisors']} supervisors, through "
                     f"the run's broker): `seq` contiguous for {d['contiguous']} of {d['desktops']}; messages "
                     f"expected / received {d['messages_expected']} / {d['messages_received']}; missing "
                     f"{d['missing']}, repeated {d['repeated']}, out of order {d['out_of_order']}, not theirs "
                     f"{d['unexpected']}; reconnects {d['reconnects']} (resumed {d['resumed']}, resync "
                     f"{d['resyncs']}); calls whose end a supervisor never received: "
                     f"{d['calls_whose_end_a_supervisor_missed']}.")
    extra.append(f"\n{'Warm' if r.get('warm', True) else 'Cold'} standby: the ACD's work to take over "
                 f"(`/healthz` acd.takeover.total_s) p50 {r.get('acd_work_p50_s')} s, max {r.get('acd_work_max_s')} s; "
                 f"first offer after the takeover p50 "
                 f"{r.get('after_takeover_p50_s')} s, p99 {r.get('after_takeover_p99_s')} s; agents in wrap-up "
                 f"before the kills / right after the takeovers: {r.get('wrapup_before_total')} / "
                 f"{r.get('wrapup_after_total')}; agents whose state changed across a takeover: "
                 f"{r.get('agents_changed_total')} in all, at most {r.get('agents_changed_max')} at once.")
    return "\n".join([
        "| kills | rate | agents | ttl | takeover p50 / p99 / max | first offer p50 / p99 / max | calls | in DB once, "
        "closed | agent on two calls | epochs rose | waiting at a kill: answered / hung up / total |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['kills']} | {r['rate']}/s | {r['agents']} | {r['ttl_s']} s | {r['takeover_p50_s']} / "
        f"{r['takeover_p99_s']} / {r['takeover_max_s']} s | {r['first_offer_p50_s']} / {r['first_offer_p99_s']} / "
        f"{r['first_offer_max_s']} s | {r['calls_created']} | "
        f"{'yes' if r['integrity_ok'] else 'NO: missing %s open %s extra %s' % (s['missing'], s['open'], s['extra'])} | "
        f"{len(r['double_booked'])} | {'yes' if r['epochs_rose'] else 'NO'} | {r['of_them_answered']} / "
        f"{r['of_them_abandoned']} / {r['waiting_at_kills']} |",
    ] + extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--rate", type=float, default=3.0, help="callers per second (default 3)")
    p.add_argument("--gap", type=float, default=12.0, help="seconds between kills (default 12)")
    p.add_argument("--ttl", type=float, default=3.0, help="the lease's ttl (default 3 s, the daemon's)")
    p.add_argument("--pause", type=float, default=None,
                   help="SIGSTOP the leader this many seconds, then SIGCONT, instead of SIGKILL")
    p.add_argument("--handover", action="store_true",
                   help="a planned handover (cti handover's request) instead of SIGKILL")
    p.add_argument("--pgcut", type=float, default=None,
                   help="cut the leader's path to PostgreSQL this many seconds, then restore it, instead of SIGKILL")
    p.add_argument("--cold", action="store_true", help="cold standbys (ha_warm false): adoption as after a restart")
    p.add_argument("--compare", action="store_true", help="warm standbys, then cold ones, in one command")
    p.add_argument("--wrapup", type=float, default=None, help="every queue's wrapup_s (default: the routing's 1 s)")
    p.add_argument("--agents", type=int, default=None, help="simulated agents (default: the routing's 16)")
    p.add_argument("--desktops", action=argparse.BooleanOptionalAction, default=True,
                   help="a desktop per agent and --supervisors supervisors through a broker of the run's own "
                        "(nats-server), their seq checked across the kills (default: on)")
    p.add_argument("--supervisors", type=int, default=2, help="supervisors' clients with --desktops (default 2)")
    p.add_argument("--json", help="write the result here too")
    args = p.parse_args(argv)
    Path("/var/tmp").mkdir(exist_ok=True)
    results = []
    for warm in ([True, False] if args.compare else [not args.cold]):
        workdir = Path(tempfile.mkdtemp(prefix="cti-failover-", dir="/var/tmp"))
        workdir.chmod(0o755)
        results.append(asyncio.run(run(args.kills, args.rate, args.gap, workdir, args.ttl, args.pause,
                                       args.handover, warm=warm, wrapup=args.wrapup,
                                       agents=args.agents, desktops=args.desktops,
                                       supervisors=args.supervisors, pgcut=args.pgcut)))
        print(f"(logs in {workdir})")
    text = json.dumps(results if args.compare else results[0], indent=2, default=str)
    print(text)
    for result in results:
        print(render(result))
    if args.json:
        Path(args.json).write_text(text)
    ok = True
    for result in results:
        ok = ok and result["integrity_ok"] and not result["double_booked"] and result["epochs_rose"]
        ok = ok and not result["order_violations"] and (not result["desktops"]
                                                        or not result["desktops"]["not_contiguous"])
        if args.handover:
            ok = ok and result["handed_over_exits_75"] and not result["sent_to_fallback"]
        if args.pgcut:
            ok = ok and result["cut_exits_75"]
        if args.pause:
            ok = ok and result["resumed_exits_75"] and not any(k["refused_after_resume"] for k in result["per_kill"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
