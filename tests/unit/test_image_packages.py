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


def test_every_package_of_the_source_tree_is_installed() -> None:
    """A new top-level package (omni/, mail/, ...) left out of pyproject's list is missing from
    the wheel and the image: the daemon dies at its first import there and nowhere else."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    packages = {d.name for d in ROOT.iterdir() if (d / "__init__.py").is_file()} - {"tests", "bench", "scripts"}
    assert packages <= installed, f"pyproject.toml's packages.find include lacks: {sorted(packages - installed)}"


def test_the_images_take_their_base_as_an_argument_and_run_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    asterisk = (ROOT / "deploy" / "asterisk" / "Containerfile").read_text()
    for text in (dockerfile, asterisk):
        assert re.search(r"^ARG BASE=", text, re.M) and re.search(r"^FROM \$\{BASE\}", text, re.M)
    assert re.findall(r"^USER (\S+)", dockerfile, re.M)[-1] == "cti"
    assert "LD_PRELOAD=/usr/local/lib/libjemalloc.so.2" in dockerfile
    # Asterisk: packages at build time, our configuration without the demo, dropping to its user.
    assert re.search(r"apt-get (\$APT_OPTS )?install -y --no-install-recommends asterisk", asterisk)
    assert "COPY --chown=root:asterisk asterisk-config/" in asterisk
    assert "rm -rf /etc/asterisk/demo" in asterisk and '"-U", "asterisk"' in asterisk


def test_compose_passes_secrets_as_files_and_publishes_only_sip_rtp_and_the_proxy() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        leaked = [k for k in env if re.search(r"SECRET\b|SECRET$|PASSWORD|DATABASE_URL", k) and not k.endswith(("_FILE", "_DIR"))]
        assert leaked == [], f"{name} takes a secret from the environment: {leaked}"
    assert set(services["cti"]["secrets"]) == {"cti_ami_secret", "cti_hook_secret", "cti_database_url"}
    assert services["cti"]["environment"]["CTI_SECRETS_DIR"] == "/run/secrets"
    assert all(s["file"].startswith("./secrets/") for s in compose["secrets"].values())
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert sorted(published) == ["10000-10199:10000-10199/udp", "443:443", "5060:5060/udp", "80:80"]
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
