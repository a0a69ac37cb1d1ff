"""Real phones for the softphone tests: Debian's baresip, configured in a temp dir and driven as a process.

baresip registers the account ``<sip:DEVICE@127.0.0.1>`` to the sandbox with
``answermode=auto`` (it answers every call), sends a WAV file as its
microphone (its tone source refuses 8 kHz) and listens for SIP on its own
loopback port. Stopping it with SIGTERM makes it unregister first (Asterisk
then reports the contact ``Removed``).
"""
from __future__ import annotations

import asyncio
import math
import struct
import wave
from pathlib import Path

from tests.integration.conftest import free_port

BARESIP = "/usr/bin/baresip"


def tone_wav(path: Path, seconds: float = 30.0, rate: int = 8000, hz: float = 440.0) -> Path:
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


class Baresip:
    def __init__(self, workdir: Path, device: str, password: str, *, registrar: str = "127.0.0.1",
                 listen: str = "127.0.0.1", regint: int = 60, interface: str | None = None) -> None:
        self.dir = workdir
        self.device = device
        self.password = password
        self.registrar = registrar          # the Asterisk node it registers to
        self.listen = listen                # its own address (scripts/asterisk-cluster: $NET.3)
        self.regint = regint
        self.interface = interface          # where its media goes from (net_interface)
        self.sip_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / "baresip.log"

    def _configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        wav = tone_wav(self.dir / "tone.wav")
        (self.dir / "config").write_text("\n".join([
            "poll_method epoll",
            f"sip_listen {self.listen}:{self.sip_port}",
            *([f"net_interface {self.interface}"] if self.interface else []),
            f"audio_source aufile,{wav}",
            "audio_player aubridge,phone-out",
            "audio_alert aubridge,phone-alert",
            "ausrc_srate 8000", "auplay_srate 8000", "ausrc_channels 1", "auplay_channels 1",
            "rtp_stats no",
            "module_path /usr/lib/baresip/modules",
            "module g711.so", "module aufile.so", "module aubridge.so",
            "module_tmp account.so",
            "",
        ]))
        (self.dir / "accounts").write_text(
            f"<sip:{self.device}@{self.registrar}>;auth_pass={self.password};answermode=auto;regint={self.regint};"
            "audio_codecs=PCMU\n")
        (self.dir / "contacts").write_text("")

    async def start(self) -> None:
        self._configure()
        fh = open(self.log, "wb")
        self.proc = await asyncio.create_subprocess_exec(BARESIP, "-f", str(self.dir), stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=fh, stderr=fh)
        fh.close()

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (baresip unregisters, then exits); killed if it takes longer than ``timeout``."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
