"""Uploaded announcements: ``check_wav`` takes only what Asterisk plays as it is."""
from __future__ import annotations

import io
import wave

from hypothesis import given, strategies as st

from emergency.prompts import WAV_MAX, check_wav, store_wav


def wav(rate: int = 8000, channels: int = 1, width: int = 2, seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * channels * (width // 2 or 1) * int(rate * seconds))
    return buf.getvalue()


def test_an_8khz_mono_16bit_wav_is_accepted_and_stored_by_its_digest(tmp_path):
    data = wav()
    assert check_wav(data) == ""
    prompt = store_wav(data, str(tmp_path))
    assert (tmp_path / (prompt.rsplit("/", 1)[1] + ".wav")).read_bytes() == data
    assert store_wav(data, str(tmp_path)) == prompt


def test_other_formats_are_refused_naming_what_is_wrong():
    assert "44100 Hz" in check_wav(wav(rate=44100))
    assert "2 channel" in check_wav(wav(channels=2))
    assert "0.2 to 130" in check_wav(wav(seconds=0.1))
    assert "RIFF" in check_wav(b"ID3" + b"\x00" * 100)
    assert "all of it present" in check_wav(wav()[:-1000]) or "readable" in check_wav(wav()[:-1000])
    assert "at most" in check_wav(b"RIFF" + b"\x00" * WAV_MAX)


@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer_never_an_exception(data):
    assert isinstance(check_wav(b"RIFF\x00\x00\x00\x00WAVE" + data), str)
    assert isinstance(check_wav(data), str)
