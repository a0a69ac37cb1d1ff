"""Recording files on disk, as the daemon sees them (``recording_read_dir``).

A stored recording names its file by a bare name (``recording.policy.file_name``);
``resolve`` is the only way from such a name to a path, and it refuses
anything that is not one of our names or that would lead outside the
directory (a symlink included). Request data never reaches it: routes take a
recording id, read the row, and resolve the row's name.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from recording.policy import is_safe_file_name


def resolve(read_dir: Path, name: str) -> Path:
    """The path of stored file ``name`` inside ``read_dir``.
    Raises ``ValueError`` for a name we would not make, or one leading outside."""
    if not is_safe_file_name(name):
        raise ValueError(f"not a recording file name: {name!r}")
    base = read_dir.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise ValueError(f"{name!r} leads outside the recording directory")
    return path


def sha256(path: Path) -> str:
    """The file's SHA-256, hex (reads it in 1 MiB pieces: run it in a thread)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
