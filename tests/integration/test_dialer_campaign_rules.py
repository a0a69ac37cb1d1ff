"""A campaign's own window and retry rules, and its abandonment ledger across a restart,
with the real PostgreSQL: the runner dials a campaign by its own window (none when it is
shut) and retries by its own rules; a new runner (a restart, a takeover) rebuilds the
ledger from the stored attempts and has the headroom they paid for, not zero; the calibrated
AMD share counts the stored machine verdicts in its rates and pacing."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from types import SimpleNamespace

import pytest

from dialer import store
from dialer.campaign_rules import window_to_json
from dialer.lead_import import parse_leads
from dialer.leads import Outcome, RetryRules
from dialer.runner import Attempt, CampaignRunner
from dialer.windows import CallingWindow, WindowChecker

ALWAYS = CallingWindow(hours={d: (time(0), time.max) for d in range(7)})


def shut_around(now: datetime) -> CallingWindow:
    """Open every day, but closed on the dates around ``now`` in every zone on earth."""
    today = now.date()
    return CallingWindow(hours={d: (time(0), time.max) for d in range(7)},
                         closed_dates=frozenset(today + timedelta(days=k) for k in (-1, 0, 1)))


@dataclass
class Router:
    free: int
    eligible: int

    def queue_stats(self, queue, now):
        return SimpleNamespace(agents_available=self.free, agents_eligible=self.eligible)

    def waiting_calls(self):
        return []


class Bus:
    def subscribe(self, fn):
        return lambda: None

    def subscribe_to(self, kind, fn):
        return lambda: None


@dataclass
class Placing(CampaignRunner):
    """The runner with the Originate recorded instead of sent (no Asterisk here)."""
    originated: list = field(default_factory=list)

    def _originate(self, c, phone, lead_id, attempt_id, rules=None):
        self.originated.append((c["campaign_id"], phone, attempt_id, rules))
        self.calls[f"dialer-{attempt_id}-1"] = Attempt(attempt_id, lead_id, c["campaign_id"], f"dialer-{attempt_id}-1",
                                                       0.0, int(c["ring_s"]), rules=rules)


def runner(pool) -> Placing:
    core = SimpleNamespace(pool=pool, ami=object(), bus=Bus(),
                           settings=SimpleNamespace(dialer_tick_s=1.0, dialer_result_timeout_s=1800.0))
    acd = SimpleNamespace(router=Router(free=2, eligible=4), config=SimpleNamespace(agents=[]))
    return Placing(core, acd)


async def _campaign(pool, name: str, mode: str, window: CallingWindow, n: int, **kw) -> int:
    cid = await store.create_campaign(pool, name, mode=mode, queue="q", caller_id="+442079460000",
                                      windows=window_to_json(window), **kw)
    phones = [f"+4420794{60000 + i + (1000 if mode == 'progressive' else 0):05d}" for i in range(n)]
    valid, rejected = parse_leads("phone\n" + "\n".join(phones) + "\n")
    assert not rejected
    assert (await store.import_leads(pool, cid, valid)).created == n
    assert await store.set_campaign_state(pool, cid, "running")
    return cid


async def _history(pool, cid: int, at: datetime, live: int, abandoned: int) -> None:
    """``live`` answers by a person stored ``at``, ``abandoned`` of them abandoned."""
    lead = await pool.fetchval("SELECT min(lead_id) FROM dialer_leads WHERE campaign_id = $1", cid)
    await pool.execute(
        "INSERT INTO dialer_attempts (lead_id, campaign_id, started_at, ended_at, outcome, amd_status, call_id,"
        " rang_ms) SELECT $1, $2, $3, $3, CASE WHEN g <= $5 THEN 'abandoned' ELSE 'answered' END, 'HUMAN',"
        " 'dialer-h-' || g, 6000 FROM generate_series(1, $4) g", lead, cid, at, live, abandoned)


async def test_a_restarted_runner_rebuilds_its_ledger_and_dials_by_the_campaigns_own_rules(pool):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    retry = {"busy": {"delay_min": 7, "max_times": 3}}
    pred = await _campaign(pool, "own rules", "predictive", ALWAYS, 30, retry=retry)
    shut = await _campaign(pool, "shut today", "progressive", shut_around(now), 5)
    await _history(pool, pred, now - timedelta(hours=3), live=400, abandoned=2)

    first = runner(pool)
    assert first.ledgers == {}
    placed = await first.tick(now)
    # The ledger came back from the 400 stored live answers: (0.03 * 400 - 2) / 0.97 -> 10.
    assert first.ledgers[pred].headroom(now) == 10
    assert first.ledgers[pred].rates(now)["24h"].live == 400
    assert first.rebuilt == 2
    by_campaign = {c for c, *_ in first.originated}
    assert by_campaign == {pred}, "a campaign whose own window is shut today was dialed"
    assert 2 <= placed == len(first.originated) <= 2 + 10      # free agents, plus what the history pays for
    leads = {r["state"] for r in await pool.fetch("SELECT state FROM dialer_leads WHERE campaign_id = $1", shut)}
    assert leads == {"new"}

    # The campaign's own rule: busy is retried 7 minutes later (the default is 15).
    cid, phone, attempt_id, rules = first.originated[0]
    assert rules.per_outcome[Outcome.BUSY].delay == timedelta(minutes=7)
    a = first.calls.pop(f"dialer-{attempt_id}-1")
    await first._write(a, "busy", now, timedelta(seconds=3))
    lead = await pool.fetchrow("SELECT state, retry_at FROM dialer_leads WHERE phone = $1 AND campaign_id = $2",
                               phone, pred)
    assert (lead["state"], lead["retry_at"]) == ("retry", now + timedelta(minutes=7))

    # A restart: nothing in memory, the same headroom from the database.
    second = runner(pool)
    later = now + timedelta(seconds=2)
    await second.tick(later)
    assert second.ledgers[pred].headroom(later) == first.ledgers[pred].headroom(later) == 10
    assert second.ledgers[pred].rates(later) == first.ledgers[pred].rates(later)
    # Its measured inputs are the campaign's own, blended with the prior: 400 people of 401 dials.
    assert second.measured_by[pred][0].live_rate > first.measured.live_rate


async def test_the_calibrated_amd_share_counts_the_stored_machines_in_rates_and_pacing(pool):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    cid = await _campaign(pool, "calibrated", "predictive", ALWAYS, 10)
    await _history(pool, cid, now - timedelta(hours=3), live=200, abandoned=1)
    lead = await pool.fetchval("SELECT min(lead_id) FROM dialer_leads WHERE campaign_id = $1", cid)
    await pool.execute(
        "INSERT INTO dialer_attempts (lead_id, campaign_id, started_at, ended_at, outcome, amd_status, call_id,"
        " rang_ms) SELECT $1, $2, $3, $3, 'machine', 'MACHINE', 'dialer-m-' || g, 9000"
        " FROM generate_series(1, 100) g", lead, cid, now - timedelta(hours=3))
    r = runner(pool)
    r.core.settings.dialer_amd_false_positive_share = 0.05
    await r.tick(now)
    # 5% of the 100 machine verdicts were people: 5 hung up on, live answers and abandoned both.
    rates = r.ledgers[cid].rates(now)["24h"]
    assert (rates.live, rates.abandoned) == (pytest.approx(205), pytest.approx(6))
    assert r.measured_by[cid][0].false_positives_per_live == pytest.approx(5 / 205)
    # Not calibrated (the default): none counted.
    plain = runner(pool)
    await plain.tick(now + timedelta(seconds=1))
    assert plain.ledgers[cid].rates(now + timedelta(seconds=1))["24h"].abandoned == 1
    assert plain.measured_by[cid][0].false_positives_per_live == 0.0


async def test_a_history_over_the_cap_keeps_a_restarted_runner_progressive(pool):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    cid = await _campaign(pool, "over", "predictive", ALWAYS, 10)
    await _history(pool, cid, now - timedelta(days=2), live=100, abandoned=5)      # 5% over 30 days
    r = runner(pool)
    placed = await r.tick(now)
    assert r.ledgers[cid].headroom(now) == 0
    assert placed == 2          # one call per free agent, nothing beyond


async def test_stored_rules_that_cannot_be_used_dial_nothing(pool):
    now = datetime.now(timezone.utc)
    cid = await _campaign(pool, "broken", "progressive", ALWAYS, 3)
    await pool.execute("UPDATE dialer_campaigns SET retry = '{\"busy\": {\"delay_min\": 0}}' WHERE campaign_id = $1",
                       cid)
    r = runner(pool)
    assert await r.tick(now) == 0 and r.originated == []



async def test_a_call_a_gone_process_placed_is_closed_as_failed_and_its_lead_retried(pool):
    """A restart (or a leader that died) leaves the runner's open attempts behind; an agent's
    preview dial is not the runner's and stays open."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    cid = await _campaign(pool, "orphans", "progressive", ALWAYS, 3, retry={"failed": {"delay_min": 11}})
    (gone, recent, preview) = await store.take_for_dialing(pool, cid, now - timedelta(minutes=20), 3,
                                                           rules=RetryRules(), windows=WindowChecker(ALWAYS))
    await pool.execute("UPDATE dialer_attempts SET started_at = $2 WHERE attempt_id = $1", recent.attempt_id,
                       now - timedelta(minutes=2))
    await pool.execute("UPDATE dialer_attempts SET agent_id = 'ada' WHERE attempt_id = $1", preview.attempt_id)
    await pool.execute("UPDATE dialer_campaigns SET state = 'paused' WHERE campaign_id = $1", cid)
    r = runner(pool)
    await r.tick(now)
    assert r.orphans_closed == 1
    rows = {x["attempt_id"]: x for x in await pool.fetch(
        "SELECT a.attempt_id, a.outcome, l.state, l.retry_at FROM dialer_attempts a JOIN dialer_leads l"
        " USING (lead_id) WHERE a.campaign_id = $1", cid)}
    assert (rows[gone.attempt_id]["outcome"], rows[gone.attempt_id]["state"]) == ("failed", "retry")
    assert rows[gone.attempt_id]["retry_at"] == now + timedelta(minutes=11)        # the campaign's own rule
    assert (rows[recent.attempt_id]["outcome"], rows[recent.attempt_id]["state"]) == (None, "dialing")
    assert (rows[preview.attempt_id]["outcome"], rows[preview.attempt_id]["state"]) == (None, "dialing")
