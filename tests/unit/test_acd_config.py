"""Routing configuration: TOML in, validated models out, errors naming file and entry."""
from __future__ import annotations

from pathlib import Path

import pytest

from acd.config import AcdConfig, Overflow, load_config, parse_config
from cti.errors import ConfigError

DEMO = Path(__file__).resolve().parents[2] / "acd" / "examples" / "demo.toml"


def base() -> dict:
    return {
        "skills": ["sales", "french"],
        "agents": [
            {"id": "a1", "name": "A1", "device": "PJSIP/1001", "skills": {"sales": 5},
             "queues": {"sales": {}}},
            {"id": "a2", "name": "A2", "device": "Local/agent2@ctx/n", "skills": {"sales": 2, "french": 9},
             "queues": {"sales": {"priority": 1, "delay_s": 10}}},
        ],
        "queues": [
            {"id": "sales", "requirements": [{"skill": "sales", "min_level": 3}],
             "steps": [{"after_s": 30, "requirements": [{"skill": "sales"}]}]},
            {"id": "support"},
        ],
    }


def error_of(data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, source="routing.toml")
    return str(exc.value)


def test_demo_config_loads_with_five_auto_agents_and_a_lazy_one():
    cfg = load_config(DEMO)
    assert [a.id for a in cfg.agents if a.auto_login] == ["agent1", "agent2", "agent3", "agent4", "agent5"]
    lazy = cfg.agent("lazy")
    assert not lazy.auto_login and lazy.device == "Local/noanswer1@cti-demo-agents/n"
    assert {q.id for q in cfg.queues} == {"sales", "support", "billing", "vip"}
    assert cfg.queue("vip").priority > max(q.priority for q in cfg.queues if q.id != "vip")
    assert cfg.queue("support").steps and cfg.queue("support").steps[0].skip_if_nobody


def test_defaults_are_the_documented_ones():
    q = parse_config(base()).queue("support")
    assert (q.priority, q.aging_weight, q.ring_timeout_s, q.wrapup_s) == (0, 1.0, 15.0, 10.0)
    assert (q.selection, q.preferred_agent_s, q.borrow_from, q.max_wait_s) == ("longest_idle", 5.0, [], None)
    m = parse_config(base()).agent("a1").queues["sales"]
    assert (m.priority, m.delay_s) == (0, 0.0)


def test_on_max_wait_is_an_overflow_table_or_a_word(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('skills = []\n[[queues]]\nid = "a"\nmax_wait_s = 60\non_max_wait = { overflow = "b" }\n'
                    '[[queues]]\nid = "b"\nmax_wait_s = 60\non_max_wait = "callback"\n')
    cfg = load_config(path)
    assert cfg.queue("a").on_max_wait == Overflow(overflow="b")
    assert cfg.queue("b").on_max_wait == "callback"


def test_unknown_skill_of_an_agent_names_file_and_agent():
    data = base()
    data["agents"][1]["skills"]["frenhc"] = 3
    msg = error_of(data)
    assert msg.startswith("routing.toml: ") and "agent 'a2': unknown skill 'frenhc'" in msg


def test_level_out_of_range_names_the_entry_by_index_and_id():
    data = base()
    data["agents"][1]["skills"]["sales"] = 11
    assert "agents[1] (id 'a2').skills.sales" in error_of(data)


def test_requirement_level_zero_is_refused():
    data = base()
    data["queues"][0]["requirements"][0]["min_level"] = 0
    assert "queues[0] (id 'sales').requirements[0].min_level" in error_of(data)


def test_membership_of_unknown_queue_is_refused():
    data = base()
    data["agents"][0]["queues"]["salse"] = {}
    assert "agent 'a1': member of unknown queue 'salse'" in error_of(data)


def test_duplicate_ids_are_refused():
    data = base()
    data["agents"].append(dict(data["agents"][0]))
    data["queues"].append({"id": "support"})
    msg = error_of(data)
    assert "agents: duplicate id 'a1' (entries 0 and 2)" in msg
    assert "queues: duplicate id 'support' (entries 1 and 2)" in msg


def test_steps_must_increase_in_after_s():
    data = base()
    data["queues"][0]["steps"].append({"after_s": 30})
    assert "queue 'sales': steps[1].after_s (30) must be greater than the step before (30)" in error_of(data)


def test_step_naming_unknown_skill_is_refused():
    data = base()
    data["queues"][0]["steps"][0]["requirements"] = [{"skill": "nope"}]
    assert "queue 'sales': steps[0] names unknown skill 'nope'" in error_of(data)


def test_overflow_cycle_is_refused_once_with_its_path():
    data = base()
    data["queues"][0].update(max_wait_s=60, on_max_wait={"overflow": "support"})
    data["queues"][1].update(max_wait_s=60, on_max_wait={"overflow": "sales"})
    msg = error_of(data)
    assert msg.count("overflow cycle") == 1
    assert "overflow cycle sales -> support -> sales" in msg


def test_overflow_to_itself_is_a_cycle():
    data = base()
    data["queues"][1].update(max_wait_s=60, on_max_wait={"overflow": "support"})
    assert "overflow cycle support -> support" in error_of(data)


def test_overflow_to_unknown_queue_is_refused():
    data = base()
    data["queues"][1].update(max_wait_s=60, on_max_wait={"overflow": "nowhere"})
    assert "queue 'support': on_max_wait overflows to unknown queue 'nowhere'" in error_of(data)


def test_max_wait_needs_its_action():
    data = base()
    data["queues"][1]["max_wait_s"] = 60
    assert "max_wait_s and on_max_wait go together" in error_of(data)


def test_bad_on_max_wait_word_is_refused():
    data = base()
    data["queues"][1].update(max_wait_s=60, on_max_wait="hangup")
    assert "queues[1] (id 'support').on_max_wait" in error_of(data)


def test_borrowing_from_unknown_queue_or_itself_is_refused():
    data = base()
    data["queues"][0]["borrow_from"] = ["nope", "sales"]
    msg = error_of(data)
    assert "queue 'sales': borrow_from names unknown queue 'nope'" in msg
    assert "queue 'sales': cannot borrow from itself" in msg


def test_unknown_field_is_refused():
    data = base()
    data["queues"][0]["prioity"] = 3
    assert "queues[0] (id 'sales').prioity" in error_of(data)


def test_device_with_line_break_is_refused():
    data = base()
    data["agents"][0]["device"] = "PJSIP/1001\r\nAction: Hangup"
    assert "agents[0] (id 'a1').device" in error_of(data)


def test_every_problem_is_reported_at_once():
    data = base()
    data["agents"][0]["skills"]["x"] = 1
    data["queues"][1]["borrow_from"] = ["y"]
    msg = error_of(data)
    assert "unknown skill 'x'" in msg and "unknown queue 'y'" in msg


def test_missing_file_and_broken_toml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("skills = [\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(bad)


def test_error_from_a_file_names_the_file(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('skills = ["a"]\n[[queues]]\nid = "q"\nrequirements = [{ skill = "b" }]\n')
    with pytest.raises(ConfigError, match=r"r\.toml: queue 'q': requirements name unknown skill 'b'"):
        load_config(path)


def test_models_are_frozen():
    cfg: AcdConfig = parse_config(base())
    with pytest.raises(Exception):
        cfg.queues[0].priority = 5  # type: ignore[misc]
