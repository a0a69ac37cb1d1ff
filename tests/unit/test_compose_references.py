"""compose.yaml checked statically: no container runs on our machines (docs/deploy.md, "Compose"),
so what `docker compose config` and a first `up` would find is checked here instead: every
image is built from a file that exists or named, every secret a service takes is declared and
read by something under that name, every variable a service is given is one its program reads,
every variable compose interpolates is documented, every volume and bind-mounted file exists,
every service waited for has a health check, and the shared network namespace is consistent."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cti.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOC = (ROOT / "docs" / "deploy.md").read_text()


def build_file(service: dict) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    build = {"context": build} if isinstance(build, str) else build
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_built_from_an_existing_file_with_its_arguments(name):
    service = SERVICES[name]
    assert service.get("image"), f"{name}: no image (compose would name it after the directory)"
    path = build_file(service)
    if path is None:
        return
    assert path.is_file(), f"{name}: builds from {path}, which does not exist"
    declared = set(re.findall(r"^ARG (\w+)", path.read_text(), re.M))
    given = set((service["build"].get("args") or {}))
    assert given <= declared, f"{name}: build args {sorted(given - declared)} are not ARGs of {path.name}"


def test_every_secret_is_declared_used_and_made_by_the_documented_commands():
    declared = set(COMPOSE["secrets"])
    used = {s for service in SERVICES.values() for s in service.get("secrets", [])}
    assert used == declared, f"declared but unused: {sorted(declared - used)}; used, undeclared: {sorted(used - declared)}"
    # docs/deploy.md's compose commands make each file compose reads.
    block = DOC[DOC.index("## Compose"):]
    made = set(re.findall(r"> secrets/(\w+)", block))
    files = {Path(s["file"]).name for s in COMPOSE["secrets"].values()}
    assert files <= made, f"the doc's commands do not make {sorted(files - made)}"


def test_each_secret_is_read_under_its_name_by_the_service_that_takes_it():
    fields = set(Settings.model_fields)
    # The daemon: CTI_SECRETS_DIR files named like the variables, in lower case.
    for secret in SERVICES["cti"]["secrets"]:
        assert secret.startswith("cti_") and secret.removeprefix("cti_") in fields, \
            f"the daemon has no setting {secret.upper()}"
    # Asterisk: its entrypoint writes them into its configuration.
    entrypoint = (ROOT / "deploy" / "asterisk" / "entrypoint").read_text()
    for secret in SERVICES["asterisk"]["secrets"]:
        assert f"/run/secrets/{secret}" in entrypoint, f"deploy/asterisk/entrypoint never reads {secret}"
    # PostgreSQL: the official image's *_FILE variables.
    pg = SERVICES["postgres"]
    for key, value in pg["environment"].items():
        if key.endswith("_FILE"):
            assert value.startswith("/run/secrets/") and value.rsplit("/", 1)[1] in pg["secrets"], key


def test_every_variable_a_service_is_given_is_one_its_program_reads():
    fields = set(Settings.model_fields)
    unknown = [k for k in SERVICES["cti"].get("environment", {})
               if k not in ("CTI_SECRETS_DIR", "CTI_CONFIG") and k.removeprefix("CTI_").lower() not in fields]
    assert unknown == [], f"the daemon has no setting for {unknown}"
    entrypoint = (ROOT / "deploy" / "asterisk" / "entrypoint").read_text()
    for key in SERVICES["asterisk"].get("environment", {}):
        assert "${" + key in entrypoint, f"deploy/asterisk/entrypoint never reads {key}"
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    for key in SERVICES["proxy"].get("environment", {}):
        assert "{$" + key in caddyfile, f"deploy/Caddyfile never reads {key}"


def test_every_interpolated_variable_is_documented():
    text = (ROOT / "compose.yaml").read_text()
    names = set(re.findall(r"\$\{(\w+)", text))
    assert names, "compose.yaml interpolates nothing?"
    missing = sorted(n for n in names if n not in DOC)
    assert missing == [], f"docs/deploy.md does not mention {missing}"


def test_volumes_are_declared_and_bind_mounted_files_exist():
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind-mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_services_waited_for_have_health_checks():
    for name, service in SERVICES.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on {target}, which is not a service"
            if condition.get("condition") == "service_healthy":
                dockerfile = build_file(SERVICES[target])
                has = "healthcheck" in SERVICES[target] or (
                    dockerfile is not None and re.search(r"^HEALTHCHECK ", dockerfile.read_text(), re.M))
                assert has, f"{name} waits for {target} to be healthy, which has no health check"


def test_services_in_asterisks_namespace_publish_nothing_and_reach_each_other_on_loopback():
    shared = [n for n, s in SERVICES.items() if s.get("network_mode") == "service:asterisk"]
    assert sorted(shared) == ["cti", "proxy"]
    assert all("ports" not in SERVICES[n] for n in shared)
    # The Caddyfile's defaults are where the daemon and Asterisk's HTTP listen in that namespace.
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    http_conf = (ROOT / "asterisk-config" / "http.conf").read_text()
    assert "{$CTI_HTTP:127.0.0.1:%d}" % Settings.model_fields["http_port"].default in caddyfile
    assert re.search(r"^bindaddr = 127\.0\.0\.1$", http_conf, re.M) and re.search(r"^bindport = 8088$", http_conf, re.M)
    assert "{$ASTERISK_HTTP:127.0.0.1:8088}" in caddyfile


def test_the_daemons_image_user_owns_the_secrets_the_doc_chowns():
    uid = re.search(r"useradd [^\n]*--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1)
    block = DOC[DOC.index("## Compose"):]
    chowns = re.findall(r"chown (\d+):(\d+) ((?:secrets/\w+ ?)+)", block)
    assert chowns and all(u == g == uid for u, g, _ in chowns)
    owned = {Path(p).name for _, _, paths in chowns for p in paths.split()}
    assert owned == set(SERVICES["cti"]["secrets"]), "the daemon's secrets, and only they, go to its user"


def _compose_cli() -> list[str] | None:
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_itself_accepts_the_file_and_refuses_it_without_the_site_name(tmp_path):
    """Where a compose program is installed (`docker compose`, or Debian's docker-compose), its
    `config` (schema, interpolation; no engine needed) accepts the file once CTI_SITE is set."""
    import os
    import subprocess

    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose program here (apt install --no-install-recommends docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTI_", "COMPOSE_"))}
    # A copy alone in its directory: an operator's .env in this checkout must not answer for it.
    (tmp_path / "compose.yaml").write_text((ROOT / "compose.yaml").read_text())
    run = [*cli, "-f", str(tmp_path / "compose.yaml"), "config"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode != 0 and "set CTI_SITE" in out.stdout + out.stderr, out.stdout + out.stderr
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**env, "CTI_SITE": "cti.example.com"})
    assert out.returncode == 0, out.stdout + out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert set(resolved["services"]) == set(SERVICES)
    assert resolved["services"]["cti"]["environment"]["CTI_PHONE_WS_URL"] == "wss://cti.example.com/sip"


def test_the_docs_compose_commands_make_the_secrets_compose_reads(tmp_path):
    """docs/deploy.md's compose block as written, but for `compose up` (no engine here): every
    secret file compose.yaml names, readable by its owner only, the daemon's owned by the image's
    user, the database URL holding PostgreSQL's password; `.env` names the site."""
    import os
    import stat
    import subprocess
    from urllib.parse import urlsplit

    if os.geteuid() != 0:
        pytest.skip("the doc's chown needs root")
    block = re.search(r"```sh\n(.*?)```", DOC[DOC.index("## Compose"):], re.S).group(1)
    lines = block.splitlines()
    assert lines[-1].startswith("docker compose up"), "the block ends by starting the stack"
    out = subprocess.run(["/bin/bash", "-e", "-c", "\n".join(lines[:-1])], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    daemon = set(SERVICES["cti"]["secrets"])
    for name, secret in COMPOSE["secrets"].items():
        path = tmp_path / secret["file"]
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, f"{name} is readable by others"
        assert st.st_uid == (10001 if name in daemon else 0), f"{name} belongs to uid {st.st_uid}"
    url = urlsplit((tmp_path / "secrets" / "cti_database_url").read_text())
    assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/cti")
    assert url.password == (tmp_path / "secrets" / "db_password").read_text().strip() and len(url.password) == 48
    assert (tmp_path / ".env").read_text().strip() == "CTI_SITE=cti.example.com"


def test_the_published_rtp_range_is_the_one_asterisk_is_given():
    entrypoint = (ROOT / "deploy" / "asterisk" / "entrypoint").read_text()
    default = re.search(r"rtp=\$\{CTI_RTP_PORTS:-(\d+-\d+)\}", entrypoint).group(1)
    udp = [p for p in SERVICES["asterisk"]["ports"] if p.endswith("/udp") and "-" in p]
    assert udp == [f"{default}:{default}/udp"]
    assert "CTI_RTP_PORTS" not in (SERVICES["asterisk"].get("environment") or {}), \
        "a range given here must be published here too"
    exposed = re.search(r"^EXPOSE (.*)$", (ROOT / "deploy" / "asterisk" / "Containerfile").read_text(), re.M)
    assert f"{default}/udp" in exposed.group(1).split()
