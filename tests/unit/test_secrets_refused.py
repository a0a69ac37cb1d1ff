"""`cti serve` and `cti check` refuse secrets that ship anywhere, and config files others may read."""
from __future__ import annotations

import pytest
import structlog

from server import cli
from cti.config import config_file_problem, default_secret_problems, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)
    yield
    # cli.main configured logging onto this test's captured stderr, closed once it ends: the
    # next test to log at info would fail writing to it.
    structlog.reset_defaults()


@pytest.mark.parametrize("secret", ["", "cti-secret", "change-me", "CHANGE-ME", "cti-demo-secret"])
def test_an_empty_or_known_ami_secret_is_named(secret):
    (problem,) = default_secret_problems(load_settings(ami_secret=secret))
    assert problem.startswith("ami_secret (CTI_AMI_SECRET)")


def test_a_known_database_password_is_named_and_a_random_secret_passes():
    s = load_settings(ami_secret="k3P9-random-enough", database_url="postgresql://cti:change-me@db:5432/cti")
    assert [p.split(" ")[0] for p in default_secret_problems(s)] == ["database_url"]
    good = load_settings(ami_secret="k3P9-random-enough", database_url="postgresql://cti:Zq81xv@db:5432/cti")
    assert default_secret_problems(good) == []


@pytest.mark.parametrize("command", ["serve", "check"])
def test_serve_and_check_refuse_the_old_shipped_secret_with_exit_2(command, monkeypatch, capsys):
    monkeypatch.setenv("CTI_AMI_SECRET", "cti-secret")
    assert cli.main([command]) == 2          # before any connection is tried
    err = capsys.readouterr().err
    assert "ami_secret (CTI_AMI_SECRET) is a known default" in err and "cti-secret" not in err


def test_check_refuses_when_no_secret_is_set(monkeypatch, capsys):
    assert cli.main(["check"]) == 2
    assert "CTI_AMI_SECRET) is not set" in capsys.readouterr().err


def test_a_world_readable_config_file_with_a_secret_is_refused(tmp_path, monkeypatch, capsys):
    text = 'ami_secret = "k3P9-random-enough"\n'
    assert "chmod 600" in config_file_problem("/etc/cti.toml", 0o100644, text)
    assert config_file_problem("/etc/cti.toml", 0o100640, text) is None
    assert config_file_problem("/etc/cti.toml", 0o100644, 'log_level = "debug"\n') is None
    conf = tmp_path / "cti.toml"
    conf.write_text(text)
    conf.chmod(0o644)
    assert cli.main(["--config", str(conf), "check"]) == 2
    assert "readable by every user" in capsys.readouterr().err


def test_secrets_come_from_files_in_cti_secrets_dir_below_the_environment(tmp_path, monkeypatch):
    """compose secrets (/run/secrets) and systemd credentials: one file per setting, newline dropped."""
    (tmp_path / "cti_ami_secret").write_text("k3P9-from-a-file\n")
    (tmp_path / "cti_database_url").write_text("postgresql://cti:Zq81xv@db:5432/cti\n")
    monkeypatch.setenv("CTI_SECRETS_DIR", str(tmp_path))
    s = load_settings()
    assert s.ami_secret.get_secret_value() == "k3P9-from-a-file"
    assert s.database_url.get_secret_value() == "postgresql://cti:Zq81xv@db:5432/cti"
    monkeypatch.setenv("CTI_AMI_SECRET", "k3P9-from-the-environment")
    assert load_settings().ami_secret.get_secret_value() == "k3P9-from-the-environment"
    monkeypatch.setenv("CTI_SECRETS_DIR", str(tmp_path / "absent"))
    assert load_settings().database_url is None


def test_serve_refuses_a_world_readable_secret_file(tmp_path, monkeypatch, capsys):
    secret = tmp_path / "cti_ami_secret"
    secret.write_text("k3P9-from-a-file\n")
    secret.chmod(0o644)
    monkeypatch.setenv("CTI_SECRETS_DIR", str(tmp_path))
    assert cli.main(["serve"]) == 2          # before any connection is tried
    err = capsys.readouterr().err
    assert "cti_ami_secret' is readable by every user" in err and "k3P9" not in err
