"""The sandbox's generated AMI and hooks' secrets (demo, tests and benchmarks only).

``scripts/asterisk-sandbox`` makes random secrets for the AMI users and the
dialplan hooks once per machine and keeps them in ``CTI_SANDBOX_SECRETS`` (default
``/var/cache/cti/sandbox-secrets.env``, mode 0600, ``NAME=value`` lines); it
writes the same values into Asterisk's ``manager.d/secrets.conf``. Nothing in
the repository holds a secret that works.
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATH = Path("/var/cache/cti/sandbox-secrets.env")

DAEMON = "CTI_AMI_SECRET"
DEMO = "CTI_DEMO_AMI_SECRET"
LOAD = "CTI_LOAD_AMI_SECRET"
HOOKS = "CTI_HOOK_SECRET"   # the dialplan hooks' (cti-hook-secret.conf in the sandbox)


class SandboxSecretsMissing(RuntimeError):
    """No secrets file yet: the sandbox has not been set up on this machine."""


def path() -> Path:
    return Path(os.environ.get("CTI_SANDBOX_SECRETS") or DEFAULT_PATH)


def parse(text: str) -> dict[str, str]:
    """``NAME=value`` lines (blank lines and ``#`` comments skipped) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def secret(name: str) -> str:
    """The generated secret ``name`` (an environment variable of that name wins).
    Raises ``SandboxSecretsMissing`` when neither exists."""
    value = os.environ.get(name)
    if value:
        return value
    p = path()
    try:
        values = parse(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SandboxSecretsMissing(f"{p} does not exist: run scripts/asterisk-sandbox up first") from None
    if not values.get(name):
        raise SandboxSecretsMissing(f"{p} has no {name}: remove it and run scripts/asterisk-sandbox up")
    return values[name]
