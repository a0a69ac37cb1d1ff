"""The host install of docs/deploy.md, as systemd would run it, where systemd cannot run.

Pure helpers (stdlib only: ``scripts/check-host-install`` runs this file with the host's
``python3``) for ``tests/integration/test_host_install.py``:

- the doc's shell blocks, read from docs/deploy.md's "Host install" section, so that the
  check runs what the doc says and not a copy of it (``install_block``, ``start_block``);
- what a unit file or a ``systemd-run`` line asks of the service manager, as a ``Service``
  (``unit_service``, ``systemd_run_service``);
- how to reproduce that without systemd: the environment systemd would give the process
  (``service_environment``), the mounts of its namespace (``namespace_script``: read-only
  root, private /tmp, empty /home and /root, the dynamic user's state directory) and the
  privilege drop (``drop_privileges``: ``setpriv`` to a uid of systemd's dynamic range,
  no new privileges, no capabilities, the unit's umask).

What this does not reproduce (it needs systemd as PID 1, which our test machines do not
run): the system call filter, the address-family and namespace restrictions, the kernel
protections, the memory and task limits (cgroups), ``Restart=``. docs/deploy.md says so.
"""
from __future__ import annotations

import hashlib
import re
import shlex
import sys
from dataclasses import dataclass, field

HOST_INSTALL_HEADING = "## Host install"
# systemd's dynamic users live in 61184..65519; it hashes the name into that range. Any uid
# there that no file in the root owns serves the emulation.
DYNAMIC_UID = 61184 + 1000
# What systemd gives every service before Environment= (systemd.exec(5), "Environment
# variables in spawned processes"); a dynamic user's home is / and its shell nologin.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def section(text: str, heading: str = HOST_INSTALL_HEADING) -> str:
    """The Markdown section whose heading line starts with ``heading`` (up to the next heading
    of the same or a higher level, outside fenced code). Raises ``ValueError`` when there is
    no such heading."""
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start, fenced = None, False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if start is None:
            if line.startswith(heading.strip()):
                start = i + 1
        elif re.match(r"#{1,%d} " % level, line):
            return "\n".join(lines[start:i])
    if start is None:
        raise ValueError(f"no section {heading!r}")
    return "\n".join(lines[start:])


def shell_blocks(markdown: str) -> list[str]:
    """The fenced ```sh blocks of ``markdown``, in order, without their fences."""
    return [m.group(1) for m in re.finditer(r"^```sh\n(.*?)^```\s*$", markdown, re.M | re.S)]


def install_block(doc: str) -> str:
    """The host install's first shell block: packages, virtualenv, settings, secrets, unit."""
    blocks = shell_blocks(section(doc))
    if len(blocks) < 2:
        raise ValueError(f"{HOST_INSTALL_HEADING}: expected an install block and a start block, found {len(blocks)}")
    return blocks[0]


def start_block(doc: str) -> str:
    """The host install's last shell block: the production check and the start."""
    blocks = shell_blocks(section(doc))
    if len(blocks) < 2:
        raise ValueError(f"{HOST_INSTALL_HEADING}: expected an install block and a start block, found {len(blocks)}")
    return blocks[-1]


def digest(block: str) -> str:
    return hashlib.sha256(block.encode("utf-8")).hexdigest()[:16]


def commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments dropped (shlex's rules)."""
    out: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


def command_starting(block: str, program: str) -> list[str]:
    """The words of the one command in ``block`` that runs ``program``. Raises ``ValueError``
    when there is none or more than one."""
    found = [shlex.split(c) for c in commands(block) if shlex.split(c)[0] == program]
    if len(found) != 1:
        raise ValueError(f"expected one {program!r} command in the block, found {len(found)}")
    return found[0]


# -- what the service manager is asked for ------------------------------------------------

def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with every value it was given, in order. An empty
    assignment (``Key=``) is kept: it resets a list in systemd's terms."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = (pending + raw.strip()) if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None:
            raise ValueError(f"a setting before any section: {line!r}")
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not Key=value: {line!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "yes", "true", "on")


@dataclass(frozen=True)
class Service:
    """What a unit (or ``systemd-run``) asks of systemd, as far as the emulation goes."""

    argv: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()
    environment_files: tuple[str, ...] = ()
    dynamic_user: bool = False
    state_directory: str | None = None
    state_directory_mode: int = 0o755
    umask: int = 0o022
    no_new_privileges: bool = False
    drop_capabilities: bool = False
    protect_system: str = "no"
    protect_home: str = "no"
    private_tmp: bool = False
    notify: bool = False
    stop_timeout: float = 90.0
    ignored: tuple[str, ...] = field(default=())

    @property
    def read_only_root(self) -> bool:
        # DynamicUser=yes implies ProtectSystem=strict (systemd.exec(5)).
        return self.protect_system == "strict" or self.dynamic_user

    @property
    def hidden_home(self) -> bool:
        # DynamicUser=yes implies ProtectHome=read-only; yes makes them empty.
        return self.protect_home in ("yes", "read-only", "tmpfs") or self.dynamic_user

    @property
    def private_tmp_dirs(self) -> bool:
        return self.private_tmp or self.dynamic_user      # implied by DynamicUser=yes


# The settings the emulation applies; every other [Service] key is listed in Service.ignored.
_APPLIED = {"ExecStart", "Environment", "EnvironmentFile", "DynamicUser", "StateDirectory",
            "StateDirectoryMode", "UMask", "NoNewPrivileges", "CapabilityBoundingSet",
            "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateTmp", "Type",
            "NotifyAccess", "TimeoutStopSec", "KillSignal"}


def _environment_assignments(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        for word in shlex.split(value):
            key, sep, val = word.partition("=")
            if not sep:
                raise ValueError(f"Environment= word without '=': {word!r}")
            out.append((key, val))
    return out


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value.strip())
    if not m:
        raise ValueError(f"unsupported time span {value!r}")
    return float(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)


def _service(settings: dict[str, list[str]], argv: list[str]) -> Service:
    last = {k: v[-1] for k, v in settings.items() if v}
    caps = settings.get("CapabilityBoundingSet")
    return Service(
        argv=tuple(argv),
        environment=tuple(_environment_assignments(settings.get("Environment", []))),
        environment_files=tuple(settings.get("EnvironmentFile", [])),
        dynamic_user=_yes(last.get("DynamicUser")),
        state_directory=last.get("StateDirectory") or None,
        state_directory_mode=int(last.get("StateDirectoryMode", "0755"), 8),
        umask=int(last.get("UMask", "0022"), 8),
        no_new_privileges=_yes(last.get("NoNewPrivileges")),
        drop_capabilities=caps is not None and caps[-1] == "",
        protect_system=last.get("ProtectSystem", "no").lower(),
        protect_home=last.get("ProtectHome", "no").lower(),
        private_tmp=_yes(last.get("PrivateTmp")),
        notify=last.get("Type") == "notify",
        stop_timeout=_seconds(last["TimeoutStopSec"]) if "TimeoutStopSec" in last else 90.0,
        ignored=tuple(sorted(k for k in settings if k not in _APPLIED)),
    )


def unit_service(text: str) -> Service:
    """The ``[Service]`` of a unit file. Raises ``ValueError`` on what the emulation cannot
    honour (several ``ExecStart=``, a ``-``/``@``/``+`` prefix, ``StateDirectory`` lists)."""
    settings = parse_unit(text).get("Service", {})
    starts = settings.get("ExecStart", [])
    if len(starts) != 1:
        raise ValueError(f"expected one ExecStart=, found {len(starts)}")
    argv = shlex.split(starts[0])
    if not argv or argv[0][0] in "-@+:!":
        raise ValueError(f"ExecStart= with a prefix is not emulated: {starts[0]!r}")
    if len((settings.get("StateDirectory") or [""])[-1].split()) > 1:
        raise ValueError("several StateDirectory= names are not emulated")
    return _service(settings, argv)


def systemd_run_service(words: list[str]) -> Service:
    """What ``systemd-run [--pty] [--wait] [-p K=V]... [-E K=V]... COMMAND...`` asks for.
    Raises ``ValueError`` on an option this emulation does not know."""
    if not words or words[0] != "systemd-run":
        raise ValueError("not a systemd-run command")
    settings: dict[str, list[str]] = {}
    i = 1
    while i < len(words):
        word = words[i]
        if word in ("--pty", "--wait", "-P", "--pipe", "-q", "--quiet", "-G", "--collect"):
            i += 1
        elif word in ("-p", "--property", "-E", "--setenv"):
            if i + 1 >= len(words):
                raise ValueError(f"{word} without a value")
            value = words[i + 1]
            if word in ("-E", "--setenv"):
                settings.setdefault("Environment", []).append(shlex.quote(value))
            else:
                key, sep, val = value.partition("=")
                if not sep:
                    raise ValueError(f"property without '=': {value!r}")
                settings.setdefault(key, []).append(val)
            i += 2
        elif word.startswith(("--property=", "--setenv=")):
            key, _, val = word.partition("=")
            return systemd_run_service([*words[:i], key, val, *words[i + 1:]])
        elif word.startswith("-"):
            raise ValueError(f"systemd-run option not emulated: {word}")
        else:
            break
    if i >= len(words):
        raise ValueError("systemd-run without a command")
    return _service(settings, words[i:])


def parse_environment_file(text: str) -> list[tuple[str, str]]:
    """``NAME=value`` lines as systemd's EnvironmentFile= reads them (the subset the doc
    uses: comments, blank lines, surrounding quotes). Raises ``ValueError`` on another line."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not NAME=value: {line[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out.append((key, value))
    return out


def service_environment(service: Service, files: dict[str, str], *, user: str = "cti",
                        notify_socket: str | None = None) -> dict[str, str]:
    """The environment systemd gives the service's process: its defaults, ``Environment=``,
    then the environment files (they win), the state directory and the notify socket.
    ``files`` maps each EnvironmentFile= path (a leading ``-`` means optional) to its text.
    Raises ``ValueError`` when a required file is missing."""
    env = {"PATH": DEFAULT_PATH}
    if service.dynamic_user:
        env.update(HOME="/", USER=user, LOGNAME=user, SHELL="/usr/sbin/nologin")
    env.update(service.environment)
    for path in service.environment_files:
        optional = path.startswith("-")
        path = path.lstrip("-")
        if path not in files:
            if optional:
                continue
            raise ValueError(f"EnvironmentFile={path} does not exist")
        env.update(parse_environment_file(files[path]))
    if service.state_directory:
        env["STATE_DIRECTORY"] = f"/var/lib/{service.state_directory}"
    if service.notify and notify_socket:
        env["NOTIFY_SOCKET"] = notify_socket
    return env


def drop_privileges(service: Service, env: dict[str, str], uid: int = DYNAMIC_UID) -> list[str]:
    """The command, run as root inside the root, that becomes the service's process: setpriv
    to ``uid`` (when the service has a dynamic user), no new privileges, no capabilities, an
    empty environment but ``env``, the unit's umask, then ExecStart (by exec, so the pid
    the caller holds is the daemon's)."""
    cmd = ["/usr/bin/setpriv"]
    if service.dynamic_user:
        cmd += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if service.no_new_privileges or service.dynamic_user:
        cmd.append("--no-new-privs")
    if service.drop_capabilities:
        cmd += ["--inh-caps=-all", "--bounding-set=-all"]
    cmd += ["--", "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "/bin/sh", "-c", f'umask {service.umask:04o} && exec "$@"', "sh", *service.argv]
    return cmd


def namespace_script(root: str, service: Service, binds: dict[str, str] | None = None,
                     uid: int = DYNAMIC_UID) -> str:
    """A ``sh`` script for ``unshare -m`` that gives ``root`` the mounts systemd would give the
    service (the state directory of a dynamic user in /var/lib/private, writable; the rest
    read-only under ProtectSystem=strict; empty /tmp, /var/tmp; empty /home, /root), plus
    /proc, /dev and a /run of its own with ``binds`` (host path -> path under the root's /run),
    and ends in ``exec chroot ROOT`` followed by the script's arguments ("$@").

    The state directory must exist beforehand (``state_directory_path``), as systemd makes it
    before the first start."""
    q = shlex.quote
    r = root.rstrip("/")
    lines = ["set -e", "mount --make-rprivate /", f"mount --rbind {q(r)} {q(r)}",
             f"mount -t proc proc {q(r + '/proc')}", f"mount --bind /dev {q(r + '/dev')}",
             f"mount -t tmpfs -o mode=0755 tmpfs {q(r + '/run')}"]
    for host, inner in (binds or {}).items():
        target = r + "/run/" + inner.strip("/")
        lines += [f"mkdir -p {q(target)}", f"mount --bind {q(host)} {q(target)}"]
    if service.private_tmp_dirs:
        lines += [f"mount -t tmpfs -o mode=1777 tmpfs {q(r + d)}" for d in ("/tmp", "/var/tmp")]
    if service.hidden_home:
        lines += [f"mount -t tmpfs -o mode=0755,ro tmpfs {q(r + d)}" for d in ("/home", "/root")]
    if service.state_directory:
        name = service.state_directory
        if service.dynamic_user:
            # As systemd: the directory lives in /var/lib/private (root only), reached through
            # /var/lib/NAME -> private/NAME; in the service's namespace /var/lib/private is a
            # tmpfs others may cross, with the directory bound in.
            keep = r + "/run/.state"
            lines += [f"mkdir -p {q(keep)}", f"mount --bind {q(r + '/var/lib/private/' + name)} {q(keep)}",
                      f"mount -t tmpfs -o mode=0755 tmpfs {q(r + '/var/lib/private')}",
                      f"mkdir {q(r + '/var/lib/private/' + name)}",
                      f"mount --bind {q(keep)} {q(r + '/var/lib/private/' + name)}"]
        else:
            lines.append(f"mount --bind {q(r + '/var/lib/' + name)} {q(r + '/var/lib/' + name)}")
    if service.read_only_root:
        lines.append(f"mount -o remount,bind,ro {q(r)}")
    lines.append(f'exec chroot {q(r)} "$@"')
    return "\n".join(lines)


def state_directory_path(service: Service) -> tuple[str, str | None]:
    """(where the state directory really is, the symlink systemd puts at /var/lib/NAME or
    None), relative to the root."""
    name = service.state_directory or ""
    if service.dynamic_user:
        return f"var/lib/private/{name}", f"private/{name}"
    return f"var/lib/{name}", None


# Put first on PATH where the doc's commands run in the root: no systemd runs there, and
# systemd 257's systemctl refuses daemon-reload, restart ("System has not been booted with
# systemd") and `enable --now` ("--now cannot be used when systemd is not running") without it,
# while it enables units offline by itself. The start is then the test's (the unit's ExecStart).
SYSTEMCTL_STANDIN = """#!/bin/sh
case "$1" in
    daemon-reload|start|stop|restart|reload|try-restart|reload-or-restart)
        echo "systemctl $1: no systemd runs here, left out (check-host-install)" >&2
        exit 0 ;;
esac
now=
for a in "$@"; do
    shift
    if [ "$a" = --now ]; then now=1; else set -- "$@" "$a"; fi
done
[ -z "$now" ] || echo "systemctl: --now left out: no systemd runs here, the start is the test's" >&2
exec /usr/bin/systemctl "$@"
"""


def dependencies_digest(pyproject: str) -> str:
    """A digest of the project's run-time dependencies (what the install block's pip fetched):
    a root made before they changed lacks one."""
    import tomllib

    deps = tomllib.loads(pyproject)["project"]["dependencies"]
    return digest("\n".join(sorted(deps)))


def main(argv: list[str]) -> int:
    """``hostinstall.py install-block|start-block|digest DOC`` or ``deps-digest PYPROJECT``:
    print a block of docs/deploy.md or a digest, for scripts/check-host-install."""
    commands_ = ("install-block", "start-block", "digest", "deps-digest")
    if argv == ["systemctl-standin"]:
        print(SYSTEMCTL_STANDIN, end="")
        return 0
    if len(argv) != 2 or argv[0] not in commands_:
        print(f"usage: hostinstall.py {'|'.join(commands_)} FILE", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        text = fh.read()
    if argv[0] == "install-block":
        print(install_block(text), end="")
    elif argv[0] == "start-block":
        print(start_block(text), end="")
    elif argv[0] == "digest":
        print(digest(install_block(text)))
    else:
        print(dependencies_digest(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
