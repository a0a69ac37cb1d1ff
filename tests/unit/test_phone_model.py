"""Phones, pure: device ids, the generated PJSIP sections, contact reachability, options."""
from __future__ import annotations

import pytest

from cti import ami_inputs
from phone.model import (
    ContactChange, Device, DeviceError, Reachability, contact_state, contacts_of, device_of_dial, dial_string, ha1,
    options_value, render_pjsip, webrtc_device_id,
)

DIGEST = "e7a6244db92b2888ba59a4492fa5b346"


def test_ha1_is_the_md5_of_user_realm_password():
    assert ha1("dev1", "cti", "pw1secret") == DIGEST


@pytest.mark.parametrize("bad", ["", "-x", "a b", "a\r\nb", "a]b", "x" * 41, "a;b", "a@b", "PJSIP/x"])
def test_device_ids_that_could_break_a_config_or_dial_string_are_refused(bad):
    with pytest.raises(DeviceError):
        Device(bad)


def test_a_device_needs_a_known_kind_and_a_hex_digest():
    with pytest.raises(DeviceError, match="kind"):
        Device("d1", kind="skype")
    with pytest.raises(DeviceError, match="digest"):
        Device("d1", ha1="secret\n[evil]")


def test_rendered_sections_use_the_templates_and_carry_only_the_digest():
    text = render_pjsip([Device("web-a1", "webrtc", DIGEST), Device("desk-1", "sip", DIGEST)], "cti")
    assert "[desk-1](agent-phone)\nauth = desk-1\naors = desk-1\n" in text
    assert "[web-a1](agent-webrtc)" in text
    assert "[desk-1]\ntype = auth\nauth_type = digest\nusername = desk-1\nrealm = cti\nmd5_cred = " + DIGEST in text
    assert "[desk-1](agent-aor)" in text
    assert text.index("[desk-1]") < text.index("[web-a1]")  # sorted: the file changes only when devices do
    assert "password" not in text


def test_a_device_without_a_credential_is_not_provisioned():
    text = render_pjsip([Device("desk-2")], "cti")
    assert "[desk-2]" not in text
    assert "Without a credential (not provisioned): desk-2" in text


def test_a_hostile_realm_is_refused():
    with pytest.raises(DeviceError):
        render_pjsip([], "cti\n[x]")


def test_dial_strings_and_back():
    assert dial_string("desk-1") == "PJSIP/desk-1"
    assert device_of_dial("PJSIP/desk-1") == "desk-1"
    assert device_of_dial("Local/agent1@cti-demo-agents/n") is None
    assert device_of_dial("PJSIP/a&PJSIP/b") is None


def test_browser_phone_ids_follow_the_agent_or_a_digest_of_it():
    assert webrtc_device_id("agent1") == "web-agent1"
    odd = webrtc_device_id("anna@sales")
    assert odd.startswith("web-") and odd != webrtc_device_id("anna@support") and "@" not in odd


def test_contact_status_events_parse():
    def parse_contact(h: dict[str, str]) -> ContactChange | None:
        typed = ami_inputs.parse(h)
        return contact_state(typed.aor, typed.uri, typed.status) if isinstance(typed, ami_inputs.ContactStatus) \
            else None

    assert parse_contact({"Event": "ContactStatus", "AOR": "d1", "URI": "sip:d1@127.0.0.1:5070",
                          "ContactStatus": "Created"}) == ContactChange("d1", "sip:d1@127.0.0.1:5070", True)
    assert parse_contact({"Event": "ContactStatus", "AOR": "d1", "URI": "sip:x",
                          "ContactStatus": "Removed"}).up is False
    assert contact_state("d1", "sip:x", "Unavailable").up is False
    assert contact_state("d1", "sip:x", "NonQualified").up
    assert parse_contact({"Event": "Hangup"}) is None
    assert parse_contact({"Event": "ContactStatus", "AOR": "d1", "ContactStatus": "Created"}) is None


def test_reachability_changes_are_reported_once():
    r = Reachability()
    assert r.feed(ContactChange("d1", "u1", True)) is True
    assert r.feed(ContactChange("d1", "u1", True)) is None  # a qualify that answers again
    assert r.feed(ContactChange("d1", "u1", False)) is False
    assert r.feed(ContactChange("d1", "u1", False)) is None
    assert not r.up("d1")


def test_a_device_is_up_while_any_contact_is():
    r = Reachability()
    r.feed(ContactChange("d1", "u1", True))
    r.feed(ContactChange("d1", "u2", True))
    assert r.feed(ContactChange("d1", "u1", False)) is None
    assert r.up("d1")
    assert r.feed(ContactChange("d1", "u2", False)) is False


def test_an_unknown_contact_going_down_changes_nothing():
    assert Reachability().feed(ContactChange("d9", "u", False)) is None


def test_a_listing_replaces_what_was_known_and_says_what_changed():
    r = Reachability()
    r.feed(ContactChange("d1", "u1", True))
    r.feed(ContactChange("d2", "u2", True))
    changed = r.replace([ContactChange("d2", "u2", True), ContactChange("d3", "u3", True),
                         ContactChange("d4", "u4", False)])
    assert changed == {"d1": False, "d3": True}
    assert r.devices_up() == {"d2", "d3"}


def test_options_become_the_value_the_dialplan_matches():
    assert options_value(True, True) == "aa,zip"
    assert options_value(False, True) == "zip"
    assert options_value(False, False) == ""


def test_contacts_read_with_getvar_become_changes():
    """After a (re)connect contacts are read with PJSIP_AOR/PJSIP_CONTACT (PJSIPShowContacts needs
    the AMI right "system", which the daemon does not have)."""
    assert contacts_of("d1", "d1;@a1b2,d1;@c3d4") == ["d1;@a1b2", "d1;@c3d4"]
    assert contacts_of("d1", "") == []
    assert contact_state("d1", "sip:d1@10.0.0.5:5060", "Reachable") == ContactChange("d1", "sip:d1@10.0.0.5:5060", True)
    assert contact_state("d1", "sip:d1@10.0.0.5:5060", "Unreachable").up is False
    assert contact_state("d1", "", "Reachable") is None
