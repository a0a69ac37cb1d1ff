"""What the IVR service takes from the dialplan's events (pure parts)."""
from __future__ import annotations

from ivr.service import dialplan_step


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
