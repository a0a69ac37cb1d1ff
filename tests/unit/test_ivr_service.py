"""What the IVR service takes from the dialplan's events (pure parts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr.agi import AgiHangup
from ivr.menus import MenuError
from cti import ami_inputs
from ivr.service import IvrService, voicemail_step


def dialplan_step(headers: dict[str, str], at: float):
    """The event through the typed edge (``cti.ami_inputs``), then the IVR's step."""
    typed = ami_inputs.parse(headers)
    return voicemail_step(typed, at) if isinstance(typed, ami_inputs.VoicemailLeft) else None


def test_a_voicemail_user_event_becomes_a_step_of_the_call():
    found = dialplan_step({"Event": "UserEvent", "UserEvent": "CtiVoicemail", "Linkedid": "call-1",
                           "Uniqueid": "leg-2", "Mailbox": "support@cti"}, 50.0)
    assert found is not None
    call_id, step = found
    assert call_id == "call-1"
    assert (step.seq, step.at, step.menu, step.action, step.value) == (0, 50.0, "cti-voicemail", "voicemail",
                                                                      "support@cti")


def test_other_events_and_hostile_mailboxes_are_handled():
    assert dialplan_step({"Event": "UserEvent", "UserEvent": "CtiRoute", "Linkedid": "c"}, 1.0) is None
    assert dialplan_step({"Event": "Hangup", "Linkedid": "c"}, 1.0) is None
    assert dialplan_step({"Event": "UserEvent", "UserEvent": "CtiVoicemail"}, 1.0) is None     # no call
    _, step = dialplan_step({"Event": "UserEvent", "UserEvent": "CtiVoicemail", "Linkedid": "c",
                             "Mailbox": "x'; DROP TABLE customers;--\r\n@cti"}, 1.0)
    assert step.value == "xDROPTABLEcustomers--@cti"
    _, step = dialplan_step({"Event": "UserEvent", "UserEvent": "CtiVoicemail", "Linkedid": "c", "Mailbox": ""}, 1.0)
    assert step.value is None


GOOD = """
[entries.default]
menu = "main"

[menus.main]
prompts = ["welcome"]

[menus.main.options]
"1" = { action = "queue", queue = "sales" }
"""


def test_an_invalid_menu_file_stops_the_start_with_the_problem(tmp_path: Path):
    path = tmp_path / "menus.toml"
    path.write_text(GOOD.replace('queue = "sales"', 'queue = "sa les"'))
    with pytest.raises(MenuError) as info:
        IvrService(path)
    assert str(path) in str(info.value) and "menus.main.options.1.queue" in str(info.value)


def test_a_failed_reload_keeps_the_last_good_menus_until_the_file_is_fixed(tmp_path: Path):
    path = tmp_path / "menus.toml"
    path.write_text(GOOD)
    service = IvrService(path)
    path.write_text(GOOD.replace('"1" = {', '"1" = { nonsense = 1,'))
    error = service.reload()
    assert error is not None and "nonsense" in error and service.last_error == error
    assert service.menus.menus["main"].options["1"].queue == "sales"        # still the good ones
    path.write_text(GOOD.replace('queue = "sales"', 'queue = "support"'))
    assert service.reload() is None and service.last_error is None
    assert service.menus.menus["main"].options["1"].queue == "support"


class _Caller:
    """An AGI session whose caller hangs up at the first prompt; notes the steps reported by then."""

    env = {"agi_callerid": "+493012345"}

    def __init__(self, reported: list) -> None:
        self.reported = reported
        self.at_first_prompt: list | None = None

    def arg(self, n: int) -> str | None:
        return {1: "call-1", 2: "7001"}.get(n)

    async def command(self, line: str, timeout: float):
        self.at_first_prompt = list(self.reported)
        raise AgiHangup("gone")


async def test_the_entry_step_is_reported_before_the_first_prompt_is_answered(tmp_path: Path):
    path = tmp_path / "menus.toml"
    path.write_text(GOOD)
    reported: list = []
    service = IvrService(path, clock=lambda: 100.0,
                         on_steps=lambda call_id, steps: reported.extend((call_id, s.action) for s in steps))
    session = _Caller(reported)
    await service.handle(session)  # type: ignore[arg-type]
    assert session.at_first_prompt == [("call-1", "enter")]
    assert reported == [("call-1", "enter"), ("call-1", "gone")]


# -- call.ivr events for a call the model has not seen yet ---------------------------

def _Core():
    from types import SimpleNamespace

    from cti.daemon import Core

    return Core(SimpleNamespace())  # type: ignore[arg-type]


async def test_steps_of_a_call_not_yet_seen_wait_for_it_and_go_out_in_order():
    # FastAGI and AMI are separate sockets: the walk's first step may come before
    # the channel's Newchannel. The steps wait and go out once the call is known.
    import asyncio

    from ivr.interpreter import Step
    from ivr.service import _StepEvents
    from tests.transcripts import frames

    core = _Core()
    seen: list[tuple[str, str]] = []
    core.bus.subscribe(lambda ev: seen.append((ev.kind, ev.data.get("action"))) if ev.kind == "call.ivr" else None)
    events = _StepEvents(core)
    all_frames = [f for f in frames("basic") if f.name is not None]
    call_id = next(f.headers["Linkedid"] for f in all_frames if f.headers.get("Event") == "Newchannel")
    events.publish(call_id, Step(1, 1.0, "main", "enter"))
    events.publish(call_id, Step(2, 2.0, "main", "option", input="1"))
    assert seen == [] and len(events.waiting[call_id]) == 2
    for f in all_frames[:5]:   # the channel appears
        core.model.feed(f.headers, 0.0)
    await asyncio.sleep(_StepEvents.RETRY_S * 3)
    assert seen == [("call.ivr", "enter"), ("call.ivr", "option")]
    assert events.waiting == {}
    events.publish(call_id, Step(3, 3.0, "main", "queue"))   # known now: straight out
    assert seen[-1] == ("call.ivr", "queue")


async def test_steps_of_a_call_never_seen_are_given_up_after_the_retries():
    import asyncio

    from ivr.interpreter import Step
    from ivr.service import _StepEvents

    events = _StepEvents(_Core())
    events.RETRIES = 2
    events.publish("nobody", Step(1, 1.0, "main", "enter"))
    await asyncio.sleep(_StepEvents.RETRY_S * 5)
    assert events.waiting == {} and events.given_up == 1


# -- who may speak for a call over FastAGI ----------------------------------------------

def _model_with_leg(uniqueid: str = "1733.1", channel: str = "PJSIP/trunk-00000001"):
    from cti.calls import CallModel

    model = CallModel()
    model.feed({"Event": "Newchannel", "Uniqueid": uniqueid, "Linkedid": uniqueid, "Channel": channel,
                "CallerIDNum": "+493012345", "ChannelState": "4"}, 1.0)
    return model


def test_only_a_live_leg_of_the_named_call_with_its_own_channel_name_counts():
    from ivr.service import leg_is_live

    model = _model_with_leg()
    assert leg_is_live(model, "1733.1", "1733.1", "PJSIP/trunk-00000001")
    assert not leg_is_live(model, "invented", "1733.1", "PJSIP/trunk-00000001")     # another call's leg
    assert not leg_is_live(model, "1733.1", "1733.99", "PJSIP/trunk-00000001")      # no such leg
    assert not leg_is_live(model, "1733.1", "1733.1", "PJSIP/forged-00000001")      # not its name
    assert not leg_is_live(model, "1733.1", "", "") and not leg_is_live(model, "", "", "")
    model.feed({"Event": "Hangup", "Uniqueid": "1733.1", "Linkedid": "1733.1",
                "Channel": "PJSIP/trunk-00000001", "Cause": "16"}, 2.0)
    assert not leg_is_live(model, "1733.1", "1733.1", "PJSIP/trunk-00000001")      # gone


async def test_a_leg_the_model_learns_a_moment_later_is_waited_for():
    import asyncio

    from cti.calls import CallModel
    from ivr.service import wait_for_leg

    model = CallModel()
    asyncio.get_running_loop().call_later(0.1, model.feed, {
        "Event": "Newchannel", "Uniqueid": "u1", "Linkedid": "u1", "Channel": "PJSIP/t-1"}, 1.0)
    assert await wait_for_leg(model, "u1", "u1", "PJSIP/t-1", timeout=2, interval=0.01)
    assert not await wait_for_leg(model, "u2", "u2", "PJSIP/t-2", timeout=0.05, interval=0.01)


class _Forger:
    """A local process speaking FastAGI for a call id it made up."""

    def __init__(self, uniqueid: str = "1733.7", channel: str = "PJSIP/x-1", call_id: str = "forged-call") -> None:
        self.env = {"agi_uniqueid": uniqueid, "agi_channel": channel, "agi_callerid": "+4930999888",
                    "agi_calleridname": "Forged Name"}
        self.call_id = call_id
        self.lines: list[str] = []

    def arg(self, n: int) -> str | None:
        return {1: self.call_id, 2: "7001"}.get(n)

    async def command(self, line: str, timeout: float):
        from ivr.interpreter import AgiReply

        self.lines.append(line)
        return AgiReply(200, "0", None, {})


async def test_a_session_for_a_channel_the_model_does_not_know_writes_no_step(tmp_path: Path):
    from structlog.testing import capture_logs

    path = tmp_path / "menus.toml"
    path.write_text(GOOD)
    reported: list = []
    model = _model_with_leg("1733.1", "PJSIP/trunk-00000001")

    async def verify(call_id: str, uniqueid: str, channel: str) -> bool:
        from ivr.service import leg_is_live
        return leg_is_live(model, call_id, uniqueid, channel)

    service = IvrService(path, clock=lambda: 100.0, verify=verify,
                         on_steps=lambda call_id, steps: reported.extend((call_id, s.action) for s in steps))
    for forger in (_Forger(), _Forger(uniqueid="1733.99", call_id="1733.1"),   # a real call, an invented leg
                   _Forger(uniqueid="1733.1", channel="PJSIP/x-1", call_id="1733.1")):  # the wrong name
        with capture_logs() as logs:
            await service.handle(forger)  # type: ignore[arg-type]
        assert reported == [] and forger.lines == ['SET VARIABLE CTI_IVR_ERROR "unknown channel"']
        warning = [e for e in logs if e["event"] == "ivr.agi_unknown_channel"]
        assert warning and warning[0]["log_level"] == "warning"
        assert not any(v in str(logs) for v in ("+4930999888", "Forged Name", forger.call_id, "1733.99"))
    assert service.refused == 3
    real = _Forger(uniqueid="1733.1", channel="PJSIP/trunk-00000001", call_id="1733.1")
    await service.handle(real)  # type: ignore[arg-type]
    assert reported[0] == ("1733.1", "enter")


async def test_a_second_session_for_a_channel_already_walking_is_refused(tmp_path: Path):
    import asyncio

    path = tmp_path / "menus.toml"
    path.write_text(GOOD)
    reported: list = []
    service = IvrService(path, clock=lambda: 100.0,
                         on_steps=lambda call_id, steps: reported.extend((call_id, s.action) for s in steps))
    gate = asyncio.Event()

    class _Slow(_Forger):
        async def command(self, line: str, timeout: float):
            self.lines.append(line)
            await gate.wait()
            raise AgiHangup("gone")

    first = _Slow(uniqueid="u1", call_id="c1")
    task = asyncio.create_task(service.handle(first))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    second = _Forger(uniqueid="u1", call_id="c1")
    await service.handle(second)  # type: ignore[arg-type]
    assert second.lines == ['SET VARIABLE CTI_IVR_ERROR "unknown channel"'] and service.refused == 1
    gate.set()
    await task
    assert all(call_id == "c1" for call_id, _ in reported) and ("c1", "enter") in reported
