"""The AMI wire protocol, sans I/O: framing, decoding, escapes, encoding."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.amiproto import AmiParser, Frame, encode_action, is_cid_escaped, unescape_cid
from cti.errors import AmiProtocolError, UnsafeValue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
TRANSCRIPTS = sorted([*FIXTURES.glob("*.ami"), *FIXTURES.glob("*.txt")])

# Shapes of real Asterisk 22 frames (greeting, login, a list reply, events,
# an escaped caller name, repeated keys, an empty value).
STREAM = (
    "Asterisk Call Manager/11.0.0\r\n"
    "Response: Success\r\nActionID: login\r\nMessage: Authentication accepted\r\n\r\n"
    "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 15\r\nLastReload: 15\r\nStatus: Fully Booted\r\n\r\n"
    "Event: Newchannel\r\nPrivilege: call,all\r\nTimestamp: 1795335475.319543\r\nSystemName: cti\r\n"
    "Channel: PJSIP/agent1-00000001\r\nChannelState: 0\r\nChannelStateDesc: Down\r\n"
    "CallerIDNum: +4930123456\r\nCallerIDName: J\\\"ürgen Müller\r\n"
    "ConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\n"
    "Context: cti-inbound\r\nExten: 5000\r\nPriority: 1\r\nUniqueid: cti-1795335475.39\r\n"
    "Linkedid: cti-1795335475.39\r\n\r\n"
    "Response: Success\r\nActionID: resync-channels\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
    "Event: CoreShowChannel\r\nActionID: resync-channels\r\nChannel: PJSIP/agent1-00000001\r\n"
    "Uniqueid: cti-1795335475.39\r\nLinkedid: cti-1795335475.39\r\nApplication: Queue\r\nDuration: 00:00:12\r\n\r\n"
    "Event: CoreShowChannelsComplete\r\nActionID: resync-channels\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"
    "Event: TestEvent\r\nPrivilege: reporting,all\r\nType: StateChange\r\nState: CallIDChange\r\n"
    "AppFile: channel_internal_api.c\r\nState: CallIDChange\r\nPriorCallID: \r\n\r\n"
    "Response: Success\r\nActionID: cmd-1\r\nMessage: Command output follows\r\n"
    "Output: Name/username             Host            Dyn\r\nOutput: agent1/agent1  (Unspecified)  D\r\n"
    "Output: 1 sip peers\r\n\r\n"
    "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: orig-1\r\nResponse: Success\r\n"
    "Channel: Local/p60@cti-demo-caller-00000000;1\r\nReason: 4\r\nUniqueid: cti-1795335442.0\r\n"
    "CallerIDName: J\"ürgen Müller\r\n\r\n"
).encode()


def parse_all(data: bytes, **kw) -> list[Frame]:
    return AmiParser(**kw).feed(data)


def parse_in_pieces(data: bytes, cuts: list[int], **kw) -> list[Frame]:
    parser = AmiParser(**kw)
    frames: list[Frame] = []
    last = 0
    for cut in [*cuts, len(data)]:
        frames += parser.feed(data[last:cut])
        last = cut
    return frames


# --- framing ---------------------------------------------------------------

def test_greeting_gives_version_and_is_not_a_frame():
    parser = AmiParser()
    frames = parser.feed(STREAM)
    assert parser.greeting == "Asterisk Call Manager/11.0.0"
    assert parser.version == "11.0.0"
    assert frames[0].response == "Success"
    assert frames[0].action_id == "login"


def test_realistic_stream_parses_into_its_frames():
    frames = parse_all(STREAM)
    assert [f.name or f.response for f in frames] == [
        "Success", "FullyBooted", "Newchannel", "Success", "CoreShowChannel",
        "CoreShowChannelsComplete", "TestEvent", "Success", "OriginateResponse",
    ]
    newchannel = frames[2]
    assert newchannel["Uniqueid"] == "cti-1795335475.39"
    assert newchannel["CallerIDName"] == 'J\\"ürgen Müller'
    assert newchannel["AccountCode"] == ""


def test_stream_fed_one_byte_at_a_time_gives_the_same_frames():
    whole = parse_all(STREAM)
    parser = AmiParser()
    frames: list[Frame] = []
    for i in range(len(STREAM)):
        frames += parser.feed(STREAM[i:i + 1])
    assert frames == whole
    assert parser.buffered == 0


def test_stream_cut_in_two_at_every_byte_gives_the_same_frames():
    whole = parse_all(STREAM)
    for cut in range(len(STREAM) + 1):
        assert parse_in_pieces(STREAM, [cut]) == whole, cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_stream_cut_anywhere_gives_the_same_frames(cuts):
    assert parse_in_pieces(STREAM, sorted(cuts)) == parse_all(STREAM)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.name)
def test_captured_transcript_fed_byte_by_byte_matches_one_feed(path):
    data = path.read_bytes()
    whole_parser = AmiParser()
    whole = whole_parser.feed(data)
    assert whole, "the transcript holds frames"
    assert whole_parser.frames_rejected == 0
    assert whole_parser.garbage_lines == 0
    parser = AmiParser()
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += parser.feed(data[i:i + 1])
    assert frames == whole
    assert parser.buffered == whole_parser.buffered


def test_utf8_character_split_across_feeds_is_kept():
    data = "Event: NewCallerid\r\nCallerIDName: Jürgen\r\n\r\n".encode()
    cut = data.index("ü".encode()) + 1  # between the two bytes of ü
    frames = parse_in_pieces(data, [cut], expect_greeting=False)
    assert frames[0]["CallerIDName"] == "Jürgen"


def test_invalid_utf8_is_replaced_not_dropped():
    data = b"Event: X\r\nCallerIDName: J\xfcrgen\r\n\r\n"  # latin-1, not UTF-8
    frames = parse_all(data, expect_greeting=False)
    assert frames[0]["CallerIDName"] == "J\ufffdrgen"


def test_lf_line_endings_give_the_same_frames_as_crlf():
    lf = STREAM.replace(b"\r\n", b"\n")
    assert parse_all(lf) == parse_all(STREAM)


def test_mixed_line_endings_are_accepted():
    data = b"Event: A\r\nX: 1\n\r\nEvent: B\nY: 2\r\n\nEvent: C\r\n\r\n"
    frames = parse_all(data, expect_greeting=False)
    assert [f.headers for f in frames] == [
        {"Event": "A", "X": "1"}, {"Event": "B", "Y": "2"}, {"Event": "C"},
    ]


def test_extra_blank_lines_between_frames_are_ignored():
    data = b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\n\r\nEvent: B\r\n\r\n"
    parser = AmiParser(expect_greeting=False)
    assert [f.name for f in parser.feed(data)] == ["A", "B"]
    assert parser.frames_rejected == 0 and parser.garbage_lines == 0


def test_stream_without_greeting_parses():
    parser = AmiParser()
    frames = parser.feed(b"Event: A\r\n\r\n")
    assert parser.greeting is None
    assert [f.name for f in frames] == ["A"]


def test_incomplete_frame_is_held_until_its_blank_line():
    parser = AmiParser(expect_greeting=False)
    assert parser.feed(b"Event: A\r\nX: 1\r\n") == []
    assert parser.feed(b"\r") == []
    assert [f.name for f in parser.feed(b"\n")] == ["A"]


# --- headers ---------------------------------------------------------------

def test_repeated_keys_are_joined_with_newlines_in_order():
    frames = parse_all(STREAM)
    command = frames[7]
    assert command["Output"].split("\n") == [
        "Name/username             Host            Dyn", "agent1/agent1  (Unspecified)  D", "1 sip peers",
    ]
    assert frames[6]["State"] == "CallIDChange\nCallIDChange"


def test_repeated_key_with_empty_values_keeps_every_value():
    frames = parse_all(b"Event: A\r\nX: \r\nX: \r\nX: b\r\n\r\n", expect_greeting=False)
    assert frames[0]["X"] == "\n\nb"


def test_key_alone_gives_an_empty_value():
    frames = parse_all(b"Event: A\r\nAccountCode:\r\n\r\n", expect_greeting=False)
    assert frames[0].headers == {"Event": "A", "AccountCode": ""}


def test_value_may_hold_colon_space():
    frames = parse_all(b"Event: A\r\nAppData: a: b: c\r\n\r\n", expect_greeting=False)
    assert frames[0]["AppData"] == "a: b: c"


def test_garbage_lines_are_skipped_and_counted():
    parser = AmiParser(expect_greeting=False)
    frames = parser.feed(b"Event: A\r\nno separator here\r\n: no key\r\nX: 1\r\n\r\n")
    assert frames[0].headers == {"Event": "A", "X": "1"}
    assert parser.garbage_lines == 2
    assert parser.frames_rejected == 0


def test_frame_with_no_header_is_rejected_and_reported():
    errors: list[AmiProtocolError] = []
    parser = AmiParser(expect_greeting=False, on_error=errors.append)
    frames = parser.feed(b"total garbage\r\nmore\r\n\r\nEvent: A\r\n\r\n")
    assert [f.name for f in frames] == ["A"]
    assert parser.frames_rejected == 1
    assert "no header" in str(errors[0])


def test_originate_response_is_an_event_even_with_a_response_header():
    frame = parse_all(STREAM)[-1]
    assert frame.is_event
    assert frame.name == "OriginateResponse"
    assert frame.response is None
    assert frame["Response"] == "Success"
    assert frame.action_id == "orig-1"


def test_frame_accessors():
    frame = Frame({"Event": "Hangup", "Cause": "16"})
    assert frame.get("Cause") == "16"
    assert frame.get("Nope", "x") == "x"
    assert "Cause" in frame
    assert frame.action_id is None


# --- limits and garbage -----------------------------------------------------

def test_oversized_frame_is_discarded_and_the_parser_resyncs():
    errors: list[AmiProtocolError] = []
    parser = AmiParser(max_frame_size=64, expect_greeting=False, on_error=errors.append)
    big = b"Event: Big\r\n" + b"X: " + b"y" * 200 + b"\r\n" + b"Z: 1\r\n\r\n"
    data = b"Event: A\r\n\r\n" + big + b"Event: B\r\n\r\n"
    frames: list[Frame] = []
    for i in range(0, len(data), 7):
        frames += parser.feed(data[i:i + 7])
        assert parser.buffered <= 64 + 7
    assert [f.name for f in frames] == ["A", "B"]
    assert parser.frames_rejected == 1
    assert "exceeds 64 bytes" in str(errors[0])


def test_oversized_frame_arriving_whole_is_rejected():
    parser = AmiParser(max_frame_size=64, expect_greeting=False)
    data = b"Event: Big\r\nX: " + "ü".encode() * 60 + b"\r\n\r\nEvent: B\r\n\r\n"
    assert [f.name for f in parser.feed(data)] == ["B"]
    assert parser.frames_rejected == 1


def test_oversized_frame_byte_by_byte_then_normal_frames():
    parser = AmiParser(max_frame_size=32, expect_greeting=False)
    data = b"Event: " + b"x" * 100 + b"\r\n\r\nEvent: After\r\n\r\n"
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += parser.feed(data[i:i + 1])
    assert [f.name for f in frames] == ["After"]
    assert parser.frames_rejected == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
def test_any_bytes_never_raise_and_memory_stays_bounded(data, cuts):
    parser = AmiParser(max_frame_size=256)
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        for frame in parser.feed(data[last:cut]):
            assert frame.headers and all(isinstance(v, str) for v in frame.headers.values())
        last = max(last, cut)
        assert parser.buffered <= 256 + len(data)
    assert parser.buffered <= 256


def test_binary_noise_then_real_frames_still_parse():
    parser = AmiParser(expect_greeting=False)
    noise = bytes(range(256)) * 4
    frames = parser.feed(noise + b"\r\n\r\nEvent: A\r\nX: 1\r\n\r\n")
    assert frames[-1].headers == {"Event": "A", "X": "1"}


# --- caller-id escapes -------------------------------------------------------

def ast_escape_c(value: str) -> str:
    """What Asterisk's ast_escape_c does (utils.c), to test the inverse against."""
    table = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
             "\v": "\\v", "\\": "\\\\", "'": "\\'", '"': '\\"', "?": "\\?"}
    return "".join(table.get(ch, ch) for ch in value)


@pytest.mark.parametrize(("escaped", "plain"), [
    ('J\\"ürgen Müller', 'J"ürgen Müller'),
    ("back\\\\slash", "back\\slash"),
    ("O\\'Brien", "O'Brien"),
    ("what\\?", "what?"),
    ("a\\nb\\rc\\td", "a\nb\rc\td"),
    ("\\a\\b\\f\\v", "\a\b\f\v"),
    ("\\\\n", "\\n"),
])
def test_unescape_cid_undoes_asterisk_escapes(escaped, plain):
    assert unescape_cid(escaped) == plain


def test_unescape_cid_keeps_unknown_escapes_and_a_trailing_backslash():
    assert unescape_cid("a\\zb") == "a\\zb"
    assert unescape_cid("end\\") == "end\\"


def test_unescape_cid_without_backslash_returns_the_same_object():
    value = "Jürgen Müller"
    assert unescape_cid(value) is value


@given(st.text())
def test_unescape_cid_inverts_ast_escape_c(value):
    assert unescape_cid(ast_escape_c(value)) == value


def test_cid_escaped_headers_include_prefixed_snapshots():
    assert is_cid_escaped("CallerIDName")
    assert is_cid_escaped("DestConnectedLineName")
    assert is_cid_escaped("LocalOneCallerIDName")
    assert not is_cid_escaped("CallerIDNum")


# --- encoding actions -------------------------------------------------------------

def test_encode_action_puts_action_and_actionid_first():
    data = encode_action("Originate", {"Channel": "PJSIP/agent1", "Async": "true"}, "a-1")
    assert data == (b"Action: Originate\r\nActionID: a-1\r\nChannel: PJSIP/agent1\r\n"
                    b"Async: true\r\n\r\n")


def test_encode_action_repeats_list_values():
    data = encode_action("Originate", {"Variable": ["A=1", "B=2"]}, "a-2")
    assert b"Variable: A=1\r\nVariable: B=2\r\n\r\n" in data


def test_encode_action_without_headers():
    assert encode_action("Ping", None, "p") == b"Action: Ping\r\nActionID: p\r\n\r\n"


@pytest.mark.parametrize("bad", ["x\r\nAction: Hangup", "x\n", "x\r", "x\0y", "\r\n\r\nAction: Originate"])
def test_encode_action_refuses_line_breaks_and_nul_in_values(bad):
    with pytest.raises(UnsafeValue) as err:
        encode_action("Redirect", {"Exten": bad}, "a")
    assert "'Exten'" in str(err.value)
    assert bad not in str(err.value)


@pytest.mark.parametrize("bad", ["Ex\nten", "Ex\rten", "Ex\0ten", "", "Ex:ten"])
def test_encode_action_refuses_bad_header_names(bad):
    with pytest.raises(UnsafeValue):
        encode_action("Redirect", {bad: "1"}, "a")


def test_encode_action_refuses_bad_action_names_and_ids():
    with pytest.raises(UnsafeValue):
        encode_action("Ping\r\nAction: Hangup", None, "a")
    with pytest.raises(UnsafeValue):
        encode_action("Ping", None, "a\nb")


def test_encode_action_refuses_a_bad_item_in_a_list_value():
    with pytest.raises(UnsafeValue, match="Variable"):
        encode_action("Originate", {"Variable": ["A=1", "B=2\r\nAction: Hangup"]}, "a")


@pytest.mark.parametrize("key", ["ActionID", "actionid", "Action"])
def test_encode_action_refuses_to_let_callers_set_action_or_actionid(key):
    with pytest.raises(UnsafeValue):
        encode_action("Ping", {key: "x"}, "a")


def test_encode_action_refuses_unencodable_text_naming_the_header():
    with pytest.raises(UnsafeValue, match="CallerID"):
        encode_action("Originate", {"CallerID": "bad \ud800"}, "a")


_NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                 min_size=1, max_size=20).filter(lambda k: k.lower() not in ("action", "actionid"))
_SAFE = st.text().filter(lambda v: not any(c in v for c in "\r\n\0"))


@settings(max_examples=300)
@given(_NAMES, _SAFE)
def test_any_safe_value_survives_encode_then_parse(key, value):
    frames = AmiParser(expect_greeting=False).feed(encode_action("UserEvent", {key: value}, "id-1"))
    assert len(frames) == 1
    assert frames[0].headers == {"Action": "UserEvent", "ActionID": "id-1", key: value}


@given(_NAMES, st.text(), st.sampled_from(["\r", "\n", "\0", "\r\n"]), st.text())
def test_any_value_with_cr_lf_or_nul_is_refused(key, head, bad, tail):
    with pytest.raises(UnsafeValue):
        encode_action("UserEvent", {key: head + bad + tail}, "id-1")
