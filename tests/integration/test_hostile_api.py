"""Hostile input at the API: the REST API fuzzed from its own OpenAPI document
(schemathesis), oversized and flooding WebSocket clients, and replayed or
forged credentials. Real daemon, real PostgreSQL, real sandbox Asterisk.

The fuzz run here is short and derandomized (the same cases every run);
``CTI_FUZZ_EXAMPLES=N`` runs N fresh random cases per operation and mode
instead (the long run, docs/hostile-input.md).
"""
from __future__ import annotations

import asyncio
import json
import os

import aiohttp
import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api import accounts
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, cli, login, url

_LONG = int(os.environ.get("CTI_FUZZ_EXAMPLES", "0"))
EXAMPLES = _LONG or 4
# Logging out would end the session the fuzzer uses (tested below instead).
SKIP = {("POST", "/api/logout")}
ROLES = ("admin", "supervisor", "agent")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def daemon_with_users(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    for role in ROLES:
        await add_user(database, f"h-{role}", role, "a1" if role == "agent" else None)
    try:
        yield d
    finally:
        await d.stop()


def fuzz(doc: dict, base: str, headers: dict[str, dict[str, str]]) -> list[str]:
    """Every operation, with valid and with invalid inputs, as each role: the
    failures found (empty when none). Runs in a thread: it blocks."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue
        for mode, checks in ((GenerationMode.POSITIVE, [not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance]),
                             (GenerationMode.NEGATIVE, [not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance,
                                                        negative_data_rejection])):
            for role, creds in headers.items():
                @settings(max_examples=EXAMPLES, derandomize=not _LONG, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=op.as_strategy(generation_mode=mode))
                def run(case) -> None:
                    response = case.call(base_url=base, headers=creds, timeout=30)
                    case.validate_response(response, checks=checks)

                try:
                    run()
                except Unsatisfiable:
                    break   # nothing to make invalid (no parameters, no body)
                except (Exception, BaseExceptionGroup) as exc:  # collected, reported all at once
                    failures.append(f"{op.label} ({mode.value}, {role}): {str(exc)[:1500]}")
    return failures


async def test_the_api_fuzzed_from_its_openapi_document_answers_by_its_schema(daemon_with_users, http):
    """No 5xx, every answer as documented (status, content type, schema), invalid input a 4xx."""
    d = daemon_with_users
    headers = {role: bearer(await login(http, d, f"h-{role}")) for role in ROLES}
    async with http.get(url(d, "/openapi.json")) as r:
        doc = await r.json()
    failures = await asyncio.to_thread(fuzz, doc, url(d, ""), headers)
    assert not failures, "\n\n".join(failures)
    for role in ROLES:   # the fuzzer's sessions survived it (nothing logged them out)
        async with http.get(url(d, "/api/me"), headers=headers[role]) as r:
            assert r.status == 200
