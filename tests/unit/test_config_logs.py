"""Configuration and logging: clear errors naming the field, secrets never shown."""
from __future__ import annotations

import io
import json

import pytest
import structlog
from structlog.testing import capture_logs

from cti import logs
from server.cli import main
from cti.config import load_settings
from cti.errors import ConfigError
from cti.events import Bus, CallEvent, CallStarted, CallView


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os
    for key in list(os.environ):
        if key.startswith("CTI_"):
            monkeypatch.delenv(key)
    yield
    structlog.reset_defaults()


def test_environment_overrides_toml_file(tmp_path, monkeypatch):
    cfg = tmp_path / "cti.toml"
    cfg.write_text('ami_host = "10.1.2.3"\nami_port = 5039\nhttp_port = 9000\n')
    monkeypatch.setenv("CTI_HTTP_PORT", "9100")
    s = load_settings(cfg)
    assert (s.ami_host, s.ami_port, s.http_port) == ("10.1.2.3", 5039, 9100)


def test_invalid_value_names_the_field_and_its_variable(monkeypatch):
    monkeypatch.setenv("CTI_AMI_PORT", "70000")
    with pytest.raises(ConfigError, match=r"ami_port \(CTI_AMI_PORT\)"):
        load_settings()


def test_unknown_key_in_toml_is_refused(tmp_path):
    cfg = tmp_path / "cti.toml"
    cfg.write_text('ami_hots = "typo"\n')
    with pytest.raises(ConfigError, match="ami_hots"):
        load_settings(cfg)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_broken_toml_is_a_config_error(tmp_path):
    cfg = tmp_path / "cti.toml"
    cfg.write_text("ami_host = \n")
    with pytest.raises(ConfigError, match="cti.toml"):
        load_settings(cfg)


@pytest.mark.parametrize("var,value", [("CTI_AMI_HOST", "evil\r\nAction: x"),
                                        ("CTI_DATABASE_URL", "mysql://x"),
                                        ("CTI_LOG_FORMAT", "xml")])
def test_cli_exits_2_on_invalid_config_with_one_message(monkeypatch, capsys, var, value):
    monkeypatch.setenv(var, value)
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cti: invalid setting") and var in err


def test_secrets_are_masked_in_repr_and_dumps(monkeypatch):
    monkeypatch.setenv("CTI_AMI_SECRET", "hunter2-ami")
    monkeypatch.setenv("CTI_DATABASE_URL", "postgresql://u:hunter2-db@db/cti")
    s = load_settings()
    text = repr(s) + str(s.model_dump()) + s.model_dump_json()
    assert "hunter2" not in text
    assert s.ami_secret.get_secret_value() == "hunter2-ami"


def test_redact_processor_masks_keys_that_name_secrets():
    out = logs.redact_secrets(None, "info", {"event": "x", "secret": "a", "ami_secret": "b",
                                             "Password": "c", "database_url": "d", "caller": "ok"})
    assert out == {"event": "x", "secret": logs.MASK, "ami_secret": logs.MASK, "Password": logs.MASK,
                   "database_url": logs.MASK, "caller": "ok"}


def test_json_logs_mask_secrets_end_to_end():
    buf = io.StringIO()
    logs.configure("json", "info", stream=buf)
    structlog.get_logger("t").info("login", username="cti", secret="hunter2")
    line = json.loads(buf.getvalue())
    assert line["secret"] == logs.MASK and line["username"] == "cti" and "hunter2" not in buf.getvalue()


def _event() -> CallEvent:
    view = CallView("call-1", "ringing", "inbound", "+100", "A", "5000", 1.0, None, None, None, None,
                    None, None, None, None, None, False, False, 1)
    return CallStarted("call-1", 1.0, 1, view, channel="PJSIP/trunk-00000001")


def test_every_line_logged_while_handling_a_call_event_carries_its_call_id():
    bus = Bus()
    bus.subscribe(lambda ev: structlog.get_logger("sub").info("did something"))
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as captured:
        bus.publish(_event())
    assert captured and all(line.get("call_id") == "call-1" for line in captured)


def test_a_failing_subscriber_is_logged_and_the_next_still_runs():
    bus = Bus()
    seen = []
    bus.subscribe(lambda ev: 1 / 0)
    bus.subscribe(seen.append)
    with capture_logs() as captured:
        bus.publish(_event())
    assert len(seen) == 1 and bus.errors == 1
    assert any(line["event"] == "subscriber failed" for line in captured)


def test_call_view_as_dict_is_asdict_without_the_copy():
    from dataclasses import asdict

    from cti.events import CallView

    view = CallView("call-1", "talking", "inbound", "+100", "A", "5000", 1.0, 2.0, "sales", 1.5, 2.0, "a1",
                    2.0, None, None, None, False, False, 2)
    assert view.as_dict() == asdict(view)
    assert list(view.as_dict()) == list(asdict(view))


async def test_a_malformed_request_leaves_one_json_object_per_line_in_the_log():
    """aiohttp logs a malformed request with its traceback through the standard library:
    that record, too, is one JSON line (the traceback a field of it)."""
    import asyncio
    import logging

    from aiohttp import web

    buf = io.StringIO()
    logs.configure("json", "info", stream=buf)
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            assert (await asyncio.wait_for(reader.read(), 5)).split(b" ")[1] == b"400"
            writer.close()
    finally:
        await runner.cleanup()
        for h in [h for h in logging.getLogger().handlers if isinstance(h, getattr(logs, "_StdlibHandler", ()))]:
            logging.getLogger().removeHandler(h)
    lines = buf.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]      # every line, or this raises
    errors = [p for p in parsed if p.get("logger") == "aiohttp.server"]
    assert len(errors) == 2 and all("exception" in p and p["level"] == "error" for p in errors)
    assert "Traceback" in errors[0]["exception"] and len(lines) == len(parsed)


def test_serve_without_a_hook_secret_exits_2_naming_it(monkeypatch, capsys, tmp_path):
    """The hooks do not run open: no secret, no daemon (unless the hooks are turned off)."""
    monkeypatch.delenv("CTI_HOOK_SECRET", raising=False)
    monkeypatch.delenv("CTI_CONFIG", raising=False)
    monkeypatch.setenv("CTI_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CTI_AMI_SECRET", "a-random-secret-of-this-machine")  # past the AMI secret's own check
    import logging
    try:
        assert main(["serve"]) == 2
    finally:    # main configured logging onto this test's captured stderr
        for h in [h for h in logging.getLogger().handlers if isinstance(h, logs._StdlibHandler)]:
            logging.getLogger().removeHandler(h)
    err = capsys.readouterr().err
    assert "hook_secret (CTI_HOOK_SECRET)" in err and "CTI_HOOKS=false" in err
