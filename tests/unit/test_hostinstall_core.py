"""The pure part of the host-install check (tests/integration/hostinstall.py): the doc's blocks as
the check reads them, and what systemd would do with the unit and the doc's systemd-run line."""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from tests.integration.hostinstall import (
    DYNAMIC_UID,
    Service,
    command_starting,
    commands,
    drop_privileges,
    install_block,
    namespace_script,
    parse_environment_file,
    parse_unit,
    section,
    service_environment,
    shell_blocks,
    start_block,
    state_directory_path,
    systemd_run_service,
    unit_service,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
UNIT = (ROOT / "deploy" / "systemd" / "cti.service").read_text(encoding="utf-8")


def test_the_doc_has_an_install_block_and_a_start_block_in_its_host_install_section():
    install, start = install_block(DOC), start_block(DOC)
    assert install != start
    assert install.startswith("apt update\napt install ") and "systemctl daemon-reload" in install
    assert "cti check --production" in start and "systemctl enable --now cti" in start


def test_the_install_block_installs_what_its_own_commands_use():
    """openssl makes the secrets: a minimal Debian does not have it (found on a debootstrap root)."""
    apt = [shlex.split(c) for c in commands(install_block(DOC)) if c.startswith("apt install")][0]
    assert {"python3-venv", "libjemalloc2", "openssl"} <= set(apt[2:])
    assert "openssl rand" in install_block(DOC)


def test_the_docs_wheel_is_the_version_pyproject_builds():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    names = re.findall(r"dist/open_cti-(\S+?)-py3-none-any\.whl", install_block(DOC))
    assert names == [version]


def test_the_docs_check_runs_as_the_unit_will():
    """The doc's systemd-run line: the unit's user kind, state directory and secrets file."""
    check = systemd_run_service(command_starting(start_block(DOC), "systemd-run"))
    unit = unit_service(UNIT)
    assert check.argv == ("/opt/cti/venv/bin/cti", "check", "--production")
    assert check.dynamic_user == unit.dynamic_user is True
    assert check.state_directory == unit.state_directory == "cti"
    assert check.environment_files == unit.environment_files == ("/etc/cti/secrets.env",)
    shared = {"CTI_CONFIG", "CTI_STATE_DIR"}
    assert {k: v for k, v in check.environment if k in shared} == {k: v for k, v in unit.environment if k in shared}


def test_the_unit_as_the_emulation_reads_it():
    unit = unit_service(UNIT)
    assert unit.argv == ("/opt/cti/venv/bin/cti", "serve")
    assert unit.notify and unit.no_new_privileges and unit.drop_capabilities and unit.read_only_root
    assert (unit.umask, unit.state_directory_mode, unit.stop_timeout) == (0o077, 0o700, 60.0)
    # What only systemd can apply is named, not silently dropped.
    assert {"SystemCallFilter", "MemoryMax", "RestrictAddressFamilies", "Restart"} <= set(unit.ignored)


def test_environment_files_win_over_environment_and_systemd_adds_its_own():
    service = Service(argv=("x",), environment=(("A", "unit"), ("B", "unit")), environment_files=("/f", "-/missing"),
                      dynamic_user=True, state_directory="cti", notify=True)
    env = service_environment(service, {"/f": "# comment\nB='file'\n\nC=3\n"}, notify_socket="@sock")
    assert env["A"] == "unit" and env["B"] == "file" and env["C"] == "3"
    assert (env["HOME"], env["STATE_DIRECTORY"], env["NOTIFY_SOCKET"]) == ("/", "/var/lib/cti", "@sock")
    assert "NOTIFY_SOCKET" not in service_environment(Service(argv=("x",)), {}, notify_socket="@sock")
    with pytest.raises(ValueError, match="does not exist"):
        service_environment(Service(argv=("x",), environment_files=("/nope",)), {})


def test_an_environment_file_line_that_is_not_name_value_is_refused():
    assert parse_environment_file('X="a b"\n;c\n') == [("X", "a b")]
    with pytest.raises(ValueError):
        parse_environment_file("export X=1\n")


def test_systemd_run_options_become_properties_and_unknown_ones_are_refused():
    s = systemd_run_service(shlex.split("systemd-run --pty --wait -p DynamicUser=yes -p UMask=0027 "
                                        "--setenv=A=1 -E 'B=two words' /bin/prog arg"))
    assert s.argv == ("/bin/prog", "arg") and s.dynamic_user and s.umask == 0o027
    assert s.environment == (("A", "1"), ("B", "two words"))
    with pytest.raises(ValueError, match="not emulated"):
        systemd_run_service(["systemd-run", "--user", "/bin/prog"])
    with pytest.raises(ValueError, match="without a command"):
        systemd_run_service(["systemd-run", "-p", "DynamicUser=yes"])


def test_a_unit_the_emulation_cannot_honour_is_refused():
    with pytest.raises(ValueError, match="prefix"):
        unit_service("[Service]\nExecStart=-/bin/prog\n")
    with pytest.raises(ValueError, match="one ExecStart"):
        unit_service("[Service]\nExecStart=/a\nExecStart=/b\n")
    with pytest.raises(ValueError):
        parse_unit("[Service]\nRestart always\n")
    assert parse_unit("[Service]\nCapabilityBoundingSet=\nX=a \\\n  b\n")["Service"] == \
        {"CapabilityBoundingSet": [""], "X": ["a  b"]}


def test_the_privilege_drop_ends_in_execstart_as_the_dynamic_user_with_the_units_umask():
    unit = unit_service(UNIT)
    cmd = drop_privileges(unit, {"K": "v"})
    assert cmd[0] == "/usr/bin/setpriv" and f"--reuid={DYNAMIC_UID}" in cmd and "--no-new-privs" in cmd
    assert "--bounding-set=-all" in cmd and "K=v" in cmd
    assert cmd[-3:] == ["sh", "/opt/cti/venv/bin/cti", "serve"] and "umask 0077" in cmd[-4]
    assert "--reuid" not in " ".join(drop_privileges(Service(argv=("x",)), {}))


def test_the_namespace_of_a_dynamic_user_is_read_only_but_for_its_state_and_private_tmp():
    unit = unit_service(UNIT)
    script = namespace_script("/r", unit)
    lines = script.splitlines()
    assert lines[-1] == 'exec chroot /r "$@"' and lines[-2] == "mount -o remount,bind,ro /r"
    assert "mount -t tmpfs -o mode=1777 tmpfs /r/tmp" in lines and "mount -t tmpfs -o mode=0755,ro tmpfs /r/home" in lines
    assert "mount --bind /r/run/.state /r/var/lib/private/cti" in lines
    assert state_directory_path(unit) == ("var/lib/private/cti", "private/cti")
    plain = namespace_script("/r", Service(argv=()))
    assert "remount" not in plain and "/r/tmp" not in plain


def test_commands_join_continued_lines_and_drop_comments():
    block = "a b \\\n  c   # note\n# only a comment\n\nd 'e f'\n"
    assert commands(block) == ["a b c", "d 'e f'"]
    assert shell_blocks("x\n```sh\none\n```\n```\nnot sh\n```\n") == ["one\n"]
    with pytest.raises(ValueError):
        section("# Title\n", "## Host install")
