"""The asyncio AMI client against a scripted AMI peer on a real loopback socket."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from cti.ami import AmiClient
from cti.ami_types import Reply
from cti.amiproto import Frame
from tests.fakeami import SECRET, FakeAmi, event, frame
from cti.errors import (
    AmiActionFailed,
    AmiDisconnected,
    AmiLoginFailed,
    AmiNotConnected,
    AmiTimeout,
    UnsafeValue,
)

@pytest.fixture
async def ami():
    server = FakeAmi()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_client(ami):
    clients: list[AmiClient] = []

    def make(**overrides) -> AmiClient:
        params = dict(action_timeout=0.5, ping_interval=60.0, reconnect_min=0.02,
                      reconnect_max=0.2, connect_timeout=1.0)
        params.update(overrides)
        secret = params.pop("secret", SECRET)
        client = AmiClient("127.0.0.1", ami.port, "cti", secret, **params)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


async def started(client: AmiClient, timeout: float = 2.0) -> AmiClient:
    await client.start()
    await client.wait_connected(timeout)
    return client


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


# --- login ------------------------------------------------------------------

async def test_login_succeeds_with_events_on_and_health_reports_it(ami, make_client):
    client = await started(make_client())
    (_, login), = ami.actions("Login")
    assert login["Username"] == "cti" and login["Events"] == "on"
    health = client.health
    assert health.connected and health.logged_in
    assert health.asterisk_version == "11.0.0"
    assert health.reconnects == 0
    assert client.connected


async def test_failed_login_raises_from_wait_connected_and_retries_with_backoff(ami, make_client):
    client = make_client(secret="wrong", reconnect_min=0.05, reconnect_max=1.0)
    with capture_logs() as logs:
        await client.start()
        with pytest.raises(AmiLoginFailed):
            await client.wait_connected(2.0)
        await asyncio.sleep(0.5)
    assert client.health.last_error == "login failed"
    assert not client.health.logged_in
    # A wrong password must not spin: backoff 0.05, 0.1, 0.2, 0.4 s (with jitter).
    attempts = len(ami.actions("Login"))
    assert 2 <= attempts <= 6
    assert any(e["event"] == "ami login failed" and e["log_level"] == "error" for e in logs)


async def test_wait_connected_times_out_with_not_connected(make_client, ami):
    ami.on_accept = lambda peer: False  # accepts and hangs up
    client = make_client()
    await client.start()
    with pytest.raises(AmiNotConnected):
        await client.wait_connected(0.2)


async def test_send_without_connection_raises_at_once(make_client):
    client = make_client()
    with pytest.raises(AmiNotConnected):
        await client.send("Ping", shape="single")


def test_client_can_be_built_outside_a_running_loop():
    client = AmiClient("127.0.0.1", 5038, "cti", SECRET)
    assert not client.connected
    assert client.health.connected is False


# --- actions -----------------------------------------------------------------

async def test_single_action_returns_its_response(ami, make_client):
    async def queue_add(peer, action):
        peer.send(frame(("Response", "Success"), ("ActionID", action["ActionID"]),
                        ("Message", "Added interface to queue")))
    ami.handlers["QueueAdd"] = queue_add
    client = await started(make_client())
    reply = await client.send("QueueAdd", {"Queue": "sales", "Interface": "PJSIP/agent1"}, shape="single")
    assert isinstance(reply, Reply)
    assert reply.response["Message"] == "Added interface to queue"
    assert reply.events == ()
    assert client.pending_actions == 0


async def test_list_action_collects_its_events_until_complete(ami, make_client):
    async def core_show_channels(peer, action):
        aid = action["ActionID"]
        peer.send(
            frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start"),
                  ("Message", "Channels will follow")),
            event("CoreShowChannel", ActionID=aid, Uniqueid="1.1"),
            event("Newstate", Uniqueid="9.9"),  # a live event in the middle of the list
            event("CoreShowChannel", ActionID=aid, Uniqueid="1.2"),
            event("CoreShowChannelsComplete", ActionID=aid, EventList="Complete", ListItems="2"),
        )
    ami.handlers["CoreShowChannels"] = core_show_channels
    client = await started(make_client())
    live: list[Frame] = []
    client.add_listener(live.append)
    reply = await client.send("CoreShowChannels", shape="list")
    assert reply.response["EventList"] == "start"
    assert [(e.name, e.get("Uniqueid")) for e in reply.events] == [
        ("CoreShowChannel", "1.1"), ("CoreShowChannel", "1.2"), ("CoreShowChannelsComplete", None),
    ]
    assert [e.name for e in live] == ["Newstate"]


async def test_list_cancelled_by_asterisk_raises_action_failed(ami, make_client):
    async def queue_status(peer, action):
        aid = action["ActionID"]
        peer.send(
            frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start")),
            event("QueueMember", ActionID=aid),
            event("QueueStatusComplete", ActionID=aid, EventList="cancelled"),
        )
    ami.handlers["QueueStatus"] = queue_status
    client = await started(make_client())
    with pytest.raises(AmiActionFailed, match="cancelled"):
        await client.send("QueueStatus", shape="list")
    assert client.pending_actions == 0


async def test_error_response_ends_a_list_at_once(ami, make_client):
    async def denied(peer, action):
        peer.send(frame(("Response", "Error"), ("ActionID", action["ActionID"]),
                        ("Message", "Permission denied")))
    ami.handlers["CoreShowChannels"] = denied
    client = await started(make_client())
    with pytest.raises(AmiActionFailed) as err:
        await client.send("CoreShowChannels", shape="list", timeout=5)
    assert err.value.action == "CoreShowChannels"
    assert err.value.message == "Permission denied"


async def test_error_response_to_a_single_action_raises_action_failed(ami, make_client):
    async def no_such_channel(peer, action):
        peer.send(frame(("Response", "Error"), ("ActionID", action["ActionID"]),
                        ("Message", "No such channel")))
    ami.handlers["Hangup"] = no_such_channel
    client = await started(make_client())
    with pytest.raises(AmiActionFailed, match="No such channel"):
        await client.send("Hangup", {"Channel": "PJSIP/x"}, shape="single")


async def test_shape_is_required_and_checked(make_client, ami):
    client = await started(make_client())
    with pytest.raises(TypeError):
        await client.send("Ping")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        await client.send("Ping", shape="maybe")  # type: ignore[arg-type]


async def test_unsafe_value_is_refused_before_anything_is_sent(ami, make_client):
    client = await started(make_client())
    with pytest.raises(UnsafeValue):
        await client.send("Redirect", {"Exten": "100\r\n\r\nAction: Originate"}, shape="single")
    assert ami.actions("Redirect") == [] and ami.actions("Originate") == []


async def test_timeout_raises_and_removes_the_pending_entry(ami, make_client):
    async def never(peer, action):
        pass
    ami.handlers["Slow"] = never
    client = await started(make_client())
    started_at = time.monotonic()
    with pytest.raises(AmiTimeout):
        await client.send("Slow", shape="single", timeout=0.1)
    assert time.monotonic() - started_at < 0.5
    assert client.pending_actions == 0
    # The connection is still usable.
    assert (await client.send("Ping", shape="single")).response["Ping"] == "Pong"


async def test_cancelled_send_removes_the_pending_entry(ami, make_client):
    async def never(peer, action):
        pass
    ami.handlers["Slow"] = never
    client = await started(make_client())
    task = asyncio.create_task(client.send("Slow", shape="list"))
    await eventually(lambda: client.pending_actions == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.pending_actions == 0


async def test_submit_writes_before_returning_in_the_order_submitted(ami, make_client):
    client = await started(make_client())
    transport = client._conn.transport
    written: list[bytes] = []
    real_write = transport.write
    transport.write = lambda data: (written.append(data), real_write(data))[1]
    setvar = client.submit("Setvar", {"Channel": "Local/x;1", "Variable": "CTI_OFFER", "Value": "a1"},
                           shape="single")
    redirect = client.submit("Redirect", {"Channel": "Local/x;1", "Context": "cti-acd-offer", "Exten": "s",
                                          "Priority": "1"}, shape="single")
    # Both are on the wire before the caller has given the loop a single turn.
    assert [w.split(b"\r\n", 1)[0] for w in written] == [b"Action: Setvar", b"Action: Redirect"]
    await asyncio.gather(setvar, redirect)
    assert [a["Action"] for _, a in ami.received if a["Action"] in ("Setvar", "Redirect")] == ["Setvar", "Redirect"]
    assert client.pending_actions == 0


async def test_a_submitted_action_times_out_as_its_future_and_leaves_no_entry(ami, make_client):
    async def never(peer, action):
        pass
    ami.handlers["Slow"] = never
    client = await started(make_client())
    fut = client.submit("Slow", shape="single", timeout=0.1)
    with pytest.raises(AmiTimeout):
        await fut
    assert client.pending_actions == 0


async def test_late_response_after_timeout_is_dropped_quietly(ami, make_client):
    async def late(peer, action):
        await asyncio.sleep(0.15)
        peer.send(frame(("Response", "Success"), ("ActionID", action["ActionID"])))
    ami.handlers["Slow"] = late
    client = await started(make_client())
    seen: list[Frame] = []
    client.add_listener(seen.append)
    with pytest.raises(AmiTimeout):
        await client.send("Slow", shape="single", timeout=0.05)
    await asyncio.sleep(0.2)
    assert seen == []
    assert client.connected


# --- disconnects and reconnects ---------------------------------------------------

async def test_disconnect_mid_action_raises_and_the_action_is_never_replayed(ami, make_client):
    async def hang_up_on_us(peer, action):
        if peer.number == 1:
            peer.close()
        else:
            peer.send(frame(("Response", "Success"), ("ActionID", action["ActionID"])))
    ami.handlers["Hangup"] = hang_up_on_us
    client = await started(make_client())
    with pytest.raises(AmiDisconnected):
        await client.send("Hangup", {"Channel": "PJSIP/agent1-00000001"}, shape="single", timeout=5)
    await client.wait_connected(2.0)
    assert len(ami.peers) == 2
    assert [n for n, _ in ami.actions("Hangup")] == [1]
    assert [a["Action"] for n, a in ami.received if n == 2] == ["Login"]


async def test_disconnect_after_part_of_a_list_raises_at_once(ami, make_client):
    async def half_a_list(peer, action):
        aid = action["ActionID"]
        peer.send(frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start")),
                  event("CoreShowChannel", ActionID=aid))
        await asyncio.sleep(0.05)
        peer.close()
    ami.handlers["CoreShowChannels"] = half_a_list
    client = await started(make_client())
    started_at = time.monotonic()
    with pytest.raises(AmiDisconnected):
        await client.send("CoreShowChannels", shape="list", timeout=5)
    assert time.monotonic() - started_at < 1
    assert client.pending_actions == 0


async def test_reconnects_after_the_server_closes(ami, make_client):
    client = await started(make_client())
    ami.peers[0].close()
    await eventually(lambda: len(ami.peers) == 2 and client.connected)
    assert client.health.reconnects == 1
    assert client.health.last_error == "connection lost"
    assert (await client.send("Ping", shape="single")).response["Ping"] == "Pong"


async def test_reconnect_delays_grow_while_the_server_keeps_failing(ami, make_client):
    # Accept and hang up at once for the first 5 connections, then behave.
    ami.on_accept = lambda peer: peer.number > 5
    client = make_client(reconnect_min=0.05, reconnect_max=0.4)
    await client.start()
    await client.wait_connected(3.0)
    gaps = [b - a for a, b in zip(ami.accepted_at, ami.accepted_at[1:], strict=False)]
    assert len(gaps) == 5
    # base 0.05, 0.1, 0.2, 0.4, 0.4 with jitter in [base/2, base]; sleeps never
    # end early, so the lower bounds are exact and the growth is visible.
    assert all(g >= 0.025 for g in gaps)
    assert gaps[3] >= 0.2 and gaps[4] >= 0.2
    assert gaps[0] < gaps[3]


async def test_connect_refused_is_retried(make_client, ami):
    port = ami.port
    ami.server.close()
    await ami.server.wait_closed()
    client = make_client()
    await client.start()
    await asyncio.sleep(0.15)
    assert client.health.last_error is not None
    assert client.health.last_error.startswith("connect failed")
    # The server comes back on the same port.
    ami.server = await asyncio.start_server(ami._accept, "127.0.0.1", port)
    await client.wait_connected(2.0)


async def test_keepalive_drops_a_silent_connection_and_reconnects(ami, make_client):
    ami.answer_pings = lambda peer: peer.number != 1  # the first connection goes half-open
    client = make_client(ping_interval=0.1, action_timeout=0.1)
    with capture_logs() as logs:
        await started(client)
        await eventually(lambda: len(ami.peers) == 2 and client.connected, timeout=3)
        await eventually(lambda: len(ami.actions("Ping")) >= 3, timeout=3)
    assert any(e["event"] == "ami ping unanswered; dropping the connection" for e in logs)
    assert client.health.reconnects == 1
    assert len(ami.peers) == 2  # the second connection answers pings and stays


async def test_stop_fails_pending_actions_and_leaves_no_task(ami, make_client):
    async def never(peer, action):
        pass
    ami.handlers["Slow"] = never
    client = await started(make_client())
    before = asyncio.all_tasks()
    task = asyncio.create_task(client.send("Slow", shape="single", timeout=5))
    await eventually(lambda: client.pending_actions == 1)
    await client.stop()
    with pytest.raises(AmiDisconnected):
        await task
    assert not client.connected and not client.health.connected
    leftovers = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert all("ami" not in t.get_name() for t in leftovers)
    assert client._supervisor is None


# --- listeners ---------------------------------------------------------------------

async def test_listeners_get_events_in_order_and_not_responses(ami, make_client):
    ami.on_login = lambda peer: peer.send(*(event("Newstate", Seq=str(i)) for i in range(20)))
    client = make_client()
    seen: list[Frame] = []
    client.add_listener(seen.append)
    await started(client)
    await eventually(lambda: len(seen) == 20)
    assert [f["Seq"] for f in seen] == [str(i) for i in range(20)]
    assert all(f.is_event for f in seen)
    assert client.health.events_received >= 20
    assert client.health.last_event_at is not None


async def test_a_raising_listener_loses_nothing_later_in_the_same_chunk(ami, make_client):
    seen: list[str] = []
    other: list[str] = []

    def fragile(f: Frame) -> None:
        seen.append(f["Seq"])
        if f["Seq"] == "1":
            raise RuntimeError("listener bug")

    ami.on_login = lambda peer: peer.send(event("Newstate", Seq="1"), event("Newstate", Seq="2"),
                                         event("Hangup", Seq="3"))
    client = make_client()
    client.add_listener(fragile)
    client.add_listener(lambda f: other.append(f["Seq"]))
    with capture_logs() as logs:
        await started(client)
        await eventually(lambda: len(other) == 3)
    assert seen == ["1", "2", "3"] and other == ["1", "2", "3"]
    assert client.health.handler_errors == 1
    failure, = [e for e in logs if e["event"] == "ami listener failed"]
    assert failure["ami_event"] == "Newstate" and failure["log_level"] == "error"
    assert client.connected and len(ami.peers) == 1


async def test_coroutine_listeners_are_refused(make_client):
    client = make_client()

    async def handler(frame: Frame) -> None:
        pass

    with pytest.raises(TypeError):
        client.add_listener(handler)  # type: ignore[arg-type]


async def test_remove_listener(ami, make_client):
    client = await started(make_client())
    seen: list[Frame] = []
    client.add_listener(seen.append)
    client.remove_listener(seen.append)
    ami.peers[0].send(event("Newstate"))
    await client.send("Ping", shape="single")
    assert seen == []


async def test_originate_response_after_a_single_response_reaches_listeners(ami, make_client):
    async def originate(peer, action):
        aid = action["ActionID"]
        peer.send(frame(("Response", "Success"), ("ActionID", aid),
                        ("Message", "Originate successfully queued")))
        await asyncio.sleep(0.05)
        peer.send(event("OriginateResponse", ActionID=aid, Response="Success", Reason="4",
                        Uniqueid="cti-1.0", CallerIDName='J"ürgen'))
    ami.handlers["Originate"] = originate
    client = await started(make_client())
    seen: list[Frame] = []
    client.add_listener(seen.append)
    reply = await client.send("Originate", {"Channel": "Local/p60@demo", "Async": "true"}, shape="single")
    assert reply.response["Message"] == "Originate successfully queued"
    await eventually(lambda: len(seen) == 1)
    assert seen[0].name == "OriginateResponse"
    assert seen[0].action_id == reply.response.action_id
    assert seen[0]["CallerIDName"] == 'J"ürgen'


async def test_originate_response_arriving_before_the_response_still_reaches_listeners(ami, make_client):
    async def originate(peer, action):
        aid = action["ActionID"]
        peer.send(event("OriginateResponse", ActionID=aid, Response="Failure", Reason="0"),
                  frame(("Response", "Success"), ("ActionID", aid),
                        ("Message", "Originate successfully queued")))
    ami.handlers["Originate"] = originate
    client = await started(make_client())
    seen: list[Frame] = []
    client.add_listener(seen.append)
    reply = await client.send("Originate", {"Channel": "PJSIP/nowhere", "Async": "true"}, shape="single")
    assert reply.response["Message"] == "Originate successfully queued"
    assert [f.name for f in seen] == ["OriginateResponse"]


# --- on_connected hook ----------------------------------------------------------------

async def test_events_during_the_hook_are_delivered_after_it_in_order(ami, make_client):
    log: list[str] = []

    async def core_show_channels(peer, action):
        aid = action["ActionID"]
        peer.send(event("Newstate", Seq="during-1"),
                  frame(("Response", "Success"), ("ActionID", aid), ("EventList", "start")),
                  event("CoreShowChannel", ActionID=aid, Uniqueid="1.1"),
                  event("Newstate", Seq="during-2"),
                  event("CoreShowChannelsComplete", ActionID=aid, EventList="Complete", ListItems="1"))
        await asyncio.sleep(0.05)
        peer.send(event("Newstate", Seq="during-3"))

    async def resync() -> None:
        reply = await client.send("CoreShowChannels", shape="list")
        log.append(f"resync saw {len(reply.events) - 1} channel")
        await asyncio.sleep(0.15)  # live events keep coming meanwhile
        log.append("resync done")

    ami.handlers["CoreShowChannels"] = core_show_channels
    ami.on_login = lambda peer: peer.send(event("FullyBooted", Seq="at-login"))
    client = make_client()
    client.add_listener(lambda f: log.append(f"event {f['Seq']}"))
    client.set_on_connected(resync)
    await started(client)
    ami.peers[0].send(event("Newstate", Seq="live"))
    await eventually(lambda: log[-1] == "event live")
    assert log == [
        "resync saw 1 channel", "resync done",
        "event at-login", "event during-1", "event during-2", "event during-3", "event live",
    ]
    assert client.health.resyncs == 1


async def test_hook_runs_after_every_login(ami, make_client):
    calls: list[int] = []

    async def hook() -> None:
        calls.append(len(ami.peers))

    client = make_client()
    client.set_on_connected(hook)
    await started(client)
    ami.peers[0].close()
    await eventually(lambda: len(calls) == 2 and client.connected)
    assert calls == [1, 2]
    assert client.health.resyncs == 2


async def test_a_failing_hook_drops_the_connection_and_reconnects(ami, make_client):
    attempts: list[int] = []

    async def hook() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("resync bug")

    client = make_client()
    client.set_on_connected(hook)
    with capture_logs() as logs:
        await started(client)
    assert len(attempts) == 2 and len(ami.peers) == 2
    assert client.health.resyncs == 1
    assert any(e["event"] == "ami on_connected hook failed; dropping the connection" for e in logs)


async def test_a_hook_that_overruns_its_bound_drops_the_connection(ami, make_client):
    attempts: list[int] = []

    async def hook() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(10)

    client = make_client(on_connected_timeout=0.1)
    client.set_on_connected(hook)
    await started(client)
    assert len(ami.peers) == 2


async def test_plain_function_hook_is_refused(make_client):
    with pytest.raises(TypeError):
        make_client().set_on_connected(lambda: None)  # type: ignore[arg-type]


async def test_a_full_event_buffer_drops_the_connection_for_a_fresh_resync(ami, make_client):
    async def hook() -> None:
        await asyncio.sleep(0.1)

    ami.on_login = lambda peer: peer.send(*(event("Newstate", Seq=str(i)) for i in range(5))) \
        if peer.number == 1 else None
    client = make_client(max_buffered_events=3)
    client.set_on_connected(hook)
    seen: list[Frame] = []
    client.add_listener(seen.append)
    with capture_logs() as logs:
        await started(client)
    assert len(ami.peers) == 2
    assert seen == []  # nothing from the dropped connection was half-delivered
    assert any(e["event"].startswith("ami event buffer full") and e["log_level"] == "error" for e in logs)


# --- secrecy -------------------------------------------------------------------------

async def test_the_secret_never_appears_in_logs_repr_or_health(ami, make_client):
    bad = make_client(secret=SECRET + "-wrong")
    good = make_client()

    async def hook() -> None:
        raise RuntimeError("boom")

    good.set_on_connected(hook)
    good.add_listener(lambda f: 1 / 0)
    ami.on_login = lambda peer: peer.send(event("Newstate"))
    with capture_logs() as logs:
        await bad.start()
        with pytest.raises(AmiLoginFailed):
            await bad.wait_connected(1.0)
        await good.start()
        await asyncio.sleep(0.2)
        good.set_on_connected(None)
        await good.wait_connected(2.0)
    text = repr(logs) + repr(bad) + repr(good) + repr(bad.health) + repr(good.health)
    assert logs and "ami login failed" in text
    assert SECRET not in text
    assert any(a.get("Secret") == SECRET for _, a in ami.actions("Login"))  # it did go on the wire


async def test_an_unsafe_secret_is_refused_without_echoing_it(ami, make_client):
    client = make_client(secret="abc\r\nAction: Originate")
    with capture_logs() as logs:
        await client.start()
        await asyncio.sleep(0.1)
    assert ami.received == []
    assert "Secret" in (client.health.last_error or "")
    assert "abc" not in repr(logs) + repr(client.health)
