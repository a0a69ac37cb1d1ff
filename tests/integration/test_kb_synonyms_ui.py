"""The synonym proposals page for KB admins (api/static/wallboard/synonyms.js, docs/knowledge.md,
"Synonyms learned from agents") in headless Chromium: each proposed pair shows its evidence; a
supervisor approves one, rejects another and removes the approved one, and the API shows each
decision's effect on the synonyms."""
from __future__ import annotations

import aiohttp
import asyncpg

from kb import learn_store, store
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import ACD_TEST, add_user, bearer, login, url
from tests.integration.test_wallboard_ui import axe_violations, open_board


async def _proposals(database: str) -> None:
    """A "Helped" mark on a customs article with notes whose words no article holds."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        customs = (await store.create_article(pool, title="Customs charges and import duty",
                                              body="A parcel from abroad pays duty before delivery.", tags=[],
                                              language="en", owner="t", links=[])).article_id
        await store.create_article(pool, title="Track a parcel", body="The courier's tracking page shows where it is.",
                                   tags=[], language="en", owner="t", links=[])
        await learn_store.record_words(pool, article_id=customs, call_id="ui.1", agent="a1", source="helped",
                                       notes="cust says parcel stuck at border", stats=store.LexemeStats())
    finally:
        await pool.close()


async def test_a_kb_admin_approves_rejects_and_removes_proposed_synonyms(asterisk, database, tmp_path, browser):
    d = await start_daemon(daemon_settings(database, tmp_path, acd_config=ACD_TEST, acd_announce_every=0))
    page = None
    try:
        await add_user(database, "kbsup", "supervisor")
        await _proposals(database)
        async with aiohttp.ClientSession() as http:
            sup = bearer(await login(http, d, "kbsup"))

            async def get(path):
                async with http.get(url(d, path), headers=sup) as r:
                    assert r.status == 200, await r.text()
                    return await r.json()

            page, errors = await open_board(browser, d, "kbsup", "/wallboard/synonyms.html")
            border = page.locator("#syn-rows tr[data-word='border']")
            stuck = page.locator("#syn-rows tr[data-word='stuck']")
            await border.wait_for(timeout=10_000)
            text = await border.inner_text()
            assert "customs" in text and "Customs charges and import duty" in text
            assert "ui.1" in text and "a1" in text                          # the evidence: the call and the agent
            await border.locator(".syn-approve").click()
            await page.locator("#syn-feedback", has_text='Approved: "border"').wait_for(timeout=5_000)
            await stuck.locator(".syn-reject").click()
            await page.locator("#syn-feedback", has_text='Rejected: "stuck"').wait_for(timeout=5_000)
            await page.locator("#syn-empty", has_text="Nothing here").wait_for(timeout=5_000)

            groups = {g["name"]: g["phrases"] for g in (await get("/api/kb/synonyms?language=en"))["groups"]}
            assert groups["customs"] == ["border", "customs"]
            assert all("stuck" not in p for p in groups.values())
            approved = (await get("/api/kb/synonyms/proposals?state=approved"))["proposals"]
            rejected = (await get("/api/kb/synonyms/proposals?state=rejected"))["proposals"]
            assert [(p["word"], p["decided_by"]) for p in approved] == [("border", "kbsup")]
            assert [(p["word"], p["decided_by"]) for p in rejected] == [("stuck", "kbsup")]
            assert (await get("/api/kb/synonyms/proposals"))["proposals"] == []

            # The approved one, taken back from the approved list.
            await page.select_option("#syn-state", "approved")
            await page.click("#filter button")
            await border.locator(".syn-withdraw").click()
            await page.locator("#syn-feedback", has_text='Removed: "border"').wait_for(timeout=5_000)
            groups = {g["name"]: g["phrases"] for g in (await get("/api/kb/synonyms?language=en"))["groups"]}
            assert "customs" not in groups
            assert (await get("/api/kb/synonyms/proposals?state=approved"))["proposals"] == []
            assert sorted(p["word"] for p in (await get("/api/kb/synonyms/proposals?state=rejected"))["proposals"]) \
                == ["border", "stuck"]
            assert errors == []
            await page.context.close()
            page = None

            page, errors = await open_board(browser, d, "kbsup", "/wallboard/synonyms.html", bypass_csp=True)
            await page.wait_for_selector(".page:not([hidden])", timeout=10_000)
            assert await axe_violations(page) == []
    finally:
        if page is not None:
            await page.context.close()
        await d.stop()
