"""The state agents start in after a restart or a takeover (acd.resume.start_states,
Router.resume, AcdService._start_states on a fake pool): no Asterisk, no database."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.config import AcdConfig
from acd.core import AcdInputError, Ignored, Router
from acd.decisions import AGENT_STATES, AVAILABLE, LOGGED_OUT, NOT_READY, ON_CALL, RESERVED, WRAPUP, Offer
from acd.resume import StartState, Stored, start_states
from acd.routing_shell import AcdService
from cti.daemon import Core

T0 = 1_700_000_000.0


def config(n: int = 3, auto_login: bool = True) -> AcdConfig:
    return AcdConfig.model_validate({
        "skills": ["billing"],
        "agents": [{"id": f"a{i}", "name": f"Agent {i}", "device": f"PJSIP/{i}", "skills": {"billing": 5},
                    "queues": {"billing": {}}, "auto_login": auto_login} for i in range(1, n + 1)],
        "queues": [{"id": "billing", "ring_timeout_s": 15, "wrapup_s": 1}],
    })


def by_agent(states: list[StartState]) -> dict[str, StartState]:
    return {s.agent_id: s for s in states}


# -- the pure rules ---------------------------------------------------------------------

def test_a_break_stays_a_break_with_its_reason_and_time():
    s = by_agent(start_states(config(), {"a1": Stored(NOT_READY, "lunch", T0 - 600)}, T0))["a1"]
    assert (s.state, s.reason, s.since, s.restored) == (NOT_READY, "lunch", T0 - 600, True)


def test_a_logged_out_agent_stays_logged_out_even_with_auto_login():
    s = by_agent(start_states(config(), {"a2": Stored(LOGGED_OUT, "logout", T0 - 60)}, T0))["a2"]
    assert (s.state, s.restored) == (LOGGED_OUT, True)


def test_an_available_agent_stays_available_and_keeps_its_idle_time():
    s = by_agent(start_states(config(), {"a3": Stored(AVAILABLE, "login", T0 - 30)}, T0))["a3"]
    assert (s.state, s.reason, s.since) == (AVAILABLE, "login", T0 - 30)


@pytest.mark.parametrize("busy", [RESERVED, ON_CALL, WRAPUP])
def test_an_agent_busy_with_a_call_is_available_now_and_adoption_decides(busy):
    s = by_agent(start_states(config(), {"a1": Stored(busy, "x", T0 - 30)}, T0))["a1"]
    assert (s.state, s.since, s.restored) == (AVAILABLE, T0, True)
    assert busy in s.reason


def test_an_agent_with_no_stored_row_gets_todays_auto_login():
    assert by_agent(start_states(config(auto_login=True), {}, T0))["a1"] == StartState("a1", AVAILABLE, "login",
                                                                                         T0, False)
    assert by_agent(start_states(config(auto_login=False), {}, T0))["a1"].state == LOGGED_OUT


def test_not_ready_unreachable_is_not_a_break_the_agent_chose():
    s = by_agent(start_states(config(), {"a1": Stored(NOT_READY, "unreachable", T0 - 30)}, T0))["a1"]
    assert s.state == AVAILABLE


def test_a_stored_time_ahead_of_now_is_taken_as_now():
    s = by_agent(start_states(config(), {"a1": Stored(NOT_READY, "lunch", T0 + 5)}, T0))["a1"]
    assert s.since == T0


def test_agents_not_in_the_configuration_are_ignored():
    assert [s.agent_id for s in start_states(config(2), {"zz": Stored(AVAILABLE, "", T0)}, T0)] == ["a1", "a2"]


stored_rows = st.dictionaries(
    st.sampled_from(["a1", "a2", "a3", "a4", "other"]),
    st.builds(Stored, st.sampled_from([*AGENT_STATES, "bogus"]),
              st.one_of(st.none(), st.sampled_from(["", "lunch", "unreachable", "missed", "login"])),
              st.floats(min_value=T0 - 86_400, max_value=T0 + 60, allow_nan=False)))


@given(stored_rows, st.booleans())
def test_property_a_restart_never_makes_a_break_or_a_logout_available(stored, auto_login):
    cfg = config(4, auto_login)
    states = start_states(cfg, stored, T0)
    assert [s.agent_id for s in states] == [a.id for a in cfg.agents]
    for s in states:
        last = stored.get(s.agent_id)
        assert s.state in (LOGGED_OUT, AVAILABLE, NOT_READY)
        assert s.since <= T0
        if last is not None and last.state == LOGGED_OUT:
            assert s.state == LOGGED_OUT
        if last is not None and last.state == NOT_READY and last.reason != "unreachable":
            assert s.state == NOT_READY and s.reason == (last.reason or "not ready")
            assert s.since == min(last.since, T0)
        if last is None:
            assert s.state == (AVAILABLE if auto_login else LOGGED_OUT)


# -- the router's input ------------------------------------------------------------------

def test_router_resume_keeps_the_time_in_state():
    r = Router(config())
    out = r.resume("a1", NOT_READY, "lunch", T0 - 600, T0)
    assert [(d.new, d.reason, d.at) for d in out] == [(NOT_READY, "lunch", T0 - 600)]
    view = r.agent_state("a1")
    assert (view.state, view.reason, view.since) == (NOT_READY, "lunch", T0 - 600)


def test_router_resume_of_an_agent_already_logged_in_is_ignored():
    r = Router(config())
    r.login("a1", T0)
    assert isinstance(r.resume("a1", NOT_READY, "lunch", T0 - 600, T0)[0], Ignored)
    assert r.agent_state("a1").state == AVAILABLE
    with pytest.raises(AcdInputError):
        r.resume("a2", ON_CALL, "", T0, T0)


def test_a_resumed_break_is_offered_no_call_and_a_resumed_available_agent_is():
    r = Router(config(2))
    r.resume("a1", NOT_READY, "lunch", T0 - 600, T0)
    r.resume("a2", AVAILABLE, "login", T0 - 60, T0)
    offers = [d for d in r.call_waiting("c1", "billing", T0 + 1) if isinstance(d, Offer)]
    assert [o.agent_id for o in offers] == ["a2"]


def test_an_unreachable_agent_resumed_available_is_not_ready_unreachable():
    r = Router(config())
    r.device_reachable("a1", False, T0)
    r.resume("a1", AVAILABLE, "login", T0 - 60, T0)
    assert (r.agent_state("a1").state, r.agent_state("a1").reason) == (NOT_READY, "unreachable")


# -- the shell, on a fake pool -----------------------------------------------------------

class FakePool:
    """``fetch`` answers with ``rows`` (or raises ``error``) and records its queries."""

    def __init__(self, rows: list[dict[str, Any]], error: Exception | None = None) -> None:
        self.rows, self.error, self.queries = rows, error, []

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self.queries.append((sql, args))
        if self.error is not None:
            raise self.error
        return self.rows


def _service(pool: Any) -> AcdService:
    core = Core(SimpleNamespace(acd_default_queue="billing"), pool=pool)  # type: ignore[arg-type]
    return AcdService(core, config())


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


async def test_the_shell_starts_each_agent_in_its_stored_state_with_one_query():
    pool = FakePool([{"agent_id": "a1", "at": _at(T0 - 600), "state": NOT_READY, "reason": "lunch"},
                     {"agent_id": "a2", "at": _at(T0 - 60), "state": LOGGED_OUT, "reason": "logout"},
                     {"agent_id": "a3", "at": _at(T0 - 30), "state": AVAILABLE, "reason": "login"}])
    service = _service(pool)
    service._apply(await service._start_states(T0))
    views = {a: service.router.agent_state(a) for a in ("a1", "a2", "a3")}
    assert (views["a1"].state, views["a1"].reason, views["a1"].since) == (NOT_READY, "lunch", T0 - 600)
    assert views["a2"].state == LOGGED_OUT
    assert views["a3"].state == AVAILABLE
    assert len(pool.queries) == 1 and "DISTINCT ON (s.agent_id)" in pool.queries[0][0]
    assert pool.queries[0][1] == (["a1", "a2", "a3"],)


async def test_the_shell_falls_back_to_auto_login_when_the_database_fails():
    service = _service(FakePool([], error=OSError("connection refused")))
    service._apply(await service._start_states(T0))
    assert {service.router.agent_state(a).state for a in ("a1", "a2", "a3")} == {AVAILABLE}


async def test_the_shell_without_a_database_keeps_auto_login():
    service = _service(None)
    service._apply(await service._start_states(T0))
    assert {service.router.agent_state(a).state for a in ("a1", "a2", "a3")} == {AVAILABLE}

