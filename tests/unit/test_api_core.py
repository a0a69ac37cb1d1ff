"""The API's pure parts: credentials and roles, passwords, metrics text, the OpenAPI
document; and the registry's wrapper served on a real socket with a plain
authenticator function (no database)."""
from __future__ import annotations

import argon2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import prometheus as m
from api.auth import (
    ADMIN, EVERYONE, STAFF, BadCredential, Passwords, Principal, admits, credential_from_headers, digest,
    new_api_key, new_session_token, needs_agent_team, over_agent,
)
from api.errors import ApiError
from api.openapi import openapi_path, render_docs
from api.registry import API, Day, Instant, setup_registry

# -- credentials -------------------------------------------------------------------


def test_tokens_and_keys_are_told_apart_by_prefix_and_stored_as_digests():
    token, key = new_session_token(), new_api_key()
    assert credential_from_headers({"Authorization": f"Bearer {token}"}).kind == "session"
    assert credential_from_headers({"Authorization": f"bearer {key}"}).kind == "api_key"
    cred = credential_from_headers({"X-API-Key": key})
    assert cred.kind == "api_key" and cred.digest == digest(key) and len(cred.digest) == 32
    assert key not in repr(cred)


def test_no_credential_is_none_and_a_malformed_one_is_refused():
    assert credential_from_headers({}) is None
    for headers in ({"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer cts_short"}, {"X-API-Key": new_session_token()},
                    {"Authorization": "Bearer " + new_api_key() + "\r\nX: y"}):
        with pytest.raises(BadCredential):
            credential_from_headers(headers)


def test_roles_decide_401_versus_403():
    agent = Principal("session", 1, "ada", "Ada", "agent", "a1")
    assert admits(None, None) == "ok"
    assert admits(None, EVERYONE) == "unauthenticated"
    assert admits(agent, STAFF) == "forbidden"
    assert admits(agent, EVERYONE) == "ok"
    assert admits(Principal("api_key", 1, "crm", "crm", "admin"), ADMIN) == "ok"


RED_SUP = Principal("session", 3, "sam", "Sam", "supervisor", team="red")


@pytest.mark.parametrize("who, agent, team, scope, expected", [
    (Principal("session", 1, "ada", "Ada", "agent", "a1", team="red"), "a1", None, "team", "self"),
    (Principal("session", 1, "ada", "Ada", "agent", "a1", team="red"), "a2", "red", "team", None),
    (Principal("session", 4, "quinn", "Quinn", "qa", team="red"), "a2", "red", "team", None),
    (RED_SUP, "a2", "red", "team", "other"),
    (RED_SUP, "a3", "blue", "team", None),
    (RED_SUP, "a4", None, "team", None),                  # an agent without a user (or team): no supervisor's
    (Principal("session", 5, "nat", "Nat", "supervisor"), "a4", None, "team", None),   # no team: none, not all
    (RED_SUP, "a2", "red", "self", None),
    (Principal("session", 2, "root", "Root", "admin"), "a3", "blue", "team", "other"),
    (Principal("session", 2, "root", "Root", "admin"), "a3", "blue", "self", None),
    (Principal("api_key", 9, "crm", "crm", "supervisor"), "a2", "red", "team", None),
])
def test_who_may_act_on_an_agent(who, agent, team, scope, expected):
    assert over_agent(who, agent, scope, team) == expected


def test_the_agents_team_is_looked_up_only_for_a_supervisor_acting_on_someone_else():
    assert needs_agent_team(RED_SUP, "a2", "team")
    assert not needs_agent_team(RED_SUP, "a2", "self")
    assert not needs_agent_team(Principal("session", 2, "root", "Root", "admin"), "a2", "team")
    assert not needs_agent_team(Principal("session", 1, "ada", "Ada", "agent", "a1"), "a2", "team")


def test_principal_repr_shows_no_credential():
    p = Principal("session", 1, "ada", "Ada", "agent", credential=b"\x01" * 32)
    assert "\\x01" not in repr(p) and "ada" in repr(p)


FAST = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_passwords_verify_only_the_right_one_and_never_a_missing_hash():
    pw = Passwords(FAST)
    stored = pw.hash("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert pw.verify(stored, "correct horse")
    assert not pw.verify(stored, "wrong")
    assert not pw.verify(None, "correct horse")
    assert not pw.verify("not a hash", "correct horse")


def test_rehash_is_needed_when_the_parameters_change():
    old = Passwords(FAST).hash("pw")
    assert Passwords(argon2.PasswordHasher(time_cost=2, memory_cost=8, parallelism=1)).needs_rehash(old)
    assert not Passwords(FAST).needs_rehash(old)


# -- metrics ----------------------------------------------------------------------


def test_metrics_text_escapes_labels_and_counts_histogram_buckets():
    h = m.LagHistogram(buckets=(0.01, 0.1, 1.0))
    for v in (0.005, 0.05, 0.05, 3.0, -1.0):
        h.observe(v)
    reg = m.registry(m.FamiliesCollector(lambda: [
        m.gauge("cti_calls", "Live calls\nby state", {(("state", 'q"\\\n'),): 2}),
        m.counter("cti_x_total", "x", 5),
        m.counter("cti_y_total", "y", {}, ("queue",)),
        h.family("cti_lag_seconds", "lag"),
    ]))
    text = m.render(reg).decode()
    assert '# HELP cti_calls Live calls\\nby state' in text
    assert 'cti_calls{state="q\\"\\\\\\n"} 2.0' in text
    # The exposed name keeps its _total (in HELP and TYPE too), and no _created sample appears.
    assert "# TYPE cti_x_total counter\ncti_x_total 5.0" in text and "_created" not in text
    assert "# TYPE cti_y_total counter\n" in text             # no queue yet: the family, no sample
    assert 'cti_lag_seconds_bucket{le="0.01"} 2.0' in text     # 0.005 and the negative one (as 0)
    assert 'cti_lag_seconds_bucket{le="0.1"} 4.0' in text
    assert 'cti_lag_seconds_bucket{le="1"} 4.0' in text        # as first exposed, not "1.0"
    assert 'cti_lag_seconds_bucket{le="+Inf"} 5.0' in text
    assert "cti_lag_seconds_count 5.0" in text and text.endswith("\n")


def test_metrics_registries_are_per_app_and_read_at_each_scrape():
    seen = {"n": 1}
    a = m.registry(m.FamiliesCollector(lambda: [m.gauge("cti_n", "n", seen["n"])]))
    b = m.registry(m.FamiliesCollector(lambda: [m.gauge("cti_n", "n", 7)]))   # same name, no collision
    assert "cti_n 1.0" in m.render(a).decode()
    seen["n"] = 3
    assert "cti_n 3.0" in m.render(a).decode() and "cti_n 7.0" in m.render(b).decode()
    assert m.CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_a_counter_must_end_in_total():
    with pytest.raises(ValueError):
        m.counter("cti_x", "x", 1)


# -- the registry on a real socket ----------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=10)
    count: int = Field(ge=0)


class Reply(BaseModel):
    echoed: str


class Query(BaseModel):
    limit: int = Field(10, ge=1, le=100, description="how many")
    q: str | None = None


USERS = {"agent-token": Principal("session", 1, "ada", "Ada", "agent", "a1"),
         "admin-token": Principal("session", 2, "root", "Root", "admin"),
         "red-token": RED_SUP}
TEAMS = {"a1": "red", "a2": "blue"}


async def authenticate(request: web.Request) -> Principal | None:
    auth = request.headers.get("Authorization")
    if auth is None:
        return None
    p = USERS.get(auth.removeprefix("Bearer "))
    if p is None:
        raise ApiError(401, "unauthenticated", "unknown token")
    return p


def build() -> web.Application:
    app = web.Application()
    api = setup_registry(app)
    api.authenticate = authenticate

    async def team_of(app: web.Application, agent_id: str) -> str | None:
        return TEAMS.get(agent_id)

    api.team_of = team_of

    async def echo(req):
        return Reply(echoed=f"{req.body.name}x{req.body.count} by {req.principal.name}")

    async def items(req):
        return Reply(echoed=f"{req.match_info['item_id']} limit {req.query.limit}")

    async def boom(req):
        raise RuntimeError("secret detail")

    async def sound(req):
        return web.Response(body=b"RIFF", content_type="audio/wav")

    api.add("POST", "/api/echo", echo, summary="Echo", roles=STAFF, body=Body, response=Reply, tags=("t",))
    api.add("GET", "/api/items/{item_id}", items, summary="Item", roles=EVERYONE, query=Query, response=Reply)
    api.add("GET", "/api/boom", boom, summary="Boom", roles=None)
    api.add("GET", "/api/sound", sound, summary="Sound", roles=None, content_type="audio/wav")
    api.add("POST", "/api/public", echo_public, summary="Public", roles=None, body=Body, response=Reply)

    async def act(req):
        return Reply(echoed=f"{req.over_agent} {req.body.name}")

    api.add("POST", "/api/agents/{agent_id}/act", act, summary="Act", roles=EVERYONE, body=Body, response=Reply,
            agent_scope="team")
    return app


async def echo_public(req):
    return Reply(echoed=req.body.name)


@pytest.fixture
async def client():
    async with TestClient(TestServer(build())) as c:
        yield c


async def test_unauthenticated_is_401_and_wrong_role_is_403(client):
    r = await client.post("/api/echo", json={"name": "a", "count": 1})
    assert r.status == 401 and (await r.json())["error_id"] == "unauthenticated"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.post("/api/echo", json={"name": "a", "count": 1}, headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    r = await client.post("/api/echo", json={"name": "a", "count": 1},
                          headers={"Authorization": "Bearer agent-token"})
    body = await r.json()
    assert r.status == 403 and body["error_id"] == "forbidden" and "admin or supervisor" in body["message"]


async def test_valid_body_reaches_the_handler(client):
    r = await client.post("/api/echo", json={"name": "a", "count": 2}, headers={"Authorization": "Bearer admin-token"})
    assert r.status == 200 and await r.json() == {"echoed": "ax2 by root"}


@pytest.mark.parametrize("body, field", [
    ({"count": 1}, "body.name"),
    ({"name": "a", "count": -1}, "body.count"),
    ({"name": "a" * 11, "count": 1}, "body.name"),
    ({"name": "a", "count": 1, "extra": "\r\n'; DROP TABLE users;--"}, "body.extra"),
    ({"name": "a", "count": "many"}, "body.count"),
])
async def test_invalid_body_is_422_naming_the_field(client, body, field):
    r = await client.post("/api/echo", json=body, headers={"Authorization": "Bearer admin-token"})
    reply = await r.json()
    assert r.status == 422 and reply["error_id"] == "invalid_body"
    assert [d["field"] for d in reply["details"]] == [field]


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/api/echo", '{"name": "a\\u0000b", "count": 1}', "body.name"),
    ("GET", "/api/items/x?q=a%00b", None, "query.q"),
    ("GET", "/api/items/a%00b", None, "path.item_id"),
])
async def test_nul_in_text_is_422_naming_the_field(client, method, path, body, field):
    """NUL in a body, a query or a path (the long API fuzz run found it as 500s from the database)."""
    headers = {"Authorization": "Bearer admin-token", "Content-Type": "application/json"}
    r = await client.request(method, path, data=body, headers=headers)
    reply = await r.json()
    assert r.status == 422 and reply["error_id"] == "invalid_body", reply
    assert [d["field"] for d in reply["details"]] == [field]


async def test_not_json_is_400_and_empty_is_422(client):
    auth = {"Authorization": "Bearer admin-token", "Content-Type": "application/json"}
    r = await client.post("/api/echo", data=b"{not json", headers=auth)
    assert r.status == 400 and (await r.json())["error_id"] == "invalid_json"
    r = await client.post("/api/echo", data=b"", headers=auth)
    assert r.status == 422 and (await r.json())["details"][0]["field"] == "body"


async def test_a_public_route_takes_its_body_only_as_application_json(client):
    """Another site's page can send text/plain or a form without a preflight: refused unread."""
    for data, ctype in ((b'{"name": "a", "count": 1}', "text/plain"),
                        (b"name=a&count=1", "application/x-www-form-urlencoded"),
                        (b'{"name": "a", "count": 1}', None)):
        r = await client.post("/api/public", data=data, headers={"Content-Type": ctype} if ctype else {})
        assert r.status == 415 and (await r.json())["error_id"] == "unsupported_media_type", ctype
    r = await client.post("/api/public", json={"name": "a", "count": 1})
    assert r.status == 200 and await r.json() == {"echoed": "a"}
    r = await client.post("/api/public", data=b'{"name": "a", "count": 1}',
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 200
    # Routes that need a credential are out of a foreign page's reach anyway (the header needs a preflight).
    r = await client.post("/api/echo", data=b'{"name": "a", "count": 2}',
                          headers={"Authorization": "Bearer admin-token", "Content-Type": "text/plain"})
    assert r.status == 200


async def test_an_agent_scope_is_decided_before_the_body_is_read(client):
    def ask(token, agent, body):
        return client.post(f"/api/agents/{agent}/act", json=body, headers={"Authorization": f"Bearer {token}"})

    r = await ask("agent-token", "a2", {})           # refused before the (invalid) body
    assert r.status == 403 and (await r.json())["error_id"] == "not_your_agent"
    r = await ask("red-token", "a2", {})             # a2 is on team blue
    assert r.status == 403 and (await r.json())["error_id"] == "not_your_agent"
    r = await ask("red-token", "a1", {"name": "x", "count": 1})
    assert await r.json() == {"echoed": "other x"}
    r = await ask("agent-token", "a1", {"name": "x", "count": 1})
    assert await r.json() == {"echoed": "self x"}
    r = await ask("admin-token", "a2", {"name": "x", "count": 1})
    assert await r.json() == {"echoed": "other x"}
    doc = await (await client.get("/openapi.json")).json()
    assert doc["paths"]["/api/agents/{agent_id}/act"]["post"]["x-agent-scope"] == "team"


def test_an_agent_scope_needs_an_agent_in_the_path():
    api = setup_registry(web.Application())
    with pytest.raises(ValueError, match="agent_id"):
        api.add("POST", "/api/x", lambda req: None, summary="x", roles=EVERYONE, agent_scope="team")
    with pytest.raises(ValueError, match="roles"):   # who would the agent be compared with?
        api.add("POST", "/api/{agent_id}/y", lambda req: None, summary="y", roles=None, agent_scope="team")


async def test_too_large_body_is_413(client):
    r = await client.post("/api/echo", data=b"x" * (65 * 1024), headers={"Authorization": "Bearer admin-token"})
    assert r.status == 413 and (await r.json())["error_id"] == "payload_too_large"


async def test_query_and_path_parameters(client):
    auth = {"Authorization": "Bearer agent-token"}
    r = await client.get("/api/items/42?limit=5", headers=auth)
    assert (await r.json()) == {"echoed": "42 limit 5"}
    r = await client.get("/api/items/42?limit=500", headers=auth)
    assert r.status == 422 and (await r.json())["details"][0]["field"] == "query.limit"


async def test_a_query_parameter_given_twice_is_refused_not_half_read(client):
    r = await client.get("/api/items/42?limit=5&limit=50", headers={"Authorization": "Bearer agent-token"})
    body = await r.json()
    assert r.status == 422 and body["details"] == [
        {"field": "query.limit", "message": "given more than once", "type": "repeated"}]


@pytest.mark.parametrize("value", ["0", "86400", " 1.5 ", "-0", "1.4002273707182832e-47", "1e3"])
def test_a_day_or_time_is_iso_8601_never_seconds_since_1970(value):
    """pydantic alone reads "0" as 1970-01-01; the document says format: date."""
    class Q(BaseModel):
        day: Day | None = None
        at: Instant | None = None

    for field in ("day", "at"):
        with pytest.raises(ValidationError, match="ISO 8601"):
            Q.model_validate({field: value})
    assert Q.model_validate({"day": "2026-05-01", "at": "2026-05-01T08:00:00Z"}).day.year == 2026


async def test_a_failing_handler_is_a_500_without_details(client):
    r = await client.get("/api/boom")
    body = await r.json()
    assert r.status == 500 and body["error_id"] == "internal" and "secret" not in str(body)


async def test_unknown_api_paths_and_methods_answer_json(client):
    r = await client.get("/api/nothing")
    assert r.status == 404 and (await r.json())["error_id"] == "not_found"
    r = await client.delete("/api/echo")
    assert r.status == 405 and (await r.json())["error_id"] == "method_not_allowed"


async def test_openapi_document_is_valid_and_lists_every_route_with_its_models(client):
    doc = await (await client.get("/openapi.json")).json()
    validate(doc)
    app_routes = client.server.app[API].routes
    for route in app_routes:
        assert route.method.lower() in doc["paths"][openapi_path(route.path)]
    echo = doc["paths"]["/api/echo"]["post"]
    assert echo["x-roles"] == ["admin", "supervisor"]
    assert echo["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Body"}
    assert set(echo["responses"]) == {"200", "400", "401", "403", "413", "422", "default"}
    schemas = doc["components"]["schemas"]
    assert schemas["Body"]["required"] == ["name", "count"] and "Reply" in schemas and "ErrorReply" in schemas
    item = doc["paths"]["/api/items/{item_id}"]["get"]
    assert {(p["name"], p["in"]) for p in item["parameters"]} == {("item_id", "path"), ("limit", "query"), ("q", "query")}
    assert doc["paths"]["/api/boom"]["get"]["security"] == []
    # A route that answers with bytes says which, and that they are bytes.
    assert doc["paths"]["/api/sound"]["get"]["responses"]["200"]["content"] == {
        "audio/wav": {"schema": {"type": "string", "format": "binary"}}}
    assert "content" not in doc["paths"]["/api/boom"]["get"]["responses"]["200"]
    assert (await client.get("/api/sound")).headers["Content-Type"] == "audio/wav"


async def test_docs_page_shows_every_operation_and_escapes(client):
    r = await client.get("/docs/reference")
    page = await r.text()
    assert r.status == 200 and "<script" not in page and "https://" not in page
    for path in ("/api/echo", "/api/items/{item_id}", "/openapi.json"):
        assert f"<code>{path}</code>" in page
    assert "roles: <b>admin</b>, <b>supervisor</b>" in page
    hostile = render_docs({"info": {"title": "<script>x</script>"}, "paths": {
        "/a": {"get": {"summary": "<img onerror=1>", "responses": {}}}}})
    assert "<script>x" not in hostile and "<img" not in hostile


def test_duplicate_routes_are_refused():
    app = build()
    async def h(req):
        return None
    with pytest.raises(ValueError):
        app[API].add("POST", "/api/echo", h, summary="again", roles=None)
    with pytest.raises(ValueError):
        app[API].add("GET", "/api/other", h, summary="x", roles=None, operation_id="echo")
