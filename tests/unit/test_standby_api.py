"""On an HA standby the API is read-only (api/standby.py), and the HA settings are checked."""
from __future__ import annotations

import pytest

from api.standby import refuses
from cti.config import Settings
from cti.errors import ConfigError


@pytest.mark.parametrize("method, path", [("POST", "/api/agents/a1/ready"), ("PUT", "/api/webhooks/1"),
                                          ("DELETE", "/api/webhooks/3"), ("PATCH", "/api/tickets/9")])
def test_a_standby_refuses_commands(method: str, path: str) -> None:
    assert refuses(method, path, leading=False)
    assert not refuses(method, path, leading=True)


@pytest.mark.parametrize("method, path", [("GET", "/api/calls"), ("HEAD", "/api/agents"), ("POST", "/api/login"),
                                          ("POST", "/api/logout"), ("POST", "/hooks/lookup"), ("GET", "/healthz")])
def test_a_standby_serves_reads_sessions_and_hooks(method: str, path: str) -> None:
    assert not refuses(method, path, leading=False)


def test_ha_settings_default_to_a_lone_daemon() -> None:
    s = Settings()
    assert s.ha_cluster is None and (s.ha_renew_every, s.ha_renew_within, s.ha_ttl) == (0.5, 2.0, 3.0)


@pytest.mark.parametrize("bad", [{"ha_cluster": ""}, {"ha_cluster": "a b"}, {"ha_node": "x\n"},
                                 {"ha_ttl": 1.5}, {"ha_renew_every": 2.0}])
def test_bad_ha_settings_are_refused(bad: dict) -> None:
    with pytest.raises((ValueError, ConfigError)):
        Settings(**bad)


def test_cti_status_lines_name_the_leader_and_mark_a_stale_heartbeat() -> None:
    from cti.lease_pg import format_status

    rows = [{"cluster": "east", "holder": "n2", "epoch": 7, "heartbeat_age": 0.4, "leading_for": 62.0},
            {"cluster": "west", "holder": "w1", "epoch": 3, "heartbeat_age": 9.5, "leading_for": 600.0}]
    east, west = format_status(rows, ttl=3.0)
    assert east == "cluster east: leader n2, epoch 7, heartbeat 0.4s ago, leading for 62s"
    assert west.startswith("cluster west: leader w1, epoch 3, heartbeat 9.5s ago") and "STALE" in west
    assert "no HA cluster" in format_status([], ttl=3.0)[0]


def test_seconds_without_a_leader_count_past_the_renewal_window() -> None:
    from cti.ha import leaderless_seconds

    assert leaderless_seconds(True, 10.0, 2.0) == 0.0
    assert leaderless_seconds(False, None, 2.0) is None
    assert leaderless_seconds(False, 0.4, 2.0) == 0.0        # a live leader renews well within
    assert leaderless_seconds(False, 3.5, 2.0) == 1.5        # its lease ended 1.5 s ago at the latest


def test_a_new_leader_numbers_a_live_calls_events_after_the_stored_timeline() -> None:
    """The old leader stored seq 1..9 of c1 (its own numbering, its ACD's events among them);
    this node's model had c1 at 6: its next event is 10, not a second 7."""
    from cti.calls import CallModel
    from cti.ha import continue_numbering

    model = CallModel()
    model.feed({"Event": "Newchannel", "Channel": "PJSIP/x-1", "Uniqueid": "c1", "Linkedid": "c1",
                "CallerIDNum": "100", "CallerIDName": "x", "Exten": "s", "Context": "cti-inbound",
                "ChannelState": "4"}, 1.0)
    here = model.calls["c1"].seq
    assert continue_numbering(model, {"c1": here + 8, "gone": 40}) == 1
    ev = model.annotate("c1", "acd.offer", 2.0)
    assert ev is not None and ev.seq == here + 9
    assert continue_numbering(model, {"c1": 3}) == 0          # never backwards


def test_cti_handover_follows_the_row_until_a_higher_epoch_leads() -> None:
    from cti.lease_pg import format_status, handover_progress

    asked = {"holder": "a", "epoch": 12}
    assert handover_progress(asked, {"holder": "a", "epoch": 12, "released": False})[0] == "asked"
    assert handover_progress(asked, {"holder": "a", "epoch": 12, "released": True})[0] == "released"
    state, text = handover_progress(asked, {"holder": "b", "epoch": 13, "released": False})
    assert state == "done" and "from a (epoch 12) to b (epoch 13)" in text and "same node" not in text
    assert "same node" in handover_progress(asked, {"holder": "a", "epoch": 13, "released": False})[1]
    assert handover_progress(asked, None)[0] == "asked"
    row = {"cluster": "east", "holder": "a", "epoch": 12, "heartbeat_age": 0.2, "leading_for": 5.0}
    assert "RELEASED" in format_status([{**row, "released": True}], ttl=3.0)[0]
    assert "handover asked" in format_status([{**row, "handover_requested": True}], ttl=3.0)[0]
    assert "RELEASED" not in format_status([row], ttl=3.0)[0]
