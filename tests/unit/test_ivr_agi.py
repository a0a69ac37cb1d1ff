"""The FastAGI protocol (pure) and server (loopback sockets, a fake Asterisk)."""
from __future__ import annotations

import asyncio

import pytest

from ivr.agi import (
    AgiHangup,
    AgiProtocolError,
    AgiServer,
    AgiSession,
    UnsafeCommand,
    check_command,
    parse_header_line,
    parse_reply,
)
from ivr.interpreter import AgiReply

HEADER = b"agi_network: yes\nagi_network_script: ivr\nagi_channel: Local/x-1;1\nagi_arg_1: call-1\n\n"


def test_replies_are_parsed_with_result_data_and_extras():
    assert parse_reply("200 result=49 (dtmf) endpos=8000") == AgiReply(200, "49", "dtmf", {"endpos": "8000"})
    assert parse_reply("200 result=0 (timeout)") == AgiReply(200, "0", "timeout")
    assert parse_reply("200 result=1") == AgiReply(200, "1", None)
    assert parse_reply("200 result=") == AgiReply(200, "", None)
    assert parse_reply("510 Invalid or unknown command") == AgiReply(510, "", "Invalid or unknown command")
    assert parse_reply("511 Command Not Permitted on a dead channel").code == 511
    with pytest.raises(AgiProtocolError):
        parse_reply("HELLO")


def test_header_lines_are_parsed_and_anything_else_refused():
    assert parse_header_line("agi_callerid: +4930 1") == ("agi_callerid", "+4930 1")
    assert parse_header_line("agi_arg_2:") == ("agi_arg_2", "")
    with pytest.raises(AgiProtocolError):
        parse_header_line("GET / HTTP/1.1")


@pytest.mark.parametrize("line", ["SET VARIABLE A 1\nHANGUP", "X\r", "X\0", "X" * 9000])
def test_commands_that_would_break_framing_are_refused(line: str):
    with pytest.raises(UnsafeCommand):
        check_command(line)


class FakeAsterisk:
    """A client that talks like Asterisk's res_agi to our server."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def connect(self, header: bytes = HEADER) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(header)
        await writer.drain()
        return reader, writer


async def serve(handler, **kwargs) -> tuple[AgiServer, FakeAsterisk]:
    server = AgiServer("127.0.0.1", 0, {"ivr": handler}, **kwargs)
    await server.start()
    return server, FakeAsterisk(server.bound_port)


async def test_a_session_sends_commands_and_reads_their_results():
    got: list[object] = []

    async def handler(s: AgiSession) -> None:
        got.append(s.arg(1))
        got.append(await s.command("WAIT FOR DIGIT 1000"))
        got.append(await s.command("GET DATA x"))

    server, ast = await serve(handler)
    reader, writer = await ast.connect()
    assert await reader.readline() == b"WAIT FOR DIGIT 1000\n"
    # a reply split in pieces
    for piece in (b"200 res", b"ult=50 (dtm", b"f)\n"):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.01)
    assert await reader.readline() == b"GET DATA x\n"
    writer.write(b"520-Invalid command syntax.  Proper usage follows:\nUsage: GET DATA <file>\n520 End of proper usage.\n")
    assert await reader.read() == b""          # the handler returned: the server closed
    assert got == ["call-1", AgiReply(200, "50", "dtmf"), AgiReply(520, "", "Invalid command syntax.  Proper usage follows:")]
    await server.stop()


async def test_a_hangup_line_where_a_result_is_expected_ends_the_session():
    outcome: list[str] = []

    async def handler(s: AgiSession) -> None:
        try:
            await s.command("STREAM FILE beep 0123456789*#")
        except AgiHangup:
            outcome.append("hangup")
            raise

    server, ast = await serve(handler)
    reader, writer = await ast.connect()
    await reader.readline()
    writer.write(b"HANGUP\n200 result=-1 endpos=0\n")
    assert await reader.read() == b""
    assert outcome == ["hangup"] and server.stats.failed == 0
    await server.stop()


async def test_a_header_too_large_or_too_slow_is_refused():
    async def handler(s: AgiSession) -> None:
        raise AssertionError("must not run")

    server, ast = await serve(handler, header_timeout=0.3, header_max=1024)
    reader, _ = await ast.connect(b"agi_x: " + b"y" * 2000 + b"\n\n")
    assert await reader.read() == b""
    reader, _ = await ast.connect(b"agi_network: yes\n")          # never finishes the header
    assert await asyncio.wait_for(reader.read(), 2) == b""
    reader, _ = await ast.connect(b"GET / HTTP/1.1\r\n\r\n")
    assert await reader.read() == b""
    assert server.stats.refused == 3
    await server.stop()


async def test_an_unknown_script_is_told_to_the_dialplan_in_a_variable():
    server, ast = await serve(lambda s: asyncio.sleep(0))
    reader, writer = await ast.connect(HEADER.replace(b"script: ivr", b"script: nope"))
    assert await reader.readline() == b'SET VARIABLE CTI_IVR_ERROR "unknown script"\n'
    writer.write(b"200 result=1\n")
    assert await reader.read() == b""
    await server.stop()


async def test_stop_cancels_every_running_session():
    started = asyncio.Event()

    async def handler(s: AgiSession) -> None:
        started.set()
        await s.command("WAIT FOR DIGIT -1", timeout=60)

    server, ast = await serve(handler)
    reader, _ = await ast.connect()
    await started.wait()
    assert server.stats.active == 1
    await asyncio.wait_for(server.stop(), 3)
    assert server.stats.active == 0
    await reader.readline()
    assert await reader.read() == b""
