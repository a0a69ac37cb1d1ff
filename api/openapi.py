"""The OpenAPI 3.1 document and the ``/docs`` page, built from the route registry. Pure.

``document(routes, ...)`` turns ``api.registry.Route`` records into the
document: each route's body, query and response models become JSON Schemas
(pydantic's, under ``components.schemas``), its roles become a ``security``
requirement and an ``x-roles`` list (a route acting on one agent also an
``x-agent-scope``), and every protected route documents its
401/403 answers, every route with a body its 400/413 (a public one also its
415), with a body or query its 422, and every route a ``default`` answer: any other error, in the same shape. ``render_docs``
turns the document into one self-contained HTML page (no script, no CDN).
"""
from __future__ import annotations

import html
import json
import re
from typing import Any, Iterable, Protocol

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.errors import ErrorReply

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
SECURITY_SCHEMES = {
    "sessionToken": {"type": "http", "scheme": "bearer",
                     "description": "a session token (cts_...) from POST /api/login"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "an API key (ctk_...) made with `cti users api-key`"},
}


class RouteLike(Protocol):
    method: str
    path: str
    summary: str
    description: str
    roles: frozenset[str] | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    tags: tuple[str, ...]
    content_type: str | None
    operation_id: str
    also: tuple[str, ...]


def openapi_path(path: str) -> str:
    """aiohttp's ``/calls/{call_id:[^/]+}`` as OpenAPI's ``/calls/{call_id}``."""
    return _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorReply")}}}}


def document(routes: Iterable[RouteLike], *, title: str, version: str, description: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes`` (a plain dict, ready for JSON)."""
    routes = list(routes)
    inputs: list[tuple[type[BaseModel], str]] = [(ErrorReply, "serialization")]
    for r in routes:
        if r.body is not None:
            inputs.append((r.body, "validation"))
        if r.response is not None:
            inputs.append((r.response, "serialization"))
    unique = list(dict.fromkeys(inputs))
    refs, schema = models_json_schema(unique, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary}
        if r.description:
            op["description"] = r.description
        if r.tags:
            op["tags"] = list(r.tags)
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PATH_PARAM.findall(r.path)]
        if r.query is not None:
            qs = r.query.model_json_schema(ref_template=REF)
            required = set(qs.get("required", ()))
            for name, prop in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required,
                               "description": prop.get("description", ""), "schema": prop})
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": refs[(r.body, "validation")]}}}
        responses: dict[str, Any] = {}
        if r.response is not None:
            content = {"application/json": {"schema": refs[(r.response, "serialization")]}}
            for media in r.also:
                content[media] = {"schema": {"type": "string"}}
            responses[str(r.status)] = {"description": "success", "content": content}
        elif r.content_type is not None:
            if r.content_type == "application/json":
                answer = {"type": "object"}
            elif r.content_type.startswith(("text/", "application/javascript")):
                answer = {"type": "string"}
            else:
                answer = {"type": "string", "format": "binary"}
            responses[str(r.status)] = {"description": "success", "content": {r.content_type: {"schema": answer}}}
        else:
            responses[str(r.status)] = {"description": "success, no body" if r.status == 204 else "success"}
        if r.body is not None:
            responses["400"] = _error("the body is not JSON (invalid_json)")
            responses["413"] = _error("the body is larger than the route allows (payload_too_large)")
        if r.body is not None and r.roles is None:
            responses["415"] = _error("the body was not sent as application/json (unsupported_media_type)")
        if r.body is not None or r.query is not None:
            responses["422"] = _error("a field is missing or invalid (invalid_body): details name it")
        if r.roles is None:
            op["security"] = []
        else:
            op["security"] = [{"sessionToken": []}, {"apiKey": []}]
            op["x-roles"] = sorted(r.roles)
            responses["401"] = _error("no valid credentials (unauthenticated)")
            responses["403"] = _error(f"the caller's role is not {' or '.join(sorted(r.roles))} (forbidden)")
            scope = getattr(r, "agent_scope", None)
            if scope is not None:
                op["x-agent-scope"] = scope
                who = "the agent" if scope == "self" else "the agent, a supervisor of their team or an admin"
                responses["403"] = _error(f"the caller's role is not {' or '.join(sorted(r.roles))} (forbidden), "
                                          f"or the caller is not {who} (not_your_agent)")
        # Route-specific refusals (not_found, conflict, invalid_credentials, unavailable ...)
        # all share the one error shape: error_id says which (docs/api.md).
        responses["default"] = _error("any other error: error_id says which (api.errors)")
        op["responses"] = responses
        paths.setdefault(openapi_path(r.path), {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }


# -- the /docs page ------------------------------------------------------------

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
h1{font-size:1.6rem}h2{margin-top:2.5rem;border-bottom:1px solid #ccd}
section.op{border:1px solid #ccd;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;font-family:monospace}
.get{color:#0a6b2e}.post{color:#0b4fa8}.put,.patch{color:#8a5a00}.delete{color:#a11}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f4f5f8;padding:.6rem;overflow:auto}
.roles{color:#555}.roles b{color:#1d2330}
details summary{cursor:pointer}
"""


def _json(value: Any) -> str:
    return html.escape(json.dumps(value, indent=2, sort_keys=False))


def _schema_link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        return f'<a href="#schema-{html.escape(name)}"><code>{html.escape(name)}</code></a>'
    return f"<pre>{_json(schema)}</pre>"


def render_docs(doc: dict[str, Any]) -> str:
    """The document as one HTML page: every operation with its roles, parameters,
    body and answers, then every schema. Everything from the document is escaped."""
    info = doc.get("info", {})
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           '<meta name=viewport content="width=device-width,initial-scale=1">',
           f"<title>{html.escape(info.get('title', 'API'))}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(info.get('title', 'API'))} <small>{html.escape(info.get('version', ''))}</small></h1>",
           f"<p>{html.escape(info.get('description', ''))}</p>",
           '<p>The machine-readable document: <a href="/openapi.json"><code>/openapi.json</code></a> (OpenAPI 3.1).</p>']
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append((path, method, op))
    for tag in sorted(by_tag):
        out.append(f"<h2>{html.escape(tag)}</h2>")
        for path, method, op in by_tag[tag]:
            roles = op.get("x-roles")
            who = ("roles: " + ", ".join(f"<b>{html.escape(r)}</b>" for r in roles)) if roles else "public"
            if op.get("x-agent-scope") == "team":
                who += "; on another agent: a supervisor of their team or an admin"
            elif op.get("x-agent-scope") == "self":
                who += "; the agent themselves only"
            out.append(f'<section class=op id="op-{html.escape(op.get("operationId", ""))}">'
                       f'<div><span class="m {html.escape(method)}">{html.escape(method.upper())}</span>'
                       f"<code>{html.escape(path)}</code> — {html.escape(op.get('summary', ''))}</div>"
                       f'<div class=roles>{who}</div>')
            if op.get("description"):
                out.append(f"<p>{html.escape(op['description'])}</p>")
            for p in op.get("parameters", []):
                out.append(f"<div>{html.escape(p['in'])} parameter <code>{html.escape(p['name'])}</code>"
                           f"{' (required)' if p.get('required') else ''} {html.escape(p.get('description', ''))}</div>")
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                out.append(f"<div>body: {_schema_link(schema)}</div>")
            out.append("<ul>")
            for status, resp in op.get("responses", {}).items():
                content = resp.get("content", {})
                what = ""
                for ctype, media in content.items():
                    what = _schema_link(media["schema"]) if ctype == "application/json" else f"<code>{html.escape(ctype)}</code>"
                out.append(f"<li><b>{html.escape(status)}</b> {html.escape(resp.get('description', ''))} {what}</li>")
            out.append("</ul></section>")
    out.append("<h2>Schemas</h2>")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        out.append(f'<details id="schema-{html.escape(name)}"><summary><code>{html.escape(name)}</code></summary>'
                   f"<pre>{_json(schema)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)
