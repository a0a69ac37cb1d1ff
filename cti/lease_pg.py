"""The leadership lease on PostgreSQL: the thin shell around ``cti.leadership``.

One dedicated connection (never from the pool: the advisory lock lives and dies
with this session) runs the core's requests one at a time:

- ``TryLock``: ``pg_try_advisory_lock(LOCK_CLASS, crc32(cluster))``;
- ``ReadLease``: the cluster's row in ``leadership`` (migration 0014);
- ``TakeOver``: one ``UPDATE ... WHERE`` the row is still the one read ``RETURNING``
  the new epoch (``INSERT ... ON CONFLICT DO NOTHING`` when there was no row);
- ``Renew``: ``heartbeat_at`` refreshed where holder and epoch are still ours, with
  a timeout no longer than what is left of the lease;
- ``Evict``: ``pg_terminate_backend`` of the session holding the lock (it needs the
  same role as that session, or ``pg_signal_backend``);
- ``Release``: the row marked released where holder and epoch are still ours (a
  planned handover, ``release()``); the renewal's reply carries ``handover_requested``
  (``request_handover``, from ``cti handover``).

Any failure on the session (closed socket, timeout, error) is the core's "connection
lost": the session is closed, which releases the lock. Times are the event loop's
monotonic clock; ``heartbeat_at`` is the database's ``now()``, never compared with it.
"""
from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any, Awaitable, Callable

import asyncpg
import structlog

from cti.leadership import (
    Connect,
    Decision,
    Evict,
    Lease,
    LeaseConfig,
    LeaseRow,
    ReadLease,
    Release,
    Renew,
    Request,
    StartLeading,
    StepDown,
    TakeOver,
    TryLock,
)

log = structlog.get_logger("cti.lease")

LOCK_CLASS = 0x6374_6C65    # "ctle": the first key of the two-key advisory lock


def lock_keys(cluster: str) -> tuple[int, int]:
    """The advisory lock's two int4 keys for ``cluster`` (both positive)."""
    return LOCK_CLASS, zlib.crc32(cluster.encode()) & 0x7FFF_FFFF


_READ = "SELECT holder, epoch, heartbeat_at, released FROM leadership WHERE cluster = $1"
_INSERT = ("INSERT INTO leadership (cluster, holder, epoch) VALUES ($1, $2, $3 + 1)"
           " ON CONFLICT (cluster) DO NOTHING RETURNING holder, epoch, heartbeat_at, released")
_TAKE = ("UPDATE leadership SET holder = $2, epoch = greatest(epoch, $3) + 1,"
         " heartbeat_at = greatest(now(), heartbeat_at + interval '1 microsecond'), taken_at = now(),"
         " released = false, handover_requested = false"
         " WHERE cluster = $1 AND holder = $4 AND epoch = $5 AND heartbeat_at = $6 AND released = $7"
         " RETURNING holder, epoch, heartbeat_at, released")
# A renewal always changes the value (a standby compares values, not times).
_RENEW = ("UPDATE leadership SET heartbeat_at = greatest(now(), heartbeat_at + interval '1 microsecond')"
          " WHERE cluster = $1 AND holder = $2 AND epoch = $3 RETURNING heartbeat_at, handover_requested")
_RELEASE = ("UPDATE leadership SET released = true,"
            " heartbeat_at = greatest(now(), heartbeat_at + interval '1 microsecond')"
            " WHERE cluster = $1 AND holder = $2 AND epoch = $3 AND NOT released RETURNING epoch")
# cti handover: asked of the holder in office (its holder and epoch, as the operator saw them).
ASK_HANDOVER = ("UPDATE leadership SET handover_requested = true"
                " WHERE cluster = $1 AND holder = $2 AND epoch = $3 AND NOT released RETURNING epoch")
_EVICT = ("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
          " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2 AND granted"
          " AND pid <> pg_backend_pid()")


class PgLeadership:
    """One contender. ``step()`` does what is due now; ``run()`` steps until cancelled.

    ``on_decision`` (optional) is called with every ``StartLeading``/``StepDown``.
    """

    def __init__(self, dsn: str, cluster: str, node_id: str, config: LeaseConfig | None = None, *,
                 on_decision: Callable[[Decision], Awaitable[None] | None] | None = None,
                 connect_timeout: float = 5.0, clock: Callable[[], float] | None = None) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self.node_id = node_id
        self.config = config or LeaseConfig()
        self.connect_timeout = connect_timeout
        self._clock = clock or asyncio.get_running_loop().time
        self.lease = Lease(node_id, self.config, self._clock())
        self._on_decision = on_decision
        self._conn: Any = None
        self._wake = asyncio.Event()
        self._released: asyncio.Future[bool] | None = None

    # -- what the daemon asks ---------------------------------------------------

    def leading(self) -> bool:
        """Whether this node may act as leader now: check it before every routing action."""
        return self.lease.leading(self._clock())

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    @property
    def backend_pid(self) -> int | None:
        """The server process of the dedicated session (for tests and diagnostics)."""
        return None if self._conn is None else self._conn.get_server_pid()

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Step forever, sleeping until the core's next deadline (at most ``poll_every``)."""
        while True:
            await self.step()
            delay = min(self.lease.next_deadline() - self._clock(), self.config.poll_every)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def release(self, timeout: float) -> bool:
        """Hand over (the caller has stopped acting): the core steps down at once, the
        running loop marks the row released and drops the session. True when the row
        was marked within ``timeout`` (False: not leading, the row was no longer ours,
        or the database did not answer: the standby then waits a ttl as after a crash)."""
        decisions = self.lease.release(self._clock())
        if not self.lease.releasing:
            return False
        for d in decisions:
            log.warning("lease.step_down", node=self.node_id, epoch=d.epoch, reason="handover")
            if self._on_decision is not None:
                res = self._on_decision(d)
                if asyncio.iscoroutine(res):
                    await res
        self._released = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(self._released), timeout)
        except TimeoutError:
            return False

    async def step(self) -> list[Decision]:
        """Run the requests due now, feeding each result to the core; the decisions taken."""
        out = self.lease.tick(self._clock())
        while (req := self.lease.next_request(self._clock())) is not None:
            out += await self._run(req)
        for d in out:
            if isinstance(d, StepDown):
                log.warning("lease.step_down", node=self.node_id, epoch=d.epoch, reason=d.reason)
            elif isinstance(d, StartLeading):
                log.info("lease.leading", node=self.node_id, epoch=d.epoch)
            if self._on_decision is not None:
                res = self._on_decision(d)
                if asyncio.iscoroutine(res):
                    await res
        return out

    async def close(self) -> None:
        """Close the session (releasing the lock). Does not announce a step-down."""
        await self._drop()

    # -- requests -----------------------------------------------------------------

    async def _run(self, req: Request) -> list[Decision]:
        lease, timeout = self.lease, self.config.renew_within
        try:
            if isinstance(req, Connect):
                await self._drop()
                self._conn = await asyncpg.connect(
                    self.dsn, timeout=self.connect_timeout,
                    server_settings={"application_name": f"cti-lease {self.node_id}"[:63]})
                return lease.on_connected(self._clock())
            conn = self._conn
            if conn is None:
                return lease.on_connection_lost(self._clock())
            if isinstance(req, TryLock):
                got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *lock_keys(self.cluster),
                                          timeout=timeout)
                return lease.on_lock(self._clock(), bool(got))
            if isinstance(req, ReadLease):
                r = await conn.fetchrow(_READ, self.cluster, timeout=timeout)
                return lease.on_lease_read(self._clock(), _row(r))
            if isinstance(req, TakeOver):
                if req.expected is None:
                    r = await conn.fetchrow(_INSERT, self.cluster, self.node_id, req.min_epoch, timeout=timeout)
                else:
                    e = req.expected
                    r = await conn.fetchrow(_TAKE, self.cluster, self.node_id, req.min_epoch,
                                            e.holder, e.epoch, e.heartbeat_at, e.released, timeout=timeout)
                row = _row(r)
                if row is None:
                    return lease.on_takeover_refused(self._clock())
                return lease.on_took_over(self._clock(), row)
            if isinstance(req, Renew):
                r = await conn.fetchrow(_RENEW, self.cluster, self.node_id, req.epoch,
                                        timeout=max(req.timeout, 0.001))
                if r is None:
                    return lease.on_renew_refused(self._clock())
                return lease.on_renewed(self._clock(), r["heartbeat_at"], bool(r["handover_requested"]))
            if isinstance(req, Release):
                done = await conn.fetchval(_RELEASE, self.cluster, self.node_id, req.epoch, timeout=timeout)
                log.warning("lease.released", node=self.node_id, epoch=req.epoch, done=done is not None)
                self._resolve_release(done is not None)
                return lease.on_released(self._clock(), done is not None)
            if isinstance(req, Evict):
                n = await conn.fetchval(_EVICT, *lock_keys(self.cluster), timeout=timeout)
                log.warning("lease.evicted", node=self.node_id, sessions=n)
                return lease.on_evicted(self._clock())
            raise AssertionError(f"unknown lease request {req!r}")
        # InternalClientError: a session the server ended (pg_terminate_backend) can leave the
        # protocol mid-operation ("another operation is in progress"): as lost as any other.
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError) as exc:
            log.warning("lease.session_lost", node=self.node_id, request=type(req).__name__, error=repr(exc))
            await self._drop()
            self._resolve_release(False)
            return lease.on_connection_lost(self._clock())

    def _resolve_release(self, done: bool) -> None:
        if self._released is not None and not self._released.done():
            self._released.set_result(done)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # terminate(): no goodbye round trip to a server that may not answer.
            with contextlib.suppress(Exception):
                conn.terminate()


def _row(r: Any) -> LeaseRow | None:
    return None if r is None else LeaseRow(r["holder"], r["epoch"], r["heartbeat_at"], bool(r["released"]))


async def request_handover(conn: Any, cluster: str, holder: str, epoch: int) -> bool:
    """``cti handover``: ask the leader ``holder`` of ``epoch`` to hand over (it sees the
    request in its next renewal). False when that is no longer the row in office."""
    return await conn.fetchval(ASK_HANDOVER, cluster, holder, epoch) is not None


_STATUS = ("SELECT cluster, holder, epoch, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age,"
           " extract(epoch FROM now() - taken_at)::float8 AS leading_for, released, handover_requested"
           " FROM leadership"
           " WHERE $1::text IS NULL OR cluster = $1 ORDER BY cluster")


async def lease_status(conn: Any, cluster: str | None = None) -> list[dict[str, Any]]:
    """The lease rows (one cluster's, or all), with the heartbeat's age and how long the
    holder has led, both by the database's own clock."""
    return [dict(r) for r in await conn.fetch(_STATUS, cluster)]


def format_status(rows: list[dict[str, Any]], ttl: float) -> list[str]:
    """``cti status`` lines: one per cluster; a heartbeat older than ``ttl`` is marked
    (its holder may be gone: a standby takes over). Pure."""
    if not rows:
        return ["no HA cluster has a lease in this database (a lone daemon leads with epoch 1)"]
    out = []
    for r in rows:
        age = r["heartbeat_age"]
        stale = "  STALE: past the ttl, a standby may take over" if age > ttl else ""
        if r.get("released"):
            stale = "  RELEASED: handed over, a standby takes over at once"
        elif r.get("handover_requested"):
            stale += "  (handover asked)"
        out.append(f"cluster {r['cluster']}: leader {r['holder']}, epoch {r['epoch']}, heartbeat {age:.1f}s ago, "
                   f"leading for {r['leading_for']:.0f}s{stale}")
    return out


def handover_progress(asked: dict[str, Any], row: dict[str, Any] | None) -> tuple[str, str]:
    """Where a handover asked of ``asked`` (holder, epoch) stands, from the row read
    now: ``("done", text)`` once a higher epoch leads, ``("released", text)`` while
    the old leader has let go and no one has taken over yet, else ``("asked", text)``.
    Pure."""
    if row is None:
        return "asked", "the lease row is gone"
    if row["epoch"] > asked["epoch"]:
        same = "  (the same node: no other standby took it)" if row["holder"] == asked["holder"] else ""
        return "done", (f"leadership moved from {asked['holder']} (epoch {asked['epoch']}) to {row['holder']} "
                        f"(epoch {row['epoch']}){same}")
    if row.get("released"):
        return "released", f"{asked['holder']} released epoch {asked['epoch']}; waiting for a standby to take over"
    return "asked", f"asked {asked['holder']} (epoch {asked['epoch']}) to hand over; it has not released yet"
