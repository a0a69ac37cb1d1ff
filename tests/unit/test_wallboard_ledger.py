"""The live board's ledger (acd/ledger.py): folding settled calls and old agent state
changes leaves every figure of the board as it was over all of the day's calls, and
keeps what is held per call bounded by the rolling windows, not by the day."""
from __future__ import annotations

import pytest

from acd.ledger import EVENT_KINDS, FOLD_AFTER_S, BoardLedger
from acd.figures import WAITING, StateChange, attach_wrapup, spans_from_changes
from acd.reports import build_queue_calls
from acd.wallboard import board, parse_board_config
from bench.wallboard import AgentInput, CallInput, agent_names, make_service, synthetic_day
from bench.wallboard import QUEUES as DAY_QUEUES
from bench.wallboard import feed as feed_service

DAY = 1_767_225_600.0              # 2026-01-01 00:00 UTC
QUEUES = ["billing", "nobody", "sales", "support"]


def config(listed: int = 20):
    return parse_board_config({"abandoned_listed": listed,
                               "defaults": {"short_abandon_s": 5},
                               "queues": {"support": {"variant": "abandons_in_favour", "threshold_s": 30},
                                          "billing": {"variant": "abandons_ignored", "short_abandon_s": 0}}},
                              {"sales": (20.0, 0.8), "support": (30.0, 0.9), "billing": (60.0, 0.7)})


class Everything:
    """The way before folding: every row, event and state change of the day held,
    the board built over all of them."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.events: list[dict] = []
        self.changes: list[StateChange] = []

    def board(self, cfg, now: float, day_start: float, callbacks: dict[str, str], queues=QUEUES) -> dict:
        spans = spans_from_changes(self.changes)
        calls = attach_wrapup(build_queue_calls(self.rows.values(), self.events, now=now), spans)
        callers = {cid: (r.get("caller_num"), r.get("caller_name")) for cid, r in self.rows.items()}
        return board(calls, [], cfg, now=now, day_start=day_start, queues=queues, callers=callers,
                     callbacks=callbacks, agent_spans=spans)


def feed(ledger: BoardLedger, ref: Everything, item: CallInput | AgentInput) -> None:
    if isinstance(item, AgentInput):
        if ledger.agent_change(item.change):
            ref.changes.append(item.change)
        return
    event = {"call_id": item.call_id, "seq": item.seq, "at": item.at, "kind": item.kind, "data": item.data} \
        if item.kind in EVENT_KINDS else None
    assert ledger.call(item.call_id, dict(item.row), event), item
    ref.rows[item.call_id] = item.row
    if event is not None:
        ref.events.append(event)


def replay(ledger: BoardLedger, ref: Everything, inputs, *, push_every: float, checks: list[float], cfg,
           callbacks: dict[str, str], first_push: float) -> list[float]:
    """Feed ``inputs`` in order, a board from the ledger every ``push_every`` seconds,
    and at each of ``checks`` both boards, which must be equal. The held calls at
    each check come back."""
    checks = sorted(checks)
    held = []
    next_push = first_push
    for item in inputs:
        while min(next_push, checks[0] if checks else next_push) <= item.at:
            if checks and checks[0] <= next_push:
                now = checks.pop(0)
                assert ledger.board(now, queues=QUEUES, callbacks=callbacks) == \
                    ref.board(cfg, now, ledger.day_start, callbacks), f"boards differ at {now}"
                held.append(ledger.sizes()["calls"])
            else:
                ledger.board(next_push, queues=QUEUES, callbacks=callbacks)
                next_push += push_every
        feed(ledger, ref, item)
    for now in checks:
        assert ledger.board(now, queues=QUEUES, callbacks=callbacks) == \
            ref.board(cfg, now, ledger.day_start, callbacks), f"boards differ at {now}"
        held.append(ledger.sizes()["calls"])
    return held


def test_a_long_day_folded_gives_the_board_of_all_its_calls_at_every_instant():
    """20,000 calls over 10 hours (the first half hour before midnight: yesterday's),
    a board every minute from the ledger; at eight instants, the same board as over
    every call of the day, to the last digit and line."""
    cfg = config()
    ledger, ref = BoardLedger(cfg, DAY), Everything()
    start, seconds = DAY - 1800, 10 * 3600
    callbacks = {f"c{i:06d}.7": "done" for i in range(0, 20_000, 3)}
    checks = [DAY - 600, DAY + 1800, DAY + 3 * 3600 + 17, DAY + 5 * 3600, DAY + 8 * 3600 + 0.5,
              start + seconds, start + seconds + 1900, start + seconds + 3 * 3600]
    held = replay(ledger, ref, synthetic_day(20_000, start=start, seconds=seconds, seed=7), push_every=60,
                  checks=checks, cfg=cfg, callbacks=callbacks, first_push=start - 7200)
    snap = ref.board(cfg, checks[-1], DAY, callbacks)
    assert sum(q["today"]["offered"] for q in snap["queues"]) > 18_000
    assert len(snap["abandoned"]) == 20 and any(a["callback"] == "done" for a in snap["abandoned"])
    assert snap["occupancy_today"] is not None
    # Through the day only the last half hour's calls or so were held; at the end none.
    rate = 20_000 / seconds
    assert max(held) < rate * (FOLD_AFTER_S + 900)
    assert held[-1] == 0 and ledger.folded_calls == 20_000
    assert ledger.sizes()["changes"] == len(agent_names(20_000, seconds))   # each agent's state now


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_folding_often_and_checking_often_on_short_busy_days(seed):
    """Pushes every few seconds, few abandoned callers listed, checks every 10 minutes."""
    cfg = config(listed=3)
    ledger, ref = BoardLedger(cfg, DAY), Everything()
    start, seconds = DAY - 900, 5400
    checks = [start + 600 * k + 0.25 * seed for k in range(1, 16)]
    callbacks = {f"c{i:06d}.{seed}": "pending" for i in range(0, 900, 4)}
    replay(ledger, ref, synthetic_day(900, start=start, seconds=seconds, agents=12 + seed, seed=seed),
           push_every=3 + seed, checks=checks, cfg=cfg, callbacks=callbacks, first_push=start - 7200)
    assert ledger.folded_calls > 500 and ledger.folded_changes > 1000


def test_what_is_held_follows_the_windows_not_the_length_of_the_day():
    """The same rate of calls for 2 and for 8 hours: about as many calls, events and
    state changes held at the end of each; the rest folded."""
    sizes = {}
    for hours in (2, 8):
        ledger = BoardLedger(config(), DAY)
        calls = 1000 * hours
        next_push = DAY
        for item in synthetic_day(calls, start=DAY + 3600, seconds=hours * 3600, seed=hours):
            if item.at > DAY + 3600 + hours * 3600:
                break
            while next_push <= item.at:
                ledger.board(next_push, queues=QUEUES)
                next_push += 30
            if isinstance(item, AgentInput):
                ledger.agent_change(item.change)
            else:
                ledger.call(item.call_id, dict(item.row),
                            {"call_id": item.call_id, "seq": item.seq, "at": item.at, "kind": item.kind,
                             "data": item.data} if item.kind in EVENT_KINDS else None)
        sizes[hours] = ledger.sizes()
        assert sizes[hours]["folded_calls"] + sizes[hours]["calls"] == calls
    short, long = sizes[2], sizes[8]
    assert long["folded_calls"] > 5 * short["folded_calls"]
    for what in ("calls", "events", "stays", "changes"):           # four times the calls, not the held
        assert long[what] < 1.5 * short[what], (what, short, long)
    rate = 1000 / 3600
    assert long["calls"] < rate * (FOLD_AFTER_S + 900)
    assert long["changes"] < 4 * rate * 900 + 2 * len(agent_names(8000, 8 * 3600))


def test_at_midnight_the_day_totals_go_and_the_calls_waiting_stay():
    cfg = config()
    ledger, ref = BoardLedger(cfg, DAY - 86_400), Everything()
    start = DAY - 3600
    inputs = synthetic_day(2000, start=start, seconds=7200, seed=11)
    next_push = start - 7200
    item = next(inputs)
    while item.at <= DAY:
        while next_push <= item.at:
            ledger.board(next_push, queues=QUEUES)
            next_push += 10
        feed(ledger, ref, item)
        item = next(inputs)
    before = ledger.board(DAY, queues=QUEUES)
    assert before["queues"][0]["today"]["offered"] > 100
    ledger.new_day(DAY)
    # The same as before folding: the calls waiting at midnight and each agent's state then.
    waiting = {c.call_id for c in build_queue_calls(ref.rows.values(), ref.events, now=DAY) if c.outcome == WAITING}
    assert waiting and set(ledger.rows) == waiting
    ref.rows = {k: v for k, v in ref.rows.items() if k in waiting}
    ref.events = [e for e in ref.events if e["call_id"] in waiting]
    ref.changes = list({c.agent_id: c for c in sorted(ref.changes, key=lambda c: c.at)}.values())
    after = ledger.board(DAY, queues=QUEUES)
    assert after == ref.board(cfg, DAY, DAY, {})
    assert sum(q["today"]["offered"] for q in after["queues"]) == 0 and after["abandoned"] == []
    replay(ledger, ref, [item, *inputs], push_every=10, checks=[DAY + 1200, DAY + 3000, DAY + 7200], cfg=cfg,
           callbacks={}, first_push=next_push)


def test_an_event_of_a_call_folded_away_is_refused_not_counted_twice():
    cfg = config()
    ledger = BoardLedger(cfg, DAY)
    row = {"call_id": "c1", "queue": "sales", "queue_joined_at": DAY + 10, "queue_left_at": DAY + 40,
           "agent": None, "agent_answered_at": None, "ended_at": DAY + 40, "abandoned": True,
           "caller_num": "+4420", "caller_name": "Ann"}
    assert ledger.call("c1", dict(row))
    now = DAY + 40 + FOLD_AFTER_S
    snap = ledger.board(now, queues=QUEUES)
    assert ledger.rows == {} and ledger.folded_calls == 1
    sales = next(q for q in snap["queues"] if q["queue"] == "sales")
    assert sales["today"]["abandoned"] == 1 and sales["last_30"]["offered"] == 0
    assert [(a["call_id"], a["number"], a["waited_s"]) for a in snap["abandoned"]] == [("c1", "+4420", 30.0)]
    assert not ledger.call("c1", dict(row))
    assert ledger.board(now + 1, queues=QUEUES)["queues"] == ledger.board(now, queues=QUEUES)["queues"]


def test_an_answered_call_waits_for_its_agents_next_change_before_folding():
    """Its wrap-up may still grow until the agent leaves wrap-up; then it folds, and the
    agent's spans before the talk end fold into the day's seconds."""
    cfg = config()
    ledger = BoardLedger(cfg, DAY)
    ledger.agent_change(StateChange("a", DAY, "available", ""))
    ledger.agent_change(StateChange("a", DAY + 100, "on_call", ""))
    row = {"call_id": "c1", "queue": "sales", "queue_joined_at": DAY + 95, "queue_left_at": DAY + 100,
           "agent": "a", "agent_answered_at": DAY + 100, "ended_at": DAY + 200, "abandoned": False}
    ledger.call("c1", dict(row), {"call_id": "c1", "seq": 5, "at": DAY + 200, "kind": "call.agent_left", "data": {}})
    ledger.agent_change(StateChange("a", DAY + 200, "wrapup", ""))
    late = DAY + 200 + 3 * FOLD_AFTER_S
    snap = ledger.board(late, queues=QUEUES)
    assert "c1" in ledger.rows                                       # still in wrap-up: not final
    sales = next(q for q in snap["queues"] if q["queue"] == "sales")
    assert sales["today"]["answered"] == 1 and sales["today"]["handled"] == 0
    ledger.agent_change(StateChange("a", late, "available", ""))
    snap = ledger.board(late + 1, queues=QUEUES)
    sales = next(q for q in snap["queues"] if q["queue"] == "sales")
    assert "c1" not in ledger.rows
    assert (sales["today"]["handled"], sales["today"]["aht_s"]) == (1, 100 + late - (DAY + 200))
    # Folded: the spans before the horizon, but the agent's state now stays.
    assert [s.state for s in ledger.spans()] == ["wrapup", "available"]
    assert snap["utilization_today"] == round((late - (DAY + 100)) / (late + 1 - DAY), 4)


def test_the_service_feeds_its_ledger_from_the_bus_and_the_router():
    """WallboardService (a fake core: the router's agent states, no database): the
    board it pushes has the figures of all the calls, and it holds few of them."""
    agents = agent_names(1200, 3600, 30)
    service = make_service(agents)
    service.day_start = DAY
    ref = Everything()

    def check(now: float) -> None:
        snap = service.build(now)
        want = ref.board(service.config, now, DAY, {}, queues=DAY_QUEUES)
        for key in ("queues", "abandoned", "occupancy_today", "utilization_today"):
            assert snap[key] == want[key], key
        order = {"on_call": 0, "reserved": 1, "wrapup": 2, "available": 3, "not_ready": 4, "logged_out": 5}
        views = service.acd.router.views
        assert [a["agent_id"] for a in snap["agents"]] == sorted(
            agents, key=lambda a: (order[views[a].state], views[a].since, a))

    checks = [DAY + 3600 + 1800, DAY + 7200 + 0.5]
    next_push = DAY
    for item in synthetic_day(1200, start=DAY + 3600, seconds=3600, agents=30, seed=9):
        while checks and checks[0] <= item.at or next_push <= item.at:
            if checks and checks[0] <= next_push:
                check(checks.pop(0))
            else:
                service.build(next_push)
                next_push += 5
        feed_service(service, item)
        if isinstance(item, AgentInput):
            ref.changes.append(item.change)
        else:
            ref.rows[item.call_id] = item.row
            if item.kind in EVENT_KINDS:
                ref.events.append({"call_id": item.call_id, "seq": item.seq, "at": item.at, "kind": item.kind,
                                   "data": item.data})
    assert not checks
    check(DAY + 7200 + 2400)
    assert service.ledger.folded_calls > 600 and service.ledger.sizes()["calls"] < 600


def test_filed_callbacks_follow_the_router_then_leave_with_their_call() -> None:
    """The call-backs a supervisor filed: the router's status while it holds them,
    "done" when it lets go, forgotten once their call is folded off the board."""
    from acd import callbacks as cbs
    from acd.routing_shell import Waiting
    from api.wallboard_service import settle_filed

    dialing = Waiting(channel=None, callback=cbs.Callback("c1", "+4420", "sales", status=cbs.DIALING))
    filed = {"c1": cbs.PENDING, "c2": cbs.PENDING, "c3": "done", "c4": cbs.FAILED}
    rows = {"c1": {}, "c2": {}, "c3": {}}            # c4's call has been folded out of the ledger
    out = settle_filed(filed, {"c1": dialing}, rows)
    assert out == {"c1": cbs.DIALING, "c2": "done", "c3": "done"}
    # Once the router lets c1 go it is done; when c1 and c2 fold away, nothing is left.
    assert settle_filed(out, {}, rows) == {"c1": "done", "c2": "done", "c3": "done"}
    assert settle_filed(out, {}, {}) == {"c1": "done"}      # c1 just settled: shown once more
    assert settle_filed(settle_filed(out, {}, {}), {}, {}) == {}
    assert filed == {"c1": cbs.PENDING, "c2": cbs.PENDING, "c3": "done", "c4": cbs.FAILED}   # not changed in place
