"""Malformed and hostile AMI input reaching the whole daemon (real sockets, real PostgreSQL).

The peer is a scripted AMI server replaying a transcript captured from the
sandbox, with garbage spliced in and a caller name carrying CR/LF, escaped the
way Asterisk escapes it on the wire.
"""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cti.errors import UnsafeValue
from tests.fakeami import SECRET, FakeAmi, frame
from tests.integration.conftest import daemon_settings, eventually, start_daemon
from tests.transcripts import raw

HOSTILE_WIRE = rb"Evil\r\nAction: Originate\r\nChannel: Local/666@x\r\n\r\n"
HOSTILE = "Evil\r\nAction: Originate\r\nChannel: Local/666@x\r\n\r\n"


def hostile_transcript() -> bytes:
    data = raw("basic")
    data = data[data.index(b"\r\n") + 2:]           # the greeting
    data = data[data.index(b"\r\n\r\n") + 4:]       # the login response
    return data.replace("J\\\"ürgen Müller".encode(), HOSTILE_WIRE)


GARBAGE = [
    b"\x00\xff\xfe\xfd binary noise\r\n\r\n",
    b"no colon here\r\nnor here\r\n\r\n",
    b": empty key\r\n\r\n",
    b"Event: " + b"X" * (2 << 20) + b"\r\n\r\n",   # oversized frame
    b"Event: Hangup\r\nUniqueid: never-seen\r\nCause: not-a-number\r\n\r\n",
    b"Event: Newchannel\r\n\r\n",
    "Event: Newstate\r\nUniqueid: \u202e\r\nChannelStateDesc: Up\r\n\r\n".encode(),
]


def listing(complete: str):
    async def answer(peer, action):
        aid = action["ActionID"]
        peer.send(frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start")),
                  frame(("Event", complete), ("ActionID", aid), ("EventList", "Complete"), ("ListItems", "0")))
    return answer


@pytest.fixture
async def fake_asterisk():
    server = FakeAmi()
    server.handlers["CoreShowChannels"] = listing("CoreShowChannelsComplete")
    server.handlers["QueueStatus"] = listing("QueueStatusComplete")
    await server.start()
    yield server
    await server.close()


async def test_garbage_and_crlf_caller_name_neither_crash_nor_leak(fake_asterisk, database, tmp_path):
    settings = daemon_settings(database, tmp_path, ami_port=fake_asterisk.port, ami_secret=SECRET)
    d = await start_daemon(settings)
    try:
        peer = fake_asterisk.peers[-1]
        stream = hostile_transcript()
        cut = len(stream) // 2
        # Garbage first, then the real call split mid-frame with more garbage in between
        # (garbage only lands between whole frames: that is all a peer can do to us).
        peer.send(*GARBAGE)
        first = stream[:cut]
        boundary = first.rindex(b"\r\n\r\n") + 4
        peer.send(first[:boundary])
        await asyncio.sleep(0.05)
        peer.send(*GARBAGE[:3])
        for i in range(boundary, len(stream), 7):  # the rest in 7-byte pieces
            peer.send(stream[i:i + 7])
        call_id = "cti-1795335442.0"

        async def ended():
            conn = await asyncpg.connect(database)
            try:
                return await conn.fetchrow("SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", call_id)
            finally:
                await conn.close()

        await eventually(lambda: d.core.writer.stats.buffered == 0 and not d.core.model.calls, timeout=15)
        row = await eventually(ended, timeout=15, what="the call recorded despite the garbage")
        assert row["caller_name"] == HOSTILE  # kept as text, exactly
        assert row["caller_num"] == "+4930123456" and row["agent"] == "Agent 1"

        health = d.core.ami.health
        assert health.logged_in and health.reconnects == 0  # garbage never cost the connection
        assert health.frames_rejected >= 1                 # the oversized frame
        assert d.core.model_errors == 0

        # The name can never travel back to Asterisk as headers of its own.
        with pytest.raises(UnsafeValue):
            await d.core.ami.send("Setvar", {"Variable": "CALLER", "Value": row["caller_name"]}, shape="single")
        await d.core.ami.send("Ping", shape="single")  # the connection is still fine
        sent = [a for _, a in fake_asterisk.received]
        assert "Originate" not in [a["Action"] for a in sent]
        # The refused Setvar never left: the only ones are globals set after every connect
        # (the dialplan's record-at-answer switch and folder, the emergency switch; each sent
        # by its own feature's task, so not necessarily all of them yet).
        setvars = {a.get("Variable") for a in sent if a["Action"] == "Setvar"}
        assert "CALLER" not in setvars and setvars <= {"CTI_EMERGENCY", "CTI_REC_AT_ANSWER", "CTI_REC_DIR"}
    finally:
        await d.stop()
