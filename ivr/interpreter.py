"""The menu walker: caller input in, AGI commands and a routing outcome out. Pure.

No sockets, no clock, no database. The shell (``ivr.agi``) drives it::

    walker = Walker(menus, CallInfo(did="5000", caller_id="+4930..."), now)
    request = walker.start()
    while not isinstance(request, Finished):
        result = ...run it: an AGI command (AgiReply) or a lookup (Customer | None)...
        request = walker.send(result, now)

Requests are ``Command`` (an AGI command line: send it, feed back its parsed
``AgiReply``), ``LookupCustomer`` (by phone or account number: feed back a
``Customer`` or None) and, last,
``Finished`` (the outcome). The walker sets the dialplan's variables itself,
with ``SET VARIABLE`` commands, before it finishes, so the shell only relays.

Every menu visited, key pressed and value typed becomes a ``Step`` (with the
time it took); ``take_steps()`` hands over the steps recorded since last
asked, for the database and the screen-pop.

Why a generator inside: a menu walk is a sequential script with waits in it
("play, wait for a digit, retry"); a generator keeps it readable as one, while
the class around it keeps the interface explicit and the time an argument.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Generator, Mapping

from ivr.menus import (
    DIGITS,
    Callback,
    Collect,
    Hangup,
    Lookup,
    Menu,
    MenuSet,
    Queue,
    Say,
    Submenu,
    Transfer,
    Voicemail,
)

ESCAPE = DIGITS                      # every key interrupts a prompt
MAX_ACTIONS = 100                    # a menu loop (a -> b -> a ...) ends the walk here
CALLBACK_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


# -- what goes in and out --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallInfo:
    did: str | None = None
    caller_id: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    name: str | None = None
    language: str | None = None
    vip: bool = False


@dataclass(frozen=True, slots=True)
class AgiReply:
    """A parsed AGI result line: ``200 result=49 (timeout) endpos=1234``."""

    code: int
    result: str = ""
    data: str | None = None          # the text in parentheses, e.g. "timeout"
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == 200

    def number(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Command:
    """Send ``line`` to Asterisk; ``timeout`` is how long its reply may take, in seconds."""

    line: str
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class LookupCustomer:
    """Find the customer by ``number``: a phone number (``match="phone"``) or an
    account number (``match="account"``)."""

    number: str
    match: str = "phone"


@dataclass(frozen=True, slots=True)
class Finished:
    """The walk is over. ``outcome`` is queue, transfer, voicemail, callback,
    hangup or gone (the caller left)."""

    outcome: str
    variables: Mapping[str, str]


Request = Command | LookupCustomer | Finished


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the caller did or met in the IVR.

    ``action``: enter, option, invalid, timeout, failed, collected, rejected,
    lookup, say, queue, transfer, voicemail, callback, hangup, gone. ``duration``
    is the seconds since the menu (or collection) began. ``seq`` 0 means "the
    next in the call" (a step reported later by the dialplan; the store numbers it).
    """

    seq: int
    at: float
    menu: str
    action: str
    input: str | None = None
    value: str | None = None
    duration: float = 0.0


class Gone(Exception):
    """The caller hung up (or the channel went away) during the walk."""


# -- AGI command text ------------------------------------------------------------


_SAFE_ARG = re.compile(r'^[^\s"\\]+$')


def quote(value: str) -> str:
    """An AGI argument: bare when it is a plain word, else double-quoted with
    backslash escapes (Asterisk's argument parser undoes both)."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("AGI arguments may not hold CR, LF or NUL")
    if value and _SAFE_ARG.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stream_file(prompt: str, escape: str = ESCAPE) -> Command:
    return Command(f"STREAM FILE {quote(prompt)} {quote(escape)}", timeout=300)


def wait_for_digit(seconds: float) -> Command:
    return Command(f"WAIT FOR DIGIT {int(seconds * 1000)}", timeout=seconds + 10)


def set_variable(name: str, value: str) -> Command:
    return Command(f"SET VARIABLE {quote(name)} {quote(value)}", timeout=10)


# -- the walker ------------------------------------------------------------------

Script = Generator[Request, Any, None]


class Walker:
    """One caller's walk through the menus (see the module doc)."""

    def __init__(self, menus: MenuSet, call: CallInfo, now: float) -> None:
        self.menus = menus
        self.call = call
        self.now = now
        start, self.calendar_state = menus.entry_for(call.did, now)
        # An entry is a menu, or an action taken at once (then "entry" names it in the path).
        self._start: Any = Submenu(action="submenu", menu=start) if isinstance(start, str) else start
        self.entry = start if isinstance(start, str) else "entry"
        self.inputs: dict[str, str] = {}
        self.customer: Customer | None = None
        self.steps: list[Step] = []
        self._unread = 0
        self._menu = self.entry
        self._script = self._walk()
        self.finished: Finished | None = None

    # -- driving ------------------------------------------------------------

    def start(self) -> Request:
        """The first request."""
        return self._advance(None)

    def send(self, result: AgiReply | Customer | None, now: float) -> Request:
        """Feed the result of the last request (at ``now``); returns the next one."""
        self.now = now
        return self._advance(result)

    def gone(self, now: float) -> Finished:
        """The caller hung up: record it, end the walk."""
        self.now = now
        if self.finished is None:
            self._script.close()
            self._step("gone")
            self.finished = Finished("gone", {})
        return self.finished

    def take_steps(self) -> list[Step]:
        """The steps recorded since the last call."""
        new = self.steps[len(self.steps) - self._unread:] if self._unread else []
        self._unread = 0
        return new

    def _advance(self, value: Any) -> Request:
        if self.finished is not None:
            return self.finished
        try:
            request = self._script.send(value)
        except StopIteration:       # a script always ends with Finished; be safe anyway
            request = Finished("gone", {})
        except Gone:
            return self.gone(self.now)
        if isinstance(request, Finished):
            self.finished = request
        return request

    def _step(self, action: str, *, input: str | None = None, value: str | None = None,
              since: float | None = None) -> None:
        self.steps.append(Step(len(self.steps) + 1, self.now, self._menu, action, input, value,
                               round(self.now - since, 3) if since is not None else 0.0))
        self._unread += 1

    # -- the script -------------------------------------------------------------

    def _walk(self) -> Script:
        self._step("enter", value=self.calendar_state)
        action: Any = self._start
        for _ in range(MAX_ACTIONS):
            action = yield from self._do(action)
            if action is None:
                return
        self._step("failed", value="too many steps")
        yield from self._finish(self._default_queue())

    def _default_queue(self) -> Queue:
        return Queue(action="queue", queue=self.menus.ivr.default_queue)

    def _do(self, action: Any) -> Generator[Request, Any, Any]:
        """Run one action; returns the next action, or None when the walk is over."""
        if isinstance(action, Submenu):
            self._menu = action.menu
            if len(self.steps) > 1:       # the entry menu's "enter" is the first step
                self._step("enter")
            return (yield from self._run_menu(self.menus.menus[action.menu]))
        if isinstance(action, Collect):
            return (yield from self._collect(action))
        if isinstance(action, Lookup):
            return (yield from self._lookup(action))
        if isinstance(action, Say):
            return (yield from self._say(action))
        if isinstance(action, Callback):
            number = self._source(action.number)
            if not CALLBACK_NUMBER.match(number):
                self._step("failed", input="callback", value=number or None)
                return action.on_failure or self._default_queue()
        yield from self._finish(action)
        return None

    def _run_menu(self, menu: Menu) -> Generator[Request, Any, Any]:
        began = self.now
        for attempt in range(menu.retries + 1):
            digit = yield from self._prompt_and_wait(menu.prompts, menu.timeout)
            if digit is None:
                self._step("timeout", since=began)
                if menu.timeout_prompt and attempt < menu.retries:
                    yield from self._play(menu.timeout_prompt)
                continue
            if digit in menu.options:
                self._step("option", input=digit, since=began)
                return menu.options[digit]
            self._step("invalid", input=digit, since=began)
            if menu.invalid_prompt:
                yield from self._play(menu.invalid_prompt)
        self._step("failed", since=began)
        return menu.on_failure or self._default_queue()

    def _collect(self, c: Collect) -> Generator[Request, Any, Any]:
        began = self.now
        for attempt in range(c.retries + 1):
            typed = yield from self._read_digits(c)
            if self._valid(c, typed):
                self.inputs[c.name] = typed
                self._step("collected", input=c.name, value=typed, since=began)
                if c.say_back:
                    yield Command(f"SAY DIGITS {typed} \"\"", timeout=60)
                return c.then
            self._step("rejected", input=c.name, value=typed, since=began)
            if c.invalid_prompt:
                yield from self._play(c.invalid_prompt)
        self._step("failed", input=c.name, since=began)
        return c.on_failure or self._default_queue()

    def _valid(self, c: Collect, typed: str) -> bool:
        if not (c.min_length <= len(typed) <= c.max_length) or not typed.isdigit():
            return False
        return c.pattern is None or re.fullmatch(c.pattern, typed) is not None

    def _read_digits(self, c: Collect) -> Generator[Request, Any, str]:
        typed = ""
        first = yield from self._prompt_and_wait([c.prompt], c.timeout)
        key = first
        while key is not None:
            if c.terminator and key == c.terminator:
                break
            typed += key
            if len(typed) >= c.max_length:
                break
            key = yield from self._wait_digit(c.timeout)
        return typed

    def _lookup(self, action: Lookup) -> Generator[Request, Any, Any]:
        number = self._source(action.by)
        customer = None
        if number:
            customer = yield LookupCustomer(number, action.match)
        self.customer = customer if isinstance(customer, Customer) else None
        c = self.customer
        self._step("lookup", input=number or None,
                   value=None if c is None else (f"{c.customer_id} vip" if c.vip else c.customer_id))
        if c is None:
            return action.not_found
        if c.vip and action.vip is not None:
            return action.vip
        return action.found

    def _say(self, action: Say) -> Generator[Request, Any, Any]:
        value = self.customer.customer_id if action.value == "customer" and self.customer else (
            self._source(action.value) if action.value != "customer" else "")
        if action.prompt:
            yield from self._play(action.prompt)
        digits = re.sub(r"[^0-9]", "", value or "")
        if digits:
            verb = "SAY DIGITS" if action.kind == "digits" else "SAY NUMBER"
            yield Command(f"{verb} {digits} \"\"", timeout=60)
        self._step("say", input=action.value, value=digits or None)
        return action.then

    def _source(self, name: str) -> str:
        if name == "caller_id":
            return self.call.caller_id or ""
        if name.startswith("input:"):
            return self.inputs.get(name[6:], "")
        return ""

    def _finish(self, action: Any) -> Generator[Request, Any, None]:
        variables: dict[str, str] = {}
        if isinstance(action, Queue):
            variables = self._routing(action)
            outcome, value = "queue", action.queue
        elif isinstance(action, Transfer):
            variables = {"CTI_TRANSFER": action.number}
            outcome, value = "transfer", action.number
        elif isinstance(action, Voicemail):
            variables = {"CTI_MAILBOX": action.mailbox}
            outcome, value = "voicemail", action.mailbox
        elif isinstance(action, Callback):
            number = self._source(action.number)       # checked in _do
            variables = {"CTI_CALLBACK_NUMBER": number, **self._routing(action)}
            if action.prompt:
                yield from self._play(action.prompt)
            outcome, value = "callback", number
        else:
            assert isinstance(action, Hangup)
            if action.prompt:
                yield from self._play(action.prompt)
            outcome, value = "hangup", None
        variables["CTI_ACTION"] = outcome
        if self.customer is not None:
            variables["CTI_CUSTOMER"] = self.customer.customer_id
            variables["CTI_VIP"] = "1" if self.customer.vip else "0"
        for name, typed in self.inputs.items():
            variables[f"CTI_INPUT_{name.upper().replace('-', '_').replace('.', '_')}"] = typed
        self._step(outcome, value=value)
        for name, text in variables.items():
            yield set_variable(name, text)
        yield Finished(outcome, variables)

    def _routing(self, action: Queue | Callback) -> dict[str, str]:
        language = action.language or (self.customer.language if self.customer else None)
        return {
            "CTI_QUEUE": action.queue,
            "CTI_SKILLS": ",".join(f"{k}:{v}" for k, v in action.skills.items()),
            "CTI_PRIORITY": str(action.priority),
            "CTI_LANGUAGE": language or "",
        }

    # -- prompts and keys ---------------------------------------------------------

    def _play(self, prompt: str) -> Generator[Request, Any, str | None]:
        """Play one prompt; returns the key that interrupted it, if any."""
        reply = yield stream_file(prompt)
        return _key(reply, allow_failure=True)

    def _prompt_and_wait(self, prompts: list[str], timeout: float) -> Generator[Request, Any, str | None]:
        for prompt in prompts:
            key = yield from self._play(prompt)
            if key is not None:
                return key
        return (yield from self._wait_digit(timeout))

    def _wait_digit(self, timeout: float) -> Generator[Request, Any, str | None]:
        reply = yield wait_for_digit(timeout)
        return _key(reply, allow_failure=False)


def _key(reply: Any, *, allow_failure: bool) -> str | None:
    """The key in a STREAM FILE / WAIT FOR DIGIT reply (result = its character
    code), None for none. Raises ``Gone`` when the channel is gone.

    ``result=-1`` means the channel hung up, or, for STREAM FILE, also that the
    prompt could not be played: a missing prompt must not end the walk."""
    if not isinstance(reply, AgiReply) or not reply.ok:
        raise Gone()
    code = reply.number()
    if code is None or code < 0:
        if allow_failure:
            return None
        raise Gone()
    if code == 0:
        return None
    key = chr(code)
    return key if key in DIGITS else None
