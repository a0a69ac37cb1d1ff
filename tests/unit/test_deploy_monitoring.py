"""/metrics as the collector writes it from a minimal core, and the example Grafana
dashboard and Prometheus alert rules (deploy/) checked against it: every metric they
name is exposed (but the ones listed in ``NOT_EXPOSED``), every metric docs/api.md's
table names is exposed, and the rules are valid (``promtool`` when installed)."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from aiohttp import web

from acd.decisions import AgentView, QueueStats
from acd.routing_shell import ACD
from api import prometheus as m
from api.desktop_state import DESKTOP
from api.observe import BROKER_STATS, LAG, REGISTRY, setup_metrics
from api.registry import API, Api
from api.ws import WS
from cti.ami_types import AmiHealth
from cti.daemon import CORE
from cti.ha import HA
from cti.writer import WriterStats
from recording.recorder import RECORDING

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "cti-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "cti-alerts.yml"

# Named by the dashboard or the rules, not on /metrics, on purpose.
NOT_EXPOSED = {
    "up": "Prometheus's own, per scrape target",
}


def _queue_stats(qid: str, now: float) -> QueueStats:
    return QueueStats(qid, waiting=2, ringing=1, longest_wait_s=12.5, offered=10, answered=8, answered_within_sl=7,
                      abandoned=1, timed_out=1, service_level=70.0, sl_target=80.0, lending=False,
                      agents_eligible=3, agents_available=1, handle_time_s=120.0)


def minimal_app() -> web.Application:
    """An app with every part ``/metrics`` reads: the core (with a feature's share of its
    pool), the AMI, the writer, the ACD, the HTTP limits, the hub and the desktop, as plain objects."""
    now = time.time()
    queues = [SimpleNamespace(id="sales"), SimpleNamespace(id="support")]
    agents = [SimpleNamespace(id="a1"), SimpleNamespace(id="a2")]
    router = SimpleNamespace(
        queue_stats=_queue_stats,
        agent_state=lambda aid: AgentView(aid, "available" if aid == "a1" else "on_call", "", now, None, None))
    core = SimpleNamespace(
        settings=SimpleNamespace(metrics_access="open"),
        model=SimpleNamespace(calls={"c1": SimpleNamespace(state="talking"), "c2": SimpleNamespace(state="queued")}),
        frames_in=100,
        bus=SimpleNamespace(published=40, errors=0, subscribe=lambda fn: (lambda: None)),
        ami=SimpleNamespace(health=AmiHealth(True, True, now - 60, now - 1, 90, 0, 1, 0, 0, None, "11.0.0")),
        # Two Asterisk nodes (docs/scale-out.md): b dead.
        multi=True,
        nodes={"a": SimpleNamespace(health=AmiHealth(True, True, now - 60, now - 1, 90, 0, 1, 0, 0, None, "11.0.0")),
               "b": SimpleNamespace(health=AmiHealth(False, False, now - 5, now - 9, 9, 0, 1, 0, 0, "lost", None))},
        watch=SimpleNamespace(states=lambda: {"a": "up", "b": "dead"}),
        writer=SimpleNamespace(stats=WriterStats(5, 200, 0, 0, 0, True, None), buffer_max=100_000),
        http_limits=SimpleNamespace(cap=SimpleNamespace(count=3, refused={"127.0.0.1": 1}), heads_timed_out=0),
        shares={"hooks": SimpleNamespace(in_use=1, limit=8, waiting=0)},
    )
    hub = SimpleNamespace(connections=1, streams={"s": 1}, published=7, delivered=7, dropped_slow=0, resyncs=0,
                          queue_depths=lambda: (0, 0), replay_events=3, replay_bytes=2100, replay_max=1000,
                          replay_max_age=900.0)
    app = web.Application()
    app[CORE] = core
    app[ACD] = SimpleNamespace(config=SimpleNamespace(queues=queues, agents=agents), router=router)
    app[API] = Api()
    setup_metrics(app)
    app[WS] = SimpleNamespace(hub=hub, direct_writes=3, flush_seconds=m.LagHistogram(), writer_wakes=0)
    app[DESKTOP] = SimpleNamespace(pops_sent=1, pops_dropped=0, lookups_late=0)
    app[RECORDING] = SimpleNamespace(started=5, failures=0, deferred=1, rows_pending=lambda: 1)
    app[LAG].observe(0.004)
    app[HA] = SimpleNamespace(health=lambda: {"role": "leader", "epoch": 4, "takeovers": 1, "heartbeat_age_s": 0.2,
                                              "leaderless_s": 0.0})
    app[BROKER_STATS] = lambda: {"connected": 1, "buffered": 0, "capacity": 10_000, "published": 40, "dropped": 0,
                                 "failures": 0, "last_stream_seq": 40}
    return app


@pytest.fixture(scope="module")
def exposition() -> str:
    async def scrape() -> str:      # in a loop, as the daemon serves it (asyncio tasks are counted)
        return m.render(minimal_app()[REGISTRY]).decode()

    return asyncio.run(scrape())


def exposed_names(text: str) -> set[str]:
    """Sample names (``cti_x_bucket`` included) and family names of an exposition."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def referenced(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: ``cti_*`` anywhere, any other name
    followed by a selector (``up{...}``, ``up[5m]``)."""
    names = set(re.findall(r"\bcti_[a-z0-9_]+", expr))
    names |= {n for n in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr)
              if n not in {"by", "without", "on", "ignoring", "group_left", "group_right"}}
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
        exprs += [t["expr"] for p in panel.get("panels", []) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_the_exposition_is_what_prometheus_reads(exposition):
    assert "# TYPE cti_bus_events_total counter\ncti_bus_events_total 40.0" in exposition
    assert "_created" not in exposition
    assert 'cti_queue_waiting_calls{queue="sales"} 2.0' in exposition
    assert 'cti_queue_calls_answered_within_sl_total{queue="support"} 7.0' in exposition
    assert 'cti_agents{state="on_call"} 1.0' in exposition
    assert 'cti_event_lag_seconds_bucket{le="0.005"} 1.0' in exposition
    assert "cti_store_buffer_capacity_rows 100000.0" in exposition
    promtool = shutil.which("promtool")
    if promtool:   # its linter: names, units, counters' _total, HELP on every family
        done = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_docs_api_names_is_exposed(exposition):
    section = (ROOT / "docs" / "api.md").read_text().split("## Metrics (`GET /metrics`)", 1)[1]
    section = section.split("\n## ", 1)[0]
    named = set(re.findall(r"`(cti_[a-z0-9_]+)(?:\{[a-z,]+\})?`", section)) - set(NOT_EXPOSED)
    assert len(named) > 30
    assert named <= exposed_names(exposition)


def test_the_dashboard_names_only_exposed_metrics(exposition):
    exprs = dashboard_exprs()
    assert len(exprs) > 15
    used = set().union(*map(referenced, exprs))
    assert used - set(NOT_EXPOSED) <= exposed_names(exposition), used - exposed_names(exposition)
    for needed in ("cti_ami_connected", "cti_store_buffered_rows", "cti_event_lag_seconds_bucket",
                   "cti_bus_events_total", "cti_queue_waiting_calls", "cti_queue_longest_wait_seconds",
                   "cti_queue_calls_answered_within_sl_total", "cti_agents"):
        assert needed in used


def test_the_alert_rules_name_only_exposed_metrics_and_are_valid(exposition):
    rs = rules()
    alerts = {r["alert"] for r in rs}
    assert {"CtiAmiDown", "CtiStoreBufferFilling", "CtiNoLeader", "CtiEventLagHigh"} <= alerts
    for r in rs:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r
        assert r["labels"]["severity"] in {"critical", "warning", "info"} and r["annotations"]["summary"]
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), r
    used = set().union(*(referenced(r["expr"]) for r in rs))
    assert used - set(NOT_EXPOSED) <= exposed_names(exposition), used - exposed_names(exposition)
    assert {"up"} <= used    # the listed exceptions are used, so the list stays honest
    assert "cti_leader" in used
    promtool = shutil.which("promtool")
    if promtool:
        done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
