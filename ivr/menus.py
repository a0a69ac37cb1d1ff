"""IVR menu files: TOML in, a validated ``MenuSet`` out (docs/ivr.md is the reference).

A file has four kinds of tables::

    [ivr]                  default_queue (where a call goes when a menu gives up)
    [calendars.NAME]       timezone, opening hours per weekday, holidays
    [entries.DID]          the menu a dialled number starts in, by calendar state
    [menus.NAME]           prompts, options by digit, timeout/retries, on_failure

Everything is checked at load: shapes and ranges by pydantic, references
(submenus, entry menus, calendars) by ``MenuSet``. ``load_menus`` raises one
``MenuError`` whose message names the file, the line (best effort: the line of
the key or table the error is about), the menu and the field.

Pure: no I/O except ``load_menus`` reading the one file.
"""
from __future__ import annotations

import re
import tomllib
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cti.errors import CtiError

EXAMPLE = Path(__file__).parent / "examples" / "demo.toml"

DIGITS = "0123456789*#"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MenuError(CtiError, ValueError):
    """A menu file that cannot be used; the message says where and why."""


# -- small value types ---------------------------------------------------------

# A prompt is an Asterisk sound name ("digits/1", "pm-invalid-option") or an
# absolute path without extension ("/var/lib/cti/prompts/welcome"). It travels
# inside an AGI command: no spaces, quotes, CR/LF or "..".
_PROMPT = re.compile(r"^/?[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$")
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
_LANG = r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$"

Name = Annotated[str, Field(pattern=_NAME)]
Language = Annotated[str, Field(pattern=_LANG)]


def _check_prompt(v: str) -> str:
    if not _PROMPT.match(v) or ".." in v.split("/"):
        raise ValueError(f"{v!r} is not a sound name (letters, digits, _ . - /; no spaces, no '..')")
    return v


Prompt = Annotated[str, AfterValidator(_check_prompt)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- actions -------------------------------------------------------------------


class Submenu(_Strict):
    """Go to another menu."""

    action: Literal["submenu"]
    menu: Name


class Queue(_Strict):
    """Leave the IVR for a queue: the dialplan gets CTI_QUEUE, CTI_SKILLS, CTI_PRIORITY, CTI_LANGUAGE."""

    action: Literal["queue"]
    queue: Name
    skills: dict[Name, Annotated[int, Field(ge=0, le=100)]] = Field(default_factory=dict)
    priority: int = Field(0, ge=0, le=100)
    language: Language | None = None


class Collect(_Strict):
    """Read digits (an account or ticket number), check them, then do ``then``."""

    action: Literal["collect"]
    name: Name                              # the value is CTI_INPUT_<NAME> and input:<name>
    prompt: Prompt
    min_length: int = Field(1, ge=1, le=64)
    max_length: int = Field(16, ge=1, le=64)
    terminator: Literal["#", "*", ""] = "#"
    pattern: str | None = None              # a regex the whole value must match
    timeout: float = Field(5.0, gt=0, le=60)   # seconds between two digits
    retries: int = Field(2, ge=0, le=10)
    invalid_prompt: Prompt | None = "pm-invalid-option"
    say_back: bool = False                  # read the digits back before going on
    then: Action
    on_failure: Action | None = None        # default: the menu file's default queue


    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _lengths(self) -> Collect:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is more than max_length {self.max_length}")
        return self


_SOURCE = re.compile(r"^(caller_id|input:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})$")


class Lookup(_Strict):
    """Find the customer by the caller's number (``by = "caller_id"``) or by a
    number the caller typed (``by = "input:NAME"``): a phone number
    (``match = "phone"``, the default) or an account number (``match = "account"``)."""

    action: Literal["lookup"]
    by: str = "caller_id"
    match: Literal["phone", "account"] = "phone"
    found: Action
    not_found: Action
    vip: Action | None = None               # instead of ``found`` when the customer is VIP

    @field_validator("by")
    @classmethod
    def _by(cls, v: str) -> str:
        if not _SOURCE.match(v):
            raise ValueError("must be 'caller_id' or 'input:NAME'")
        return v

    @model_validator(mode="after")
    def _account_is_typed(self) -> Lookup:
        if self.match == "account" and self.by == "caller_id":
            raise ValueError("match = 'account' needs by = 'input:NAME' (a caller ID is no account number)")
        return self


class Say(_Strict):
    """Say a value back (Asterisk's SAY DIGITS / SAY NUMBER), then do ``then``."""

    action: Literal["say"]
    kind: Literal["digits", "number"] = "digits"
    value: str                              # caller_id, customer, input:NAME
    prompt: Prompt | None = None               # played before the value
    then: Action


    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if v != "customer" and not _SOURCE.match(v):
            raise ValueError("must be 'caller_id', 'customer' or 'input:NAME'")
        return v


class Hangup(_Strict):
    """Say goodbye (optional prompt) and end the call."""

    action: Literal["hangup"]
    prompt: Prompt | None = None



class Transfer(_Strict):
    """Leave the IVR for a number: the dialplan gets CTI_TRANSFER."""

    action: Literal["transfer"]
    number: Annotated[str, Field(pattern=r"^\+?[0-9]{2,20}$")]


VOICEMAIL_CONTEXT = "cti"       # voicemail.conf's context for boxes named without "@context"
_MAILBOX = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(@[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?$")


class Voicemail(_Strict):
    """Leave the IVR to leave a message in ``mailbox`` ("box" or "box@context";
    a box alone is in context ``cti``): the dialplan gets CTI_MAILBOX and goes
    to ``cti-voicemail``."""

    action: Literal["voicemail"]
    mailbox: str

    @field_validator("mailbox")
    @classmethod
    def _mailbox(cls, v: str) -> str:
        if not _MAILBOX.match(v):
            raise ValueError(f"{v!r} is not a mailbox ('box' or 'box@context': letters, digits, _ . -)")
        return v if "@" in v else f"{v}@{VOICEMAIL_CONTEXT}"


class Callback(_Strict):
    """Ask to be called back by ``queue``: the dialplan gets CTI_CALLBACK_NUMBER,
    CTI_QUEUE, CTI_SKILLS, CTI_PRIORITY (and CTI_CUSTOMER) and goes to
    ``cti-callback``. The number is the caller ID (``number = "caller_id"``) or
    digits typed earlier (``number = "input:NAME"``); one that is not 3 to 20
    digits (an optional leading +) takes ``on_failure`` instead."""

    action: Literal["callback"]
    queue: Name
    skills: dict[Name, Annotated[int, Field(ge=0, le=100)]] = Field(default_factory=dict)
    priority: int = Field(0, ge=0, le=100)
    language: Language | None = None
    number: str = "caller_id"
    prompt: Prompt | None = None            # played once the request is taken
    on_failure: Action | None = None        # default: the menu file's default queue

    @field_validator("number")
    @classmethod
    def _number(cls, v: str) -> str:
        if not _SOURCE.match(v):
            raise ValueError("must be 'caller_id' or 'input:NAME'")
        return v


Action = Annotated[
    Union[Submenu, Queue, Collect, Lookup, Say, Hangup, Transfer, Voicemail, Callback],
    Field(discriminator="action"),
]

for _model in (Collect, Lookup, Say, Callback):  # their fields refer to Action, defined after them
    _model.model_rebuild()


# -- menus, calendars, entries -------------------------------------------------


class Menu(_Strict):
    prompts: list[Prompt] = Field(min_length=1, max_length=20)
    options: dict[str, Action] = Field(min_length=1)
    timeout: float = Field(5.0, gt=0, le=60)     # seconds to wait for a digit after the prompts
    retries: int = Field(2, ge=0, le=10)        # extra attempts after an invalid digit or a timeout
    invalid_prompt: Prompt | None = "pm-invalid-option"
    timeout_prompt: Prompt | None = None
    on_failure: Action | None = None            # default: the file's default queue


    @field_validator("options")
    @classmethod
    def _digits(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if len(key) != 1 or key not in DIGITS:
                raise ValueError(f"option {key!r} is not one key of {DIGITS}")
        return v


class Span(_Strict):
    start: time
    end: time


class Calendar(_Strict):
    timezone: str = "UTC"
    # weekday -> ["08:00-12:00", "13:00-17:00"]; a missing day is closed.
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[Span]] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("hours", mode="before")
    @classmethod
    def _spans(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, list[dict[str, time]]] = {}
        for day, spans in v.items():
            if isinstance(spans, str):
                spans = [spans]
            if not isinstance(spans, list):
                raise ValueError(f"{day}: a list of 'HH:MM-HH:MM' spans")
            parsed = []
            for s in spans:
                m = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", str(s).strip())
                if not m:
                    raise ValueError(f"{day}: {s!r} is not 'HH:MM-HH:MM'")
                h1, m1, h2, m2 = map(int, m.groups())
                if h2 == 24 and m2 == 0:
                    h2, m2 = 23, 59
                try:
                    start, end = time(h1, m1), time(h2, m2)
                except ValueError:
                    raise ValueError(f"{day}: {s!r} is not a time of day") from None
                if end <= start:
                    raise ValueError(f"{day}: {s!r} ends before it starts")
                parsed.append({"start": start, "end": end})
            out[day] = parsed
        return out

    def state(self, at: float) -> Literal["open", "closed", "holiday"]:
        """Whether the calendar is open at epoch second ``at``."""
        local = datetime.fromtimestamp(at, timezone.utc).astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return "holiday"
        now = local.time().replace(tzinfo=None)
        for span in self.hours.get(WEEKDAYS[local.weekday()], []):
            if span.start <= now < span.end:
                return "open"
        return "closed"


class Entry(_Strict):
    """Where a dialled number starts: one ``menu``; or a calendar and a menu per
    state; or straight away an ``action`` (no menu: e.g. a number that goes to a
    queue directly, setting its skills)."""

    menu: Name | None = None
    action: Action | None = None
    calendar: Name | None = None
    open: Name | None = None
    closed: Name | None = None
    holiday: Name | None = None             # default: ``closed``

    @model_validator(mode="after")
    def _shape(self) -> Entry:
        given = [k for k in ("menu", "action", "calendar") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give one of 'menu', 'action', or 'calendar' with 'open' and 'closed'")
        if self.calendar is not None and (self.open is None or self.closed is None):
            raise ValueError("a calendar entry needs 'open' and 'closed' menus")
        return self


class IvrSection(_Strict):
    default_queue: Name = "support"


class MenuSet(_Strict):
    """A whole, consistent menu file."""

    ivr: IvrSection = Field(default_factory=IvrSection)
    calendars: dict[Name, Calendar] = Field(default_factory=dict)
    entries: dict[str, Entry] = Field(min_length=1)
    menus: dict[Name, Menu] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> MenuSet:
        problems: list[str] = []
        for did, entry in self.entries.items():
            for field_name in ("menu", "open", "closed", "holiday"):
                target = getattr(entry, field_name)
                if target is not None and target not in self.menus:
                    problems.append(f"entries.{did}.{field_name}: no menu named {target!r}")
            if entry.calendar is not None and entry.calendar not in self.calendars:
                problems.append(f"entries.{did}.calendar: no calendar named {entry.calendar!r}")
        actions: list[tuple[str, Any]] = []
        for did, entry in self.entries.items():
            _walk_action(f"entries.{did}.action", entry.action, actions)
        for name, menu in self.menus.items():
            actions.extend(_walk_menu(name, menu))
        for where, action in actions:
            if isinstance(action, Submenu) and action.menu not in self.menus:
                problems.append(f"{where}: no menu named {action.menu!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def entry_for(self, did: str | None, at: float) -> tuple[str | Any, str]:
        """Where a call to ``did`` starts at epoch second ``at``.

        Returns: ``(menu name or action, state)``, state being "open", "closed",
        "holiday" (or "always" for an entry without calendar). A DID with no
        entry uses the entry named ``default``, else the first entry.
        """
        entry = self.entries.get(did or "") or self.entries.get("default") or next(iter(self.entries.values()))
        if entry.action is not None:
            return entry.action, "always"
        if entry.calendar is None:
            assert entry.menu is not None
            return entry.menu, "always"
        state = self.calendars[entry.calendar].state(at)
        assert entry.open is not None and entry.closed is not None
        name = {"open": entry.open, "closed": entry.closed}.get(state) or entry.holiday or entry.closed
        return name, state


def _walk_menu(name: str, menu: Menu) -> list[tuple[str, Any]]:
    """Every action of a menu, nested ones included, with where it is."""
    out: list[tuple[str, Any]] = []
    for digit, action in menu.options.items():
        _walk_action(f"menus.{name}.options.{digit}", action, out)
    _walk_action(f"menus.{name}.on_failure", menu.on_failure, out)
    return out


def _walk_action(where: str, action: Any, out: list[tuple[str, Any]]) -> None:
    if action is None:
        return
    out.append((where, action))
    for child in ("then", "found", "not_found", "vip", "on_failure"):
        if hasattr(action, child):
            _walk_action(f"{where}.{child}", getattr(action, child), out)


# -- loading -------------------------------------------------------------------


def parse_menus(text: str, source: str = "<menus>") -> MenuSet:
    """Validate menu-file text.

    Returns: the ``MenuSet``.
    Raises: ``MenuError`` naming ``source``, the line, the menu and the field.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MenuError(f"{source}: not valid TOML: {exc}") from None
    try:
        return MenuSet.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            raw = [str(p) for p in err["loc"]]
            loc = [p for i, p in enumerate(raw) if not (i and _is_union_tag(p) and raw[i - 1] in _HOLDS_ACTION)]
            if loc:
                lines.append(_where(text, source, loc, err["msg"]))
                continue
            # A cross-reference problem: each says the path it is about.
            msg = err["msg"].removeprefix("Value error, ")
            for problem in msg.split("; "):
                path, sep, why = problem.partition(": ")
                lines.append(_where(text, source, path.split("."), why) if sep else f"{source}: {problem}")
        raise MenuError("; ".join(lines)) from None


def _where(text: str, source: str, loc: list[str], msg: str) -> str:
    menu = f" menu {loc[1]!r}," if len(loc) > 1 and loc[0] == "menus" else ""
    return f"{source}:{_line_of(text, loc)}:{menu} {'.'.join(loc)}: {msg}"


def load_menus(path: str | Path) -> MenuSet:
    """Read and validate a menu file. Raises ``MenuError`` (unreadable, invalid)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MenuError(f"{p}: cannot read: {exc}") from None
    return parse_menus(text, str(p))


_HOLDS_ACTION = frozenset(DIGITS) | {"then", "found", "not_found", "vip", "on_failure"}


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator's value ("queue", "submenu"...) in the location.
    return part in ("submenu", "queue", "collect", "lookup", "say", "hangup", "transfer", "voicemail", "callback")


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r'^\s*("([^"]*)"|\'([^\']*)\'|[A-Za-z0-9_-]+)\s*=')


def _split_dotted(key: str) -> list[str]:
    return [p.strip().strip('"').strip("'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', key)]


def _line_of(text: str, loc: list[str]) -> int:
    """Best-effort line number of ``loc`` in the TOML text: the key's own line in
    the deepest table on its path, else that table's header, else 1."""
    best_line, best_depth = 1, 0
    table: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(raw)
        if m:
            table = _split_dotted(m.group(1))
            if table == loc[: len(table)] and len(table) > best_depth:
                best_line, best_depth = number, len(table)
            continue
        k = _KEY.match(raw)
        if not k:
            continue
        key = k.group(2) if k.group(2) is not None else k.group(3) if k.group(3) is not None else k.group(1)
        path = table + _split_dotted(key) if k.group(2) is None and k.group(3) is None else table + [key]
        depth = 0
        while depth < min(len(path), len(loc)) and path[depth] == loc[depth]:
            depth += 1
        if depth == len(path) and depth > best_depth:
            best_line, best_depth = number, depth
    return best_line
