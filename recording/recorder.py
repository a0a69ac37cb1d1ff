"""Recording's asyncio shell: call events in, recording requests out, metadata to PostgreSQL.

The thin loop: a bus event (``call.connected``) -> the policy
(``recording.policy.decide``, pure) -> the dialplan starts ``MixMonitor`` on the
call's origin channel (the caller's, for inbound calls) -> a row in ``recordings``.

The daemon's AMI user has no right to send the AMI action ``MixMonitor`` (it
needs ``system``, which also runs shell commands): it sets ``CTI_REC_FILE`` and
``CTI_REC_SIDE`` on the bridged channel (Setvar) and plays the ``ctirecord``
feature code into it as if received (PlayDTMF with Receive); the bridge runs
``[cti-record]``, which filters the two values, starts MixMonitor and answers
with the UserEvent ``CtiRecording`` (``Status: started`` or ``refused``), which
the start waits for (bounded). Recordings at the caller's answer
(``start_at = "call_answer"``) are started by the dialplan itself, told what to
do by two globals the daemon sets after every AMI connect (``CTI_REC_AT_ANSWER``,
``CTI_REC_DIR``); their ``CtiRecording`` event makes the row.
Agents and supervisors send ``start``/``stop``/``pause``/``resume`` through
the API (``control``); each change is also put on the call's timeline as a
``recording.*`` event, so WebSocket clients and ``call_events`` see it.

Pausing is ``MixMonitorMute`` (both directions), not stop-and-start: Asterisk
keeps writing the file but with silence instead of the audio, so the file
stays one piece whose timeline is the call's (a pause at 0:42 is at 0:42 in
the file, and the stored offsets can be checked against it), and resuming
cannot fail to reopen a file. A stored pause runs from the moment Asterisk
confirmed the mute to the moment we asked it to unmute, so the stretch stored
is always inside the silent one. A pause that Asterisk refuses is reported to
the caller as an error and the recording stays in the state it was in.

When the call ends (or the recording is stopped), the file is finished:
Asterisk closes it when the channel goes; we wait (bounded) until the WAV
header holds its final length, then store size, duration and SHA-256.

The files are named by call id (``recording.policy.file_name``) inside
``recording_dir`` as Asterisk sees it; the daemon reads them from
``recording_read_dir`` (the same directory seen from the host). Paths are
never taken from a request: ``resolve`` turns a stored bare name into a path
inside the read directory or refuses.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable

import asyncpg
import structlog
from aiohttp import web

from cti.ami_inputs import RecordingReport
from cti.errors import AmiError
from cti.daemon import CoreServices
from cti.events import CallEvent
from recording import jobs
from recording import recording_db as rec_db
from recording.config import load_config
from recording.files import RecordingDirs, recording_dirs, resolve, sha256
from recording.rows import RecordingRow
from recording.policy import (
    Command,
    Recording,
    RecordingConfig,
    RecordingStateError,
    Sides,
    WavError,
    WavInfo,
    decide,
    RECORD_CODE,
    file_name,
    parse_wav_header,
    record_variables,
    sides_for,
)

log = structlog.get_logger(__name__)

FINISH_TIMEOUT = 15.0       # how long we wait for Asterisk to close a file after the call
DB_TIMEOUT = 5.0
SEGMENT_TIMEOUT = 1.0       # the segment look-up before a start (the start waits for it)
ACTION_TIMEOUT = 5.0
START_TIMEOUT = 5.0         # how long the dialplan may take to say it started a recording
BRIDGE_SETTLE = 0.1         # after a channel joins its bridge, before the feature code is played
PRESS_AGAIN = 0.5           # the feature code again when the dialplan has not answered by then


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class ControlError(Exception):
    """A control command that cannot be carried out: ``status`` and ``error_id`` for the API."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


@dataclass(slots=True)
class Active:
    """A recording running on a live call."""

    rec: Recording
    recording_id: int | None
    # The row as we know it, for the store's writer (``recording.rows``): None without a database.
    row: RecordingRow | None = None


@dataclass(slots=True)
class Live:
    """What we know of a live call that has (or may get) a recording."""

    call_id: str
    channel: str | None
    agent: str | None = None
    queue: str | None = None
    caller_num: str | None = None
    active: Active | None = None
    segments: int = 0
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class RecordingService:
    core: CoreServices
    config: RecordingConfig
    write_dir: str                               # as Asterisk sees it
    read_dir: Path                               # as we see it
    sweep_every: float = 0.0
    dirs: RecordingDirs | None = None            # several nodes: each one's (default: read_dir)
    calls: dict[str, Live] = field(default_factory=dict)
    started: int = 0
    finished: int = 0
    failures: int = 0
    deferred: int = 0        # starts whose row the database did not take at once (the writer has it)
    pool: asyncpg.Pool | None = None
    # Clear Asterisk's recording-at-answer global on stop (not after an HA step-down:
    # the next leader has set it).
    release_globals: bool = True
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _loose: set[asyncio.Future[Any]] = field(default_factory=set)    # timed-out queries, unwinding
    _jobs: asyncio.Task[None] | None = None
    _unsubscribe: Any = None
    _unsubscribe_reports: Any = None
    _starting: dict[str, asyncio.Future[str]] = field(default_factory=dict)   # path -> the dialplan's answer

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        try:
            self.read_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("recording directory not usable", read_dir=str(self.read_dir), error=str(exc))
        self.pool = self.core.db("recording")   # its share of the daemon's pool (none in unit tests)
        self._unsubscribe = self.core.bus.subscribe(self.on_call_event)
        self._unsubscribe_reports = self.core.bus.subscribe_to(RecordingReport, self.on_report)
        self.core.resync_hooks.append(self.on_resync)
        node_hooks = getattr(self.core, "node_hooks", None)
        if node_hooks is not None:
            node_hooks.append(self.on_node_resync)
        if self.core.ami.connected:  # the first resync ran before we were here
            await self.on_resync([])
        if self.sweep_every > 0 and self.pool is not None:
            self._jobs = asyncio.create_task(self._run_jobs(), name="recording-jobs")

    async def stop(self) -> None:
        for unsubscribe in (self._unsubscribe, self._unsubscribe_reports):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._unsubscribe_reports = None
        if self.on_resync in self.core.resync_hooks:
            self.core.resync_hooks.remove(self.on_resync)
        node_hooks = getattr(self.core, "node_hooks", None)
        if node_hooks is not None and self.on_node_resync in node_hooks:
            node_hooks.remove(self.on_node_resync)
        if self.release_globals and decide(self.config, None, "call_answer") is not None and self.core.ami.connected:
            # Nobody would keep the rows of recordings started at answer from now on.
            try:
                await self.core.ami.send("Setvar", {"Variable": "CTI_REC_AT_ANSWER", "Value": ""}, shape="single",
                                         timeout=ACTION_TIMEOUT)
            except AmiError as exc:
                log.warning("recording at answer not switched off", error=str(exc))
        if self._jobs is not None:
            self._jobs.cancel()
            await asyncio.gather(self._jobs, return_exceptions=True)
        # Files being finished get a moment to land in the database.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in list(self._loose):
            t.cancel()

    def health(self) -> dict[str, Any]:
        return {"live": sum(1 for c in self.calls.values() if c.active is not None), "started": self.started,
                "finished": self.finished, "failures": self.failures, "rows_deferred": self.deferred,
                "rows_pending": self.rows_pending()}

    def rows_pending(self) -> int:
        """Recording rows waiting in the store's writer (in flight included)."""
        writer = self.core.writer
        return writer.pending(RecordingRow.table) if writer is not None else 0

    # -- inputs --------------------------------------------------------------

    def on_call_event(self, ev: CallEvent) -> None:
        """Bus subscriber: start recordings by policy, finish them when calls end."""
        kind = ev.kind
        if kind == "call.connected":
            live = self._live(ev)
            agent = ev.data.get("agent")
            if isinstance(agent, str) and agent:
                live.agent = agent
                active = live.active
                if active is not None and active.recording_id is not None:
                    self._spawn(self._safe_db(rec_db.add_agent, active.recording_id, agent))
                if active is not None and active.row is not None:
                    # Kept in the row too: a row still waiting in the writer, or the finish, carries it.
                    active.row = active.row.with_agent(agent)
            # An agent found talking after a restart answered earlier: a recording the
            # policy wanted then is already running in Asterisk (MixMonitor outlives us).
            if not ev.data.get("estimated"):
                self._policy(live, "agent_answer")
        elif kind == "call.answered":
            self._live(ev)       # the dialplan starts a call_answer recording itself (on_report)
        elif kind == "call.ended":
            live = self.calls.pop(ev.call_id, None)
            if live is not None:
                live.ended = True
                self._spawn(self._end_call(live, ev.at))

    def on_report(self, r: RecordingReport) -> None:
        """Bus subscriber: the dialplan's ``CtiRecording`` answers (``cti.ami_inputs``)."""
        waiting = self._starting.get(r.file)
        if waiting is not None:
            if not waiting.done():
                waiting.set_result(r.status)
            return
        if r.status == "started" and r.reason == "answer":
            self._spawn(self._adopt_answer_recording(r.call_id, r.channel, r.file))

    async def on_resync(self, _items: list[Any]) -> None:
        """After every AMI (re)connect: tell the dialplan whether to record at the caller's answer."""
        await self._put_globals(self.core.ami)

    async def on_node_resync(self, node: str, ami: Any, _items: list[Any]) -> None:
        """Several Asterisk nodes: another node (re)connected: its dialplan is told too."""
        await self._put_globals(ami, node)

    async def _put_globals(self, ami: Any, node: str | None = None) -> None:
        sides = decide(self.config, None, "call_answer")
        side = record_variables("", sides)["CTI_REC_SIDE"] if sides is not None else ""
        try:
            for name, value in (("CTI_REC_DIR", self.write_dir), ("CTI_REC_AT_ANSWER", side)):
                await ami.send("Setvar", {"Variable": name, "Value": value}, shape="single",
                               timeout=ACTION_TIMEOUT)
        except AmiError as exc:
            log.warning("recording at answer not told to the dialplan", node=node, error=str(exc))

    async def _adopt_answer_recording(self, call_id: str, channel: str, path: str) -> None:
        """A recording the dialplan started at the caller's answer: its row and state."""
        name = path.rsplit("/", 1)[-1]
        if not call_id or name != file_name(call_id):
            log.warning("recording at answer not adopted", call_id=call_id, file=name)
            return
        live = self.calls.get(call_id)
        if live is None:
            call = self.core.model.calls.get(call_id)
            live = self.calls[call_id] = Live(call_id, self._origin_channel(call_id) or channel,
                                              queue=call.queue if call else None,
                                              caller_num=call.caller_num if call else None)
        async with live.lock:
            if live.active is not None or live.ended:
                return
            sides = decide(self.config, None, "call_answer") or sides_for(self.config, None)
            await self._started(live, 1, name, sides, "policy", "policy")

    def _live(self, ev: CallEvent) -> Live:
        live = self.calls.get(ev.call_id)
        if live is None:
            live = self.calls[ev.call_id] = Live(ev.call_id, self._origin_channel(ev.call_id))
        live.queue = ev.call.queue or live.queue
        live.caller_num = ev.call.caller_num or live.caller_num
        return live

    def _origin_channel(self, call_id: str) -> str | None:
        # The call model is updated before its events are published: read it now.
        call = self.core.model.calls.get(call_id)
        if call is None:
            return None
        leg = call.legs.get(call_id)
        return leg.channel if leg is not None else None

    def _policy(self, live: Live, trigger: str) -> None:
        if live.active is not None or live.segments:
            return
        sides = decide(self.config, live.queue, trigger)  # type: ignore[arg-type]
        if sides is not None:
            self._spawn(self._policy_start(live, sides))

    async def _policy_start(self, live: Live, sides: Sides) -> None:
        async with live.lock:
            if live.active is not None or live.ended:
                return
            try:
                await self._start(live, sides, "policy", "policy")
            except ControlError as exc:
                log.warning("recording not started", call_id=live.call_id, reason=exc.message)

    # -- control (the API) ---------------------------------------------------------

    async def control(self, call_id: str, command: str, by: str) -> Live:
        """Carry out ``start``, ``stop``, ``pause`` or ``resume`` on a live call.
        Returns the call's ``Live`` afterwards. Raises ``ControlError``."""
        live = self.calls.get(call_id)
        if live is None:
            live = self._adopt(call_id)
        async with live.lock:
            if live.ended:
                raise ControlError(404, "no_live_call", f"call {call_id!r} has ended")
            if command == "start":
                if live.active is not None:
                    raise ControlError(409, "recording_state", "the call is already being recorded")
                await self._start(live, sides_for(self.config, live.queue), "on_demand", by)
                return live
            if live.active is None:
                raise ControlError(409, "recording_state", f"cannot {command}: the call is not being recorded")
            await self._change(live, command, by)  # type: ignore[arg-type]
            return live

    def _adopt(self, call_id: str) -> Live:
        """A live call we hold nothing for yet (recorded on demand only)."""
        call = self.core.model.calls.get(call_id)
        if call is None:
            raise ControlError(404, "no_live_call", f"no live call {call_id!r}")
        live = self.calls[call_id] = Live(call_id, self._origin_channel(call_id), agent=call.agent,
                                          queue=call.queue, caller_num=call.caller_num)
        return live

    async def _start(self, live: Live, sides: Sides, reason: str, by: str) -> None:
        if live.channel is None:
            raise ControlError(409, "no_channel", "the call's channel is unknown (adopted after a restart?)")
        # The dialplan starts a recording through a bridge feature: the caller must be
        # in the bridge with the agent (a key played into the IVR would be taken as a
        # choice, and one played before the bridge is lost in the Dial).
        if not await self._bridged(live.call_id):
            raise ControlError(409, "not_connected", "a recording starts once the caller is connected to an agent")
        segment = live.segments + 1
        if self.pool is not None:
            # Bounded tighter than a write: the start waits for it, and a call's first
            # seconds go unrecorded while it does. Without an answer, the files on disk
            # say which segments a previous process made.
            try:
                segment = max(segment, await self._db(rec_db.next_segment, live.call_id, timeout=SEGMENT_TIMEOUT))
            except Exception as exc:
                log.warning("recording segment not read", error=str(exc) or type(exc).__name__)
                segment = await asyncio.to_thread(self._free_segment, live.call_id, segment)
        name = file_name(live.call_id, segment)
        await self._dialplan_start(live.channel, f"{self.write_dir}/{name}", sides, live.call_id)
        await self._started(live, segment, name, sides, reason, by)

    def _free_segment(self, call_id: str, segment: int) -> int:
        """The first segment from ``segment`` on whose file is not on disk (in a thread)."""
        while True:
            try:
                if not resolve(self.dirs or self.read_dir, file_name(call_id, segment)).exists():
                    return segment
            except (OSError, ValueError):
                return segment
            segment += 1

    async def _bridged(self, call_id: str) -> bool:
        """Whether the call's origin leg is (or, within ``START_TIMEOUT``, comes to be)
        bridged with another leg: right after an answer the bridge follows in milliseconds."""
        deadline = time.monotonic() + START_TIMEOUT
        waited = False
        while True:
            model = self.core.model
            call = model.calls.get(call_id)
            if call is None or call.agent is None:
                return False
            leg = call.legs.get(call_id)
            if leg is not None and leg.bridge is not None and len(model.bridges.get(leg.bridge, ())) >= 2:
                if waited:
                    # A key that reaches the channel in the instant it joins is not yet
                    # seen by the bridge's features (measured in the sandbox): let it settle.
                    await asyncio.sleep(BRIDGE_SETTLE)
                return True
            if time.monotonic() > deadline:
                return False
            waited = True
            await asyncio.sleep(0.05)

    async def _dialplan_start(self, channel: str, path: str, sides: Sides, call_id: str | None = None) -> None:
        """Have the dialplan start MixMonitor on ``channel`` into ``path``; wait for its answer.
        Raises ``ControlError`` (502) when Asterisk refuses or the dialplan does not answer."""
        waiting: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._starting[path] = waiting
        try:
            try:
                for name, value in record_variables(path, sides).items():
                    await self._ami("Setvar", {"Channel": channel, "Variable": name, "Value": value}, call_id)
            except AmiError as exc:
                self.failures += 1
                raise ControlError(502, "asterisk_refused", f"recording start failed: {exc}") from None
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    # A code the bridge did not take (it passed to the other party) is played
                    # again; a second one that comes through finds the variables cleared.
                    while True:
                        try:
                            for digit in RECORD_CODE:
                                await self._ami("PlayDTMF", {"Channel": channel, "Digit": digit,
                                                             "Receive": "true", "Duration": "80"}, call_id)
                        except AmiError as exc:
                            self.failures += 1
                            raise ControlError(502, "asterisk_refused", f"recording start failed: {exc}") from None
                        done, _ = await asyncio.wait([waiting], timeout=PRESS_AGAIN)
                        if done:
                            status = waiting.result()
                            break
            except TimeoutError:
                self.failures += 1
                # A start that comes later must find nothing to start.
                try:
                    await self._ami("Setvar", {"Channel": channel, "Variable": "CTI_REC_FILE", "Value": ""}, call_id)
                except (AmiError, ControlError):
                    pass
                raise ControlError(502, "asterisk_refused",
                                   "the dialplan did not start the recording (is the channel bridged, with "
                                   "DYNAMIC_FEATURES=ctirecord?)") from None
        finally:
            self._starting.pop(path, None)
        if status != "started":
            self.failures += 1
            raise ControlError(502, "asterisk_refused", f"the dialplan refused the recording ({status or 'no status'})")

    async def _started(self, live: Live, segment: int, name: str, sides: Sides, reason: str, by: str) -> None:
        """A recording is running in Asterisk: its row, its state, the call's timeline."""
        now = time.time()
        live.segments = segment
        rid = None
        row = None
        if self.pool is not None:
            row = RecordingRow(call_id=live.call_id, segment=segment, agent=live.agent,
                               agents=(live.agent,) if live.agent else (), queue=live.queue,
                               caller_num=live.caller_num, sides=sides, reason=reason, started_by=by,
                               file_name=name, started_at=_utc(now))
            try:
                # At once when the database answers in time: the id goes on the timeline and the API.
                rid = await self._db(rec_db.insert_recording, call_id=live.call_id, segment=segment,
                                     agent=live.agent, queue=live.queue, caller_num=live.caller_num, sides=sides,
                                     reason=reason, started_by=by, file_name=name, started_at=_utc(now))
            except Exception as exc:
                # Else the store's writer keeps the row until the database takes it (an
                # upsert by file name: an insert that did commit after all is not doubled).
                rid = None
                self.deferred += 1
                self._submit(row)
                log.warning("recording row deferred", file=name, error=str(exc) or type(exc).__name__)
        live.active = Active(Recording(live.call_id, name, sides, now), rid, row)
        self.started += 1
        log.info("recording started", file=name, sides=sides, reason=reason, by=by, recording_id=rid)
        self._annotate(live.call_id, "recording.started", recording_id=rid, file=name, sides=sides, reason=reason,
                       by=by)

    async def _change(self, live: Live, command: Command, by: str) -> None:
        active = live.active
        assert active is not None and live.channel is not None
        rec = active.rec
        try:
            rec.apply(command, time.time())     # refused before anything is sent
        except RecordingStateError as exc:
            raise ControlError(409, "recording_state", str(exc)) from None
        if command == "pause":
            await self._send_or_fail("MixMonitorMute", {"Channel": live.channel, "Direction": "both", "State": "1"}, live.call_id)
            at = time.time()                    # muted by now
        elif command == "resume":
            at = time.time()                    # still muted until this is carried out
            await self._send_or_fail("MixMonitorMute", {"Channel": live.channel, "Direction": "both", "State": "0"}, live.call_id)
        else:
            await self._send_or_fail("StopMixMonitor", {"Channel": live.channel}, live.call_id)
            at = time.time()
        active.rec = new = rec.apply(command, at)
        rid = await self._recording_id(active)
        log.info(f"recording {command}", file=rec.file_name, by=by, recording_id=rid)
        if rid is not None:
            n = len(new.pauses)
            try:
                if command == "pause":
                    await self._db(rec_db.add_pause, rid, n, _utc(at), round(at - rec.started_at, 3), by)
                    await self._db(rec_db.set_state, rid, "paused")
                elif command == "resume":
                    await self._db(rec_db.end_pause, rid, n, _utc(at), round(at - rec.started_at, 3), by)
                    await self._db(rec_db.set_state, rid, "recording")
            except Exception as exc:
                log.error("recording pause not stored", recording_id=rid, error=str(exc))
        self._annotate(live.call_id, f"recording.{'stopped' if command == 'stop' else command + 'd'}",
                       recording_id=rid, by=by)
        if command == "stop":
            live.active = None
            self._spawn(self._finish(active, at))

    async def _send_or_fail(self, action: str, headers: dict[str, str], call_id: str | None = None) -> None:
        try:
            await self._ami(action, headers, call_id)
        except AmiError as exc:
            self.failures += 1
            raise ControlError(502, "asterisk_refused", f"{action} failed: {exc}") from None

    # -- the end of a recording ---------------------------------------------------

    async def _end_call(self, live: Live, at: float) -> None:
        async with live.lock:
            active, live.active = live.active, None
        if active is not None:
            if active.rec.pauses and active.rec.pauses[-1].end is None and await self._recording_id(active) is not None:
                # Paused until the end: the pause ends with the call.
                n = len(active.rec.pauses)
                await self._safe_db(rec_db.end_pause, active.recording_id, n, _utc(at),
                                     round(at - active.rec.started_at, 3), "call ended")
            active.rec = active.rec.ended(at)
            await self._finish(active, at)

    async def _finish(self, active: Active, at: float) -> None:
        rec, rid = active.rec, active.recording_id
        if active.row is not None:
            self._submit(active.row.stopping(_utc(rec.stopped_at or at)))
        path = resolve(self.dirs or self.read_dir, rec.file_name)
        found = await self._wait_closed(path)
        lead = None
        if found is None:
            state, duration, size, digest = "failed", None, None, None
            error = "no audio file: Asterisk wrote nothing (no media on the channel?)"
        else:
            info, size, final = found
            digest = await asyncio.to_thread(sha256, path)
            duration = round(info.duration(info.data_bytes if final else max(0, size - info.data_offset)), 3)
            state, error = "saved", None if final else "the WAV header was never finalised"
            # MixMonitor writes only while frames flow: the file ends at the stop,
            # and begins at the first audio, which may come later than the start.
            lead = round(max(0.0, (rec.stopped_at or at) - rec.started_at - duration), 3)
        self.finished += 1
        log.info("recording finished", file=rec.file_name, state=state, duration_s=duration, size=size,
                 audio_lead_s=lead, recording_id=rid)
        if active.row is not None:
            # Through the writer, whatever became of the start's row: retried until the
            # database takes it, and the same snapshot (key) as the start, so it cannot
            # overtake it; it inserts the whole row if the start's never landed.
            self._submit(active.row.finished(state=state, stopped_at=_utc(rec.stopped_at or at),
                                             duration_s=duration, size_bytes=size, sha256=digest, error=error,
                                             audio_lead_s=lead))

    async def _wait_closed(self, path: Path) -> tuple[WavInfo, int, bool] | None:
        """Wait (bounded) until Asterisk has closed ``path``: its WAV header holds the
        final data length. Returns (header, size, final) or None when no file came."""
        deadline = time.monotonic() + FINISH_TIMEOUT
        seen: tuple[WavInfo, int] | None = None
        while True:
            try:
                size = path.stat().st_size
                with path.open("rb") as fh:
                    info = parse_wav_header(fh.read(512))
                if info.data_bytes and info.data_offset + info.data_bytes == size:
                    return info, size, True
                seen = (info, size)
            except (FileNotFoundError, WavError):
                pass
            if time.monotonic() > deadline:
                return (seen[0], seen[1], False) if seen is not None else None
            await asyncio.sleep(0.2)

    # -- jobs ----------------------------------------------------------------------

    async def _run_jobs(self) -> None:
        assert self.pool is not None
        rng = random.SystemRandom()
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                async with asyncio.timeout(300):
                    sampled = await jobs.sample(self.pool, self.config, rng)
                    report = await jobs.sweep(self.pool, self.config, self.dirs or self.read_dir,
                                                  datetime.now(timezone.utc))
                log.info("recording jobs", sampled=sampled.picked, considered=sampled.considered,
                         **report.summary())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording jobs failed")

    # -- helpers -------------------------------------------------------------------

    async def _ami(self, action: str, headers: dict[str, str], call_id: str | None = None) -> None:
        # On the call's node (several Asterisk nodes), else the one.
        ami_for = getattr(self.core, "ami_for", None)
        ami = ami_for(call_id) if ami_for is not None and call_id is not None else self.core.ami
        if ami is None:
            raise ControlError(503, "asterisk_unavailable", "no AMI connection")
        await ami.send(action, headers, shape="single", timeout=ACTION_TIMEOUT)

    async def _db(self, fn: Any, *args: Any, timeout: float = DB_TIMEOUT, **kw: Any) -> Any:
        """``fn(pool, ...)``, answered within ``timeout`` or ``TimeoutError``. The query
        runs in a task of its own, cancelled at the deadline but not waited for: on a path to
        PostgreSQL that is cut (no reset), a cancelled query's connection is given back only
        once the path returns, and a call's recording must not wait for that."""
        assert self.pool is not None
        task = asyncio.ensure_future(fn(self.pool, *args, **kw))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            self._loose.add(task)
            task.add_done_callback(self._loose.discard)
            raise TimeoutError(f"the database did not answer within {timeout:g} s")
        return task.result()

    def _submit(self, row: RecordingRow) -> None:
        writer = self.core.writer
        if writer is None:
            log.error("recording row not written: no store writer", file=row.file_name, state=row.state)
            return
        writer.submit(row)

    async def _recording_id(self, active: Active) -> int | None:
        """The recording's id: known since the start, or (its row deferred) looked up by
        file name once the writer has written it. None while it is not in the database."""
        if active.recording_id is None and active.row is not None and self.pool is not None:
            try:
                active.recording_id = await self._db(rec_db.id_of, active.row.file_name)
            except Exception as exc:
                log.warning("recording id not read", file=active.row.file_name, error=str(exc))
        return active.recording_id

    async def _safe_db(self, fn: Any, *args: Any, **kw: Any) -> None:
        if self.pool is None:
            return
        try:
            await self._db(fn, *args, **kw)
        except Exception as exc:
            log.error("recording row not updated", op=fn.__name__, error=str(exc))

    def _annotate(self, call_id: str, kind: str, **data: Any) -> None:
        self.core.annotate(call_id, kind, time.time(), **data)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("recording task failed", error=repr(t.exception()))

        task.add_done_callback(done)


RECORDING = web.AppKey("recording", RecordingService)


def setup_recording(app: web.Application, core: CoreServices, ha: Any = None) -> RecordingService:
    """Recording in the daemon (after the AMI client; before the API routes that use it).
    ``ha`` (a ``cti.ha.HaNode``, in a pair): the policy runs only while this node leads,
    and a step-down leaves Asterisk's recording globals to the next leader."""
    s = core.settings
    config = load_config(s.recording_config)
    dirs = recording_dirs(s)
    service = RecordingService(core, config, s.recording_dir, dirs.default, s.recording_sweep_every, dirs=dirs)
    app[RECORDING] = service

    if ha is not None:
        from cti.ha import run_while_leading

        async def lead(epoch: int) -> None:
            service.release_globals = True
            await service.start()

        async def step_down() -> None:
            service.release_globals = False
            await service.stop()

        run_while_leading(app, ha, lead, step_down)
        return service

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        log.info("recording ready", mode=config.mode, write_dir=service.write_dir, read_dir=str(service.read_dir))
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(ctx)
    return service
