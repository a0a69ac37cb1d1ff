"""`cti check --production`'s judgement (cti/prodcheck.py): settings and facts in, findings out."""
from __future__ import annotations

import pytest

from cti.config import load_settings
from cti.prodcheck import Facts, production_findings, render, dangerous_actions

GOOD_AMI = "9f2c41d07be85a3e6f10c9d2"
GOOD_HOOK = "4e7a90b13cd25f68a0e1b7c3"
SANDBOX = frozenset({"sandbox-ami-0123456789ab", "sandbox-hook-0123456789ab"})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)


def settings(**overrides):
    values = dict(ami_secret=GOOD_AMI, hook_secret=GOOD_HOOK,
                  database_url="postgresql://cti:Zq81xvTr0pLm55Kd@127.0.0.1:5432/cti")
    values.update(overrides)
    return load_settings(**values)


def refused(findings):
    return [f.text for f in findings if f.level == "refuse"]


def warned(findings):
    return [f.text for f in findings if f.level == "warn"]


def test_a_sound_loopback_setup_behind_a_proxy_has_no_finding():
    facts = Facts(ami_dangerous_actions=(), pending_migrations=(),
                  sandbox_secrets=SANDBOX, config_file=("/etc/cti/cti.toml", 0o100640, 'ami_secret = "x"\n'))
    assert production_findings(settings(phone_ws_url="wss://cti.example.com/ws"), facts) == []


@pytest.mark.parametrize("secret,word", [("", "is not set"), ("change-me", "known default"),
                                         ("short1", "weak"), ("aaaaaaaaaaaaaaaaaaaa", "weak")])
def test_empty_default_or_weak_ami_secret_is_refused_once(secret, word):
    found = [t for t in refused(production_findings(settings(ami_secret=secret))) if t.startswith("ami_secret")]
    assert len(found) == 1 and word in found[0]


def test_hooks_without_a_secret_or_with_a_weak_one_are_refused_and_off_hooks_need_none():
    assert any("hook_secret (CTI_HOOK_SECRET) is not set" in t
               for t in refused(production_findings(settings(hook_secret=None))))
    assert any("hook_secret (CTI_HOOK_SECRET) is weak" in t
               for t in refused(production_findings(settings(hook_secret="abc123"))))
    assert not any("hook" in t for t in refused(production_findings(settings(hooks=False, hook_secret=None))))


def test_a_weak_messaging_secret_is_refused_and_none_is_fine():
    assert any("messaging_secret (CTI_MESSAGING_SECRET) is weak" in t
               for t in refused(production_findings(settings(messaging_secret="abc123"))))
    assert not any("messaging" in t for t in refused(production_findings(settings())))


def test_a_default_database_password_is_refused():
    found = refused(production_findings(settings(database_url="postgresql://cti:postgres@127.0.0.1/cti")))
    assert any(t.startswith("database_url") for t in found)


def test_the_sandbox_users_and_secrets_are_refused():
    assert any("sandbox user" in t for t in refused(production_findings(settings(ami_user="cti-demo"))))
    facts = Facts(sandbox_secrets=SANDBOX)
    assert any("sandbox secrets" in t for t in
               refused(production_findings(settings(hook_secret="sandbox-hook-0123456789ab"), facts)))
    assert not any("sandbox" in t for t in refused(production_findings(settings(), facts)))


def test_only_actions_that_a_dangerous_right_alone_admits_count():
    headers = {"Response": "Success", "ActionID": "7",
               "Ping": "Keepalive command. (Priv: <none>)",
               "Originate": "Originate a call. (Priv: originate,all)",
               "CoreShowChannels": "List currently active channels. (Priv: system,reporting,all)",
               "GetConfig": "Retrieve configuration. (Priv: system,config,all)",
               "Command": "Execute Asterisk CLI Command. (Priv: command,all)"}
    assert dangerous_actions(headers) == ("Command", "GetConfig")
    del headers["Command"], headers["GetConfig"]
    assert dangerous_actions(headers) == ()


def test_an_ami_user_that_may_run_a_dangerous_action_is_refused():
    found = refused(production_findings(settings(), Facts(ami_dangerous_actions=("Command", "UpdateConfig"))))
    assert len(found) == 1 and "may run Command, UpdateConfig" in found[0]


@pytest.mark.parametrize("host,level", [("0.0.0.0", "refuse"), ("::", "refuse"), ("93.184.216.34", "refuse"),
                                        ("10.1.2.3", "warn"), ("cti.internal", "warn"),
                                        ("127.0.0.1", None), ("::1", None), ("localhost", None)])
def test_plain_http_off_loopback_is_refused_on_public_or_every_interface_and_warned_on_private(host, level):
    found = [f for f in production_findings(settings(http_host=host)) if f.text.startswith("http_host")]
    assert [f.level for f in found] == ([level] if level else [])
    if level == "refuse":
        assert "deploy/Caddyfile" in found[0].text


def test_fastagi_off_loopback_and_browser_phones_on_plain_ws_are_refused():
    found = refused(production_findings(settings(agi_host="0.0.0.0",
                                                 phone_ws_url="ws://pbx.example.com:8088/ws")))
    assert [t.split(" ")[0] for t in found] == ["agi_host", "phone_ws_url"]


@pytest.mark.parametrize("host,level", [("10.77.0.1", "warn"), ("0.0.0.0", "warn"), ("1.2.3.4", "refuse"),
                                        ("127.0.0.1", None)])
def test_with_several_asterisk_nodes_fastagi_on_a_private_address_is_warned_not_refused(host, level):
    nodes = [{"name": n, "host": "127.0.0.1", "secret": GOOD_AMI} for n in ("a", "b")]
    found = [f for f in production_findings(settings(agi_host=host, ami_nodes=nodes)) if f.text.startswith("agi_host")]
    assert [f.level for f in found] == ([level] if level else [])
    if level == "warn":
        assert "nodes' addresses" in found[0].text


def test_debug_logging_open_metrics_and_internal_webhooks_are_warned():
    found = warned(production_findings(settings(log_level="debug", metrics_access="open",
                                                webhook_allow="10.0.0.0/8, 93.184.216.34")))
    assert [t.split(" ")[0] for t in found] == ["metrics_access", "webhook_allow", "log_level"]
    assert any("10.0.0.0/8" in t and "93.184.216.34" not in t for t in found)


def test_embedded_database_remote_database_without_tls_and_pending_migrations_are_warned():
    assert any(t.startswith("database_url (CTI_DATABASE_URL) is unset")
               for t in warned(production_findings(settings(database_url=None))))
    remote = "postgresql://cti:Zq81xvTr0pLm55Kd@db.example.com/cti"
    assert any("sslmode=require" in t for t in warned(production_findings(settings(database_url=remote))))
    assert not warned(production_findings(settings(database_url=remote + "?sslmode=verify-full")))
    found = warned(production_findings(settings(), Facts(pending_migrations=("0031", "0032"))))
    assert found == ["2 database migration(s) pending (0031, 0032): run `cti migrate` before the release"]


def test_a_world_readable_config_file_holding_a_secret_is_refused():
    facts = Facts(config_file=("/etc/cti/cti.toml", 0o100644, 'hook_secret = "x"\n'))
    assert any("chmod 600" in t for t in refused(production_findings(settings(), facts)))


def test_refusals_come_first_and_no_line_shows_a_secret():
    s = settings(ami_secret="short1", log_level="debug", http_host="0.0.0.0",
                 database_url="postgresql://cti:Zq81xvTr0pLm55Kd@db.example.com/cti")
    lines = render(production_findings(s))
    assert lines[0].startswith("REFUSED: ") and lines[-1].startswith("warning: ")
    levels = [line.split(":")[0] for line in lines]
    assert levels == sorted(levels, key=lambda x: x != "REFUSED")
    assert not any("short1" in line or "Zq81xvTr0pLm55Kd" in line for line in lines)


def test_a_world_readable_secret_file_is_refused_and_other_files_are_not_judged():
    facts = Facts(secret_files=(("/run/secrets/cti_ami_secret", 0o100644), ("/run/secrets/cti_hook_secret", 0o100600),
                                ("/run/secrets/cti_log_level", 0o100644)))
    found = refused(production_findings(settings(), facts))
    assert found == ["secret file '/run/secrets/cti_ami_secret' is readable by every user: "
                     "chmod 600 it (or 640 with the daemon's group)"]


def test_a_mail_receiver_off_loopback_is_warned():
    assert not [w for w in warned(production_findings(settings(mail_listen="127.0.0.1:2525"), Facts()))
                if "mail_listen" in w]
    [w] = [w for w in warned(production_findings(settings(mail_listen="0.0.0.0:25"), Facts())) if "mail_listen" in w]
    assert "bind 127.0.0.1 behind the site's MTA" in w
