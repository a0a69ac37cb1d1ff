#!/usr/bin/env python3
"""Capture real AMI transcripts from the sandbox as test fixtures.

Listens as the daemon's AMI user (same permissions and filters as production)
and records the raw byte stream while a second connection drives a scenario
of simulated calls. The files under tests/fixtures/ami/ come from here:

    scripts/asterisk-sandbox up
    .venv/bin/python scripts/capture-ami.py basic tests/fixtures/ami/basic.ami

Scenarios: basic, abandon, burst, resync, bridge, callback, hold, click (see SCENARIOS).
"""
from __future__ import annotations

import asyncio
import sys
import time


async def login(user: str, secret: str, events: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", 5038)
    writer.write(
        f"Action: Login\r\nActionID: login\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: {events}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def action(writer: asyncio.StreamWriter, name: str, **headers: str) -> None:
    # Keys padded with spaces repeat a header (e.g. several Variable lines).
    lines = [f"Action: {name}"] + [f"{k.strip()}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()


def originate(w, n: int, did: str, cid: str, patience: int):
    return action(
        w, "Originate", ActionID=f"orig-{n}", Channel=f"Local/p{patience}@cti-demo-caller/n",
        Context="cti-inbound", Exten=did, Priority="1", CallerID=cid, Async="true", Timeout="30000",
    )


async def basic(w, cw):
    await action(w, "Setvar", Variable="DEMO_TALK_MIN", Value="2")
    await action(w, "Setvar", Variable="DEMO_TALK_MAX", Value="2")
    await originate(w, 1, "5000", '"J\\"ürgen Müller" <+4930123456>', 60)
    await asyncio.sleep(7)


async def abandon(w, cw):
    # Agents take 10 s to answer; the caller gives up after 2 s.
    await action(w, "Setvar", Variable="DEMO_RING_MIN", Value="10")
    await action(w, "Setvar", Variable="DEMO_RING_MAX", Value="10")
    await originate(w, 1, "5000", '"Impatient" <5551234>', 2)
    await asyncio.sleep(5)
    await action(w, "Setvar", Variable="DEMO_RING_MIN", Value="1")
    await action(w, "Setvar", Variable="DEMO_RING_MAX", Value="2")


async def burst(w, cw):
    for n in range(8):
        await originate(w, n, "5000", f'"Caller {n}" <+3312345{n:03d}>', 30)
    await asyncio.sleep(16)


async def resync(w, cw):
    await action(w, "Setvar", Variable="DEMO_TALK_MIN", Value="5")
    await action(w, "Setvar", Variable="DEMO_TALK_MAX", Value="5")
    for n in range(7):  # more callers than the five agents: two wait in the queue
        await originate(w, n, "5000", f'"Resync {n}" <+4470000{n:03d}>', 30)
    await asyncio.sleep(3)
    # What the daemon asks for on (re)connect, on the listening connection.
    await action(cw, "CoreShowChannels", ActionID="resync-channels")
    await action(cw, "BridgeList", ActionID="resync-bridges")
    await action(cw, "QueueStatus", ActionID="resync-queues")
    await asyncio.sleep(14)


async def _bridged_pair(w, chunks, prefix: str, talk: int, caller: str, caller_id: str) -> tuple[str, str]:
    """Two separate calls (ids ``<prefix>A`` and ``<prefix>B``: a caller and demo
    agent 1 talking ``talk`` seconds), each answered with music, then joined with
    the Bridge action. Returns their channel names."""
    await action(w, "Setvar", Variable="DEMO_TALK_MIN", Value=str(talk))
    await action(w, "Setvar", Variable="DEMO_TALK_MAX", Value=str(talk))
    ids = (prefix + "A", prefix + "B")
    for cid, chan, name in ((ids[0], caller, caller_id), (ids[1], "Local/agent1@cti-demo-agents/n", '"Agent One" <1001>')):
        await action(w, "Originate", ActionID=f"orig-{cid}", Channel=chan, Context="cti-demo-hold",
                     Exten="s", Priority="1", CallerID=name, ChannelId=cid, OtherChannelId=cid + "-2",
                     Async="true")
        await asyncio.sleep(0.3)
    await asyncio.sleep(3)
    names = _channel_names(chunks, ids)
    await action(w, "Bridge", ActionID="bridge-1", Channel1=names[ids[0]], Channel2=names[ids[1]], Tone="no")
    return names[ids[0]], names[ids[1]]


async def bridge(w, cw, chunks):
    # Two separate calls (own Linkedids), each answered and on hold, then joined
    # with the Bridge action: Asterisk gives both the older Linkedid.
    await _bridged_pair(w, chunks, "cap", 6, "Local/p12@cti-demo-caller/n",
                        '"Bridged Caller" <+4940111222>')
    await asyncio.sleep(9)


async def callback(w, cw):
    # The dialplan's side of callbacks, without the daemon: a caller asks to be
    # called back (context cti-callback, its wait begun 30 s earlier), then
    # three agent legs as the daemon originates them: one answered and the
    # customer answers, one the agent never answers, one whose customer never
    # answers.
    now = int(time.time())
    # Stand in for a daemon leading with epoch 1 (docs/ha.md): raise the epoch, beat for it.
    await action(w, "Originate", ActionID="epoch", Channel="Local/raise@cti-acd-epoch/n", Application="Hangup",
                 Async="true", Variable="CTI_NEW_EPOCH=1")
    await action(w, "Setvar", Variable="CTI_ACD_HEARTBEAT_1", Value=str(now))
    await asyncio.sleep(0.5)
    await action(w, "Setvar", Variable="DEMO_TALK_MIN", Value="2")
    await action(w, "Setvar", Variable="DEMO_TALK_MAX", Value="2")
    await action(w, "Originate", ActionID="orig-req", Channel="Local/p10@cti-demo-caller/n", Context="cti-callback",
                 Exten="s", Priority="1", CallerID='"Callback Caller" <+442071000001>', ChannelId="capreq",
                 OtherChannelId="capreq-2", Async="true", Variable="CTI_QUEUE=care",
                 **{"Variable ": f"CTI_WAIT_START={now - 30}"})
    await asyncio.sleep(4)
    legs = (("capreq-cb1", "Local/agent1@cti-demo-agents/n", "+442071000001", "20000"),
            ("capreq-cb2", "Local/noanswer1@cti-demo-agents/n", "+442071000001", "2000"),
            ("capreq-cb3", "Local/agent2@cti-demo-agents/n", "+9990001234", "20000"))
    for leg, device, number, timeout in legs:
        await action(w, "Originate", ActionID=f"orig-{leg}", Channel=device, Context="cti-acd-callback", Exten="s",
                     Priority="1", Timeout=timeout, Async="true", CallerID=f'"Callback" <{number}>', ChannelId=leg,
                     OtherChannelId=leg + "-2", Variable="CTI_CALLBACK=capreq",
                     **{"Variable ": "CTI_AGENT=c1", "Variable  ": f"CTI_CALLBACK_DIAL=Local/{number}@cti-demo-callee/n",
                        "Variable   ": "CTI_CALLBACK_RING=3"})
    await asyncio.sleep(12)
    await action(w, "Setvar", Variable="CTI_ACD_HEARTBEAT_1", Value="0")


async def hold(w, cw, chunks):
    # The daemon's hold and resume (cti/control.py) on a bridged pair: both legs
    # are redirected into cti-hold's holding bridge (music for the caller), then
    # joined again with the Bridge action.
    caller, agent = await _bridged_pair(w, chunks, "hold", 12, "Local/p16@cti-demo-caller/n",
                                        '"Held Caller" <+4940333444>')
    await asyncio.sleep(2)
    for chan in (caller, agent):
        await action(w, "Setvar", Channel=chan, Variable="CTI_HOLD", Value="holdA")
    await action(w, "Redirect", ActionID="hold-1", Channel=caller, Context="cti-hold", Exten="caller", Priority="1",
                 ExtraChannel=agent, ExtraContext="cti-hold", ExtraExten="agent", ExtraPriority="1")
    await asyncio.sleep(3)
    await action(w, "Bridge", ActionID="resume-1", Channel1=caller, Channel2=agent, Tone="no")
    await asyncio.sleep(9)


async def click(w, cw):
    # Click-to-dial as cti/control.py sends it: the agent's device first, into
    # cti-click-to-dial, which dials the customer (a demo callee that answers).
    await action(w, "Setvar", Variable="DEMO_TALK_MIN", Value="3")
    await action(w, "Setvar", Variable="DEMO_TALK_MAX", Value="3")
    await action(w, "Originate", ActionID="orig-click", Channel="Local/agent1@cti-demo-agents/n",
                 Context="cti-click-to-dial", Exten="s", Priority="1", Timeout="20000", Async="true",
                 CallerID='"+4930555666" <+4930555666>', ChannelId="click1", OtherChannelId="click1-2",
                 Variable="CTI_AGENT=a1", **{"Variable ": "CTI_DIAL=Local/+4930555666@cti-demo-callee/n",
                                             "Variable  ": "CTI_DIAL_RING=20",
                                             "Variable   ": "CTI_DIAL_CID=Support <+4930000000>",
                                             "Variable    ": "CTI_DIAL_NUM=+4930555666"})
    await asyncio.sleep(10)


def _channel_names(chunks, ids) -> dict[str, str]:
    text = b"".join(chunks).decode("utf-8", "replace")
    names = {}
    for block in text.replace("\r\n", "\n").split("\n\n"):
        h = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if h.get("Event") == "Newchannel" and h.get("Uniqueid") in ids:
            names[h["Uniqueid"]] = h["Channel"]
    return names


SCENARIOS = {"callback": callback, "basic": basic, "abandon": abandon, "burst": burst, "resync": resync, "bridge": bridge, "hold": hold, "click": click}


async def main(scenario: str, out: str) -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from cti import sandbox  # the secrets scripts/asterisk-sandbox made

    creader, cwriter = await login("cti", sandbox.secret(sandbox.DAEMON), "on")
    _, dwriter = await login("cti-demo", sandbox.secret(sandbox.DEMO), "off")
    chunks: list[bytes] = []
    stop = asyncio.Event()

    async def pump() -> None:
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(creader.read(65536), 0.2)
            except asyncio.TimeoutError:
                continue
            if not data:
                return
            chunks.append(data)

    task = asyncio.create_task(pump())
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    if scenario in ("bridge", "hold"):
        await SCENARIOS[scenario](dwriter, cwriter, chunks)
    else:
        await SCENARIOS[scenario](dwriter, cwriter)
    await asyncio.sleep(1)
    stop.set()
    await task
    with open(out, "wb") as fh:
        fh.write(b"".join(chunks))
    print(f"{scenario}: {sum(map(len, chunks))} bytes in {time.monotonic() - t0:.1f}s -> {out}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
