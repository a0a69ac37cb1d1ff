"""Recording policy, the recording state machine, retention, QA sampling and scoring. Pure.

No I/O, no clock, no randomness of its own: times are arguments, the random
source is passed in. The shell (``recording.recorder``, ``recording.jobs``)
feeds it and carries out what it says.

Why it is shaped like this:

- **When to record** is one function of the configuration, the call's queue and
  the trigger (``agent_answer``: an agent answered; ``call_answer``: the
  dialplan answered the caller, so IVR and hold music are recorded too). The
  mode says the default (``all``, ``queues``: only queues that say so,
  ``on_demand``: never by itself); a queue's ``record`` overrides it, except
  that ``on_demand`` starts nothing by itself whatever the queues say.
- **A recording** is a small state machine (``recording`` -> ``paused`` ->
  ``recording`` ... -> ``stopped``) as a transition table. Pauses are kept as
  intervals of wall-clock time; ``offsets`` gives them in seconds from the
  start of the file (pauses mute, so the file's timeline is the call's).
- **Retention** is days per queue (a default for the rest), counted from the
  recording's start.
- **QA sampling** takes a share of each agent's recordings: for ``n`` new
  recordings and share ``s``, ``floor(n*s)`` of them, plus one more with
  probability ``frac(n*s)``, so small batches are sampled in proportion too
  (never always zero, never always one).
- **Scoring**: each criterion gets 0..max points; the total is the weighted
  mean of points/max, in percent.
"""
from __future__ import annotations

import math
import random
import re
import struct
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$", max_length=64)]
Sides = Literal["mixed", "agent", "caller"]
Mode = Literal["all", "queues", "on_demand"]
Trigger = Literal["agent_answer", "call_answer"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueRule(_Model):
    """One queue's exceptions to the defaults."""

    record: bool | None = Field(None, description="record this queue's calls (None: the mode decides)")
    sides: Sides | None = None
    retention_days: int | None = Field(None, ge=1, le=36_500)


class Criterion(_Model):
    id: Name
    label: str = Field(min_length=1, max_length=200)
    weight: float = Field(1.0, gt=0, le=100)
    max: int = Field(5, ge=1, le=100, description="points are 0..max")


DEFAULT_FORM = (
    Criterion(id="greeting", label="Greeting and identification", weight=1, max=5),
    Criterion(id="understanding", label="Understood the customer's need", weight=2, max=5),
    Criterion(id="resolution", label="Resolved it, or set the next step", weight=3, max=5),
    Criterion(id="courtesy", label="Courtesy and tone", weight=1, max=5),
    Criterion(id="compliance", label="Compliance (identity checks, payment pause)", weight=2, max=5),
)


class QaConfig(_Model):
    share: float = Field(0.1, ge=0, le=1, description="share of each agent's recordings sampled for review")
    criteria: tuple[Criterion, ...] = Field(DEFAULT_FORM, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> "QaConfig":
        ids = [c.id for c in self.criteria]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"criteria ids repeat: {', '.join(dup)}")
        return self


class RecordingConfig(_Model):
    """The recording file (``recording_config``, TOML); every field has a default."""

    mode: Mode = "on_demand"
    start_at: Trigger = "agent_answer"
    sides: Sides = "mixed"
    retention_days: int = Field(90, ge=1, le=36_500)
    queues: dict[Name, QueueRule] = Field(default_factory=dict)
    qa: QaConfig = Field(default_factory=QaConfig)


def decide(config: RecordingConfig, queue: str | None, trigger: Trigger) -> Sides | None:
    """Whether the policy records a call now: the sides to record, or None."""
    if config.mode == "on_demand" or trigger != config.start_at:
        return None
    rule = config.queues.get(queue) if queue else None
    record = rule.record if rule is not None and rule.record is not None else config.mode == "all"
    if not record:
        return None
    return sides_for(config, queue)


def sides_for(config: RecordingConfig, queue: str | None) -> Sides:
    rule = config.queues.get(queue) if queue else None
    return rule.sides if rule is not None and rule.sides is not None else config.sides


def retention_days(config: RecordingConfig, queue: str | None) -> int:
    rule = config.queues.get(queue) if queue else None
    return rule.retention_days if rule is not None and rule.retention_days is not None else config.retention_days


def expires_at(config: RecordingConfig, queue: str | None, started_at: datetime) -> datetime:
    return started_at + timedelta(days=retention_days(config, queue))


def expired(config: RecordingConfig, items: Iterable[tuple[int, str | None, datetime]],
            now: datetime) -> list[int]:
    """Of ``(recording_id, queue, started_at)``, the ids whose retention is over at ``now``."""
    return [rid for rid, queue, started in items if expires_at(config, queue, started) <= now]


# -- files -----------------------------------------------------------------------

_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.wav$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DOTS = re.compile(r"\.{2,}")


def file_name(call_id: str, segment: int = 1) -> str:
    """The file of a call's recording: ``<call id>.wav`` (``<call id>.<n>.wav`` for
    the n-th recording of the same call). Characters other than letters, digits,
    ``.``, ``_`` and ``-`` become ``_``, and so do runs of dots; the name starts
    with a letter or digit and never holds ``..``."""
    safe = _DOTS.sub("_", _UNSAFE.sub("_", call_id))[:120].strip("._-") or "call"
    name = f"{safe}.wav" if segment == 1 else f"{safe}.{segment}.wav"
    assert is_safe_file_name(name), name
    return name


def is_safe_file_name(name: str) -> bool:
    """A bare file name we could have made: no directory part, no '..', ends .wav."""
    return bool(_FILE.match(name)) and ".." not in name


# -- the recording state machine ---------------------------------------------------

RECORDING, PAUSED, STOPPED = "recording", "paused", "stopped"
Command = Literal["pause", "resume", "stop"]

# (state, command) -> new state. Anything else is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    (RECORDING, "pause"): PAUSED,
    (PAUSED, "resume"): RECORDING,
    (RECORDING, "stop"): STOPPED,
    (PAUSED, "stop"): STOPPED,
}


class RecordingStateError(ValueError):
    """A command the recording's state does not allow."""

    def __init__(self, state: str, command: str) -> None:
        super().__init__(f"cannot {command} a recording that is {state}")
        self.state = state
        self.command = command


@dataclass(frozen=True, slots=True)
class Pause:
    """A paused stretch: ``start``/``end`` epoch seconds (``end`` None while paused)."""

    start: float
    end: float | None = None


@dataclass(frozen=True, slots=True)
class Recording:
    """One recording of a call, as the machine sees it. Times are epoch seconds."""

    call_id: str
    file_name: str
    sides: Sides
    started_at: float
    state: str = RECORDING
    pauses: tuple[Pause, ...] = ()
    stopped_at: float | None = None

    def apply(self, command: Command, now: float) -> "Recording":
        """The recording after ``command`` at ``now``. Raises ``RecordingStateError``."""
        new = TRANSITIONS.get((self.state, command))
        if new is None:
            raise RecordingStateError(self.state, command)
        pauses = self.pauses
        if command == "pause":
            pauses = pauses + (Pause(now),)
        elif self.state == PAUSED:  # resume or stop: the open pause ends now
            pauses = pauses[:-1] + (Pause(pauses[-1].start, now),)
        return replace(self, state=new, pauses=pauses, stopped_at=now if new == STOPPED else None)

    def ended(self, now: float) -> "Recording":
        """The recording once its channel is gone (stopped however it was)."""
        if self.state == STOPPED:
            return self
        return self.apply("stop", now)

    def offsets(self) -> list[tuple[float, float | None]]:
        """The pauses in seconds from the start of the file."""
        return [(round(p.start - self.started_at, 3), None if p.end is None else round(p.end - self.started_at, 3))
                for p in self.pauses]


# The feature code that has the bridge run [cti-record] on the caller's channel
# (asterisk-config/features.conf, applicationmap ``ctirecord``); the daemon plays
# it into the channel as if received (AMI PlayDTMF with Receive).
RECORD_CODE = "A"


def record_variables(path: str, sides: Sides, channel_is_caller: bool = True) -> dict[str, str]:
    """The channel variables that have the dialplan ([cti-record]) record ``sides``
    of the channel into ``path``: ``CTI_REC_FILE`` and ``CTI_REC_SIDE``.

    The side is said from the channel's point of view: ``rx`` is what it
    receives (MixMonitor's ``r()``), ``tx`` what it is sent (``t()``). On the
    caller's channel the caller is what it receives and the agent what it is
    sent; on the agent's channel the other way round. ``mixed`` is both.
    """
    if sides == "mixed":
        side = "mixed"
    else:
        caller_side, agent_side = ("rx", "tx") if channel_is_caller else ("tx", "rx")
        side = caller_side if sides == "caller" else agent_side
    return {"CTI_REC_FILE": path, "CTI_REC_SIDE": side}


# -- QA sampling and scoring -----------------------------------------------------------

def sample(items: Iterable[tuple[str, int]], share: float, rng: random.Random) -> list[int]:
    """Of ``(agent, recording_id)`` pairs, the ids picked for review: per agent,
    ``floor(n*share)`` of their ``n`` recordings, plus one with probability
    ``frac(n*share)``; which ones is uniform at random."""
    by_agent: dict[str, list[int]] = {}
    for agent, rid in items:
        by_agent.setdefault(agent, []).append(rid)
    picked: list[int] = []
    for agent in sorted(by_agent):
        ids = sorted(by_agent[agent])
        want = len(ids) * share
        k = math.floor(want)
        if rng.random() < want - k:
            k += 1
        picked.extend(sorted(rng.sample(ids, min(k, len(ids)))))
    return picked


class ScoreError(ValueError):
    """Answers that do not fit the form; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Score:
    total: float                       # percent, 0..100, two decimals
    points: dict[str, int] = field(default_factory=dict)


def score(criteria: Iterable[Criterion], points: Mapping[str, int]) -> Score:
    """The weighted score of ``points`` (criterion id -> 0..max) on the form.
    Raises ``ScoreError`` naming missing, unknown and out-of-range answers."""
    form = {c.id: c for c in criteria}
    problems = [f"{cid}: not on the form" for cid in points if cid not in form]
    problems += [f"{cid}: missing" for cid in form if cid not in points]
    for cid, value in points.items():
        c = form.get(cid)
        if c is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= c.max):
            problems.append(f"{cid}: must be a whole number from 0 to {c.max}")
    if problems:
        raise ScoreError(problems)
    weights = sum(c.weight for c in form.values())
    total = sum(c.weight * points[c.id] / c.max for c in form.values()) / weights * 100
    return Score(round(total, 2), {c.id: points[c.id] for c in form.values()})


# -- WAV headers ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WavInfo:
    channels: int
    rate: int
    bits: int
    data_offset: int
    data_bytes: int                  # as the header says (0 until the writer closes the file)

    def duration(self, data_bytes: int | None = None) -> float:
        n = self.data_bytes if data_bytes is None else data_bytes
        frame = self.channels * self.bits // 8
        return n / frame / self.rate if frame and self.rate else 0.0


class WavError(ValueError):
    pass


def parse_wav_header(head: bytes) -> WavInfo:
    """Read a RIFF/WAVE header (the first few hundred bytes of the file).
    Raises ``WavError`` when it is not PCM WAV or is cut short."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if body + 16 > len(head):
                break
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag != 1:
                raise WavError(f"not PCM (format tag {tag})")
            fmt = (channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            return WavInfo(fmt[0], fmt[1], fmt[2], body, size)
        pos = body + size + (size & 1)
    raise WavError("no data chunk in the header")
