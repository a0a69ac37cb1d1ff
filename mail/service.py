"""The mail channel's shell: the SMTP receiver (aiosmtpd), the store, the work-item filer
and the SMTP sender of replies (docs/mail.md).

Inbound: aiosmtpd speaks SMTP; a mail over ``max_bytes`` is refused by it with a 552 (at
``MAIL FROM`` when the client announces its SIZE, else at the end of DATA), before we see
it. Every accepted mail is parsed (``mail.parse``, never raises), stored
(``mail.store.store_inbound``) and, when it starts (or reopens) a thread, filed as a work
item through the injected ``FileTask``. A database that is away is a 451: the sender keeps
the mail and tries again; nothing is lost and the receiver goes on.

Outbound: ``reply`` builds the answer (``mail.outbound``, pure), sends it with stdlib
smtplib in a worker thread (bounded by ``SEND_TIMEOUT``), and keeps it (sent or failed).
``send_transcript`` sends a web chat's transcript to its customer the same way (not kept
as a mail: the chat's messages are its record).
"""
from __future__ import annotations

import asyncio
import re
import secrets
import smtplib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any, Awaitable, Callable, Protocol

import asyncpg
import structlog

from mail import store
from mail.outbound import build_reply, new_message_id, reply_subject, thread_headers
from mail.parse import ADDRESS, parse_mail
from mail.transcript import transcript_message

log = structlog.get_logger(__name__)

STORE_TIMEOUT = 10.0
SEND_TIMEOUT = 20.0
CHANNEL = "email"


class FileTask(Protocol):
    """Files a new work item of a channel (the ACD's ``file_task``, once it has one).

    ``ref`` names the item in its channel (``mail:<thread_id>``); ``customer_ref`` is the
    customer id, when the sender is a known customer. Raising leaves the thread ``new``
    (listed, not lost); the receiver logs it and goes on."""

    async def __call__(self, channel: str, queue: str, customer_ref: str | None, subject: str,
                       ref: str) -> None: ...


class MarkWaiting:
    """The default ``FileTask``: the thread only becomes ``waiting`` (agents see it in the
    list and take it; no routing)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool | None]) -> None:
        self._pool = pool

    async def __call__(self, channel: str, queue: str, customer_ref: str | None, subject: str, ref: str) -> None:
        pool = self._pool()
        if pool is None:
            raise RuntimeError("no database pool")
        await store.mark_waiting(pool, thread_ref(ref))


class IntoAcd:
    """The ``FileTask`` of a daemon with the ACD's tasks (``omni.service.OmniService.file_task``):
    the thread is marked waiting first (listed whatever the ACD says), then filed as an
    ``email`` task of the queue. A queue that is no e-mail queue of the ACD (or a daemon
    without one) raises there: the thread stays waiting, for an agent to take from the list."""

    def __init__(self, file_task: Callable[[str, str, str, str, str], Awaitable[str]], waiting: FileTask) -> None:
        self._file, self._waiting = file_task, waiting

    async def __call__(self, channel: str, queue: str, customer_ref: str | None, subject: str, ref: str) -> None:
        await self._waiting(channel, queue, customer_ref, subject, ref)
        await self._file(channel, queue, customer_ref or ref, " ".join(subject.split())[:200], ref)


_MAIL_REF = re.compile(r"mail:([0-9]{1,19})(?:/[0-9]{1,19})?")


def thread_ref(ref: str) -> int:
    """The thread id in a ``mail:<thread_id>`` ref (``mail:<thread_id>/<message>`` for a
    reopened thread: each reopening is a new task). Raises ``ValueError``."""
    m = _MAIL_REF.fullmatch(ref)
    if m is None:
        raise ValueError(f"not a mail ref: {ref[:40]!r}")
    return int(m[1])


def task_ref(thread_id: int, message_pk: int | None = None) -> str:
    """The task ref of a new thread, or of a thread reopened by message ``message_pk``."""
    return f"mail:{thread_id}" if message_pk is None else f"mail:{thread_id}/{message_pk}"


class TaskLink(Protocol):
    """Keeps a thread and its ACD task in step (``omni.links.MailTasks``): taking a
    thread takes its task, closing it closes the task."""

    def taken(self, thread_id: int, who: str, *, steal: bool = True) -> None: ...

    def closed(self, thread_id: int) -> None: ...


class NoTasks:
    """No ACD tasks: threads alone."""

    def taken(self, thread_id: int, who: str, *, steal: bool = True) -> None:
        return None

    def closed(self, thread_id: int) -> None:
        return None


def host_port(value: str) -> tuple[str, int]:
    """'host:port' (IPv6 in brackets) as (host, port). Raises ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class MailConfig:
    listen: str | None          # host:port of the receiver; None: no receiver
    max_bytes: int              # the largest mail accepted (bytes, headers and attachments included)
    smtp: str | None            # host:port of the relay replies go through; None: replies refused
    sender: str | None          # our From address
    sender_name: str | None
    queue: str                  # the queue new threads are filed to
    hostname: str               # the name the receiver greets with


Sender = Callable[[str, int, EmailMessage], None]


def smtp_send(host: str, port: int, msg: EmailMessage) -> None:
    """Send ``msg`` through the relay at host:port (blocking: run in a thread). Raises
    ``smtplib.SMTPException`` or ``OSError``."""
    with smtplib.SMTP(host, port, timeout=SEND_TIMEOUT, local_hostname="cti") as smtp:
        smtp.send_message(msg)


class SendFailed(Exception):
    """A reply the relay did not take; it is stored with status 'failed'."""


class _Handler:
    """aiosmtpd's handler: every recipient is accepted; DATA stores the mail."""

    def __init__(self, service: MailService) -> None:
        self.service = service

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        return await self.service.receive(raw, envelope.mail_from or "")


class MailService:
    """The receiver and the sender; started and stopped with the app."""

    def __init__(self, config: MailConfig, pool: Callable[[], asyncpg.Pool | None], file_task: FileTask,
                 send: Sender = smtp_send) -> None:
        self.config = config
        self._pool = pool
        self.file_task = file_task
        self.tasks: TaskLink = NoTasks()      # the threads' ACD tasks (omni.links.MailTasks in the daemon)
        self._send = send
        self._server: asyncio.AbstractServer | None = None
        self.counts = {"stored": 0, "malformed": 0, "duplicate": 0, "deferred": 0, "file_failed": 0,
                       "sent": 0, "send_failed": 0, "transcripts_sent": 0, "transcripts_failed": 0}

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the receiver listens (its real port, when 0 was asked), or None."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def health(self) -> dict[str, Any]:
        """/healthz's "mail" part: where the receiver listens and what it has done."""
        addr = self.address
        return {"listening": f"{addr[0]}:{addr[1]}" if addr else None, **self.counts}

    async def start(self) -> None:
        if self.config.listen is None:
            return
        from aiosmtpd.smtp import SMTP
        host, port = host_port(self.config.listen)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=self.config.max_bytes, enable_SMTPUTF8=True,
                         hostname=self.config.hostname, ident="cti", timeout=60, loop=loop),
            host, port)
        log.info("mail.receiver_started", listen=f"{host}:{self.address[1] if self.address else port}",
                 max_bytes=self.config.max_bytes)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- inbound --------------------------------------------------------------------------------

    async def receive(self, raw: bytes, envelope_from: str) -> str:
        """Store one mail; the SMTP reply to give its sender."""
        # In a worker thread: a 10 MB mail takes about half a second to parse (bench/mail_ingest.py),
        # which would stall the loop that follows the calls; the thread yields the GIL every 5 ms.
        mail = await asyncio.to_thread(parse_mail, raw)
        if not mail.from_addr and ADDRESS.fullmatch(envelope_from or ""):
            mail = replace(mail, from_addr=envelope_from.lower())
        pool = self._pool()
        try:
            if pool is None:
                raise OSError("no database pool")
            async with asyncio.timeout(STORE_TIMEOUT):
                stored = await store.store_inbound(pool, mail, queue=self.config.queue)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.counts["deferred"] += 1
            log.warning("mail.store_failed", error=type(exc).__name__)
            return "451 4.3.0 Mail not stored now (storage unavailable); try again later"
        if stored.duplicate:
            self.counts["duplicate"] += 1
            return "250 2.0.0 OK (already stored)"
        self.counts["stored"] += 1
        if mail.malformed:
            self.counts["malformed"] += 1
        log.info("mail.received", thread_id=stored.thread_id, message=stored.message_pk, malformed=mail.malformed,
                 attachments=len(mail.attachments), new_work=stored.new_work, customer_id=stored.customer_id)
        if stored.new_work:
            try:
                async with asyncio.timeout(STORE_TIMEOUT):
                    await self.file_task(CHANNEL, self.config.queue, stored.customer_id, stored.subject,
                                         task_ref(stored.thread_id, stored.message_pk if stored.reopened else None))
            except Exception as exc:      # the thread stays 'new': listed, not lost
                self.counts["file_failed"] += 1
                log.warning("mail.file_task_failed", thread_id=stored.thread_id, error=type(exc).__name__)
        return "250 2.0.0 OK"

    # -- outbound -------------------------------------------------------------------------------

    async def reply(self, pool: asyncpg.Pool, thread_id: int, text: str, *, author: str,
                    assign_to: str | None) -> dict[str, Any]:
        """Send ``text`` as the answer to the thread's newest inbound mail and keep it.
        Returns the stored message's fields. Raises ``store.MailError`` (not_found,
        no_address, not_configured) or ``SendFailed`` (kept as 'failed')."""
        if self.config.smtp is None or self.config.sender is None:
            raise store.MailError("not_configured", "replies need mail_smtp and mail_from set")
        thread, answered = await store.reply_context(pool, thread_id)
        now = datetime.now(timezone.utc)
        domain = self.config.sender.rpartition("@")[2]
        message_id = new_message_id(token=secrets.token_hex(12), thread_id=thread_id,
                                    ticket_id=thread["ticket_id"], domain=domain)
        msg = build_reply(answered=answered, sender=self.config.sender, sender_name=self.config.sender_name,
                          text=text, message_id=message_id, ticket_id=thread["ticket_id"], now=now)
        in_reply_to, refs = thread_headers(answered)
        host, port = host_port(self.config.smtp)
        error = None
        try:
            async with asyncio.timeout(SEND_TIMEOUT + 5):
                await asyncio.to_thread(self._send, host, port, msg)
        except (smtplib.SMTPException, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        pk = await store.store_outbound(
            pool, thread_id=thread_id, message_id=message_id, in_reply_to=in_reply_to, refs=refs,
            from_addr=self.config.sender, to_addr=answered.from_addr,
            subject=reply_subject(answered.subject, thread["ticket_id"]), text=text, author=author,
            status="failed" if error else "sent", error=error, sent_at=now, assign_to=assign_to)
        if error:
            self.counts["send_failed"] += 1
            log.warning("mail.send_failed", thread_id=thread_id, message=pk, error=error)
            raise SendFailed(error)
        self.counts["sent"] += 1
        log.info("mail.sent", thread_id=thread_id, message=pk)
        return {"message_pk": pk, "message_id": message_id, "in_reply_to": in_reply_to, "references": list(refs),
                "to": answered.from_addr}

    @property
    def can_send(self) -> bool:
        """Whether mail goes out (``mail_smtp`` and ``mail_from`` set)."""
        return self.config.smtp is not None and self.config.sender is not None

    async def send_transcript(self, to: str, task_id: str, text: str) -> bool:
        """Send a chat's transcript to its customer through the relay. True when the relay
        took it; False when mail does not go out here, the address is refused or the relay
        fails (logged by task, never by address)."""
        if not self.can_send:
            return False
        assert self.config.smtp is not None and self.config.sender is not None
        try:
            msg = transcript_message(to=to, sender=self.config.sender, sender_name=self.config.sender_name,
                                     task_id=task_id, text=text, token=secrets.token_hex(12),
                                     now=datetime.now(timezone.utc))
            host, port = host_port(self.config.smtp)
            async with asyncio.timeout(SEND_TIMEOUT + 5):
                await asyncio.to_thread(self._send, host, port, msg)
        except (ValueError, smtplib.SMTPException, OSError, TimeoutError) as exc:
            self.counts["transcripts_failed"] += 1
            log.warning("mail.transcript_failed", task_id=task_id, error=type(exc).__name__)
            return False
        self.counts["transcripts_sent"] += 1
        log.info("mail.transcript_sent", task_id=task_id)
        return True
