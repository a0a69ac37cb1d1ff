"""Shadow mode of the ACD shell (acd/shadow.py): a standby's service follows the leader
from its own call events and the leader's rows, writes nothing, and takes over from
memory after one listing of Asterisk's channels. A fake AMI records what is written:
no Asterisk, no database."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from acd import follow
from acd.config import AcdConfig
from acd.routing_shell import AcdService
from cti.daemon import Core
from cti.events import CallAgentLeft, CallConnected, CallEnded, CallOffered, CallQueued, CallView
from tests.wireami import WireAmi

CONFIG = AcdConfig.model_validate({
    "skills": ["any"],
    "agents": [{"id": "a1", "name": "Ada", "device": "PJSIP/a1", "queues": {"q": {}}, "auto_login": True},
               {"id": "a2", "name": "Bob", "device": "PJSIP/a2", "queues": {"q": {}}, "auto_login": True}],
    "queues": [{"id": "q", "ring_timeout_s": 15, "wrapup_s": 30}],
})


class ListingAmi(WireAmi):
    """Also answers ``CoreShowChannels`` with ``channels`` and ``Getvar`` with nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.channels: list[dict[str, str]] = []
        self.sent: list[str] = []
        self.connected = True

    async def wait_connected(self, timeout: float | None = None) -> None:
        return None

    async def send(self, action: str, headers: dict[str, Any] | None = None, *, shape: str = "single",
                   timeout: float | None = None) -> Any:
        self.sent.append(action)
        if action == "CoreShowChannels":
            return SimpleNamespace(events=[SimpleNamespace(headers={"Event": "CoreShowChannel", **c})
                                           for c in self.channels])
        return SimpleNamespace(response=SimpleNamespace(headers={"Value": ""}))


def _view(call_id: str, at: float) -> CallView:
    return CallView(call_id=call_id, state="queued", direction="inbound", caller_num="+100", caller_name="x",
                    exten="s", started_at=at, answered_at=at, queue="q", queue_joined_at=at, queue_left_at=None,
                    agent=None, agent_answered_at=None, ended_at=None, hangup_cause=None, hangup_cause_txt=None,
                    end_estimated=False, abandoned=False, legs=1)


def _chan(call_id: str) -> str:
    return f"PJSIP/trunk-{call_id}"


def queued(call_id: str, at: float) -> CallQueued:
    return CallQueued(call_id, at, 1, _view(call_id, at), queue="q", acd=True, channel=_chan(call_id),
                      uniqueid=call_id)


def offered(call_id: str, at: float, channel: str) -> CallOffered:
    return CallOffered(call_id, at, 2, _view(call_id, at), agent=channel, device=channel, uniqueid=channel)


def _sr(service: AcdService, agent: str) -> tuple[str, str]:
    view = service.router.agent_state(agent)
    return view.state, view.reason


async def _shadow() -> AcdService:
    core = Core(SimpleNamespace(acd_default_queue="q", acd_announce_every=0), ami=ListingAmi())  # type: ignore[arg-type]
    service = AcdService(core, CONFIG)
    service.may_act = lambda: False
    await service.start_shadow(0.5)
    return service


async def test_a_shadow_follows_an_offer_it_sees_ringing_and_writes_nothing():
    service = await _shadow()
    try:
        t = time.time()
        service.on_shadow_event(queued("c1", t))
        assert [w.status for w in service.router.waiting_calls()] == ["waiting"]   # no offer of its own
        # The leader's offer: the caller's Dial rings a2's phone (the model names the channel).
        service.on_shadow_event(offered("c1", t + 0.01, "PJSIP/a2-0000002a"))
        assert service.router.agent_state("a2").state == "reserved"
        assert service.calls["c1"].agent == "a2"
        service.on_shadow_event(CallConnected("c1", t + 2, 3, _view("c1", t), agent="PJSIP/a2-0000002a",
                                              device="PJSIP/a2-0000002a"))
        assert service.router.agent_state("a2").state == "on_call"
        service.on_shadow_event(CallAgentLeft("c1", t + 9, 4, _view("c1", t), agent="PJSIP/a2-0000002a",
                                              uniqueid="x"))
        view = service.router.agent_state("a2")
        assert (view.state, view.wrapup_ends_at) == ("wrapup", t + 9 + 30)   # its timer, kept in memory
        assert service.core.ami.written == [] and service.core.ami.sent == []
    finally:
        await service.stop_shadow()


async def test_the_leaders_rows_are_fed_once_in_time_order_and_late_offer_rows_are_history():
    service = await _shadow()
    try:
        t = time.time()
        service.on_shadow_event(queued("c1", t))
        rows = [(t + 2, ("s", "a1", t + 2, "not_ready"), follow.StateSeen("a1", "not_ready", "lunch", t + 2)),
                (t + 1, ("e", "c1", 5, "acd.offer"), follow.OfferSeen("c1", "a2", t + 1))]
        assert service.feed_rows(rows, t + 3) == 2
        assert service.feed_rows(rows, t + 3) == 0         # the overlap's rows again: nothing new
        assert _sr(service, "a1") == ("not_ready", "lunch")
        assert service.calls["c1"].agent == "a2"
        # The ring ended unanswered (seen by this node's model); the leader's row of that
        # offer read later must not reserve the agent again.
        from cti.events import CallOfferEnded
        service.on_shadow_event(CallOfferEnded("c1", t + 20, 5, _view("c1", t), agent="PJSIP/a2-0000002b",
                                               device="PJSIP/a2-0000002b", status="NOANSWER"))
        assert _sr(service, "a2") == ("not_ready", "missed")
        late = [(t + 1, ("e", "c1", 6, "acd.offer"), follow.OfferSeen("c1", "a2", t + 1))]
        assert service.feed_rows(late, t + 21) == 0
        assert [w.status for w in service.router.waiting_calls()] == ["waiting"]
    finally:
        await service.stop_shadow()


async def test_a_takeover_drops_what_asterisk_no_longer_has_adopts_what_it_lacks_and_offers_in_order():
    service = await _shadow()
    t = time.time()
    for i, cid in enumerate(["c1", "c2", "c3"]):
        service.on_shadow_event(queued(cid, t + i))
    service.on_shadow_event(offered("c1", t + 3, "PJSIP/a1-00000001"))
    service.on_shadow_event(CallConnected("c1", t + 4, 3, _view("c1", t), agent="PJSIP/a1-00000001",
                                          device="PJSIP/a1-00000001"))
    service.feed_rows([(t + 5, ("s", "a2", t + 5, "not_ready"), follow.StateSeen("a2", "not_ready", "break", t + 5)),
                       (t + 6, ("s", "a2", t + 6, "available"), follow.StateSeen("a2", "available", "ready", t + 6))],
                      t + 6)
    ami = service.core.ami
    # Asterisk still has c1 (talking) and c3; c2 hung up while the leader was dying.
    ami.channels = [{"Channel": _chan("c1"), "Context": "cti-acd-offer", "BridgeId": "b1", "Linkedid": "c1",
                     "Uniqueid": "c1"},
                    {"Channel": _chan("c3"), "Context": "cti-acd-wait", "Linkedid": "c3", "Uniqueid": "c3"}]
    service.may_act = lambda: True
    try:
        await service.take_over()
        # One round trip (beside the heartbeat's epoch raise): no Getvar for what it holds.
        assert [a for a in ami.sent if a != "Originate"] == ["CoreShowChannels"]
        assert "c2" not in service.calls and service.takeover["dropped"] == 1
        assert service.takeover["adopted"] == 0            # nothing lacked: no Getvar per caller
        # a1 stays on its call from memory; a2 (back from its break) takes c3, the only one left.
        assert service.router.agent_state("a1").state == "on_call"
        offers = [h["Value"] for a, h in ami.written if a == "Setvar" and h.get("Variable") == "CTI_OFFER"]
        assert [v.split(",")[1] for v in offers] == ["a2"]
        assert service.calls["c3"].agent == "a2"
        assert not service.router.following and not service.shadowing
    finally:
        await service.stop()
        await service.stop_shadow()


async def test_call_end_seen_by_the_shadow_frees_the_call():
    service = await _shadow()
    try:
        t = time.time()
        service.on_shadow_event(queued("c1", t))
        service.on_shadow_event(CallEnded("c1", t + 1, 2, _view("c1", t), cause=16, cause_txt="x", estimated=False))
        assert service.router.waiting_calls() == [] and "c1" not in service.calls
    finally:
        await service.stop_shadow()


async def test_a_shadow_without_a_database_still_follows_its_own_model():
    service = await _shadow()
    try:
        assert service._shadow_tasks == []        # no pool: nothing to read
        assert [t.get_name() for t in service._tasks] == ["acd-timers"]
        await asyncio.sleep(0)
    finally:
        await service.stop_shadow()
    assert service._tasks == []


class RowsPool:
    """The queries of ``follow_once``, answered from lists (asyncpg gives jsonb as text):
    the two logs, the callback requests changed since, the configuration versions."""

    def __init__(self, states: list[dict[str, Any]], events: list[dict[str, Any]],
                 callbacks: list[dict[str, Any]] | None = None, versions: list[dict[str, Any]] | None = None) -> None:
        self.states, self.events, self.asked = states, events, []
        self.callbacks, self.versions = callbacks or [], versions or []

    async def fetch(self, sql: str, since: Any) -> list[dict[str, Any]]:
        if "acd_config_versions" in sql:
            found = [v for v in self.versions if v["version"] > since and v["source"].startswith("api:")]
            return sorted(found, key=lambda v: -v["version"])[:1]
        if "FROM callbacks" in sql:
            return [r for r in self.callbacks if r["updated_at"] >= since]
        self.asked.append(since.timestamp())
        return [r for r in (self.states if "agent_states" in sql else self.events) if r["at"] >= since]


async def test_follow_once_reads_both_logs_from_the_cursor_and_keeps_an_overlap():
    from datetime import datetime, timezone

    from acd.core import RING_GUARD

    service = await _shadow()
    try:
        t = time.time()
        service.on_shadow_event(queued("c1", t))

        def utc(x: float) -> datetime:
            return datetime.fromtimestamp(x, timezone.utc)

        pool = RowsPool(
            [{"agent_id": "a1", "at": utc(t + 1), "state": "not_ready", "reason": "lunch"},
             {"agent_id": "zz", "at": utc(t + 1), "state": "available", "reason": ""}],       # not ours: skipped
            [{"call_id": "c1", "seq": 4, "at": utc(t + 2), "kind": "acd.offer", "data": '{"agent": "a2"}'},
             {"call_id": "c1", "seq": 5, "at": utc(t + 30), "kind": "acd.withdrawn",
              "data": '{"agent": "a2", "reason": "%s"}' % RING_GUARD},
             {"call_id": "c1", "seq": 6, "at": utc(t + 31), "kind": "acd.offer", "data": "not json"}])
        service.core.pool = pool
        assert await service.follow_once() == 4
        assert _sr(service, "a1") == ("not_ready", "lunch")
        assert _sr(service, "a2") == ("not_ready", "missed")       # the leader's ring guard gave up
        assert service.calls["c1"].agent is None
        assert await service.follow_once() == 0                    # read again in the overlap: nothing new
        assert pool.asked[-1] == pytest.approx(t + 31 - 5.0)       # from the newest row, less the overlap
        assert service.shadow_health()["followed"] == 4
    finally:
        await service.stop_shadow()


ROUTING = """skills = ["any"]
[[agents]]
id = "a1"
name = "Ada"
device = "PJSIP/a1"
queues = { q = {} }
auto_login = true

[[queues]]
id = "q"
"""


async def _wired(tmp_path, warm: bool):
    """``setup_acd`` in a pair (a stand-in for ``cti.ha.HaNode``: its hooks and gate), the
    app's start run by hand."""
    from aiohttp import web

    from acd.setup import setup_acd
    from cti.leadership import LeaseConfig

    path = tmp_path / "acd.toml"
    path.write_text(ROUTING)
    settings = SimpleNamespace(acd_config=path, acd_default_queue="q", acd_announce_every=0, ha_warm=warm)
    core = Core(settings, ami=ListingAmi())  # type: ignore[arg-type]
    leading = [False]
    ha = SimpleNamespace(may_act=lambda: leading[0], config=LeaseConfig(), on_lead=[], on_step_down=[])
    app = web.Application()
    service = setup_acd(app, core, ha)
    contexts = [ctx(app) for ctx in app.cleanup_ctx]
    for gen in contexts:
        await gen.__anext__()
    return service, ha, leading, contexts


async def _unwire(contexts) -> None:
    for gen in reversed(contexts):
        try:
            await gen.__anext__()
        except StopAsyncIteration:
            pass


async def test_in_a_warm_pair_the_standby_shadows_and_the_takeover_is_from_memory(tmp_path):
    service, ha, leading, contexts = await _wired(tmp_path, warm=True)
    try:
        assert service.shadowing and service.router.following
        assert service.router.state_of("a1") == "available"      # auto_login, as the leader has it
        leading[0] = True
        await ha.on_lead[0](5)
        assert service.epoch == 5 and not service.shadowing and not service.router.following
        assert service.takeover is not None and service.takeover["cold"] is False
        assert "CoreShowChannels" in service.core.ami.sent
    finally:
        await _unwire(contexts)
    assert service._tasks == [] and service._shadow_tasks == []


async def test_in_a_cold_pair_the_standby_waits_and_starts_as_after_a_restart(tmp_path):
    service, ha, leading, contexts = await _wired(tmp_path, warm=False)
    try:
        assert not service.shadowing and service.router.state_of("a1") == "logged_out"
        leading[0] = True
        await ha.on_lead[0](6)
        assert service.epoch == 6 and not service.router.following
        await asyncio.wait_for(_until(lambda: service.takeover is not None), 5)
        assert service.takeover["cold"] is True
    finally:
        await _unwire(contexts)


async def _until(check) -> None:
    while not check():
        await asyncio.sleep(0.01)


class RowWriter:
    """The leader's writer: keeps the agent state rows (``agent_states``)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def submit(self, row: Any) -> None:
        self.rows.append(row)


def _frames(cid: str, t: float) -> dict[str, list[dict[str, str]]]:
    """What Asterisk says of a caller ``cid`` waiting, offered to a1's phone, answered, and a1
    hanging up (the leg names as the sandbox's)."""
    caller, leg, dest = _chan(cid), f"PJSIP/a1-0000{cid}", f"{cid}-a1"
    return {
        "arrive": [{"Event": "Newchannel", "Channel": caller, "Uniqueid": cid, "Linkedid": cid, "ChannelState": "4",
                    "ChannelStateDesc": "Ring", "CallerIDNum": "100", "Exten": "s", "Context": "cti-inbound"},
                   {"Event": "UserEvent", "UserEvent": "CtiAcdWait", "Channel": caller, "Uniqueid": cid,
                    "Linkedid": cid, "Queue": "q"}],
        "ring": [{"Event": "Newchannel", "Channel": leg, "Uniqueid": dest, "Linkedid": cid, "ChannelState": "0",
                  "ChannelStateDesc": "Down", "Exten": "s", "Context": "from-internal"},
                 {"Event": "DialBegin", "Channel": caller, "Uniqueid": cid, "Linkedid": cid, "DestChannel": leg,
                  "DestUniqueid": dest, "DestLinkedid": cid, "DialString": "a1"}],
        "answer": [{"Event": "DialEnd", "Channel": caller, "Uniqueid": cid, "Linkedid": cid, "DestChannel": leg,
                    "DestUniqueid": dest, "DestLinkedid": cid, "DialStatus": "ANSWER"}],
        "agent_hangs_up": [{"Event": "Hangup", "Channel": leg, "Uniqueid": dest, "Linkedid": cid, "Cause": "16",
                            "Cause-txt": "Normal Clearing"}],
    }


async def test_a_shadow_fed_the_same_asterisk_events_and_the_leaders_rows_holds_the_leaders_state():
    """A leader and a standby, each with its own call model and bus, fed the same AMI
    events (the leader's offer rings a1; a1 answers and hangs up; a2 takes a break at
    the leader's API); the standby gets the leader's rows. The standby's router holds
    what the leader's holds, and taking over it offers the next caller to a1 only once
    the wrap-up the leader started has ended."""
    from cti.calls import CallModel
    from cti.events import Bus
    from acd.rows import AgentStateRow

    t = time.time()
    writer = RowWriter()
    leader = AcdService(Core(SimpleNamespace(acd_default_queue="q", acd_announce_every=0), model=CallModel(),
                             bus=Bus(), ami=WireAmi(), writer=writer), CONFIG)  # type: ignore[arg-type]
    leader.core.bus.subscribe(leader.on_call_event)
    leader._apply(leader.router.auto_login(t))
    standby = await _shadow()
    timeline: list[Any] = []
    leader.core.bus.subscribe(lambda ev: timeline.append(ev) if ev.kind.startswith("acd.") else None)

    def both(frames: list[dict[str, str]], at: float) -> None:
        for h in frames:
            for node in (leader, standby):
                node.core.bus.publish(*node.core.model.feed(h, at))

    def rows() -> list[Any]:
        out = [(r.at.timestamp(), ("s", r.agent_id, r.at.timestamp(), r.state),
                follow.from_state_row(r.agent_id, r.state, r.reason, r.at.timestamp()))
               for r in writer.rows if isinstance(r, AgentStateRow)]
        return out + [(e.at, ("e", e.call_id, e.seq, e.kind), follow.from_annotation(e.call_id, e.kind, e.data, e.at))
                      for e in timeline]

    try:
        c1 = _frames("c1", t)
        both(c1["arrive"], t + 1)
        assert [a for a, _ in leader.core.ami.written] == ["Setvar", "Redirect"]     # the leader offers c1 to a1
        both(c1["ring"], t + 1.05)
        assert standby.router.agent_state("a1").call_id == "c1"                     # seen at once, by the channel
        both(c1["answer"], t + 3)
        both(c1["agent_hangs_up"], t + 9)
        leader.agent_request("a2", "set_not_ready", "lunch")
        standby.feed_rows(rows(), t + 10)
        for agent in ("a1", "a2"):
            mine, theirs = standby.router.agent_state(agent), leader.router.agent_state(agent)
            assert (mine.state, mine.reason, mine.wrapup_ends_at) == (theirs.state, theirs.reason, theirs.wrapup_ends_at)
        assert standby.router.agent_state("a1").wrapup_ends_at == t + 9 + 30
        assert standby.core.model.calls["c1"].agent == "a1"       # the standby's call row names the agent
        assert standby.core.ami.written == []

        c2 = _frames("c2", t)
        both(c2["arrive"], t + 11)
        assert [w.call_id for w in standby.router.waiting_calls()] == ["c2"]
        standby.core.ami.channels = [{"Channel": _chan("c1"), "Context": "cti-acd-offer", "BridgeId": "b",
                                      "Linkedid": "c1", "Uniqueid": "c1"},
                                     {"Channel": _chan("c2"), "Context": "cti-acd-wait", "Linkedid": "c2",
                                      "Uniqueid": "c2"}]
        standby.may_act = lambda: True
        await standby.take_over()
        offers = lambda: [h["Value"] for a, h in standby.core.ami.written  # noqa: E731
                          if a == "Setvar" and h.get("Variable") == "CTI_OFFER"]
        assert offers() == []                                       # a1 wraps up, a2 is at lunch
        standby._apply(standby.router.tick(t + 9 + 30))
        assert [v.split(",")[1] for v in offers()] == ["a1"]
    finally:
        await standby.stop()
        await standby.stop_shadow()
