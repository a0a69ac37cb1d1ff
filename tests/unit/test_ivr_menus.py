"""Menu files: validation, error messages that say where, calendars."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ivr.menus import EXAMPLE, MenuError, load_menus, parse_menus

BASE = """
[calendars.office]
timezone = "Europe/Paris"
hours = { mon = ["09:00-12:00", "14:00-17:00"], sat = "10:00-12:00" }
holidays = [2026-07-14]

[entries.default]
calendar = "office"
open = "main"
closed = "night"

[entries."5001"]
menu = "main"

[menus.main]
prompts = ["welcome", "digits/1"]

[menus.main.options]
"1" = { action = "queue", queue = "sales", skills = { sales = 5 } }
"2" = { action = "submenu", menu = "night" }

[menus.night]
prompts = ["/var/lib/cti/prompts/closed"]

[menus.night.options]
"1" = { action = "hangup" }
"""

PARIS = ZoneInfo("Europe/Paris")


def error_of(text: str) -> str:
    with pytest.raises(MenuError) as info:
        parse_menus(text, "menus.toml")
    return str(info.value)


def test_the_example_file_is_valid():
    menus = load_menus(EXAMPLE)
    assert {"main", "support", "closed", "holiday"} <= set(menus.menus)


def test_a_valid_file_gives_menus_and_actions():
    menus = parse_menus(BASE)
    assert menus.menus["main"].options["1"].skills == {"sales": 5}


def test_an_error_names_file_line_menu_and_field():
    bad = BASE.replace('queue = "sales"', 'queue = "sa les"')
    line = BASE.splitlines().index(next(l for l in BASE.splitlines() if l.startswith('"1" = { action = "queue"'))) + 1
    msg = error_of(bad)
    assert msg.startswith(f"menus.toml:{line}: menu 'main', menus.main.options.1.queue:")


def test_an_unknown_key_is_refused_with_its_line():
    msg = error_of(BASE.replace('prompts = ["/var', 'promts = ["x"]\nprompts = ["/var'))
    line = BASE.replace('prompts = ["/var', 'promts = ["x"]\nprompts = ["/var').splitlines().index('promts = ["x"]') + 1
    assert f"menus.toml:{line}: menu 'night', menus.night.promts: Extra inputs" in msg


def test_a_submenu_that_does_not_exist_is_named():
    msg = error_of(BASE.replace('menu = "night" }', 'menu = "nowhere" }'))
    assert "menus.main.options.2: no menu named 'nowhere'" in msg


def test_an_entry_menu_that_does_not_exist_is_named():
    msg = error_of(BASE.replace('closed = "night"', 'closed = "nite"'))
    assert "entries.default.closed: no menu named 'nite'" in msg


@pytest.mark.parametrize("prompt", ["hello world", "../../etc/passwd", 'a\\"b', "x\ny", ""])
def test_prompts_that_could_break_an_agi_command_are_refused(prompt: str):
    msg = error_of(BASE.replace('"welcome"', f'"{prompt}"'.replace("\n", "\\n")))
    assert "menus.main.prompts.0" in msg


@pytest.mark.parametrize("key", ["12", "a", "+"])
def test_option_keys_are_single_phone_keys(key: str):
    assert "is not one key of" in error_of(BASE.replace('"2" = {', f'"{key}" = {{'))


def test_collect_lengths_and_pattern_are_checked():
    collect = ('"3" = { action = "collect", name = "acct", prompt = "beep", min_length = 8, '
               'max_length = 4, then = { action = "hangup" } }\n')
    assert "min_length 8 is more than max_length 4" in error_of(BASE.replace('"2" = {', collect + '"2" = {'))
    collect = ('"3" = { action = "collect", name = "acct", prompt = "beep", pattern = "[", '
               'then = { action = "hangup" } }\n')
    assert "not a regular expression" in error_of(BASE.replace('"2" = {', collect + '"2" = {'))


def test_an_unknown_time_zone_and_a_bad_span_are_refused():
    assert "unknown time zone 'Mars/Olympus'" in error_of(BASE.replace("Europe/Paris", "Mars/Olympus"))
    assert "ends before it starts" in error_of(BASE.replace('"09:00-12:00"', '"12:00-09:00"'))


def test_bad_toml_is_refused_with_the_file_name():
    assert error_of("[menus.main\n").startswith("menus.toml: not valid TOML")


def test_the_calendar_picks_open_closed_and_holiday_in_its_time_zone():
    menus = parse_menus(BASE)
    at = lambda *a: datetime(*a, tzinfo=PARIS).timestamp()
    assert menus.entry_for("9999", at(2026, 11, 23, 10, 0)) == ("main", "open")       # Monday
    assert menus.entry_for("9999", at(2026, 11, 23, 13, 0)) == ("night", "closed")    # lunch
    assert menus.entry_for("9999", at(2026, 11, 28, 11, 0)) == ("main", "open")       # Saturday
    assert menus.entry_for("9999", at(2026, 11, 29, 11, 0)) == ("night", "closed")    # Sunday
    assert menus.entry_for("9999", at(2026, 7, 14, 10, 0)) == ("night", "holiday")    # no holiday menu: closed
    assert menus.entry_for("5001", at(2026, 11, 29, 11, 0)) == ("main", "always")
    # 08:30 UTC is 09:30 in Paris (winter): open.
    assert menus.entry_for(None, datetime(2026, 11, 23, 8, 30, tzinfo=ZoneInfo("UTC")).timestamp())[1] == "open"


def _with_option(option: str) -> str:
    return BASE.replace('"2" = {', option + '\n"2" = {')


@pytest.mark.parametrize("mailbox", ["sales\\nx", "a b", "../x", "box@ctx@y", ""])
def test_a_voicemail_box_that_voicemail_cannot_name_is_refused(mailbox: str):
    msg = error_of(_with_option(f'"3" = {{ action = "voicemail", mailbox = "{mailbox}" }}'))
    assert "menus.main.options.3.mailbox" in msg and "is not a mailbox" in msg


def test_a_callback_number_comes_from_the_caller_id_or_a_typed_value():
    menus = parse_menus(_with_option('"3" = { action = "callback", queue = "sales", number = "input:phone" }'))
    assert menus.menus["main"].options["3"].number == "input:phone"
    msg = error_of(_with_option('"3" = { action = "callback", queue = "sales", number = "+4930123" }'))
    assert "menus.main.options.3.number" in msg and "'caller_id' or 'input:NAME'" in msg
    msg = error_of(_with_option('"3" = { action = "callback", queue = "sa les" }'))
    assert "menus.main.options.3.queue" in msg


def test_an_account_lookup_needs_a_typed_value():
    option = ('"3" = { action = "lookup", match = "account", found = { action = "hangup" }, '
              'not_found = { action = "hangup" } }')
    assert "match = 'account' needs by = 'input:NAME'" in error_of(_with_option(option))
    typed = option.replace('match = "account"', 'by = "input:acct", match = "account"')
    assert parse_menus(_with_option(typed)).menus["main"].options["3"].match == "account"
