"""A FastAGI server on asyncio streams: Asterisk's ``AGI(agi://host:port/script)``.

One connection is one channel running ``AGI()``. Asterisk sends ``agi_*``
header lines and a blank line, then waits for commands; each command gets
one result line (``200 result=1 (timeout) endpos=0``; ``520-`` starts a
multi-line usage message ending in a ``520 `` line). When the channel hangs
up, Asterisk sends a ``HANGUP`` line, which may arrive where a result is
expected; we take it as the end of the session (``AgiHangup``) instead of
reading it as a result.

Bounds, because FastAGI has no auth and a stuck server leaves stuck channels:
the header is limited in size and lines and must arrive within
``header_timeout``; every reply within the command's own timeout; every
command line is checked (no CR, LF or NUL: a newline would run a second
command; at most 8192 bytes, Asterisk's buffer); a line longer than the
reader's limit, or a header key sent twice (Asterisk writes the caller name
raw, so a newline in it forges header lines) is an ``AgiProtocolError``.
Loopback by default.

Errors (``AgiError``)::

    AgiError
    ├── AgiProtocolError   the peer sent something that is not FastAGI
    ├── AgiHangup          the channel hung up, or the connection closed
    └── UnsafeCommand      a command we refuse to send (CR/LF/NUL, too long)

``parse_header_line`` and ``parse_reply`` are pure; ``AgiSession`` and
``AgiServer`` are the asyncio shell.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

import structlog

from cti.errors import CtiError
from ivr.interpreter import AgiReply

log = structlog.get_logger(__name__)

MAX_COMMAND = 8192            # Asterisk reads at most this much per command
HEADER_MAX_BYTES = 16_384
HEADER_MAX_LINES = 128
REPLY_MAX_LINES = 64          # a 520 usage message is a few dozen lines


class AgiError(CtiError):
    """Anything that went wrong in a FastAGI session."""


class AgiProtocolError(AgiError):
    """The peer does not speak FastAGI (or speaks too much of it)."""


class AgiHangup(AgiError):
    """The channel hung up (``HANGUP`` line) or the connection closed."""


class UnsafeCommand(AgiError, ValueError):
    """A command that would break framing; it was not sent."""


# -- pure protocol ---------------------------------------------------------------

_HEADER = re.compile(r"^(agi_[a-z0-9_]+): ?(.*)$")
_REPLY = re.compile(r"^(\d{3})(?:[ -](.*))?$")
_RESULT = re.compile(r"^result=(\S*)(?:\s+\((.*?)\))?(.*)$")


def parse_header_line(line: str) -> tuple[str, str]:
    """``agi_channel: PJSIP/x-0001`` -> ``("agi_channel", "PJSIP/x-0001")``.
    Raises ``AgiProtocolError`` for anything else."""
    m = _HEADER.match(line)
    if m is None:
        raise AgiProtocolError(f"not an AGI header line: {line[:80]!r}")
    return m.group(1), m.group(2)


def parse_reply(line: str) -> AgiReply:
    """One result line. ``200 result=49 (dtmf) endpos=8000`` ->
    ``AgiReply(200, "49", "dtmf", {"endpos": "8000"})``; ``510 Invalid or
    unknown command`` -> ``AgiReply(510, "", "Invalid or unknown command")``.
    Raises ``AgiProtocolError`` when the line is not a reply."""
    m = _REPLY.match(line)
    if m is None:
        raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
    code, rest = int(m.group(1)), (m.group(2) or "").strip()
    if code != 200:
        return AgiReply(code, "", rest or None)
    r = _RESULT.match(rest)
    if r is None:
        raise AgiProtocolError(f"200 reply without result=: {line[:80]!r}")
    extra: dict[str, str] = {}
    for item in r.group(3).split():
        key, sep, value = item.partition("=")
        if sep:
            extra[key] = value
    return AgiReply(200, r.group(1), r.group(2), extra)


def check_command(line: str) -> bytes:
    """The bytes to send for ``line``. Raises ``UnsafeCommand``."""
    if any(c in line for c in "\r\n\0"):
        raise UnsafeCommand("an AGI command may not hold CR, LF or NUL")
    data = line.encode("utf-8") + b"\n"
    if len(data) > MAX_COMMAND:
        raise UnsafeCommand(f"an AGI command may not exceed {MAX_COMMAND} bytes")
    return data


# -- the shell -------------------------------------------------------------------


async def _readline(reader: asyncio.StreamReader) -> bytes:
    """One line; a line over the reader's limit is the peer's fault, not ours."""
    try:
        return await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
        raise AgiProtocolError("a line longer than the reader accepts") from None


class AgiSession:
    """One channel's connection. ``env`` holds the ``agi_*`` headers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 env: Mapping[str, str]) -> None:
        self.reader = reader
        self.writer = writer
        self.env = dict(env)
        self.hung_up = False
        self.commands = 0

    @property
    def script(self) -> str:
        return self.env.get("agi_network_script", "")

    @property
    def peer(self) -> str | None:
        """The address the connection comes from (the Asterisk node's), None if unknown."""
        name = self.writer.get_extra_info("peername")
        return str(name[0]) if isinstance(name, (tuple, list)) and name else None

    def arg(self, n: int) -> str:
        """``AGI(agi://host/script,a,b)``: ``arg(1)`` is ``a`` ("" when absent)."""
        return self.env.get(f"agi_arg_{n}", "")

    async def command(self, line: str, timeout: float = 30.0) -> AgiReply:
        """Send one command; returns its parsed reply.

        Raises: ``UnsafeCommand`` (not sent), ``AgiHangup`` (hung up, closed),
        ``TimeoutError`` (no reply within ``timeout`` s), ``AgiProtocolError``.
        """
        data = check_command(line)
        if self.hung_up:
            raise AgiHangup("the channel hung up")
        self.commands += 1
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):
                await self.writer.drain()
                return await self._read_reply()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.hung_up = True
            raise AgiHangup(f"connection lost: {type(exc).__name__}") from None

    async def _read_reply(self) -> AgiReply:
        first: AgiReply | None = None
        for _ in range(REPLY_MAX_LINES):
            raw = await _readline(self.reader)
            if not raw:
                self.hung_up = True
                raise AgiHangup("connection closed")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line == "HANGUP":
                self.hung_up = True
                raise AgiHangup("HANGUP")
            if first is None:
                if re.match(r"^\d{3}-", line):        # "520-Invalid command syntax..."
                    first = AgiReply(int(line[:3]), "", line[4:].strip() or None)
                    continue
                return parse_reply(line)
            if line.startswith(f"{first.code} "):     # the end of the multi-line reply
                return first
        raise AgiProtocolError("reply longer than expected")

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            async with asyncio.timeout(2):
                await self.writer.wait_closed()
        except (Exception, asyncio.CancelledError):
            pass


Handler = Callable[[AgiSession], Awaitable[None]]


@dataclass
class AgiStats:
    sessions: int = 0
    active: int = 0
    refused: int = 0          # bad headers, unknown scripts, timeouts
    failed: int = 0           # handler errors


class AgiServer:
    """Accepts FastAGI connections and runs ``routes[script](session)`` in one
    task per channel; ``stop`` cancels and awaits them all."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Handler], *,
                 header_timeout: float = 5.0, header_max: int = HEADER_MAX_BYTES) -> None:
        self.host = host
        self.port = port
        self.routes = dict(routes)
        self.header_timeout = header_timeout
        self.header_max = header_max
        self.stats = AgiStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        # limit: the longest line a reader accepts (headers, replies).
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  limit=self.header_max, reuse_address=True)
        log.info("ivr.agi_listening", host=self.host, port=self.bound_port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if server is not None:
            try:
                async with asyncio.timeout(5):
                    await server.wait_closed()
            except TimeoutError:
                pass

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.stats.sessions += 1
        self.stats.active += 1
        session: AgiSession | None = None
        try:
            try:
                env = await asyncio.wait_for(self._read_header(reader), self.header_timeout)
            except (TimeoutError, AgiProtocolError, asyncio.IncompleteReadError) as exc:
                self.stats.refused += 1
                log.warning("ivr.agi_refused", reason=str(exc) or type(exc).__name__,
                            peer=str(writer.get_extra_info("peername")))
                return
            session = AgiSession(reader, writer, env)
            handler = self.routes.get(session.script)
            if handler is None:
                self.stats.refused += 1
                log.warning("ivr.agi_unknown_script", script=session.script[:64])
                # Closing alone reads as success to Asterisk: say so in a variable.
                try:
                    await session.command('SET VARIABLE CTI_IVR_ERROR "unknown script"', timeout=5)
                except (AgiError, TimeoutError):
                    pass
                return
            try:
                await handler(session)
            except AgiHangup:
                pass
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.failed += 1
                log.exception("ivr.agi_session_failed", script=session.script)
        finally:
            self.stats.active -= 1
            self._tasks.discard(task)
            if session is not None:
                await session.close()
            else:
                writer.close()

    async def _read_header(self, reader: asyncio.StreamReader) -> dict[str, str]:
        env: dict[str, str] = {}
        size = 0
        for _ in range(HEADER_MAX_LINES):
            raw = await _readline(reader)
            if not raw:
                raise AgiProtocolError("connection closed during the header")
            size += len(raw)
            if size > self.header_max:
                raise AgiProtocolError(f"header over {self.header_max} bytes")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                if not env:
                    raise AgiProtocolError("empty header")
                return env
            key, value = parse_header_line(line)
            if key in env:
                # Asterisk sends each key once and writes agi_calleridname (and
                # the rdnis, dnid ...) raw: a newline in a caller name forges
                # header lines, and a forged one would come before the real one.
                raise AgiProtocolError(f"header key {key} sent twice (a forged header line?)")
            env[key] = value
        raise AgiProtocolError(f"header over {HEADER_MAX_LINES} lines")
