"""A campaign's rules, board, results export and the agent's pending result over the API,
and ``cti campaigns``, against the running daemon and PostgreSQL (docs/dialer.md)."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import aiohttp
import asyncpg
import pytest

from cti.migrate import migrate
from tests.integration.conftest import daemon_settings, start_daemon
from tests.integration.test_api import add_user, bearer, login, url
from tests.integration.test_cli import cti

ALL_DAY = {"hours": {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
NAME = "=HYPERLINK(\"http://x\")"


def shut_today() -> dict:
    today = datetime.now(timezone.utc).date()
    return {**ALL_DAY, "closed_dates": [(today + timedelta(days=k)).isoformat() for k in (-1, 0, 1)]}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api_daemon(asterisk, database, tmp_path):
    d = await start_daemon(daemon_settings(database, tmp_path))
    await add_user(database, "ada", "agent", "a1")
    await add_user(database, "sam", "supervisor")
    try:
        yield d
    finally:
        await d.stop()


async def _error(r) -> tuple[int, str, list[str]]:
    body = await r.json()
    return r.status, body["error_id"], [x["field"] for x in body.get("details", [])]


async def test_a_campaigns_rules_are_checked_field_by_field_and_stored(api_daemon, http):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    async with http.post(url(d, "/api/campaigns"), json={"name": "bad", "windows": {"hours": {"mon": ["18:00", "09:00"]}}},
                         headers=sam) as r:
        assert await _error(r) == (422, "invalid_body", ["body.windows.hours.mon"])
    async with http.post(url(d, "/api/campaigns"), json={"name": "rules", "ring_s": 30}, headers=sam) as r:
        cid = (await r.json())["campaign_id"]
    rules = url(d, f"/api/campaigns/{cid}/rules")
    async with http.get(rules, headers=sam) as r:
        view = await r.json()
    assert (view["own_windows"], view["own_retry"]) == (False, False)
    assert view["windows"]["hours"]["mon"] == ["09:00", "20:00"] and "sun" not in view["windows"]["hours"]
    assert view["retry"]["busy"] == {"delay_min": 15, "max_times": 3}
    for body, field in (
            ({"windows": {"hours": {"mon": ["18:00", "09:00"]}}}, "body.windows.hours.mon"),
            ({"windows": {"hours": {"mon": ["24:00", "24:00"]}}}, "body.windows.hours.mon.0"),
            ({"windows": {"hours": {"mon": ["9:00", "17:00"]}}}, "body.windows.hours.mon.0"),
            ({"windows": {"hours": {"someday": ["09:00", "17:00"]}}}, "body.windows.hours.someday"),
            ({"windows": {"hours": {}}}, "body.windows.hours"),
            ({"windows": {"hours": {"mon": ["09:00", "17:00"]}, "closed_dates": ["2026-02-30"]}},
             "body.windows.closed_dates.0"),
            ({"retry": {"busy": {"delay_min": 0}}}, "body.retry.busy.delay_min"),
            ({"retry": {"answered": {"delay_min": 5}}}, "body.retry.answered"),
            ({"retry": {"max_attempts": 0}}, "body.retry.max_attempts")):
        async with http.put(rules, json=body, headers=sam) as r:
            status, error_id, fields = await _error(r)
            assert (status, error_id) == (422, "invalid_body") and any(f.startswith(field) for f in fields), \
                (body, fields)
    async with http.get(rules, headers=sam) as r:
        assert (await r.json())["own_windows"] is False                 # nothing written by a refusal
    own = {"windows": {"hours": {"sat": ["10:00", "14:00"]}, "closed_dates": ["2026-12-26"]},
           "retry": {"busy": {"delay_min": 5}, "max_attempts": 3}}
    async with http.put(rules, json=own, headers=sam) as r:
        assert r.status == 200, await r.text()
        view = await r.json()
    assert view["windows"] == {"hours": {"sat": ["10:00", "14:00"]}, "closed_dates": ["2026-12-26"]}
    assert view["retry"]["busy"] == {"delay_min": 5, "max_times": 3} and view["retry"]["max_attempts"] == 3
    async with http.get(rules, headers=sam) as r:
        assert await r.json() == view
    async with http.put(rules, json={"windows": None, "retry": own["retry"]}, headers=sam) as r:
        assert (await r.json())["own_windows"] is False
    async with http.put(url(d, "/api/campaigns/424242/rules"), json={}, headers=sam) as r:
        assert await _error(r) == (404, "no_campaign", [])


async def test_preview_by_the_campaigns_window_then_pending_export_and_board(api_daemon, http):
    d = api_daemon
    sam = bearer(await login(http, d, "sam"))
    ada = bearer(await login(http, d, "ada"))
    body = {"name": "survey", "mode": "preview", "windows": shut_today(),
            "survey": [{"id": "happy", "text": "Happy?", "type": "yes_no"}]}
    async with http.post(url(d, "/api/campaigns"), json=body, headers=sam) as r:
        assert r.status == 201, await r.text()
        cid = (await r.json())["campaign_id"]
    lead_csv = f'phone,name\n+442079460111,"{NAME.replace(chr(34), chr(34) * 2)}"\n'
    async with http.post(url(d, f"/api/campaigns/{cid}/leads"), json={"csv": lead_csv}, headers=sam) as r:
        assert (await r.json())["created"] == 1
    async with http.post(url(d, f"/api/campaigns/{cid}/state"), json={"state": "running"}, headers=sam) as r:
        assert r.status == 200
    async with http.post(url(d, "/api/preview/next"), json={"campaign_id": cid}, headers=ada) as r:
        assert await _error(r) == (404, "no_lead", [])                  # its own window is shut today
    async with http.put(url(d, f"/api/campaigns/{cid}/rules"), json={"windows": ALL_DAY}, headers=sam) as r:
        assert r.status == 200
    async with http.post(url(d, "/api/preview/next"), json={"campaign_id": cid}, headers=ada) as r:
        card = await r.json()
    assert card["name"] == NAME

    async with http.get(url(d, "/api/preview/pending"), headers=ada) as r:
        assert await r.json() == {"pending": None}
    async with http.post(url(d, f"/api/preview/leads/{card['lead_id']}/dial"), headers=ada) as r:
        attempt = (await r.json())["attempt_id"]
    async with http.get(url(d, "/api/preview/pending"), headers=ada) as r:
        pending = (await r.json())["pending"]
    assert (pending["attempt_id"], pending["kind"], pending["card"]["lead_id"]) == (attempt, "preview", card["lead_id"])
    assert pending["card"]["survey"][0]["id"] == "happy"
    async with http.get(url(d, "/api/preview/pending"), headers=sam) as r:
        assert r.status == 403                                          # agents only
    result = {"outcome": "answered", "disposition": "sale", "answers": {"happy": "yes"}, "call_id": "dial-1"}
    async with http.post(url(d, f"/api/preview/attempts/{attempt}/result"), json=result, headers=ada) as r:
        assert r.status == 200, await r.text()
    async with http.get(url(d, "/api/preview/pending"), headers=ada) as r:
        assert await r.json() == {"pending": None}

    async with http.get(url(d, f"/api/campaigns/{cid}/results.csv"), headers=ada) as r:
        assert r.status == 403
    async with http.get(url(d, f"/api/campaigns/{cid}/results.csv"), headers=sam) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        assert "attachment" in r.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "'" + NAME and row["phone"] == "'+442079460111"     # nothing a spreadsheet runs
    assert (row["outcome"], row["disposition"], row["answer.happy"], row["agent_id"]) == ("answered", "sale", "yes",
                                                                                         "ada")
    async with http.get(url(d, "/api/campaigns/424242/results.csv"), headers=sam) as r:
        assert await _error(r) == (404, "no_campaign", [])

    async with http.get(url(d, "/api/campaigns/board"), headers=sam) as r:
        assert r.status == 200, await r.text()
        board = await r.json()
    (c,) = board["campaigns"]
    assert (c["campaign_id"], c["state"], c["dialed"], c["connected"], c["abandoned"], c["leads_left"]) == \
        (cid, "running", 1, 1, 0, 0)
    assert (c["abandon_24h"], c["abandon_cap"], c["over_cap"]) == (0.0, 0.03, False)
    assert (c["connect_rate"], c["in_flight"]) == (1.0, None)          # no runner on this daemon
    async with http.get(url(d, "/api/campaigns/board"), headers=ada) as r:
        assert r.status == 403


async def test_the_campaigns_command_line(database, tmp_path):
    await migrate(database)
    env = {"CTI_DATABASE_URL": database}
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"windows": {"hours": {"mon": ["17:00", "09:00"]}}}))
    bad = cti("campaigns", "create", "calls", "--rules", str(rules), **env)
    assert bad.returncode == 2 and "windows.hours.mon" in bad.stderr
    rules.write_text(json.dumps({"windows": ALL_DAY, "retry": {"busy": {"delay_min": 9}}}))
    made = cti("campaigns", "create", "calls", "--mode", "progressive", "--queue", "sales", "--rules", str(rules), **env)
    assert made.returncode == 0, made.stderr
    cid = int(made.stdout.split()[1])
    assert cti("campaigns", "create", "calls", **env).returncode == 2            # the name is taken
    assert cti("campaigns", "start", str(cid), **env).returncode == 0
    listed = cti("campaigns", "list", **env)
    assert "calls" in listed.stdout and "running" in listed.stdout
    shown = cti("campaigns", "rules", str(cid), **env)
    assert json.loads(shown.stdout)["retry"]["busy"]["delay_min"] == 9
    assert cti("campaigns", "pause", str(cid), **env).returncode == 0
    assert cti("campaigns", "stop", "424242", **env).returncode == 1
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT state FROM dialer_campaigns WHERE campaign_id = $1", cid) == "paused"
        lead = await conn.fetchval("INSERT INTO dialer_leads (campaign_id, phone, name, zones) VALUES"
                                   " ($1, '+442079460111', '@risky', '{Europe/London}') RETURNING lead_id", cid)
        await conn.execute("INSERT INTO dialer_attempts (lead_id, campaign_id, started_at, outcome)"
                           " VALUES ($1, $2, now(), 'busy')", lead, cid)
    finally:
        await conn.close()
    out = tmp_path / "results.csv"
    exported = cti("campaigns", "export", str(cid), "--out", str(out), **env)
    assert exported.returncode == 0, exported.stderr
    (row,) = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert (row["name"], row["outcome"]) == ("'@risky", "busy")
