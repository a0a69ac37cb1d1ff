"""``cti campaigns``: its commands parse, and a rules file is checked before anything is written."""
from __future__ import annotations

import json

import pytest

from dialer.campaigns_cli import BadInput, read_rules, reserve_of
from server.cli import _parser


def test_every_campaign_command_parses():
    p = _parser()
    assert p.parse_args(["campaigns", "list"]).campaigns_command == "list"
    a = p.parse_args(["campaigns", "create", "Survey", "--mode", "predictive", "--queue", "sales", "--cap", "0.02"])
    assert (a.name, a.mode, a.queue, a.cap, a.ring) == ("Survey", "predictive", "sales", 0.02, 25)
    for verb in ("start", "pause", "stop"):
        assert p.parse_args(["campaigns", verb, "7"]).id == 7
    assert p.parse_args(["campaigns", "export", "7", "--out", "x.csv"]).out == "x.csv"
    assert p.parse_args(["campaigns", "rules", "7", "--set", "r.json"]).set == "r.json"
    with pytest.raises(SystemExit):
        p.parse_args(["campaigns", "create", "x", "--mode", "blaster"])
    assert a.source == "csv"
    assert p.parse_args(["campaigns", "create", "CB", "--source", "tickets_callback"]).source == "tickets_callback"
    assert p.parse_args(["campaigns", "sync", "7"]).id == 7
    with pytest.raises(SystemExit):
        p.parse_args(["campaigns", "create", "x", "--source", "tickets"])


def test_a_rules_file_is_made_canonical(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"windows": {"hours": {"mon": ["09:00", "17:00"]}}, "retry": {"busy": {"delay_min": 5}}}))
    windows, retry = read_rules(str(f), ring_s=25, machine_action="retry")
    assert windows == {"hours": {"mon": ["09:00", "17:00"]}, "closed_dates": []}
    assert retry["busy"] == {"delay_min": 5, "max_times": 3} and retry["max_attempts"] == 6
    f.write_text(json.dumps({"windows": None}))
    assert read_rules(str(f), ring_s=25, machine_action="retry") == (None, None)


@pytest.mark.parametrize("content, named", [
    ('{"windows": {"hours": {"mon": ["17:00", "09:00"]}}}', "windows.hours.mon"),
    ('{"retry": {"busy": {"delay_min": 0}}}', "retry.busy.delay_min"),
    ('{"window": {}}', "an object"),
    ("not json", "cannot read"),
])
def test_a_bad_rules_file_is_refused_naming_the_field(tmp_path, content, named):
    f = tmp_path / "r.json"
    f.write_text(content)
    with pytest.raises(BadInput) as e:
        read_rules(str(f), ring_s=25, machine_action="retry")
    assert named in str(e.value)


def test_a_reserve_is_set_by_its_options_and_checked():
    p = _parser()
    args = lambda *a: p.parse_args(["campaigns", "reserve", "7", *a])  # noqa: E731
    assert reserve_of(args()) == (False, None)                             # print only
    assert reserve_of(args("--none")) == (True, None)
    assert reserve_of(args("--agents", "2", "--service-level")) == (
        True, {"agents": 2, "service_level": True, "arrivals_min": 15})
    for bad, named in ((("--agents", "501"), "--agents"), (("--arrivals-min", "0"), "--arrivals-min"),
                       (("--none", "--agents", "1"), "--none")):
        with pytest.raises(BadInput) as e:
            reserve_of(args(*bad))
        assert str(e.value).startswith(named), str(e.value)
