"""What the knowledge base learns from the center's data, against a real PostgreSQL and the real
daemon: the customers' products from tickets, tags, the import and "Helped" marks (each with its
source), and synonyms proposed from "Helped" marks that only a KB admin's approval applies
(kb/learn_store.py, api/kb_learn_routes.py)."""
from __future__ import annotations

import dataclasses

import aiohttp
import asyncpg
import pytest

from crm.customer_model import read_csv
from crm.customer_store import import_customers
from kb import learn_store, store
from kb.ranking import CallContext, OpenTicket, Weights
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url


async def article(pool, title, body, *products, language="en"):
    return (await store.create_article(pool, title=title, body=body, tags=[], language=language, owner="t",
                                       links=[store.Link("product", p) for p in products])).article_id


async def customer(pool, cid, *tags):
    await pool.execute("INSERT INTO customers (customer_id, name) VALUES ($1, $1)", cid)
    for tag in tags:
        await pool.execute("INSERT INTO customer_tags (customer_id, tag) VALUES ($1, $2)", cid, tag)


async def ticket(pool, cid, type_, title, state="open"):
    await pool.execute("INSERT INTO tickets (type, customer_id, source, state, title, created_at, due_at, revision) "
                       "VALUES ($1, $2, 'manual', $3, $4, '2026-03-01', '2026-03-08', 1)", type_, cid, state, title)


async def held(pool, cid):
    return {r["product"]: r["source"] for r in await pool.fetch(
        "SELECT product, source FROM customer_products WHERE customer_id = $1", cid)}


async def test_products_come_from_tickets_and_tags_never_over_the_crm(pool):
    for p in ("fibre", "tv-box", "solar-panels", "mobile"):
        await article(pool, f"About {p}", "text", p)
    await customer(pool, "C1", "product:tv-box", "vip")
    await customer(pool, "C2")
    await ticket(pool, "C1", "installation", "Fibre install at the new flat", state="closed")
    await ticket(pool, "C1", "installation", "Solar panels on the roof", state="cancelled")
    await ticket(pool, "C2", "repair", "mobile has no signal")
    await pool.execute("INSERT INTO customer_products (customer_id, product) VALUES ('C2', 'mobile')")
    written = await learn_store.fill_products(pool)
    assert written == {"tag": 1, "ticket": 1}
    assert await held(pool, "C1") == {"fibre": "ticket", "tv-box": "tag"}
    assert await held(pool, "C2") == {"mobile": "crm"}
    assert await learn_store.fill_products(pool) == {}                  # again: nothing new


async def test_the_import_column_fills_products_and_beats_what_was_inferred(pool):
    await customer(pool, "C1")
    await pool.execute("INSERT INTO customer_products (customer_id, product, source) VALUES ('C1', 'tv', 'feedback')")
    rows = read_csv("customer_id,name,phones,products\nC1,Ann,+4930111,\"TV; Solar Panels\"\nC3,Bob,+4930222,x/y\n")
    report = await import_customers(pool, rows, actor="test")
    assert report.imported == 1 and [r.line for r in report.rejected] == [3]
    assert await held(pool, "C1") == {"tv": "import", "solar-panels": "import"}


async def test_a_helped_mark_proposes_a_synonym_applied_only_when_approved(pool):
    customs = await article(pool, "Customs charges and import duty", "A parcel from abroad pays duty before delivery.")
    await article(pool, "Track a parcel", "The courier's tracking page shows where the parcel is.")
    stats = store.LexemeStats()
    ctx = CallContext(language="en", notes="stuck at the border")
    assert [s.article_id for s in await store.suggest(pool, ctx, stats=stats)] == []
    kept = await learn_store.record_words(pool, article_id=customs, call_id="c1", agent="a1", source="helped",
                                          notes="cust says parcel stuck at border", stats=stats)
    assert kept == ["stuck", "border"]
    pending = await learn_store.synonym_proposals(pool)
    assert {(p.word, p.anchor, p.article_id, p.calls) for p in pending} == {("border", "customs", customs, 1),
                                                                            ("stuck", "customs", customs, 1)}
    # Proposed, not applied: the call still finds nothing.
    assert [s.article_id for s in await store.suggest(pool, ctx, stats=stats)] == []
    border = next(p for p in pending if p.word == "border")
    done = await learn_store.decide_synonym(pool, border.proposal_id, approve=True, by="sup")
    assert done.state == "approved" and done.grp == "customs" and done.decided_by == "sup"
    groups = {g.name: g.phrases for g in await store.synonyms(pool, "en")}
    assert groups["customs"] == ["border", "customs"]
    got = await store.suggest(pool, ctx, stats=stats)
    assert [s.article_id for s in got] == [customs] and got[0].parts["notes"] > 0
    with pytest.raises(store.Conflict):
        await learn_store.decide_synonym(pool, border.proposal_id, approve=False, by="sup")
    # A second mark on another call counts the pending pair again; a decided one stays decided.
    await learn_store.record_words(pool, article_id=customs, call_id="c2", agent="a2", source="helped",
                                   notes="stuck at border again", stats=stats)
    assert [(p.word, p.calls) for p in await learn_store.synonym_proposals(pool)] == [("stuck", 2)]
    await learn_store.forget_words(pool, article_id=customs, call_id="c2", agent="a2", stats=stats)
    assert [(p.word, p.calls) for p in await learn_store.synonym_proposals(pool)] == [("stuck", 1)]
    await learn_store.forget_words(pool, article_id=customs, call_id="c1", agent="a1", stats=stats)
    assert await learn_store.synonym_proposals(pool) == []


async def test_words_a_helped_mark_taught_an_article_find_it_while_no_article_holds_them(pool):
    customs = await article(pool, "Customs charges and import duty", "A parcel from abroad pays duty before delivery.")
    track = await article(pool, "Track a parcel", "The courier's tracking page shows where the parcel is.")
    stats, learned = store.LexemeStats(), store.LearnedWords()
    stats.CHECK_EVERY = learned.CHECK_EVERY = 0.0
    ctx = CallContext(language="en", notes="stuck at the border")
    assert await store.suggest(pool, ctx, stats=stats, learned=learned) == []
    await learn_store.record_words(pool, article_id=customs, call_id="c1", agent="a1", source="helped",
                                   notes="cust says parcel stuck at border", stats=stats)
    ev = await learned.evidence(pool, "en")
    assert ev.by_article == {customs: {"stuck": 1, "border": 1}}
    # Without the learned words (or with their weight at 0) nothing changes; with them the
    # customs article is found by the caller's words alone, no synonym approved.
    assert await store.suggest(pool, ctx, stats=stats) == []
    assert await store.suggest(pool, ctx, stats=stats, learned=learned, w=Weights(learned=0.0)) == []
    got = await store.suggest(pool, ctx, stats=stats, learned=learned)
    assert [s.article_id for s in got] == [customs] and got[0].parts["notes"] > 0
    # A word some article's text holds is no longer a gap: it counts only by that text.
    await store.update_article(pool, track, base_version=None, title="Track a parcel",
                               body="The courier's tracking page shows where the parcel is, even at the border.",
                               tags=[], links=[], author="t")
    border = CallContext(language="en", notes="at the border")
    assert [s.article_id for s in await store.suggest(pool, border, stats=stats, learned=learned)] == [track]
    # "stuck" still is one.
    assert [s.article_id for s in await store.suggest(pool, ctx, stats=stats, learned=learned)] == [track, customs]
    # The mark withdrawn, its words go.
    await learn_store.forget_words(pool, article_id=customs, call_id="c1", agent="a1", stats=stats)
    assert (await learned.evidence(pool, "en")).by_article == {}


async def test_a_title_holding_a_too_common_word_makes_a_candidate(pool):
    late = (await store.create_article(pool, title="Late payment fee", body="A fee when a bill is settled after "
                                       "its due date.", tags=[], language="en", owner="t", links=[])).article_id
    await store.create_article(pool, title="Paid twice", body="Refund the second payment.", tags=[], language="en",
                               owner="t", links=[])
    # 60 articles holding "late" in their body: too common to pick by itself.
    for i in range(60):
        await store.create_article(pool, title=f"Parcel {i} delivery problem", body="A parcel late or damaged.",
                                   tags=[], language="en", owner="t", links=[])
    stats = store.LexemeStats()
    counts = await stats.counts(pool, "en")
    assert counts.is_common("late") and not counts.is_common("paid")
    ctx = CallContext(language="en", notes="paid late")
    without = [s.article_id for s in await store.suggest(pool, ctx, stats=stats, limit=60)]
    picked = [s.article_id for s in await store.suggest(pool, ctx, stats=stats, w=Weights(title_pick=0.5),
                                                         limit=60)]
    assert late not in without and late in picked[:2]


async def test_an_open_ticket_the_links_put_elsewhere_does_not_steer_the_suggestions(pool):
    bill = (await store.create_article(pool, title="Price increase explained", body="Prices rise once a year.",
                                       tags=[], language="en", owner="t",
                                       links=[store.Link("queue", "billing"),
                                              store.Link("ticket_type", "billing_dispute")])).article_id
    mail = (await store.create_article(pool, title="Email not sending", body="Check the mail server settings.",
                                       tags=[], language="en", owner="t",
                                       links=[store.Link("queue", "tech")])).article_id
    stats = store.LexemeStats()
    ctx = CallContext(language="en", queue="tech", tickets=(OpenTicket("billing_dispute", "price went up"),))
    on = Weights(ticket_route=1.0)
    got = [s.article_id for s in await store.suggest(pool, ctx, stats=stats, w=on)]
    assert got == [mail]
    kept = [s.article_id for s in await store.suggest(pool, ctx, stats=stats)]      # off by default
    assert kept[0] == bill
    # On a billing call the same ticket counts.
    on_billing = dataclasses.replace(ctx, queue="billing")
    assert [s.article_id for s in await store.suggest(pool, on_billing, stats=stats, w=on)][0] == bill


# -- over the API ----------------------------------------------------------------------------------


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def ask(http, d, method, path, token, json=None):
    async with http.request(method, url(d, path), json=json, headers=token) as r:
        return r.status, await r.json()


async def test_helped_marks_over_the_api_learn_products_and_propose_synonyms(asterisk, database, tmp_path, http):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    try:
        await add_user(database, "l-agent", "agent", "a1")
        await add_user(database, "l-sup", "supervisor")
        t = {u: bearer(await login(http, d, u)) for u in ("l-agent", "l-sup")}
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("INSERT INTO customers (customer_id, name) VALUES ('LC1', 'Lea')")
            await conn.execute("INSERT INTO customer_calls (customer_id, call_id) VALUES ('LC1', 'learn.1')")
        finally:
            await conn.close()
        status, a = await ask(http, d, "POST", "/api/kb/articles", t["l-sup"], {
            "title": "Solar panels not charging", "body": "Check the inverter's lights.", "language": "en",
            "links": [{"kind": "product", "target": "solar-panels"}]})
        assert status == 201
        status, fb = await ask(http, d, "POST", "/api/kb/feedback", t["l-agent"], {
            "article_id": a["article_id"], "call_id": "learn.1", "helped": True,
            "notes": "roof thing gives no power since the storm"})
        assert status == 200 and fb["helped"] == 1
        status, got = await ask(http, d, "GET", "/api/kb/synonyms/proposals?language=en", t["l-agent"])
        assert status == 403
        status, got = await ask(http, d, "GET", "/api/kb/synonyms/proposals?language=en", t["l-sup"])
        assert status == 200
        words = {p["word"]: p for p in got["proposals"]}
        assert {"roof", "storm"} <= set(words) and words["roof"]["anchor"] == "solar"
        assert words["roof"]["article_title"] == "Solar panels not charging"
        path = f"/api/kb/synonyms/proposals/{words['roof']['proposal_id']}/decision"
        assert (await ask(http, d, "POST", path, t["l-agent"], {"approve": True}))[0] == 403
        status, done = await ask(http, d, "POST", path, t["l-sup"], {"approve": True})
        assert status == 200 and done["state"] == "approved" and done["decided_by"] == "l-sup"
        status, err = await ask(http, d, "POST", path, t["l-sup"], {"approve": False})
        assert status == 409 and err["error_id"] == "kb_conflict"
        status, err = await ask(http, d, "POST", "/api/kb/synonyms/proposals/999999/decision", t["l-sup"],
                                {"approve": True})
        assert status == 404
        status, syn = await ask(http, d, "GET", "/api/kb/synonyms?language=en", t["l-agent"])
        assert {"name": done["grp"], "phrases": ["roof", "solar"]} in syn["groups"]
        # The evidence comes with each proposal: the call, who marked it, the words its article lacked.
        [ex] = words["storm"]["examples"]
        assert (ex["call_id"], ex["agent"], ex["source"]) == ("learn.1", "a1", "helped")   # the agent id
        assert {"roof", "storm"} <= set(ex["words"])
        # Taken back: the word leaves the group (a group of one goes), the pair is not proposed again.
        back = f"/api/kb/synonyms/proposals/{done['proposal_id']}/withdraw"
        assert (await ask(http, d, "POST", back, t["l-agent"]))[0] == 403
        status, gone = await ask(http, d, "POST", back, t["l-sup"])
        assert status == 200 and gone["state"] == "rejected" and gone["decided_by"] == "l-sup"
        status, syn = await ask(http, d, "GET", "/api/kb/synonyms?language=en", t["l-agent"])
        assert all("roof" not in g["phrases"] for g in syn["groups"])
        assert all(g["name"] != done["grp"] for g in syn["groups"])
        status, err = await ask(http, d, "POST", back, t["l-sup"])
        assert status == 409 and err["error_id"] == "kb_conflict"
        status, err = await ask(http, d, "POST", f"/api/kb/synonyms/proposals/{words['storm']['proposal_id']}/withdraw",
                                t["l-sup"])
        assert status == 409                                            # pending: nothing to take back
        assert (await ask(http, d, "POST", "/api/kb/synonyms/proposals/999999/withdraw", t["l-sup"]))[0] == 404
        status, got = await ask(http, d, "GET", "/api/kb/synonyms/proposals?state=rejected", t["l-sup"])
        assert [p["word"] for p in got["proposals"]] == ["roof"]
        conn = await asyncpg.connect(database)
        try:
            rows = await conn.fetch("SELECT product, source FROM customer_products WHERE customer_id = 'LC1'")
            assert [tuple(r) for r in rows] == [("solar-panels", "feedback")]
        finally:
            await conn.close()
        # "Not relevant" after all: its words stop supporting the pending proposals.
        status, _ = await ask(http, d, "POST", "/api/kb/feedback", t["l-agent"], {
            "article_id": a["article_id"], "call_id": "learn.1", "helped": False})
        assert status == 200
        status, got = await ask(http, d, "GET", "/api/kb/synonyms/proposals", t["l-sup"])
        assert got["proposals"] == []
        # An article proposed from a call, with the call's notes: once approved, their words it lacks.
        status, p = await ask(http, d, "POST", "/api/kb/proposals", t["l-agent"], {
            "kind": "new", "title": "Picture freezes on the decoder", "body": "Restart the decoder.",
            "call_id": "learn.2", "notes": "screen goes pixelated every evening"})
        assert status == 201 and p["notes"] == "screen goes pixelated every evening"
        status, got = await ask(http, d, "GET", "/api/kb/synonyms/proposals", t["l-sup"])
        assert got["proposals"] == []                                  # pending, not approved yet
        status, done = await ask(http, d, "POST", f"/api/kb/proposals/{p['proposal_id']}/decision", t["l-sup"],
                                 {"approve": True})
        assert status == 200
        status, got = await ask(http, d, "GET", "/api/kb/synonyms/proposals", t["l-sup"])
        words = {x["word"]: x for x in got["proposals"]}
        assert words["pixelated"]["article_id"] == done["article"]["article_id"]
        assert words["pixelated"]["anchor"] == "picture"
    finally:
        await d.stop()
