"""Recording files on disk, as the daemon sees them (``recording_read_dir``).

A stored recording names its file by a bare name (``recording.policy.file_name``);
``resolve`` is the only way from such a name to a path, and it refuses
anything that is not one of our names or that would lead outside the
directory (a symlink included). Request data never reaches it: routes take a
recording id, read the row, and resolve the row's name.

Several Asterisk nodes (docs/scale-out.md): a recording is written by MixMonitor
on its call's node, so on that node's disk. A file's name starts with its call's
id, which starts with its node (``<node>-``): ``RecordingDirs`` reads it from
that node's ``recording_read_dir`` (``ami_nodes``; that node's directory as this
host sees it, a mount), else from the common one.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cti.nodes import node_of_id
from recording.policy import is_safe_file_name


@dataclass(frozen=True, slots=True)
class RecordingDirs:
    """Where the daemon reads recording files: each node's directory (``nodes``), the
    common one (``default``) for every other. Pure."""

    default: Path
    nodes: Mapping[str, Path] = field(default_factory=dict)

    def of(self, name: str) -> Path:
        """The directory of stored file ``name`` (by the node its call id names)."""
        node = node_of_id(name, self.nodes)
        return self.nodes[node] if node is not None else self.default


def recording_dirs(settings: Any) -> RecordingDirs:
    """``recording_read_dir`` (else ``recording_dir``), and with several nodes each
    node's own ``recording_read_dir`` where one is given."""
    default = Path(settings.recording_read_dir or settings.recording_dir)
    nodes = tuple(getattr(settings, "ami_nodes", ()) or ())
    if len(nodes) < 2:
        return RecordingDirs(default)
    return RecordingDirs(default, {n.name: Path(n.recording_read_dir) for n in nodes if n.recording_read_dir})


def resolve(read_dir: Path | RecordingDirs, name: str) -> Path:
    """The path of stored file ``name`` inside ``read_dir`` (or the directory
    ``RecordingDirs`` gives it). Raises ``ValueError`` for a name we would not
    make, or one leading outside."""
    if isinstance(read_dir, RecordingDirs):
        read_dir = read_dir.of(name)
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
