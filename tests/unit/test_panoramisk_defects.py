"""panoramisk 1.4's AMI defects (docs/ami.md), each shown on panoramisk and closed by ours.

Every test feeds one input to panoramisk 1.4's own code, asserts the defect
(that proves the baseline), then feeds the same input to ``cti.amiproto`` /
``cti.ami`` and asserts the right behaviour. The panoramisk side uses its
protocol and manager objects with a dummy transport; ours runs against a tiny
scripted AMI server on loopback.
"""
from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from unittest import mock

import pytest
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from cti.ami import AmiClient
from cti.amiproto import AmiParser, Frame
from cti.errors import AmiActionFailed, AmiDisconnected, AmiLoginFailed, AmiTimeout

SECRET = "pw"


# --- panoramisk harness -------------------------------------------------------------

def pano_protocol(factory=None) -> tuple[AMIProtocol, list]:
    """panoramisk's AMIProtocol on a dummy transport; returns it and the events it dispatched."""
    dispatched: list = []
    proto = AMIProtocol()
    proto.connection_made(mock.MagicMock())
    proto.encoding = "utf8"
    proto.factory = factory or SimpleNamespace(dispatch=dispatched.append, forgetable_actions=("ping", "login"),
                                               awaiting_actions=[])
    return proto, dispatched


def wire(*frames: dict[str, str]) -> bytes:
    return b"".join("".join(f"{k}: {v}\r\n" for k, v in f.items()).encode() + b"\r\n" for f in frames)


# --- our harness: a scripted AMI peer -------------------------------------------------

Script = Callable[[dict[str, str]], bytes]


@asynccontextmanager
async def our_client(script: Script, *, secret: str = SECRET, on_connected=None,
                     **kw) -> AsyncIterator[tuple[AmiClient, dict]]:
    """An AmiClient logged in to a server answering each action with ``script(action)``.

    The dict yielded records ``received`` actions and ``accepted`` times.
    """
    record: dict = {"received": [], "accepted": [], "writers": []}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record["accepted"].append(time.monotonic())
        record["writers"].append(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                action = dict(line.split(": ", 1) for line in raw.decode().split("\r\n") if line)
                record["received"].append(action)
                if action["Action"] == "Login":
                    ok = action["Secret"] == SECRET
                    writer.write(wire({"Response": "Success" if ok else "Error", "ActionID": action["ActionID"],
                                       "Message": "Authentication accepted" if ok else "Authentication failed"}))
                else:
                    writer.write(script(action))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    params = dict(action_timeout=0.5, ping_interval=60.0, reconnect_min=0.02, reconnect_max=0.2)
    params.update(kw)
    client = AmiClient("127.0.0.1", server.sockets[0].getsockname()[1], "cti", secret, **params)
    client.set_on_connected(on_connected)
    try:
        await client.start()
        if secret == SECRET:
            await client.wait_connected(2.0)
        yield client, record
    finally:
        await client.stop()
        server.close()
        for w in record["writers"]:
            w.close()
        await server.wait_closed()


def reply(action: dict[str, str], **headers: str) -> bytes:
    return wire({"Response": "Success", "ActionID": action["ActionID"], **headers})


# --- decoding ---------------------------------------------------------------------

JURGEN = wire({"Event": "NewCallerid", "Channel": "PJSIP/a-1", "CallerIDName": "Jürgen"})
CUT = JURGEN.index("ü".encode()) + 1  # inside the two bytes of ü


def test_utf8_char_split_across_reads():
    """Defect: each TCP chunk is decoded alone with errors='ignore': a split ü vanishes."""
    proto, dispatched = pano_protocol()
    proto.data_received(JURGEN[:CUT])
    proto.data_received(JURGEN[CUT:])
    assert dispatched[0]["CallerIDName"] == "Jrgen"  # panoramisk: silently dropped

    parser = AmiParser(expect_greeting=False)
    frames = parser.feed(JURGEN[:CUT]) + parser.feed(JURGEN[CUT:])
    assert frames[0]["CallerIDName"] == "Jürgen"


def test_bare_lf_frames():
    """Defect (found here): frames are split only at CRLF CRLF; bare-LF frames never come out."""
    data = JURGEN.replace(b"\r\n", b"\n")
    proto, dispatched = pano_protocol()
    proto.data_received(data)
    assert dispatched == []

    assert AmiParser(expect_greeting=False).feed(data)[0]["CallerIDName"] == "Jürgen"


# --- response shapes --------------------------------------------------------------

async def test_queueadd_reply_guessed_as_a_list():
    """Defect (issue #54): "Added interface to queue" is guessed as a list start; never resolves."""
    proto, _ = pano_protocol()
    fut = proto.send({"Action": "QueueAdd", "Queue": "sales", "Interface": "PJSIP/agent1"}, as_list=None)
    action_id = next(iter(proto.responses))
    proto.data_received(wire({"Response": "Success", "ActionID": action_id, "Message": "Added interface to queue"}))
    assert not fut.done() and action_id in proto.responses  # waits forever, stays in memory

    def script(action):
        return reply(action, Message="Added interface to queue")
    async with our_client(script) as (client, _):
        result = await client.send("QueueAdd", {"Queue": "sales", "Interface": "PJSIP/agent1"}, shape="single")
        assert result.response["Message"] == "Added interface to queue"
        assert client.pending_actions == 0


async def test_as_list_set_on_the_action_or_send_command_is_lost():
    """Defect: as_list given to Action() or send_command() is overwritten by send()."""
    proto, _ = pano_protocol()
    action = Action({"Action": "CoreShowChannels"}, as_list=True)
    proto.send(action)
    assert action.as_list is False
    manager = Manager(loop=mock.MagicMock())
    manager.protocol = proto
    manager.send_command("core show channels", as_list=True)
    command = list(proto.responses.values())[-1]
    assert command.as_list is None

    async with our_client(lambda a: reply(a)) as (client, _):
        with pytest.raises(TypeError):
            await client.send("CoreShowChannels")  # type: ignore[call-arg]  # shape is required


ORIGINATE = {"Action": "Originate", "Channel": "Local/p60@demo", "Context": "cti-inbound", "Exten": "5000",
             "Priority": "1"}


async def test_originate_without_async_header_raises_keyerror():
    """Defect: an Originate without an Async header makes the reply handling raise KeyError."""
    proto, _ = pano_protocol()
    proto.send(dict(ORIGINATE), as_list=None)
    action_id = next(iter(proto.responses))
    with pytest.raises(KeyError):
        proto.data_received(wire({"Response": "Success", "ActionID": action_id,
                                  "Message": "Originate successfully queued"}))

    async with our_client(lambda a: reply(a, Message="Originate successfully queued")) as (client, _):
        headers = {k: v for k, v in ORIGINATE.items() if k != "Action"}
        result = await client.send("Originate", headers, shape="single")
        assert result.response["Message"] == "Originate successfully queued"


async def test_originate_async_no_waits_for_an_event_that_never_comes():
    """Defect: with "Async: no" it waits for an OriginateResponse Asterisk never sends."""
    proto, _ = pano_protocol()
    fut = proto.send({**ORIGINATE, "Async": "no"}, as_list=None)
    action_id = next(iter(proto.responses))
    proto.data_received(wire({"Response": "Success", "ActionID": action_id,
                              "Message": "Originate successfully queued"}))
    assert not fut.done()

    async with our_client(lambda a: reply(a, Message="Originate successfully queued")) as (client, _):
        headers = {k: v for k, v in ORIGINATE.items() if k != "Action"}
        result = await client.send("Originate", {**headers, "Async": "no"}, shape="single")
        assert result.response.response == "Success"


async def test_originate_async_resolves_late_and_hides_originate_response():
    """Defects: with Async true the future resolves only on OriginateResponse, and events
    carrying a pending ActionID are kept from the event handlers."""
    proto, dispatched = pano_protocol()
    fut = proto.send({**ORIGINATE, "Async": "true"}, as_list=None)
    action_id = next(iter(proto.responses))
    proto.data_received(wire({"Response": "Success", "ActionID": action_id,
                              "Message": "Originate successfully queued"}))
    assert not fut.done()  # the call is still ringing: the caller is blocked
    proto.data_received(wire({"Event": "OriginateResponse", "ActionID": action_id, "Response": "Success",
                              "Reason": "4"}))
    assert fut.done()
    assert dispatched == []  # the call model never sees OriginateResponse

    def script(action):
        if action["Action"] != "Originate":
            return reply(action)
        return (reply(action, Message="Originate successfully queued")
                + wire({"Event": "OriginateResponse", "ActionID": action["ActionID"], "Response": "Success",
                        "Reason": "4"}))
    async with our_client(script) as (client, _):
        seen: list[Frame] = []
        client.add_listener(seen.append)
        headers = {k: v for k, v in ORIGINATE.items() if k != "Action"}
        result = await client.send("Originate", {**headers, "Async": "true"}, shape="single")
        assert result.response["Message"] == "Originate successfully queued"
        await client.send("Ping", shape="single")  # let the event arrive
        assert [f.name for f in seen] == ["OriginateResponse"]


async def test_list_cancelled_by_asterisk():
    """Defect: EventList "cancelled" is not recognised: a cancelled list comes back as a success."""
    def frames(action_id):
        return wire({"Response": "Success", "ActionID": action_id, "EventList": "start"},
                    {"Event": "CoreShowChannel", "ActionID": action_id, "Uniqueid": "1.1"},
                    {"Event": "CoreShowChannelsComplete", "ActionID": action_id, "EventList": "cancelled"})
    proto, _ = pano_protocol()
    fut = proto.send({"Action": "CoreShowChannels"}, as_list=True)
    proto.data_received(frames(next(iter(proto.responses))))
    assert fut.done() and not fut.exception()  # a partial listing taken for the whole state

    async with our_client(lambda a: frames(a["ActionID"])) as (client, _):
        with pytest.raises(AmiActionFailed, match="cancelled"):
            await client.send("CoreShowChannels", shape="list")


# --- timeouts and disconnects -----------------------------------------------------------

async def test_no_timeout_and_wait_for_leaves_the_entry_behind():
    """Defect: no timeouts; cancelling with wait_for leaves the pending entry in memory."""
    proto, _ = pano_protocol()
    fut = proto.send({"Action": "Status"}, as_list=False)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(fut, 0.01)
    assert len(proto.responses) == 1

    async with our_client(lambda a: b"") as (client, _):
        with pytest.raises(AmiTimeout):
            await client.send("Status", shape="single", timeout=0.05)
        assert client.pending_actions == 0


async def test_unanswered_action_replayed_after_reconnect():
    """Defect: an action without reply when the connection drops is re-sent on the next
    connection, so an Originate or Hangup Asterisk already ran can run twice."""
    manager = Manager(loop=mock.MagicMock())
    proto, _ = pano_protocol(factory=manager)
    manager.protocol = proto
    proto.send({"Action": "Hangup", "Channel": "PJSIP/agent1-00000001"}, as_list=False)
    proto.close()  # the connection drops before the reply
    assert [a["Action"] for a in manager.awaiting_actions] == ["Hangup"]
    await manager.send_awaiting_actions()  # what its FullyBooted handler does
    sent = [c.args[0] for c in proto.transport.write.call_args_list]
    assert sum(b"Action: Hangup" in s for s in sent) == 2

    drop = asyncio.Event()

    def script(action):
        drop.set()
        return b""
    async with our_client(script) as (client, record):
        task = asyncio.create_task(client.send("Hangup", {"Channel": "PJSIP/agent1-00000001"}, shape="single",
                                               timeout=5))
        await drop.wait()
        record["writers"][0].close()
        with pytest.raises(AmiDisconnected):
            await task
        await client.wait_connected(2.0)
        assert [a["Action"] for a in record["received"]].count("Hangup") == 1


async def test_action_with_part_of_its_reply_is_dropped_unresolved():
    """Defect: on disconnect, an action that got part of its reply is dropped, its future never resolved."""
    manager = Manager(loop=mock.MagicMock())
    proto, _ = pano_protocol(factory=manager)
    fut = proto.send({"Action": "CoreShowChannels"}, as_list=True)
    action_id = next(iter(proto.responses))
    proto.data_received(wire({"Response": "Success", "ActionID": action_id, "EventList": "start"}))
    proto.close()
    assert not fut.done() and not proto.responses and not manager.awaiting_actions

    def script(action):
        return wire({"Response": "Success", "ActionID": action["ActionID"], "EventList": "start"})
    async with our_client(script) as (client, record):
        task = asyncio.create_task(client.send("CoreShowChannels", shape="list", timeout=5))
        while client.pending_actions == 0 or len(record["received"]) < 2:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        record["writers"][0].close()
        with pytest.raises(AmiDisconnected):
            await task


async def test_fixed_reconnect_delay_without_backoff():
    """Defect: reconnect retries every 2 s, no backoff, no jitter."""
    loop = mock.MagicMock()
    manager = Manager(loop=loop)
    for _ in range(3):
        manager.connection_lost(None)
    delays = [c.args[0] for c in loop.call_later.call_args_list]
    assert delays == [2, 2, 2]

    accepted: list[float] = []

    async def hang_up(reader, writer):
        accepted.append(time.monotonic())
        writer.close()
    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    client = AmiClient("127.0.0.1", server.sockets[0].getsockname()[1], "cti", SECRET,
                       reconnect_min=0.04, reconnect_max=1.0, action_timeout=0.5)
    await client.start()
    try:
        while len(accepted) < 4:
            await asyncio.sleep(0.01)
    finally:
        await client.stop()
        server.close()
        await server.wait_closed()
    gaps = [b - a for a, b in zip(accepted, accepted[1:], strict=False)]
    assert gaps[2] > gaps[0]  # 0.02-0.04, then 0.04-0.08, then 0.08-0.16


async def test_keepalive_reply_never_checked():
    """Defect: the keepalive Ping's reply is never checked, so half-open TCP goes unnoticed."""
    loop = mock.MagicMock()
    manager = Manager(loop=loop)
    proto, _ = pano_protocol(factory=manager)
    manager.protocol = proto
    for _ in range(3):
        manager.ping()  # three pings, none answered
    assert len(proto.responses) == 3
    proto.transport.close.assert_not_called()

    pings: list[int] = []

    def script(action):
        pings.append(1)
        return b""  # silent, like a half-open peer
    async with our_client(script, ping_interval=0.05, action_timeout=0.05) as (client, record):
        while len(record["accepted"]) < 2:
            await asyncio.sleep(0.01)
        assert client.health.last_error == "keepalive timeout"


async def test_failed_login_raises_nothing():
    """Defect: a refused login raises nothing; the manager just stays unauthenticated."""
    manager = Manager(loop=mock.MagicMock())
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(Message({"Response": "Error", "Message": "Authentication failed"}))
    assert manager.login(fut) is False  # no exception, nothing to wait on

    async with our_client(lambda a: b"", secret="wrong") as (client, _):
        with pytest.raises(AmiLoginFailed):
            await client.wait_connected(2.0)
        assert client.health.last_error == "login failed"


# --- handlers -------------------------------------------------------------------------

THREE_EVENTS = wire({"Event": "Newstate", "Seq": "1"}, {"Event": "Newstate", "Seq": "2"},
                    {"Event": "Hangup", "Seq": "3"})


async def test_raising_handler_loses_the_rest_of_the_chunk():
    """Defect: a handler's exception escapes data_received; the rest of the chunk is lost
    (and asyncio closes the connection)."""
    manager = Manager(loop=mock.MagicMock())
    seen: list[str] = []

    def fragile(mgr, event):
        seen.append(event["Seq"])
        raise RuntimeError("handler bug")
    manager.register_event("*", fragile)
    proto, _ = pano_protocol(factory=manager)
    with pytest.raises(RuntimeError):
        proto.data_received(THREE_EVENTS)
    assert seen == ["1"]

    def script(action):
        return reply(action) + THREE_EVENTS
    async with our_client(script) as (client, _):
        ours: list[str] = []

        def fragile_ours(frame):
            ours.append(frame["Seq"])
            raise RuntimeError("handler bug")
        client.add_listener(fragile_ours)
        await client.send("Ping", shape="single")
        while len(ours) < 3:
            await asyncio.sleep(0.005)
        assert ours == ["1", "2", "3"]
        assert client.health.handler_errors == 3
        assert client.connected


async def test_coroutine_handlers_become_loose_tasks():
    """Defect: a coroutine handler becomes an unreferenced task, run after later events."""
    manager = Manager(loop=asyncio.get_running_loop())
    order: list[str] = []

    async def async_handler(mgr, event):
        order.append(f"async {event['Seq']}")

    def sync_handler(mgr, event):
        order.append(f"sync {event['Seq']}")
    manager.register_event("Newstate", async_handler)
    manager.register_event("Newst*", sync_handler)
    proto, _ = pano_protocol(factory=manager)
    proto.data_received(THREE_EVENTS)
    await asyncio.sleep(0.01)
    assert order == ["sync 1", "sync 2", "async 1", "async 2"]  # arrival order lost

    client = AmiClient("127.0.0.1", 1, "cti", SECRET)
    with pytest.raises(TypeError):
        client.add_listener(async_handler)  # type: ignore[arg-type]


async def test_on_login_must_be_a_plain_function():
    """Defect: on_login is called with call_soon: an async hook is created and never awaited."""
    ran: list[bool] = []

    async def on_login(mgr):
        ran.append(True)
    loop = asyncio.get_running_loop()
    manager = Manager(loop=loop, on_login=on_login)
    fut = loop.create_future()
    fut.set_result(Message({"Response": "Success", "Message": "Authentication accepted"}))
    with pytest.warns(RuntimeWarning, match="never awaited"):
        manager.login(fut)
        await asyncio.sleep(0.01)
        gc.collect()
    manager.pinger.cancel()
    assert ran == []

    hook_ran: list[bool] = []

    async def on_connected():
        hook_ran.append(True)
    async with our_client(lambda a: reply(a), on_connected=on_connected) as (client, _):
        assert hook_ran == [True]
        assert client.health.resyncs == 1
