"""The menu walker without Asterisk: a scripted caller answers its AGI commands."""
from __future__ import annotations

from ivr.interpreter import (
    AgiReply,
    CallInfo,
    Command,
    Customer,
    Finished,
    LookupCustomer,
    Walker,
    quote,
)
from ivr.menus import parse_menus

MENUS = parse_menus("""
[ivr]
default_queue = "general"

[entries.default]
menu = "main"

[entries."7000"]
action = { action = "queue", queue = "direct", skills = { a = 1 } }

[menus.main]
prompts = ["welcome", "options"]
timeout = 4
retries = 1
invalid_prompt = "bad"
timeout_prompt = "again"

[menus.main.options]
"1" = { action = "queue", queue = "sales", skills = { sales = 5, german = 2 }, priority = 3, language = "de" }
"2" = { action = "collect", name = "ticket", prompt = "enter", min_length = 3, max_length = 5, pattern = "9[0-9]*", retries = 1, say_back = true, then = { action = "say", kind = "number", value = "input:ticket", then = { action = "queue", queue = "support" } } }
"9" = { action = "lookup", found = { action = "queue", queue = "known" }, not_found = { action = "queue", queue = "unknown" }, vip = { action = "queue", queue = "vip", priority = 9 } }
"0" = { action = "transfer", number = "+4930999" }
"#" = { action = "hangup", prompt = "bye" }
"*" = { action = "submenu", menu = "main" }
""")


class Caller:
    """Answers the walker like Asterisk would for a caller pressing ``keys``
    (a key per prompt or wait; "." = silence, i.e. a timeout)."""

    def __init__(self, keys: str, customer: Customer | None = None) -> None:
        self.keys = list(keys)
        self.customer = customer
        self.lines: list[str] = []
        self.now = 100.0

    def answer(self, request: object) -> object:
        self.now += 1.0
        if isinstance(request, LookupCustomer):
            self.lines.append(f"LOOKUP {request.match} {request.number}")
            return self.customer
        assert isinstance(request, Command)
        self.lines.append(request.line)
        if request.line.startswith(("STREAM FILE", "WAIT FOR DIGIT")):
            key = self.keys.pop(0) if self.keys else "."
            if key == "-":                        # a prompt that cannot be played
                return AgiReply(200, "-1")
            if key == "." or (request.line.startswith("STREAM") and key == ","):
                return AgiReply(200, "0")
            return AgiReply(200, str(ord(key)))
        return AgiReply(200, "1" if request.line.startswith("SET") else "0")


def walk(keys: str, did: str | None = None, caller_id: str | None = "+4930111", customer: Customer | None = None,
         menus=MENUS):
    caller = Caller(keys, customer)
    walker = Walker(menus, CallInfo(did=did, caller_id=caller_id), 100.0)
    request = walker.start()
    while not isinstance(request, Finished):
        request = walker.send(caller.answer(request), caller.now)
    return request, walker, caller


def test_a_key_during_the_first_prompt_chooses_the_option():
    done, walker, caller = walk("1")
    assert done.outcome == "queue"
    assert done.variables == {"CTI_QUEUE": "sales", "CTI_SKILLS": "sales:5,german:2", "CTI_PRIORITY": "3",
                              "CTI_LANGUAGE": "de", "CTI_ACTION": "queue"}
    assert caller.lines[0] == 'STREAM FILE welcome 0123456789*#'
    assert caller.lines[1:] == [f"SET VARIABLE {k} {v}" for k, v in done.variables.items()]


def test_a_key_after_the_prompts_is_waited_for():
    done, _, caller = walk(",,1")          # both prompts play out, then 1 within the timeout
    assert done.variables["CTI_QUEUE"] == "sales"
    assert caller.lines[2] == "WAIT FOR DIGIT 4000"


def test_an_invalid_key_plays_the_invalid_prompt_and_asks_again():
    done, walker, caller = walk("7,1")
    assert done.variables["CTI_QUEUE"] == "sales"
    assert 'STREAM FILE bad 0123456789*#' in caller.lines
    assert [(s.action, s.input) for s in walker.steps] == [("enter", None), ("invalid", "7"), ("option", "1"),
                                                         ("queue", None)]


def test_silence_times_out_then_the_default_queue_takes_the_call():
    done, walker, caller = walk("")
    assert done.variables["CTI_QUEUE"] == "general" and done.variables["CTI_SKILLS"] == ""
    assert [s.action for s in walker.steps] == ["enter", "timeout", "timeout", "failed", "queue"]
    assert caller.lines.count('STREAM FILE again 0123456789*#') == 1    # not after the last attempt


def test_a_prompt_that_cannot_be_played_does_not_end_the_walk():
    done, _, _ = walk("-,1")
    assert done.variables["CTI_QUEUE"] == "sales"


def test_digits_are_collected_checked_said_back_and_passed_on():
    # "123" fails the pattern 9[0-9]*; "9876#" is taken (terminator), said back, then said as a number.
    done, walker, caller = walk("2" + "123#" + "," + "9876#")   # "," lets the invalid prompt play out
    assert done.variables["CTI_QUEUE"] == "support" and done.variables["CTI_INPUT_TICKET"] == "9876"
    assert [(s.action, s.value) for s in walker.steps if s.input == "ticket"] == [
        ("rejected", "123"), ("collected", "9876")]
    assert 'SAY DIGITS 9876 ""' in caller.lines and 'SAY NUMBER 9876 ""' in caller.lines


def test_collection_stops_at_max_length_without_a_terminator():
    done, _, _ = walk("2" + "98765")
    assert done.variables["CTI_INPUT_TICKET"] == "98765"


def test_collection_that_keeps_failing_goes_to_the_default_queue():
    done, walker, _ = walk("2" + "1#" + "2#")
    assert done.variables["CTI_QUEUE"] == "general"
    assert [s.action for s in walker.steps if s.input == "ticket"] == ["rejected", "rejected", "failed"]


def test_a_vip_customer_found_by_caller_id_goes_to_the_vip_queue():
    done, walker, caller = walk("9", customer=Customer("C1", "Ada", "fr", vip=True))
    assert "LOOKUP phone +4930111" in caller.lines
    assert (done.variables["CTI_QUEUE"], done.variables["CTI_PRIORITY"]) == ("vip", "9")
    assert (done.variables["CTI_CUSTOMER"], done.variables["CTI_LANGUAGE"]) == ("C1", "fr")


def test_found_and_not_found_customers_take_their_branches():
    assert walk("9", customer=Customer("C2"))[0].variables["CTI_QUEUE"] == "known"
    assert walk("9")[0].variables["CTI_QUEUE"] == "unknown"
    done, _, caller = walk("9", caller_id=None)          # no caller ID: no lookup at all
    assert done.variables["CTI_QUEUE"] == "unknown" and not any(l.startswith("LOOKUP") for l in caller.lines)


def test_transfer_and_hangup_say_so_to_the_dialplan():
    assert walk("0")[0].variables == {"CTI_TRANSFER": "+4930999", "CTI_ACTION": "transfer"}
    done, _, caller = walk("#")
    assert done.variables == {"CTI_ACTION": "hangup"} and 'STREAM FILE bye 0123456789*#' in caller.lines


def test_an_entry_can_route_at_once():
    done, walker, caller = walk("", did="7000")
    assert done.variables["CTI_QUEUE"] == "direct" and not any("STREAM" in l for l in caller.lines)


def test_a_menu_loop_ends_with_the_default_queue():
    done, walker, _ = walk("*" * 200)
    assert done.variables["CTI_QUEUE"] == "general" and walker.steps[-2].value == "too many steps"


def test_a_hangup_ends_the_walk_and_is_recorded():
    walker = Walker(MENUS, CallInfo(), 0.0)
    walker.start()
    done = walker.send(AgiReply(511, "", "Command Not Permitted on a dead channel"), 2.5)
    assert done == Finished("gone", {})
    assert [(s.action, s.at) for s in walker.steps] == [("enter", 0.0), ("gone", 2.5)]


def test_steps_carry_the_time_spent_and_are_handed_over_once():
    walker = Walker(MENUS, CallInfo(), 10.0)
    walker.start()                                              # STREAM FILE welcome
    assert [s.action for s in walker.take_steps()] == ["enter"]
    walker.send(AgiReply(200, "0"), 12.0)                       # STREAM FILE options
    walker.send(AgiReply(200, "0"), 14.0)                       # WAIT FOR DIGIT
    walker.send(AgiReply(200, str(ord("1"))), 17.5)
    new = walker.take_steps()
    assert [(s.action, s.duration) for s in new][:1] == [("option", 7.5)]
    assert walker.take_steps() == []


def test_agi_arguments_are_quoted_and_line_breaks_refused():
    assert quote("support") == "support"
    assert quote("a b") == '"a b"' and quote('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert quote("") == '""'
    try:
        quote("x\nHANGUP")
    except ValueError:
        pass
    else:
        raise AssertionError("a newline was accepted")


LEAVE = parse_menus("""
[ivr]
default_queue = "general"

[entries.default]
menu = "main"

[menus.main]
prompts = ["welcome"]

[menus.main.options]
"1" = { action = "voicemail", mailbox = "sales" }
"2" = { action = "voicemail", mailbox = "billing@other" }
"3" = { action = "callback", queue = "support", skills = { support = 4 }, priority = 2, prompt = "thanks" }
"4" = { action = "collect", name = "phone", prompt = "enter", min_length = 3, max_length = 20, then = { action = "callback", queue = "sales", number = "input:phone" } }
"5" = { action = "lookup", found = { action = "callback", queue = "known", language = "de" }, not_found = { action = "hangup" } }
"6" = { action = "callback", queue = "support", on_failure = { action = "voicemail", mailbox = "support" } }
"8" = { action = "collect", name = "account", prompt = "enter", min_length = 4, max_length = 8, then = { action = "lookup", by = "input:account", match = "account", found = { action = "queue", queue = "billing" }, not_found = { action = "queue", queue = "support" } } }
""")


def test_voicemail_names_the_box_in_the_cti_context_unless_given():
    done, walker, _ = walk("1", menus=LEAVE)
    assert done.outcome == "voicemail"
    assert done.variables == {"CTI_MAILBOX": "sales@cti", "CTI_ACTION": "voicemail"}
    assert (walker.steps[-1].action, walker.steps[-1].value) == ("voicemail", "sales@cti")
    assert walk("2", menus=LEAVE)[0].variables["CTI_MAILBOX"] == "billing@other"


def test_a_callback_request_carries_the_caller_id_queue_and_skills():
    done, walker, caller = walk("3", caller_id="+4930555123", menus=LEAVE)
    assert done.outcome == "callback"
    assert done.variables == {"CTI_CALLBACK_NUMBER": "+4930555123", "CTI_QUEUE": "support",
                              "CTI_SKILLS": "support:4", "CTI_PRIORITY": "2", "CTI_LANGUAGE": "",
                              "CTI_ACTION": "callback"}
    assert 'STREAM FILE thanks 0123456789*#' in caller.lines       # the prompt, before the variables
    assert caller.lines.index('STREAM FILE thanks 0123456789*#') < caller.lines.index(
        "SET VARIABLE CTI_ACTION callback")
    assert (walker.steps[-1].action, walker.steps[-1].value) == ("callback", "+4930555123")


def test_a_callback_can_take_the_number_the_caller_typed():
    done, _, _ = walk("4" + "0301234567#", caller_id=None, menus=LEAVE)
    assert (done.variables["CTI_CALLBACK_NUMBER"], done.variables["CTI_QUEUE"]) == ("0301234567", "sales")
    assert done.variables["CTI_INPUT_PHONE"] == "0301234567"


def test_a_callback_names_the_customer_found_before():
    done, _, _ = walk("5", customer=Customer("C9", "Ada", "fr"), menus=LEAVE)
    assert (done.outcome, done.variables["CTI_CUSTOMER"], done.variables["CTI_LANGUAGE"]) == ("callback", "C9", "de")


def test_a_callback_without_a_usable_number_takes_its_failure_branch():
    for caller_id in (None, "12", "+49301234567890123456789", "*31#4930"):
        done, walker, _ = walk("6", caller_id=caller_id, menus=LEAVE)
        assert done.outcome == "voicemail" and done.variables["CTI_MAILBOX"] == "support@cti", caller_id
        assert [(s.action, s.input) for s in walker.steps][-2] == ("failed", "callback")
    done, _, _ = walk("3", caller_id="anonymous", menus=LEAVE)         # no on_failure: the default queue
    assert (done.outcome, done.variables["CTI_QUEUE"]) == ("queue", "general")


def test_a_typed_account_number_is_looked_up_as_an_account():
    done, walker, caller = walk("8" + "123456#", customer=Customer("C-ACC", vip=False), menus=LEAVE)
    assert "LOOKUP account 123456" in caller.lines
    assert (done.variables["CTI_QUEUE"], done.variables["CTI_CUSTOMER"]) == ("billing", "C-ACC")
    assert [(s.action, s.input, s.value) for s in walker.steps if s.action == "lookup"] == [
        ("lookup", "123456", "C-ACC")]
