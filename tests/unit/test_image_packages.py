"""The image (Dockerfile) copies every package the project installs (pyproject's
packages.find include): a package left out installs nothing and the daemon dies on its
first import inside the image, which no other test would see."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_copies_every_installed_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY\s+(\w+)\s+\./\1\s*$", (ROOT / "Dockerfile").read_text(), re.M))
    assert installed, "pyproject lists no packages"
    assert installed <= copied, f"Dockerfile does not copy: {sorted(installed - copied)}"
    for name in installed:
        assert (ROOT / name / "__init__.py").is_file(), f"{name} is listed but is not a package"
