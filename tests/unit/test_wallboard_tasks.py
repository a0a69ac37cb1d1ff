"""The wallboard's task queues (chat, e-mail, message) beside the voice ones: rows built
from the task router's figures (acd.wallboard.task_queue_rows, pure), the day's counts
from the counters kept at local midnight, and the snapshot of a daemon with an ACD that
routes tasks (api.wallboard_service.WallboardService.build)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import hypothesis.strategies as st
from aiohttp import web
from hypothesis import given

from acd.config import AcdConfig
from acd.decisions import TaskQueueStats
from acd.routing_shell import AcdService
from acd.wallboard import task_counts, task_queue_rows
from api.wallboard_service import WallboardService
from cti.calls import CallModel
from cti.daemon import Core
from cti.events import Bus
from omni.service import OmniService
from tests.wireami import WireAmi

T0 = 1_800_000_000.0
CONFIG = {"skills": ["billing"],
          "queues": [{"id": "billing"}, {"id": "webchat", "name": "Web chat", "channel": "chat", "sl_seconds": 30},
                     {"id": "mail", "channel": "email", "sl_seconds": 14400, "sl_percent": 90},
                     {"id": "sms", "channel": "message"}],
          "agents": [{"id": "a4", "name": "Dev", "device": "Local/agent4@cti-demo-agents/n",
                      "skills": {"billing": 5}, "queues": {"billing": {}, "webchat": {}, "mail": {}, "sms": {}},
                      "auto_login": True, "capacity": {"chat": 1, "email": 1, "message": 1}}]}


def _stats(queue: str, channel: str, *, waiting: int = 0, longest: float = 0.0, offered: int = 0, answered: int = 0,
           within: int = 0, abandoned: int = 0) -> TaskQueueStats:
    return TaskQueueStats(queue, channel, waiting, 0, longest, offered, answered, within, abandoned, None, 80.0,
                          30.0, 1)


def test_rows_name_the_channel_and_count_the_day_from_midnight():
    stats = [_stats("sms", "message"), _stats("webchat", "chat", waiting=2, longest=41.26, offered=10, answered=9,
                                              within=6, abandoned=1),
             _stats("mail", "email", offered=3, answered=3, within=3)]
    base = {"webchat": (4, 4, 2, 0)}          # counted before midnight
    rows = task_queue_rows(stats, base, {"webchat": "Web chat"})
    assert [(r["channel"], r["queue"]) for r in rows] == [("chat", "webchat"), ("email", "mail"), ("message", "sms")]
    chat, mail, sms = rows
    assert chat["name"] == "Web chat" and mail["name"] == "mail"
    assert (chat["waiting"], chat["longest_waiting_s"]) == (2, 41.26)
    assert chat["today"] == {"offered": 6, "answered": 5, "abandoned": 1, "overflowed": 0,
                             "service_level": round(4 / 6, 4)}
    assert mail["today"]["service_level"] == 1.0 and sms["today"]["service_level"] is None
    assert sms["longest_waiting_s"] is None                  # nobody waits: no longest wait
    assert chat["sl_target"] == 0.8


def test_tasks_overflowed_to_another_queue_count_from_midnight_too():
    stats = [TaskQueueStats("webchat", "chat", 0, 0, 0.0, 7, 4, 4, 0, None, 80.0, 30.0, 1, overflowed=3)]
    (row,) = task_queue_rows(stats, {"webchat": (2, 1, 1, 0, 1)})
    assert row["today"]["overflowed"] == 2 and row["today"]["offered"] == 5
    (row,) = task_queue_rows(stats, {"webchat": (2, 1, 1, 0)})     # a base kept before overflows counted
    assert row["today"]["overflowed"] == 3


def test_counters_below_their_base_count_from_zero():
    """The router counts from its own start: after a restart or a takeover at noon the
    midnight base is above it, and the day counts what this router saw."""
    rows = task_queue_rows([_stats("webchat", "chat", offered=2, answered=2)], {"webchat": (40, 38, 30, 2)})
    assert rows[0]["today"]["offered"] == 2 and rows[0]["today"]["answered"] == 2


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=20))
def test_the_days_figures_are_never_negative_and_answered_never_exceeds_offered(steps):
    offered = answered = within = abandoned = 0
    base = {}
    for i, (o, a, b) in enumerate(steps):
        answered += min(a, o)
        within += min(b, min(a, o))
        abandoned += o - min(a, o)
        offered += o
        stats = [_stats("webchat", "chat", offered=offered, answered=answered, within=within, abandoned=abandoned)]
        (row,) = task_queue_rows(stats, base)
        today = row["today"]
        assert min(today["offered"], today["answered"], today["abandoned"]) >= 0
        assert today["answered"] + today["abandoned"] == today["offered"]
        assert today["service_level"] is None or 0 <= today["service_level"] <= 1
        if i % 3 == 2:
            base = task_counts(stats)                       # midnight
            (row,) = task_queue_rows(stats, base)
            assert row["today"]["offered"] == 0


async def test_the_snapshot_lists_task_queues_beside_the_voice_ones():
    core = Core(SimpleNamespace(acd_default_queue="billing", timezone="UTC", wallboard_push_s=1.0,  # type: ignore[arg-type]
                                wallboard_config=None), model=CallModel(), bus=Bus(), ami=WireAmi())
    acd = AcdService(core, AcdConfig.model_validate(CONFIG))
    acd._apply(acd.router.auto_login(time.time()))
    omni = OmniService(core, acd)
    await omni.start()
    board = WallboardService(web.Application(), core, acd)
    try:
        assert board.build(time.time())["task_queues"] == []          # not wired: none
        board.task_stats = omni.queue_stats
        await omni.file_task("chat", "webchat", "ada@example.org", "Hi", "c-1")       # to a4 (1 chat)
        await omni.file_task("chat", "webchat", "bob@example.org", "Hi", "c-2")       # waits
        await omni.file_task("email", "mail", "cy@example.org", "Order", "m-1")       # to a4 (1 e-mail)
        snap = board.build(time.time())
        assert [q["queue"] for q in snap["queues"]] == ["billing"]    # voice queues only
        rows = {q["queue"]: q for q in snap["task_queues"]}
        assert [(q["channel"], q["queue"]) for q in snap["task_queues"]] == [
            ("chat", "webchat"), ("email", "mail"), ("message", "sms")]
        assert rows["webchat"]["name"] == "Web chat"
        assert (rows["webchat"]["waiting"], rows["webchat"]["today"]["offered"], rows["webchat"]["open"]) == (1, 1, 1)
        assert rows["webchat"]["longest_waiting_s"] is not None
        assert (rows["mail"]["waiting"], rows["mail"]["today"]["answered"]) == (0, 1)
        board._new_day(time.time())                                   # midnight: the day starts again
        rows = {q["queue"]: q for q in board.build(time.time())["task_queues"]}
        assert rows["webchat"]["today"]["offered"] == 0 and rows["webchat"]["waiting"] == 1
    finally:
        await omni.stop()
