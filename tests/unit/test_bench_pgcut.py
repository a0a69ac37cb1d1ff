"""bench/pgcut.py: the DSN through a loopback port (pure), and the link on real sockets: bytes
pass both ways, nothing passes while cut (held, not lost, no reset), all of it after the
restore; a connection made during the cut reaches the server only after it."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.pgcut import Link, upstream, via

DSN = "postgresql://postgres@/cti?host=/var/tmp/x/run&port=5433"


def test_the_server_the_dsn_names():
    assert upstream(DSN) == Path("/var/tmp/x/run/.s.PGSQL.5433")
    assert upstream("postgresql://postgres@/cti?host=/s") == Path("/s/.s.PGSQL.5432")
    assert upstream("postgresql://postgres:pw@10.0.0.5:5433/cti") == ("10.0.0.5", 5433)
    assert upstream("postgresql://postgres@db.example/cti") == ("db.example", 5432)


@pytest.mark.parametrize("dsn", ["postgresql://postgres@/cti", "postgresql://postgres@/cti?port=1", "junk"])
def test_a_dsn_naming_no_server_is_refused(dsn):
    with pytest.raises(ValueError, match="names no server"):
        upstream(dsn)


def test_the_same_credentials_database_and_parameters_through_the_port():
    assert via(DSN, 40001) == "postgresql://postgres@127.0.0.1:40001/cti"
    assert (via("postgresql://u:p%40ss@10.0.0.5:5433/cti?sslmode=disable", 40002)
            == "postgresql://u:p%40ss@127.0.0.1:40002/cti?sslmode=disable")


async def _echo_server(path: Path) -> asyncio.AbstractServer:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(100):
            w.write(data.upper())
            await w.drain()
        w.close()

    return await asyncio.start_unix_server(echo, str(path))


async def _nothing_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        await asyncio.wait_for(reader.read(100), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def test_bytes_pass_are_held_while_cut_and_delivered_after_the_restore(tmp_path):
    sock = tmp_path / ".s.PGSQL.5432"
    server = await _echo_server(sock)
    link = Link(f"postgresql://postgres@/cti?host={tmp_path}&port=5432")
    await link.start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", link.port)
        w.write(b"one")
        assert await r.readexactly(3) == b"ONE"
        link.cut()
        w.write(b"two")
        await w.drain()
        assert await _nothing_within(r, 0.3)               # held, and the socket not reset
        r2, w2 = await asyncio.open_connection("127.0.0.1", link.port)    # accepted, no server yet
        w2.write(b"new")
        assert await _nothing_within(r2, 0.3)
        link.restore()
        assert await r.readexactly(3) == b"TWO"
        assert await r2.readexactly(3) == b"NEW"
        assert link.cuts == 1
        w.close()
        w2.close()
    finally:
        await link.stop()
        server.close()
