"""A channel's conversation and its ACD task kept in step (docs/omnichannel.md, "One
conversation, one task").

- ``MailTasks``: a mail thread (``mail:<thread_id>`` refs) and its ``email`` task.
  The router's offer assigns the thread to the agent; a transfer puts it back to
  waiting; the agent's close of the task closes the thread. The other way, the mail
  routes call ``taken`` (Take, or a reply to a waiting thread) and ``closed``.
- ``MessageTasks``: a messaging conversation (``conversation-<id>`` refs) and its
  ``message`` task, the same way; and ``mine``: the conversations of an agent's tasks.

The task side runs in the router's order (``OmniService.listeners``); the
database side of the conversation is written through the service's ordered write
queue, behind the task's own rows. A thread taken by someone who is no agent of the
ACD configuration (a supervisor without a desk) leaves routing: its task is ended.
"""
from __future__ import annotations

import re

import structlog

from mail import store as mail_store
from mail.service import thread_ref
from messaging import store as messaging_store
from omni.service import OmniService
from omni.tasks import Task, TaskError

log = structlog.get_logger(__name__)

_CONVERSATION_REF = re.compile(r"conversation-([0-9]{1,19})")

__all__ = ["MailTasks", "MessageTasks", "conversation_ref", "conversation_of"]


def conversation_ref(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def conversation_of(ref: str) -> int | None:
    """The conversation id of a message task's ref, or None."""
    m = _CONVERSATION_REF.fullmatch(ref)
    return int(m[1]) if m else None


class _Link:
    channel = ""

    def __init__(self, omni: OmniService) -> None:
        self.omni = omni
        self._leaving: set[str] = set()
        omni.listeners.append(self._task_changed)

    def key(self, ref: str) -> int | None:
        raise NotImplementedError

    def task_of(self, key: int) -> Task | None:
        """The open task of the conversation, if any."""
        return next((t for t in self.omni.tasks.values() if t.channel == self.channel and self.key(t.ref) == key),
                    None)

    def taken(self, key: int, who: str, *, steal: bool = True) -> None:
        """``who`` took the conversation: its task is theirs (an agent of the ACD), or
        leaves routing (anyone else). ``steal`` False (an answer, not a Take): only a
        task still waiting is taken, never one another agent holds."""
        task = self.task_of(key) if self.omni.router is not None else None
        if task is None or task.agent_id == who or (not steal and task.status != "waiting"):
            return
        try:
            self.omni.take(task.task_id, who)
        except TaskError:
            self._leaving.add(task.task_id)     # its end must not close the conversation now theirs
            try:
                self.omni.end_task(task.task_id, f"taken by {who}"[:64])
            finally:
                self._leaving.discard(task.task_id)
        log.info("omni conversation taken", channel=self.channel, key=key, task_id=task.task_id, who=who)

    def closed(self, key: int) -> None:
        """The conversation was closed in its channel: its task is closed too."""
        task = self.task_of(key) if self.omni.router is not None else None
        if task is not None:
            self.omni.end_task(task.task_id, "closed")

    def _task_changed(self, what: str, task: Task) -> None:
        if task.channel != self.channel:
            return
        key = self.key(task.ref)
        if key is not None and task.task_id not in self._leaving:
            self.changed(what, task, key)

    def changed(self, what: str, task: Task, key: int) -> None:
        raise NotImplementedError


class MailTasks(_Link):
    """``mail.service.TaskLink`` over the omnichannel service."""

    channel = "email"

    def key(self, ref: str) -> int | None:
        try:
            return thread_ref(ref)
        except ValueError:
            return None

    def changed(self, what: str, task: Task, key: int) -> None:
        if what == "offered":
            agent = task.agent_id
            self.omni.write(lambda p: mail_store.follow_task(p, key, agent))
        elif what == "released":
            self.omni.write(lambda p: mail_store.follow_task(p, key, None))
        elif what == "closed":
            self.omni.write(lambda p: mail_store.close_quiet(p, key))


class MessageTasks(_Link):
    """The messaging conversations' tasks (``messaging.service.MessagingService.tasks``)."""

    channel = "message"

    def key(self, ref: str) -> int | None:
        return conversation_of(ref)

    def mine(self, agent_id: str) -> list[int]:
        """The conversations of the agent's open message tasks."""
        return [k for t in self.omni.tasks_of(agent_id) if t.channel == self.channel
                and (k := self.key(t.ref)) is not None]

    def changed(self, what: str, task: Task, key: int) -> None:
        if what == "closed":
            self.omni.write(lambda p: messaging_store.close_quiet(p, key))


