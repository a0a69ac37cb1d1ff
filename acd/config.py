"""Routing configuration: skills, agents, queues. Loaded from TOML, validated whole.

``load_config(path)`` returns an ``AcdConfig`` or raises ``cti.errors.ConfigError``
naming the file and every bad entry (``agents[2] (id 'agent3').skills.sales: ...``,
``queue 'sales': borrow_from names unknown queue 'salse'``). The models are frozen:
the router builds its own indexes from them once.

The shape, in TOML (docs/acd.md explains each field)::

    skills = ["sales", "french"]

    [[agents]]
    id = "agent1"
    name = "Agent 1"
    device = "Local/agent1@cti-demo-agents/n"
    skills = { sales = 7, french = 4 }
    queues = { sales = {}, vip = { priority = 1, delay_s = 10 } }
    auto_login = true

    [[queues]]
    id = "sales"
    name = "Sales"
    requirements = [{ skill = "sales", min_level = 3 }]
    max_wait_s = 300
    on_max_wait = { overflow = "support" }   # or "voicemail" / "callback"

    [[queues.steps]]
    after_s = 30
    requirements = [{ skill = "sales", min_level = 1 }]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from cti.config import read_toml
from cti.errors import ConfigError

# Ids travel into logs, the database and (devices) Asterisk: keep them plain.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$", max_length=64)]
Level = Annotated[int, Field(ge=1, le=10)]
Selection = Literal["longest_idle", "best_proficiency", "fewest_calls", "round_robin"]
# Work item channels (docs/omnichannel.md). Voice is today's calls; the others are tasks.
Channel = Literal["voice", "chat", "email", "message"]
TASK_CHANNELS: tuple[str, ...] = ("chat", "email", "message")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requirement(_Model):
    """The agent needs ``skill`` at ``min_level`` or more."""

    skill: Name
    min_level: Level = 1


class Membership(_Model):
    """An agent's bond with one queue.

    ``priority``: lower is a better match (the agent is tried before other
    members, and takes this queue's calls before its other queues' calls of the
    same call priority). ``delay_s``: this agent gets the queue's calls only once
    they have waited that long (the caller's whole wait).
    """

    priority: int = 0
    delay_s: float = Field(0.0, ge=0, le=86_400)


class Capacity(_Model):
    """How much work of each channel an agent holds at once, and how channels combine
    (docs/omnichannel.md). The default is voice only, one call: today's behaviour.

    ``voice`` is 0 or 1 (0: never offered calls). ``voice_blocked_by``: while the
    agent holds any task of these channels no call is offered to it.
    ``while_on_voice``: the task channels still offered while the agent rings, talks
    or wraps up a call (none by default: a call blocks new tasks).
    """

    voice: int = Field(1, ge=0, le=1)
    chat: int = Field(0, ge=0, le=50)
    email: int = Field(0, ge=0, le=50)
    message: int = Field(0, ge=0, le=50)
    voice_blocked_by: list[Literal["chat", "email", "message"]] = Field(default_factory=list)
    while_on_voice: list[Literal["chat", "email", "message"]] = Field(default_factory=list)

    def of(self, channel: str) -> int:
        """The agent's limit in ``channel``."""
        return int(getattr(self, channel))


class Agent(_Model):
    id: Name
    name: str = Field(min_length=1, max_length=128)
    # An Asterisk dial string (PJSIP/1001, Local/agent1@ctx/n): sent to Asterisk.
    device: Annotated[str, StringConstraints(pattern=r"^[^\s\x00-\x1f,]+$", max_length=200)]
    skills: dict[Name, Level] = Field(default_factory=dict)
    queues: dict[Name, Membership] = Field(default_factory=dict)
    auto_login: bool = False
    capacity: Capacity = Field(default_factory=Capacity)


class Step(_Model):
    """After ``after_s`` in the queue, the call's requirements become ``requirements``.

    ``skip_if_nobody``: do not wait for ``after_s`` when no logged-in agent could
    take the call under the requirements in force before this step.
    """

    after_s: float = Field(gt=0, le=86_400)
    requirements: list[Requirement] = Field(default_factory=list)
    skip_if_nobody: bool = False


class Overflow(_Model):
    overflow: Name


class Queue(_Model):
    id: Name
    name: str = Field("", max_length=128)
    # The channel of the work it queues: voice (calls, acd.core.Router) or a task
    # channel (acd.tasks.TaskRouter). Priority and service level are the queue's own,
    # so they are per channel: a chat queue with sl_seconds 30, an e-mail one with 14400.
    channel: Channel = "voice"
    requirements: list[Requirement] = Field(default_factory=list)
    priority: int = 0                      # higher is served first
    aging_weight: float = Field(1.0, gt=0, le=100)
    sl_percent: float = Field(80.0, ge=0, le=100)
    sl_seconds: float = Field(20.0, gt=0)
    max_wait_s: float | None = Field(None, gt=0)
    on_max_wait: Union[Literal["voicemail", "callback"], Overflow, None] = None
    steps: list[Step] = Field(default_factory=list)
    ring_timeout_s: float = Field(15.0, gt=0, le=600)
    wrapup_s: float = Field(10.0, ge=0, le=3600)
    # The agent may extend wrap-up by wrapup_extend_s at a time, up to wrapup_max_s in all
    # (None: no extension).
    wrapup_max_s: float | None = Field(None, gt=0, le=3600)
    wrapup_extend_s: float = Field(30.0, gt=0, le=3600)
    # The agent stays in wrap-up (or not ready) until a disposition of the call is saved.
    disposition_required: bool = False
    selection: Selection = "longest_idle"
    borrow_from: list[Name] = Field(default_factory=list)
    # This queue lends its agents while its service level is at or above this
    # percentage (None: its own target, sl_percent).
    lend_while_sl_above: float | None = Field(None, ge=0, le=100)
    preferred_agent_s: float = Field(5.0, ge=0, le=3600)
    # Waiting callers may press 1 to be called back, keeping their place.
    callback: bool = False
    # Seed of the handle-time moving average used by estimated waits.
    expected_handle_s: float = Field(180.0, gt=0)

    @model_validator(mode="after")
    def _wrapup_max(self) -> "Queue":
        if self.wrapup_max_s is not None and self.wrapup_max_s < self.wrapup_s:
            raise ValueError("wrapup_max_s is the longest wrap-up: at least wrapup_s")
        return self

    @model_validator(mode="after")
    def _max_wait_pair(self) -> "Queue":
        if (self.max_wait_s is None) != (self.on_max_wait is None):
            raise ValueError("max_wait_s and on_max_wait go together (set both or neither)")
        return self


class AcdConfig(_Model):
    skills: list[Name]
    agents: list[Agent] = Field(default_factory=list)
    queues: list[Queue]

    @model_validator(mode="after")
    def _references(self) -> "AcdConfig":
        problems = check_references(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def agent(self, agent_id: str) -> Agent:
        return next(a for a in self.agents if a.id == agent_id)

    def queue(self, queue_id: str) -> Queue:
        return next(q for q in self.queues if q.id == queue_id)


def check_references(cfg: AcdConfig) -> list[str]:
    """Every cross-reference problem of a config, each naming its entry."""
    problems: list[str] = []
    problems += _duplicates("skills", cfg.skills)
    problems += _duplicates("agents", [a.id for a in cfg.agents])
    problems += _duplicates("queues", [q.id for q in cfg.queues])
    skills = set(cfg.skills)
    queues = {q.id: q for q in cfg.queues}

    for a in cfg.agents:
        for s in a.skills:
            if s not in skills:
                problems.append(f"agent {a.id!r}: unknown skill {s!r}")
        for qid in a.queues:
            if qid not in queues:
                problems.append(f"agent {a.id!r}: member of unknown queue {qid!r}")
            elif a.capacity.of(queues[qid].channel) == 0:
                ch = queues[qid].channel
                problems.append(f"agent {a.id!r}: member of {ch} queue {qid!r} with capacity.{ch} 0")

    for q in cfg.queues:
        where = f"queue {q.id!r}"
        for r in q.requirements:
            if r.skill not in skills:
                problems.append(f"{where}: requirements name unknown skill {r.skill!r}")
        if len({r.skill for r in q.requirements}) != len(q.requirements):
            problems.append(f"{where}: requirements name a skill twice")
        previous = 0.0
        for i, step in enumerate(q.steps):
            for r in step.requirements:
                if r.skill not in skills:
                    problems.append(f"{where}: steps[{i}] names unknown skill {r.skill!r}")
            if len({r.skill for r in step.requirements}) != len(step.requirements):
                problems.append(f"{where}: steps[{i}] names a skill twice")
            if step.after_s <= previous:
                problems.append(f"{where}: steps[{i}].after_s ({step.after_s:g}) must be greater "
                                f"than the step before ({previous:g})")
            previous = step.after_s
        for lender in q.borrow_from:
            if lender == q.id:
                problems.append(f"{where}: cannot borrow from itself")
            elif lender not in queues:
                problems.append(f"{where}: borrow_from names unknown queue {lender!r}")
            elif queues[lender].channel != q.channel:
                problems.append(f"{where}: borrows from {lender!r}, a queue of another channel")
        if isinstance(q.on_max_wait, Overflow) and q.on_max_wait.overflow not in queues:
            problems.append(f"{where}: on_max_wait overflows to unknown queue {q.on_max_wait.overflow!r}")
        elif isinstance(q.on_max_wait, Overflow) and queues[q.on_max_wait.overflow].channel != q.channel:
            problems.append(f"{where}: on_max_wait overflows to a queue of another channel")
        if q.channel != "voice" and (q.steps or q.borrow_from):
            problems.append(f"{where}: a {q.channel} queue has no steps or borrowing (yet)")
        if q.channel != "voice" and q.on_max_wait is not None and not isinstance(q.on_max_wait, Overflow):
            problems.append(f"{where}: a {q.channel} queue's on_max_wait is an overflow to another "
                            f"{q.channel} queue ({q.on_max_wait} is for calls)")

    # Overflow cycles: follow each chain; every queue has at most one target.
    reported: set[frozenset[str]] = set()
    for q in cfg.queues:
        chain = [q.id]
        current = q
        while isinstance(current.on_max_wait, Overflow) and current.on_max_wait.overflow in queues:
            nxt = current.on_max_wait.overflow
            if nxt in chain:
                cycle = chain[chain.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    problems.append(f"queue {cycle[0]!r}: overflow cycle {' -> '.join(cycle)}")
                break
            chain.append(nxt)
            current = queues[nxt]
    return problems


def _duplicates(what: str, ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, x in enumerate(ids):
        if x in seen:
            out.append(f"{what}: duplicate id {x!r} (entries {seen[x]} and {i})")
        else:
            seen[x] = i
    return out


def parse_config(data: dict[str, Any], source: str = "<config>") -> AcdConfig:
    """Validate an already-parsed mapping (what the TOML file holds).

    Raises: ``ConfigError`` naming ``source`` and every bad entry.
    """
    try:
        return AcdConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + _describe(exc, data)) from None


def load_config(path: str | os.PathLike[str]) -> AcdConfig:
    """Read and validate a routing configuration file (TOML).

    Returns: the ``AcdConfig``.
    Raises: ``ConfigError`` naming the file and the entry at fault (or the TOML syntax error).
    """
    return parse_config(read_toml(path, "routing config"), source=str(Path(path)))


def _describe(exc: ValidationError, data: Any) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"].removeprefix("Value error, ")
        loc = err["loc"]
        if not loc:
            lines.append(msg)
            continue
        lines.append(f"{_where(loc, data)}: {msg}")
    return "; ".join(lines)


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """``('agents', 2, 'skills', 'x')`` -> ``agents[2] (id 'agent3').skills.x``."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f" (id {node['id']!r})"
        else:
            # Union branches show up as loc parts like "literal['voicemail','callback']".
            if isinstance(node, dict) and part in node:
                out += f".{part}" if out else str(part)
                node = node[part]
            elif not out:
                out = str(part)
    return out
