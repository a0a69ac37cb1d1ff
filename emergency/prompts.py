"""Announcements spoken from text (espeak-ng, then sox to 8 kHz mono 16-bit PCM:
what Asterisk plays without transcoding), as ``scripts/make-prompts`` makes the
IVR's. The text goes on stdin, never on a command line. A file is named by a
digest of voice and text, so the same text is spoken once."""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

TEXT_MAX = 400
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,400}$")


class PromptError(Exception):
    """The announcement could not be made (bad text, a tool missing or failing)."""


def prompt_name(text: str, voice: str = "en") -> str:
    return "em-" + hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:20]


async def speak(text: str, outdir: str, voice: str = "en", timeout: float = 30.0) -> str:
    """Speak ``text`` into ``outdir``; returns the prompt (the path without extension)."""
    if not _TEXT.match(text) or not text.strip():
        raise PromptError(f"announcement: 1 to {TEXT_MAX} characters, no control characters")
    name = prompt_name(text, voice)
    out = Path(outdir) / f"{name}.wav"
    if out.exists():
        return str(out.with_suffix(""))
    try:
        Path(outdir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromptError(f"announcement directory {outdir}: {exc.strerror}") from None
    raw = Path(outdir) / f".{name}.{os.getpid()}.espeak.wav"
    tmp = Path(outdir) / f".{name}.{os.getpid()}.wav"
    try:
        async with asyncio.timeout(timeout):
            for argv, stdin in ((["espeak-ng", "-v", voice, "-w", str(raw), "--stdin"], text.encode()),
                                (["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                                  str(tmp)], None)):
                proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                            stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate(stdin)
                if proc.returncode != 0:
                    raise PromptError(f"{argv[0]} failed: {err.decode(errors='replace')[:200]}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except FileNotFoundError as exc:
        raise PromptError(f"{exc.filename}: not installed (apt-get install espeak-ng sox)") from None
    except OSError as exc:
        raise PromptError(f"announcement not written: {exc.strerror}") from None
    except TimeoutError:
        raise PromptError("speaking the announcement took too long") from None
    finally:
        for p in (raw, tmp):
            p.unlink(missing_ok=True)
    return str(out.with_suffix(""))


WAV_MAX = 2 * 1024 * 1024          # 2 MiB: over two minutes at 8 kHz 16-bit mono


def check_wav(data: bytes) -> str:
    """Why ``data`` is not a WAV file Asterisk plays as it is (RIFF/WAVE, PCM 16-bit, mono,
    8000 Hz, 0.2 s to 130 s), or "" when it is. Pure: no file is written."""
    import io
    import struct
    import wave

    if len(data) > WAV_MAX:
        return f"at most {WAV_MAX} bytes"
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return "not a WAV file (RIFF/WAVE)"
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            if w.getcomptype() != "NONE":
                return "must be PCM"
            payload = len(w.readframes(frames))
    except (wave.Error, EOFError, ValueError, struct.error) as exc:
        return f"not a readable WAV file: {exc}"
    if (rate, channels, width) != (8000, 1, 2):
        return f"must be 8000 Hz, mono, 16-bit (this is {rate} Hz, {channels} channel(s), {8 * width}-bit)"
    if payload != frames * 2 or not (0.2 <= frames / rate <= 130):
        return "must hold 0.2 to 130 seconds of sound, all of it present"
    return ""


def store_wav(data: bytes, outdir: str) -> str:
    """Write a checked WAV (``check_wav``) named by its digest; the prompt (path without extension).
    Raises ``PromptError``."""
    problem = check_wav(data)
    if problem:
        raise PromptError(f"wav: {problem}")
    name = "em-wav-" + hashlib.sha256(data).hexdigest()[:20]
    out = Path(outdir) / f"{name}.wav"
    try:
        Path(outdir).mkdir(parents=True, exist_ok=True)
        if not out.exists():
            tmp = Path(outdir) / f".{name}.{os.getpid()}.wav"
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
    except OSError as exc:
        raise PromptError(f"announcement not written: {exc.strerror}") from None
    return str(out.with_suffix(""))
