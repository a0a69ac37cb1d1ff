"""Hostile bytes against the AMI parser and the FastAGI reader (hypothesis).

Seeds are the transcripts captured from the sandbox (tests/fixtures/ami);
the fuzzers splice garbage between their frames, cut the stream anywhere and
check four properties: only the documented error type ever comes out, a
well-formed frame after garbage is never lost (resync), memory stays bounded,
and a stream fed whole parses like the same stream fed in pieces.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cti.amiproto import AmiParser, Frame
from cti.amiproto import _GREETING_MAX as GREETING_MAX
from cti.errors import AmiProtocolError
from ivr.agi import AgiError, AgiHangup, AgiProtocolError as AgiBad, AgiServer, AgiSession, parse_header_line, parse_reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
SEEDS = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("*.ami"))}
# The suite runs a fixed, derandomized sample; CTI_FUZZ_EXAMPLES=N runs N fresh
# random examples per property instead (the long run, docs/hostile-input.md).
_LONG = int(os.environ.get("CTI_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_LONG or 200, deadline=None, derandomize=not _LONG, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def frames_of(seed: bytes) -> list[bytes]:
    """The raw frames of a transcript (after its greeting), each with its blank line."""
    body = seed[seed.index(b"\n") + 1:]
    return [f + b"\r\n\r\n" for f in body.split(b"\r\n\r\n") if f.strip()]


def feed_pieces(parser: AmiParser, data: bytes, cuts: list[int]) -> list[Frame]:
    out: list[Frame] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        cut = min(max(cut, last), len(data))
        out += parser.feed(data[last:cut])
        last = cut
    return out


# Garbage as a peer or a broken proxy could send it: no blank line inside
# (a blank line ends whatever came before it, so it is a frame boundary).
_NOISE_BYTES = st.binary(max_size=300).map(lambda b: b.replace(b"\n\n", b"\n").replace(b"\n\r\n", b"\n"))
_NASTY = st.sampled_from([
    b"\x00\x00\x00", b"\r", b"\r\r\r", b"Key\rOther: v", b"\xff\xfe", b"\xe2\x82", b": no key",
    b"Event\x00: x", b"Key: " + b"v" * 400, b"A: 1\nB: 2\rC: 3", b"no colon at all",
])
_GARBAGE = st.lists(st.one_of(_NOISE_BYTES, _NASTY), max_size=4).map(b"".join)


@st.composite
def hostile_stream(draw):
    """A captured transcript with garbage spliced in as whole bogus frames."""
    seed = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    good = frames_of(seed)[:draw(st.integers(1, 12))]
    parts: list[bytes] = [seed[:seed.index(b"\n") + 1]]
    for f in good:
        if draw(st.booleans()):
            parts.append(draw(_GARBAGE) + b"\r\n\r\n")
        parts.append(f)
    return b"".join(parts), good


def headers_of(raw: bytes) -> dict[str, str]:
    [frame] = AmiParser(expect_greeting=False).feed(raw)
    return frame.headers


# --- AMI ---------------------------------------------------------------------------

@FUZZ
@given(hostile_stream(), st.lists(st.integers(0, 20_000), max_size=40))
def test_every_well_formed_frame_after_garbage_is_parsed_whole_or_in_pieces(stream, cuts):
    data, good = stream
    errors: list[Exception] = []
    whole = AmiParser(on_error=errors.append).feed(data)
    pieces = feed_pieces(AmiParser(on_error=errors.append), data, cuts)
    assert [f.headers for f in pieces] == [f.headers for f in whole]
    got = [f.headers for f in whole]
    # Every real frame comes out, in order, exactly as it does alone.
    want = [headers_of(f) for f in good]
    it = iter(got)
    assert all(any(h == w for h in it) for w in want)
    assert all(isinstance(e, AmiProtocolError) for e in errors)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=30),
       st.sampled_from([16, 64, 256, 1024]))
@example(b"\r" * 3000, [], 64)
@example(b"\x00" * 3000, [1, 2, 3], 64)
@example(b"K: v\r\n" * 500, [], 256)
@example(b"Asterisk Call Manager/11.0.0" + b"x" * 300, list(range(0, 330, 7)), 16)
def test_any_bytes_whole_or_in_pieces_give_the_same_frames_and_bounded_memory(data, cuts, limit):
    errors: list[Exception] = []
    whole = AmiParser(max_frame_size=limit, on_error=errors.append).feed(data)
    parser = AmiParser(max_frame_size=limit, on_error=errors.append)
    pieces: list[Frame] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        cut = min(max(cut, last), len(data))
        pieces += parser.feed(data[last:cut])
        last = cut
        # The limit, a partial end and a blank line before; or a greeting line still coming.
        assert parser.buffered <= max(limit + 4, GREETING_MAX)
    assert [f.headers for f in pieces] == [f.headers for f in whole]
    assert all(isinstance(e, AmiProtocolError) for e in errors)
    for f in whole:
        assert f.headers and "" not in f.headers
        assert all("\n" not in k and "\r" not in k for k in f.headers)


@FUZZ
@given(st.text(max_size=60), st.lists(st.integers(0, 400), max_size=60))
def test_utf8_split_at_every_point_is_never_lost(value, cuts):
    value = value.replace("\r", "").replace("\n", "")
    data = f"Event: UserEvent\r\nCallerIDName: {value}\r\n\r\n".encode()
    [frame] = feed_pieces(AmiParser(expect_greeting=False), data, cuts)
    assert frame["CallerIDName"] == value


def test_a_huge_header_count_is_dropped_and_the_next_frame_parses():
    errors: list[Exception] = []
    parser = AmiParser(max_frame_size=4096, on_error=errors.append)
    flood = b"Event: Flood\r\n" + b"K: v\r\n" * 100_000
    got: list[Frame] = []
    for i in range(0, len(flood), 1000):
        got += parser.feed(flood[i:i + 1000])
        assert parser.buffered <= 4096 + 4
    got += parser.feed(b"\r\nEvent: After\r\n\r\n")
    assert [f.name for f in got] == ["After"]
    assert parser.frames_rejected == 1 and isinstance(errors[0], AmiProtocolError)


def test_a_frame_at_the_size_limit_is_judged_the_same_whole_and_in_pieces():
    """The limit counts the frame's bytes as sent (CRs included) however it was read."""
    for size in range(200, 300):
        body = b"Event: X\r\nV: " + b"v" * (size - 15) + b"\r\n"
        data = body + b"\r\nEvent: Next\r\n\r\n"
        whole = [f.name for f in AmiParser(max_frame_size=256, expect_greeting=False).feed(data)]
        byte = feed_pieces(AmiParser(max_frame_size=256, expect_greeting=False), data, list(range(len(data))))
        assert whole == [f.name for f in byte], size
        assert whole[-1] == "Next"


def test_cr_without_lf_stays_inside_the_value():
    """Asterisk ends a line at LF only; a lone CR is part of the value (and
    encode_action refuses to send it back)."""
    [f] = AmiParser(expect_greeting=False).feed(b"Event: A\r\nName: x\ry: z\r\n\r\n")
    assert f.headers == {"Event": "A", "Name": "x\ry: z"}


# --- FastAGI -------------------------------------------------------------------------

HEADER = ("agi_network: yes\nagi_network_script: ivr\nagi_request: agi://127.0.0.1/ivr\n"
          "agi_channel: PJSIP/trunk-00000001\nagi_uniqueid: cti-1.1\nagi_callerid: +4930123456\n"
          "agi_calleridname: J\"ürgen Müller\nagi_context: cti-ivr\nagi_arg_1: cti-1.1\n\n").encode()


def reader_with(data: bytes, cuts: list[int], limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        cut = min(max(cut, last), len(data))
        if cut > last:
            reader.feed_data(data[last:cut])
        last = cut
    reader.feed_eof()
    return reader


async def read_header(data: bytes, cuts: list[int] = (), limit: int = 16_384):
    server = AgiServer("127.0.0.1", 0, {}, header_max=limit)
    return await server._read_header(reader_with(data, list(cuts), limit))


class _Writer:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


async def read_reply(data: bytes, cuts: list[int] = ()):
    session = AgiSession(reader_with(data, list(cuts), 16_384), _Writer(), {})  # type: ignore[arg-type]
    return await session.command("NOOP", timeout=5)


@FUZZ
@given(st.text(max_size=200))
def test_agi_pure_parsers_raise_only_their_protocol_error(line):
    for parse in (parse_header_line, parse_reply):
        try:
            parse(line)
        except AgiBad:
            pass


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20))
@example(b"agi_x: " + b"y" * 20_000 + b"\n\n", [])
@example(b"agi_a: 1\n" * 200 + b"\n", [])
@example(b"agi_a: 1\r\ragi_b: 2\n\n", [])
def test_agi_header_reader_raises_only_agi_errors(data, cuts):
    try:
        env = asyncio.run(read_header(data, cuts, limit=1024))
    except AgiBad:
        return
    assert env and all(k.startswith("agi_") for k in env)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20))
@example(b"200 result=" + b"1" * 20_000 + b"\n", [])
@example(b"520-usage\n" * 100, [])
@example(b"200 result=1 (\xff\xfe)\r\n", [5])
def test_agi_reply_reader_raises_only_agi_errors(data, cuts):
    try:
        asyncio.run(read_reply(data, cuts))
    except (AgiBad, AgiHangup):
        pass


@FUZZ
@given(st.lists(st.integers(0, len(HEADER)), max_size=40))
def test_agi_header_split_anywhere_parses_like_whole(cuts):
    assert asyncio.run(read_header(HEADER, cuts)) == asyncio.run(read_header(HEADER))
    assert asyncio.run(read_header(HEADER, cuts))["agi_calleridname"] == 'J"ürgen Müller'


def test_an_oversized_agi_reply_line_is_a_protocol_error():
    with pytest.raises(AgiBad):
        asyncio.run(read_reply(b"200 result=" + b"1" * 20_000 + b"\n"))


@pytest.mark.parametrize("name", ["x\nagi_arg_1: someone-elses-call", "x\nagi_context: admin"])
def test_a_caller_name_forging_an_agi_header_line_is_refused(name):
    """Asterisk writes agi_calleridname raw: a newline in it forges a header line
    that comes before the real one. A key sent twice is refused."""
    forged = HEADER.replace('J"ürgen Müller'.encode(), name.encode())
    with pytest.raises(AgiBad, match="twice"):
        asyncio.run(read_header(forged))


def test_a_caller_name_ending_the_agi_header_early_fails_the_first_command():
    """A blank line forged in the name ends the header; the real lines left over
    are then read where a reply is expected: the session fails, nothing runs."""
    forged = HEADER.replace('J"ürgen Müller'.encode(), b"x\n\nagi_context: evil")
    env = asyncio.run(read_header(forged))
    assert env["agi_calleridname"] == "x" and "agi_arg_1" not in env
    with pytest.raises(AgiBad):
        asyncio.run(read_reply(forged[forged.index(b"\n\n") + 2:]))
