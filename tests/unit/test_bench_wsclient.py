"""The fan-out bench's lean WebSocket client: its frame reader against the
daemon's frame writer, split at every byte, and its masking."""
from __future__ import annotations

import pytest

from api.ws import text_frame
from bench.wsclient import FrameError, FrameReader, client_frame

TEXTS = ["", "a" * 125, "b" * 126, "c" * 65535, "d" * 65536, '{"seq":3,"type":"call.offered","name":"Zoë"}']


def test_reads_back_to_back_frames_of_every_length_encoding():
    data = b"".join(text_frame(t) for t in TEXTS)
    assert [(op, p.decode()) for op, p in FrameReader().feed(data)] == [(1, t) for t in TEXTS]


def test_a_frame_split_anywhere_comes_out_once_and_whole():
    data = text_frame(TEXTS[2]) + text_frame(TEXTS[5])
    for cut in range(len(data) + 1):
        r = FrameReader()
        got = r.feed(data[:cut]) + r.feed(data[cut:])
        assert [p.decode() for _, p in got] == [TEXTS[2], TEXTS[5]], cut
        assert not r.buf


def test_masked_or_fragmented_server_frames_are_refused():
    with pytest.raises(FrameError):
        FrameReader().feed(client_frame(1, b"hi"))
    with pytest.raises(FrameError):
        FrameReader().feed(b"\x01\x02hi")      # FIN clear


def test_client_frames_are_masked_so_unmasking_gives_the_payload():
    mask = b"\x01\x02\x03\x04"
    f = client_frame(1, b"hello", mask)
    assert f[0] == 0x81 and f[1] == 0x80 | 5 and f[2:6] == mask
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(f[6:])) == b"hello"
    long = client_frame(1, b"x" * 300, mask)
    assert long[1] == 0x80 | 126 and int.from_bytes(long[2:4], "big") == 300
