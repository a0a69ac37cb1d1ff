"""What the IVR service takes from the dialplan's events (pure parts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr.agi import AgiHangup
from ivr.menus import MenuError
from ivr.service import IvrService, dialplan_step


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
