"""scripts/make-prompts: text to 8 kHz mono wav files."""
from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make-prompts"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_a_file_without_prompts_is_refused(tmp_path: Path):
    (tmp_path / "p.toml").write_text('[prompts]\n"bad key!" = "hi"\n')
    r = run(str(tmp_path / "p.toml"), str(tmp_path / "out"))
    assert r.returncode == 2


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)")
def test_prompts_are_built_in_asterisks_format(tmp_path: Path):
    (tmp_path / "p.toml").write_text('[prompts]\nwelcome = "Welcome to the demo."\n')
    r = run(str(tmp_path / "p.toml"), str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    with wave.open(str(tmp_path / "out" / "welcome.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 8000 * 0.5
