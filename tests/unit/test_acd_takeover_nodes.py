"""A warm takeover with several Asterisk nodes (``ami_nodes``): every connected node is
listed and reconciled with its own channels (acd/follow.py ``reconcile_nodes``, the
shell in acd/shadow.py ``take_over``)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import hypothesis.strategies as st
from hypothesis import given

from acd import follow
from acd.routing_shell import AcdService
from cti.daemon import Core
from cti.events import CallConnected
from tests.unit.test_acd_shadow import CONFIG, ListingAmi, _view, offered, queued


def test_a_call_is_gone_only_when_its_own_nodes_listing_lacks_its_channel():
    held = {"a-1": ("a", "PJSIP/t-01"), "b-1": ("b", "PJSIP/t-01"), "b-2": ("b", "PJSIP/t-02"),
            "c-1": ("c", "PJSIP/t-09"), "cb": ("a", None)}
    # Node a still lists t-01 (its own), node b lists only t-02; node c is not listed.
    listings = {"a": [{"Channel": "PJSIP/t-01", "Linkedid": "a-1", "Context": "cti-acd-wait"}],
                "b": [{"Channel": "PJSIP/t-02", "Linkedid": "b-2", "Context": "cti-acd-wait"},
                      {"Channel": "PJSIP/t-05", "Linkedid": "b-5", "Context": "cti-acd-wait"}]}
    got = {r.node: r for r in follow.reconcile_nodes(held, listings)}
    assert list(got) == ["a", "b"]
    assert got["a"].gone == () and got["b"].gone == ("b-1",)    # a's t-01 does not keep b's
    assert [i["Linkedid"] for i in got["b"].adopt] == ["b-5"]    # lacked: adopted on its node
    assert got["a"].adopt == ()


def test_a_callback_leg_is_always_handed_to_adoption_and_one_node_is_named_none():
    held = {"c1": (None, "PJSIP/t-1"), "cb": (None, None)}
    leg = {"Channel": "PJSIP/a1-01", "Linkedid": "cb-cb1", "Context": "cti-acd-callback"}
    [rec] = follow.reconcile_nodes(held, {None: [leg, {"Channel": "PJSIP/t-1", "Linkedid": "c1"}]})
    assert rec.node is None and rec.gone == () and rec.adopt == (leg,)


_NODES = st.sampled_from(["a", "b", "c"])
_CHANNELS = st.sampled_from([f"PJSIP/t-{i:02d}" for i in range(6)])


@given(held=st.dictionaries(st.text("xyz0123", min_size=1, max_size=3), st.tuples(_NODES, st.none() | _CHANNELS),
                            max_size=12),
       listed=st.dictionaries(_NODES, st.lists(st.tuples(_CHANNELS, st.text("xyz0123", min_size=1, max_size=3),
                                                         st.sampled_from(["cti-acd-wait", "cti-acd-offer",
                                                                          "cti-acd-callback"])), max_size=6)))
def test_reconciling_node_by_node_drops_and_adopts_exactly_what_each_node_says(held, listed):
    held = {f"{node}-{cid}": (node, channel) for cid, (node, channel) in held.items()}
    listings = {node: [{"Channel": ch, "Linkedid": f"{node}-{cid}", "Context": ctx} for ch, cid, ctx in items]
                for node, items in listed.items()}
    out = follow.reconcile_nodes(held, listings)
    assert [r.node for r in out] == list(listings)
    gone = [cid for r in out for cid in r.gone]
    assert len(gone) == len(set(gone))
    for cid, (node, channel) in held.items():
        expected = (node in listings and channel is not None
                    and channel not in {i["Channel"] for i in listings[node]})
        assert (cid in gone) == expected, cid
    for r in out:
        assert all(held[cid][0] == r.node for cid in r.gone)     # never another node's call
        assert list(r.adopt) == [i for i in listings[r.node]
                                 if i["Context"] == "cti-acd-callback" or i["Linkedid"] not in held]


async def test_a_takeover_lists_every_connected_node_and_reconciles_each_with_its_own_ids():
    a, b, c = ListingAmi(), ListingAmi(), ListingAmi()
    c.connected = False           # away at the takeover: its resync answers for it
    core = Core(SimpleNamespace(acd_default_queue="q", acd_announce_every=0), ami=a)  # type: ignore[arg-type]
    core.multi, core.nodes = True, {"a": a, "b": b, "c": c}
    service = AcdService(core, CONFIG)
    service.may_act = lambda: False
    await service.start_shadow(0.5)
    t = time.time()
    for i, cid in enumerate(["a-1", "b-1", "b-2", "c-1"]):
        service.on_shadow_event(queued(cid, t + i))
    service.on_shadow_event(offered("b-2", t + 4, "PJSIP/a1-00000001"))
    service.on_shadow_event(CallConnected("b-2", t + 5, 3, _view("b-2", t), agent="PJSIP/a1-00000001",
                                          device="PJSIP/a1-00000001"))
    # Each node lists its ids as Asterisk gives them (unqualified); the takeover qualifies them.
    a.channels = [{"Channel": "PJSIP/trunk-a-1", "Context": "cti-acd-wait", "Linkedid": "1", "Uniqueid": "1"}]
    # b-1 hung up; b-2 talks; b-3 arrived before this standby started (lacked: adopted on b).
    b.channels = [{"Channel": "PJSIP/trunk-b-2", "Context": "cti-acd-offer", "BridgeId": "x", "Linkedid": "2",
                   "Uniqueid": "2"},
                  {"Channel": "PJSIP/trunk-x", "Context": "cti-acd-wait", "Linkedid": "3", "Uniqueid": "3"}]
    service.may_act = lambda: True
    try:
        await service.take_over()
        assert [x for x in a.sent if x != "Originate"] == ["CoreShowChannels"]
        assert b.sent.count("CoreShowChannels") == 1 and "CoreShowChannels" not in c.sent
        assert "b-1" not in service.calls and service.takeover["dropped"] == 1
        assert "c-1" in service.calls                          # its node unlisted: kept
        assert "b-3" in service.calls and service.takeover["adopted"] == 1
        assert "Getvar" in b.sent and "Getvar" not in a.sent   # asked on its own node only
        assert service.router.agent_state("a1").state == "on_call"
        # Leading now: a node's later resync adopts its callers, a node's death is heard.
        assert service.node_resynced in core.node_hooks and service.adopt in core.resync_hooks
    finally:
        await service.stop()
        await service.stop_shadow()



class FailingAmi(ListingAmi):
    """A node whose listing fails at the takeover."""

    async def send(self, action, headers=None, *, shape="single", timeout=None):
        if action == "CoreShowChannels":
            from cti.errors import AmiError
            raise AmiError("no reply")
        return await super().send(action, headers, shape=shape, timeout=timeout)


async def test_a_node_whose_listing_fails_keeps_its_calls_and_the_others_are_reconciled():
    a, b = ListingAmi(), FailingAmi()
    core = Core(SimpleNamespace(acd_default_queue="q", acd_announce_every=0), ami=a)  # type: ignore[arg-type]
    core.multi, core.nodes = True, {"a": a, "b": b}
    service = AcdService(core, CONFIG)
    service.may_act = lambda: False
    await service.start_shadow(0.5)
    t = time.time()
    for i, cid in enumerate(["a-1", "a-2", "b-1"]):
        service.on_shadow_event(queued(cid, t + i))
    a.channels = [{"Channel": "PJSIP/trunk-a-2", "Context": "cti-acd-wait", "Linkedid": "2", "Uniqueid": "2"}]
    service.may_act = lambda: True
    try:
        await service.take_over()
        assert "a-1" not in service.calls and "a-2" in service.calls and "b-1" in service.calls
        assert service.takeover["dropped"] == 1 and not service.shadowing
    finally:
        await service.stop()
        await service.stop_shadow()
