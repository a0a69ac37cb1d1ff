"""Each feature's share of the shared pool (cti.pg.FeaturePool, Core.db): a cap per feature."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cti.config import load_settings
from cti.daemon import Core
from cti.errors import ConfigError
from cti.pg import FEATURE_MAX, FeaturePool, feature_limits, is_pool


class FakeConn:
    def __init__(self, n: int) -> None:
        self.n = n

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        return self.n


class FakePool:
    """``size`` connections lent in turn; ``acquire`` waits for one to come back."""

    def __init__(self, size: int) -> None:
        self.free: asyncio.Queue[FakeConn] = asyncio.Queue()
        for n in range(size):
            self.free.put_nowait(FakeConn(n))

    async def acquire(self) -> FakeConn:
        return await self.free.get()

    async def release(self, conn: FakeConn) -> None:
        self.free.put_nowait(conn)


async def test_a_feature_at_its_cap_leaves_the_rest_of_the_pool_to_the_others():
    pool = FakePool(4)
    reports, hooks = FeaturePool("reports", pool, 2), FeaturePool("hooks", pool, 2)
    held = [await reports.acquire(), await reports.acquire()]
    more = [asyncio.create_task(reports.fetchval("SELECT 1")) for _ in range(5)]   # a burst of slow reports
    await asyncio.sleep(0)
    assert (reports.in_use, reports.waiting) == (2, 5)
    async with asyncio.timeout(1):     # not a timing assert: without the cap this would hang
        async with hooks.acquire() as a, hooks.acquire() as b:
            assert {a, b}.isdisjoint(held) and hooks.in_use == 2
    assert hooks.in_use == 0 and not any(t.done() for t in more)
    for conn in held:
        await reports.release(conn)
    async with asyncio.timeout(1):
        assert len(await asyncio.gather(*more)) == 5
    assert (reports.in_use, reports.waiting, pool.free.qsize()) == (0, 0, 4)


async def test_an_acquire_timeout_covers_the_wait_for_the_features_own_slot():
    pool = FakePool(4)
    share = FeaturePool("api", pool, 1)
    conn = await share.acquire()
    with pytest.raises(TimeoutError):
        await share.acquire(timeout=0.01)
    assert (share.in_use, share.waiting, pool.free.qsize()) == (1, 0, 3)
    await share.release(conn)
    async with share.acquire(timeout=1):
        assert (share.in_use, pool.free.qsize()) == (1, 3)
    assert (share.in_use, pool.free.qsize()) == (0, 4)


async def test_a_query_that_fails_gives_its_connection_and_slot_back():
    class Broken(FakeConn):
        async def fetchval(self, *a: Any, **kw: Any) -> Any:
            raise OSError("gone")

    pool = FakePool(0)
    pool.free.put_nowait(Broken(0))
    share = FeaturePool("ivr", pool, 1)
    with pytest.raises(OSError):
        await share.fetchval("SELECT 1")
    assert (share.in_use, pool.free.qsize()) == (0, 1)


def test_limits_are_the_defaults_with_overrides_and_refuse_unknown_features_and_sizes():
    assert feature_limits({"reports": 2}) == {**FEATURE_MAX, "reports": 2}
    with pytest.raises(ValueError, match="'reportz' is not a feature"):
        feature_limits({"reportz": 2})
    with pytest.raises(ValueError, match="outside 1..32"):
        feature_limits({"api": 0})
    with pytest.raises(ConfigError, match="db_feature_max"):
        load_settings(db_feature_max={"api": 99})


async def test_the_core_gives_each_feature_one_share_with_its_configured_cap(tmp_path):
    core = Core(load_settings(state_dir=tmp_path, db_feature_max={"reports": 2}))
    assert core.db("reports") is None          # no pool yet
    core.pool = FakePool(4)   # type: ignore[assignment]
    reports = core.db("reports")
    assert reports is core.db("reports") and is_pool(reports)
    assert (reports.limit, core.db("hooks").limit) == (2, FEATURE_MAX["hooks"])
    assert set(core.shares) == {"reports", "hooks"}
