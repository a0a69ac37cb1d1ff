"""The knowledge base over the API, on the real daemon: who may write, read and decide,
versions and conflicts, proposals from a wrap-up, feedback, search, suggestions for a call,
and Markdown that cannot carry a script (api/kb_routes.py)."""
from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def kb(asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    await add_user(database, "k-agent", "agent", "a1")
    await add_user(database, "k-sup", "supervisor")
    await add_user(database, "k-qa", "qa")
    tokens = {u: bearer(await login(http, d, u)) for u in ("k-agent", "k-sup", "k-qa")}
    try:
        yield d, tokens
    finally:
        await d.stop()


async def call(http, d, method, path, headers, json=None):
    async with http.request(method, url(d, path), json=json, headers=headers) as r:
        return r.status, (await r.json() if r.status != 204 else None)


ARTICLE = {"title": "Refund a double charge", "body": "Charged **twice**? Refund the duplicate.",
           "tags": ["Billing", "refund"], "language": "en",
           "links": [{"kind": "queue", "target": "billing"}, {"kind": "ivr", "target": "billing_refunds"}]}


async def test_supervisors_write_agents_read_and_versions_are_kept(kb, http):
    d, t = kb
    status, body = await call(http, d, "POST", "/api/kb/articles", t["k-agent"], ARTICLE)
    assert status == 403
    status, a = await call(http, d, "POST", "/api/kb/articles", t["k-sup"], ARTICLE)
    assert status == 201 and a["version"] == 1 and a["owner"] == "k-sup" and a["tags"] == ["billing", "refund"]
    assert a["html"] == "<p>Charged <strong>twice</strong>? Refund the duplicate.</p>\n"
    path = f"/api/kb/articles/{a['article_id']}"
    status, got = await call(http, d, "GET", path, t["k-agent"])
    assert status == 200 and got["title"] == ARTICLE["title"]
    assert (await call(http, d, "GET", path, t["k-qa"]))[0] == 403
    change = dict(ARTICLE, title="Refund a duplicate charge", base_version=1, note="clearer")
    status, b = await call(http, d, "PUT", path, t["k-sup"], change)
    assert status == 200 and b["version"] == 2
    status, err = await call(http, d, "PUT", path, t["k-sup"], change)        # still based on version 1
    assert status == 409 and err["error_id"] == "kb_conflict"
    status, vs = await call(http, d, "GET", path + "/versions", t["k-agent"])
    assert [v["version"] for v in vs["versions"]] == [2, 1] and vs["versions"][0]["note"] == "clearer"
    status, listed = await call(http, d, "GET", "/api/kb/articles?language=en&tag=refund", t["k-agent"])
    assert [x["article_id"] for x in listed["articles"]] == [a["article_id"]]
    assert (await call(http, d, "DELETE", path, t["k-agent"]))[0] == 403
    assert (await call(http, d, "DELETE", path, t["k-sup"]))[0] == 204
    assert (await call(http, d, "DELETE", path, t["k-sup"]))[0] == 404
    assert (await call(http, d, "GET", "/api/kb/articles/999999", t["k-agent"]))[0] == 404


async def test_markdown_with_a_script_is_served_as_text(kb, http):
    d, t = kb
    hostile = dict(ARTICLE, body="<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    status, a = await call(http, d, "POST", "/api/kb/articles", t["k-sup"], hostile)
    assert status == 201
    html = a["html"]
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html


async def test_a_proposal_from_a_wrap_up_is_approved_by_a_supervisor(kb, http):
    d, t = kb
    proposal = {"kind": "new", "title": "Router reboot after a storm", "body": "Unplug it for 30 s.",
                "tags": ["router"], "call_id": "1700000000.42"}
    status, p = await call(http, d, "POST", "/api/kb/proposals", t["k-agent"], proposal)
    assert status == 201 and p["state"] == "pending" and p["proposer"] == "k-agent" and p["agent_id"] == "a1"
    assert (await call(http, d, "GET", "/api/kb/proposals", t["k-agent"]))[0] == 403
    status, pending = await call(http, d, "GET", "/api/kb/proposals", t["k-sup"])
    assert [x["proposal_id"] for x in pending["proposals"]] == [p["proposal_id"]]
    decision = f"/api/kb/proposals/{p['proposal_id']}/decision"
    assert (await call(http, d, "POST", decision, t["k-agent"], {"approve": True}))[0] == 403
    status, done = await call(http, d, "POST", decision, t["k-sup"],
                              {"approve": True, "links": [{"kind": "queue", "target": "tech"}]})
    assert status == 200 and done["proposal"]["state"] == "approved" and done["article"]["version"] == 1
    assert done["article"]["links"] == [{"kind": "queue", "target": "tech"}]
    status, err = await call(http, d, "POST", decision, t["k-sup"], {"approve": False})
    assert status == 409
    edit = {"kind": "edit", "article_id": done["article"]["article_id"], "title": "Router reboot after a storm",
            "body": "Unplug it for 60 s."}
    status, e = await call(http, d, "POST", "/api/kb/proposals", t["k-agent"], edit)
    status, rejected = await call(http, d, "POST", f"/api/kb/proposals/{e['proposal_id']}/decision", t["k-sup"],
                                  {"approve": False, "note": "30 s is right"})
    assert status == 200 and rejected["proposal"]["state"] == "rejected" and rejected["article"] is None
    status, err = await call(http, d, "POST", "/api/kb/proposals", t["k-agent"], dict(edit, article_id=999999))
    assert status == 404


async def test_search_suggestions_and_feedback(kb, http, database):
    d, t = kb
    ids = []
    for title, body, links in (
            ("Refund a double charge", "Charged twice: refund the duplicate payment.", [("ivr", "billing_refunds")]),
            ("Refund status", "When the refund reaches the card.", [("ivr", "billing_refunds")]),
            ("Router lights red", "Restart the router.", [("queue", "tech")])):
        status, a = await call(http, d, "POST", "/api/kb/articles", t["k-sup"],
                               {"title": title, "body": body, "links": [{"kind": k, "target": v} for k, v in links]})
        ids.append(a["article_id"])
    status, found = await call(http, d, "GET", "/api/kb/search?q=refunds%20card", t["k-agent"])
    assert status == 200 and found["hits"][0]["article_id"] == ids[1]
    status, err = await call(http, d, "GET", "/api/kb/search?q=", t["k-agent"])
    assert status == 422
    # The call's context from the database: its queue and IVR path; the notes from the desktop.
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("INSERT INTO call_ivr_steps (call_id, seq, at, menu, action) VALUES "
                           "('kbcall.1', 1, now(), 'main', 'enter'), ('kbcall.1', 2, now(), 'billing_refunds', 'enter')")
    finally:
        await conn.close()
    status, s = await call(http, d, "POST", "/api/kb/suggestions", t["k-agent"], {"call_id": "kbcall.1"})
    assert status == 200 and {x["article_id"] for x in s["suggestions"]} == {ids[0], ids[1]}
    status, s = await call(http, d, "POST", "/api/kb/suggestions", t["k-agent"],
                           {"call_id": "kbcall.1", "notes": "customer charged twice"})
    assert [x["article_id"] for x in s["suggestions"]][0] == ids[0] and "notes" in s["suggestions"][0]["why"]
    status, fb = await call(http, d, "POST", "/api/kb/feedback", t["k-agent"],
                            {"article_id": ids[0], "call_id": "kbcall.1", "helped": True})
    assert status == 200 and fb == {"article_id": ids[0], "helped": 1, "not_relevant": 0}
    status, fb = await call(http, d, "POST", "/api/kb/feedback", t["k-agent"],
                            {"article_id": ids[0], "call_id": "kbcall.1", "helped": False})
    assert fb == {"article_id": ids[0], "helped": 0, "not_relevant": 1}       # replaced, not added
    status, err = await call(http, d, "POST", "/api/kb/feedback", t["k-agent"],
                             {"article_id": 999999, "call_id": "kbcall.1", "helped": True})
    assert status == 404
    status, err = await call(http, d, "POST", "/api/kb/suggestions", t["k-agent"], {"ivr_path": ["bad id!"]})
    assert status == 422 and err["error_id"] == "invalid_body"


async def test_supervisors_keep_the_synonyms_everyone_reads_them(kb, http):
    d, t = kb
    status, got = await call(http, d, "GET", "/api/kb/synonyms?language=en", t["k-agent"])
    assert status == 200 and any(g["name"] == "bill" for g in got["groups"])
    body = {"language": "en", "groups": [{"name": "parcel", "phrases": ["parcel", "package", "shipment"]}]}
    assert (await call(http, d, "PUT", "/api/kb/synonyms", t["k-agent"], body))[0] == 403
    status, got = await call(http, d, "PUT", "/api/kb/synonyms", t["k-sup"], body)
    assert status == 200 and got["groups"] == [{"name": "parcel", "phrases": ["package", "parcel", "shipment"]}]
    bad = {"language": "en", "groups": [{"name": "x", "phrases": ["<b>", "ok"]}]}
    status, err = await call(http, d, "PUT", "/api/kb/synonyms", t["k-sup"], bad)
    assert status == 422 and "phrases" in str(err)
    assert (await call(http, d, "GET", "/api/kb/synonyms?language=en", t["k-agent"]))[1]["groups"] == got["groups"]


async def test_suggestions_take_the_customer_products_and_articles_their_product_links(kb, http):
    d, t = kb
    ids = {}
    for product in ("solar-panels", "tv"):
        a = dict(ARTICLE, title=f"Refund a double charge ({product})", links=[{"kind": "product", "target": product}])
        status, got = await call(http, d, "POST", "/api/kb/articles", t["k-sup"], a)
        assert status == 201 and got["links"] == [{"kind": "product", "target": product}]
        ids[product] = got["article_id"]
    status, got = await call(http, d, "POST", "/api/kb/suggestions", t["k-agent"],
                             {"notes": "charged twice refund", "products": ["tv"]})
    assert status == 200 and [s["article_id"] for s in got["suggestions"]] == [ids["tv"], ids["solar-panels"]]
    assert got["suggestions"][1]["why"]["other_product_factor"] == 0.5
    status, err = await call(http, d, "POST", "/api/kb/suggestions", t["k-agent"], {"products": ["a b"]})
    assert status == 422
