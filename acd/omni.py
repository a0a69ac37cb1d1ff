"""One pure router for every channel: the voice router and the task router, joined.

``OmniRouter`` owns an ``acd.core.Router`` (calls) and an ``acd.tasks.TaskRouter``
(chat, e-mail, message) and carries each one's decisions that concern the other
across at once, inside the same input: every ``AgentState`` of the voice router
goes to ``TaskRouter.agent_voice``, every ``VoiceBlock`` of the task router to
``Router.set_voice_blocked``, until neither has anything more to say. So no
call is ever offered to an agent that a task blocks, and no task goes to an
agent that a call holds (unless its ``while_on_voice`` allows it), whatever
order the inputs come in. Pure: time is passed in; returns every decision of
both, in the order they were taken.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from acd.config import AcdConfig
from acd.core import Router
from acd.decisions import AgentState, Decision, VoiceBlock
from acd.tasks import TaskRouter

__all__ = ["OmniRouter"]


class OmniRouter:
    """``voice``: the call router; ``tasks``: the task router. Call inputs go through
    ``voice_input(name, *args)``, task inputs through the same names as ``TaskRouter``."""

    def __init__(self, config: AcdConfig) -> None:
        self.voice = Router(config)
        self.tasks = TaskRouter(config)

    def voice_input(self, name: str, *args: Any, **kwargs: Any) -> list[Decision]:
        """Call ``Router.<name>(*args, **kwargs)`` and carry its effects over."""
        return self._pump(getattr(self.voice, name)(*args, **kwargs))

    def task_waiting(self, task_id: str, queue_id: str, now: float, **kwargs: Any) -> list[Decision]:
        return self._pump(self.tasks.task_waiting(task_id, queue_id, now, **kwargs))

    def task_abandoned(self, task_id: str, now: float) -> list[Decision]:
        return self._pump(self.tasks.task_abandoned(task_id, now))

    def task_closed(self, task_id: str, now: float) -> list[Decision]:
        return self._pump(self.tasks.task_closed(task_id, now))

    def task_taken(self, task_id: str, agent_id: str, now: float, **kwargs: Any) -> list[Decision]:
        return self._pump(self.tasks.task_taken(task_id, agent_id, now, **kwargs))

    def task_transferred(self, task_id: str, queue_id: str, now: float) -> list[Decision]:
        return self._pump(self.tasks.task_transferred(task_id, queue_id, now))

    def tick(self, now: float) -> list[Decision]:
        """Both routers' timers due at ``now``: the calls' first, then the tasks' maximum waits."""
        out = self._pump(self.voice.tick(now))
        return out + self._pump(self.tasks.tick(now))

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called (None: no timer pending in either router)."""
        due = [t for t in (self.voice.next_deadline(), self.tasks.next_deadline()) if t is not None]
        return min(due, default=None)

    def _pump(self, first: list[Decision]) -> list[Decision]:
        out: list[Decision] = []
        todo = deque([first])
        while todo:
            batch = todo.popleft()
            # Every agent this input changed is known to the task router before it matches
            # any (the voice router's state now, as below).
            for d in batch:
                if isinstance(d, AgentState):
                    self.tasks.note_voice(d.agent_id, self.voice.state_of(d.agent_id))
            for d in batch:
                out.append(d)
                if isinstance(d, AgentState):
                    # The state now, not d.new: an agent made available and offered a call
                    # in one input is already reserved, and must not take a task meanwhile.
                    more = self.tasks.agent_voice(d.agent_id, self.voice.state_of(d.agent_id), d.at)
                elif isinstance(d, VoiceBlock):
                    more = self.voice.set_voice_blocked(d.agent_id, d.blocked, d.at)
                else:
                    continue
                if more:
                    todo.append(more)
        return out
