"""The recording core: policy decisions, the state machine and its pauses, retention, QA
sampling and scoring, file names and paths, WAV headers, the configuration file."""
from __future__ import annotations

import random
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cti.errors import ConfigError
from recording.config import load_config, parse_config
from recording.files import resolve
from recording.policy import (
    DEFAULT_FORM,
    Criterion,
    Pause,
    Recording,
    RecordingConfig,
    RecordingStateError,
    ScoreError,
    WavError,
    decide,
    expired,
    file_name,
    is_safe_file_name,
    record_variables,
    parse_wav_header,
    retention_days,
    sample,
    score,
)

CONFIG = parse_config({
    "mode": "queues", "sides": "mixed", "retention_days": 90,
    "queues": {"sales": {"record": True, "retention_days": 30}, "billing": {"record": True, "sides": "agent"},
               "internal": {"record": False, "retention_days": 7}},
})


# -- policy -------------------------------------------------------------------------

def test_queues_mode_records_only_the_queues_that_say_so():
    assert decide(CONFIG, "sales", "agent_answer") == "mixed"
    assert decide(CONFIG, "billing", "agent_answer") == "agent"
    assert decide(CONFIG, "support", "agent_answer") is None
    assert decide(CONFIG, None, "agent_answer") is None


def test_all_mode_records_every_queue_but_those_excluded():
    cfg = CONFIG.model_copy(update={"mode": "all"})
    assert decide(cfg, "support", "agent_answer") == "mixed"
    assert decide(cfg, None, "agent_answer") == "mixed"
    assert decide(cfg, "internal", "agent_answer") is None


def test_on_demand_mode_starts_nothing_by_itself():
    cfg = CONFIG.model_copy(update={"mode": "on_demand"})
    assert decide(cfg, "sales", "agent_answer") is None
    assert decide(RecordingConfig(), "sales", "agent_answer") is None   # the default


def test_recording_starts_at_the_configured_moment_only():
    assert decide(CONFIG, "sales", "call_answer") is None   # not during IVR and hold music
    cfg = CONFIG.model_copy(update={"start_at": "call_answer"})
    assert decide(cfg, "sales", "call_answer") == "mixed"
    assert decide(cfg, "sales", "agent_answer") is None     # already started at the answer


def test_record_variables_per_side():
    assert record_variables("/r/a.wav", "mixed") == {"CTI_REC_FILE": "/r/a.wav", "CTI_REC_SIDE": "mixed"}
    # On the caller's channel the caller is what it receives (rx: MixMonitor's r()), the
    # agent what it is sent (tx: t()); the dialplan ([cti-record]) turns these into options.
    assert record_variables("/r/a.wav", "caller") == {"CTI_REC_FILE": "/r/a.wav", "CTI_REC_SIDE": "rx"}
    assert record_variables("/r/a.wav", "agent") == {"CTI_REC_FILE": "/r/a.wav", "CTI_REC_SIDE": "tx"}
    assert record_variables("/r/a.wav", "agent", channel_is_caller=False)["CTI_REC_SIDE"] == "rx"


def test_invalid_configuration_names_every_bad_field(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_config({"mode": "sometimes", "retention_days": 0, "queues": {"sales": {"recrod": True}}})
    text = str(exc.value)
    assert "mode" in text and "retention_days" in text and "queues.sales.recrod" in text
    with pytest.raises(ConfigError, match="criteria ids repeat: a"):
        parse_config({"qa": {"criteria": [{"id": "a", "label": "A"}, {"id": "a", "label": "B"}]}})
    bad = tmp_path / "r.toml"
    bad.write_text("mode = \n")
    with pytest.raises(ConfigError, match="r.toml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    assert load_config(None) == RecordingConfig()


def test_test_policy_file_loads():
    cfg = load_config(Path(__file__).parents[1] / "integration" / "recording-test.toml")
    assert cfg.mode == "queues" and retention_days(cfg, "sales") == 30 and cfg.qa.share == 0.5


# -- the state machine -----------------------------------------------------------------

def test_pause_resume_stop_keep_intervals_in_file_time():
    r = Recording("c1", "c1.wav", "mixed", started_at=1000.0)
    r = r.apply("pause", 1012.5).apply("resume", 1020.0).apply("pause", 1030.0).apply("resume", 1031.25)
    assert r.state == "recording"
    assert r.pauses == (Pause(1012.5, 1020.0), Pause(1030.0, 1031.25))
    assert r.offsets() == [(12.5, 20.0), (30.0, 31.25)]
    r = r.apply("stop", 1040.0)
    assert r.state == "stopped" and r.stopped_at == 1040.0


def test_stopping_or_ending_while_paused_closes_the_pause():
    r = Recording("c1", "c1.wav", "mixed", started_at=0.0).apply("pause", 5.0)
    assert r.offsets() == [(5.0, None)]
    assert r.ended(9.0).pauses == (Pause(5.0, 9.0),)
    assert r.apply("stop", 8.0).pauses == (Pause(5.0, 8.0),)
    stopped = r.ended(9.0)
    assert stopped.ended(12.0) is stopped          # ending twice changes nothing


@pytest.mark.parametrize("steps, command", [
    ((), "resume"),
    (("pause",), "pause"),
    (("stop",), "pause"),
    (("stop",), "resume"),
    (("stop",), "stop"),
])
def test_commands_the_state_does_not_allow_are_refused_by_name(steps, command):
    r = Recording("c1", "c1.wav", "mixed", started_at=0.0)
    for i, s in enumerate(steps):
        r = r.apply(s, float(i + 1))
    with pytest.raises(RecordingStateError) as exc:
        r.apply(command, 10.0)
    assert exc.value.state == r.state and exc.value.command == command
    assert f"cannot {command} a recording that is {r.state}" == str(exc.value)


# -- retention ---------------------------------------------------------------------------

def test_retention_is_per_queue_with_a_default():
    now = datetime(2025, 6, 1, tzinfo=timezone.utc)
    items = [
        (1, "sales", now - timedelta(days=31)),      # 30 days: expired
        (2, "sales", now - timedelta(days=29)),      # kept
        (3, "support", now - timedelta(days=89)),    # default 90: kept
        (4, None, now - timedelta(days=90)),         # exactly at the limit: expired
        (5, "internal", now - timedelta(days=8)),    # 7 days: expired
        (6, "billing", now - timedelta(days=60)),    # no days of its own: default 90, kept
    ]
    assert expired(CONFIG, items, now) == [1, 4, 5]
    assert retention_days(CONFIG, "billing") == 90


# -- QA -------------------------------------------------------------------------------------

def test_sample_takes_the_share_of_each_agent_exactly_when_it_is_whole():
    items = [("a1", i) for i in range(10)] + [("a2", 100 + i) for i in range(4)]
    picked = sample(items, 0.5, random.Random(1))
    assert len([p for p in picked if p < 100]) == 5 and len([p for p in picked if p >= 100]) == 2
    assert len(set(picked)) == len(picked)
    assert sample(items, 0.0, random.Random(1)) == []
    assert sorted(sample(items, 1.0, random.Random(1))) == sorted(i for _, i in items)


def test_sample_of_small_batches_is_proportional_on_average():
    rng = random.Random(42)
    runs = 4000
    # Two recordings a run at 10%: never exactly 0.2 a run, but 0.2 on average.
    total = sum(len(sample([("a1", 1), ("a1", 2)], 0.1, rng)) for _ in range(runs))
    assert 0.17 < total / runs < 0.23


def test_sample_is_uniform_over_an_agents_recordings():
    rng = random.Random(3)
    counts = {i: 0 for i in range(4)}
    for _ in range(4000):
        for p in sample([("a1", i) for i in range(4)], 0.25, rng):
            counts[p] += 1
    assert all(850 < c < 1150 for c in counts.values()), counts


def test_score_is_the_weighted_mean_in_percent():
    form = [Criterion(id="greeting", label="G", weight=1, max=5), Criterion(id="resolution", label="R", weight=3, max=10)]
    assert score(form, {"greeting": 5, "resolution": 10}).total == 100.0
    assert score(form, {"greeting": 0, "resolution": 0}).total == 0.0
    # (1 * 4/5 + 3 * 5/10) / 4 = 0.575
    assert score(form, {"greeting": 4, "resolution": 5}).total == 57.5
    assert score(DEFAULT_FORM, {c.id: c.max for c in DEFAULT_FORM}).total == 100.0


def test_score_names_every_problem():
    form = [Criterion(id="greeting", label="G", max=5), Criterion(id="resolution", label="R", max=10)]
    with pytest.raises(ScoreError) as exc:
        score(form, {"greeting": 6, "tone": 3})
    assert exc.value.problems == ["tone: not on the form", "resolution: missing",
                                  "greeting: must be a whole number from 0 to 5"]
    with pytest.raises(ScoreError):
        score(form, {"greeting": True, "resolution": 1})
    with pytest.raises(ScoreError):
        score(form, {"greeting": -1, "resolution": 1})


# -- files -------------------------------------------------------------------------------------

def test_file_names_are_the_call_id_made_safe():
    assert file_name("cti-1712345678.12") == "cti-1712345678.12.wav"
    assert file_name("cti-1712345678.12", 2) == "cti-1712345678.12.2.wav"
    assert file_name("../../etc/passwd") == "etc_passwd.wav"
    assert file_name("a.") == "a.wav" and file_name("a...b") == "a_b.wav"
    assert file_name("a b\r\n;c") == "a_b___c.wav"
    assert file_name("...") == "call.wav"
    for name in ("../x.wav", "a/b.wav", ".hidden.wav", "x.wav/..", "a..b.wav", "x.mp3", "", "/etc/passwd"):
        assert not is_safe_file_name(name), name


def test_resolve_refuses_names_and_links_leading_outside(tmp_path):
    base = tmp_path / "rec"
    base.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"x")
    assert resolve(base, "c1.wav") == (base / "c1.wav").resolve()
    for name in ("../secret.wav", "/etc/passwd", "sub/c1.wav", "..", ""):
        with pytest.raises(ValueError):
            resolve(base, name)
    (base / "link.wav").symlink_to(tmp_path / "secret.wav")
    with pytest.raises(ValueError, match="outside"):
        resolve(base, "link.wav")


def _wav(data_bytes: int, *, rate: int = 8000, channels: int = 1, bits: int = 16, extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"fmt " + struct.pack("<I", 16 + len(extra)) + fmt + extra + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", 4 + len(body) + data_bytes) + b"WAVE" + body


def test_wav_header_gives_length_and_duration():
    info = parse_wav_header(_wav(64000))
    assert (info.channels, info.rate, info.bits, info.data_offset, info.data_bytes) == (1, 8000, 16, 44, 64000)
    assert info.duration() == 4.0
    assert info.duration(16000) == 1.0
    # A longer fmt chunk (and an odd-sized one is padded) moves the data.
    assert parse_wav_header(_wav(10, extra=b"\x00\x00")).data_offset == 46


@pytest.mark.parametrize("head", [b"", b"RIFF\x00\x00\x00\x00WAVX", _wav(0)[:30],
                                  _wav(0).replace(struct.pack("<H", 1), struct.pack("<H", 49), 1)])
def test_wav_header_refuses_what_is_not_pcm_wav(head):
    with pytest.raises(WavError):
        parse_wav_header(head)


# -- who sees what ------------------------------------------------------------------------------

def test_scope_by_role_and_its_sql_condition():
    from api.auth import Principal
    from api.recording_routes import scope_of
    from recording.recording_db import Scope

    def p(role, agent_id=None, team=None):
        return Principal("session", 1, "u", "U", role, agent_id=agent_id, team=team)

    assert scope_of(p("admin")) == scope_of(p("qa")) == Scope(everything=True)
    assert scope_of(p("supervisor", team="red")) == Scope(team="red")
    assert scope_of(p("supervisor")) == Scope()                    # no team: nothing
    assert scope_of(p("agent", agent_id="t1", team="red")) == Scope(agent_id="t1")
    assert scope_of(p("agent")) == Scope() and scope_of(None) == Scope()
    args: list = ["x"]
    assert Scope(agent_id="t1").condition(args) == "r.agent = $2" and args == ["x", "t1"]
    assert "u.team = $1" in Scope(team="red").condition([])
    assert Scope().condition([]) == "false" and Scope(everything=True).condition([]) == "true"
