"""What a load step must not lose, and how it is seen.

``Watch`` listens on the generator's own AMI session (Asterisk's side): the callers
Asterisk created, their queue entries, every offer (``DialBegin`` to an agent leg) and
when it was made. ``step_integrity`` checks the step's calls in the database
(``bench/integrity.py``); ``screenpops`` checks that every offer popped at that
agent's desktop and none reached another agent.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Iterable

import asyncpg

from bench.integrity import IntegrityReport, check, fetch_and_check
from bench.load_callers import CALL_ID
from bench.load_desktops import Pop, WsClient
from bench.load_figures import pct


CALLBACK_LEG = re.compile(r"-cb\d+$")


def _agent_of(channel: str) -> str:
    return channel.split("/", 1)[1].split("@", 1)[0]


class Watch:
    """An AMI listener (the demo user): live callers, queue entries, offers, agent legs."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.live: set[str] = set()
        self.accepted: list[str] = []          # callers Asterisk created, in order
        self.gone: set[str] = set()
        self.peak = 0
        self.originate_failed = 0
        self.entry: dict[str, float] = {}
        self.entry_free: dict[str, bool] = {}  # an agent leg was free at entry
        self.ring: dict[str, float] = {}
        self.offers: set[tuple[str, str]] = set()   # (call id, agent)
        self.offer_at: dict[tuple[str, str], float] = {}
        self.busy: dict[str, int] = {}               # agent -> legs up

    def __call__(self, frame: Any) -> None:
        h = frame.headers
        name = h.get("Event")
        if name == "Newchannel":
            uid = h.get("Uniqueid", "")
            if CALL_ID.match(uid):
                self.live.add(uid)
                self.accepted.append(uid)
                self.peak = max(self.peak, len(self.live))
        elif name == "Hangup":
            uid = h.get("Uniqueid", "")
            if uid in self.live:
                self.live.discard(uid)
                self.gone.add(uid)
            ch = h.get("Channel", "")
            if ch.startswith("Local/agent") and ch.endswith(";1"):
                a = _agent_of(ch)
                self.busy[a] = max(0, self.busy.get(a, 0) - 1)
        elif name == "OriginateResponse":
            if h.get("Response") == "Failure":
                self.originate_failed += 1
        elif name == "UserEvent" and h.get("UserEvent") == "CtiAcdWait":
            cid = h.get("Linkedid", "")
            if CALL_ID.match(cid) and cid not in self.entry and "Timestamp" in h:
                self.entry[cid] = float(h["Timestamp"])
                self.entry_free[cid] = sum(1 for n in self.busy.values() if n) < self.agents
        elif name == "DialBegin":
            dest = h.get("DestChannel", "")
            if dest.startswith("Local/agent"):
                a = _agent_of(dest)
                self.busy[a] = self.busy.get(a, 0) + 1
                cid = h.get("Linkedid", "")
                if CALL_ID.match(cid) and "Timestamp" in h:
                    t = float(h["Timestamp"])
                    self.ring.setdefault(cid, t)
                    self.offers.add((cid, a))
                    self.offer_at.setdefault((cid, a), t)

    def routing(self, ids: Iterable[str]) -> tuple[list[float], list[float]]:
        """Queue entry to first ring: (callers who found an agent free, all)."""
        free, every = [], []
        for cid in ids:
            if cid in self.entry and cid in self.ring:
                d = self.ring[cid] - self.entry[cid]
                every.append(d)
                if self.entry_free.get(cid):
                    free.append(d)
        return free, every


async def step_integrity(dsn: str, accepted: list[str], first: int, since: datetime,
                         until: datetime) -> IntegrityReport:
    """The calls Asterisk accepted in a step (``accepted[first:]``) against the database
    between ``since`` and ``until`` (``bench/integrity.py``)."""
    ids = accepted[first:]
    conn = await asyncpg.connect(dsn)
    try:
        if first == 0:
            report = await fetch_and_check(conn, ids, since=since, until=until)
        else:
            # A later step of a ramp: the same window check, less the earlier steps' calls.
            earlier = set(accepted[:first])
            rows = await conn.fetch("SELECT * FROM calls WHERE started_at BETWEEN $1 AND $2 OR call_id = ANY($3)",
                                    since - timedelta(minutes=1), until + timedelta(minutes=1), ids)
            report = check(ids, [dict(r) for r in rows if r["call_id"] not in earlier])
    finally:
        await conn.close()
    # The daemon's callback legs (``<caller's id>-cb<n>``, ``--day``) are its own calls, not extra.
    report.extra = [cid for cid in report.extra if not CALLBACK_LEG.search(cid)]
    return report


def screenpops(watch: Watch, ids: list[str], agents: list[WsClient], sups: list[WsClient],
               pops0: dict[str, int]) -> dict[str, Any]:
    """Every offer of the calls ``ids`` (``DialBegin`` to an agent) seen at that agent's
    client, none at another agent's, each at every supervisor's; the latency from the
    offer (Asterisk's timestamp) to the screen-pop's arrival. ``pops0``: each client's
    screen-pops before the step."""
    idset = set(ids)
    offers = {o for o in watch.offers if o[0] in idset}
    got: dict[tuple[str, str], Pop] = {}
    wrong = 0
    for c in agents:
        for p in c.pops[pops0[c.name]:]:
            if p.agent_id != c.agent_id:
                wrong += 1
            elif p.phase == "offered":
                got.setdefault((p.call_id, p.agent_id), p)
    missing = sorted(offers - set(got))
    latencies = [p.arrived - p.offered_at for k, p in got.items() if k in offers and p.offered_at is not None]
    sup_missing = 0
    for c in sups:
        seen = {(p.call_id, p.agent_id) for p in c.pops[pops0[c.name]:] if p.phase == "offered"}
        sup_missing += len(offers - seen)
    return {"offers": len(offers), "popped": len(offers) - len(missing), "missing": len(missing),
            "wrong_agent": wrong, "supervisor_missing": sup_missing,
            "p50_s": pct(latencies, 0.5), "p99_s": pct(latencies, 0.99),
            "max_s": max(latencies) if latencies else None, "missing_sample": missing[:5]}
