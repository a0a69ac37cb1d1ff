"""The daemon as a load run configures it: a routing file for N simulated agents in the
callers' queues, the IVR the callers walk, its ``CTI_*`` settings, and readiness (every
agent available). Used by bench/load.py and bench/acd_latency.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import ROOT, DaemonProcess, daemon_env
from bench.load_callers import IVR_DID, QUEUES


# The IVR the callers walk: one menu, a beep, a key per queue; 4 asks to be called back.
IVR_TOML = f"""
[ivr]
default_queue = "support"

[entries."{IVR_DID}"]
menu = "main"

[menus.main]
prompts = ["beep"]
timeout = 3
retries = 1
invalid_prompt = "beep"

[menus.main.options]
"1" = {{ action = "queue", queue = "sales", skills = {{ sales = 1 }} }}
"2" = {{ action = "queue", queue = "support", skills = {{ support = 1 }} }}
"3" = {{ action = "queue", queue = "billing", skills = {{ billing = 1 }} }}
"4" = {{ action = "callback", queue = "support", skills = {{ support = 1 }} }}
"""


def acd_toml(agents: int, ring_timeout_s: int = 15) -> str:
    """N agents (``agent1``..), each in the three queues with every skill, no wrap-up."""
    out = [f"skills = {json.dumps(list(QUEUES))}", ""]
    for i in range(1, agents + 1):
        out += ["[[agents]]", f'id = "agent{i}"', f'name = "Agent {i}"',
                f'device = "Local/agent{i}@cti-demo-agents/n"',
                "skills = { " + ", ".join(f"{q} = 5" for q in QUEUES) + " }",
                "queues = { " + ", ".join(f"{q} = {{}}" for q in QUEUES) + " }",
                "auto_login = true", ""]
    for q in QUEUES:
        out += ["[[queues]]", f'id = "{q}"', f'requirements = [{{ skill = "{q}", min_level = 1 }}]',
                f"ring_timeout_s = {ring_timeout_s}", "wrapup_s = 0", "preferred_agent_s = 0", ""]
    return "\n".join(out)


def load_daemon_env(workdir: Path, dsn: str, agents: int, *, acd_config: Path | None = None,
                    ws_queue_max: int = 500, ws_replay_max: int = 1000, log_level: str = "info",
                    profile_window: bool = False, **more: Any) -> dict[str, str]:
    """Writes the routing (``acd_toml(agents)``, unless ``acd_config`` names a file of its
    own) and the IVR into ``workdir``; returns the daemon's environment (``daemon_env``),
    ``more`` settings added."""
    if acd_config is None:
        acd_config = workdir / "acd.toml"
        acd_config.write_text(acd_toml(agents))
    (workdir / "ivr.toml").write_text(IVR_TOML)
    return daemon_env(dsn, workdir / "state", acd_config=acd_config, ivr_menus=workdir / "ivr.toml",
                      acd_announce_every=0, log_level=log_level, ws_queue_max=ws_queue_max,
                      ws_replay_max=ws_replay_max,
                      # Every simulated client connects from loopback: no per-address cap.
                      http_client_max=0,
                      # bench/cpuprofile.py profiles only between SIGUSR1s (the measured steps).
                      profile_window=1 if profile_window else None,
                      # The daemon's own reconnect back-off: a load run's AMI session does not drop.
                      ami_reconnect_max=None, **more)


def daemon_wrapper(profile: Path | None, heap_dir: Path | None, malloc_dir: Path | None = None,
                   malloc_trim: bool = False) -> tuple[str, ...]:
    """What the daemon runs under: cProfile timed by CPU (``bench/cpuprofile.py``, stats to
    ``profile``), or tracemalloc with heap snapshots every 5 minutes, 8 frames deep
    (``bench/memtrace.py``, into ``heap_dir``), or glibc's malloc figures every minute
    (``bench/mallocstats.py``, into ``malloc_dir``; ``malloc_trim``: a trim after each), or
    nothing. Raises ValueError for more than one."""
    if sum(x is not None for x in (profile, heap_dir, malloc_dir)) > 1:
        raise ValueError("--profile, --memtrace and --mallocstats are one run each")
    if heap_dir is not None:
        return (str(ROOT / "bench" / "memtrace.py"), str(heap_dir), "300", "8")
    if profile is not None:
        return (str(ROOT / "bench" / "cpuprofile.py"), str(profile))
    if malloc_dir is not None:
        return (str(ROOT / "bench" / "mallocstats.py"), str(malloc_dir), "60", *(("--trim",) if malloc_trim else ()))
    return ()


async def wait_agents(daemon: DaemonProcess, http: aiohttp.ClientSession, agents: int, timeout: float = 90) -> None:
    """Until the daemon (ready: ``DaemonProcess.start``) has all ``agents`` available and its
    AMI connected, and its ACD heartbeat has reached the dialplan. Raises RuntimeError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            m = await daemon.metrics(http)
            if m.get('cti_agents{state="available"}') == agents and m.get("cti_ami_connected") == 1:
                await asyncio.sleep(3)   # the ACD's heartbeat reaches the dialplan
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the daemon's {agents} agents were not available within {timeout}s; see {daemon.log_path}")
