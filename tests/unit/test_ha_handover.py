"""The planned handover's order in the daemon (cti.ha.HaNode._hand_over): stop acting at
once, stop the features while the lease still renews, empty the writer, release the lease,
exit 75. Fakes for the lease and the writer: no database."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from cti.ha import EXIT_STEPPED_DOWN, HaNode
from cti.leadership import HandoverAsked, Lease, LeaseConfig


class FakeLease:
    def __init__(self, steps: list[str], node: HaNode) -> None:
        self.steps, self.node = steps, node
        self.lease = Lease("a", LeaseConfig(), 0.0)     # the core, as /healthz reads it

    def leading(self) -> bool:
        return True

    async def release(self, timeout: float) -> bool:
        self.steps.append(f"release may_act={self.node.may_act()}")
        return True


class FakeWriter:
    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    async def drain(self, timeout: float) -> bool:
        self.steps.append("drain")
        return True


async def test_a_handover_stops_acting_then_the_features_then_drains_then_releases_then_exits():
    steps: list[str] = []
    core = SimpleNamespace(writer=FakeWriter(steps), timeline=True, shutdown=lambda code: steps.append(f"exit {code}"))
    node = HaNode(core, "east", "a", LeaseConfig())
    node.lease = FakeLease(steps, node)  # type: ignore[assignment]
    node.role, node.epoch = "leader", 7
    assert node.may_act()

    async def feature_stops() -> None:
        steps.append(f"feature stops may_act={node.may_act()} timeline={core.timeline}")

    node.on_step_down.append(feature_stops)
    node._decisions.put_nowait(HandoverAsked(7, 0.0))
    await asyncio.wait_for(node._apply_decisions(), 5)     # returns after the handover
    assert steps == ["feature stops may_act=False timeline=True", "drain", "release may_act=False",
                     f"exit {EXIT_STEPPED_DOWN}"]
    assert node.role == "stepped-down" and core.timeline is False
    assert node.handover is not None and node.handover["released"] and node.handover["drained"]
    assert node.health()["handover"] == node.handover


async def test_a_handover_asked_of_a_standby_changes_nothing():
    core = SimpleNamespace(writer=None, timeline=False, shutdown=lambda code: None)
    node = HaNode(core, "east", "b", LeaseConfig())
    node._decisions.put_nowait(HandoverAsked(7, 0.0))
    task = asyncio.create_task(node._apply_decisions())
    await asyncio.sleep(0.05)
    assert node.role == "standby" and not task.done()
    task.cancel()
