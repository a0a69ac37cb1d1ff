"""Captured AMI transcripts (tests/fixtures/ami/*.ami, recorded by scripts/capture-ami.py)."""
from __future__ import annotations

from pathlib import Path

from cti.amiproto import AmiParser, Frame

FIXTURES = Path(__file__).parent / "fixtures" / "ami"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.ami").read_bytes()


def frames(name: str, chunk: int | None = None) -> list[Frame]:
    """The frames of a transcript, fed to a fresh parser whole or ``chunk`` bytes at a time."""
    data = raw(name)
    parser = AmiParser()
    if chunk is None:
        return parser.feed(data)
    out: list[Frame] = []
    for i in range(0, len(data), chunk):
        out.extend(parser.feed(data[i:i + chunk]))
    return out


def events(name: str) -> list[Frame]:
    return [f for f in frames(name) if f.name is not None]
