"""The AMI wire protocol, sans I/O: bytes in, frames out; actions to bytes.

Nothing here touches a socket, a clock or the event loop (in the spirit of
h11): ``AmiParser.feed`` takes whatever bytes the transport read and returns
the frames they completed; ``encode_action`` turns an action into the bytes to
write. ``cti.ami`` is the thin asyncio shell around both.

What the wire looks like (Asterisk 22, checked against captured transcripts):

- On connect Asterisk sends one greeting line, ``Asterisk Call Manager/11.0.0``
  (the *AMI* protocol version, not the Asterisk release), ended by CRLF and not
  followed by a blank line.
- Then frames: ``Key: Value`` lines ended by CRLF, a frame ended by an empty
  line. Asterisk itself accepts a bare LF as a line end, so the parser does too
  (and mixed endings).
- A frame is a *response* when it has ``Response`` and no ``Event``; every other
  frame is an event. Beware: the ``OriginateResponse`` event also carries a
  ``Response: Success|Failure`` header, so "has Response" is not the test.
- Keys repeat: a ``Command`` reply has one ``Output:`` line per line of output,
  ``TestEvent`` repeats ``State:``. Repeated values are joined with ``"\\n"`` in
  arrival order (a value itself never holds a newline, so nothing is lost).
- Values are UTF-8 whatever the channel driver got; a character can be cut
  across two TCP reads, so bytes are decoded only once a whole frame is in,
  with ``errors="replace"`` so a bad byte shows up as U+FFFD instead of
  vanishing.
- ``CallerIDName`` and ``ConnectedLineName`` of channel snapshots (including
  prefixed ones: ``DestCallerIDName``, ``LocalOneConnectedLineName`` ...) are
  C-escaped by Asterisk (``ast_escape_c``); ``unescape_cid`` undoes it. So are
  ``VarSet``'s ``Value`` and ``PresenceStateChange``'s ``Subtype``/``Message``.
  ``OriginateResponse``'s ``CallerIDName`` is *not* escaped.

Outgoing, Asterisk ends a header at CR LF or a bare LF and an action at an
empty line: a value holding a newline would add headers, or whole actions run
with our permissions. ``encode_action`` refuses CR, LF and NUL in every name
and value instead of trying to clean them.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cti.errors import AmiProtocolError, UnsafeValue

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "Frame",
    "AmiParser",
    "encode_action",
    "unescape_cid",
    "is_cid_escaped",
]

DEFAULT_MAX_FRAME_SIZE = 1 << 20  # 1 MiB; the largest real frames are Command outputs

_GREETING_PREFIX = b"Asterisk Call Manager"
# The greeting is one short line; if no newline shows up within this many
# bytes there is no greeting and the bytes are parsed as frames.
_GREETING_MAX = 256

# A frame ends at an empty line: a line end followed by "\n" or "\r\n".
_FRAME_SEP = re.compile("\r?\n\r?\n")
_FRAME_END_B = re.compile(b"\n\r?\n")


_LEADING_BLANK = re.compile(b"(?:\r?\n)*")


def _wire_size(raw: bytes | bytearray) -> int:
    """A frame's size as the limit counts it: its bytes on the wire, CRs included,
    without the blank lines before it and the empty line that ends it."""
    m = _LEADING_BLANK.match(raw)
    return len(raw) - (m.end() if m else 0)


@dataclass(frozen=True, slots=True)
class Frame:
    """One AMI frame (a response or an event).

    ``headers`` maps each key, spelled exactly as Asterisk sent it, to its
    value; a key sent several times maps to its values joined by ``"\\n"`` in
    arrival order. Lookups are case-sensitive on purpose (this is the hot path):
    Asterisk's own spelling is stable (``Uniqueid``, ``ActionID``, ``Linkedid``).
    The dict must be treated as read-only.
    """

    headers: dict[str, str]

    @property
    def name(self) -> str | None:
        """The ``Event`` header (``"Newchannel"`` ...), or None for a response."""
        return self.headers.get("Event")

    @property
    def is_event(self) -> bool:
        """True for an event frame, False for a response to an action."""
        return "Event" in self.headers

    @property
    def response(self) -> str | None:
        """``Success``/``Error``/``Goodbye`` for a response frame; None for an event.

        (``OriginateResponse`` events carry a ``Response`` header too; read it
        from ``headers``.)
        """
        h = self.headers
        return None if "Event" in h else h.get("Response")

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` header, or None."""
        return self.headers.get("ActionID")

    def get(self, key: str, default: str | None = None) -> str | None:
        """``headers.get``: the value of ``key`` or ``default``."""
        return self.headers.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.headers[key]

    def __contains__(self, key: object) -> bool:
        return key in self.headers


class AmiParser:
    """Incremental AMI parser: ``feed(bytes) -> list[Frame]``.

    Feed it every chunk the transport reads, in order, split anywhere (even
    inside a UTF-8 character or a CRLF); it returns the frames completed so far
    and keeps the incomplete tail. ``feed`` never raises on bad input:

    - ``greeting``/``version``: the greeting line and its version
      (``"Asterisk Call Manager/11.0.0"`` / ``"11.0.0"``), None until seen.
    - A line without ``": "`` is kept as an empty value when it is ``Key:``
      alone; any other such line is skipped and counted in ``garbage_lines``.
    - A frame larger than ``max_frame_size`` bytes (counted as sent: CRs
      included, blank lines before it and its ending empty line not), or one
      with no header at all, is discarded: ``frames_rejected`` is incremented and ``on_error``
      (if given) is called with an ``AmiProtocolError`` saying why. A frame
      that outgrows the limit before it ends is dropped on the spot and the
      parser skips to the next empty line (it resyncs, memory stays bounded).
    """

    __slots__ = (
        "max_frame_size", "on_error", "greeting", "version",
        "frames_parsed", "frames_rejected", "garbage_lines",
        "_buf", "_scan", "_want_greeting", "_skipping",
    )

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        expect_greeting: bool = True,
        on_error: Callable[[AmiProtocolError], None] | None = None,
    ) -> None:
        if max_frame_size < 16:
            raise ValueError("max_frame_size must be at least 16 bytes")
        self.max_frame_size = max_frame_size
        self.on_error = on_error
        self.greeting: str | None = None
        self.version: str | None = None
        self.frames_parsed = 0
        self.frames_rejected = 0
        self.garbage_lines = 0
        self._buf = bytearray()
        # Where to resume looking for a frame end: a separator is at most 3
        # bytes, so the next search starts 2 bytes before the old end.
        self._scan = 0
        self._want_greeting = expect_greeting
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Take the next bytes of the stream; return the frames they complete, in order."""
        buf = self._buf
        buf += data
        if self._skipping and not self._skip_to_frame_end():
            return []
        if self._want_greeting and not self._take_greeting():
            return []
        # Everything up to the last empty line is whole frames: decode it in
        # one go (the separators are ASCII, so no character spans the cut).
        scan = self._scan
        lf = buf.rfind(b"\n\n", scan)
        crlf = buf.rfind(b"\n\r\n", scan)
        end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        frames: list[Frame] = []
        if end > self.max_frame_size:
            # A frame in here may be too large: measure each on the wire.
            self._parse_chunk(bytes(buf[:end]), frames)
            del buf[:end]
        elif end:
            text = buf[:end].decode("utf-8", "replace")
            del buf[:end]
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            parse = self._parse_block
            for block in text.split("\n\n"):
                if block:
                    frame = parse(block)
                    if frame is not None:
                        frames.append(frame)
        # The tail may already hold up to 2 bytes of its frame's end ("\n\r").
        if len(buf) > self.max_frame_size + 2 and _wire_size(buf) > self.max_frame_size + 2:
            self._reject(f"frame exceeds {self.max_frame_size} bytes; skipped to the next empty line")
            self._skipping = True
            del buf[:-2]
            self._scan = 0
        else:
            self._scan = len(buf) - 2 if len(buf) > 2 else 0
        return frames

    def _skip_to_frame_end(self) -> bool:
        """Drop bytes up to the next empty line; True once found."""
        buf = self._buf
        m = _FRAME_END_B.search(buf)
        if m is None:
            del buf[:-2]  # a separator may straddle this feed and the next
            return False
        del buf[:m.end()]
        self._skipping = False
        self._scan = 0
        return True

    def _take_greeting(self) -> bool:
        """Consume the greeting line if the stream starts with one; False to wait for more."""
        buf = self._buf
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) < _GREETING_MAX and _GREETING_PREFIX.startswith(bytes(buf[:len(_GREETING_PREFIX)])):
                return False
            self._want_greeting = False
            return True
        self._want_greeting = False
        line = bytes(buf[:nl]).rstrip(b"\r")
        if line.startswith(_GREETING_PREFIX):
            self.greeting = line.decode("utf-8", "replace")
            self.version = self.greeting.partition("/")[2].strip() or None
            del buf[:nl + 1]
        return True

    def _parse_chunk(self, chunk: bytes, frames: list[Frame]) -> None:
        """Whole frames, each checked against the size limit as it was on the wire,
        so a frame is judged the same however the reads cut the stream."""
        start = 0
        for m in _FRAME_END_B.finditer(chunk):
            raw = chunk[start:m.start()]
            start = m.end()
            if _wire_size(raw) > self.max_frame_size:
                self._reject(f"frame exceeds {self.max_frame_size} bytes")
                continue
            # The end matched from the last line's LF: its CR (if any) is still here.
            block = raw.decode("utf-8", "replace").replace("\r\n", "\n").removesuffix("\r")
            if block.strip("\n"):
                frame = self._parse_block(block)
                if frame is not None:
                    frames.append(frame)

    def _parse_block(self, block: str) -> Frame | None:
        """Parse one frame's text (line ends already made "\\n")."""
        lines = block.split("\n")
        # Fast path, nearly every frame: each line is "Key: value", no key twice.
        try:
            headers = dict([line.split(": ", 1) for line in lines])
        except ValueError:
            pass
        else:
            if len(headers) == len(lines) and "" not in headers:
                self.frames_parsed += 1
                return Frame(headers)
        headers = {}
        garbage = 0
        for line in lines:
            key, sep, value = line.partition(": ")
            if not sep:
                if not line:
                    continue  # a stray blank line between frames
                if line[-1] == ":" and len(line) > 1:
                    key = line[:-1]  # "Key:" alone: an empty value
                else:
                    garbage += 1
                    continue
            elif not key:
                garbage += 1
                continue
            if key in headers:
                headers[key] = headers[key] + "\n" + value
            else:
                headers[key] = value
        if garbage:
            self.garbage_lines += garbage
        if not headers:
            if garbage:
                self._reject(f"frame with no header ({garbage} unparsable lines)")
            return None
        self.frames_parsed += 1
        return Frame(headers)

    def _reject(self, why: str) -> None:
        self.frames_rejected += 1
        if self.on_error is not None:
            self.on_error(AmiProtocolError(why))


# --- C escapes -------------------------------------------------------------

# ast_escape_c escapes exactly these (utils.c: escape_sequences) and always
# escapes the backslash itself, so "\\" followed by anything else never comes
# from Asterisk; such a pair is kept as it is rather than guessed at.
_C_UNESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "?": "?",
}
_C_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)

_CID_SUFFIXES = ("CallerIDName", "ConnectedLineName")


def _unescape_one(m: re.Match[str]) -> str:
    return _C_UNESCAPES.get(m.group(1), m.group(0))


def unescape_cid(value: str) -> str:
    """Undo Asterisk's C escaping of a caller/connected-line name.

    ``J\\"urgen`` -> ``J"urgen``, ``a\\\\b`` -> ``a\\b``, ``\\n`` -> newline (and
    ``\\a \\b \\f \\r \\t \\v \\' \\?``). Returns the value unchanged when it holds
    no backslash (the common case, no copy).
    """
    if "\\" not in value:
        return value
    return _C_ESCAPE_RE.sub(_unescape_one, value)


def is_cid_escaped(key: str) -> bool:
    """True for the headers Asterisk C-escapes in channel snapshots.

    ``CallerIDName``, ``ConnectedLineName`` and their prefixed forms
    (``DestCallerIDName``, ``LocalTwoConnectedLineName`` ...).
    """
    return key.endswith(_CID_SUFFIXES)


# --- actions ---------------------------------------------------------------

_RESERVED = frozenset({"action", "actionid"})


def _check(what: str, text: str) -> None:
    # The message names the header, never the value: values may be secrets.
    if "\r" in text or "\n" in text or "\0" in text:
        raise UnsafeValue(f"{what} holds CR, LF or NUL; refusing to send it to Asterisk")


def encode_action(name: str, headers: Mapping[str, str | Sequence[str]] | None, action_id: str) -> bytes:
    """Return the bytes of one AMI action, ``Action`` and ``ActionID`` first.

    A value may be a list or tuple: the header is repeated once per item, in
    order (``Variable``). Other non-str values are sent as ``str(value)``.

    Raises ``UnsafeValue`` (naming the header, never echoing the value) when
    the action name, the ActionID, a header name or a value holds CR, LF or
    NUL, when a header name is empty or holds ``:``, when a value cannot be
    encoded as UTF-8, and when ``headers`` sets ``Action`` or ``ActionID``
    (those are ours).
    """
    _check("action name", name)
    if not name or ":" in name:
        raise UnsafeValue("action name is empty or holds ':'")
    _check("ActionID", action_id)
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    if headers:
        for key, value in headers.items():
            if not isinstance(key, str) or not key or ":" in key:
                raise UnsafeValue(f"header name {key!r} is empty or holds ':'")
            _check(f"header name {key!r}", key)
            if key.lower() in _RESERVED:
                raise UnsafeValue(f"header {key!r} is set by the client itself")
            if isinstance(value, (list, tuple)):
                for item in value:
                    item = item if isinstance(item, str) else str(item)
                    _check(f"header {key!r}", item)
                    lines.append(f"{key}: {item}")
            else:
                value = value if isinstance(value, str) else str(value)
                _check(f"header {key!r}", value)
                lines.append(f"{key}: {value}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("utf-8")
    except UnicodeEncodeError as exc:
        # Find the culprit so the message can name it.
        for line in lines:
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                raise UnsafeValue(f"header {line.partition(': ')[0]!r} is not valid Unicode text") from None
        raise UnsafeValue("action is not valid Unicode text") from exc
