"""The bus's ordering rule: an event published while the bus delivers another is
queued behind it, so every subscriber sees every event, all in the same order,
each call's ``seq`` rising and causes before their effects (cti/events.py)."""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import hypothesis.strategies as st
import structlog
from hypothesis import HealthCheck, given, settings
from structlog.testing import capture_logs

from acd.config import AcdConfig
from acd.events import AgentStateChanged
from acd.routing_shell import AcdService
from cti.calls import CallModel
from cti.daemon import Core
from cti.events import Bus, CallEvent
from tests.wireami import WireAmi

CONFIG = AcdConfig.model_validate({
    "skills": ["billing"],
    "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                "skills": {"billing": 5}, "queues": {"billing": {}}, "auto_login": True}],
    "queues": [{"id": "billing", "ring_timeout_s": 15, "wrapup_s": 1}],
})
CALLER = "Local/p90@cti-demo-caller-00000001;1"
# A caller appearing, then the dialplan's mark that it waits for the daemon's ACD.
ARRIVAL = [
    {"Event": "Newchannel", "Channel": CALLER, "Uniqueid": "c1", "Linkedid": "c1", "ChannelState": "4",
     "ChannelStateDesc": "Ring", "CallerIDNum": "100", "Exten": "s", "Context": "cti-inbound"},
    {"Event": "UserEvent", "UserEvent": "CtiAcdWait", "Channel": CALLER, "Uniqueid": "c1", "Linkedid": "c1",
     "Queue": "billing"},
]


def _acd(bus: Bus, model: CallModel) -> AcdService:
    core = Core(SimpleNamespace(acd_default_queue="billing"), model=model, bus=bus,  # type: ignore[arg-type]
                ami=WireAmi())
    service = AcdService(core, CONFIG)
    service._apply(service.router.auto_login(time.time()))
    return service


async def test_a_subscriber_after_the_acd_sees_the_call_queued_before_its_offer():
    """Measured on the old bus: before the ACD (3 call.queued), (4 acd.offer); after it inverted."""
    bus, model = Bus(), CallModel()
    before: list[tuple[int, str]] = []
    after: list[tuple[int, str]] = []
    bus.subscribe(lambda ev: before.append((ev.seq, ev.kind)))
    acd = _acd(bus, model)
    bus.subscribe(acd.on_call_event)
    bus.subscribe(lambda ev: after.append((ev.seq, ev.kind)))
    for headers in ARRIVAL:
        bus.publish(*model.feed(headers, time.time()))
    assert before[-2:] == [(3, "call.queued"), (4, "acd.offer")]
    assert after == before


async def test_an_agent_state_the_acd_changes_is_told_in_turn_with_the_call_events():
    """The hub and the wallboard hear of the agent's reservation after the event that
    caused it (``call.queued``), in the router's order beside the ``acd.offer``."""
    bus, model = Bus(), CallModel()
    acd = _acd(bus, model)
    bus.subscribe(acd.on_call_event)
    told: list[tuple[str, str | None]] = []
    bus.subscribe(lambda ev: told.append((ev.kind, ev.call_id)))
    bus.subscribe_to(AgentStateChanged, lambda ev: told.append((f"agent {ev.view.state}", ev.view.call_id)))
    for headers in ARRIVAL:
        bus.publish(*model.feed(headers, time.time()))
    assert told[-3:] == [("call.queued", "c1"), ("agent reserved", "c1"), ("acd.offer", "c1")]


def test_a_reaction_to_the_first_event_of_a_batch_queues_behind_the_last():
    bus, model = Bus(), _model("c1")
    seen: list[int] = []

    def react(ev: CallEvent) -> None:
        if ev.data.get("n") == 1:
            bus.publish(model.annotate("c1", "reaction", 0.0))

    bus.subscribe(react)
    bus.subscribe(lambda ev: seen.append(ev.seq))
    bus.publish(model.annotate("c1", "x", 0.0, n=1), model.annotate("c1", "x", 0.0, n=2))
    assert seen == sorted(seen) and len(seen) == 3


def test_each_nested_event_is_logged_with_its_own_call_id_and_none_is_left_bound():
    bus, model = Bus(), _model("c1", "c2")
    bound: list[tuple[str, Any]] = []

    def react(ev: CallEvent) -> None:
        if ev.call_id == "c1":
            bus.publish(model.annotate("c2", "reaction", 0.0))
            structlog.get_logger("t").info("reacted")

    bus.subscribe(react)
    bus.subscribe(lambda ev: bound.append((ev.call_id, structlog.contextvars.get_contextvars().get("call_id"))))
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as captured:
        bus.publish(model.annotate("c1", "x", 0.0))
    assert bound == [("c1", "c1"), ("c2", "c2")]
    assert [line["call_id"] for line in captured if line["event"] == "reacted"] == ["c1"]
    assert "call_id" not in structlog.contextvars.get_contextvars()


def test_a_subscriber_that_raises_does_not_stop_the_queue():
    bus, model = Bus(), _model("c1")
    seen: list[str] = []

    def react(ev: CallEvent) -> None:
        if ev.kind == "x":
            bus.publish(model.annotate("c1", "first", 0.0), model.annotate("c1", "second", 0.0))
        raise RuntimeError("broken subscriber")

    bus.subscribe(react)
    bus.subscribe(lambda ev: seen.append(ev.kind))
    with capture_logs():
        bus.publish(model.annotate("c1", "x", 0.0))
        bus.publish(model.annotate("c1", "later", 0.0))     # the bus is not left "delivering"
    assert seen == ["x", "first", "second", "later"] and bus.errors == 4


def test_typed_events_share_the_one_order_and_reach_only_their_subscribers():
    """A subscriber to a class gets its events and its subclasses', in the bus's order
    among the call events; a call event subscriber gets no other kind."""
    class Told:
        pass

    class ToldAgain(Told):
        pass

    bus, model = Bus(), _model("c1")
    seen: list[str] = []
    calls_only: list[str] = []

    def react(ev: CallEvent) -> None:
        if ev.kind == "x":
            bus.publish(Told())
            bus.publish(model.annotate("c1", "effect", 0.0))
            bus.publish(ToldAgain())

    bus.subscribe(react)
    bus.subscribe(lambda ev: seen.append(ev.kind))
    bus.subscribe(lambda ev: calls_only.append(ev.kind))
    unsubscribe = bus.subscribe_to(Told, lambda ev: seen.append(type(ev).__name__))
    bus.publish(model.annotate("c1", "x", 0.0))
    assert seen == ["x", "Told", "effect", "ToldAgain"] and calls_only == ["x", "effect"]
    unsubscribe()
    bus.publish(Told())
    assert seen[-1] == "ToldAgain"


def test_core_annotate_numbers_and_publishes_in_one_step_and_not_for_a_gone_call():
    core = Core(SimpleNamespace(), model=_model("c1"))  # type: ignore[arg-type]
    seen: list[tuple[str, int]] = []
    core.bus.subscribe(lambda ev: seen.append((ev.kind, ev.seq)))
    first = core.annotate("c1", "acd.offer", 5.0, agent="a1")
    assert first is not None and seen == [("acd.offer", first.seq)] and first.data == {"agent": "a1"}
    assert core.annotate("gone", "acd.offer", 5.0) is None and len(seen) == 1


# -- the property ----------------------------------------------------------------

CALLS = ("c1", "c2", "c3")
MAX_DEPTH = 4          # a reaction to a reaction to ... (the outer publish is depth 0)
BUDGET = 300           # events made per example, at most (reactions multiply)


def _model(*calls: str) -> CallModel:
    """A call model holding ``calls`` (their own first events are not published)."""
    model = CallModel()
    for n, cid in enumerate(calls, 1):
        model.feed({"Event": "Newchannel", "Channel": f"Local/{cid}@t-{n:08x};1", "Uniqueid": cid,
                    "Linkedid": cid, "ChannelState": "4", "ChannelStateDesc": "Ring", "Exten": "s",
                    "Context": "t"}, 1.0)
    return model


batch = st.lists(st.tuples(st.sampled_from(CALLS), st.integers(1, 3)), min_size=1, max_size=3)
# A subscriber's reactions: for an event at depth d, the batches it publishes (each one publish).
reactions = st.dictionaries(st.integers(0, MAX_DEPTH - 1), st.lists(batch, max_size=2), max_size=MAX_DEPTH)
subscriber = st.tuples(reactions, st.booleans())   # (reactions, raises after seeing an event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subscribers=st.lists(subscriber, min_size=1, max_size=5), outer=st.lists(batch, min_size=1, max_size=4),
       order=st.randoms(use_true_random=False))
def test_every_subscriber_sees_the_same_events_each_call_in_seq_order_causes_first(subscribers, outer, order):
    model, bus = _model(*CALLS), Bus()
    made: list[CallEvent] = []

    def make(spec: list[tuple[str, int]], depth: int, cause: tuple[str, int] | None) -> list[CallEvent]:
        out = []
        for cid, count in spec:
            for _ in range(count):
                if len(made) < BUDGET:
                    ev = model.annotate(cid, "t.event", 0.0, depth=depth, cause=cause)
                    made.append(ev)
                    out.append(ev)
        return out

    def subscriber_fn(rules: dict[int, list[list[tuple[str, int]]]], raises: bool, log: list[CallEvent]):
        def fn(ev: CallEvent) -> None:
            log.append(ev)
            for spec in rules.get(ev.data["depth"], []):
                bus.publish(*make(spec, ev.data["depth"] + 1, (ev.call_id, ev.seq)))
            if raises:
                raise RuntimeError("a broken subscriber")
        return fn

    logs: list[list[CallEvent]] = [[] for _ in subscribers]
    fns = [subscriber_fn(rules, raises, log) for (rules, raises), log in zip(subscribers, logs)]
    order.shuffle(fns)           # any subscription order, publishers among the others
    for fn in fns:
        bus.subscribe(fn)
    with capture_logs():
        for spec in outer:
            bus.publish(*make(spec, 0, None))

    keys = [[(ev.call_id, ev.seq) for ev in log] for log in logs]
    assert all(k == keys[0] for k in keys)                          # the same sequence for everyone
    assert sorted(keys[0]) == sorted((ev.call_id, ev.seq) for ev in made)   # each event once
    for k in keys:
        for cid in CALLS:
            seqs = [seq for c, seq in k if c == cid]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)   # strictly rising per call
    where = {key: i for i, key in enumerate(keys[0])}
    for ev in made:
        if ev.data["cause"] is not None:
            assert where[tuple(ev.data["cause"])] < where[(ev.call_id, ev.seq)]   # cause before effect
