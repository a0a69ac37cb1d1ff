"""The cost of the reads an API node answers from the leader's boards (docs/scale-out.md,
"Reads served by a node"): on the leader, the routing picture made and encoded with each
board it publishes; on a node, one ``GET /api/acd/state`` answered from it (aged,
validated, encoded); beside it, the leader answering that request itself (the picture
made and encoded per request). No I/O: a real ``AcdService`` on a fake core, its agents
not ready so that the callers wait.

    .venv/bin/python bench/node_reads.py [--agents 100 500 2000] [--waiting 50] [--repeat 200]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUEUES = ("sales", "support", "billing")


def make_acd(agents: int, waiting: int) -> Any:
    from acd.config import AcdConfig
    from acd.routing_shell import AcdService
    from cti.daemon import Core
    from cti.events import CallQueued, CallView
    from tests.wireami import WireAmi

    config = AcdConfig.model_validate({
        "skills": ["any"],
        "agents": [{"id": f"a{i}", "name": f"Agent {i}", "device": f"PJSIP/d{i}",
                    "queues": {QUEUES[i % 3]: {}}, "auto_login": True} for i in range(agents)],
        "queues": [{"id": q, "ring_timeout_s": 15} for q in QUEUES],
    })
    ami = WireAmi()
    ami.connected = True
    core = Core(SimpleNamespace(acd_default_queue="sales", acd_announce_every=0), ami=ami)  # type: ignore[arg-type]
    service = AcdService(core, config)
    now = time.time()
    service._apply(service.router.auto_login(now))
    for i in range(agents):
        service.agent_request(f"a{i}", "set_not_ready", "bench")
    for n in range(waiting):
        cid, q = f"c{n}", QUEUES[n % 3]
        view = CallView(call_id=cid, state="queued", direction="inbound", caller_num="+100", caller_name="x",
                        exten="s", started_at=now, answered_at=now, queue=q, queue_joined_at=now,
                        queue_left_at=None, agent=None, agent_answered_at=None, ended_at=None, hangup_cause=None,
                        hangup_cause_txt=None, end_estimated=False, abandoned=False, legs=1)
        service.on_call_event(CallQueued(cid, now, 3, view, queue=q, acd=True, channel=f"PJSIP/c-{n}",
                                         uniqueid=cid))
    return service


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """The median of ``repeat`` runs of ``fn``, in microseconds."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1e6


def run(agents: int, waiting: int, repeat: int) -> dict[str, Any]:
    from api.acd_routes import AcdState, acd_state
    from api.node_reads import ACD_KEY, NodeReads

    service = make_acd(agents, waiting)
    board = {"type": "wallboard", "at": time.time(), "queues": [], "agents": []}

    def leader_board() -> bytes:
        picture = acd_state(service, board["at"]).model_dump(mode="json")
        return json.dumps({**board, ACD_KEY: picture}, separators=(",", ":")).encode()

    published = json.loads(leader_board())
    reads = NodeReads()
    reads.take(published)
    assert len(published[ACD_KEY]["waiting"]) == waiting, "the callers wait"

    def node_answer() -> str:
        found = reads.acd_state(time.time())
        assert found is not None
        return AcdState.model_validate(found[0]).model_dump_json()

    def leader_answer() -> str:
        return acd_state(service, time.time()).model_dump_json()

    return {"agents": agents, "waiting": waiting, "picture_bytes": len(json.dumps(published[ACD_KEY])),
            "leader_per_board_us": timed(leader_board, repeat), "node_per_read_us": timed(node_answer, repeat),
            "leader_per_read_us": timed(leader_answer, repeat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[100, 500, 2000])
    ap.add_argument("--waiting", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    import logging

    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"# {platform.python_implementation()} {platform.python_version()}, median of {args.repeat}")
    print("| agents | callers waiting | picture bytes | leader per board | node per read | leader per read |")
    print("|---|---|---|---|---|---|")
    for n in args.agents:
        r = run(n, args.waiting, args.repeat)
        print(f"| {n} | {r['waiting']} | {r['picture_bytes']:,} | {r['leader_per_board_us']:,.0f} µs "
              f"| {r['node_per_read_us']:,.0f} µs | {r['leader_per_read_us']:,.0f} µs |")


if __name__ == "__main__":
    main()
